"""The project's decoding settings, in one place: greedy, whatever the model folder says.

A released Qwen2.5-VL folder ships a ``generation_config.json`` (``repetition_penalty`` 1.05, sampling
``temperature``/``top_k``/``top_p``) that ``generate`` would otherwise merge into every call; the answers the
project trains and scores are plain greedy decoding, so every setting that changes a greedy pick is pinned
here: no sampling, one beam, no repetition penalty, no n-gram ban, and the sampling knobs at the library's
neutral values (which greedy decoding ignores). ``ForensicsModel.generate_answers`` uses them and
``forgery eval`` records them in metrics.json.
"""

from __future__ import annotations

from typing import Any

GREEDY: dict[str, Any] = {
    "do_sample": False,
    "num_beams": 1,
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
}
"""Keyword arguments of ``generate`` that pin greedy decoding (the model folder's generation_config.json
cannot override them: explicit keywords win in transformers' ``_prepare_generation_config``)."""


def generation_settings(max_new_tokens: int) -> dict[str, Any]:
    """What ``generate`` is called with (besides the inputs and the pad id): :data:`GREEDY` and the length cap."""
    return {**GREEDY, "max_new_tokens": int(max_new_tokens)}
