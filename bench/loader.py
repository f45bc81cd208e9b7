"""Loader benchmark: shard bytes read per epoch, startup time and raw-stream speed of the training data.

Synthetic shards (small undecoded samples, labels interleaved, a manifest with per-shard counts as
build-shards writes it) in a temp dir. For each layout (ranks x workers) every reading slot's raw
stream is iterated in this one process; bytes read = the sizes of the shard files each slot opens
(``epoch_slots``). Startup = the time to size the epoch (``count_epoch``) plus the first sample of
slot 0, for 8, 32 and 128 shards: the ratio against 8 shards (the floor, same run) must stay near 1.

    PYTHONPATH=$PWD .venv/bin/python bench/loader.py [--per-shard 64] [--epoch 1]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

LAYOUTS = ((1, 1), (2, 2), (4, 2))
SIZES = (8, 32, 128)
TEMPLATES = ("json", "explain")


def write_shards(root: Path, n_shards: int, per_shard: int) -> list[str]:
    """``n_shards`` train tars of ``per_shard`` samples (labels alternating), and their manifest."""
    import numpy as np
    import webdataset as wds

    rng = np.random.default_rng(0)
    shards = []
    for i in range(n_shards):
        name = f"train-{i:06d}.tar"
        counts: dict[str, dict[str, int]] = {}
        with wds.TarWriter(str(root / name)) as sink:
            for j in range(per_shard):
                label = ("real", "fake")[j % 2]
                template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
                counts.setdefault(template, {"real": 0, "fake": 0})[label] += 1
                meta = {"label": label, "template": template, "lang": "en", "messages": []}
                sink.write({"__key__": f"s{i:04d}x{j:04d}", "png": rng.bytes(int(rng.integers(1500, 2500))),
                            "json": json.dumps(meta).encode()})
        shards.append({"name": name, "bytes": (root / name).stat().st_size, "count": per_shard,
                       "template_labels": counts})
    (root / "manifest.json").write_text(json.dumps({"interleaved": True, "splits": {"train": {"shards": shards}}}))
    return [str(root / s["name"]) for s in shards]


def read_ratio_of(urls: list[str], ranks: int, workers: int, epoch: int) -> tuple[float, int, float]:
    """(bytes read / dataset bytes, samples kept, seconds) with every slot's raw stream iterated."""
    from trainer.training.data import DataOptions, epoch_slots, slot_samples

    total = sum(Path(u).stat().st_size for u in urls)
    read, kept, t0 = 0, 0, time.perf_counter()
    for rank in range(ranks):
        opts = DataOptions(seed=0, shuffle_buffer=16, rank=rank, world_size=ranks, workers=workers)
        for w in range(workers):
            slot = rank * workers + w
            read += sum(Path(urls[s]).stat().st_size for s, _, _ in epoch_slots(len(urls), opts, epoch)[slot])
            kept += sum(1 for _ in slot_samples(urls, opts, epoch, slot))
    return read / total, kept, time.perf_counter() - t0


def startup(urls: list[str], epoch: int) -> float:
    """Seconds to size the epoch (manifest counts) and get slot 0's first sample."""
    from trainer.training import data, shard_stream

    shard_stream._shard_counts.cache_clear()
    opts = data.DataOptions(seed=0, shuffle_buffer=16, world_size=2, workers=2)
    t0 = time.perf_counter()
    data.count_epoch(urls, opts, epoch)
    next(iter(data.slot_samples(urls, opts, epoch, 0)))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-shard", type=int, default=64)
    ap.add_argument("--epoch", type=int, default=1)
    args = ap.parse_args()
    out = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp:
        sets = {}
        for n in SIZES:
            root = Path(tmp) / str(n)
            root.mkdir()
            sets[n] = write_shards(root, n, args.per_shard)
        print(f"{'shards':>6} {'layout':>6} {'read ratio':>10} {'samples':>8} {'samples/s':>10}", file=out)
        worst = 0.0
        for n in SIZES:
            for ranks, workers in LAYOUTS:
                ratio, kept, secs = read_ratio_of(sets[n], ranks, workers, args.epoch)
                worst = max(worst, ratio)
                print(f"{n:>6} {f'{ranks}x{workers}':>6} {ratio:>10.3f} {kept:>8} {kept / secs:>10.0f}", file=out)
        for n in SIZES:
            startup(sets[n], args.epoch)  # warm-up: imports, page cache
        times = {n: min(startup(sets[n], args.epoch) for _ in range(5)) for n in SIZES}
        floor = times[SIZES[0]]
        print(f"\n{'shards':>6} {'startup s':>10} {'vs 8 shards':>12} {'reading all JSON s':>19}", file=out)
        from trainer.training.data import _raw_stream

        for n in SIZES:
            t = times[n]
            t0 = time.perf_counter()
            sum(1 for _ in _raw_stream(sets[n]))  # what sizing an epoch cost before: one read of every shard
            print(f"{n:>6} {t:>10.4f} {t / floor:>12.2f} {time.perf_counter() - t0:>19.3f}", file=out)
        print(f"\nworst read ratio {worst:.3f} (goal <= 1.05): {'met' if worst <= 1.05 else 'NOT met'}", file=out)
    print(out.getvalue(), end="")


if __name__ == "__main__":
    main()
