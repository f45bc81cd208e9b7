"""TrainConfig: every option of ``forgery train``, from defaults < YAML file < command line.

One flat dataclass (plus the nested :class:`LossWeights`), so a YAML file can set anything the command
line can. :func:`load_config` merges a YAML mapping and CLI overrides, :meth:`TrainConfig.validate` raises
:class:`ConfigError` (CLI exit 2) naming the option, and the run writes the effective config to ``RUN/config.yaml``.
Stage defaults (``None`` fields): templates ``["json"]`` in stage 1 and every template in stages 2/3;
adversarial share and augmentation probability 0 in stages 1/2 and 0.5 in stage 3."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from forgery_synth.dataset.answer_tokens import CLS_POSITIONS, LEGACY_LAYOUT, MASK_POSITIONS
from trainer.model.config import WEIGHT_DTYPES
from trainer.model.expert_views import EXPERTS
from trainer.training.encoder_options import ENCODER_DEFAULTS, ENCODER_OPTIONS, check_encoder_config


@dataclass
class LossWeights:
    """Weights and hyper-parameters of the loss (all configurable; 0 turns a part off)."""

    text: float = 1.0
    cls: float = 1.0
    mask_bce: float = 1.0
    mask_dice: float = 1.0
    mask_boundary: float = 1.0
    contrastive: float = 0.1
    focal_alpha: float = 0.5
    focal_gamma: float = 2.0
    boundary_width: int = 3
    temperature: float = 0.1
    queue_size: int = 256


ALL_TEMPLATES = ("json", "explain", "conclusion", "pair")

MODEL_OPTIONS = ("base_model", "sam", "mask_decoder", "hidden_layer", "cls_position", "mask_position", "expert", "dtype") + ENCODER_OPTIONS
"""Options that describe the model itself (fixed once it is built; a checkpoint carries them)."""

_BUILT_DEFAULTS = {"mask_decoder": "sam", "hidden_layer": "last", **ENCODER_DEFAULTS,
                   "cls_position": LEGACY_LAYOUT[0], "mask_position": LEGACY_LAYOUT[1]}
"""What a checkpoint record without the key was built with (older checkpoints: the notes' token layout)."""

def shown_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def same_option_value(name: str, a: Any, b: Any) -> bool:
    """Whether two values of option ``name`` mean the same (paths by their resolved location,
    layer lists of one by their index, tuples as lists)."""
    def plain(v: Any) -> Any:
        v = list(v) if isinstance(v, tuple) else v
        return v[0] if name == "hidden_layer" and isinstance(v, list) and len(v) == 1 else v

    a, b = plain(a), plain(b)
    if a == b or (name == "dtype" and "auto" in (a, b)):  # dtype auto: the checkpoint's
        return True
    if name in ("data", "out", "init_from", "base_model", "sam") and isinstance(a, str) and isinstance(b, str):
        pa, pb = Path(a), Path(b)
        return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
    return False


class ConfigError(ValueError):
    """A bad option (the CLI maps it to exit code 2)."""


def sees_both_classes(micro_batches: int, batch_size: int) -> bool:
    """Whether an accumulation group holds both classes: >= 2 samples (the balancer alternates labels)."""
    return micro_batches * batch_size >= 2


@dataclass
class TrainConfig:
    """Options of one training run (``forgery train``). Units are given where they matter.

    Steps are optimizer steps (each = ``grad_accum`` micro-batches of ``batch_size`` samples). ``warmup``:
    a fraction of the total steps when < 1, else a number of steps. ``batch_size`` 1 means no padding (the
    default the notes found better); > 1 pads rows right. ``adv_eps``/``adv_alpha``: L-inf radius/step in
    [0, 1] RGB intensity (see trainer.training.adversarial). ``aug_noise_std``: Gaussian noise standard
    deviation in 0-255 grey levels (not a variance). ``eval_every``/``save_every``: in optimizer steps, 0 =
    only at the end. ``patience``: evaluations without improvement of (image AUC + pixel F1) before stopping,
    0 = off. AdamW rates by group (stages.lr_group): ``lr`` LLM LoRA, ``head_lr`` heads/token rows/mask
    decoder, ``vision_lr`` (None: = lr) encoders. Model options (``MODEL_OPTIONS``: ``base_model``, ``sam``,
    ``mask_decoder`` (None: "sam"), ``hidden_layer`` (None: "last"), ``cls_position``, ``mask_position``,
    ``expert``, ``dtype`` (of the frozen backbone and SAM encoder weights, trainables stay float32; None/auto:
    build_model.resolve_dtype), the encoder options) build a new model; with ``init_from`` or ``resume`` the
    checkpoint's model is used and an explicit value that contradicts it is refused
    (:meth:`check_model_options`); ``RUN/config.yaml`` records what was built.
    ``cls_position`` / ``mask_position``: where ``<cls>`` / ``<mask_1..32>`` stand; None = the shards' (mask:
    when their manifest records it, else before-answer) for a new model, else the checkpoint's.
    ``expert``: the view a new model's expert head reads (None: "none"); ``fingerprints``: the folder the "prnu"
    view reads. ``block_mask``: final hidden share (0 = off), reached after ``block_mask_ramp`` of the run;
    ``block_mask_size``: block side / shorter side. ``sam_cache``: read `forgery cache-embeddings` files.
    """

    stage: int = 1
    data: str = ""
    out: str = ""
    base_model: str | None = None
    sam: str | None = None
    mask_decoder: str | None = None
    init_from: str | None = None
    resume: bool = False
    hidden_layer: str | int | list[int] | None = None
    cls_position: str | None = None
    mask_position: str | None = None
    seed: int = 0
    dtype: str | None = None
    # schedule
    epochs: int = 1
    max_steps: int | None = None
    lr: float = 1e-4
    head_lr: float = 1e-3
    vision_lr: float | None = None
    weight_decay: float = 0.0
    warmup: float = 0.03
    max_grad_norm: float = 1.0
    batch_size: int = 1
    grad_accum: int = 8
    # LoRA (stages 2, 3)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # data
    templates: list[str] | None = None
    num_workers: int = 0
    shuffle_buffer: int = 256
    balance_buffer: int = 1024
    mask_size: int | None = None
    expert: str | None = None
    fingerprints: str | None = None
    sam_cache: bool = True
    train_vision: str | None = None  # encoder options (trainer.training.encoder_options); None: "none"/"qwen"
    train_sam_encoder: str | None = None
    language_model: str | None = None
    # losses
    loss: LossWeights = field(default_factory=LossWeights)
    # stage 3
    adv_share: float | None = None
    adv_method: str = "pgd"
    adv_eps: float = 2.0 / 255
    adv_alpha: float = 0.5 / 255
    adv_steps: int = 3
    aug_prob: float | None = None
    aug_jpeg_quality: tuple[int, int] = (60, 95)
    aug_resize_scale: tuple[float, float] = (0.5, 0.9)
    aug_noise_std: tuple[float, float] = (1.0, 8.0)
    aug_prompt_prob: float | None = None
    inference_prompt_share: float = 0.5  # share of json samples asked with predict's prompt (augment.py)
    # block masking
    block_mask: float = 0.0
    block_mask_size: float = 0.125
    block_mask_ramp: float = 1.0
    # logging, validation, checkpoints
    log_every: int = 1
    eval_every: int = 0
    val_samples: int = 64
    val_mode: str = "generate"
    val_max_new_tokens: int = 128
    save_every: int = 0
    patience: int = 0
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    progress: bool = True

    # -- stage-dependent defaults -------------------------------------------------------------

    @property
    def effective_templates(self) -> list[str]:
        if self.templates is not None:
            return list(self.templates)
        return ["json"] if self.stage == 1 else list(ALL_TEMPLATES)

    @property
    def effective_adv_share(self) -> float:
        return self.adv_share if self.adv_share is not None else (0.5 if self.stage == 3 else 0.0)

    @property
    def effective_aug_prob(self) -> float:
        return self.aug_prob if self.aug_prob is not None else (0.5 if self.stage == 3 else 0.0)

    @property
    def effective_prompt_prob(self) -> float:
        return self.aug_prompt_prob if self.aug_prompt_prob is not None else (0.5 if self.stage == 3 else 0.0)

    def model_expert(self, checkpoint_expert: str | None) -> str:
        """The expert view of the run's model: the checkpoint's when the run starts from one
        (``checkpoint_expert``; an explicit different ``--expert`` is a ConfigError naming both),
        else ``--expert`` ("none" when not given)."""
        if checkpoint_expert is None:
            return self.expert or "none"
        if self.expert is not None and self.expert != checkpoint_expert:
            raise ConfigError(f"--expert: the checkpoint's model reads the {checkpoint_expert!r} view, not "
                              f"{self.expert!r}; an expert head is fixed when the model is built (leave out "
                              f"--expert to keep {checkpoint_expert!r}, or train a new model from stage 1)")
        return checkpoint_expert

    # -- checks -------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ConfigError naming the first unusable option."""

        def bad(option: str, why: str) -> None:
            raise ConfigError(f"--{option.replace('_', '-')}: {why}")

        if self.stage not in (1, 2, 3):
            bad("stage", f"must be 1, 2 or 3, got {self.stage}")
        if not self.data:
            bad("data", "a shard directory (written by `forgery build-shards`) is required")
        if not Path(self.data).is_dir():
            bad("data", f"{self.data} is not a directory")
        if not self.out:
            bad("out", "a run directory is required")
        if self.stage in (2, 3) and not self.init_from and not self.resume:
            bad("init-from", f"stage {self.stage} starts from the previous stage's checkpoint "
                "(e.g. --init-from RUN1/best)")
        if not self.init_from and not self.resume:
            if not self.base_model:
                bad("base-model", "name the backbone: a Qwen2.5-VL folder or hub id already in the cache "
                    "(e.g. Qwen/Qwen2.5-VL-3B-Instruct), or `tiny` for a random test model")
            if not self.sam:
                bad("sam", "name the mask decoder's SAM: vit_b/vit_l/vit_h, a segment-anything checkpoint "
                    "(.pth), or `tiny` for a random test model")
        if self.init_from and not (Path(self.init_from) / "forensics_config.json").is_file():
            bad("init-from", f"{self.init_from} is not a checkpoint directory (no forensics_config.json)")
        for name in ("epochs", "batch_size", "grad_accum", "log_every", "adv_steps", "val_samples",
                     "val_max_new_tokens"):
            if getattr(self, name) < 1:
                bad(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "save_every", "patience", "num_workers", "shuffle_buffer", "balance_buffer"):
            if getattr(self, name) < 0:
                bad(name, f"must be >= 0, got {getattr(self, name)}")
        if not sees_both_classes(self.grad_accum, self.batch_size):
            bad("grad_accum", "--batch-size 1 with --grad-accum 1 makes every optimizer step see one sample, so one "
                "class (the balancer alternates fake and real): use --grad-accum 2 or more, or --batch-size 2 or more")
        if self.max_steps is not None and self.max_steps < 1:
            bad("max_steps", f"must be >= 1, got {self.max_steps}")
        for name, v in (("lr", self.lr), ("head_lr", self.head_lr), ("vision_lr", self.vision_lr)):
            if v is not None and not (v > 0 and math.isfinite(v)):
                bad(name, f"must be a positive number, got {v}")
        if self.warmup < 0:
            bad("warmup", f"must be >= 0 (a fraction < 1 or a number of steps), got {self.warmup}")
        if self.lora_r < 1 or self.lora_alpha <= 0:
            bad("lora_r", f"LoRA r must be >= 1 and alpha > 0, got r={self.lora_r} alpha={self.lora_alpha}")
        unknown = [t for t in self.effective_templates if t not in ALL_TEMPLATES]
        if unknown or not self.effective_templates:
            bad("templates", f"choose from {', '.join(ALL_TEMPLATES)}, got {self.effective_templates}")
        for name in ("adv_share", "aug_prob", "aug_prompt_prob", "inference_prompt_share"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                bad(name, f"must be in [0, 1], got {v}")
        if not 0.0 <= self.block_mask < 1.0:
            bad("block_mask", f"the share of the image hidden must be in [0, 1) (0 = off), got {self.block_mask}")
        for name in ("block_mask_size", "block_mask_ramp"):
            if not 0.0 < getattr(self, name) <= 1.0:
                bad(name, f"a fraction in (0, 1] (of the shorter side / of the run), got {getattr(self, name)}")
        if self.adv_method not in ("pgd", "fgsm"):
            bad("adv_method", f"must be pgd or fgsm, got {self.adv_method!r}")
        if not 0 <= self.adv_eps <= 1 or not 0 < self.adv_alpha <= 1:
            bad("adv_eps", "epsilon and step are [0, 1] RGB intensities (e.g. 2/255 = 0.0078)")
        q0, q1 = self.aug_jpeg_quality
        if not 1 <= q0 <= q1 <= 100:
            bad("aug_jpeg_quality", f"need 1 <= lo <= hi <= 100, got {self.aug_jpeg_quality}")
        s0, s1 = self.aug_resize_scale
        if not 0 < s0 <= s1 <= 1:
            bad("aug_resize_scale", f"down-up factors need 0 < lo <= hi <= 1, got {self.aug_resize_scale}")
        n0, n1 = self.aug_noise_std
        if not 0 <= n0 <= n1 <= 255:
            bad("aug_noise_std", f"standard deviations in 0-255 need lo <= hi, got {self.aug_noise_std}")
        if self.val_mode not in ("generate", "teacher"):
            bad("val_mode", f"must be generate or teacher, got {self.val_mode!r}")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            bad("mixed_precision", f"must be auto, no, bf16 or fp16, got {self.mixed_precision!r}")
        if self.mask_size is not None and self.mask_size < 8:
            bad("mask_size", f"must be >= 8 pixels, got {self.mask_size}")
        for name, choices in (("mask_decoder", ("sam", "conv")), ("cls_position", CLS_POSITIONS),
                              ("mask_position", MASK_POSITIONS), ("expert", EXPERTS), ("dtype", WEIGHT_DTYPES)):
            if getattr(self, name) is not None and getattr(self, name) not in choices:
                bad(name, f"must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        check_encoder_config(self, ConfigError)
        if self.init_from:  # contradictions with the checkpoint are refused here, before any model loads
            record = json.loads((Path(self.init_from) / "forensics_config.json").read_text())
            self.check_model_options(record, self.init_from)
            self.check_fingerprints(record.get("expert", "none"))
        elif self.expert is not None:
            self.check_fingerprints(self.expert)

    def check_fingerprints(self, expert: str) -> None:
        """ConfigError unless ``fingerprints`` goes with the model's expert view ``expert``: a fingerprint
        folder (with cameras.json) for "prnu", none for any other view (it would be ignored)."""
        if expert == "prnu" and not self.fingerprints:
            raise ConfigError("--expert prnu needs --fingerprints DIR (a folder written by forgery fingerprint)")
        if expert != "prnu" and self.fingerprints:
            raise ConfigError(f"--fingerprints is read only by the prnu expert view; the model reads {expert!r}")
        if self.fingerprints and not (Path(self.fingerprints) / "cameras.json").is_file():
            raise ConfigError(f"--fingerprints {self.fingerprints}: no cameras.json (write it with forgery fingerprint)")

    def check_model_options(self, record: dict[str, Any], source: str | Path) -> None:
        """ConfigError listing every explicit model option that contradicts the checkpoint ``source``
        (``record``: its forensics_config.json). Options left out (None) take the checkpoint's."""
        self.model_expert(record.get("expert", "none"))
        differ = [f"--{k.replace('_', '-')} {shown_value(getattr(self, k))} (the checkpoint has {shown_value(record.get(k, _BUILT_DEFAULTS.get(k)))})"
                  for k in ("base_model", "sam", "mask_decoder", "hidden_layer", "cls_position", "mask_position", "dtype")
                  + ENCODER_OPTIONS
                  if getattr(self, k) is not None and not same_option_value(k, getattr(self, k), record.get(k, _BUILT_DEFAULTS.get(k)))]
        if differ:
            raise ConfigError(f"--init-from {source}: the model is the checkpoint's, and these options contradict it: "
                              + "; ".join(differ) + ". Leave them out, or train a new model from stage 1")

    def adopt_model(self, record: dict[str, Any]) -> None:
        """Set the model options to what was actually built or loaded (``record``: the model's
        forensics config), so ``RUN/config.yaml`` says what the run trained."""
        for k in MODEL_OPTIONS:
            if k in record:
                setattr(self, k, record[k])

    # -- (de)serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def save(self, path: str | Path) -> None:
        """Write the effective config as YAML (re-loadable with :func:`load_config`)."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_LOSS_FIELDS = {f.name for f in dataclasses.fields(LossWeights)}


def _coerce(name: str, value: Any) -> Any:
    if name in ("aug_jpeg_quality", "aug_resize_scale", "aug_noise_std"):
        if isinstance(value, str):
            value = [float(v) for v in value.replace("-", ",").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or len(value) not in (1, 2):
            raise ConfigError(f"--{name.replace('_', '-')}: expected LO,HI, got {value!r}")
        lo, hi = value[0], value[-1]
        return (int(lo), int(hi)) if name == "aug_jpeg_quality" else (float(lo), float(hi))
    if name == "hidden_layer" and isinstance(value, str) and value != "last":
        parts = [p for p in value.split(",") if p.strip()]
        try:
            ints = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"--hidden-layer: expected last, an index or indices a,b,c; got {value!r}") from None
        return ints[0] if len(ints) == 1 else ints
    if name == "templates" and isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return value


def parse_loss_weights(text: str) -> dict[str, float]:
    """``"text=1,cls=2"`` -> ``{"text": 1.0, "cls": 2.0}`` (names of :class:`LossWeights`)."""
    out: dict[str, float] = {}
    for item in (t for t in text.split(",") if t.strip()):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in _LOSS_FIELDS:
            raise ConfigError(f"--loss-weights: expected NAME=VALUE with NAME in {', '.join(sorted(_LOSS_FIELDS))}, got {item!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ConfigError(f"--loss-weights: {item!r} has no number") from None
    return out


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping a YAML file holds (``{}`` when empty); ConfigError naming ``what`` and the file otherwise."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what}: {p} does not exist")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: {p} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what}: {p} must hold a mapping")
    return loaded


def load_config(yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """defaults < YAML file < overrides (CLI values that were given; ``None`` values are ignored).
    The YAML may hold any TrainConfig field (``loss``: a mapping of LossWeights fields); unknown keys
    raise ConfigError. The result is not validated (call ``validate``)."""
    values: dict[str, Any] = {}
    if yaml_path is not None:
        values.update({k.replace("-", "_"): v for k, v in read_mapping(yaml_path, "--config").items()})
    loss = dict(values.pop("loss", None) or {})
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k == "loss":
            loss.update(v)
        else:
            values[k] = v
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
    bad_loss = sorted(set(loss) - _LOSS_FIELDS)
    if bad_loss:
        raise ConfigError(f"unknown loss weight(s): {', '.join(bad_loss)}")
    kwargs = {k: _coerce(k, v) for k, v in values.items()}
    try:
        config = TrainConfig(**kwargs, loss=LossWeights(**loss))
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    config.given = frozenset(values) | {f"loss.{k}" for k in loss}  # what the YAML file and the caller set
    return config

