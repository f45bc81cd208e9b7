"""The synthesis job: inputs in, a sample directory out.

    OUT/images/<id>.png|jpg   forged (or authentic) image
    OUT/masks/<id>.png        binary mask, same size as the image
    OUT/masks/<id>.edge.png   band around the forged region's edge (boundary-aware loss)
    OUT/masks/<id>.source.png copy-move source region (with `source_masks`)
    OUT/logs/<id>.json        operation log (written last: its presence means "complete")
    OUT/index.jsonl           one line per sample, rebuilt from the logs, sorted by id
    OUT/rejects.jsonl         one line per input (or sample) that could not be used

Every sample's randomness comes from one generator seeded from (seed, the input's sha256,
sample index), and its id from the same plus the options, so the output is byte-identical
whatever the worker count and input order, and a re-run into the same OUT skips what is done.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from forgery_synth.methods.inpaint_config import InpaintConfig
from forgery_synth.synthesis.draw import _draw_and_render, _Job, make_log
from forgery_synth.synthesis.loading import (
    ImageRejected,
    load_image,
    sha256_file,
)
from forgery_synth.synthesis.options import (
    SynthOptions,
    sample_id,
    sample_seed,
    select_part,
)


@dataclass
class InputResult:
    """What one input became: samples written, samples already there, reject lines."""

    path: str
    written: int = 0
    skipped: int = 0
    rejects: list[dict] = field(default_factory=list)


@dataclass
class SynthReport:
    """Totals of a run."""

    inputs: int = 0
    written: int = 0
    skipped: int = 0
    rejected_inputs: int = 0
    rejects: list[dict] = field(default_factory=list)

    @property
    def produced(self) -> int:
        """Samples present for this run's inputs (new or from an earlier run)."""
        return self.written + self.skipped


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name beside `path`, then rename: no half-written file survives a kill."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class SynthJob:
    """A synthesis run over `inputs` into `out`; iterate `run()` for per-input results."""

    def __init__(
        self,
        inputs: list[str | os.PathLike],
        out: str | os.PathLike,
        options: SynthOptions,
        workers: int = 1,
        part: tuple[int, int] | None = None,
        donors: list[str | os.PathLike] | None = None,
    ) -> None:
        options.validate()
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        if options.uses_model:
            _check_models(options.inpaint)
        from forgery_synth.synthesis.loading import discover_inputs, find_images

        found = find_images(list(inputs))  # NoImages before anything is written: no empty skeleton
        self.inputs = select_part(found, part)
        self.out = Path(out)
        self.options = options
        self.workers = workers
        donor_paths = discover_inputs(list(donors)) if donors else found
        self.donors = _donor_pool(donor_paths) if options.uses_donors else ()
        donor_key = hashlib.sha256("".join(sha for sha, _ in self.donors).encode()).hexdigest()[:16]
        self.job = _Job(str(self.out), options, options.fingerprint(donor_key), self.donors)

    def run(self) -> Iterator[InputResult]:
        """Process every input (in parallel with `workers`), then rebuild the index files."""
        for sub in ("images", "masks", "logs"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        rejects_path = self.out / "rejects.jsonl"
        rejects: list[dict] = []
        with open(rejects_path, "w") as rejects_file:
            for result in self._results():
                for line in result.rejects:
                    rejects_file.write(json.dumps(line) + "\n")
                rejects_file.flush()
                rejects.extend(result.rejects)
                yield result
        rejects.sort(key=lambda r: (r["path"], r.get("sample", -1), r["error"]))
        write_atomic(rejects_path, "".join(json.dumps(r) + "\n" for r in rejects).encode())
        rebuild_index(self.out)

    def _results(self) -> Iterator[InputResult]:
        paths = [str(p) for p in self.inputs]
        if self.options.uses_model and self.options.inpaint.batch_size > 1:
            # Groups of inputs whose samples share batched pipeline calls.
            per = max(1, -(-self.options.inpaint.batch_size // self.options.count))
            groups = [paths[i : i + per] for i in range(0, len(paths), per)]
            if self.workers == 1:
                for group in groups:
                    yield from process_group(group, self.job)
                return
            import multiprocessing

            ctx = multiprocessing.get_context("forkserver")
            with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker) as pool:
                for results in pool.map(process_group, groups, [self.job] * len(groups), chunksize=1):
                    yield from results
            return
        if self.workers == 1:
            for p in paths:
                yield process_input(p, self.job)
            return
        import multiprocessing

        # forkserver: children fork from a clean server process (no inherited threads or locks),
        # and only the server pays the interpreter start-up.
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker) as pool:
            yield from pool.map(process_input, paths, [self.job] * len(paths), chunksize=1)


def synthesize(
    inputs: list[str | os.PathLike],
    out: str | os.PathLike,
    options: SynthOptions,
    workers: int = 1,
    part: tuple[int, int] | None = None,
    donors: list[str | os.PathLike] | None = None,
) -> SynthReport:
    """Run a whole synthesis job; returns the totals (see `SynthJob` for progress per input)."""
    job = SynthJob(inputs, out, options, workers, part, donors)
    report = SynthReport(inputs=len(job.inputs))
    for result in job.run():
        report.written += result.written
        report.skipped += result.skipped
        report.rejects.extend(result.rejects)
        if result.rejects and not (result.written or result.skipped):
            report.rejected_inputs += 1
    return report


def rebuild_index(out: Path) -> int:
    """Rewrite OUT/index.jsonl from the logs present, sorted by id; returns the line count."""
    lines = []
    for log_path in sorted((out / "logs").glob("*.json")):
        log = json.loads(log_path.read_text())
        sid = log["id"]
        lines.append(json.dumps({
            "id": sid, "image": f"images/{sid}.{log['output']['format']}", "mask": f"masks/{sid}.png",
            "log": f"logs/{sid}.json", "label": log["label"], "method": log["method"],
        }))
    write_atomic(out / "index.jsonl", "".join(line + "\n" for line in lines).encode())
    return len(lines)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _donor_pool(paths: list[Path]) -> tuple[tuple[str, str], ...]:
    pool = []
    for p in paths:
        try:
            pool.append((sha256_file(p), str(p)))
        except OSError:
            continue  # an unreadable donor is reported when (if ever) it is drawn
    return tuple(sorted(set(pool)))


def process_input(path: str, job: _Job) -> InputResult:
    """Make every sample of one input; never raises for a bad input, reports it instead."""
    result = InputResult(path)
    out = Path(job.out)
    try:
        source = load_image(path, job.options.max_pixels)
    except ImageRejected as e:
        result.rejects.append({"path": path, "error": str(e)})
        return result
    for index in range(job.options.count):
        sid = sample_id(job.options.seed, source.sha256, index, job.fingerprint)
        if (out / "logs" / f"{sid}.json").exists():
            result.skipped += 1
            continue
        try:
            log, sample = _draw_and_render(job, source, index)
        except (ImageRejected, ValueError) as e:
            result.rejects.append({"path": path, "sample": index, "error": str(e)})
            continue
        log["output"]["format"] = sample.ext
        if sample.exif_note:
            log["output"]["exif_note"] = sample.exif_note
        log["mask_area"] = sample.mask_area
        _write_sample(out, log, sample, job.options.source_masks)
        result.written += 1
    return result


def process_group(paths: list[str], job: _Job) -> list[InputResult]:
    """`process_input` for each of `paths`, after running their samples' inpainting in batched calls.

    The first draw of every pending sample is made ahead (the same draw `_draw_and_render` makes
    first), its pipeline call batched with the others', and the result cached for `render`.
    """
    from forgery_synth.methods.inpaint import clear_prefetched, prefetch

    pairs = []
    for path in paths:
        try:
            source = load_image(path, job.options.max_pixels)
        except ImageRejected:
            continue  # process_input reports it
        for index in range(job.options.count):
            if (Path(job.out) / "logs" / f"{sample_id(job.options.seed, source.sha256, index, job.fingerprint)}.json").exists():
                continue
            rng = np.random.default_rng(sample_seed(job.options.seed, source.sha256, index, job.fingerprint))
            try:
                log, _ = make_log(job, source, index, rng)
            except (ImageRejected, ValueError):
                continue  # process_input reports it
            pairs.extend((source.rgb, op) for op in log["ops"][:1] if op["op"] == "inpaint")
    try:
        try:
            prefetch(pairs)
        except ValueError:
            pass  # the samples then run one by one, and each reports the error
        del pairs
        return [process_input(path, job) for path in paths]
    finally:
        clear_prefetched()


def _check_models(config: InpaintConfig) -> None:
    """Load the inpainting model (and SAM) now, so a missing one stops the run before anything is written."""
    from forgery_synth.methods.inpaint import load_model

    load_model(config)
    if config.sam_checkpoint:
        from forgery_synth.synthesis.sam_regions import load_sam

        load_sam(config.sam_checkpoint, config.device)


def _write_sample(out: Path, log: dict, sample, source_masks: bool) -> None:
    from forgery_synth.synthesis.render import encode_mask

    sid = log["id"]
    write_atomic(out / "images" / f"{sid}.{sample.ext}", sample.image_bytes)
    write_atomic(out / "masks" / f"{sid}.png", encode_mask(sample.mask))
    write_atomic(out / "masks" / f"{sid}.edge.png", encode_mask(sample.edge))
    if source_masks and sample.source_mask is not None:
        write_atomic(out / "masks" / f"{sid}.source.png", encode_mask(sample.source_mask))
    write_atomic(out / "logs" / f"{sid}.json", (json.dumps(log, indent=1) + "\n").encode())
