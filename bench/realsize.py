"""Real size: a random-weight Qwen2.5-VL-3B folder (7B with ``--7b``) through every command of the chain.

    .venv/bin/python bench/realsize.py --steps 1 --out /tmp/realsize          # CPU: 3B, stage 1 -> ... -> export
    .venv/bin/python bench/realsize.py --device cuda --steps 20 --out /tmp/rs  # GPU: samples/s against bare, peak memory

The folder has the released layout and the real config.json dimensions (36 layers x 2048 for 3B, 28 x 3584
untied for 7B; the 32-block vision tower), bf16 safetensors in 4 GB shards with their index, a
``generation_config.json`` as released (sampling settings and repetition_penalty 1.05, which the project's
greedy decoding must not inherit), and the tokenizer and processor saved from the project's offline builders
(trainer.model.tokens). Weights are random (normal 0.02, norms 1), so the answers are noise; what is measured
is time and memory. SAM is ``vit_b`` with random weights.

Chain, each a ``forgery`` command in its own process (``nice``): train --stage 1 (``--dtype auto``,
``--gradient-checkpointing``, ``--grad-accum 2``, teacher-mode validation on 2 samples) -> train --stage 2
(LoRA) -> predict (1 image) -> eval (2 samples) -> export. Printed per command: wall seconds, seconds per
optimizer step (from metrics.jsonl), peak RSS (``os.wait4``: that process's own maximum) and the size of what
it wrote. ``--device cuda`` also runs a bare forward+backward of the same backbone on the same batch shape
(stage 1: gradients to the input embeddings only; stage 2: + the same LoRA) and reads the peak GPU memory
of every command (nvidia-smi, polled); it is sized for under 10 minutes on one GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, in_chans=3, patch_size=14,
              spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
              tokens_per_second=2, hidden_act="silu")
SIZES = {
    "3B": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, tie_word_embeddings=True),
    "7B": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, tie_word_embeddings=False),
}
"""Qwen2.5-VL-3B/7B-Instruct config.json dimensions (vocabulary 151,936, rope theta 1e6, mRoPE 16/24/24)."""

MROPE = [16, 24, 24]
"""mRoPE sections (temporal, height, width) of both sizes (head dim 128)."""

RELEASED_GENERATION = dict(bos_token_id=151643, pad_token_id=151643, eos_token_id=[151645, 151643], do_sample=True,
                           repetition_penalty=1.05, temperature=0.1, top_p=0.001, top_k=1)
"""generation_config.json as the Qwen2.5-VL folders ship it."""

SHARD_BYTES = 4 * 1000**3


def qwen_config(size: str):
    """The Qwen2_5_VLConfig of the released 3B or 7B model."""
    from transformers import Qwen2_5_VLConfig

    dims = SIZES[size]
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=151936, max_position_embeddings=128000, rms_norm_eps=1e-6, hidden_act="silu",
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": MROPE},
                         **dims),
        vision_config=dict(VISION, out_hidden_size=dims["hidden_size"]),
        tie_word_embeddings=dims["tie_word_embeddings"], image_token_id=151655, video_token_id=151656,
        vision_start_token_id=151652, vision_end_token_id=151653)
    config._attn_implementation = "sdpa"
    return config


def build_folder(folder: Path, size: str) -> dict:
    """Write the random-weight folder (see the module doc), one shard in memory at a time; returns facts."""
    import torch
    from safetensors.torch import save_file
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    from trainer.model.tokens import build_offline_tokenizer, build_processor

    config = qwen_config(size)
    with torch.device("meta"):
        meta = Qwen2_5_VLForConditionalGeneration(config)
    shapes = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    groups: list[list[str]] = [[]]
    used = 0
    for name, shape in shapes.items():
        n = 2 * int(torch.Size(shape).numel())
        if groups[-1] and used + n > SHARD_BYTES:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += n
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    weight_map = {}
    for i, names in enumerate(groups):
        file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        shard = {}
        for name in names:
            shape = shapes[name]
            if name.endswith("bias"):
                t = torch.zeros(shape, dtype=torch.bfloat16)
            elif len(shape) == 1:  # RMSNorm / LayerNorm weights
                t = torch.ones(shape, dtype=torch.bfloat16)
            else:
                t = (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16)
            shard[name] = t
            weight_map[name] = file
        save_file(shard, str(tmp / file), metadata={"format": "pt"})
        del shard
    total = sum(2 * int(torch.Size(s).numel()) for s in shapes.values())
    (tmp / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                  "weight_map": weight_map}, indent=2))
    config.dtype = torch.bfloat16
    config.save_pretrained(str(tmp))
    GenerationConfig(**RELEASED_GENERATION).save_pretrained(str(tmp))
    processor = build_processor(build_offline_tokenizer(), min_pixels=56 * 56, max_pixels=28 * 28 * 1280)
    processor.save_pretrained(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return {"parameters": sum(int(torch.Size(s).numel()) for s in shapes.values()), "bytes": total,
            "shards": len(groups)}


def make_data(root: Path, frame: int) -> Path:
    """Shards (json template; splits 0.6/0.2/0.2) of synthetic forgeries of scikit-image photos, Qwen frames up
    to ``frame`` x ``frame`` pixels (few image tokens: the cost measured is the backbone's, not the image's)."""
    from shards import make_inputs  # bench/shards.py

    from forgery_synth.dataset.shard_options import ShardOptions
    from forgery_synth.dataset.shards import build_shards

    if (root / "shards" / "manifest.json").is_file():
        return root / "shards"
    shutil.rmtree(root / "inputs", ignore_errors=True)
    samples, photos = make_inputs(root / "inputs", 256, 12)
    build_shards(ShardOptions(out=root / "shards", samples=[samples], real=[photos], templates={"json": 1.0},
                              splits=(0.6, 0.2, 0.2), min_pixels=56 * 56, max_pixels=frame * frame))
    return root / "shards"


class GpuPeak:
    """Polls nvidia-smi's used memory (MiB, the whole device) while a command runs; ``peak`` after stop()."""

    def __init__(self) -> None:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout.split()
            if out:
                self.peak = max(self.peak, int(out[0]))
            time.sleep(0.5)

    def __enter__(self) -> "GpuPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(name: str, args: list[str], log: Path, gpu: bool) -> dict:
    """Run one ``forgery`` command (nice, its own process), its output to ``log``; wall s, exit code, peak RSS."""
    cmd = ["nice", "-n", "10", sys.executable, "-m", "cli", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    with open(log, "w") as f, (GpuPeak() if gpu else _Null()) as peak:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    rec = {"command": name, "rc": rc, "seconds": round(time.perf_counter() - t0, 1),
           "peak_rss_gb": round(usage.ru_maxrss / 1024**2, 2)}  # ru_maxrss: KiB; nice's own is tiny, the child is waited by it
    if gpu:
        rec["peak_gpu_gb"] = round(peak.peak / 1024, 2)
    print(json.dumps(rec), flush=True)
    return rec


class _Null:
    peak = 0

    def __enter__(self) -> "_Null":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def size_gb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1024**3, 3) if path.exists() else 0.0


def step_seconds(run_dir: Path, per_step: int) -> tuple[float | None, float | None]:
    """(seconds per optimizer step, samples/s) from the run's metrics.jsonl (mean over the logged steps)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None, None
    rates = [json.loads(ln)["samples_per_s"] for ln in path.read_text().splitlines() if ln.strip()]
    rates = rates[1:] or rates  # the first step warms up
    if not rates:
        return None, None
    rate = sum(rates) / len(rates)
    return round(per_step / rate, 1), round(rate, 3)


def bare_rate(folder: Path, shards: Path, lora: bool, steps: int) -> float:
    """Samples/s of a bare forward+backward of the backbone (bf16, on CUDA) on training batches of the shards:
    the least stage 1 (gradients to the input embeddings) or stage 2 (+ LoRA r16 on the same layers) can cost."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from trainer.model.tokens import add_forensic_tokens, load_processor, load_tokenizer, set_image_frame
    from trainer.training.data import DataOptions, ShardBatches, shard_urls

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(folder), dtype=torch.bfloat16).cuda()
    model.requires_grad_(False)
    if lora:
        from peft import LoraConfig, get_peft_model

        pattern = r".*language_model\.layers\.\d+\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=pattern))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    tokenizer = load_tokenizer(str(folder))
    add_forensic_tokens(tokenizer)
    processor = load_processor(str(folder), tokenizer)
    frame = json.loads((shards / "manifest.json").read_text())["options"]
    set_image_frame(processor, frame["min_pixels"], frame["max_pixels"])
    opts = DataOptions(templates=("json",), sam_size=None)
    batches = []
    for b in ShardBatches(shard_urls(str(shards), "train"), processor, opts):
        batches.append(b)
        if len(batches) >= steps:
            break
    # stage 1 trains the new token rows: gradients flow back through every layer to the input embeddings
    model.get_input_embeddings().register_forward_hook(lambda m, i, o: o.requires_grad_(True))
    keys = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids", "labels")
    base = model.get_base_model() if lora else model
    done, t0 = 0, None
    for i, b in enumerate(batches * 2):
        if i == 2:
            torch.cuda.synchronize()
            t0, done = time.perf_counter(), 0
        inputs = {k: b[k].cuda() for k in keys if k in b}
        labels = inputs.pop("labels")
        keep = labels[:, 1:] != -100
        with torch.autocast("cuda", dtype=torch.bfloat16):  # the loop's text loss: vocabulary projection at the labels only
            hidden = base.model(**inputs, use_cache=False).last_hidden_state
            logits = base.lm_head(hidden[:, :-1][keep])
        torch.nn.functional.cross_entropy(logits.float(), labels[:, 1:][keep]).backward()
        done += labels.shape[0]
    torch.cuda.synchronize()
    return done / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/forgery-realsize"))
    ap.add_argument("--steps", type=int, default=1, help="Optimizer steps per training stage (2 micro-batches each).")
    ap.add_argument("--7b", dest="seven", action="store_true", help="The 7B dimensions (untied, 28 x 3584).")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--frame", type=int, default=224, help="Largest Qwen frame side of the shards, pixels.")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    size = "7B" if a.seven else "3B"
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    folder = out / f"qwen2.5-vl-{size.lower()}-random"
    if a.build_only:
        print(json.dumps(build_folder(folder, size)))
        return 0
    gpu = a.device == "cuda"
    results = []
    if not (folder / "model.safetensors.index.json").is_file():
        cmd = ["nice", "-n", "10", sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--build-only"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd + (["--7b"] if a.seven else []), cwd=str(ROOT))
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status):
            return 1
        results.append({"command": f"build random {size} folder", "rc": 0, "seconds": round(time.perf_counter() - t0, 1),
                        "peak_rss_gb": round(usage.ru_maxrss / 1024**2, 2), "wrote_gb": size_gb(folder)})
    shards = make_data(out, a.frame)
    image = sorted((out / "inputs" / "photos").glob("*.jpg"))[0]
    runs, logs = out / "runs", out / "logs"
    for d in (runs,):
        shutil.rmtree(d, ignore_errors=True)
    runs.mkdir()
    logs.mkdir(exist_ok=True)
    common = ["--max-steps", str(a.steps), "--grad-accum", "2", "--gradient-checkpointing", "--val-samples", "2",
              "--val-mode", "teacher", "--templates", "json", "--save-every", "0"]
    dev = ["--device", a.device, "--batch-size", "1", "--max-new-tokens", "8"]
    chain = [
        ("train --stage 1", ["train", "--stage", "1", "--data", str(shards), "--out", str(runs / "stage1"),
                             "--base-model", str(folder), "--sam", "vit_b", "--dtype", "auto", *common], runs / "stage1"),
        ("train --stage 2", ["train", "--stage", "2", "--data", str(shards), "--out", str(runs / "stage2"),
                             "--init-from", str(runs / "stage1" / "best"), *common], runs / "stage2"),
        ("predict", ["predict", str(image), "--checkpoint", str(runs / "stage2" / "best"),
                     "--out", str(runs / "predict"), *dev], runs / "predict"),
        ("eval", ["eval", "--data", str(shards), "--checkpoint", str(runs / "stage2" / "best"), "--out",
                  str(runs / "eval"), "--limit", "2", *dev], runs / "eval"),
        ("export", ["export", str(runs / "stage2" / "best"), "--out", str(runs / "export")], runs / "export"),
    ]
    for name, args, wrote in chain:
        rec = run(name, args, logs / f"{name.replace(' ', '_').replace('-', '')}.log", gpu)
        if name.startswith("train"):
            rec["s_per_step"], rec["samples_per_s"] = step_seconds(wrote, 2)
            best = wrote / "best"
            rec["checkpoint_gb"] = size_gb(best)
            rec["checkpoint_files"] = sorted(p.name for p in best.iterdir()) if best.exists() else []
        else:
            rec["wrote_gb"] = size_gb(wrote)
        results.append(rec)
        if rec["rc"] != 0:
            print(f"{name} exited {rec['rc']}; see {logs}", file=sys.stderr)
            break
    if gpu and all(r["rc"] == 0 for r in results):
        for stage, lora in ((1, False), (2, True)):
            bare = bare_rate(folder, shards, lora, steps=8)
            rec = next(r for r in results if r["command"] == f"train --stage {stage}")
            rec["bare_samples_per_s"] = round(bare, 3)
            rec["loop_over_bare_time"] = round(bare / rec["samples_per_s"], 2) if rec.get("samples_per_s") else None
    (out / "realsize.json").write_text(json.dumps(results, indent=2))
    print(table(results, size, a))
    return 0 if all(r["rc"] == 0 for r in results) and len(results) >= len(chain) else 1


def table(results: list[dict], size: str, a: argparse.Namespace) -> str:
    """The results as a markdown table (what bench/README.md records)."""
    gpu = a.device == "cuda"
    head = ["command", "rc", "wall s", "s/step", "peak RSS GB"] + (["peak GPU GB", "samples/s", "bare samples/s"] if gpu else []) + ["wrote GB"]
    lines = [f"random Qwen2.5-VL-{size} folder, --sam vit_b, --steps {a.steps}, device {a.device}",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [r["command"], r["rc"], r["seconds"], r.get("s_per_step", ""), r["peak_rss_gb"]]
        if gpu:
            row += [r.get("peak_gpu_gb", ""), r.get("samples_per_s", ""), r.get("bare_samples_per_s", "")]
        row.append(r.get("checkpoint_gb", r.get("wrote_gb", "")))
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
