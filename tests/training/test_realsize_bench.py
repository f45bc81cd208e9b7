"""bench/realsize.py at 1 step: a random-weight Qwen2.5-VL-3B folder through train 1 -> 2 -> predict -> eval ->
export. Needs ~8 GB of disk, ~12 GB of RAM and tens of minutes on a CPU: marked ``weights`` (never in CI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.weights
def test_realsize_bench_runs_the_whole_chain_at_one_step(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "realsize.py"), "--steps", "1", "--out", str(tmp_path)],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=4 * 3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "realsize.json").read_text())
    assert [r["command"] for r in results][-5:] == ["train --stage 1", "train --stage 2", "predict", "eval", "export"]
    assert all(r["rc"] == 0 for r in results)
    stage1 = results[-5]
    assert stage1["checkpoint_gb"] < 1.0 and "backbone" not in stage1["checkpoint_files"]  # deltas, heads, SAM: no backbone copy
    assert stage1["peak_rss_gb"] < 12.0  # bf16 (--dtype auto): about half of the 21.8 GB of the float32 load
    assert all(r["peak_rss_gb"] < 24.0 for r in results)
    exported = json.loads((tmp_path / "runs" / "export" / "export.json").read_text())
    assert exported["dtype"] == "bfloat16"
