"""What a resumed run keeps and what it may change (``forgery train --resume``).

A resumed run trains what it was training: its saved ``RUN/config.yaml`` is the config. Only the
end (``--max-steps``/``--epochs``) and the progress bar may change; any other option the user gives
that differs is refused with the list of differences, so no option is silently dropped.
"""

from __future__ import annotations

from pathlib import Path

from trainer.training.config import (
    _FIELDS,
    _LOSS_FIELDS,
    ConfigError,
    TrainConfig,
    load_config,
    same_option_value,
    shown_value,
)

RESUME_MAY_CHANGE = ("max_steps", "epochs", "progress", "resume", "out")
"""What ``--resume`` may change: the run's end (``--max-steps``/``--epochs``) and the progress bar."""


def given_options(config: TrainConfig) -> frozenset[str]:
    """The options the user set (YAML file or command line; ``loss.NAME`` for loss weights): those
    :func:`load_config` saw, or for a TrainConfig built in Python the fields that differ from the defaults."""
    given = getattr(config, "given", None)
    if given is not None:
        return given
    default = TrainConfig()
    out = {k for k in _FIELDS if k != "loss" and getattr(config, k) != getattr(default, k)}
    return frozenset(out | {f"loss.{k}" for k in _LOSS_FIELDS if getattr(config.loss, k) != getattr(default.loss, k)})


def resume_config(config: TrainConfig) -> TrainConfig:
    """The config a ``--resume`` of ``config.out`` runs with: the run's saved ``config.yaml``, with a
    new end (``--max-steps``, or ``--epochs`` alone, which then replaces a saved ``--max-steps``) and
    the progress bar taken from ``config``. Any other option that was given and differs from the
    run's is a ConfigError listing every difference (a resumed run cannot change what it trains)."""
    saved_path = Path(config.out) / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"--resume: {config.out} has no config.yaml (not a run directory)")
    saved = load_config(saved_path)
    given = given_options(config)
    differ = []
    for name in sorted(given):
        if name in RESUME_MAY_CHANGE:
            continue
        if name.startswith("loss."):
            k = name[5:]
            mine, theirs = getattr(config.loss, k), getattr(saved.loss, k)
        else:
            mine, theirs = getattr(config, name), getattr(saved, name)
        if mine is not None and not same_option_value(name, mine, theirs):
            differ.append(f"--{name.replace('_', '-').replace('loss.', 'loss-weights ')} {shown_value(mine)} "
                          f"(the run has {shown_value(theirs)})")
    if differ:
        raise ConfigError(f"--resume {config.out}: a resumed run keeps its options; these differ from "
                          f"{saved_path}: " + "; ".join(differ) + ". Leave them out, or start a new run "
                          "(--init-from RUN/last to build on it)")
    saved.resume, saved.progress, saved.out = True, config.progress, config.out
    saved.previous_end = (saved.max_steps, saved.epochs)  # the run's planned end before this resume
    if "max_steps" in given and config.max_steps is not None:
        saved.max_steps = config.max_steps
    elif "epochs" in given:
        saved.epochs, saved.max_steps = config.epochs, None
    saved.given = given
    return saved
