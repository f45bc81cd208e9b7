"""`forgery`: the command-line face of the toolkit.

Thin on purpose: each command parses its options, calls one library function, shows progress
and maps the outcome to an exit code (0 something produced, 1 nothing produced, 2 bad options).
Heavy imports happen inside the commands so `forgery --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Labelled image forgeries, training shards, and a Qwen2.5-VL + SAM forensics model.",
)


# ---------------------------------------------------------------- synth, replay (issue 2)


def _parse_range(text: str, option: str) -> tuple[float, float]:
    try:
        parts = [float(v) for v in text.split("-")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise typer.BadParameter(f"expected MIN-MAX, e.g. 0.02-0.15, got {text!r}", param_hint=option)
    return parts[0], parts[-1]


def _parse_weights(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    weights = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"expected NAME=WEIGHT,..., got {item!r}", param_hint="--weights") from None
        if not sep:
            raise typer.BadParameter(f"expected NAME=WEIGHT,..., got {item!r}", param_hint="--weights")
    return weights


@app.command()
def synth(
    inputs: list[Path] = typer.Argument(..., help="Photos and/or folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", help="Sample directory to write (created; re-runs skip finished samples)."),
    method: str = typer.Option("mixed", help="copy-move, splice, erase, inpaint, jpeg, resample, contrast, noise, blur, "
                               "mixed (a weighted draw per sample) or authentic (real samples, --post only)."),
    count: int = typer.Option(1, help="Samples per input."),
    seed: int = typer.Option(0, help="Run seed; each sample's seed derives from it, the input's sha256 and the index."),
    workers: int = typer.Option(1, help="Worker processes."),
    part: Optional[str] = typer.Option(None, help="i/N: take every N-th input starting at the i-th (1-based), for N machines."),
    donors: Optional[list[Path]] = typer.Option(None, help="Donor photos or folders for splice (default: the inputs)."),
    region: str = typer.Option("auto", help="polygon, ellipse, stroke, rect, object or auto."),
    area: str = typer.Option("0.02-0.15", help="MIN-MAX fraction of the image the forged region covers."),
    blend: str = typer.Option("auto", help="none, feather, poisson or auto (drawn per sample)."),
    post: str = typer.Option("", help="Global post-processing chain, e.g. 'jpeg:70-95,resize:0.5-1.0,noise:1-3,blur:0.5-1' "
                             "(noise is a standard deviation on the 0-255 scale). Never makes an image fake."),
    exif: str = typer.Option("keep", help="keep, strip or tamper (Software set to an editor, DateTime moved)."),
    weights: Optional[str] = typer.Option(None, help="Weights for mixed, e.g. 'copy-move=2,splice=1,erase=1'."),
    max_pixels: int = typer.Option(64_000_000, help="Inputs above this many pixels are rejected (checked before decoding)."),
    source_masks: bool = typer.Option(False, help="Also write masks/<id>.source.png (copy-move's source region)."),
    inpaint_model: Optional[str] = typer.Option(None, help="inpaint: 'tiny' (random test pipeline, not photographic), "
                                                "a local diffusers folder, or a hub id already in the cache (no download)."),
    device: str = typer.Option("auto", help="inpaint/SAM device: auto, cpu, cuda[:N] or mps."),
    dtype: str = typer.Option("auto", help="inpaint dtype: auto (float16 on CUDA, else float32), float32, float16, bfloat16."),
    prompt: Optional[str] = typer.Option(None, help="inpaint: one prompt for every sample (default: built-in lists per region kind)."),
    prompts: Optional[Path] = typer.Option(None, help="inpaint: a file of prompts, one per line; each sample draws one."),
    negative_prompt: Optional[str] = typer.Option(None, help="inpaint: the negative prompt (default: a built-in one)."),
    inpaint_steps: Optional[int] = typer.Option(None, help="inpaint: denoising steps (default 8 for tiny, 30 otherwise)."),
    guidance: float = typer.Option(7.5, help="inpaint: classifier-free guidance scale."),
    strength: float = typer.Option(1.0, help="inpaint: how far the region is noised, in (0, 1]."),
    sam_checkpoint: Optional[Path] = typer.Option(None, help="inpaint with --region object: regions from this "
                                                  "segment-anything checkpoint (vit_b/l/h .pth) instead of superpixels."),
    batch_size: int = typer.Option(1, help="inpaint: samples per pipeline call."),
) -> None:
    """Make labelled forgeries: images, masks, operation logs, index.jsonl and rejects.jsonl."""
    from tqdm import tqdm

    from forgery_synth.engine import SynthJob, SynthOptions, parse_part
    from forgery_synth.inpaint_pipeline import ModelUnavailable
    from forgery_synth.inpaint_prompts import read_prompts
    from forgery_synth.methods.inpaint import InpaintConfig

    try:
        inpaint = None
        if inpaint_model is not None:
            if prompt is not None and prompts is not None:
                raise ValueError("give --prompt or --prompts, not both")
            inpaint = InpaintConfig(
                model=inpaint_model, device=device, dtype=dtype,
                prompts=(prompt,) if prompt is not None else read_prompts(prompts) if prompts is not None else None,
                negative_prompt=negative_prompt, steps=inpaint_steps, guidance=guidance, strength=strength,
                sam_checkpoint=str(sam_checkpoint) if sam_checkpoint else None, batch_size=batch_size,
            )
        elif prompt is not None or prompts is not None or sam_checkpoint is not None:
            raise ValueError("--prompt, --prompts and --sam-checkpoint are inpaint options: they need --inpaint-model")
        options = SynthOptions(
            method=method, count=count, seed=seed, region=region, area=_parse_range(area, "--area"), blend=blend,
            post=post, exif=exif, max_pixels=max_pixels, weights=_parse_weights(weights), source_masks=source_masks,
            inpaint=inpaint,
        )
        job = SynthJob(inputs, out, options, workers=workers, part=parse_part(part) if part else None, donors=donors)
    except ModelUnavailable as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(1) from None
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    written = skipped = rejected = 0
    with tqdm(total=len(job.inputs), unit="photo", desc="synth", disable=None) as bar:
        for result in job.run():
            written += result.written
            skipped += result.skipped
            if result.rejects and not (result.written or result.skipped):
                rejected += 1
            bar.set_postfix(samples=written + skipped, rejected=rejected)
            bar.update(1)
    problems = f", {rejected} input(s) rejected (see {out / 'rejects.jsonl'})" if rejected else ", 0 inputs rejected"
    done = f"{written} sample(s) written" + (f", {skipped} already present" if skipped else "")
    typer.echo(f"{done}{problems}; {len(job.inputs)} input(s) in {out}")
    raise typer.Exit(0 if written + skipped else 1)


@app.command()
def replay(
    log: Path = typer.Argument(..., help="An operation log (logs/<id>.json)."),
    source: Path = typer.Option(..., "--source", help="The source photo the log names."),
    donor: Optional[Path] = typer.Option(None, "--donor", help="The donor photo (splice)."),
    out: Path = typer.Option(..., "--out", help="Where to write the replayed image; the mask goes beside it as <stem>.mask.png."),
) -> None:
    """Reproduce a sample byte for byte from its log and source photo."""
    import json

    from forgery_synth.engine import write_atomic
    from forgery_synth.loading import ImageRejected
    from forgery_synth.render import ReplayError, encode_mask, replay as replay_log

    try:
        record = json.loads(log.read_text())
        sample = replay_log(record, source, donor)
    except (OSError, json.JSONDecodeError) as e:
        typer.echo(f"Error: cannot read log {log}: {e}", err=True)
        raise typer.Exit(2) from None
    except (ImageRejected, ReplayError, KeyError) as e:
        typer.echo(f"Error: cannot replay {log}: {e}", err=True)
        raise typer.Exit(1) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, sample.image_bytes)
    write_atomic(out.with_name(out.stem + ".mask.png"), encode_mask(sample.mask))
    typer.echo(f"replayed {record.get('id', log.stem)} -> {out} ({sample.ext}, mask area {sample.mask_area:.4f})")


@app.command("sample-photos")
def sample_photos(dest: Path = typer.Argument(..., help="Folder to copy the photos into.")) -> None:
    """Copy the real photos bundled with scikit-image into a folder (no download)."""
    from forgery_synth.sample_photos import copy_sample_photos

    paths = copy_sample_photos(dest)
    typer.echo(f"{len(paths)} photos in {dest}")
    raise typer.Exit(0 if paths else 1)



# ---------------------------------------------------------------- build-shards, inspect, check-shards (issue 4)


@app.command("build-shards")
def build_shards_cmd(
    samples: Optional[list[Path]] = typer.Argument(None, help="Sample directories written by `forgery synth`."),
    out: Path = typer.Option(..., "--out", help="Shard directory: {train,val,test}-NNNNNN.tar, manifest.json, rejects.jsonl."),
    real: Optional[list[Path]] = typer.Option(None, "--real", help="Folders of authentic photos (repeatable)."),
    templates: str = typer.Option("json:0.4,explain:0.25,conclusion:0.15,pair:0.2",
                                  help="Conversation templates with weights (NAME[:W],...): json, explain, conclusion, pair."),
    lang: str = typer.Option("zh,en", "--lang", help="Prompt languages with weights (NAME[:W],...): zh, en."),
    splits: str = typer.Option("0.9,0.05,0.05", help="train,val,test shares by source photo (sum 1)."),
    real_ratio: float = typer.Option(0.5, help="Share of authentic samples per split, reached by dropping samples."),
    codec: str = typer.Option("png", help="Image codec for real and fake alike: png (lossless) or jpeg."),
    jpeg_quality: str = typer.Option("75-95", help="LO-HI: with --codec jpeg, each image's quality is drawn from it."),
    min_pixels: int = typer.Option(4 * 28 * 28, help="Qwen2.5-VL frame: smallest image area after resizing."),
    max_pixels: int = typer.Option(1280 * 28 * 28, help="Qwen2.5-VL frame: largest image area after resizing."),
    shard_size: int = typer.Option(1000, help="At most this many samples per shard."),
    shard_bytes: str = typer.Option("1G", help="At most this many bytes per shard (e.g. 512M, 1G)."),
    max_regions: int = typer.Option(8, help="At most this many polygons per json answer (largest regions first)."),
    max_points: int = typer.Option(48, help="At most about this many vertices per polygon."),
    seed: int = typer.Option(0, help="Seed of every per-sample draw (template, language, prompt, quality, order)."),
    resume: bool = typer.Option(False, help="Continue an interrupted build in --out."),
    swift: Optional[Path] = typer.Option(None, help="Also export ms-swift JSONL per split, with image files, here."),
    workers: int = typer.Option(1, help="Worker processes for decoding and encoding."),
) -> None:
    """Pack samples and authentic photos into webdataset shards of training conversations."""
    from tqdm import tqdm

    from forgery_synth.shards import OptionError, ShardOptions, build_shards, parse_size, parse_weights
    from forgery_synth.conversations import LANGS, TEMPLATES

    try:
        lo, _, hi = jpeg_quality.partition("-")
        try:
            quality = (int(lo), int(hi or lo))
            shares = tuple(float(v) for v in splits.split(","))
        except ValueError:
            raise OptionError(f"--jpeg-quality {jpeg_quality!r} / --splits {splits!r}: expected LO-HI and three numbers") from None
        options = ShardOptions(
            out=out, samples=list(samples or []), real=list(real or []),
            templates=parse_weights(templates, TEMPLATES, "--templates"), langs=parse_weights(lang, LANGS, "--lang"),
            splits=shares, real_ratio=real_ratio, codec=codec, jpeg_quality=quality,
            min_pixels=min_pixels, max_pixels=max_pixels, shard_size=shard_size, shard_bytes=parse_size(shard_bytes),
            max_regions=max_regions, max_points=max_points, seed=seed, resume=resume, swift=swift, workers=workers,
        )
        options.validate()
        with tqdm(unit="sample", desc="build-shards", disable=None) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            report = build_shards(options, progress)
    except OptionError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
    typer.echo(f"{sum(report.counts.values())} sample(s) in {len(report.shards)} shard(s) ({counts}); "
               f"{report.rejects} rejected (see {out / 'rejects.jsonl'}); manifest {out / 'manifest.json'}")
    raise typer.Exit(0 if sum(report.counts.values()) else 1)


@app.command("inspect")
def inspect_cmd(
    inputs: list[Path] = typer.Argument(..., help="A shard directory, .tar shards, or a samples directory."),
    out: Path = typer.Option(..., "--out", help="Contact sheet PNG to write."),
    n: int = typer.Option(16, "--n", help="How many samples to show."),
) -> None:
    """Write a contact sheet: images with masks overlaid and their answer text."""
    from forgery_synth.contact_sheet import make_contact_sheet

    if n < 1:
        typer.echo("Error: --n must be at least 1", err=True)
        raise typer.Exit(2)
    try:
        shown = make_contact_sheet(inputs, out, n)
    except ValueError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    if not shown:
        typer.echo("no samples found", err=True)
        raise typer.Exit(1)
    typer.echo(f"{shown} sample(s) in {out}")


@app.command("check-shards")
def check_shards_cmd(
    shard_dir: Path = typer.Argument(..., help="A directory written by `forgery build-shards`."),
) -> None:
    """Validate shards against their manifest: members, JSON, special tokens, sizes, counts, hashes."""
    from forgery_synth.shard_check import check_shards

    if not shard_dir.is_dir():
        typer.echo(f"Error: {shard_dir} is not a directory", err=True)
        raise typer.Exit(2)
    problems = check_shards(shard_dir)
    for p in problems[:100]:
        typer.echo(p)
    if len(problems) > 100:
        typer.echo(f"… and {len(problems) - 100} more")
    typer.echo(f"{len(problems)} problem(s) in {shard_dir}" if problems else f"{shard_dir}: OK")
    raise typer.Exit(1 if problems else 0)


# ---------------------------------------------------------------- predict, eval, datasets (issue 7)


if __name__ == "__main__":
    app()
