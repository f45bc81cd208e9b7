"""The README's step-by-step block runs as written (the newcomer's path), in a scratch folder."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def workflow() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Your own photos, step by step"):]
    return re.search(r"```bash\n(.*?)\n```", section, re.S).group(1).splitlines()


def test_the_block_is_what_a_newcomer_types():
    lines = workflow()
    assert lines[0].startswith(".venv/bin/forgery sample-photos")
    assert any(" train " in line and "--base-model" in line for line in lines)


@pytest.mark.slow
def test_readme_workflow_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for line in workflow():
        args = shlex.split(line)
        assert args[0] == ".venv/bin/forgery"
        cmd = [sys.executable, "-m", "cli", *args[1:]]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        allowed = (0, 1) if args[1] == "audit" else (0,)  # an audit of 10 photos may flag chance
        assert done.returncode in allowed, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert (tmp_path / "out" / "eval" / "report.html").is_file()
