"""The forensics model: Qwen2.5-VL with new token rows, cls and mask heads, a SAM or conv mask decoder,
its builders and its checkpoints.

Heavy imports (torch, transformers) happen in the modules, not here.
"""
