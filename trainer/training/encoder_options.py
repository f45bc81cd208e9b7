"""The encoder options of ``forgery train``: what of the vision tower and SAM's encoder trains, and the LLM-free control.

``train_vision`` (none | lora | full), ``train_sam_encoder`` (none | lora) and ``language_model``
(qwen | none) are model options (``config.MODEL_OPTIONS``): a new model is built with them and records
them in its checkpoint (``ForensicsModelConfig``); ``--init-from``/``--resume`` keep the checkpoint's and
refuse an explicit contradicting value. :func:`check_encoder_config` refuses the values and combinations
that make no sense, before any model loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.model.config import LANGUAGE_MODELS, SAM_ENCODER_MODES, TRAIN_VISION

ENCODER_OPTIONS = ("train_vision", "train_sam_encoder", "language_model")
ENCODER_DEFAULTS = {"train_vision": "none", "train_sam_encoder": "none", "language_model": "qwen"}
"""What a model built without the option has (and what checkpoints written before the options hold)."""

_ALLOWED = {"train_vision": TRAIN_VISION, "train_sam_encoder": SAM_ENCODER_MODES, "language_model": LANGUAGE_MODELS}


def effective_encoder_options(config: Any, record: dict[str, Any] | None) -> dict[str, str]:
    """The encoder options the run's model will have: the explicit ``config`` value, else the checkpoint
    ``record``'s (its forensics_config.json), else the default."""
    base = {**ENCODER_DEFAULTS, **{k: record[k] for k in ENCODER_OPTIONS if record and k in record}}
    return {k: getattr(config, k) if getattr(config, k) is not None else base[k] for k in ENCODER_OPTIONS}


def check_encoder_config(config: Any, error: type[Exception]) -> None:
    """Raise ``error`` (the CLI's exit 2) naming the option when a TrainConfig's encoder options have a
    value outside their choices or make no sense together with the rest of the run: a SAM-encoder LoRA
    without SAM, or an LLM-free model (``language_model: none``) asked for the LLM's LoRA (stages 2, 3),
    a hidden layer or the conv decoder (it reads the LLM's image states). Its text loss is 0 by construction."""
    for name in ENCODER_OPTIONS:
        value = getattr(config, name)
        if value is not None and value not in _ALLOWED[name]:
            raise error(f"--{name.replace('_', '-')}: must be one of {', '.join(_ALLOWED[name])}, got {value!r}")
    record = None
    if config.init_from and (Path(config.init_from) / "forensics_config.json").is_file():
        record = json.loads((Path(config.init_from) / "forensics_config.json").read_text())
    eff = effective_encoder_options(config, record)
    decoder = config.mask_decoder or (record or {}).get("mask_decoder", "sam")
    if eff["train_sam_encoder"] != "none" and decoder != "sam":
        raise error(f"--train-sam-encoder {eff['train_sam_encoder']}: the model has no SAM (--mask-decoder {decoder})")
    if eff["language_model"] == "none":
        where = f" ({config.init_from}'s model has none)" if record and record.get("language_model") == "none" else ""
        if config.stage in (2, 3):
            raise error(f"--stage {config.stage}: stages 2 and 3 add LoRA to the language model, and this model has "
                        f"no language model (--language-model none){where}; train the LLM-free control at stage 1 only")
        if decoder != "sam":
            raise error(f"--mask-decoder {decoder}: the conv decoder reads the language model's image states; "
                        "the LLM-free control (--language-model none) needs --mask-decoder sam")
        if config.hidden_layer is not None and config.hidden_layer != "last":
            raise error(f"--hidden-layer {config.hidden_layer}: an LLM-free model (--language-model none) has no "
                        "language-model layers to choose from")
