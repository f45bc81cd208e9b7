"""Camera sensor fingerprints (PRNU): the estimate (prnu), `forgery fingerprint` (build), reading them back (bank)."""
