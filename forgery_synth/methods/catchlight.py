"""Catchlight: the specular reflection in the pupils added, moved or removed, against the light.

A catchlight is the light source mirrored in the cornea: its place in the pupil agrees with where
the face is lit from. This method puts it where the light is not: added on the side away from the
key light (measured from the face's shading, `faces.light_side`), moved from where it was to the
mirrored side, or removed although the light would give one. Both eyes get the same edit. The
face, eyes, light side and the catchlight's new direction are logged, so an answer can say that
the reflection contradicts the light, and `apply` redoes no detection.
"""

from __future__ import annotations

import cv2
import numpy as np

from forgery_synth.methods.base import MethodOptions
from forgery_synth.methods.forgery import Forgery
from forgery_synth.synthesis.faces import catchlight, light_side, require_face

NAME = "catchlight"
ACTIONS = ("add", "move", "remove")


def _direction(dx: float, dy: float) -> str:
    """'upper left', 'lower right', ... of an offset in image axes (y down)."""
    return f"{'upper' if dy < 0 else 'lower'} {'left' if dx < 0 else 'right'}"


def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
    """Detect the face, its eyes, their catchlights and the light side; draw the action and the
    new catchlight's offset (on the side away from the light)."""
    face = require_face(image, NAME)
    light = light_side(image, face)
    existing = [catchlight(image, eye) for eye in face.eyes]
    actions = ["add"] + (["move", "remove"] if all(existing) else [])
    action = str(rng.choice(actions))
    away = 1.0 if light == "left" else -1.0
    dx = away * float(rng.uniform(0.3, 0.6))
    dy = -float(rng.uniform(0.1, 0.5))
    params = {"op": NAME, "face": face.to_params(), "light": light, "action": action,
              "existing": existing if all(existing) else None,
              "offset": [round(dx, 3), round(dy, 3)], "size": round(float(rng.uniform(0.3, 0.5)), 3),
              "brightness": int(rng.integers(225, 256)), "place": {"kind": "eyes"}}
    params["direction"] = "none" if action == "remove" else _direction(dx, dy)
    return params


def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
    """Edit each eye's catchlight as logged; HxWx3 uint8 in, Forgery out (mask: the pixels changed)."""
    out = image.copy()
    touched = np.zeros(image.shape[:2], np.uint8)
    for k, (ex, ey, r) in enumerate(params["face"]["eyes"]):
        spot = max(1, round(params["size"] * r))
        if params["action"] in ("move", "remove") and params["existing"]:
            cx, cy = params["existing"][k]
            hole = np.zeros(image.shape[:2], np.uint8)
            cv2.circle(hole, (int(cx), int(cy)), spot + 1, 255, -1)
            y0, y1 = max(0, cy - 4 * r - 4), cy + 4 * r + 5
            x0, x1 = max(0, cx - 4 * r - 4), cx + 4 * r + 5
            out[y0:y1, x0:x1] = cv2.inpaint(np.ascontiguousarray(out[y0:y1, x0:x1]), hole[y0:y1, x0:x1], 3, cv2.INPAINT_TELEA)
            touched |= hole
        if params["action"] in ("add", "move"):
            dx, dy = params["offset"]
            spot_mask = np.zeros(image.shape[:2], np.uint8)
            cv2.circle(spot_mask, (int(round(ex + dx * r)), int(round(ey + dy * r))), spot, 255, -1)
            inside = spot_mask > 0
            out[inside] = params["brightness"]
            touched |= spot_mask
    changed = np.any(out != image, axis=-1)
    out[~changed] = image[~changed]
    return Forgery(image=out, mask=changed.astype(np.uint8) * 255, op=params,
                   edge=(cv2.dilate(touched, np.ones((3, 3), np.uint8)) > 0).astype(np.uint8) * 255)
