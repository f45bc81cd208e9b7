"""Face swap: the face of another portrait aligned on the eyes and blended in.

The donor's face is found like the target's (`faces.detect_face`); a similarity transform (scale,
rotation, shift) maps the donor's two pupils onto the target's, the warped donor's colours are
moved towards the target face's (`splice.harmonize`), and the inner face (brows to chin, an ellipse
from the eyes) is blended in. Both faces are logged, so `apply` redoes no detection. A donor
without a face is unusable (the engine tries another donor).
"""

from __future__ import annotations

import cv2
import numpy as np

from forgery_synth.methods.base import MethodOptions, choose_blend
from forgery_synth.methods.forgery import Forgery
from forgery_synth.methods.splice import harmonize
from forgery_synth.synthesis.blend import composite, edge_band
from forgery_synth.synthesis.faces import NoFaceError, detect_face, require_face

NAME = "face-swap"


def eye_transform(donor_eyes: list, target_eyes: list) -> np.ndarray:
    """2x3 float64 similarity transform taking the donor's pupils onto the target's."""
    (ax, ay, _), (bx, by, _) = donor_eyes
    (cx, cy, _), (dx, dy, _) = target_eyes
    src, dst = complex(bx - ax, by - ay), complex(dx - cx, dy - cy)
    z = dst / src if abs(src) > 0 else 1.0
    t = complex(cx, cy) - z * complex(ax, ay)
    return np.array([[z.real, -z.imag, t.real], [z.imag, z.real, t.imag]], np.float64)


def inner_face(shape: tuple[int, int], face: dict) -> np.ndarray:
    """HxW bool: the inner face (brows to chin) as an ellipse from the eyes."""
    (lx, ly, _), (rx, ry, _) = face["eyes"]
    d = max(4.0, float(np.hypot(rx - lx, ry - ly)))
    angle = float(np.degrees(np.arctan2(ry - ly, rx - lx)))
    cx, cy = (lx + rx) / 2.0, (ly + ry) / 2.0
    nx, ny = -np.sin(np.radians(angle)), np.cos(np.radians(angle))
    centre = (int(round(cx + 0.5 * d * nx)), int(round(cy + 0.5 * d * ny)))
    canvas = np.zeros(shape[:2], np.uint8)
    cv2.ellipse(canvas, centre, (int(round(0.9 * d)), int(round(1.2 * d))), angle, 0, 360, 255, -1)
    return canvas > 0


def get_params(image: np.ndarray, rng: np.random.Generator, options: MethodOptions, donor: np.ndarray | None = None) -> dict:
    """Detect both faces; draw the harmonisation strength and the blend."""
    if donor is None:
        raise ValueError(f"{NAME} needs a donor portrait")
    face = require_face(image, NAME)
    donor_face = detect_face(donor)
    if donor_face is None:
        raise NoFaceError(f"{NAME}: the donor photo has no face")
    blend = choose_blend(options, rng, image.shape[:2], ("feather", "poisson"))
    return {"op": NAME, "face": face.to_params(), "donor_face": donor_face.to_params(),
            "donor_size": [int(donor.shape[1]), int(donor.shape[0])],
            "harmonize": round(float(rng.uniform(0.6, 1.0)), 3), **blend, "place": {"kind": "face"}}


def apply(image: np.ndarray, params: dict, donor: np.ndarray | None = None) -> Forgery:
    """Warp the donor face onto the logged eyes and blend it in; HxWx3 uint8 in, Forgery out."""
    if donor is None:
        raise ValueError(f"{NAME} needs the donor image to replay")
    if [donor.shape[1], donor.shape[0]] != list(params["donor_size"]):
        raise ValueError(f"donor is {donor.shape[1]}x{donor.shape[0]}, the log expects {params['donor_size'][0]}x{params['donor_size'][1]}")
    h, w = image.shape[:2]
    m = eye_transform(params["donor_face"]["eyes"], params["face"]["eyes"])
    warped = cv2.warpAffine(donor, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    valid = cv2.warpAffine(np.full(donor.shape[:2], 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
    footprint = inner_face((h, w), params["face"]) & valid
    footprint[:2], footprint[-2:], footprint[:, :2], footprint[:, -2:] = False, False, False, False
    if not footprint.any():
        raise ValueError(f"{NAME}: the aligned donor face misses the target face")
    ys, xs = np.nonzero(footprint)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    patch = harmonize(warped[y0:y1, x0:x1], footprint[y0:y1, x0:x1], image[y0:y1, x0:x1][footprint[y0:y1, x0:x1]],
                      params["harmonize"])
    content = warped.copy()
    content[y0:y1, x0:x1] = patch
    out = composite(image, content, footprint, params["blend"], params["radius"])
    return Forgery(image=out, mask=footprint.astype(np.uint8) * 255, op=params,
                   edge=edge_band(footprint, params["radius"]).astype(np.uint8) * 255)
