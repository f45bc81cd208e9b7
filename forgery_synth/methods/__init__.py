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
    catchlight,
    copy_move,
    erase,
    face_swap,
    hairline,
    inpaint,
    skin_retouch,
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
    "hairline": Method("hairline", hairline.get_params, hairline.apply, subject="portrait",
                       description="the hair-forehead boundary band blurred, smeared or repainted (portraits)"),
    "catchlight": Method("catchlight", catchlight.get_params, catchlight.apply, subject="portrait",
                         description="the pupils' catchlight added, moved or removed against the light (portraits)"),
    "face-swap": Method("face-swap", face_swap.get_params, face_swap.apply, needs_donor=True, subject="portrait",
                        description="the face of a donor portrait aligned on the eyes and blended in (portraits)"),
    "skin-retouch": Method("skin-retouch", skin_retouch.get_params, skin_retouch.apply, subject="portrait",
                           description="part of the face's skin smoothed (portraits)"),
}

MIXED = "mixed"
AUTHENTIC = "authentic"
SYNTH_METHODS = (*METHODS, MIXED, AUTHENTIC)

MIXED_WEIGHTS: dict[str, float] = {
    "copy-move": 0.22, "splice": 0.22, "erase": 0.16,
    "jpeg": 0.08, "resample": 0.08, "contrast": 0.08, "noise": 0.08, "blur": 0.08,
}
"""The portrait methods (subject "portrait") are left out: `mixed` over any photos must not draw a
method that needs a face; with --weights they are drawn only for sources with a detected face."""
INPAINT_MIXED_WEIGHT = 0.16
"""inpaint's weight in `mixed` when --inpaint-model is given (it is left out of MIXED_WEIGHTS otherwise)."""

__all__ = ["METHODS", "MIXED", "AUTHENTIC", "SYNTH_METHODS", "MIXED_WEIGHTS", "INPAINT_MIXED_WEIGHT", "Method", "MethodOptions"]
