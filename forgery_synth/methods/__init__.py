"""The registry of forgery methods; the CLI's `--method` is checked against it.

Besides these, `--method mixed` draws one method per sample (weights in `MIXED_WEIGHTS`) and
`--method authentic` makes real samples: the source with only the global post-processing chain,
so real and fake images pass through the same processing.

The text methods (subject "document": text-replace, text-copy-move, text-splice, text-erase)
forge document pages (`forgery documents`, or scans); they are left out of `MIXED_WEIGHTS`, since
on a photo they have nothing to forge: run them with `--method text-...` on pages, or name them in
`--weights` for a folder of documents.
"""

from __future__ import annotations

from forgery_synth.methods import (
    copy_move,
    erase,
    inpaint,
    splice,
    text_copy_move,
    text_erase,
    text_replace,
    text_splice,
)
from forgery_synth.methods.base import Method, MethodOptions
from forgery_synth.methods.traces import TRACE_METHODS

METHODS: dict[str, Method] = {
    "copy-move": Method("copy-move", copy_move.get_params, copy_move.apply,
                        description="a region pasted elsewhere in the same image (rotated, scaled, mirrored)"),
    "splice": Method("splice", splice.get_params, splice.apply, needs_donor=True,
                     description="a region of a donor photo pasted in, colours harmonised"),
    "erase": Method("erase", erase.get_params, erase.apply,
                    description="a region removed and filled from its surroundings"),
    "inpaint": Method("inpaint", inpaint.get_params, inpaint.apply, needs_model=True,
                      description="a region repainted by a diffusion inpainting model (needs --inpaint-model)"),
    **TRACE_METHODS,
    "text-replace": Method("text-replace", text_replace.get_params, text_replace.apply, subject="document",
                           description="characters of a field replaced: paper restored, new text in the matched font"),
    "text-copy-move": Method("text-copy-move", text_copy_move.get_params, text_copy_move.apply, subject="document",
                             description="digits or characters copied from one place of the page onto another"),
    "text-splice": Method("text-splice", text_splice.get_params, text_splice.apply, needs_donor=True, subject="document",
                          description="a seal, or a text line of another document, pasted in"),
    "text-erase": Method("text-erase", text_erase.get_params, text_erase.apply, subject="document",
                         description="a line of text erased, the paper restored"),
}

MIXED = "mixed"
AUTHENTIC = "authentic"
SYNTH_METHODS = (*METHODS, MIXED, AUTHENTIC)

MIXED_WEIGHTS: dict[str, float] = {
    "copy-move": 0.22, "splice": 0.22, "erase": 0.16,
    "jpeg": 0.08, "resample": 0.08, "contrast": 0.08, "noise": 0.08, "blur": 0.08,
}
INPAINT_MIXED_WEIGHT = 0.16
"""inpaint's weight in `mixed` when --inpaint-model is given (it is left out of MIXED_WEIGHTS otherwise)."""

__all__ = ["METHODS", "MIXED", "AUTHENTIC", "SYNTH_METHODS", "MIXED_WEIGHTS", "INPAINT_MIXED_WEIGHT", "Method", "MethodOptions"]
