"""Synthesis of labelled image forgeries and packing them into training shards.

Everything up to and including the shards lives here. No torch, transformers or trainer import
happens at module level, so the synthesis CLI starts instantly.
"""

__version__ = "0.1.0"
