"""`forgery fingerprint`: photos grouped by camera -> one PRNU fingerprint file per camera.

Files written in the output folder (each atomically: a temporary name, then renamed)::

    DIR/<make>_<model>.safetensors   tensor "K": H x W float16 (the sensor's size, before EXIF
                                     orientation), zero mean, unit std (:mod:`.prnu`); metadata
                                     (strings): format, make, model, camera, n_photos, size "[w, h]",
                                     sources (JSON list of sha256), method
    DIR/cameras.json                 {"format", "cameras": {camera: {file, make, model, n_photos,
                                     size, sources}}, "refused": {camera: reason},
                                     "skipped": [{"path", "error"}], "options"}

The camera is the EXIF ``"<Make> <Model>"`` (`exif.camera_name`); photos without both are skipped
and listed. A camera's photos are read in sensor orientation (no EXIF transpose): the pattern is
the sensor's. Photos of one camera may come in several sizes (crops, lower-resolution modes, other
cameras with the same name): the fingerprint takes the camera's most common size (ties: the larger,
then the wider) and lists the photos of other sizes as skipped. Rescaling them would be a guess at
the camera's own scaler, and centre crops of a lower-resolution mode do not line up with the sensor.
A camera with fewer than ``min_photos`` photos of that size is refused, with the reason.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from forgery_synth.fingerprints.prnu import FingerprintSums
from forgery_synth.synthesis.exif import camera_name
from forgery_synth.synthesis.loading import (
    DEFAULT_MAX_PIXELS,
    ImageRejected,
    discover_inputs,
    load_image,
    probe_image,
)

FORMAT = "forgery-fingerprints/1"
MIN_PHOTOS = 10
"""Default least number of photos (of the camera's most common size) a fingerprint needs."""
METHOD = ("ML estimate K = sum(W*I)/sum(I^2) (Chen, Fridrich, Goljan, Lukas 2008), W = grey - "
          "denoise_wavelet(grey, db8, 4 levels, BayesShrink, sigma 3); rows/columns zero-meaned, Wiener in DFT, "
          "unit std")


class FingerprintOptionError(ValueError):
    """Unusable options of `forgery fingerprint` (CLI exit 2)."""


@dataclass
class FingerprintReport:
    """What a run wrote: cameras (camera -> entry of cameras.json), refused (camera -> reason),
    skipped ([{"path", "error"}])."""

    cameras: dict[str, dict] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)


def camera_file(make: str, model: str, taken: set[str]) -> str:
    """A file name for a camera: lower-case ``<make>_<model>`` with runs of other characters as
    "-", unique among ``taken`` (a numbered suffix), ``.safetensors``."""
    slug = "_".join(re.sub(r"[^a-z0-9.]+", "-", part.lower()).strip("-.") or "x" for part in (make, model))
    name, n = f"{slug}.safetensors", 2
    while name in taken:
        name, n = f"{slug}-{n}.safetensors", n + 1
    return name


def _write_atomic(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _most_common(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    counts = Counter(sizes)
    return max(counts, key=lambda s: (counts[s], s[0] * s[1], s[0]))


def build_fingerprints(inputs: list[str | os.PathLike], out: str | os.PathLike, *, min_photos: int = MIN_PHOTOS,
                       max_pixels: int = DEFAULT_MAX_PIXELS,
                       progress: Callable[[int, int], None] | None = None) -> FingerprintReport:
    """Estimate one fingerprint per camera from the photos in ``inputs`` (files or folders) into ``out``.

    Raises FingerprintOptionError for options that cannot work (no photo found, ``min_photos`` < 2,
    ``out`` a file). Unusable photos are skipped with the reason, never fatal.
    """
    import numpy as np
    from safetensors.numpy import save_file

    if min_photos < 2:
        raise FingerprintOptionError(f"--min-photos must be at least 2 (got {min_photos})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FingerprintOptionError(f"--out {out} is a file, not a folder")
    try:
        paths = discover_inputs(list(inputs))
    except FileNotFoundError as e:
        raise FingerprintOptionError(str(e)) from None
    if not paths:
        raise FingerprintOptionError("no image files among the inputs")
    report = FingerprintReport()
    groups: dict[str, list[tuple[Path, tuple[int, int]]]] = {}
    names: dict[str, tuple[str, str]] = {}
    for path in paths:
        try:
            size, exif = probe_image(path, max_pixels)
        except ImageRejected as e:
            report.skipped.append({"path": str(path), "error": str(e)})
            continue
        camera = camera_name(exif)
        if not camera:
            report.skipped.append({"path": str(path), "error": "no EXIF Make and Model: camera unknown"})
            continue
        groups.setdefault(camera, []).append((path, (size[0], size[1])))
        names.setdefault(camera, (" ".join(exif["Make"].split()), " ".join(exif["Model"].split())))
    todo: dict[str, tuple[tuple[int, int], list[Path]]] = {}
    for camera, members in sorted(groups.items()):
        size = _most_common([s for _, s in members])
        chosen = [p for p, s in members if s == size]
        for p, s in members:
            if s != size:
                report.skipped.append({"path": str(p), "error": f"{camera}: size {s[0]}x{s[1]} is not the camera's "
                                                                f"most common size {size[0]}x{size[1]}"})
        if len(chosen) < min_photos:
            report.refused[camera] = (f"{len(chosen)} photo(s) of {size[0]}x{size[1]}, fewer than --min-photos "
                                      f"{min_photos}")
        else:
            todo[camera] = (size, chosen)
    total, done = sum(len(c) for _, c in todo.values()), 0
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for camera, (size, chosen) in todo.items():
        sums, sources = FingerprintSums((size[1], size[0])), []
        for path in chosen:
            try:
                photo = load_image(path, max_pixels, orient=False)
                sums.add(photo.rgb)
                sources.append(photo.sha256)
            except (ImageRejected, ValueError) as e:
                report.skipped.append({"path": str(path), "error": f"{camera}: {e}"})
            done += 1
            if progress:
                progress(done, total)
        if sums.n < min_photos:
            report.refused[camera] = f"only {sums.n} readable photo(s), fewer than --min-photos {min_photos}"
            continue
        k = sums.fingerprint().astype(np.float16)
        make, model = names[camera]
        name = camera_file(make, model, taken)
        taken.add(name)
        entry = {"file": name, "make": make, "model": model, "n_photos": sums.n, "size": list(size),
                 "sources": sorted(sources)}
        meta = {"format": FORMAT, "make": make, "model": model, "camera": camera, "n_photos": str(sums.n),
                "size": json.dumps(list(size)), "sources": json.dumps(entry["sources"]), "method": METHOD}
        _write_atomic(out / name, lambda tmp: save_file({"K": np.ascontiguousarray(k)}, tmp, metadata=meta))
        report.cameras[camera] = entry
    index = {"format": FORMAT, "cameras": report.cameras, "refused": report.refused, "skipped": report.skipped,
             "options": {"min_photos": min_photos, "method": METHOD}}
    _write_atomic(out / "cameras.json",
                  lambda tmp: Path(tmp).write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"))
    return report
