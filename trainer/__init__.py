"""The forensics model, its training and its evaluation (`model/`, `training/`, `evaluation/`), and the demo.

Heavy imports (torch, transformers, segment_anything) live in the modules, never in a package's
``__init__``.
"""
