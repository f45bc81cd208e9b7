"""From samples to training shards: conversations, splits, the Qwen frame, check, exports."""
