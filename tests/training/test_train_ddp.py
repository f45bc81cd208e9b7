"""Two CPU processes (gloo, `torchrun`): stage 1 -> stage 2 -> --resume, with the tiny model.

What is proven: both ranks make the same optimizer steps; they train on disjoint micro-batches and
samples; each rank trains on exactly the micro-batches the dealing promises it
(:func:`trainer.training.data.rank_chunks`, computed here in one process); one set of checkpoints is
written (no leftover temporary directory); a resume under DDP keeps the steps already made and
continues the same dealing to the new end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


from trainer.training.data import DataOptions, rank_chunks, shard_urls

ROOT = Path(__file__).resolve().parents[2]
COMMON = ["--base-model", "tiny", "--sam", "tiny", "--grad-accum", "2", "--templates", "json,conclusion", "--seed", "3"]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "cli", "train", *args]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _steps(run: Path, rank: int) -> list[dict]:
    lines = (run / "samples" / f"rank-{rank}.jsonl").read_text().splitlines()
    return [json.loads(ln) for ln in lines if ln.strip()]


def _check_dealing(run: Path, data: Path, steps: int) -> None:
    """Both ranks made ``steps`` steps, on disjoint micro-batches, each on the ones dealt to it."""
    logs = [_steps(run, r) for r in (0, 1)]
    assert [[s["step"] for s in log] for log in logs] == [list(range(1, steps + 1))] * 2
    for epoch in {s["epoch"] for s in logs[0]}:
        idx = [{i for s in log if s["epoch"] == epoch for i in s["index"]} for log in logs]
        keys = [[k for s in log if s["epoch"] == epoch for k in s["keys"]] for log in logs]
        assert not idx[0] & idx[1]
        assert not set(keys[0]) & set(keys[1]) and all(len(k) == len(set(k)) for k in keys)
    urls = shard_urls(data, "train")
    for rank, log in enumerate(logs):
        for epoch in {s["epoch"] for s in log}:
            opts = DataOptions(seed=3, batch_size=1, templates=("json", "conclusion"), shuffle_buffer=256,
                               rank=rank, world_size=2)
            taken = [i for s in log if s["epoch"] == epoch for i in s["index"]]
            promised = [(i, [x.key for x in chunk]) for i, chunk in rank_chunks(urls, opts, epoch)][:len(taken)]
            assert taken == [i for i, _ in promised], (rank, epoch)
            assert [k for s in log if s["epoch"] == epoch for k in s["keys"]] == [k for _, ks in promised for k in ks]


def _one_set_of_checkpoints(run: Path, names: set[str]) -> None:
    found = {p.name for p in run.iterdir() if p.is_dir() and p.name not in ("samples", "tensorboard")}
    assert found == names, found
    assert not list(run.rglob("*.tmp"))


def test_ddp_stage1_stage2_resume(tmp_path, build_tiny_shards):
    data = build_tiny_shards(tmp_path / "data")
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    quick = tmp_path / "quick.yaml"
    quick.write_text("val_samples: 2\nval_mode: teacher\nprogress: false\n")

    _torchrun("--stage", "1", "--data", str(data), "--out", str(s1), "--max-steps", "2", "--save-every", "1",
              "--config", str(quick), *COMMON)
    _check_dealing(s1, data, 2)
    _one_set_of_checkpoints(s1, {"checkpoint-1", "checkpoint-2", "best", "last"})
    assert json.loads((s1 / "summary.json").read_text())["steps"] == 2

    stage2 = ["--stage", "2", "--data", str(data), "--out", str(s2), "--init-from", str(s1 / "best"),
              "--grad-accum", "2", "--templates", "json,conclusion", "--seed", "3", "--config", str(quick)]
    _torchrun(*stage2, "--max-steps", "2", "--save-every", "2")
    before = [_steps(s2, r) for r in (0, 1)]
    _check_dealing(s2, data, 2)

    done = _torchrun(*stage2, "--max-steps", "4", "--save-every", "2", "--resume")
    assert "moves from step 2 to 4" in done.stdout + done.stderr
    _check_dealing(s2, data, 4)
    assert [_steps(s2, r)[:2] for r in (0, 1)] == before  # the steps already made are kept as they were
    _one_set_of_checkpoints(s2, {"checkpoint-2", "checkpoint-4", "best", "last"})
    assert json.loads((s2 / "summary.json").read_text())["steps"] == 4
