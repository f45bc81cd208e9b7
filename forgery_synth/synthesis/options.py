"""The options of a synthesis run, the per-sample seeds and ids derived from them, and `--part i/N`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from forgery_synth.methods import (
    INPAINT_MIXED_WEIGHT,
    METHODS,
    MIXED,
    MIXED_WEIGHTS,
    SYNTH_METHODS,
)
from forgery_synth.methods.inpaint_config import InpaintConfig
from forgery_synth.synthesis.exif import EXIF_MODES
from forgery_synth.synthesis.loading import (
    DEFAULT_MAX_PIXELS,
)
from forgery_synth.synthesis.post import parse_post
from forgery_synth.synthesis.regions import REGION_KINDS

REGION_CHOICES = (*REGION_KINDS, "auto")


BLEND_CHOICES = ("none", "feather", "poisson", "auto")


@dataclass
class SynthOptions:
    """Everything that decides what a synthesis run produces.

    method: a name in `methods.METHODS`, "mixed" (a weighted draw per sample) or "authentic".
    area: (min, max) fraction of the image the forged region covers.
    post: the global post-processing chain spec (see `post.py`), "" for none.
    exif: "keep", "strip" or "tamper" for the written files.
    weights: per-method weights for "mixed" (defaults to `MIXED_WEIGHTS`).
    source_masks: also write masks/<id>.source.png for copy-move.
    ops: (min, max) local edits per forged image; the mask is their union, each edit's region is in the log.
    inpaint: the diffusion model settings (`--inpaint-model` and friends), None without a model.
    """

    method: str = MIXED
    count: int = 1
    seed: int = 0
    region: str = "auto"
    area: tuple[float, float] = (0.02, 0.15)
    blend: str = "auto"
    post: str = ""
    exif: str = "keep"
    max_pixels: int = DEFAULT_MAX_PIXELS
    weights: dict[str, float] | None = None
    source_masks: bool = False
    inpaint: InpaintConfig | None = None
    ops: tuple[int, int] = (1, 1)
    """(min, max) local edits per forged image, drawn per sample; `mixed` draws each edit's method."""

    def validate(self) -> None:
        """Raise ValueError naming the option that is wrong."""
        if self.method not in SYNTH_METHODS:
            raise ValueError(f"--method {self.method!r} is not one of {', '.join(SYNTH_METHODS)}")
        if self.count < 1:
            raise ValueError(f"--count must be at least 1, got {self.count}")
        if self.region not in REGION_CHOICES:
            raise ValueError(f"--region {self.region!r} is not one of {', '.join(REGION_CHOICES)}")
        lo, hi = self.area
        if not (0 < lo <= hi <= 0.5):
            raise ValueError(f"--area {lo:g}-{hi:g}: need 0 < MIN <= MAX <= 0.5 (fractions of the image)")
        if self.blend not in BLEND_CHOICES:
            raise ValueError(f"--blend {self.blend!r} is not one of {', '.join(BLEND_CHOICES)}")
        if self.exif not in EXIF_MODES:
            raise ValueError(f"--exif {self.exif!r} is not one of {', '.join(EXIF_MODES)}")
        lo, hi = self.ops
        if not 1 <= lo <= hi <= MAX_OPS:
            raise ValueError(f"--ops {lo}-{hi}: need 1 <= MIN <= MAX <= {MAX_OPS} local edits per image")
        if self.max_pixels < 64 * 64:
            raise ValueError(f"--max-pixels {self.max_pixels} is below the 64x64 minimum image")
        parse_post(self.post)
        for name, weight in (self.weights or {}).items():
            if name not in METHODS:
                raise ValueError(f"--weights: {name!r} is not a method ({', '.join(METHODS)})")
            if weight < 0:
                raise ValueError(f"--weights: {name}={weight:g} is negative")
        if self.weights is not None and sum(self.weights.values()) <= 0:
            raise ValueError("--weights: at least one weight must be positive")
        if self.inpaint is not None:
            self.inpaint.validate()
            if self.inpaint.sam_checkpoint and not self.uses_model:
                raise ValueError("--sam-checkpoint: SAM regions are used by --method inpaint (or mixed with --inpaint-model)")
        if self.inpaint is None and (self.method == "inpaint" or (self.method == MIXED and (self.weights or {}).get("inpaint", 0) > 0)):
            raise ValueError("--method inpaint needs --inpaint-model (tiny, a local diffusers folder or a hub id)")

    @property
    def mixed_weights(self) -> dict[str, float]:
        """The weights of `mixed`: --weights, else MIXED_WEIGHTS (plus inpaint when a model is given)."""
        if self.weights is not None:
            return dict(self.weights)
        extra = {"inpaint": INPAINT_MIXED_WEIGHT} if self.inpaint is not None else {}
        return {**MIXED_WEIGHTS, **extra}

    @property
    def uses_model(self) -> bool:
        """Whether some sample may need the inpainting model."""
        if self.method == MIXED:
            return self.mixed_weights.get("inpaint", 0) > 0
        return self.method in METHODS and METHODS[self.method].needs_model

    @property
    def uses_donors(self) -> bool:
        """Whether some sample may need a donor (a splice, a face swap)."""
        if self.method == MIXED:
            return any(w > 0 and n in METHODS and METHODS[n].needs_donor for n, w in self.mixed_weights.items())
        return self.method in METHODS and METHODS[self.method].needs_donor

    def fingerprint(self, donor_key: str) -> str:
        """A digest of every option that changes what a sample looks like."""
        keyed = {k: v for k, v in asdict(self).items() if k not in ("count", "seed", "max_pixels", "source_masks", "inpaint")}
        if self.inpaint is not None:
            keyed["inpaint"] = self.inpaint.fingerprint_fields()
        keyed["area"] = list(self.area)
        if tuple(self.ops) == (1, 1):  # one edit: the fingerprint (and so every seed) of earlier runs
            keyed.pop("ops")
        else:
            keyed["ops"] = list(self.ops)
        keyed["donors"] = donor_key
        return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


MAX_OPS = 5


def sample_seed(seed: int, sha256: str, index: int, fingerprint: str = "") -> int:
    """The 63-bit seed of sample `index` of the input with content hash `sha256`.

    The options' fingerprint is mixed in, so runs of different methods over the same photos do
    not all draw the same regions.
    """
    text = f"forgery|{seed}|{sha256}|{index}|{fingerprint}"
    # 63 bits: the seed is logged, and JSON readers that store integers as int64 (pyarrow, HF
    # datasets) must be able to hold it.
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def sample_id(seed: int, sha256: str, index: int, fingerprint: str) -> str:
    """A sample id: 24 hex digits (no dots, so webdataset keys stay whole)."""
    return hashlib.sha256(f"{seed}|{sha256}|{index}|{fingerprint}".encode()).hexdigest()[:24]


def parse_part(text: str) -> tuple[int, int]:
    """`i/N` (1 <= i <= N) -> (i, N); raises ValueError."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--part {text!r}: expected i/N, e.g. 1/4") from None
    if not 1 <= i <= n:
        raise ValueError(f"--part {text!r}: need 1 <= i <= N")
    return i, n


def select_part(inputs: list[Path], part: tuple[int, int] | None) -> list[Path]:
    """Every N-th input of the sorted list, starting at the i-th (1-based)."""
    if part is None:
        return inputs
    i, n = part
    return sorted(inputs, key=str)[i - 1 :: n]
