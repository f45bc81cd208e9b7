"""Metrics, benchmark and prediction readers, evaluate, perturbations, report, predict."""
