"""`datasets convert`: any readable source to an IMDL-BenCo JSON list, masks written where the source has none on disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trainer.evaluation.readers import (
    _resolve,
    iter_json_list,
    iter_samples_dir,
    scan_folder_layout,
    source_kind,
)
from trainer.evaluation.samples import EvalSample, SourceOptions


@dataclass
class ConvertResult:
    """Outcome of ``convert_to_json_list``: counts and per-file errors ``(path, message)``."""

    n_fake: int
    n_real: int
    errors: list[tuple[str, str]]


def convert_to_json_list(source: Path, out: Path, relative: bool = False, split: str | None = "test") -> ConvertResult:
    """Write an IMDL-BenCo JSON list ``[[image, mask_or_"Negative"], ...]`` for a source.

    Works for folder layouts, sample directories and JSON lists (re-checked); shards keep their
    images inside tar files, which a JSON list cannot point to, so they are refused.

    Args:
        source: benchmark folder, samples directory or JSON list.
        out: the JSON file to write (parent folders are created).
        relative: write paths relative to ``out``'s folder instead of absolute paths
            (IMDL-BenCo resolves relative paths against its working directory).
        split: unused except for recognising the source.

    Returns:
        Counts and errors. Nothing is written when no pair could be listed.

    Raises:
        ValueError: unrecognised source, or shards.
    """
    kind = source_kind(source, split)
    rows: list[list[str]] = []
    errors: list[tuple[str, str]] = []
    if kind == "shards":
        raise ValueError("shards keep images inside tar files; a JSON list cannot point into them")
    if kind == "folder":
        layout = scan_folder_layout(source)
        rows = [[str(i), str(m)] for i, m in layout.pairs] + [[str(i), "Negative"] for i in layout.authentic]
        errors = layout.errors
    else:
        reader = iter_samples_dir if kind == "samples" else iter_json_list
        for s in reader(source, SourceOptions(split=split, decode=False)):
            if s.error:
                errors.append((s.ref, s.error))
                continue
            img = Path(s.meta.get("path") or s.ref)
            if not img.is_file():
                errors.append((str(img), "image file does not exist"))
                continue
            if s.label == 0:
                rows.append([str(img), "Negative"])
            elif s.label == 1:
                mask = _mask_path_of(source, kind, s)
                if mask is None:
                    errors.append((str(img), "forged image without a mask file"))
                    continue
                rows.append([str(img), str(mask)])
            else:
                errors.append((str(img), "unknown label"))
    rows.sort(key=lambda r: r[0])
    if relative:
        base = out.resolve().parent
        rows = [[_rel(r[0], base), r[1] if r[1] == "Negative" else _rel(r[1], base)] for r in rows]
    else:
        rows = [[str(Path(r[0]).resolve()), r[1] if r[1] == "Negative" else str(Path(r[1]).resolve())] for r in rows]
    if rows:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return ConvertResult(n_fake=sum(1 for r in rows if r[1] != "Negative"),
                         n_real=sum(1 for r in rows if r[1] == "Negative"), errors=errors)


def _rel(p: str, base: Path) -> str:
    import os

    return os.path.relpath(Path(p).resolve(), base)


def _mask_path_of(source: Path, kind: str, s: EvalSample) -> Path | None:
    if kind == "samples":
        with open(source / "index.jsonl", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    if str(row.get("id")) == s.id and row.get("mask"):
                        p = source / row["mask"]
                        return p if p.is_file() else None
        return None
    rows = json.loads(source.read_text(encoding="utf-8"))
    for row in rows:
        if _resolve(row[0], source.parent) == Path(s.ref) and row[1] != "Negative":
            p = _resolve(row[1], source.parent)
            return p if p.is_file() else None
    return None
