"""The layout of ARCHITECTURE.md holds: no import circle, forgery_synth stays light, files stay small.

Imports are read from the source (every `import` and `from ... import`, module level, inside
functions and under TYPE_CHECKING alike), so a lazy import that closes a circle is caught too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("forgery_synth", "trainer")
MAX_LINES = 420
LONG_FILES = {
    "cli.py": "every command's options, one after another; no logic (the CLI is thin)",
    "trainer/training/loop.py": "the training run: one class whose steps (resume, step, validate, save) read in order",
}
HEAVY = ("torch", "transformers", "diffusers", "segment_anything", "peft", "accelerate", "trainer")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the two packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports anywhere in its source (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                head = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(head + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    found.add(sub)
                elif base in known:
                    found.add(base)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imported_modules(name, path, known) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_a_circle_and_a_clean_graph():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_relative_imports_are_resolved(tmp_path):
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "x.py").write_text("from .y import thing\nfrom . import z\n")
    got = imported_modules("p.x", pkg / "x.py", {"p", "p.x", "p.y", "p.z"})
    assert got == {"p.y", "p.z"}


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_forgery_synth_never_imports_trainer():
    graph = import_graph()
    bad = {m: sorted(d for d in deps if d.startswith("trainer")) for m, deps in graph.items()
           if m.startswith("forgery_synth")}
    assert not {m: d for m, d in bad.items() if d}


def test_importing_every_forgery_synth_module_pulls_in_no_heavy_library():
    names = sorted(m for m in module_files() if m.startswith("forgery_synth"))
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_package_folder_is_a_package_with_a_docstring():
    for pkg in PACKAGES:
        for folder in [ROOT / pkg, *(p for p in (ROOT / pkg).rglob("*") if p.is_dir() and p.name != "__pycache__")]:
            init = folder / "__init__.py"
            assert init.exists(), f"{folder} has no __init__.py"
            assert ast.get_docstring(ast.parse(init.read_text())), f"{init} says nothing about its folder"


@pytest.mark.parametrize("path", sorted([*(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")), ROOT / "cli.py"]),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_files_stay_small(path):
    rel = str(path.relative_to(ROOT))
    lines = len(path.read_text(encoding="utf-8").splitlines())
    if rel in LONG_FILES:
        assert lines > MAX_LINES, f"{rel} is short now: take it off LONG_FILES"
    else:
        assert lines <= MAX_LINES, f"{rel} has {lines} lines (> {MAX_LINES}): split it along its ideas"


def test_tests_mirror_the_packages():
    """Every test folder names a package folder, and no test imports a helper module by name."""
    folders = {p.name for pkg in PACKAGES for p in (ROOT / pkg).iterdir() if p.is_dir() and p.name != "__pycache__"}
    for folder in (p for p in (ROOT / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert folder.name in folders, f"tests/{folder.name} mirrors no package folder"
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name != "conftest.py":
            assert path.name.startswith("test_"), f"{path}: helpers belong in a conftest.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("tests", "conftest")) and not node.module.endswith("fixtures"), \
                    f"{path} imports {node.module}: use the fixtures of a conftest.py"


def test_architecture_page_names_every_folder():
    page = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for pkg in PACKAGES:
        for folder in (p for p in (ROOT / pkg).iterdir() if p.is_dir() and p.name != "__pycache__"):
            assert f"{folder.name}/" in page, f"ARCHITECTURE.md does not name {pkg}/{folder.name}/"
