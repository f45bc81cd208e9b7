"""Reading shards without decoding them: their paths, raw samples (webdataset) and per-shard counts.

The per-shard (template, label) counts come from manifest.json (``template_labels``, written by
build-shards), so the epoch length is known without reading a shard; old shards are read once.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from trainer.training.dealing import ShardCounts

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")


@dataclass
class RawSample:
    """One shard sample, undecoded. label: 1 fake, 0 real; meta: the sample's JSON; url: its shard."""

    key: str
    label: int
    template: str
    lang: str
    meta: dict
    image: bytes
    mask: bytes | None
    url: str = ""


def shard_urls(data_dir: str | Path, split: str) -> list[str]:
    """Paths of the ``split`` shards of a ``forgery build-shards`` output, in manifest order."""
    root = Path(data_dir)
    manifest = root / "manifest.json"
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        names = [s["name"] for s in info.get("splits", {}).get(split, {}).get("shards", [])]
        return [str(root / n) for n in names]
    return [str(p) for p in sorted(root.glob(f"{split}-*.tar"))]


def _raw_stream(urls: list[str]) -> Iterator[RawSample]:
    """Tar members grouped into samples (webdataset), nothing decoded but the small JSON."""
    import webdataset as wds

    if not urls:
        return
    ds = wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False)
    for s in ds:
        meta = json.loads(s["json"])
        ext = next((e for e in IMAGE_EXTS if e in s), None)
        if ext is None:
            raise ValueError(f"sample {s['__key__']} in {s.get('__url__')} has no image member")
        label = meta.get("label")
        if label not in ("real", "fake"):
            raise ValueError(f"sample {s['__key__']}: label must be real or fake, got {label!r}")
        yield RawSample(
            key=s["__key__"], label=int(label == "fake"), template=str(meta.get("template", "json")),
            lang=str(meta.get("lang", "en")), meta=meta, image=s[ext], mask=s.get("mask.png"),
            url=str(s.get("__url__", "")),
        )


def _stamp(urls: list[str]) -> tuple[tuple[str, int, int], ...]:
    """(url, mtime_ns, size) of each shard: the cache key, so shards rebuilt at the same paths are recounted."""
    out = []
    for u in urls:
        st = Path(u).stat()
        out.append((u, st.st_mtime_ns, st.st_size))
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _shard_counts(stamped: tuple[tuple[str, int, int], ...]) -> tuple[tuple[ShardCounts, ...], str | None]:
    urls = [u for u, _, _ in stamped]
    counts: dict[str, ShardCounts] = {}
    names = {Path(u).name: Path(u).parent for u in urls}
    for root in sorted(set(names.values())):
        manifest = root / "manifest.json"
        if not manifest.is_file():
            continue
        for split in json.loads(manifest.read_text()).get("splits", {}).values():
            for sh in split.get("shards", []):
                if "template_labels" in sh and names.get(sh["name"]) == root:
                    counts[str(root / sh["name"])] = {
                        (t, int(lab == "fake")): n for t, c in sh["template_labels"].items() for lab, n in c.items() if n}
    missing = [u for u in urls if u not in counts]
    for u in missing:
        c: ShardCounts = {}
        for s in _raw_stream([u]):
            c[(s.template, s.label)] = c.get((s.template, s.label), 0) + 1
        counts[u] = c
    note = (f"{len(missing)} of {len(urls)} train shards have no per-shard counts in manifest.json (shards built "
            "before they were recorded): counted by reading them; rebuild with build-shards to skip this") if missing else None
    return tuple(counts[u] for u in urls), note


def shard_counts(urls: list[str]) -> list[ShardCounts]:
    """Per shard, its samples per (template, label): from manifest.json's per-shard ``template_labels``,
    else (old shards) by reading the shard's JSON once (:func:`shard_counts_note` says so). Cached."""
    return list(_shard_counts(_stamp(urls))[0])


def shard_counts_note(urls: list[str]) -> str | None:
    """A sentence when some shards had to be read to be counted, else None."""
    return _shard_counts(_stamp(urls))[1]
