"""A folder of fingerprints (`forgery fingerprint --out DIR`) read back, and a sample's fingerprint
mapped onto the pixels of its image.

A sample's camera is its log's ``source.camera`` (older logs: `exif.camera_name` of
``source.exif``). Its fingerprint applies when the camera is in the folder and the source photo,
turned back to sensor orientation (``source.exif.Orientation``), has the fingerprint's size; the
fingerprint is then turned upright and resized, the whole frame onto the whole image (cv2
INTER_AREA, as the Qwen frame is made), which lines up as long as every step between source and
image was a whole-image resize (the Qwen frame, `--post resize`, stage-3 rescaling). A crop in
between misaligns it and the correlation then reads low everywhere (less evidence, never a false
label). Otherwise, :meth:`FingerprintBank.for_log` answers None and says why (:attr:`misses`).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np

from forgery_synth.fingerprints.build import FORMAT
from forgery_synth.fingerprints.prnu import orient
from forgery_synth.synthesis.exif import camera_name

_FILE_RE = re.compile(r"^[A-Za-z0-9._-]+\.safetensors$")
_CACHE = 16


def log_camera(log: dict) -> str:
    """The camera of a sample's operation log: ``source.camera``, else from ``source.exif``; "" unknown."""
    source = log.get("source") or {}
    return str(source["camera"]) if "camera" in source else camera_name(source.get("exif"))


class FingerprintBank:
    """The fingerprints of a folder: ``cameras.json`` read at once, each ``K`` loaded when first asked
    for. ``misses`` counts why a sample got no fingerprint ("unknown camera", "no fingerprint for
    <camera>", "size differs ...")."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        index_path = self.folder / "cameras.json"
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{index_path}: not a fingerprint folder ({type(e).__name__}: {e})") from None
        if index.get("format") != FORMAT:
            raise ValueError(f"{index_path}: format {index.get('format')!r}, expected {FORMAT!r}")
        self.cameras: dict[str, dict] = {}
        for camera, entry in (index.get("cameras") or {}).items():
            name = str(entry.get("file", ""))
            if not _FILE_RE.match(name):  # a plain file name inside the folder, never a path
                raise ValueError(f"{index_path}: camera {camera!r} names file {name!r}, not a plain .safetensors name")
            self.cameras[camera] = entry
        self._k: dict[str, np.ndarray] = {}
        self._fitted: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.misses: Counter[str] = Counter()

    def fingerprint(self, camera: str) -> np.ndarray | None:
        """K of ``camera`` (HxW float32, sensor orientation), or None when the folder has none."""
        if camera not in self.cameras:
            return None
        if camera not in self._k:
            from safetensors.numpy import load_file

            self._k[camera] = load_file(str(self.folder / self.cameras[camera]["file"]))["K"].astype(np.float32)
        return self._k[camera]

    def for_log(self, log: dict, shape_hw: tuple[int, int]) -> np.ndarray | None:
        """The fingerprint of the sample ``log`` describes, on an image of ``shape_hw`` (h, w):
        HxW float32, or None (the reason counted in :attr:`misses`)."""
        camera = log_camera(log)
        if not camera:
            self.misses["unknown camera"] += 1
            return None
        k = self.fingerprint(camera)
        if k is None:
            self.misses[f"no fingerprint for {camera}"] += 1
            return None
        source = log.get("source") or {}
        orientation = (source.get("exif") or {}).get("Orientation") or 1
        upright = orient(k, orientation)
        size = source.get("size")
        if size and [int(v) for v in size] != [upright.shape[1], upright.shape[0]]:
            self.misses[f"{camera}: source size differs from the fingerprint's"] += 1
            return None
        key = (camera, int(orientation), int(shape_hw[0]), int(shape_hw[1]))
        if key not in self._fitted:
            import cv2

            h, w = key[2], key[3]
            fitted = upright if upright.shape == (h, w) else cv2.resize(upright, (w, h), interpolation=cv2.INTER_AREA)
            self._fitted[key] = np.ascontiguousarray(fitted, dtype=np.float32)
            if len(self._fitted) > _CACHE:
                self._fitted.popitem(last=False)
        self._fitted.move_to_end(key)
        return self._fitted[key]
