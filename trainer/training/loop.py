"""The training loop: ``forgery train --stage N`` on accelerate (CPU, one GPU, or DDP/FSDP/DeepSpeed
through ``accelerate launch``, same code).

One optimizer step = ``grad_accum`` micro-batches (gradient sync only on the last under DDP),
AdamW on the stage's trainable parameters in groups by learning rate (:func:`param_groups`: LoRA at
``--lr``, heads/token rows/mask decoder at ``--head-lr``, encoders at ``--vision-lr``), linear warmup then
cosine decay to 0 (one factor for every group), gradient clipping,
bf16 autocast on GPUs that support it. Every step appends one line to ``RUN/metrics.jsonl``
(``step``, ``loss`` = the weighted total, each term, ``cls_chance``, ``mask_bce_chance``,
``mask_dice_chance``: the term's value for the best constant predictor on the step's samples, ``text_chance``
= ln(vocabulary), the uniform guess (trainer.training.losses), ``lr`` (LoRA), ``lr_head``, ``lr_vision`` (when
the encoders train): each parameter group's scheduled rate, ``grad_norm``, ``adversarial``,
``samples_per_s``, ``block_share``: the mean hidden share of the step's micro-batches in the mask frame,
``evidence_dropped``: forged samples all of whose forged pixels were hidden, so not trained as
forgeries; ``sam_cached``, with SAM embedding files beside the shards: images whose embedding was read
from them instead of encoded; all over all ranks) and to TensorBoard (``RUN/tensorboard``); the progress bar shows the terms.

Epoch ends (as transformers' Trainer): the trailing partial group of an epoch (fewer than
``grad_accum`` micro-batches) makes one optimizer step, its loss averaged over the micro-batches it
has, unless it holds one sample (``--batch-size 1``, one micro-batch left): one class, so it is dropped
(``dropped_micro_batches`` in ``RUN/data.json``). Steps per epoch = ceil(micro-batches / grad_accum),
less the dropped group (:func:`epoch_steps`); the LR schedule and ``--epochs`` count these steps, and
the resume position counts the micro-batches consumed. Under DDP every rank takes the micro-batches
every rank has (``common`` in data.json), so all make the same steps.

Safety: a non-finite loss or gradient in any micro-batch of a step (on any rank) skips the
optimizer step (gradients dropped, the InfoNCE queue restored), is logged with ``"skipped"``, and
the schedule moves on; a checkpoint is only written when every trainable tensor is finite.

Run directory::

    RUN/config.yaml          the effective TrainConfig
    RUN/trainable.json       trainable parameter names and counts (trainer.training.stages.trainable_report)
    RUN/data.json            samples per label, micro-batches and optimizer steps per epoch, dropped micro-batches
    RUN/metrics.jsonl        one line per logged step;  RUN/val.jsonl: one line per validation
    RUN/samples/rank-<r>.jsonl  per optimizer step, the micro-batch indices and sample keys rank r trained on
    RUN/checkpoint-<step>/   every --save-every steps: a model checkpoint (trainer.model.checkpoint)
                             + trainer_state/ (trainable tensors, optimizer, scheduler, RNG, data
                             position, InfoNCE queue, early-stopping state) for --resume
    RUN/best/                best validation (image AUC + pixel F1);  RUN/last/: the end state
                             (each checkpoint holds thresholds.json: the image and pixel thresholds
                             calibrated at the latest validation, trainer.evaluation.calibration)
    RUN/summary.json         steps done, best step/score, whether early stopping fired
    RUN/learning.json        each watched loss at the end against its chance value (trainer.training.learning;
                             also in best/ and last/): a cls loss that never left chance is said at the end

``--resume`` reloads the newest ``checkpoint-<step>`` (or ``last/``, a finished run's end state) and
continues exactly: same model, optimizer and scheduler state, RNG, InfoNCE queue and data position, so
the losses equal an uninterrupted run's (a test checks it on CPU). The run keeps its saved options
(:func:`trainer.training.resume.resume_config`); a later ``--max-steps``/``--epochs`` extends it: the
cosine is recomputed for the new length (warmup unchanged), so from the resume step the LR follows the
schedule of a run planned that long, and the block-mask ramp is stretched to the new length. Any other option
that differs is refused with the list of differences. A launcher whose environment says
``WORLD_SIZE`` > 1 while accelerate sees one process is refused (:func:`check_launch`).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from forgery_synth.dataset.answer_tokens import DEFAULT_MASK_POSITION, LEGACY_LAYOUT
from forgery_synth.dataset.conversations import TEMPLATES
from trainer.model.build_model import (
    BACKBONE_BUILDERS,
    backbone_layers,
    build_forensics_model,
    check_hidden_layer,
    resolve_model_path,
)
from trainer.model.checkpoint import (
    DEFAULT_THRESHOLDS,
    load_checkpoint,
    load_thresholds,
    save_checkpoint,
    save_thresholds,
)
from trainer.model.forensics_model import ForensicsModel
from trainer.model.hub import ModelNotAvailable
from trainer.model.sam_decoder import SAM_SPECS, SamMaskDecoder, encoder_fingerprint
from trainer.model.tokens import set_image_frame
from trainer.training.adversarial import (
    AdversarialConfig,
    is_adversarial_step,
    perturb_pixels,
)
from trainer.training.augment import AugmentConfig
from trainer.training.block_masking import BlockMaskConfig
from trainer.training.config import ConfigError, LossWeights, TrainConfig, sees_both_classes
from trainer.training.data import (
    DataOptions,
    ShardBatches,
    count_epoch,
    describe_census,
    make_loader,
    shard_urls,
    split_census,
    validation_samples,
)
from trainer.training.learning import learning_summary, write_learning
from trainer.training.encoder_options import effective_encoder_options
from trainer.training.resume import resume_config
from trainer.training.sam_cache import cache_tag, find_caches
from trainer.training.losses import EmbeddingQueue, LossBreakdown, text_chance, total_loss
from trainer.training.stages import LR_GROUPS, STAGES, lr_group, setup_stage, trainable_report
from trainer.training.validation import fingerprint_census, validate

TERMS = ("text", "cls", "mask_bce", "mask_dice", "mask_boundary", "contrastive")
CHANCE_TERMS = ("cls", "mask_bce", "mask_dice")
"""Terms logged beside their chance value ``<term>_chance`` (trainer.training.losses; ``text_chance``: ln V)."""


MODEL_KEYS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids", "labels",
              "sam_images", "sam_input_sizes", "sam_keys", "sam_embeddings", "sam_cached", "expert_images")


@dataclass
class TrainResult:
    """What a run did. best_score: image AUC + pixel F1 of RUN/best (None without validation)."""

    run_dir: Path
    steps: int
    best_step: int | None
    best_score: float | None
    stopped_early: bool
    skipped_steps: int


def compute_loss(model: Any, batch: dict, weights: LossWeights, queue: EmbeddingQueue | None) -> LossBreakdown:
    """Forward one micro-batch and weigh its losses (pushes the ``<cls>`` embeddings into ``queue``)."""
    inputs = {k: batch[k] for k in MODEL_KEYS if k in batch}
    out = model(**inputs, mask_size=tuple(batch["mask_target"].shape[-2:]), compute_logits=False)
    return total_loss(out, cls_target=batch["cls_target"], mask_target=batch["mask_target"],
                      mask_valid=batch["mask_valid"], weights=weights, queue=queue,
                      pixel_valid=batch.get("pixel_valid"), evidence_weight=batch.get("evidence_weight"))


def epoch_steps(micro_batches: int, grad_accum: int, batch_size: int) -> tuple[int, int]:
    """(optimizer steps, micro-batches dropped) of an epoch of ``micro_batches`` on each rank: one step
    per ``grad_accum``, and one for the trailing partial group unless it holds one class (then dropped)."""
    full, rest = divmod(micro_batches, grad_accum)
    if rest and sees_both_classes(rest, batch_size):
        return full + 1, 0
    return full, rest


PROGRESS_LINES = 10
"""Without a progress bar (the demo, logs), a run says where it is this many times."""


def progress_line(stage: int, step: int, total: int, t0: float, step0: int, record: dict) -> str:
    """``stage 1: step 40/200 (20%), 0.45 s/step, ETA 1m12s; loss 4.12 (text 3.9 (chance 11.9), cls 0.069
    (chance 0.0866), ...)``: each term beside its chance value where it has one."""
    rate = (time.perf_counter() - t0) / max(1, step - step0)
    eta = int(rate * (total - step))
    def term(k: str) -> str:
        c = record.get(f"{k}_chance")
        return f"{k} {record[k]:.3g}" + (f" (chance {c:.3g})" if c else "")

    terms = ", ".join(term(k) for k in TERMS if math.isfinite(record.get(k, math.nan)))
    return (f"stage {stage}: step {step}/{total} ({100 * step // max(1, total)}%), {rate:.2f} s/step, "
            f"ETA {eta // 60}m{eta % 60:02d}s; loss {record['loss']:.3g} ({terms})")


LAUNCHER_SIZE_VARS = ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
"""Environment variables in which a launcher (torchrun, mpirun, ...) says how many processes it started."""


def launched_processes(env: dict[str, str]) -> int | None:
    """How many processes the launcher's environment says it started: the largest of
    :data:`LAUNCHER_SIZE_VARS`; 0 for ``accelerate launch --cpu --num_processes N`` (N > 1), whose simple
    launcher starts one plain process and says so only by setting MASTER_ADDR/MASTER_PORT beside
    ACCELERATE_USE_CPU (accelerate/utils/launch.py, prepare_simple_launcher_cmd_env), so the N is unknown;
    None when nothing says more than one."""
    sizes = [int(env[k]) for k in LAUNCHER_SIZE_VARS if env.get(k, "").strip().isdigit()]
    if sizes and max(sizes) > 1:
        return max(sizes)
    use_cpu = env.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes")
    if use_cpu and "MASTER_ADDR" in env and "MASTER_PORT" in env and not sizes:
        return 0
    return None


def check_launch(num_processes: int, environ: dict[str, str] | None = None) -> None:
    """ConfigError when the launcher started several processes (:func:`launched_processes`) but accelerate
    sees ``num_processes`` == 1: each process would train alone over all the data and they would race on
    the run directory (``accelerate launch --cpu --num_processes N`` does this on CPU). The message gives
    the command that works."""
    import os

    env = dict(os.environ if environ is None else environ)
    started = launched_processes(env)
    if num_processes != 1 or started is None:
        return
    n = str(started) if started else "N"
    what = (f"the launcher started {started} processes" if started else
            "`accelerate launch --cpu --num_processes N` starts plain processes (it sets MASTER_ADDR/MASTER_PORT "
            "and ACCELERATE_USE_CPU, not WORLD_SIZE)")
    raise ConfigError(f"{what} but accelerate sees one process, so every process would train alone into the same run "
                      f"directory. On CPU use `ACCELERATE_USE_CPU=1 torchrun --nproc_per_node {n} -m cli train ...` "
                      f"(gloo); on GPUs `accelerate launch --num_processes {n} -m cli train ...` or torchrun")


def warmup_steps(warmup: float, total: int) -> int:
    """Warmup steps of a run of ``total`` steps: ``warmup`` is a fraction of them when < 1, else a count."""
    n = int(warmup * total) if warmup < 1 else int(warmup)
    return max(1, min(n, total))


def lr_factor(step: int, total: int, warmup_steps: int) -> float:
    """Linear warmup from 1/warmup to 1 over ``warmup_steps``, then cosine to 0 at ``total``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def group_rates(config: TrainConfig) -> dict[str, float]:
    """The learning rate of each parameter group (trainer.training.stages.LR_GROUPS) before the schedule."""
    return {"lora": config.lr, "head": config.head_lr,
            "vision": config.lr if config.vision_lr is None else config.vision_lr}


def param_groups(names: list[str], params: list[torch.nn.Parameter], config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups: the trainable ``params`` (named ``names``) by
    :func:`trainer.training.stages.lr_group`, each at its rate (:func:`group_rates`); groups without a
    parameter are left out. Each group carries its ``name`` (kept in the optimizer's state)."""
    rates = group_rates(config)
    by_group: dict[str, list[torch.nn.Parameter]] = {g: [] for g in LR_GROUPS}
    for n, p in zip(names, params):
        by_group[lr_group(n)].append(p)
    return [{"params": ps, "lr": rates[g], "name": g} for g, ps in by_group.items() if ps]


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


def _finite_params(model: torch.nn.Module) -> bool:
    """Whether every trainable tensor is finite (one device sync, not one per tensor)."""
    flags = [torch.isfinite(p).all() for p in model.parameters() if p.requires_grad]
    return bool(torch.stack(flags).all()) if flags else True


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def _truncate_jsonl(path: Path, max_step: int) -> None:
    """Keep the lines of ``path`` with ``step <= max_step`` (a resumed run rewrites the rest)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= max_step]
    path.write_text("".join(ln + "\n" for ln in keep))


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def _split_counts(data: str) -> dict[str, int] | None:
    """Samples per split from the shards' manifest (None without one)."""
    manifest = Path(data) / "manifest.json"
    if not manifest.is_file():
        return None
    return {k: v.get("count", 0) for k, v in json.loads(manifest.read_text()).get("splits", {}).items()}


def _shards_layout(data: str) -> tuple[str, str]:
    """(cls position, mask position) of the shards' answers (their manifest's options; shards built
    before an option existed put ``<cls>`` after the verdict and the mask tokens after the region)."""
    manifest = Path(data) / "manifest.json"
    options = json.loads(manifest.read_text()).get("options", {}) if manifest.is_file() else {}
    return options.get("cls_position", LEGACY_LAYOUT[0]), options.get("mask_position", LEGACY_LAYOUT[1])


def _new_model_masks(data: str, shards_masks: str) -> str:
    """The mask position of a new model left to the shards: theirs when their manifest records one,
    else the default (shards built before the option, after-region, are moved to it)."""
    manifest = Path(data) / "manifest.json"
    recorded = manifest.is_file() and "mask_position" in json.loads(manifest.read_text()).get("options", {})
    return shards_masks if recorded else DEFAULT_MASK_POSITION


def latest_checkpoint(run: Path) -> Path | None:
    """The newest resumable state of ``run``: of its ``checkpoint-<step>/`` and ``last/`` (a finished
    run's end state) that hold a trainer state, the one with the most steps (``last`` on a tie), or None."""
    found = []
    for p in [*run.glob("checkpoint-*"), run / "last"]:
        state = p / "trainer_state" / "state.json"
        if state.is_file():
            found.append((json.loads(state.read_text())["step"], p.name == "last", p))
    return max(found)[2] if found else None


class _Run:
    """State of one training run (kept together so checkpoints can save and restore it)."""

    def __init__(self, config: TrainConfig, log: Callable[[str], None]):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.config, self.log = config, log
        self.dir = Path(config.out)
        mp = config.mixed_precision
        if mp == "auto":
            mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
        self.acc = Accelerator(mixed_precision=mp)
        check_launch(self.acc.num_processes)
        set_seed(config.seed)  # dropout (LoRA) draws from torch's default generator; saved in checkpoints
        self.main = self.acc.is_main_process
        self.resume_from = latest_checkpoint(self.dir) if config.resume else None
        if config.resume and self.resume_from is None:
            raise ConfigError(f"--resume: {self.dir} has no checkpoint-<step>/ with a trainer state")

        # data census first: a data error is said before the (minutes-long, for a real backbone) model load
        self._census(config)

        # model
        source = self.resume_from or config.init_from
        shards_cls, shards_masks = _shards_layout(config.data)
        try:
            if source is not None:
                model, processor = load_checkpoint(source)
                config.check_model_options(model.config.to_dict(), source)  # an explicit contradiction is refused
            else:
                self._check_new_model(config)
                model, processor = build_forensics_model(config.base_model, config.sam,
                                                         mask_decoder=config.mask_decoder or "sam",
                                                         hidden_layer="last" if config.hidden_layer is None else config.hidden_layer,
                                                         seed=config.seed, cls_position=config.cls_position or shards_cls,
                                                         mask_position=config.mask_position or _new_model_masks(config.data, shards_masks),
                                                         expert=config.model_expert(None), dtype=config.dtype or "auto",
                                                         **effective_encoder_options(config, None))
        except ModelNotAvailable as e:
            raise ConfigError(str(e)) from None
        if self.main:
            self.log(f"model: backbone and SAM encoder weights in {model.config.dtype}, trainable tensors in float32"
                     + (" (the checkpoint's)" if source is not None else
                        " (--dtype auto)" if config.dtype in (None, "auto") else ""))
        config.adopt_model(model.config.to_dict())  # RUN/config.yaml says what was built
        config.check_fingerprints(model.config.expert)  # prnu needs its fingerprints, whatever built the model
        self.cls_position, self.mask_position = config.cls_position, config.mask_position
        if self.main and self.mask_position != shards_masks:
            self.log(f"mask position: the shards put <mask_1..32> {shards_masks}, the model {self.mask_position}; "
                     "every training answer is moved to the model's place")
        if self.main and self.cls_position != shards_cls:
            self.log(f"cls position: the shards put <cls> {shards_cls}, the model {self.cls_position}; "
                     "every training answer is moved to the model's place")
        setup_stage(model, config.stage, lora_r=config.lora_r, lora_alpha=config.lora_alpha,
                    lora_dropout=config.lora_dropout, seed=config.seed)
        if config.gradient_checkpointing:
            model.qwen.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        manifest = Path(config.data) / "manifest.json"
        if manifest.is_file():  # infer at the resolution the shards were built in
            frame = json.loads(manifest.read_text())["options"]
            set_image_frame(processor, frame["min_pixels"], frame["max_pixels"])
        self.processor = processor
        self.report = trainable_report(model, config.stage)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]

        # data: the model's side of the pipeline (the census was taken before the model load)
        opts = self.data_opts
        opts.sam_size = model.mask_decoder.image_size if isinstance(model.mask_decoder, SamMaskDecoder) else None
        opts.mask_size = (config.mask_size, config.mask_size) if config.mask_size else tuple(model.config.mask_size)
        opts.cls_position, opts.mask_position, opts.expert = self.cls_position, self.mask_position, model.config.expert
        self.data_opts.sam_cache = self._find_sam_cache(model, config)
        steps_per_epoch = self.steps_per_epoch
        self.total_steps = config.max_steps or config.epochs * steps_per_epoch
        self.data_opts.block_mask = BlockMaskConfig(  # the schedule's clock: data position over the run's length

            share=config.block_mask, size=config.block_mask_size, ramp=config.block_mask_ramp,
            epoch_micro_batches=max(1, self.counts["global_micro_batches"]),
            run_epochs=self.total_steps / steps_per_epoch)
        previous_max, previous_epochs = getattr(config, "previous_end", (config.max_steps, config.epochs))
        self.planned_steps = previous_max or previous_epochs * steps_per_epoch  # before a --resume moved the end
        self.warmup_steps = warmup_steps(config.warmup, self.planned_steps)
        val_urls = shard_urls(config.data, "val")
        self.val = validation_samples(val_urls, self.data_opts, config.val_samples) if val_urls else []
        if self.main and config.fingerprints:
            self.log(fingerprint_census(self.val, config.fingerprints))
        held = _split_counts(config.data)
        if self.main:
            for note in self.counts["notes"]:
                self.log(f"data: {note}")
            self.log(f"data: training on {self.counts['real']} real + {self.counts['fake']} fake samples "
                     f"({self.counts['micro_batches']} balanced micro-batches an epoch: balanced = as many real as "
                     f"fake, {self.counts['balanced']} samples; the larger class's surplus waits for the next epoch) "
                     f"with templates {','.join(config.effective_templates)}"
                     + (f", of {held['train']} samples of every template in the train split" if held else "")
                     + f"; validating on {len(self.val)}" + (f" of {held['val']} in the val split" if held else ""))

        # optimisation
        self.state: dict[str, Any] = {"step": 0, "epoch": 0, "consumed": 0, "best_score": None, "best_step": None,
                                      "bad_evals": 0, "skipped": 0, "stopped_early": False,
                                      "total_steps": self.planned_steps, "warmup_steps": self.warmup_steps}
        optimizer = torch.optim.AdamW(param_groups(self.names, self.params, config), weight_decay=config.weight_decay)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer.optimizer if hasattr(self.optimizer, "optimizer") else self.optimizer, self._lr_factor)
        self.queue = EmbeddingQueue(size=config.loss.queue_size)
        self.thresholds: dict[str, Any] = {**DEFAULT_THRESHOLDS, "n_val": 0,
                                           "why": "no validation ran before this checkpoint"}
        self.text_chance = text_chance(model.lm_head.weight.shape[0])
        self.adv = AdversarialConfig(share=config.effective_adv_share, method=config.adv_method,
                                     eps=config.adv_eps, alpha=config.adv_alpha, steps=config.adv_steps)
        ip = processor.image_processor
        self.image_mean, self.image_std = tuple(ip.image_mean), tuple(ip.image_std)
        if self.resume_from is not None:
            self._load_state(self.resume_from / "trainer_state")
            self._extend_to(self.total_steps)

    # -- checks before the model load ----------------------------------------------------------

    def _census(self, config: TrainConfig) -> None:
        """The train shards and the epoch's balanced micro-batches, counted from the shards alone (nothing
        about the model is needed): ConfigError when no optimizer step can see both classes."""
        self.data_opts = DataOptions(
            seed=config.seed, batch_size=config.batch_size, templates=tuple(config.effective_templates),
            shuffle_buffer=config.shuffle_buffer, balance_buffer=config.balance_buffer,
            rank=self.acc.process_index, world_size=self.acc.num_processes, workers=config.num_workers,
            fingerprints=config.fingerprints,
            augment=AugmentConfig(prob=config.effective_aug_prob, jpeg_quality=tuple(config.aug_jpeg_quality),
                                  resize_scale=tuple(config.aug_resize_scale), noise_std=tuple(config.aug_noise_std),
                                  prompt_prob=config.effective_prompt_prob,
                                  inference_prompt_share=config.inference_prompt_share))
        self.train_urls = shard_urls(config.data, "train")
        if not self.train_urls:
            raise ConfigError(f"--data: {config.data} has no train-*.tar shards")
        self.counts = count_epoch(self.train_urls, self.data_opts)
        self.steps_per_epoch, self.dropped = epoch_steps(self.counts["common"], config.grad_accum, config.batch_size)
        if self.steps_per_epoch < 1:
            census = describe_census(split_census(self.train_urls))
            fixes = ["more samples in --data"] + (["--batch-size 2"] if config.batch_size == 1 else [])
            if config.templates is None or set(config.effective_templates) != set(TEMPLATES):
                fixes.append(f"--templates {','.join(TEMPLATES)} (stage {config.stage} keeps "
                             f"{','.join(config.effective_templates)})")
            raise ConfigError(
                f"--data: one epoch gives {self.counts['micro_batches']} balanced micro-batch(es) "
                f"({self.counts['real']} real, {self.counts['fake']} fake with templates "
                f"{','.join(config.effective_templates)}; the train split holds {census})"
                + (f", {self.counts['common']} on every one of {self.acc.num_processes} processes"
                   if self.acc.num_processes > 1 else "")
                + ": no optimizer step that sees both classes can be made. Fix: " + ", or ".join(fixes))

    def _check_new_model(self, config: TrainConfig) -> None:
        """Before a new model loads: relative --base-model/--sam paths stored resolved (said in the log), and
        --hidden-layer checked against the backbone's config.json (ConfigError naming the range)."""
        for name, builtin in (("base_model", BACKBONE_BUILDERS), ("sam", SAM_SPECS)):
            given = getattr(config, name)
            resolved = resolve_model_path(given, builtin)
            if resolved != given:
                setattr(config, name, resolved)
                if self.main:
                    self.log(f"--{name.replace('_', '-')} {given}: stored as {resolved} (resolved, so later stages, "
                             "predict, eval and export find it from any working directory)")
        if config.hidden_layer not in (None, "last"):
            try:
                check_hidden_layer(config.hidden_layer, backbone_layers(config.base_model))
            except ValueError as e:
                raise ConfigError(str(e)) from None

    # -- the learning-rate schedule -------------------------------------------------------------

    def _lr_factor(self, step: int) -> float:
        """The LR multiplier at ``step`` (:func:`lr_factor` over the run's current end; the warmup is the
        one the run started with)."""
        return lr_factor(step, self.state["total_steps"], self.warmup_steps)

    def _extend_to(self, total: int) -> None:
        """Move a resumed run's end to ``total`` steps (``--max-steps``/``--epochs`` changed). The cosine is
        recomputed for the new length, as if the run had been planned that long: from the resume step on,
        the LR follows the longer schedule (a finished run's LR rises back to that schedule's value)."""
        st = self.state
        st.setdefault("total_steps", self.planned_steps)  # checkpoints written before runs could be extended
        self.warmup_steps = st.setdefault("warmup_steps", self.warmup_steps)
        if total == st["total_steps"]:
            return
        if total < st["step"]:
            raise ConfigError(f"--resume: the run has made {st['step']} steps; a new end of {total} steps "
                              f"(--max-steps/--epochs) is before that")
        if st["stopped_early"]:
            raise ConfigError(f"--resume: the run stopped early at step {st['step']} (--patience); a new end "
                              "would train past the point validation chose; start a new run with --init-from RUN/best")
        if self.main:
            self.log(f"resume: the run's end moves from step {st['total_steps']} to {total}; from step {st['step']} "
                     f"on the learning rate follows the cosine of a {total}-step run")
        st["total_steps"] = total
        factor = self._lr_factor(st["step"])  # the next step's LR, under the new length
        groups = self.scheduler.optimizer.param_groups
        for group, base in zip(groups, self.scheduler.base_lrs):
            group["lr"] = base * factor
        self.scheduler._last_lr = [g["lr"] for g in groups]

    def _group_lrs(self) -> dict[str, float]:
        """This step's learning rates: ``lr`` (LoRA on the LLM, logged in every stage), ``lr_head`` and, when
        the vision tower or SAM encoder trains, ``lr_vision``: each group's rate times the schedule's factor."""
        sched = self.scheduler
        factor = sched.get_last_lr()[0] / sched.base_lrs[0]
        rates = group_rates(self.config)
        names = [g.get("name") for g in sched.optimizer.param_groups]
        out = {"lr": rates["lora"] * factor, "lr_head": rates["head"] * factor}
        if "vision" in names:
            out["lr_vision"] = rates["vision"] * factor
        return out

    @property
    def unwrapped(self) -> ForensicsModel:
        return self.acc.unwrap_model(self.model)

    # -- checkpoints ----------------------------------------------------------------------------

    def _save_model(self, final: Path, with_state: bool) -> None:
        if not _finite_params(self.unwrapped):
            raise RuntimeError(f"refusing to write {final}: a trainable tensor is not finite")
        self.acc.wait_for_everyone()
        if self.main:
            tmp = final.with_name(final.name + ".tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            save_checkpoint(self.unwrapped, self.processor, tmp)
            save_thresholds(tmp, self.thresholds)
            if with_state:
                self._save_state(tmp / "trainer_state")
            _replace_dir(tmp, final)
        self.acc.wait_for_everyone()

    def _save_state(self, d: Path) -> None:
        d.mkdir(parents=True)
        named = dict(zip(self.names, self.params))
        save_file({k: v.detach().cpu().contiguous() for k, v in named.items()}, str(d / "trainable.safetensors"))
        torch.save(self.optimizer.state_dict(), d / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), d / "scheduler.pt")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
        if self.queue.embeddings is not None:
            rng["queue_embeddings"] = self.queue.embeddings.cpu().contiguous()
            rng["queue_labels"] = self.queue.labels.cpu().contiguous()
        save_file(rng, str(d / "rng_queue.safetensors"))
        (d / "state.json").write_text(json.dumps(self.state, indent=2))

    def _load_state(self, d: Path) -> None:
        tensors = load_file(str(d / "trainable.safetensors"))
        if sorted(tensors) != sorted(self.names):
            raise ValueError(f"{d}: its trainable parameters differ from this stage's")
        with torch.no_grad():
            for n, p in zip(self.names, self.params):
                p.copy_(tensors[n].to(p.device))
        saved = torch.load(d / "optimizer.pt", weights_only=True, map_location="cpu")
        mine = [g.get("name") for g in self.optimizer.param_groups]
        theirs = [g.get("name") for g in saved["param_groups"]]
        if mine != theirs:
            raise ConfigError(f"--resume: {d.parent} was written with the optimizer groups "
                              f"{theirs if any(theirs) else 'one learning rate for every parameter (before --head-lr)'}"
                              f", this run has {mine}: it cannot continue exactly. Start a new run from it "
                              f"with --init-from {d.parent}")
        self.optimizer.load_state_dict(saved)
        self.scheduler.load_state_dict(torch.load(d / "scheduler.pt", weights_only=True))
        rng = load_file(str(d / "rng_queue.safetensors"))
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(rng["cuda"]))
        if "queue_embeddings" in rng:
            self.queue.embeddings, self.queue.labels = rng["queue_embeddings"], rng["queue_labels"]
        self.state.update(json.loads((d / "state.json").read_text()))
        self.thresholds = load_thresholds(d.parent)  # the latest validation's, kept across the resume

    def _find_sam_cache(self, model: ForensicsModel, config: TrainConfig) -> dict[str, str] | None:
        """The train shards' SAM embedding files for this model's encoder (trainer.training.sam_cache),
        said in the run's output; None when off (--no-sam-cache), without SAM, or with a training encoder."""
        dec = model.mask_decoder
        if not isinstance(dec, SamMaskDecoder):
            return None
        say = self.log if self.main else (lambda _: None)
        if not config.sam_cache:
            say("sam cache: off (--no-sam-cache): the encoder embeds every image")
            return None
        if dec.train_image_encoder:  # said even for the tiny SAM: the option is not honoured, not a hint to cache
            say("sam cache: not used: the SAM image encoder trains, so stored embeddings would be stale")
            return None
        fingerprint = encoder_fingerprint(dec.image_encoder)
        found, notes = find_caches(self.train_urls, dec.spec, fingerprint)
        for note in notes:
            say(f"sam cache: {note}")
        tag = cache_tag(dec.spec.name, fingerprint)
        if not found and dec.spec.name == "tiny":
            return None  # the tiny test SAM embeds an image in no time: no hint to cache it
        say(f"sam cache: {len(found)} of {len(self.train_urls)} train shard(s) have this SAM's embeddings "
            f"(*.sam-{tag}.safetensors)" + ("; used for every image that augmentation and block masking leave "
                                            "unchanged (metrics.jsonl: sam_cached)" if found else
                                            f"; `forgery cache-embeddings {config.data} --sam {config.sam or 'SAM'}` "
                                            "writes them" + ("" if dec.encoder_dtype == torch.float32 else
                                                             f" for a float32 encoder (--dtype float32); this run's "
                                                             f"encoder is {model.config.dtype}")))
        return found or None

    # -- one optimizer step ---------------------------------------------------------------------

    def _step(self, group: list[dict]) -> dict[str, Any]:
        cfg = self.config
        step = self.state["step"]
        sums = dict.fromkeys(TERMS, 0.0)
        chance = dict.fromkeys(CHANCE_TERMS, 0.0)
        total = 0.0
        bad = False
        n_adv = 0
        saved_queue = (self.queue.embeddings, self.queue.labels)
        started = time.perf_counter()
        n_cached = sum(int(b["sam_cached"].sum()) for b in group if "sam_cached" in b)
        for m, batch in enumerate(group):
            batch = _to_device(batch, self.acc.device)
            if is_adversarial_step(self.adv, cfg.seed, step, m) and "pixel_values" in batch:
                n_adv += 1
                gen = torch.Generator().manual_seed(int(np.random.default_rng([cfg.seed, step, m, 13]).integers(2**62)))
                unwrapped = self.unwrapped

                def attack_loss(pv: torch.Tensor, b: dict = batch) -> torch.Tensor:
                    with self.acc.autocast():
                        return compute_loss(unwrapped, {**b, "pixel_values": pv}, cfg.loss, None).total

                ip = self.processor.image_processor
                batch["pixel_values"] = perturb_pixels(batch["pixel_values"], attack_loss, self.adv,
                                                       image_mean=self.image_mean, image_std=self.image_std,
                                                       generator=gen, temporal_patch_size=ip.temporal_patch_size)
            sync = m == len(group) - 1
            ctx = contextlib.nullcontext() if sync else self.acc.no_sync(self.model)
            with ctx:
                with self.acc.autocast():
                    br = compute_loss(self.model, batch, cfg.loss, self.queue)
                loss = br.total
                if not bool(torch.isfinite(loss.detach())):
                    bad = True
                self.acc.backward(loss / len(group))
            total += float(loss.detach())
            for k in TERMS:
                sums[k] += br.parts[k]
            for k in CHANCE_TERMS:
                chance[k] += br.chance.get(k, 0.0)
        flag = torch.tensor([1.0 if bad else 0.0], device=self.acc.device)
        bad = bool(self.acc.reduce(flag, reduction="sum").item() > 0)
        grad_norm = float("nan")
        if not bad:
            grad_norm = float(self.acc.clip_grad_norm_(self.params, cfg.max_grad_norm))
            bad = not math.isfinite(grad_norm)
        reason = None
        if bad:
            reason = "non-finite loss" if not math.isfinite(total) else "non-finite gradient"
            self.optimizer.zero_grad(set_to_none=True)
            self.queue.embeddings, self.queue.labels = saved_queue
            self.state["skipped"] += 1
        else:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        rates = self._group_lrs()
        self.scheduler.step()
        n = len(group)
        elapsed = time.perf_counter() - started
        blocks = torch.tensor([sum(1.0 - float(b["pixel_valid"].mean()) for b in group if "pixel_valid" in b),
                               sum(float((b["evidence_weight"] == 0).sum()) for b in group if "evidence_weight" in b),
                               float(n_cached)],
                              device=self.acc.device)
        blocks = self.acc.reduce(blocks, reduction="sum").tolist()
        record = {"step": step + 1, "epoch": self.state["epoch"], "loss": total / n,
                  **{k: v / n for k, v in sums.items()},
                  **{f"{k}_chance": v / n for k, v in chance.items()}, "text_chance": self.text_chance,
                  **rates, "grad_norm": grad_norm,
                  "adversarial": n_adv, "samples_per_s": n * cfg.batch_size * self.acc.num_processes / elapsed,
                  "block_share": blocks[0] / (n * self.acc.num_processes), "evidence_dropped": int(blocks[1])}
        if self.data_opts.sam_cache:  # SAM embeddings read from the disk cache instead of encoded (all ranks)
            record["sam_cached"] = int(blocks[2])
        if reason:
            record["skipped"] = reason
        return record

    # -- main loop ------------------------------------------------------------------------------

    def run(self, on_step: Callable[[int], None] | None = None) -> TrainResult:
        cfg, st = self.config, self.state
        if self.main:
            self.dir.mkdir(parents=True, exist_ok=True)
            cfg.save(self.dir / "config.yaml")
            (self.dir / "trainable.json").write_text(json.dumps(self.report, indent=2))
            (self.dir / "data.json").write_text(json.dumps(
                {**self.counts, "templates": cfg.effective_templates, "val_samples": len(self.val),
                 "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                 "steps_per_epoch": self.steps_per_epoch, "dropped_micro_batches": self.dropped}, indent=2))
            for name in ("metrics.jsonl", "val.jsonl"):
                _truncate_jsonl(self.dir / name, st["step"])
            self.log(f"stage {cfg.stage}: {STAGES[cfg.stage].description}; "
                     f"{self.report['trainable_total']:,} of {self.report['total']:,} parameters train")
        self._samples_log = self.dir / "samples" / f"rank-{self.acc.process_index}.jsonl"
        self.acc.wait_for_everyone()  # the run directory exists
        self._samples_log.parent.mkdir(exist_ok=True)
        _truncate_jsonl(self._samples_log, st["step"])
        writer = None
        if self.main:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.dir / "tensorboard"), purge_step=st["step"] or None)
        bar = None
        if self.main and cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=st["step"], desc=f"stage {cfg.stage}", dynamic_ncols=True)
        dataset = ShardBatches(self.train_urls, self.processor, self.data_opts)
        self._clock = (time.perf_counter(), st["step"])  # for the progress lines' ETA
        stop = st["step"] >= self.total_steps
        while not stop:
            dataset.epoch, dataset.start = st["epoch"], st["consumed"]
            limit = self._epoch_limit(st["epoch"])
            group: list[dict] = []
            steps_before, start = st["step"], st["consumed"]
            for batch in make_loader(dataset, cfg.num_workers):
                if limit is not None and st["consumed"] + len(group) >= limit:
                    break  # DDP: this rank's micro-batches past the count every rank has
                group.append(batch)
                if len(group) == cfg.grad_accum:
                    stop = self._take_step(group, writer, bar, on_step)
                    group = []
                    if stop:
                        break
            if not stop and group and sees_both_classes(len(group), cfg.batch_size):
                stop = self._take_step(group, writer, bar, on_step)  # the epoch's trailing partial group
            if not stop:
                if st["step"] == steps_before and start == 0:
                    raise ConfigError("an epoch of the training data gives no optimizer step that sees both classes "
                                      "(add data, or use --batch-size 2)")
                st["epoch"] += 1
                st["consumed"] = 0
        if bar is not None:
            bar.close()
        if st["best_step"] is None and not self.val:
            val_urls = shard_urls(cfg.data, "val")
            why = (f"the val split holds {describe_census(split_census(val_urls))}; validation keeps templates "
                   f"{','.join(cfg.effective_templates)} and needs both labels" if val_urls else "--data has no val split")
            self.log(f"no validation samples ({why}): RUN/best is the final model")
            self.log("no validation split: no validation ran, thresholds stay 0.5 (thresholds.json: calibrated false)")
            self._save_model(self.dir / "best", with_state=False)
        self._save_model(self.dir / "last", with_state=True)
        if self.main:
            self._summarise_learning()
        result = TrainResult(self.dir, st["step"], st["best_step"], st["best_score"], st["stopped_early"], st["skipped"])
        if self.main:
            (self.dir / "summary.json").write_text(json.dumps(
                {"steps": st["step"], "best_step": st["best_step"], "best_score": st["best_score"],
                 "stopped_early": st["stopped_early"], "skipped_steps": st["skipped"]}, indent=2))
        if writer is not None:
            writer.close()
        return result

    def _summarise_learning(self) -> None:
        """Log whether each watched loss left its chance value (trainer.training.learning) and write the
        summary to RUN/learning.json, RUN/best and RUN/last."""
        path = self.dir / "metrics.jsonl"
        records = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
        summary = learning_summary(records, self.config.head_lr)
        terms = "; ".join(f"{k} {t['first'] or math.nan:.3g} -> {t['last']:.3g} (chance {t['chance']:.3g})"
                          for k, t in summary["terms"].items())
        if terms:
            self.log(f"learning (mean of the first and last {summary['window']} logged steps): {terms}")
        for message in summary["messages"]:
            self.log(message)
        for folder in (self.dir, self.dir / "best", self.dir / "last"):
            if folder.is_dir():
                write_learning(summary, folder)

    def _epoch_limit(self, epoch: int) -> int | None:
        """Micro-batches this rank takes in ``epoch``: under DDP the count every rank has, else all (None).
        Counted from the shard counts (trainer.training.data.epoch_plan), nothing read."""
        if self.acc.num_processes == 1:
            return None
        return count_epoch(self.train_urls, self.data_opts, epoch)["common"]

    def _take_step(self, group: list[dict], writer: Any, bar: Any, on_step: Callable[[int], None] | None) -> bool:
        """One optimizer step on ``group``, its logs, validation and checkpoint; True = the run stops."""
        st = self.state
        record = self._step(group)
        st["step"] += 1
        st["consumed"] += len(group)
        with open(self._samples_log, "a") as f:  # which samples this rank trained on, per step
            f.write(json.dumps({"step": st["step"], "epoch": st["epoch"], "index": [b["index"] for b in group],
                                "keys": [k for b in group for k in b["keys"]]}) + "\n")
        self._after_step(record, writer, bar)
        stop = self._evaluate_and_save(writer)
        if on_step is not None:
            on_step(st["step"])
        return stop or st["step"] >= self.total_steps

    def _after_step(self, record: dict, writer: Any, bar: Any) -> None:
        step = record["step"]
        if record.get("skipped"):
            warnings.warn(f"step {step}: {record['skipped']}; optimizer step skipped", RuntimeWarning, stacklevel=2)
        if self.main and (step % self.config.log_every == 0 or record.get("skipped")):
            with open(self.dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(_jsonable(record)) + "\n")
            for k in ("loss", *TERMS, "lr", "lr_head", "lr_vision", "grad_norm"):
                if k in record and math.isfinite(record[k]):
                    writer.add_scalar(f"train/{k}", record[k], step)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{record[k]:.3g}" + (f"/{record[k + '_chance']:.3g}" if record.get(k + "_chance") else "")
                             for k in ("loss", *TERMS)}, refresh=False)
        elif self.main and (step % max(1, self.total_steps // PROGRESS_LINES) == 0 or step == self.total_steps):
            self.log(progress_line(self.config.stage, step, self.total_steps, *self._clock, record))

    def _evaluate_and_save(self, writer: Any) -> bool:
        """Validation, best/early stopping and periodic checkpoints after a step; True = stop."""
        cfg, st = self.config, self.state
        step = st["step"]
        stop = False
        last = step >= self.total_steps
        if not _finite_params(self.unwrapped):
            raise RuntimeError(f"step {step}: a trainable tensor is not finite; refusing to validate or to write "
                               f"a checkpoint (the newest good one is kept)")
        if self.val and ((cfg.eval_every and step % cfg.eval_every == 0) or last):
            result = None
            if self.main:
                result = validate(self.unwrapped, self.processor, self.val, cfg)
                line = {"step": step, **result}
                self.thresholds = {**result["thresholds"], "step": step}
                with open(self.dir / "val.jsonl", "a") as f:
                    f.write(json.dumps(_jsonable(line)) + "\n")
                for k, v in {**{f"val/image_{k}": v for k, v in result["image"].items()},
                             **{f"val/pixel_{k}": v for k, v in result["pixel"].items()}}.items():
                    if isinstance(v, (int, float)) and v is not None and math.isfinite(v):
                        writer.add_scalar(k, v, step)
                if result["collapsed"]:
                    warnings.warn(f"step {step}: validation predictions collapsed to one class "
                                  f"({result['collapsed_to']}); the notes saw mixed training collapse to 'real'",
                                  RuntimeWarning, stacklevel=2)
                im = result["image"]

                def f(v: Any) -> str:
                    return "n/a" if v is None else f"{v:.3f}"

                th = result["thresholds"]
                self.log(f"step {step}: val ({im.get('n_fake', 0)} forged + {im.get('n_real', 0)} authentic): image AUC "
                         f"{f(im['auc'])}, balanced accuracy {f(im.get('balanced_accuracy'))}, pixel F1 "
                         f"{f(result['pixel']['f1'])} (selection score {result['score']:.3f}); calibrated thresholds "
                         f"image {th['image']:.3f} (balanced accuracy {f(th['at_calibrated']['image_balanced_accuracy'])}), "
                         f"pixel {th['pixel']:.2f} (F1 {f(th['at_calibrated']['pixel_f1'])})"
                         + (f"; COLLAPSED to {result['collapsed_to']}" if result.get("collapsed") else ""))
            score = self._broadcast_score(result["score"] if result else 0.0)
            if st["best_score"] is None or score > st["best_score"] + 1e-9:
                st["best_score"], st["best_step"], st["bad_evals"] = score, step, 0
                self._save_model(self.dir / "best", with_state=False)
            else:
                st["bad_evals"] += 1
                if cfg.patience and st["bad_evals"] >= cfg.patience:
                    self.log(f"early stopping at step {step}: no improvement in {cfg.patience} evaluations "
                             f"(best {st['best_score']:.4f} at step {st['best_step']})")
                    st["stopped_early"] = stop = True
        if cfg.save_every and step % cfg.save_every == 0:
            self._save_model(self.dir / f"checkpoint-{step}", with_state=True)
        return stop

    def _broadcast_score(self, score: float) -> float:
        t = torch.tensor([score if self.main else 0.0], device=self.acc.device)
        return float(self.acc.reduce(t, reduction="sum").item())


def run_training(config: TrainConfig, *, on_step: Callable[[int], None] | None = None,
                 log: Callable[[str], None] = print) -> TrainResult:
    """Train one stage as ``config`` says (see the module docstring); returns what it did.

    With ``config.resume`` the run directory's saved ``config.yaml`` is used
    (:func:`trainer.training.resume.resume_config`: a new ``--max-steps``/``--epochs`` extends the run,
    any other differing option is refused). ``on_step(step)`` is called after each optimizer
    step (after its checkpoint, if one is due). Raises ConfigError for unusable options or data.
    """
    if config.resume:
        config = resume_config(config)
    else:
        out = Path(config.out)
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"--out: {out} is not empty; use --resume to continue that run or choose a new directory")
    config.validate()
    return _Run(config, log).run(on_step)
