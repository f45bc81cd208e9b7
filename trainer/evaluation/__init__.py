"""Evaluation and prediction: readers of benchmarks and predictions, metrics, perturbations,
evaluate, the report, predict.
"""
