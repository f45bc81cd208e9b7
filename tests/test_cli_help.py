"""Every command's --help speaks one style: real metavars, no eaten markup, defaults as click writes them."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def _commands(group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a group (typer vendors click: no isinstance against click's)
            out += _commands(cmd, path + (name,))
        else:
            out.append(path + (name,))
    return out


COMMANDS = _commands(typer.main.get_command(app))


def test_every_command_is_covered():
    names = {" ".join(c) for c in COMMANDS}
    assert {"synth", "build-shards", "audit", "train", "eval", "predict", "demo", "datasets convert"} <= names


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "forgery")
def test_help_is_in_one_style(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    text = result.output
    usage = text.splitlines()[0]
    for name in re.findall(r"[{\[]([^}\]]+)[}\]]", usage):  # {REQUIRED} and [OPTIONAL] arguments
        assert name == name.upper(), usage                      # a metavar, not the parameter's name
    assert "<bool>" not in text and "<list[" not in text  # flags take no value; lists are repeated
    assert not re.search(r"\S \.(\s|$)", text), text     # no stray space before a period
    assert "[, ...]" not in text and "[]" not in text     # no example eaten by markup
    flat = " ".join(text.split())
    for bracket in re.findall(r"(?<=\s)\[[^\[\]]*\]", flat):  # a bracket standing alone, not cuda[:N]
        if bracket.startswith(("[default: ", "[required]")) or bracket in ("[OPTIONS]", "[ARGS]", "[SAMPLES]"):
            continue
        assert re.fullmatch(r"\[[\d.]+, [\d.]+\]", bracket), \
            f"{' '.join(command)}: a default written outside [default: ...]: {bracket}"  # [0, 1] is an interval
