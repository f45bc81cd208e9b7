"""`forgery`: the command-line face of the toolkit.

Thin on purpose: each command parses its options, calls one library function, shows progress
and maps the outcome to an exit code (0 something produced, 1 nothing produced, 2 bad options).
Heavy imports happen inside the commands so `forgery --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Labelled image forgeries, training shards, and a Qwen2.5-VL + SAM forensics model.",
)


# ---------------------------------------------------------------- synth, replay (issue 2)


# ---------------------------------------------------------------- build-shards, inspect, check-shards (issue 4)


# ---------------------------------------------------------------- predict, eval, datasets (issue 7)


if __name__ == "__main__":
    app()
