"""Train/val/test assignment by source photo, label balance by sampling, and sample order.

Everything here is a pure function of hashes of sha256 strings and keys, so the outcome does not
depend on the order in which files were listed or given on the command line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

SPLITS = ("train", "val", "test")


def unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts' string forms (sha256 based)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(source_sha256: str, fractions: Sequence[float]) -> str:
    """The split of every sample made from the photo with this sha256. ``fractions`` are the
    train/val/test shares (summing to 1). Independent of the seed, so rebuilding with another
    seed keeps the validation and test photos."""
    u = unit_hash("split", source_sha256)
    edge = 0.0
    for name, share in zip(SPLITS, fractions):
        edge += share
        if u < edge:
            return name
    return next(name for name, share in reversed(list(zip(SPLITS, fractions))) if share > 0)


def balance(real_keys: list[str], fake_keys: list[str], real_ratio: float, seed: int) -> tuple[list[str], list[str]]:
    """Drop samples of the over-represented label so that reals make ``real_ratio`` of the result
    (as close as whole samples allow). Which samples go is decided by a seeded hash of the key.
    If one label is absent, nothing is dropped (a split with one label cannot be balanced by
    dropping; the manifest reports the achieved ratio)."""
    r, f = len(real_keys), len(fake_keys)
    if r == 0 or f == 0:
        return list(real_keys), list(fake_keys)
    if real_ratio <= 0.0:
        return [], list(fake_keys)
    if real_ratio >= 1.0:
        return list(real_keys), []
    want_r = round(real_ratio * f / (1.0 - real_ratio))
    if want_r <= r:
        return _keep(real_keys, max(want_r, 1), seed), list(fake_keys)
    want_f = round((1.0 - real_ratio) * r / real_ratio)
    return list(real_keys), _keep(fake_keys, max(min(want_f, f), 1), seed)


def _keep(keys: list[str], n: int, seed: int) -> list[str]:
    ranked = sorted(keys, key=lambda k: (unit_hash("keep", seed, k), k))
    return ranked[:n]


def order(keys: list[str], seed: int) -> list[str]:
    """A seeded shuffle of ``keys`` by hash, so shards mix labels and methods."""
    return sorted(keys, key=lambda k: (unit_hash("order", seed, k), k))
