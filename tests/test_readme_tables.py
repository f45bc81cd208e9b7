"""The README and the reference pages render as written: every markdown table is one table (header,
separator, rows of the header's column count, nothing stranded after it), every relative link points
at a file of this repository, their Python examples import what exists, and the test count the README
quotes is the count pytest collects."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SEPARATOR = re.compile(r"^\|(\s*:?-{3,}:?\s*\|)+$")


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of a markdown file outside fenced code blocks."""
    out, fenced = [], False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, line))
    return out


def _cells(row: str) -> int:
    """Columns of a table row: cells between unescaped pipes."""
    return len(re.split(r"(?<!\\)\|", row.strip().strip("|")))


def table_blocks(path: Path) -> list[list[tuple[int, str]]]:
    """Runs of consecutive lines that start with a pipe."""
    blocks: list[list[tuple[int, str]]] = []
    last = -2
    for n, line in _prose(path):
        if line.lstrip().startswith("|"):
            if n == last + 1 and blocks:
                blocks[-1].append((n, line))
            else:
                blocks.append([(n, line)])
            last = n
    return blocks


def table_problems(path: Path) -> list[str]:
    problems = []
    for block in table_blocks(path):
        first = block[0][0]
        if len(block) < 2 or not SEPARATOR.match(block[1][1].strip()):
            problems.append(f"{path.name}:{first}: table rows without a header and separator (stranded rows?)")
            continue
        width = _cells(block[0][1])
        if _cells(block[1][1]) != width:
            problems.append(f"{path.name}:{first}: the separator has {_cells(block[1][1])} columns, the header {width}")
        for n, row in block[2:]:
            if _cells(row) != width:
                problems.append(f"{path.name}:{n}: {_cells(row)} columns, the header has {width}")
    return problems


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_table_is_one_contiguous_table(path):
    assert table_problems(path) == []


def test_the_table_check_finds_stranded_rows_and_ragged_rows(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("| a | b |\n|---|---|\n| 1 | 2 |\n\nA paragraph.\n| 3 | 4 |\n| 5 | 6 \\| 7 |\n\n"
                    "| c | d |\n|---|---|\n| 1 | 2 | 3 |\n")
    problems = table_problems(page)
    assert len(problems) == 2 and "stranded" in problems[0] and "3 columns" in problems[1]


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_into_the_repository(path):
    for n, line in _prose(path):
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if target.startswith("#"):
                continue
            assert not re.match(r"[a-z]+://", target), f"{path.name}:{n}: {target} points outside the repository"
            file = (path.parent / target.split("#")[0]).resolve()
            assert file.exists() and ROOT in file.parents, f"{path.name}:{n}: {target} does not exist here"


def test_reference_python_examples_import_what_exists(assert_snippets_import):
    pages = [p for p in PAGES if p.parent.name == "reference"]
    snippets = [s for p in pages for s in re.findall(r"```python\n(.*?)\n```", p.read_text(encoding="utf-8"), re.S)]
    assert_snippets_import(snippets, "docs/reference")


def quoted_test_count() -> int:
    """The one number the README gives as "N tests"."""
    found = re.findall(r"\b(\d[\d,]*) tests\b", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(found) == 1, f"the README should quote the test count in one place, found {found}"
    return int(found[0].replace(",", ""))


@pytest.mark.slow
def test_the_test_count_quoted_in_the_readme_is_what_pytest_collects():
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    collected = re.search(r"(\d+) tests? collected", done.stdout)
    assert collected, done.stdout[-2000:] + done.stderr[-2000:]
    assert quoted_test_count() == int(collected.group(1)), "set the README's 'N tests' to the collected count"
