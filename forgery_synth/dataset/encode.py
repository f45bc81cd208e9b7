"""One planned sample to its shard members: image and mask in the Qwen frame, pre-encoded, and the conversation JSON."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
from PIL import Image

from forgery_synth.dataset import conversations as conv
from forgery_synth.dataset.detectors import separation
from forgery_synth.dataset.evidence import measured_evidence
from forgery_synth.dataset.places import place_sentences
from forgery_synth.dataset.plan import Item
from forgery_synth.dataset.prompts import focus_prompt
from forgery_synth.dataset.qwen_frame import (
    resize_to_frame,
)
from forgery_synth.dataset.shard_options import ShardOptions
from forgery_synth.dataset.tar_shards import Encoded, schema_problems
from forgery_synth.synthesis.content import source_content
from forgery_synth.synthesis.loading import ImageRejected, load_image
from forgery_synth.synthesis.polygons import PolygonOptions, mask_to_polygons


def _load_rgb(path: str, transpose: bool = False) -> np.ndarray:
    """HxWx3 uint8 RGB pixels of an image file, read by the synthesis engine's one loader (16-bit,
    palette and transparent images come out exactly as synthesis sees them); EXIF orientation is
    applied if ``transpose`` (raw photos; the engine's outputs are already upright)."""
    return load_image(path, orient=transpose).rgb


def _load_mask(path: str, size_hw: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as im:
        if im.size != (size_hw[1], size_hw[0]):
            raise ValueError(f"mask is {im.size[0]}x{im.size[1]} but image is {size_hw[1]}x{size_hw[0]}")
        m = np.asarray(im.convert("L"))
    return np.where(m > 127, 255, 0).astype(np.uint8)


def _encode_png(arr: np.ndarray, level: int) -> bytes:
    """PNG bytes of an HxWx3 RGB or HxW L uint8 array; masks use zlib's RLE strategy (smaller)."""
    params = [cv2.IMWRITE_PNG_COMPRESSION, level]
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    else:
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, buf = cv2.imencode(".png", arr, params)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def encode_image(image: np.ndarray, codec: str, quality: int | None, png_level: int) -> tuple[str, bytes]:
    """Encode an HxWx3 uint8 RGB image by the codec policy; returns (extension, bytes). No
    metadata is written, for real and fake alike."""
    if codec == "png":
        return "png", _encode_png(image, png_level)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "jpg", buf.tobytes()


def _pair_picture(forged: np.ndarray, mask: np.ndarray, real_path: str, transpose: bool, side: str) -> tuple[np.ndarray, np.ndarray]:
    """The sample (on `side`) and the photo it was made from side by side (Hx2Wx3), and the
    matching mask (Hx2W; all zero for an authentic sample)."""
    real = _load_rgb(real_path, transpose)
    h, w = forged.shape[:2]
    rh, rw = real.shape[:2]
    if abs(rw / rh - w / h) > 0.02 * (w / h):
        raise ValueError(f"authentic photo {rw}x{rh} does not match the forgery's {w}x{h}")
    if (rh, rw) != (h, w):
        real = np.asarray(Image.fromarray(real).resize((w, h), Image.Resampling.BICUBIC))
    empty = np.zeros_like(mask)
    if side == "left":
        return np.concatenate([forged, real], 1), np.concatenate([mask, empty], 1)
    return np.concatenate([real, forged], 1), np.concatenate([empty, mask], 1)


_BAD_INPUT = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, ImageRejected)  # PIL: SyntaxError for some broken files


def _variant(key: str) -> int:
    """Which paraphrase a sample's answer uses: a hash of its key (the plan's draws are untouched)."""
    return int.from_bytes(hashlib.sha256(f"variant|{key}".encode()).digest()[:4], "big")


def encode_item(it: Item, options: ShardOptions) -> Encoded:
    """Load, resize to the Qwen frame, write the answer and encode one sample. Never raises for a
    bad sample (unreadable, size mismatch, extreme aspect ratio, …): returns an `Encoded` with
    ``error`` set instead."""
    try:
        return _encode_item(it, options)
    except _BAD_INPUT as exc:
        out = Encoded(it.key, it.split, label=it.label, method=it.method, lang=it.lang, path=it.image)
        out.error = f"{type(exc).__name__}: {exc}"
        return out


def _encode_item(it: Item, options: ShardOptions) -> Encoded:
    out = Encoded(it.key, it.split, label=it.label, method=it.method, lang=it.lang, path=it.image)
    image = _load_rgb(it.image, it.transpose)
    h, w = image.shape[:2]
    if it.mask is not None:
        mask = _load_mask(it.mask, (h, w))
    elif it.label == "real":
        mask = np.zeros((h, w), np.uint8)
    else:
        raise ValueError("forged sample without a mask")
    if it.label == "real" and mask.any():
        raise ValueError("authentic sample with a non-empty mask")
    if it.label == "fake" and not mask.any():
        raise ValueError("forged sample with an empty mask")
    template, prompt = it.template, it.prompt
    content = it.log.get("source", {}).get("content") or source_content(it.image, image, it.source.get("sha256"))
    if template == "pair":
        try:
            image, mask = _pair_picture(image, mask, it.pair_with or "", it.pair_transpose, it.pair_side)
        except _BAD_INPUT:
            rng = np.random.default_rng([options.seed, 1, int.from_bytes(hashlib.sha256(it.key.encode()).digest()[:8], "big")])
            template, prompt = it.fallback, conv.draw_prompt(it.fallback, it.lang, rng)
    key_int = int.from_bytes(hashlib.sha256(it.key.encode()).digest()[:8], "big")
    prompt = focus_prompt(content, template, it.lang, np.random.default_rng([options.seed, 2, key_int])) or prompt
    frame_img, frame_mask = resize_to_frame(image, mask, options.min_pixels, options.max_pixels)
    fh, fw = frame_mask.shape
    area = float((frame_mask > 0).mean())
    label = it.label
    if template == "json":
        polys = mask_to_polygons(frame_mask, PolygonOptions(options.max_regions, options.max_points))
        answer = conv.json_answer(label, polys)
    elif template == "explain":
        level, evidence = None, []
        if label == "fake":
            level = conv.difficulty(separation(frame_img, frame_mask), area, options.difficulty)
            evidence = place_sentences(it.log, frame_img, frame_mask, it.lang) + measured_evidence(frame_img, frame_mask, it.lang)
        answer = conv.explain_answer(label, it.log, frame_mask, level, it.lang, _variant(it.key), evidence)
    elif template == "conclusion":
        answer = conv.conclusion_answer(label, it.lang)
    else:
        half = fw // 2
        cut = slice(0, half) if it.pair_side == "left" else slice(fw - half, fw)
        own = frame_mask[:, cut]
        evidence = (place_sentences(it.log, frame_img[:, cut], own, it.lang)
                    + measured_evidence(frame_img[:, cut], own, it.lang)) if label == "fake" else []
        answer = conv.pair_answer(label, it.pair_side, it.log, own, it.lang, _variant(it.key), evidence)
    answer = conv.place_tokens(answer, options.cls_position, options.mask_position)
    ext, img_bytes = encode_image(frame_img, options.codec, it.quality, options.png_level)
    source = {"path": str(it.source.get("path") or ""), "sha256": str(it.source["sha256"]),
              "size": [int(v) for v in it.source.get("size") or [w, h]]}
    paired = template == "pair"
    record = {
        "key": it.key, "split": it.split,
        "messages": conv.make_messages(prompt, answer),
        "images": [f"{it.key}.{ext}"],
        "label": label, "method": it.method, "template": template, "lang": it.lang,
        "log_json": json.dumps({**it.log, "source": {**it.log.get("source", {}), "content": content}}, ensure_ascii=False), "source": source,
        "frame": {"size": [fw, fh], "input_size": [int(image.shape[1]), int(image.shape[0])],
                  "pair_with": (it.pair_with or "") if paired else "",
                  "pair_side": (it.pair_side or "") if paired else ""},
        "codec": {"format": "jpeg" if ext == "jpg" else "png", "quality": int(it.quality or 0)},
    }
    drift = schema_problems(record)
    if drift:  # a writer bug, not a bad sample: never turned into a reject
        raise RuntimeError(f"{it.key}: shard JSON departs from SAMPLE_SCHEMA: {'; '.join(drift)}")
    out.template = template
    out.members = {ext: img_bytes, "mask.png": _encode_png(frame_mask, options.png_level),
                   "json": json.dumps(record, ensure_ascii=False).encode("utf-8")}
    return out
