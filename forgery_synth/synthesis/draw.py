"""One sample, drawn: its method, donor and operations go into the log first, then the log is rendered.

A forgery whose region did not change visibly is drawn again (`MIN_CHANGED`, `REDRAWS`): a label
is only as honest as the pixels under its mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forgery_synth import __version__
from forgery_synth.documents.sidecar import read_layout
from forgery_synth.methods import (
    AUTHENTIC,
    METHODS,
    MIXED,
    MethodOptions,
)
from forgery_synth.synthesis.content import source_content
from forgery_synth.synthesis.exif import camera_name, draw_exif
from forgery_synth.synthesis.faces import detect_face
from forgery_synth.synthesis.loading import (
    MIN_SIDE,
    ImageRejected,
    LoadedImage,
    is_grey,
    load_image,
)
from forgery_synth.synthesis.options import (
    SynthOptions,
    sample_id,
    sample_seed,
)
from forgery_synth.synthesis.post import draw_post, parse_post
from forgery_synth.synthesis.render import VISIBLE_LEVELS, RenderedSample, render

MIN_CHANGED = 0.5
"""A fake's mask must be at least this share of visibly changed pixels (`render.VISIBLE_LEVELS`), else it is redrawn."""


REDRAWS = 10


@dataclass(frozen=True)
class _Job:
    """What a worker needs to process one input (picklable)."""

    out: str
    options: SynthOptions
    fingerprint: str
    donors: tuple[tuple[str, str], ...]  # (sha256, path), sorted by sha256


_donor_cache: dict[str, LoadedImage] = {}


def _load_donor(path: str, max_pixels: int) -> LoadedImage:
    if path not in _donor_cache:
        if len(_donor_cache) >= 4:
            _donor_cache.pop(next(iter(_donor_cache)))
        _donor_cache[path] = load_image(path, max_pixels)
    return _donor_cache[path]


_donor_grey: dict[str, bool] = {}
"""sha256 -> whether that donor is grey, so a colour photo skips a grey donor without loading it again."""


def _pick_donor(job: _Job, source_sha: str, rng: np.random.Generator, method: str = "splice",
                source_grey: bool = False) -> LoadedImage:
    """A donor other than the source; for a portrait method (face-swap) one with a detected face.

    Colour modes match: a colour photo takes only colour donors (a grey text page in a colour night
    sky is no forgery anyone makes); a grey photo takes a grey donor or a colour one, which the
    render makes grey (`render`'s keep-grey) and the log says so (`donor.made_grey`)."""
    candidates = [d for d in job.donors if d[0] != source_sha]
    needs_face = METHODS[method].subject == "portrait"
    if not candidates:
        raise ImageRejected(f"{method} needs a donor photo other than the source (use --donors DIR)")
    start = int(rng.integers(len(candidates)))
    errors: list[str] = []
    greys = 0
    for k in range(len(candidates)):
        if len(errors) >= 5:
            break
        sha, path = candidates[(start + k) % len(candidates)]
        if not source_grey and _donor_grey.get(sha):
            greys += 1
            continue
        try:
            donor = _load_donor(path, job.options.max_pixels)
        except ImageRejected as e:
            errors.append(f"{path}: {e}")
            continue
        _donor_grey[donor.sha256] = is_grey(donor.rgb)
        if donor.sha256 != sha:
            errors.append(f"{path}: changed since the donor list was made")
        elif not source_grey and _donor_grey[sha]:
            greys += 1
        elif needs_face and detect_face(donor.rgb) is None:
            errors.append(f"{path}: no face found (a {method} donor must be a portrait)")
        else:
            return donor
    if greys:
        errors.append(f"{greys} grey donor(s) skipped: a colour photo takes only colour donors (add colour photos with --donors DIR)")
    raise ImageRejected(f"{method}: no usable donor: " + "; ".join(errors))


def _draw_method(job: _Job, source_sha: str, rng: np.random.Generator, content: str = "scene") -> str:
    options = job.options
    if options.method != MIXED:
        return options.method
    weights = options.mixed_weights
    if not any(sha != source_sha for sha, _ in job.donors):
        for name in [n for n in weights if n in METHODS and METHODS[n].needs_donor]:
            weights.pop(name)
    if content != "portrait":  # a method that needs a face is never drawn for a photo without one
        for name in [n for n in weights if n in METHODS and METHODS[n].subject == "portrait"]:
            weights.pop(name)
    names = sorted(n for n, w in weights.items() if w > 0)
    if not names:
        raise ImageRejected("--method mixed: no method with a positive weight is usable for this input")
    p = np.array([weights[n] for n in names], float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def make_log(job: _Job, source: LoadedImage, index: int, rng: np.random.Generator) -> tuple[dict, LoadedImage | None]:
    """Draw every random choice of one sample into its operation log (and pick its donor).

    `rng` is the sample's own generator (seeded by `sample_seed`); a redraw continues it.
    """
    options = job.options
    seed = sample_seed(options.seed, source.sha256, index, job.fingerprint)
    content = source_content(source.path, source.rgb, source.sha256)
    grey = is_grey(source.rgb)
    method = _draw_method(job, source.sha256, rng, content)
    donor = None
    ops: list[dict] = []
    if method != AUTHENTIC:
        lo, hi = options.ops
        n_ops = lo if lo == hi else int(rng.integers(lo, hi + 1))
        methods = [method] + [_draw_method(job, source.sha256, rng, content) if options.method == MIXED else method
                              for _ in range(n_ops - 1)]
        method_options = MethodOptions(region=options.region, area=tuple(options.area), blend=options.blend, inpaint=options.inpaint,
                                       layout=read_layout(source.path, source.sha256, source.size))
        for name in methods:  # several edits share one donor, so a replay needs one donor photo
            spec = METHODS[name]
            if spec.needs_donor and donor is None:
                donor = _pick_donor(job, source.sha256, rng, name, grey)
            ops.append(spec.get_params(source.rgb, rng, method_options, donor.rgb if spec.needs_donor else None))
        if len(set(methods)) > 1:
            method = MIXED
    ops.extend(draw_post(parse_post(options.post), rng))
    log = {
        "id": sample_id(options.seed, source.sha256, index, job.fingerprint),
        "label": "real" if method == AUTHENTIC else "fake",
        "seed": seed,
        "version": __version__,
        "method": method,
        "index": index,
        "source": {"path": source.path, "sha256": source.sha256, "size": source.size, "exif": source.exif,
                   "camera": camera_name(source.exif), "grey": grey, "content": content},
        "ops": ops,
        "output": {"exif": draw_exif(options.exif, rng)},
    }
    if donor is not None:
        donor_grey = _donor_grey.get(donor.sha256, is_grey(donor.rgb))
        log["donor"] = {"path": donor.path, "sha256": donor.sha256, "size": donor.size, "grey": donor_grey,
                        "made_grey": grey and not donor_grey}
    return log, donor


def _draw_and_render(job: _Job, source: LoadedImage, index: int) -> tuple[dict, RenderedSample]:
    """Draw and render one sample; a forgery whose region barely changed is redrawn.

    Label honesty: a fake's mask must mostly consist of changed pixels (a blur of a flat sky
    or a high-quality recompression of a smooth region can leave most of it as it was).
    """
    rng = np.random.default_rng(sample_seed(job.options.seed, source.sha256, index, job.fingerprint))
    share = 0.0
    for _ in range(REDRAWS):
        log, donor = make_log(job, source, index, rng)
        donor_rgb = donor.rgb if donor else None
        probe = None if log["label"] == "real" else render(log, source.rgb, source.exif_raw, donor_rgb, measure_only=True)
        if probe is None or (probe.changed >= MIN_CHANGED and probe.mask.any()):  # no encoding per redraw
            sample = render(log, source.rgb, source.exif_raw, donor_rgb)
            h, w = sample.mask.shape
            if min(h, w) < MIN_SIDE:
                raise ImageRejected(f"the --post chain shrinks the image to {w}x{h}, below {MIN_SIDE} px on a side")
            if log["label"] == "fake":  # a measurement, not an input of the render: replay is unchanged
                log["measured"] = {"visible_change": round(sample.changed, 4), "visible_levels": VISIBLE_LEVELS}
            return log, sample
        share = probe.changed
    raise ImageRejected(
        f"{log['method']}: after {REDRAWS} draws the forgery still changed only {share:.0%} of its region visibly "
        f"(by more than {VISIBLE_LEVELS} grey levels; need {MIN_CHANGED:.0%}); the photo may be too flat for this method"
    )
