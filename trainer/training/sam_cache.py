"""SAM image embeddings on disk: written once per shard (``forgery cache-embeddings``), read by the loader.

Layout: beside each shard ``train-000000.tar`` one file ``train-000000.sam-<tag>.safetensors``, where
``<tag>`` = ``<spec name>-<first 12 hex of the encoder fingerprint>``
(:func:`trainer.model.sam_decoder.encoder_fingerprint`, a SHA-256 of the image encoder's weights), so
caches of several SAMs live side by side and a run finds only its own. One float16 tensor per sample,
named by the sample key, 256 x g x g (g = image_size / 16: 64 for vit_b/l/h, 8 for tiny; 2 MiB per
vit sample); float16 keeps SAM's embeddings to ~1e-3 relative error, below the bf16 the trainer's
autocast computes them in on a GPU. Metadata (strings): ``format`` (``forgery-sam-cache/1``), ``spec``
(the SamSpec as JSON), ``fingerprint``, ``shard`` (its name), ``shard_size`` / ``shard_mtime_ns``
(when it was written), ``dtype`` and ``image_sha1``: a JSON map sample key -> the
:func:`trainer.model.sam_decoder.sam_image_hash` of the image that was encoded.

Writing (:func:`cache_shard`): a shard's embeddings are gathered in memory (samples x 2 MiB for a vit),
then written under a temporary name and renamed, so a file that exists is complete; a file already
there for the same encoder and the same shard (size, mtime) is skipped, so a stopped run resumes.

Reading (:func:`find_caches` at the start of a run, :func:`cached_embeddings` per micro-batch): a
file is used only when its metadata names this run's encoder and its shard is unchanged; files made by
another SAM are never used (the run says so). A sample hits only when the hash of the image the
loader would give the encoder equals the stored one, so augmented or block-masked images always miss.
Files are opened read-only, lazily, once per process (every DDP rank and worker opens its own).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

FORMAT = "forgery-sam-cache/1"


def cache_tag(spec_name: str, fingerprint: str) -> str:
    """``vit_b-1a2b3c4d5e6f``: the part of a cache file's name that names its encoder."""
    return f"{spec_name}-{fingerprint[:12]}"


def cache_path(url: str | Path, tag: str) -> Path:
    """The cache file of shard ``url`` for encoder ``tag``: ``<shard stem>.sam-<tag>.safetensors`` beside it."""
    p = Path(url)
    return p.with_name(f"{p.stem}.sam-{tag}.safetensors")


def other_caches(url: str | Path, tag: str) -> list[Path]:
    """Cache files beside shard ``url`` made by other encoders than ``tag``."""
    p = Path(url)
    return sorted(q for q in p.parent.glob(f"{p.stem}.sam-*.safetensors") if q != cache_path(p, tag))


def _stamp(url: str | Path) -> tuple[str, str]:
    st = Path(url).stat()
    return str(st.st_size), str(st.st_mtime_ns)


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a cache file (its header only); ValueError naming the file when it is none."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001  (safetensors raises its own error types)
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a SAM embedding cache (format {meta.get('format')!r}, expected {FORMAT})")
    return meta


def check_cache(path: Path, url: str | Path, spec: Any, fingerprint: str) -> str | None:
    """None when ``path`` may serve shard ``url`` for this encoder, else the reason (a sentence naming it)."""
    try:
        meta = read_metadata(path)
    except ValueError as e:
        return str(e)
    if meta.get("fingerprint") != fingerprint:
        return (f"{path}: made by another SAM image encoder (fingerprint {meta.get('fingerprint', '?')[:12]}, "
                f"this run's {fingerprint[:12]})")
    if json.loads(meta.get("spec", "{}")) != spec.to_dict():
        return f"{path}: made for SAM spec {meta.get('spec')}, this run's is {json.dumps(spec.to_dict())}"
    if (meta.get("shard_size"), meta.get("shard_mtime_ns")) != _stamp(url):
        return f"{path}: {Path(url).name} was rebuilt after the cache was written; rerun forgery cache-embeddings"
    return None


# -- writing ------------------------------------------------------------------------------------


@dataclass
class ShardCacheResult:
    """What :func:`cache_shard` did for one shard. status: written, present or failed."""

    shard: str
    path: Path
    status: str
    samples: int = 0
    problems: list[str] = field(default_factory=list)


def _encode(encoder: torch.nn.Module, images: list[np.ndarray], image_size: int, device: str) -> torch.Tensor:
    from trainer.model.sam_decoder import prepare_sam_batch

    x, _ = prepare_sam_batch(images, image_size)
    with torch.no_grad():
        return encoder(x.to(device)).to("cpu", torch.float16)


def cache_shard(url: str, encoder: torch.nn.Module, spec: Any, fingerprint: str, *, batch_size: int = 4,
                device: str = "cpu") -> ShardCacheResult:
    """Encode every sample of shard ``url`` once and write its cache file (module docstring).

    ``encoder``: SAM's image encoder (eval mode, on ``device``). A sample whose image does not decode is
    left out (its name and reason in ``problems``; training computes its embedding); a shard that cannot
    be read is ``failed`` and no file is written."""
    from safetensors.torch import save_file

    from forgery_synth.synthesis.loading import decode_rgb
    from trainer.model.sam_decoder import sam_image_hash
    from trainer.training.shard_stream import _raw_stream

    path = cache_path(url, cache_tag(spec.name, fingerprint))
    if path.is_file() and check_cache(path, url, spec, fingerprint) is None:
        return ShardCacheResult(url, path, "present", len(json.loads(read_metadata(path)["image_sha1"])))
    tensors: dict[str, torch.Tensor] = {}
    hashes: dict[str, str] = {}
    problems: list[str] = []
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        if pending:
            for (key, _), emb in zip(pending, _encode(encoder, [im for _, im in pending], spec.image_size, device)):
                tensors[key] = emb.contiguous()
            pending.clear()

    stamp = _stamp(url)
    try:
        for s in _raw_stream([url]):
            try:
                image = decode_rgb(s.image)
            except ValueError as e:
                problems.append(f"{url}: sample {s.key}: {e}")
                continue
            hashes[s.key] = sam_image_hash(image)
            pending.append((s.key, image))
            if len(pending) >= batch_size:
                flush()
        flush()
    except Exception as e:  # noqa: BLE001  (a broken tar: name the shard, go on with the next)
        return ShardCacheResult(url, path, "failed", 0, problems + [f"{url}: cannot be read ({type(e).__name__}: {e})"])
    if not tensors:
        return ShardCacheResult(url, path, "failed", 0, problems + [f"{url}: no sample could be encoded"])
    meta = {"format": FORMAT, "spec": json.dumps(spec.to_dict()), "fingerprint": fingerprint,
            "shard": Path(url).name, "shard_size": stamp[0], "shard_mtime_ns": stamp[1], "dtype": "float16",
            "image_sha1": json.dumps(hashes, sort_keys=True)}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return ShardCacheResult(url, path, "written", len(tensors), problems)


def shard_paths(inputs: list[Path], splits: tuple[str, ...]) -> list[str]:
    """Shards named on the command line: a ``build-shards`` directory (its ``splits`` shards, manifest
    order) or ``.tar`` files. FileNotFoundError / ValueError name the input that is neither."""
    from trainer.training.shard_stream import shard_urls

    out: list[str] = []
    for p in inputs:
        if p.is_dir():
            out += [u for split in splits for u in shard_urls(p, split)]
        elif p.is_file() and p.suffix == ".tar":
            out.append(str(p))
        elif not p.exists():
            raise FileNotFoundError(f"{p}: no such shard directory or .tar file")
        else:
            raise ValueError(f"{p}: not a shard directory or a .tar shard")
    return list(dict.fromkeys(out))


def cache_embeddings(urls: list[str], sam: str, *, batch_size: int = 4, device: str = "cpu") -> Iterator[ShardCacheResult]:
    """``forgery cache-embeddings``: build SAM ``sam`` (a checkpoint path or a spec name, see
    :func:`forgery_synth.models.sam.build_sam`) and :func:`cache_shard` each shard in turn."""
    from trainer.model.sam_decoder import build_sam, encoder_fingerprint

    model, spec = build_sam(sam)
    encoder = model.image_encoder.eval()
    fingerprint = encoder_fingerprint(encoder)
    encoder.to(device)
    for url in urls:
        yield cache_shard(url, encoder, spec, fingerprint, batch_size=batch_size, device=device)


# -- reading ------------------------------------------------------------------------------------


def find_caches(urls: list[str], spec: Any, fingerprint: str) -> tuple[dict[str, str], list[str]]:
    """({shard url: its cache file} usable by this encoder, notes worth logging once): files of
    other encoders, stale or unreadable ones are left out, each with a sentence naming the file."""
    tag = cache_tag(spec.name, fingerprint)
    found: dict[str, str] = {}
    notes: list[str] = []
    others: list[Path] = []
    for url in urls:
        path = cache_path(url, tag)
        if path.is_file():
            why = check_cache(path, url, spec, fingerprint)
            if why is None:
                found[url] = str(path)
            else:
                notes.append(f"not used: {why}")
        others += other_caches(url, tag)
    if others:
        notes.append(f"{len(others)} embedding file(s) of other SAMs beside the shards are not used (e.g. "
                     f"{others[0].name}); this run's SAM caches as *.sam-{tag}.safetensors")
    return found, notes


@functools.lru_cache(maxsize=64)
def _open(path: str) -> tuple[Any, dict[str, str]]:
    from safetensors import safe_open

    handle = safe_open(path, framework="pt")  # read-only; kept open for the life of the process
    return handle, json.loads(handle.metadata()["image_sha1"])


def cached_embeddings(urls: list[str], keys: list[str], images: list[np.ndarray],
                      caches: dict[str, str]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached rows of a micro-batch: (B x 256 x g x g float16, zeros where missing; B bool), or
    None when no sample hits. Sample i hits when its shard ``urls[i]`` has a cache in ``caches`` that
    holds ``keys[i]`` with the hash of ``images[i]`` (the final image the encoder would see)."""
    from trainer.model.sam_decoder import sam_image_hash

    found: list[torch.Tensor | None] = []
    for url, key, image in zip(urls, keys, images):
        path = caches.get(url)
        emb = None
        if path is not None:
            handle, hashes = _open(path)
            if hashes.get(key) == sam_image_hash(image):
                try:
                    emb = handle.get_tensor(key)
                except Exception as e:  # noqa: BLE001
                    raise ValueError(f"{path}: cannot read the embedding of {key} ({e})") from None
        found.append(emb)
    first = next((e for e in found if e is not None), None)
    if first is None:
        return None
    rows = torch.tensor([e is not None for e in found])
    return torch.stack([e if e is not None else torch.zeros_like(first) for e in found]), rows
