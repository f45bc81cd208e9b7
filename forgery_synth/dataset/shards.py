"""`build-shards`: sample directories + authentic photos → webdataset tars of training conversations.

Layout written to ``OUT``: ``{train,val,test}-NNNNNN.tar``, ``manifest.json``, ``rejects.jsonl``.
Each sample is three members, the same for forged and authentic images:
``<key>.png|jpg`` (the image resized to the Qwen2.5-VL frame, pre-encoded bytes),
``<key>.mask.png`` (L, {0, 255}, same size) and ``<key>.json`` (conversation, label, method, log,
source, …; see `CONVERSATION_KEYS`). Keys are hex/alnum with no dot.

Resumability: shards are written as ``NAME.tar.tmp`` and renamed when complete; after each shard
``progress.json`` records what is committed. The sample order is a pure function of inputs and
options, so ``resume=True`` starts after the last committed sample and the result is byte-identical
to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgery_synth.dataset import splits as sp
from forgery_synth.dataset.encode import encode_item
from forgery_synth.dataset.plan import Item, _reject, _version, plan
from forgery_synth.dataset.shard_options import OptionError, ShardOptions
from forgery_synth.dataset.tar_shards import (
    CONVERSATION_KEYS,
    MANIFEST,
    PROGRESS,
    REJECTS,
    Encoded,
    _atomic_json,
    _ShardSink,
)


@dataclass
class BuildReport:
    """What `build_shards` did."""

    out: Path
    counts: dict[str, int]
    rejects: int
    shards: list[str]
    manifest: dict[str, Any]


def _plan_digest(planned: dict[str, list[Item]]) -> str:
    """A digest of the plan for resume checks: keys, splits, file names and templates.

    File names, not paths: a key names its content (a sample id is drawn from the seed, source
    sha256, index and options; a photo's key is its sha256), so the same samples read from other
    directories (the N `--part` directories instead of one) are the same plan and the same manifest.
    """
    h = hashlib.sha256()
    for split in sp.SPLITS:
        for it in planned[split]:
            h.update(f"{split}\x1f{it.key}\x1f{Path(it.image).name}\x1f{it.template}\n".encode())
    return h.hexdigest()


def _encoded_stream(items: list[Item], options: ShardOptions) -> Iterator[Encoded]:
    if options.workers <= 1 or len(items) < 2:
        for it in items:
            yield encode_item(it, options)
        return
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    with ProcessPoolExecutor(options.workers) as pool:
        yield from pool.map(partial(encode_item, options=options), items, chunksize=4)


def build_shards(options: ShardOptions, progress: Callable[[int, int], None] | None = None) -> BuildReport:
    """Write the shards, manifest and rejects described in the module docstring.

    ``progress(done, total)`` is called after every sample. Raises OptionError for bad options,
    a non-empty output without ``resume``, or a resume whose inputs/options changed.
    """
    options.validate()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    planned, early_rejects, balance_report = plan(options)
    digest = _plan_digest(planned)
    content = options.content_options()
    state = _start_state(out, options, digest, content)
    total = sum(len(v) for v in planned.values())
    done = sum(state["splits"][s]["consumed"] for s in sp.SPLITS)
    for split in sp.SPLITS:
        st = state["splits"][split]
        todo = planned[split][st["consumed"]:]
        sink = _ShardSink(out, split, len(st["shards"]), options)
        pending_rejects: list[dict[str, str]] = []
        consumed = st["consumed"]
        held: dict[str, dict[str, int]] = {}  # the open shard's samples per template and label
        for enc in _encoded_stream(todo, options):
            consumed += 1
            done += 1
            if enc.error:
                pending_rejects.append(_reject(enc.path, enc.error) | {"key": enc.key})
            else:
                finished = sink.add(enc)
                if finished:
                    # the finished shard holds everything consumed before this sample
                    _commit(out, state, split, _with_counts(finished, held), consumed - 1, pending_rejects)
                    pending_rejects, held = [], {}
                by_label = held.setdefault(enc.template, {"real": 0, "fake": 0})
                by_label[enc.label] += 1
            if progress:
                progress(done, total)
        finished = sink.close()
        if finished:
            _commit(out, state, split, _with_counts(finished, held), consumed, pending_rejects)
        else:
            st["consumed"] = consumed
            st["rejects"].extend(pending_rejects)
            _atomic_json(out / PROGRESS, state)
    manifest = _manifest(state, planned, balance_report, content, options, early_rejects)
    all_rejects = early_rejects + [r for s in sp.SPLITS for r in state["splits"][s]["rejects"]]
    with open(out / REJECTS, "w", encoding="utf-8") as f:
        for r in all_rejects:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    _atomic_json(out / MANIFEST, manifest)
    (out / PROGRESS).unlink(missing_ok=True)
    if options.swift is not None:
        from forgery_synth.dataset.swift_export import export_swift

        export_swift(out, Path(options.swift))
    counts = {s: manifest["splits"][s]["count"] for s in sp.SPLITS}
    shards = [sh["name"] for s in sp.SPLITS for sh in manifest["splits"][s]["shards"]]
    return BuildReport(out, counts, len(all_rejects), shards, manifest)


def _start_state(out: Path, options: ShardOptions, digest: str, content: dict[str, Any]) -> dict[str, Any]:
    fresh = {"plan_digest": digest, "options": content,
             "splits": {s: {"consumed": 0, "shards": [], "rejects": []} for s in sp.SPLITS}}
    prog, man = out / PROGRESS, out / MANIFEST
    existing = [p.name for p in out.iterdir() if p.name.endswith((".tar", ".tar.tmp")) or p.name in (PROGRESS, MANIFEST)]
    if not options.resume:
        if existing:
            raise OptionError(f"{out} already holds shards ({', '.join(sorted(existing)[:3])}…); "
                              "pass --resume to continue an interrupted run, or choose an empty directory")
        return fresh
    for p in out.glob("*.tar.tmp"):
        p.unlink()
    if prog.is_file():
        state = json.loads(prog.read_text(encoding="utf-8"))
    elif man.is_file():
        state = json.loads(man.read_text(encoding="utf-8")).get("state", {})
    else:
        if any(p.endswith(".tar") for p in existing):
            raise OptionError(f"{out} holds shards but no {PROGRESS} or {MANIFEST}: cannot resume safely")
        return fresh
    if state.get("plan_digest") != digest or state.get("options") != content:
        raise OptionError(f"cannot resume into {out}: the inputs or options differ from the interrupted run")
    # shards past the last commit (renamed but not yet recorded) are rewritten identically
    recorded = {sh["name"] for s in sp.SPLITS for sh in state["splits"][s]["shards"]}
    for p in out.glob("*.tar"):
        if p.name not in recorded:
            p.unlink()
    return state


def _with_counts(shard: dict[str, Any], held: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The shard's record plus its per-shard counts: ``labels`` {real, fake} and ``template_labels``
    {template: {real, fake}} (the trainer sizes an epoch from them without reading the shards)."""
    labels = {lab: sum(c[lab] for c in held.values()) for lab in ("real", "fake")}
    return {**shard, "labels": labels, "template_labels": dict(sorted(held.items()))}


def _commit(out: Path, state: dict[str, Any], split: str, shard: dict[str, Any], consumed: int,
            rejects: list[dict[str, str]]) -> None:
    st = state["splits"][split]
    st["shards"].append(shard)
    st["consumed"] = consumed
    st["rejects"].extend(rejects)
    _atomic_json(out / PROGRESS, state)


def _manifest(state: dict[str, Any], planned: dict[str, list[Item]], balance_report: dict[str, Any],
              content: dict[str, Any], options: ShardOptions, early_rejects: list[dict[str, str]]) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    totals: Counter = Counter()
    for s in sp.SPLITS:
        st = state["splits"][s]
        c: Counter = Counter()
        for sh in st["shards"]:
            c.update(sh["stats"])
        count = sum(sh["count"] for sh in st["shards"])
        totals.update(c)
        splits[s] = {
            "count": count,
            "labels": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("label:")},
            "methods": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("method:")},
            "templates": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("template:")},
            "langs": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("lang:")},
            "sources": len({it.source["sha256"] for it in planned[s]}),
            "rejects": len(st["rejects"]),
            "balance": balance_report[s],
            "shards": [{k: sh[k] for k in ("name", "sha256", "bytes", "count", "labels", "template_labels") if k in sh}
                       for sh in st["shards"]],
        }
    return {
        "format": "forgery-shards/2",  # /2: one JSON schema (log_json), labels interleaved, per-shard counts
        "version": _version(),
        "inputs": {"samples": [str(Path(p).resolve()) for p in options.samples],
                   "real": [str(Path(p).resolve()) for p in options.real]},
        "options": content,
        "members": ["<key>.png|jpg", "<key>.mask.png", "<key>.json"],
        "conversation_keys": list(CONVERSATION_KEYS),
        "interleaved": True,
        "splits": splits,
        "count": sum(splits[s]["count"] for s in sp.SPLITS),
        "labels": {k.split(":", 1)[1]: v for k, v in sorted(totals.items()) if k.startswith("label:")},
        "rejects": len(early_rejects) + sum(splits[s]["rejects"] for s in sp.SPLITS),
        "near_duplicates": {"hash": "pHash, 64 bits (imagehash)", "max_distance": options.near_duplicates,
                            "groups": balance_report["near_duplicates"]},
        "split_by": balance_report["split_by"],
        "state": state,
    }
