"""The grid of ``forgery ablate``: read, check and expand into cells and the stage runs they need.

Grid YAML (every key but ``axes`` optional)::

    base: {base_model: tiny, sam: tiny, max_steps: 4}   # options of `forgery train`, or a train config YAML path
    stage_options: {2: {max_steps: 2}}                   # options for one stage only
    axes:                                                # option -> values; the first value is the base cell's
      lora_alpha: [32, 8]
      stages: [[1], [1, 2], [1, 2, 3]]                   # the stage chain (default [1])
    mode: product                                        # or one-at-a-time: the base cell + each other value alone
    seeds: [0, 1, 2]
    eval: {split: test, max_new_tokens: 64}              # see EvalSettings

Every option goes to every stage of a chain, except the model options (``MODEL_OPTIONS``: fixed once
stage 1 built the model), which only the first stage gets; later stages start ``--init-from`` the
previous stage's run; the LoRA options (``LORA_OPTIONS``) skip stage 1, which trains no LoRA (unless the
cell trains the vision tower's LoRA, ``train_vision: lora``, built at stage 1). A cell of the LLM-free control
(``language_model: none``) trains stage 1 only: its ``stages`` value is set to [1] (stages 2 and 3 adapt the
language model it lacks). ``data``, ``out``, ``init_from``, ``resume``, ``stage`` and ``seed`` are the
ablation's to set (``--data``, ``--out``, ``stages``, ``seeds``) and are refused in a grid.

A stage run is identified by its options, its seed and its parent run (``StageRun.key``), so cells
that share a prefix of their chain (the stage-1 run of ``[1, 2]`` and ``[1, 2, 3]``) share those
runs: each is trained once, in the directory of the first cell that needs it.

Every run is checked by the checker ``forgery train`` uses (``load_config`` + ``TrainConfig.validate``)
before anything trains; a stage after the first is checked as a resumed run would be, since its
``--init-from`` (the previous stage's run) does not exist yet.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


from trainer.training.config import MODEL_OPTIONS, ConfigError, TrainConfig, load_config, read_mapping

LORA_OPTIONS = ("lora_r", "lora_alpha", "lora_dropout")
"""Options stage 1 does not use (it trains no LoRA: trainer.training.stages); they go to later stages only."""
RESERVED = ("data", "out", "init_from", "resume", "stage", "seed")
"""Options the ablation sets itself (from --data, --out, the stage chain and the seeds)."""
MODES = ("product", "one-at-a-time")


class GridError(ValueError):
    """A grid that cannot run (the CLI maps it to exit code 2); the message names the cell and option."""


@dataclass(frozen=True)
class EvalSettings:
    """How every cell is evaluated (the same for all): the split, how many samples (None: all),
    the decision threshold, the longest generated answer, images per call, the device."""

    split: str = "test"
    limit: int | None = None
    threshold: float = 0.5
    max_new_tokens: int = 64
    batch_size: int = 1
    device: str = "auto"


@dataclass(frozen=True)
class StageRun:
    """One training run: ``stage`` of a chain, with ``options`` (TrainConfig fields as `forgery train`
    gets them, without data/out/init_from), after ``parent`` (the previous stage's key, None for the
    first); ``owner``: the cell whose directory holds it."""

    key: str
    stage: int
    seed: int
    options: dict[str, Any]
    parent: str | None
    owner: str

    def directory(self, out: Path) -> Path:
        return out / "cells" / self.owner / f"seed-{self.seed}" / f"stage{self.stage}"


@dataclass
class Cell:
    """One point of the grid: ``values`` (axis -> value), its stage chain, per seed the keys of its runs."""

    id: str
    values: dict[str, Any]
    stages: tuple[int, ...]
    chains: dict[int, list[str]] = field(default_factory=dict)

    def directory(self, out: Path, seed: int) -> Path:
        return out / "cells" / self.id / f"seed-{seed}"


@dataclass
class Grid:
    """The expanded grid: cells (the base cell first), the seeds, every run, the eval settings."""

    cells: list[Cell]
    seeds: list[int]
    runs: dict[str, StageRun]
    eval: EvalSettings
    axes: dict[str, list[Any]]
    mode: str
    source: str

    @property
    def base(self) -> Cell:
        return self.cells[0]


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(_shown(v) for v in value)
    if isinstance(value, dict):
        return "+".join(f"{k}-{_shown(v)}" for k, v in sorted(value.items()))
    return str(value)


def cell_id(values: dict[str, Any]) -> str:
    """A directory-safe name of a cell: ``axis=value`` joined by ``__`` (lists joined by ``+``)."""
    if not values:
        return "base"
    return "__".join(re.sub(r"[^A-Za-z0-9._+=-]", "_", f"{k}={_shown(v)}") for k, v in values.items())


def _options(raw: Any, where: str, root: Path) -> dict[str, Any]:
    """A mapping of train options, or a train config YAML read by ``load_config`` (names checked there)."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        path = Path(raw) if Path(raw).is_absolute() else root / raw
        try:
            loaded = load_config(path)
        except ConfigError as e:
            raise GridError(f"{where}: {e}") from None
        opts = {k: getattr(loaded, k) for k in loaded.given if not k.startswith("loss.")}
        loss = {k[5:]: getattr(loaded.loss, k[5:]) for k in loaded.given if k.startswith("loss.")}
        return {**opts, **({"loss": loss} if loss else {})}
    if not isinstance(raw, dict):
        raise GridError(f"{where}: expected a mapping of `forgery train` options or a config YAML path, got {raw!r}")
    return {str(k).replace("-", "_"): v for k, v in raw.items()}


def _refuse_reserved(opts: dict[str, Any], where: str) -> None:
    taken = [k for k in opts if k in RESERVED]
    if taken:
        raise GridError(f"{where}: {', '.join(taken)} are set by the ablation (--data, --out, the `stages` axis, "
                        "`seeds`); remove them")


def _stages(value: Any, where: str) -> tuple[int, ...]:
    chain = value if isinstance(value, (list, tuple)) else [value]
    if not chain or not all(isinstance(s, int) and s in (1, 2, 3) for s in chain) \
            or list(chain) != sorted(set(chain)) or chain[0] != 1:
        raise GridError(f"{where}: a stage chain is an increasing list of stages 1-3 starting at 1 "
                        f"(e.g. [1, 2]), got {value!r}")
    return tuple(chain)


def _cells(axes: dict[str, list[Any]], mode: str) -> list[dict[str, Any]]:
    names = list(axes)
    if mode == "product":
        return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]
    base = {n: axes[n][0] for n in names}
    return [base] + [{**base, n: v} for n in names for v in axes[n][1:]]


def _llm_free_chain(values: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """A cell of the LLM-free control (``language_model: none``, in the cell or the base) trains stage 1
    only: stages 2 and 3 adapt the language model it does not have. Its ``stages`` value becomes [1], so
    its name and table row say the chain it trains."""
    if values.get("language_model", base.get("language_model")) != "none":
        return values
    return {**values, "stages": (1,)} if "stages" in values else values


def _key(stage: int, seed: int, options: dict[str, Any], parent: str | None) -> str:
    text = json.dumps({"stage": stage, "seed": seed, "options": options, "parent": parent}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stage_config(run: StageRun, data: Path, out: Path, init_from: Path | None) -> TrainConfig:
    """The TrainConfig of ``run`` (``load_config``: defaults < the grid's options)."""
    return load_config(None, {**run.options, "stage": run.stage, "seed": run.seed, "data": str(data),
                              "out": str(run.directory(out)), "init_from": str(init_from) if init_from else None})


def _check(run: StageRun, data: Path, out: Path, cell: Cell, options: dict[str, Any]) -> None:
    """Refuse ``run`` with all the cell's ``options`` (also those its stage does not use) as `forgery train`
    would (GridError naming the cell, the stage and the option)."""
    where = f"cell {cell.id}, stage {run.stage}"
    try:
        cfg = stage_config(StageRun(run.key, run.stage, run.seed, options, run.parent, run.owner), data, out, None)
        if run.parent is not None:
            cfg.resume = True  # its --init-from is the previous stage's run, not trained yet
        cfg.validate()
    except ConfigError as e:
        raise GridError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        set_here = ", ".join(f"{k}={v!r}" for k, v in cell.values.items())
        raise GridError(f"{where}: an option has a value of the wrong kind ({e}); the cell sets {set_here}") from None


def load_grid(grid: str | Path | dict[str, Any], data: str | Path, out: str | Path) -> Grid:
    """Read, check and expand a grid (a YAML path or the mapping it holds); GridError when it cannot run.

    Checks, before anything trains: the grid's keys, each axis (a non-empty list of distinct values),
    the seeds, the eval settings and split, and every stage run of every cell with train's checker.
    """
    root = Path(grid).parent if not isinstance(grid, dict) else Path.cwd()
    source = str(grid) if not isinstance(grid, dict) else "(mapping)"
    if not isinstance(grid, dict):
        try:
            grid = read_mapping(grid, "grid")
        except ConfigError as e:
            raise GridError(str(e)) from None
    unknown = sorted(set(grid) - {"base", "stage_options", "axes", "mode", "seeds", "eval"})
    if unknown:
        raise GridError(f"grid: unknown key(s) {', '.join(unknown)} (base, stage_options, axes, mode, seeds, eval)")
    base = _options(grid.get("base"), "base", root)
    _refuse_reserved(base, "base")
    per_stage: dict[int, dict[str, Any]] = {}
    for stage, raw in (grid.get("stage_options") or {}).items():
        if stage not in (1, 2, 3):
            raise GridError(f"stage_options: stages are 1, 2 or 3, got {stage!r}")
        per_stage[stage] = _options(raw, f"stage_options {stage}", root)
        _refuse_reserved(per_stage[stage], f"stage_options {stage}")
    axes_raw = grid.get("axes") or {}
    if not isinstance(axes_raw, dict):
        raise GridError("axes: expected a mapping of option -> list of values")
    axes: dict[str, list[Any]] = {}
    for name, values in axes_raw.items():
        name = str(name).replace("-", "_")
        if not isinstance(values, list):
            raise GridError(f"axis {name}: expected a list of values, got {values!r}")
        if not values:
            raise GridError(f"axis {name}: an empty axis makes no cell; give it at least one value")
        if name in RESERVED:
            raise GridError(f"axis {name}: set by the ablation; use the `stages` axis and `seeds`")
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
            raise GridError(f"axis {name}: values repeat ({values!r})")
        axes[name] = [_stages(v, f"axis stages, value {v!r}") for v in values] if name == "stages" else values
    mode = grid.get("mode", "product")
    if mode not in MODES:
        raise GridError(f"mode: {', '.join(MODES)}, got {mode!r}")
    seeds = grid.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise GridError(f"seeds: a non-empty list of distinct integers, got {seeds!r}")
    try:
        settings = EvalSettings(**(grid.get("eval") or {}))
    except TypeError:
        names = ", ".join(f.name for f in fields(EvalSettings))
        raise GridError(f"eval: unknown setting(s) in {grid.get('eval')!r} (known: {names})") from None
    from trainer.training.shard_stream import shard_urls

    if Path(data).is_dir() and not shard_urls(data, settings.split):
        raise GridError(f"eval split {settings.split!r}: --data {data} has no such split")

    out = Path(out)
    cells: list[Cell] = []
    runs: dict[str, StageRun] = {}
    for values in _cells(axes, mode):
        cut = _llm_free_chain(values, base)
        cell = Cell(cell_id(cut), cut, tuple(cut.get("stages", (1,))))
        if cut != values and any(c.id == cell.id for c in cells):
            continue  # an LLM-free cell of another chain: the same stage-1 cell, listed once
        if any(c.id == cell.id for c in cells):
            raise GridError(f"cell {cell.id}: two cells get the same name; make the axis values distinct")
        chosen = {k: v for k, v in values.items() if k != "stages"}
        for seed in seeds:
            parent = None
            keys = []
            for i, stage in enumerate(cell.stages):
                given = {**base, **per_stage.get(stage, {}), **chosen}
                if i > 0:  # the model is the checkpoint's
                    given = {k: v for k, v in given.items() if k not in MODEL_OPTIONS}
                given.setdefault("progress", False)
                lora_at_1 = given.get("train_vision") == "lora"  # the vision LoRA is built at stage 1
                opts = {k: v for k, v in given.items() if not (stage == 1 and k in LORA_OPTIONS and not lora_at_1)}
                key = _key(stage, seed, opts, parent)
                if key not in runs:
                    runs[key] = StageRun(key, stage, seed, opts, parent, cell.id)
                if seed == seeds[0]:
                    _check(runs[key], Path(data), out, cell, given)
                keys.append(key)
                parent = key
            cell.chains[seed] = keys
        cells.append(cell)
    return Grid(cells, list(seeds), runs, settings, axes, mode, source)
