"""The README opens with two commands (main job; tests), and CI runs exactly the test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    """The first two ```bash blocks of the README, each one line."""
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_opens_with_two_commands():
    main_job, tests = readme_commands()
    assert "pip install" in main_job and "forgery demo" in main_job
    assert "pip install" in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = readme_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines


def test_ci_runs_the_main_job_reduced():
    main_job, _ = readme_commands()
    demo = main_job.split("&&")[-1].strip().split(" --out")[0]  # ".venv/bin/forgery demo"
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"{demo} --quick" in ci
