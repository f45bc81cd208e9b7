"""ms-swift export of finished shards: ``DIR/{split}.jsonl`` plus the image files on disk.

Each line is ``{"messages": [...], "images": ["/abs/DIR/images/<split>/<key>.png"]}``, the format
ms-swift's custom datasets read; masks go beside the images as ``<key>.mask.png`` for trainers
that want them. Made from the shards themselves, so it always agrees with them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from forgery_synth.dataset.splits import SPLITS
from forgery_synth.dataset.tar_shards import KEY_RE, iter_tar_samples, shard_paths


def export_swift(shard_dir: Path, swift_dir: Path) -> dict[str, int]:
    """Write one JSONL per split and the images; returns the number of lines per split."""
    swift_dir = Path(swift_dir).resolve()
    counts: dict[str, int] = {}
    for split in SPLITS:
        img_dir = swift_dir / "images" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        tmp = swift_dir / f"{split}.jsonl.tmp"
        n = 0
        with open(tmp, "w", encoding="utf-8") as f:
            for shard in shard_paths(shard_dir, split):
                for key, members in iter_tar_samples(shard):
                    # Names come from the tar: only plain keys and their own image members are
                    # written, so nothing lands outside img_dir.
                    if not KEY_RE.match(key):
                        raise ValueError(f"{shard}: sample key {key!r} is not a plain name")
                    record = json.loads(members["json"])
                    paths = []
                    for name in record["images"]:
                        ext = name.split(".", 1)[1] if "." in name else ""
                        if name != f"{key}.{ext}" or ext not in members:
                            raise ValueError(f"{shard}: sample {key} names image {name!r}, not one of its members")
                        path = img_dir / name
                        path.write_bytes(members[ext])
                        paths.append(str(path))
                    (img_dir / f"{key}.mask.png").write_bytes(members["mask.png"])
                    f.write(json.dumps({"messages": record["messages"], "images": paths}, ensure_ascii=False) + "\n")
                    n += 1
        os.replace(tmp, swift_dir / f"{split}.jsonl")
        counts[split] = n
    return counts
