"""Running a grid: which runs and evaluations are left, in which order, on which device, resumably.

Tasks: one ``train`` task per stage run (after its parent run) and one ``eval`` task per last stage run
(after it; cells whose chains end in the same run get a copy of the one evaluation). A task is finished when its output is: a run's ``summary.json`` (train
writes it last), a cell's ``eval/metrics.json`` (the evaluation is written to ``eval.tmp`` and renamed).
An unfinished run with a checkpoint continues from it (``forgery train --resume``); one killed before its
first checkpoint starts again. Beside each run, ``stage<k>.json`` records its key, so a changed grid
never reuses a run trained with other options (refused, exit 2).

``--jobs N`` runs N tasks at once, each in its own process (``python -m trainer.ablation.run TASK.json``);
with GPUs visible, job slot j gets GPU j mod (number of GPUs) via ``CUDA_VISIBLE_DEVICES``. ``--jobs 1``
runs the tasks in this process. ``--part i/N`` keeps the i-th of every N families of cells that share a
stage-1 run (dealt like synth's ``--part`` deals inputs), so no two parts train the same run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trainer.ablation.grid import Cell, Grid, GridError, StageRun, stage_config


@dataclass
class Task:
    """One unit of work: ``kind`` train or eval; ``needs``: names of tasks that must finish first."""

    name: str
    kind: str
    needs: list[str]
    payload: dict[str, Any]
    done: bool = False


@dataclass
class Outcome:
    """What a run of the grid did: tasks finished before, run now, failed (name -> reason), left (not reached)."""

    skipped: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def trained(self) -> list[str]:
        return [n for n in self.ran if n.startswith("train ")]


def _checkpoint(run_dir: Path) -> Path:
    return run_dir / "best" if (run_dir / "best").is_dir() else run_dir / "last"


def _family(grid: Grid, cell: Cell, seed: int) -> str:
    return grid.runs[cell.chains[seed][0]].key


def select_cells(grid: Grid, part: tuple[int, int] | None) -> list[tuple[Cell, int]]:
    """The (cell, seed) pairs of ``part`` (i, N): the families (a shared stage-1 run) sorted by key,
    every N-th from the i-th (1-based); all pairs when ``part`` is None."""
    pairs = [(c, s) for c in grid.cells for s in grid.seeds]
    if part is None:
        return pairs
    i, n = part
    families = sorted({_family(grid, c, s) for c, s in pairs})[i - 1 :: n]
    return [(c, s) for c, s in pairs if _family(grid, c, s) in families]


def plan(grid: Grid, data: Path, out: Path, part: tuple[int, int] | None = None, write: bool = True) -> list[Task]:
    """The tasks of ``part``, in order (parents before children), each marked done or not; with ``write``
    each (cell, seed) folder gets a ``cell.json`` naming its runs.

    Raises GridError when a run directory holds a run of other options (a changed grid).
    """
    tasks: dict[str, Task] = {}
    for cell, seed in select_cells(grid, part):
        for key in cell.chains[seed]:
            run = grid.runs[key]
            name = f"train {run.owner}/seed-{seed}/stage{run.stage}"
            if name in tasks:
                continue
            run_dir = run.directory(out)
            record = run_dir.with_name(run_dir.name + ".json")
            if record.is_file() and json.loads(record.read_text()).get("key") != key:
                raise GridError(f"cell {run.owner}, stage {run.stage}: {run_dir} was trained with other options "
                                "than the grid now gives; use a new --out (or remove that run)")
            parent = grid.runs[run.parent] if run.parent else None
            needs = [f"train {parent.owner}/seed-{seed}/stage{parent.stage}"] if parent else []
            tasks[name] = Task(name, "train", needs, {
                "key": key, "run": str(run_dir), "record": str(record), "data": str(data), "stage": run.stage,
                "options": run.options, "seed": seed, "out": str(out), "owner": run.owner,
                "parent_run": str(parent.directory(out)) if parent else None,
            }, done=(run_dir / "summary.json").is_file())
        last = grid.runs[cell.chains[seed][-1]]
        eval_dir = cell.directory(out, seed) / "eval"
        name = f"eval {last.owner}/seed-{seed}/stage{last.stage}"  # cells ending in the same run share it
        task = tasks.setdefault(name, Task(name, "eval", [f"train {last.owner}/seed-{seed}/stage{last.stage}"], {
            "run": str(last.directory(out)), "evals": [], "data": str(data), "settings": grid.eval.__dict__,
            "seed": seed}, done=True))
        task.payload["evals"].append(str(eval_dir))
        task.done = task.done and (eval_dir / "metrics.json").is_file()
        if not write:
            continue
        cell_record = cell.directory(out, seed) / "cell.json"
        cell_record.parent.mkdir(parents=True, exist_ok=True)
        cell_record.write_text(json.dumps({"cell": cell.id, "values": cell.values, "seed": seed,
                                           "stages": {grid.runs[k].stage: str(grid.runs[k].directory(out))
                                                      for k in cell.chains[seed]}, "eval": str(eval_dir)},
                                          indent=2, default=str))
    return list(tasks.values())


# -- doing one task (in this process or a worker) -------------------------------------------------


def run_task(kind: str, payload: dict[str, Any], log: Callable[[str], None] = print) -> None:
    """Do one task; raises on failure (ConfigError, RuntimeError, ...)."""
    if kind == "train":
        _train(payload, log)
    else:
        _evaluate(payload, log)


def _train(p: dict[str, Any], log: Callable[[str], None]) -> None:
    from trainer.training.config import load_config
    from trainer.training.loop import latest_checkpoint, run_training

    run_dir = Path(p["run"])
    if (run_dir / "summary.json").is_file():
        return
    if latest_checkpoint(run_dir) is not None:
        log(f"{run_dir}: continuing from {latest_checkpoint(run_dir).name} (--resume)")
        cfg = load_config(None, {"out": str(run_dir), "resume": True, "progress": False})
    else:
        if run_dir.exists():
            log(f"{run_dir}: stopped before its first checkpoint; starting it again")
            shutil.rmtree(run_dir)
        init_from = _checkpoint(Path(p["parent_run"])) if p["parent_run"] else None  # best, else last
        Path(p["record"]).parent.mkdir(parents=True, exist_ok=True)
        Path(p["record"]).write_text(json.dumps({"key": p["key"], "stage": p["stage"], "seed": p["seed"],
                                                 "options": p["options"], "init_from": str(init_from) if init_from else None},
                                                indent=2, default=str))
        run = StageRun(p["key"], p["stage"], p["seed"], p["options"], None, p["owner"])
        cfg = stage_config(run, Path(p["data"]), Path(p["out"]), init_from)
    result = run_training(cfg, log=log)
    if result.steps == 0:
        raise RuntimeError(f"{run_dir}: no optimizer step was made")


def _evaluate(p: dict[str, Any], log: Callable[[str], None]) -> None:
    from trainer.evaluation.evaluate import EvalOptions, run_evaluation
    from trainer.evaluation.predict import PredictOptions, load_predictor
    from trainer.training.learning import checkpoint_eval_options

    s, checkpoint = p["settings"], _checkpoint(Path(p["run"]))
    finals = [Path(e) for e in p["evals"]]
    done = [f for f in finals if (f / "metrics.json").is_file()]
    if done:  # a cell ending in the same run was evaluated: the same checkpoint, the same figures
        for f in finals:
            if f not in done:
                _copy_eval(done[0], f)
        return
    final = finals[0]
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    predictor = load_predictor(checkpoint, PredictOptions(threshold=s["threshold"], device=s["device"],
                                                          max_new_tokens=s["max_new_tokens"]))
    result = run_evaluation([Path(p["data"])], predictor, tmp,
                            EvalOptions(threshold=s["threshold"], split=s["split"], batch_size=s["batch_size"],
                                        limit=s["limit"], n_examples=2, save_masks=False,
                                        **checkpoint_eval_options(checkpoint)),
                            info={"checkpoint": str(checkpoint), "seed": p["seed"]})
    if result.n_scored == 0:
        raise RuntimeError(f"{checkpoint}: no sample of split {s['split']} could be scored")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for f in finals[1:]:
        _copy_eval(final, f)


def _copy_eval(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)


# -- scheduling ---------------------------------------------------------------------------------


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """The GPUs jobs are dealt over: CUDA_VISIBLE_DEVICES's entries, else every CUDA device; [] on CPU."""
    env = os.environ if environ is None else environ
    if env.get("CUDA_VISIBLE_DEVICES") is not None:
        return [d.strip() for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def job_environment(slot: int, gpus: list[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the worker in job slot ``slot``: GPU ``slot mod len(gpus)`` alone (round robin),
    unchanged on CPU."""
    env = dict(os.environ if environ is None else environ)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


def execute(tasks: list[Task], out: Path, jobs: int = 1, log: Callable[[str], None] = print) -> Outcome:
    """Run the unfinished tasks, each once its needs are done; a failed task's dependants are not run."""
    outcome = Outcome(skipped=[t.name for t in tasks if t.done])
    done = {t.name for t in tasks if t.done}
    pending = [t for t in tasks if not t.done]
    running: dict[int, tuple[Task, subprocess.Popen, Path]] = {}
    gpus = visible_gpus() if jobs > 1 else []
    work = out / "tasks"
    while pending or running:
        before = (len(pending), len(running), len(outcome.ran))
        for t in list(pending):
            blocked = [n for n in t.needs if n in outcome.failed]
            if blocked:
                outcome.failed[t.name] = f"not run: {blocked[0]} failed"
                pending.remove(t)
            elif all(n in done for n in t.needs) and len(running) < max(jobs, 1):
                pending.remove(t)
                if jobs <= 1:
                    log(f"{t.name}")
                    t0 = time.perf_counter()
                    try:
                        run_task(t.kind, t.payload, log=lambda s: log("   " + s))
                    except Exception as e:  # noqa: BLE001 - one failed cell must not end the grid
                        outcome.failed[t.name] = f"{type(e).__name__}: {e}"
                        log(f"   failed: {outcome.failed[t.name]}")
                    else:
                        done.add(t.name)
                        outcome.ran.append(t.name)
                        log(f"   ({time.perf_counter() - t0:.0f} s)")
                    break  # re-scan: this task may have unblocked others
                slot = min(set(range(jobs)) - set(running))
                running[slot] = (t, *_spawn(t, work, job_environment(slot, gpus)))
                log(f"{t.name}: started (job {slot + 1}{', GPU ' + gpus[slot % len(gpus)] if gpus else ''})")
        for slot, (t, proc, logfile) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[slot]
            if proc.returncode == 0:
                done.add(t.name)
                outcome.ran.append(t.name)
                log(f"{t.name}: finished")
            else:
                tail = logfile.read_text(errors="replace").strip().splitlines()[-1:] if logfile.is_file() else []
                outcome.failed[t.name] = f"exit {proc.returncode}: {tail[0] if tail else ''} (log {logfile})"
                log(f"{t.name}: failed, {outcome.failed[t.name]}")
        if running:
            time.sleep(0.2)
        elif pending and (len(pending), len(running), len(outcome.ran)) == before:
            for t in pending:  # nothing could start: a need outside these tasks
                outcome.failed[t.name] = f"not run: needs {', '.join(t.needs)}"
            pending = []
    return outcome


def _spawn(t: Task, work: Path, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    work.mkdir(parents=True, exist_ok=True)
    stem = t.name.replace(" ", "-").replace("/", "--")
    spec = work / f"{stem}.json"
    spec.write_text(json.dumps({"kind": t.kind, "payload": t.payload}, default=str))
    logfile = work / f"{stem}.log"
    with open(logfile, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "trainer.ablation.run", str(spec)], stdout=f,
                                stderr=subprocess.STDOUT, env=env)
    return proc, logfile


def main(argv: list[str] | None = None) -> int:
    """Worker entry: ``python -m trainer.ablation.run TASK.json`` does one task (exit 1 on failure)."""
    spec = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    try:
        run_task(spec["kind"], spec["payload"], log=lambda s: print(s, flush=True))
    except Exception as e:  # noqa: BLE001 - the parent reads the last line
        print(f"{type(e).__name__}: {e}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
