"""Reading our shards with Hugging Face `datasets` (its `webdataset` loader).

That loader infers a schema from the first five samples. Our samples all have the same members
and the same top-level JSON keys, but the operation log inside the JSON holds each method's own
parameters (a copy-move's angle, an inpaint's prompt), so a schema guessed from five samples
breaks on the sixth. Declaring the JSON member as `datasets.Json()` keeps every record whole:

    from forgery_synth.dataset.hf_datasets import load_shards
    ds = load_shards("out/shards", split="train")     # ds[i]["json"]["messages"], ds[i]["png"], ds[i]["mask.png"]

`datasets` is not needed by the rest of the toolkit; it is imported here only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from forgery_synth.dataset.tar_shards import MANIFEST, shard_paths


def hf_features(image_ext: str = "png") -> Any:
    """`datasets.Features` of one shard sample: `<key>.{image_ext}`, `<key>.mask.png`, `<key>.json`."""
    from datasets import Features, Image, Json, Value

    if image_ext not in ("png", "jpg"):
        raise ValueError(f"image_ext must be png or jpg, got {image_ext!r}")
    return Features({"json": Json(), "mask.png": Image(), image_ext: Image(),
                     "__key__": Value("string"), "__url__": Value("string")})


def load_shards(shard_dir: str | os.PathLike, split: str = "train", **kwargs: Any) -> Any:
    """One split of a shard directory as a `datasets.Dataset` (the codec read from the manifest).

    Extra keyword arguments go to `datasets.load_dataset` (e.g. `cache_dir`, `streaming=True`).
    Raises FileNotFoundError when the split has no shard.
    """
    from datasets import load_dataset

    shard_dir = Path(shard_dir)
    files = [str(p) for p in shard_paths(shard_dir, split)]
    if not files:
        raise FileNotFoundError(f"{shard_dir} has no {split}-NNNNNN.tar shard")
    codec = json.loads((shard_dir / MANIFEST).read_text())["options"].get("codec", "png")
    features = hf_features("jpg" if codec == "jpeg" else "png")
    return load_dataset("webdataset", data_files={split: files}, split=split, features=features, **kwargs)
