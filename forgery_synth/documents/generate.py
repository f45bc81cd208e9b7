"""`forgery documents`: N synthetic originals, each `<stem>.png` with its `<stem>.layout.json`.

Page i is kind `kinds[i % len(kinds)]` and language `langs[(i // len(kinds)) % len(langs)]`, so
every kind and language appears early; its seed derives from (seed, i). ID cards take a portrait
from `portraits` (a folder of photos, one drawn per card) or, without one, scikit-image's bundled
astronaut photo (Eileen Collins, public domain), so the command needs no download. Files are
written atomically; the layout is written last and carries the image's sha256, so a re-run skips
finished pages and the synthesis engine uses a layout only beside the very image it describes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from forgery_synth.documents.layouts import KINDS, LANGS
from forgery_synth.documents.render import render_page

DEFAULT_PORTRAIT = "astronaut.png"


@dataclass
class DocumentOptions:
    """What `forgery documents` makes: count pages of these kinds and languages."""

    count: int = 6
    kinds: tuple[str, ...] = KINDS
    langs: tuple[str, ...] = LANGS
    portraits: str | None = None
    seed: int = 0

    def validate(self) -> None:
        """Raise ValueError naming the option that is wrong."""
        if self.count < 1:
            raise ValueError(f"--count must be at least 1, got {self.count}")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"--kind {','.join(bad) or '(empty)'}: expected some of {', '.join(KINDS)}")
        bad = [lang for lang in self.langs if lang not in LANGS]
        if bad or not self.langs:
            raise ValueError(f"--lang {','.join(bad) or '(empty)'}: expected some of {', '.join(LANGS)}")
        if self.portraits is not None and not Path(self.portraits).is_dir():
            raise ValueError(f"--portraits {self.portraits}: not a folder")


@dataclass
class DocumentReport:
    """Totals of a run: pages written, pages already there, problems (portraits that failed)."""

    written: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


def page_seed(seed: int, index: int) -> int:
    """The seed of page `index` of a run seeded `seed`."""
    return int.from_bytes(hashlib.sha256(f"documents|{seed}|{index}".encode()).digest()[:8], "big") >> 1


def _portraits(options: DocumentOptions) -> list[Path]:
    from forgery_synth.synthesis.loading import discover_inputs
    from forgery_synth.synthesis.sample_photos import sample_photo_paths

    if options.portraits is None:
        return [p for p in sample_photo_paths() if p.name == DEFAULT_PORTRAIT]
    found = discover_inputs([options.portraits])
    if not found:
        raise ValueError(f"--portraits {options.portraits}: no image files in the folder")
    return found


def generate_documents(out: str | os.PathLike, options: DocumentOptions) -> Iterator[tuple[str, bool]]:
    """Write the pages into `out`; yields (stem, written) per page (False: already there)."""
    from forgery_synth.synthesis.engine import write_atomic
    from forgery_synth.synthesis.loading import ImageRejected, load_image
    from forgery_synth.synthesis.render import encode_png

    options.validate()
    portraits = _portraits(options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for index in range(options.count):
        kind = options.kinds[index % len(options.kinds)]
        lang = options.langs[(index // len(options.kinds)) % len(options.langs)]
        stem = f"{kind}-{lang}-{options.seed}-{index:05d}"
        if (out / f"{stem}.layout.json").exists():
            yield stem, False
            continue
        seed = page_seed(options.seed, index)
        portrait, portrait_path = None, ""
        if kind == "id-card":
            pick = portraits[int(np.random.default_rng(seed).integers(len(portraits)))]
            try:
                portrait, portrait_path = load_image(pick).rgb, str(pick)
            except ImageRejected as e:
                raise ValueError(f"--portraits: {pick}: {e}") from None
        image, layout = render_page(kind, lang, seed, portrait)
        data = encode_png(image)
        layout = {**layout, "image": f"{stem}.png", "sha256": hashlib.sha256(data).hexdigest(), "portrait": portrait_path,
                  "run": {"seed": options.seed, "index": index}}
        write_atomic(out / f"{stem}.png", data)
        write_atomic(out / f"{stem}.layout.json", (json.dumps(layout, ensure_ascii=False, indent=1) + "\n").encode())
        yield stem, True
