"""The shard files themselves: member and file names, deterministic tar writing (temporary name, then rename), reading back."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgery_synth.dataset.shard_options import ShardOptions


@dataclass
class Encoded:
    """A sample ready for the tar (``members``: extension → bytes) or a rejection (``error``)."""

    key: str
    split: str
    members: dict[str, bytes] = field(default_factory=dict)
    label: str = ""
    method: str = ""
    template: str = ""
    lang: str = ""
    error: str | None = None
    path: str = ""


SAMPLE_SCHEMA: dict[str, Any] = {
    "key": str, "split": str,
    "messages": [{"role": str, "content": str}],
    "images": [str],
    "label": str, "method": str, "template": str, "lang": str,
    "log_json": str,
    "source": {"path": str, "sha256": str, "size": [int]},
    "frame": {"size": [int], "input_size": [int], "pair_with": str, "pair_side": str},
    "codec": {"format": str, "quality": int},
}
"""The ``<key>.json`` member of every sample: the same keys with the same types whatever the label,
method, template or language, so a reader that infers a schema from a few samples (Hugging Face
`datasets`' webdataset loader) reads them all. A dict is a fixed key set, ``[t]`` a list of ``t``.
The per-method operation log is carried as JSON text (``log_json``, read by `sample_log`); no value
is ever null (``pair_with``/``pair_side`` are ``""`` outside the pair template, ``quality`` 0 for PNG)."""


CONVERSATION_KEYS = tuple(SAMPLE_SCHEMA)


def schema_problems(value: Any, schema: Any = SAMPLE_SCHEMA, where: str = "json") -> list[str]:
    """How a parsed ``<key>.json`` departs from `SAMPLE_SCHEMA` (empty: it fits): missing or extra
    keys, a value of another type (a bool is not an int, an int not a str), a null."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{where} is {type(value).__name__}, not an object"]
        if set(value) != set(schema):
            return [f"{where} keys {sorted(value)} differ from {sorted(schema)}"]
        return [p for k in schema for p in schema_problems(value[k], schema[k], f"{where}.{k}")]
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{where} is {type(value).__name__}, not a list"]
        return [p for i, v in enumerate(value) for p in schema_problems(v, schema[0], f"{where}[{i}]")]
    if type(value) is not schema:
        return [f"{where} is {type(value).__name__}, not {schema.__name__}"]
    return []


def sample_log(record: dict[str, Any]) -> dict[str, Any]:
    """The synthesis operation log of a parsed ``<key>.json`` (the one reader of ``log_json``).
    Raises ValueError for a record from before ``log_json`` (shards whose JSON has a ``log``
    object): those break `datasets`' schema inference and are rebuilt, not read."""
    if "log_json" not in record:
        if "log" in record:
            raise ValueError("shard JSON has the old 'log' object, not 'log_json': the shards come from an "
                             "older build-shards; rebuild them")
        raise ValueError("shard JSON has no 'log_json'")
    return json.loads(record["log_json"])


TAR_MTIME = 1_700_000_000  # fixed member mtime: rebuilding gives byte-identical shards


KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


PROGRESS = "progress.json"


MANIFEST = "manifest.json"


REJECTS = "rejects.jsonl"


_TAR_BLOCK, _TAR_RECORD = 512, 10240


def _tar_size(member_sizes: list[int]) -> int:
    return sum(_TAR_BLOCK + -(-n // _TAR_BLOCK) * _TAR_BLOCK for n in member_sizes)


def _tar_file_size(data_bytes: int) -> int:
    return -(-(data_bytes + 2 * _TAR_BLOCK) // _TAR_RECORD) * _TAR_RECORD


class _HashingFile:
    """Write-only file wrapper that hashes what passes through (tarfile stream mode only writes)."""

    def __init__(self, path: Path):
        self.f = open(path, "wb")
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.f.write(data)

    def close_synced(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


class _ShardSink:
    """Writes one split's shards: caps, temporary names, renames, per-shard statistics."""

    def __init__(self, out: Path, split: str, first_index: int, options: ShardOptions):
        self.out, self.split, self.index, self.options = out, split, first_index, options
        self.writer: tarfile.TarFile | None = None
        self.file: _HashingFile | None = None
        self.count, self.data_bytes = 0, 0
        self.stats: Counter = Counter()

    def _open(self) -> None:
        self.file = _HashingFile(self.out / f"{self.name}.tmp")
        self.writer = tarfile.open(fileobj=self.file, mode="w|", format=tarfile.USTAR_FORMAT)
        self.count, self.data_bytes, self.stats = 0, 0, Counter()

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}.tar"

    def fits(self, sizes: list[int]) -> bool:
        if self.writer is None or self.count == 0:
            return True
        if self.count >= self.options.shard_size:
            return False
        return _tar_file_size(self.data_bytes + _tar_size(sizes)) <= self.options.shard_bytes

    def add(self, enc: Encoded) -> dict[str, Any] | None:
        """Add a sample; returns the record of a shard completed to make room, if any."""
        sizes = [len(v) for v in enc.members.values()]
        done = None
        if not self.fits(sizes):
            done = self.close()
        if self.writer is None:
            self._open()
        for ext in sorted(enc.members):
            data = enc.members[ext]
            ti = tarfile.TarInfo(f"{enc.key}.{ext}")
            ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = len(data), TAR_MTIME, 0o444, "bigdata", "bigdata"
            self.writer.addfile(ti, io.BytesIO(data))
        self.count += 1
        self.data_bytes += _tar_size(sizes)
        self.stats.update([f"label:{enc.label}", f"method:{enc.method}", f"template:{enc.template}", f"lang:{enc.lang}"])
        return done

    def close(self) -> dict[str, Any] | None:
        """Finish the open shard: close, fsync, rename from the temporary name."""
        if self.writer is None:
            return None
        self.writer.close()
        self.file.close_synced()
        final = self.out / self.name
        os.replace(self.out / f"{self.name}.tmp", final)
        record = {"name": self.name, "sha256": self.file.sha.hexdigest(), "bytes": final.stat().st_size,
                  "count": self.count, "stats": dict(sorted(self.stats.items()))}
        self.writer, self.file = None, None
        self.index += 1
        return record


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def iter_tar_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of one tar, grouped the webdataset way (key =
    member name up to its first dot). Consecutive members with the same key form one sample."""
    key, group = None, {}
    with tarfile.open(path, "r:") as tf:
        for m in tf:
            if not m.isfile():
                continue
            base = m.name.rsplit("/", 1)[-1]
            k, _, ext = base.partition(".")
            prefix = m.name[: len(m.name) - len(base)]
            k = prefix + k
            if k != key and group:
                yield key, group
                group = {}
            key = k
            group[ext] = tf.extractfile(m).read()
    if group:
        yield key, group


def shard_paths(out: Path, split: str | None = None) -> list[Path]:
    """The completed shards of a directory (by name, optionally one split's)."""
    pattern = f"{split}-*.tar" if split else "*-*.tar"
    return sorted(p for p in Path(out).glob(pattern) if p.is_file())
