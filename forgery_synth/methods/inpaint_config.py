"""The run-level settings of `--method inpaint` (model, device, prompts, steps), checked before anything loads."""

from __future__ import annotations

from dataclasses import dataclass

from forgery_synth.models.inpaint_pipeline import (
    resolve_dtype,
)


@dataclass(frozen=True)
class InpaintConfig:
    """The run-level settings of `--method inpaint`.

    model: "tiny", a local pipeline folder or a hub id (see `inpaint_pipeline`).
    device: auto, cpu, cuda[:N] or mps; dtype: auto, float32, float16 or bfloat16.
    prompts: the user's prompts (None: built-in lists); negative_prompt: None for the built-in one.
    steps: denoising steps (None: 8 for tiny, 30 otherwise); guidance: classifier-free guidance
    scale (>= 0; <= 1 turns it off); strength: 0 < s <= 1, how far the region is noised (1: fully).
    sam_checkpoint: a segment-anything checkpoint for `--region object` (None: SLIC proposals).
    batch_size: samples per pipeline call.
    """

    model: str
    device: str = "auto"
    dtype: str = "auto"
    prompts: tuple[str, ...] | None = None
    negative_prompt: str | None = None
    steps: int | None = None
    guidance: float = 7.5
    strength: float = 1.0
    sam_checkpoint: str | None = None
    batch_size: int = 1

    def validate(self) -> None:
        """Raise ValueError naming the option that is wrong (nothing is loaded here)."""
        if self.steps is not None and not 1 <= self.steps <= 1000:
            raise ValueError(f"--inpaint-steps must be in 1..1000, got {self.steps}")
        if self.guidance < 0:
            raise ValueError(f"--guidance must be >= 0, got {self.guidance:g}")
        if not 0 < self.strength <= 1:
            raise ValueError(f"--strength must be in (0, 1], got {self.strength:g}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        resolve_dtype(self.dtype, "cpu")

    def fingerprint_fields(self) -> dict:
        """The settings that decide what a sample looks like (device, dtype and batch are logged only)."""
        return {"model": self.model, "prompts": list(self.prompts) if self.prompts else None,
                "negative_prompt": self.negative_prompt, "steps": self.steps, "guidance": self.guidance,
                "strength": self.strength, "sam_checkpoint": self.sam_checkpoint}
