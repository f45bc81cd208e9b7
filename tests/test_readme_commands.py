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


def python_snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_readme_python_snippets_import_what_exists(assert_snippets_import):
    """Every import in the README's Python examples resolves (names, not just modules)."""
    assert_snippets_import(python_snippets(), "README")


def test_readme_synthesis_snippet_runs(tmp_path):
    """The self-contained README example (synthesis from Python) runs as written, in a folder of photos."""
    import subprocess
    import sys

    from PIL import Image

    from forgery_synth.synthesis.sample_photos import sample_photo_paths

    code = next(s for s in python_snippets() if "synthesize(" in s)
    (tmp_path / "photos").mkdir()
    for name in ("coffee.png", "chelsea.png"):  # splice takes its donor from another photo
        im = Image.open(next(p for p in sample_photo_paths() if p.name == name)).convert("RGB")
        im.resize((160, 107)).save(tmp_path / "photos" / name)
    (tmp_path / "snippet.py").write_text(code)
    subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, check=True, timeout=300,
                   env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    lines = (tmp_path / "out" / "samples" / "index.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all('"splice"' in line for line in lines)
