"""Model, losses, data loading, the three training stages, predict, eval and metrics.

Heavy imports (torch, transformers, segment_anything) live in the submodules, never here.
"""
