"""Benchmark ForensicsModel against the bare Qwen2.5-VL forward+backward on the same inputs.

Floor: ``Qwen2_5_VLForConditionalGeneration(**batch, labels=labels).loss.backward()`` with every
backbone weight trainable. Measured: ForensicsModel on the same batch with the same backbone
weights (also all trainable), the text loss plus its heads, the tiny SAM mask decoder (image
embeddings cached, as in training with a frozen SAM encoder) and every loss term. Target: at most
1.3x the floor's time. Also timed: the stage-1 set-up (backbone frozen, only new rows and heads
train). Peak memory: each variant in its own subprocess, the largest RSS increase during its second
forward+backward (after a warm-up step, ``gc`` and ``malloc_trim``; sampled every millisecond). Time: the three variants interleaved step by step in
one process, best of --rounds, as process CPU time (steady on a shared box) and wall time, on one
thread by default (with several, OpenMP's spin-waiting between small kernels is billed as CPU time).

    .venv/bin/python bench/model.py                 # tiny config, CPU, batch 4 of 112x112 images
    .venv/bin/python bench/model.py --sizes         # + parameter counts / memory of the 3B and 7B models

The 3B/7B figures are computed from their configs (dims written below, built on the meta device:
no download, no memory).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

VARIANTS = ("bare", "forensics", "forensics-stage1")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Largest RSS above the starting RSS while the context runs (1 ms sampling)."""

    def __enter__(self) -> "PeakRss":
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def increase(self) -> int:
        return self.peak - self.base


def _inputs(batch_size: int, size: int):
    from PIL import Image

    from trainer.model.build_model import build_forensics_model
    from trainer.model.sam_decoder import prepare_sam_batch
    from trainer.model.tokens import MASK_TOKENS, encode_conversation

    model, processor = build_forensics_model("tiny", "tiny", seed=0)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(batch_size)]
    answer = '{"result": "fake<cls>", "mask": [[10, 10, 60, 10, 60, 60, 10, 60]]' + "".join(MASK_TOKENS) + "}"
    convs = [[{"role": "user", "content": "<image>Please analyse whether this image is authentic; answer in JSON."},
              {"role": "assistant", "content": answer}]] * batch_size
    batch = encode_conversation(processor, convs, [[Image.fromarray(im)] for im in images])
    sam_images, sam_sizes = prepare_sam_batch(images, model.mask_decoder.image_size)
    return model, batch, sam_images, sam_sizes


def make_step(variant: str, batch_size: int, size: int):
    """(step function running one forward+backward, trainable parameter count) for ``variant``."""
    from trainer.model.build_model import build_tiny_qwen
    from trainer.training.losses import total_loss

    model, batch, sam_images, sam_sizes = _inputs(batch_size, size)
    targets = torch.zeros(batch_size, 1, size, size)
    targets[:, :, size // 4 : size // 2, size // 4 : size // 2] = 1
    cls_target = torch.ones(batch_size)
    qwen_keys = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids", "labels")

    if variant == "bare":
        bare = build_tiny_qwen(seed=0)  # the same weights ForensicsModel wraps
        bare.train()
        for p in bare.parameters():
            p.requires_grad_(True)
        del model

        def step() -> None:
            out = bare(**{k: batch[k] for k in qwen_keys})  # outputs held through backward, as in a loop
            out.loss.backward()
            bare.zero_grad(set_to_none=True)

        return step, sum(p.numel() for p in bare.parameters() if p.requires_grad), int(batch["input_ids"].numel())

    model.train()
    if variant == "forensics":
        for p in model.qwen.parameters():
            p.requires_grad_(True)
    model.mask_decoder.embed_images(sam_images)  # cache warm, as with a frozen SAM encoder

    def step() -> None:
        out = model(**batch, sam_images=sam_images, sam_input_sizes=sam_sizes, mask_size=(size, size))
        total_loss(out, cls_target=cls_target, mask_target=targets).total.backward()
        model.zero_grad(set_to_none=True)

    return step, sum(p.numel() for p in model.parameters() if p.requires_grad), int(batch["input_ids"].numel())


def measure_memory(variant: str, batch_size: int, size: int) -> dict:
    """Peak RSS increase of one forward+backward after a warm-up one (fresh process per variant)."""
    step, trainable, tokens = make_step(variant, batch_size, size)
    step()  # warm-up: lazy initialisation (kernels, thread pools) is not the step's memory
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back so the next step's peak shows
    with PeakRss() as mem:
        step()
    return {"variant": variant, "peak_mib": mem.increase / 2**20, "trainable": trainable, "tokens": tokens}


def measure_time(batch_size: int, size: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Best-of-``rounds`` (wall seconds, process CPU seconds) per variant, the variants interleaved
    round by round in one process. The box is shared: a busy neighbour stretches wall time but
    hardly the CPU time the step itself burns, so the CPU-time ratio is the steadier figure."""
    steps = {v: make_step(v, batch_size, size)[0] for v in VARIANTS}
    wall = {v: float("inf") for v in VARIANTS}
    cpu = {v: float("inf") for v in VARIANTS}
    for v in VARIANTS:  # warm-up
        steps[v]()
    for _ in range(rounds):
        for v in VARIANTS:
            w0, c0 = time.perf_counter(), time.process_time()
            steps[v]()
            wall[v] = min(wall[v], time.perf_counter() - w0)
            cpu[v] = min(cpu[v], time.process_time() - c0)
    return {v: (wall[v], cpu[v]) for v in VARIANTS}


# ---------------------------------------------------------------------------------- 3B / 7B sizes

QWEN_CONFIGS = {
    # from Qwen/Qwen2.5-VL-{3B,7B}-Instruct config.json
    "Qwen2.5-VL-3B": dict(
        text=dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                  num_attention_heads=16, num_key_value_heads=2, tie_word_embeddings=True),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                    patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                    fullatt_block_indexes=[7, 15, 23, 31]),
        tie=True,
    ),
    "Qwen2.5-VL-7B": dict(
        text=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                  num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                    patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                    fullatt_block_indexes=[7, 15, 23, 31]),
        tie=False,
    ),
}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def model_sizes(lora_r: int = 16, sam: str = "vit_h") -> list[dict]:
    """Parameter counts and weight+optimizer memory by stage, from the configs (meta device)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from trainer.model.sam_decoder import SAM_SPECS, _build_sam

    with torch.device("meta"):
        sam_model = _build_sam(spec=SAM_SPECS[sam])
    sam_encoder = sum(p.numel() for p in sam_model.image_encoder.parameters())
    sam_prompt = sum(p.numel() for p in sam_model.prompt_encoder.parameters())
    sam_decoder = sum(p.numel() for p in sam_model.mask_decoder.parameters())
    rows = []
    for name, spec in QWEN_CONFIGS.items():
        config = Qwen2_5_VLConfig(text_config=spec["text"], vision_config=spec["vision"], tie_word_embeddings=spec["tie"])
        with torch.device("meta"):
            qwen = Qwen2_5_VLForConditionalGeneration(config)
        total = sum(p.numel() for p in qwen.parameters())  # tied lm_head counted once
        vision = sum(p.numel() for p in qwen.model.visual.parameters())
        h = spec["text"]["hidden_size"]
        lora = 0
        for mod_name, module in qwen.model.language_model.named_modules():
            if mod_name.split(".")[-1] in LORA_TARGETS:
                lora += lora_r * (module.in_features + module.out_features)
        new_rows = 33 * h * (1 if spec["tie"] else 2)
        heads = (h * (h // 2) + h // 2 + h // 2 + 1) + (h * h + h + h * 256 + 256)
        stage1_train = new_rows + heads + sam_decoder
        frozen = total + sam_encoder + sam_prompt
        for stage, trainable in (("1: frozen LLM", stage1_train), (f"2: + LoRA r={lora_r}", stage1_train + lora)):
            # bf16 frozen weights (2 B/param); trainable in fp32 with grad + AdamW m, v (16 B/param)
            mem = 2 * frozen + 16 * trainable
            rows.append({"model": name, "stage": stage, "total": total, "vision": vision, "sam": sam_encoder + sam_prompt + sam_decoder,
                         "trainable": trainable, "lora": lora if "LoRA" in stage else 0, "gib": mem / 2**30})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=112, help="image side in pixels")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved timing rounds (best of)")
    parser.add_argument("--variant", choices=VARIANTS, help="(internal) run one variant and print JSON")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: with more, OpenMP spin-waits count as CPU time on a shared box)")
    parser.add_argument("--sizes", action="store_true", help="also print the 3B/7B parameter and memory table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(measure_memory(args.variant, args.batch, args.size)))
        return

    results = {}
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", variant, "--batch", str(args.batch), "--size", str(args.size),
               "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    for variant, (wall, cpu) in measure_time(args.batch, args.size, args.rounds).items():
        results[variant]["wall"], results[variant]["cpu"] = wall, cpu
    floor = results["bare"]
    print(f"tiny Qwen2.5-VL (2 layers, hidden 64, vocab 151936) + tiny SAM, CPU, {torch.get_num_threads()} threads, "
          f"batch {args.batch} x {args.size}x{args.size} px, {floor['tokens']} tokens, best of {args.rounds}")
    print("| variant | fwd+bwd CPU s | ratio | fwd+bwd wall s | ratio | peak RSS increase MiB | ratio | trainable params |")
    print("|---|---|---|---|---|---|---|---|")
    for variant, r in results.items():
        print(f"| {variant} | {r['cpu']:.3f} | {r['cpu'] / floor['cpu']:.2f}x | {r['wall']:.3f} | "
              f"{r['wall'] / floor['wall']:.2f}x | {r['peak_mib']:.0f} | "
              f"{r['peak_mib'] / max(floor['peak_mib'], 1e-9):.2f}x | {r['trainable']:,} |")
    if args.sizes:
        print()
        print("| model | stage | params (LLM+vision) | vision | SAM vit_h | trainable | LoRA | weights+grads+AdamW GiB |")
        print("|---|---|---|---|---|---|---|---|")
        for r in model_sizes():
            print(f"| {r['model']} | {r['stage']} | {r['total'] / 1e9:.2f} B | {r['vision'] / 1e6:.0f} M | "
                  f"{r['sam'] / 1e6:.0f} M | {r['trainable'] / 1e6:.1f} M | {r['lora'] / 1e6:.1f} M | {r['gib']:.1f} |")


if __name__ == "__main__":
    main()
