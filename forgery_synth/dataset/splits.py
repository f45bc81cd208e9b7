"""Train/val/test assignment by source photo, label balance by sampling, and sample order.

Everything here is a pure function of hashes of sha256 strings and keys, so the outcome does not
depend on the order in which files were listed or given on the command line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

SPLITS = ("train", "val", "test")


def unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts' string forms (sha256 based)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(source_sha256s: Iterable[str], fractions: Sequence[float]) -> dict[str, str]:
    """The split of every source photo (by sha256): train/val/test shares ``fractions`` (sum 1).

    Sources are ranked by a hash of their sha256 (independent of the seed and of input order),
    and the ranks are cut at quotas by largest remainder, so the shares are as exact as whole
    photos allow and every split with a positive share gets at least one photo when there are
    enough photos: a 10-photo dataset at 0.6/0.2/0.2 gets 6/2/2, not a chance draw that leaves
    the test split empty. Every sample of one photo lands in that photo's split.
    """
    ranked = sorted(set(source_sha256s), key=lambda sha: (unit_hash("split", sha), sha))
    n = len(ranked)
    exact = [share * n for share in fractions]
    counts = [int(e) for e in exact]
    for i in sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))[: n - sum(counts)]:
        counts[i] += 1
    positive = [i for i, share in enumerate(fractions) if share > 0]
    if n >= len(positive):
        for i in positive:  # borrow a photo from the largest split for any empty one
            if counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    out, start = {}, 0
    for name, count in zip(SPLITS, counts):
        for sha in ranked[start : start + count]:
            out[sha] = name
        start += count
    return out


def near_duplicate_groups(hashes: dict[str, int], max_distance: int) -> dict[str, str]:
    """Group photos whose 64-bit perceptual hashes differ in at most `max_distance` bits.

    `hashes` maps each photo's sha256 to its hash. Returns sha256 -> the group's representative
    (its smallest sha256), linking transitively (single linkage), so a stereo pair, a crop or a
    re-save of one photo ends up in one group and then in one split. A negative distance groups
    nothing (every photo is its own representative).
    """
    shas = sorted(hashes)
    parent = {sha: sha for sha in shas}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    if max_distance >= 0 and len(shas) > 1:
        import numpy as np

        values = np.array([hashes[sha] for sha in shas], dtype=np.uint64)
        for i in range(len(shas) - 1):
            close = np.nonzero(np.bitwise_count(values[i + 1:] ^ values[i]) <= max_distance)[0]
            for j in close + i + 1:
                a, b = root(shas[i]), root(shas[int(j)])
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return {sha: root(sha) for sha in shas}


def balance(real_keys: list[str], fake_keys: list[str], real_ratio: float, seed: int) -> tuple[list[str], list[str]]:
    """Drop samples of the over-represented label so that reals make ``real_ratio`` of the result
    (as close as whole samples allow). Which samples go is decided by a seeded hash of the key.
    If one label is absent, nothing is dropped (a split with one label cannot be balanced by
    dropping; the manifest reports the achieved ratio)."""
    r, f = len(real_keys), len(fake_keys)
    if r == 0 or f == 0:
        return list(real_keys), list(fake_keys)
    if real_ratio <= 0.0:
        return [], list(fake_keys)
    if real_ratio >= 1.0:
        return list(real_keys), []
    want_r = round(real_ratio * f / (1.0 - real_ratio))
    if want_r <= r:
        return _keep(real_keys, max(want_r, 1), seed), list(fake_keys)
    want_f = round((1.0 - real_ratio) * r / real_ratio)
    return list(real_keys), _keep(fake_keys, max(min(want_f, f), 1), seed)


def _keep(keys: list[str], n: int, seed: int) -> list[str]:
    ranked = sorted(keys, key=lambda k: (unit_hash("keep", seed, k), k))
    return ranked[:n]


def order(keys: list[str], seed: int) -> list[str]:
    """A seeded shuffle of ``keys`` by hash, so shards mix labels and methods."""
    return sorted(keys, key=lambda k: (unit_hash("order", seed, k), k))


def interleave(real_keys: list[str], fake_keys: list[str], seed: int) -> list[str]:
    """The write order: each label shuffled by a seeded hash (:func:`order`), then real and fake
    alternating (which starts is drawn from the seed), the surplus of one label at the end. So every
    shard, and every stretch of it, holds both labels: a reader balancing labels waits for little."""
    reals, fakes = order(real_keys, seed), order(fake_keys, seed)
    first, second = (fakes, reals) if unit_hash("interleave", seed) < 0.5 else (reals, fakes)
    out = [k for pair in zip(first, second) for k in pair]
    n = min(len(first), len(second))
    return out + first[n:] + second[n:]


SPLIT_BY = ("source", "camera")
"""What `build-shards --split-by` keeps within one split: a source photo (with its near duplicates), or a camera."""


def assign_by_camera(group_of: dict[str, str], camera_of: dict[str, str],
                     fractions: Sequence[float]) -> tuple[dict[str, str], dict[str, str]]:
    """Splits that hold cameras out: every source photo of one camera in one split.

    ``group_of``: source sha256 -> its near-duplicate group (`near_duplicate_groups`); ``camera_of``:
    sha256 -> camera ("" unknown). A near-duplicate group takes the smallest camera named in it, so a
    re-save without EXIF follows its original. Cameras are assigned by :func:`assign_splits` (the
    shares are shares of *cameras*, not of samples); photos of no known camera are assigned by source
    group as with ``--split-by source``, on their own. Returns (sha256 -> split, sha256 -> the camera
    that decided it, "" for the split by source).
    """
    group_camera: dict[str, str] = {}
    for sha, group in group_of.items():
        cam = camera_of.get(sha, "")
        if cam and (group not in group_camera or not group_camera[group] or cam < group_camera[group]):
            group_camera[group] = cam
        group_camera.setdefault(group, "")
    cameras = {c for c in group_camera.values() if c}
    split_of_camera = assign_splits(cameras, fractions)
    split_of_group = assign_splits({g for g, c in group_camera.items() if not c}, fractions)
    split_of, decided_by = {}, {}
    for sha, group in group_of.items():
        cam = group_camera[group]
        split_of[sha] = split_of_camera[cam] if cam else split_of_group[group]
        decided_by[sha] = cam
    return split_of, decided_by
