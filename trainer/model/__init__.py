"""The forensics model: Qwen2.5-VL with new token rows, cls/mask heads, SAM or conv decoder, losses, checkpoints."""
