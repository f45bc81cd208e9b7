"""`forgery`: the command-line face of the toolkit.

Thin on purpose: each command parses its options, calls one library function, shows progress
and maps the outcome to an exit code (0 something produced, 1 nothing produced, 2 bad options).
Heavy imports happen inside the commands so `forgery --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
import typer.core

from forgery_synth.dataset.answer_tokens import CLS_POSITIONS, DEFAULT_CLS_POSITION, DEFAULT_MASK_POSITION, MASK_POSITIONS


def _argument_type(self, ctx):  # noqa: ANN001
    """Arguments with a metavar show just it: typer would add ``<list[Path]>`` beside a repeated one."""
    return None if self.metavar else _typer_display_type(self, ctx)


_typer_display_type = typer.core.TyperArgument.display_type
typer.core.TyperArgument.display_type_rich = _argument_type

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
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


def _parse_ops(text: str) -> tuple[int, int]:
    """``"2"`` or ``"1-3"`` -> (min, max) edits per image; ValueError names the option."""
    lo, _, hi = str(text).partition("-")
    try:
        return int(lo), int(hi or lo)
    except ValueError:
        raise ValueError(f"--ops {text!r}: expected N or MIN-MAX, e.g. 1-3") from None


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


def _downloads(allowed: bool) -> None:
    """``--allow-download``: let from_pretrained fetch missing models (trainer.model.hub; child processes inherit it)."""
    if allowed:
        from trainer.model.hub import allow_downloads

        allow_downloads()


def _config_values(ctx: typer.Context, config: Optional[Path], values: dict, skip: set[str]) -> dict:
    """`values` (the command's parameters) updated from a YAML file for every option the command
    line did not give: defaults < YAML < command line. Keys are option names (dashes or underscores)."""
    if config is None:
        return values
    import yaml

    try:
        loaded = yaml.safe_load(config.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise typer.BadParameter(f"cannot read {config}: {e}", param_hint="--config") from None
    if not isinstance(loaded, dict):
        raise typer.BadParameter(f"{config} must hold a mapping of options", param_hint="--config")
    merged = dict(values)
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        if name not in values or name in skip:
            raise typer.BadParameter(f"{config}: unknown option {key!r}", param_hint="--config")
        source = ctx.get_parameter_source(name)  # typer vendors click: compare by name
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            merged[name] = value
    return merged


@app.command()
def synth(
    ctx: typer.Context,
    inputs: list[Path] = typer.Argument(..., metavar="PHOTOS", help="Photos and/or folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", help="Sample directory to write (created; re-runs skip finished samples)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of options (names as on the command line, "
                                          "e.g. 'method: splice', 'area: 0.02-0.1'); the command line wins."),
    method: str = typer.Option("mixed", help="copy-move, splice, erase, inpaint, jpeg, resample, contrast, noise, blur, "
                               "text-replace, text-copy-move, text-splice, text-erase (document pages), "
                               "hairline, catchlight, face-swap, skin-retouch (portraits: need a detected face), "
                               "mixed (a weighted draw per sample) or authentic (real samples, --post only)."),
    count: int = typer.Option(1, help="Samples per input."),
    seed: int = typer.Option(0, help="Run seed; each sample's seed derives from it, the input's sha256 and the index."),
    workers: int = typer.Option(1, help="Worker processes."),
    part: Optional[str] = typer.Option(None, help="i/N: take every N-th input starting at the i-th (1-based), for N machines."),
    donors: Optional[list[Path]] = typer.Option(None, metavar="PATH", help="Donor photos or folders for splice (default: the inputs)."),
    region: str = typer.Option("auto", help="polygon, ellipse, stroke, rect, object or auto."),
    area: str = typer.Option("0.02-0.15", help="MIN-MAX fraction of the image the forged region covers."),
    ops: str = typer.Option("1", help="MIN-MAX local edits per forged image (e.g. 1-3): each edit's region is in "
                            "the log, the mask is their union; with mixed, each edit draws its own method."),
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

    from forgery_synth.methods.inpaint_config import InpaintConfig
    from forgery_synth.methods.inpaint_prompts import read_prompts
    from forgery_synth.models.inpaint_pipeline import ModelUnavailable
    from forgery_synth.synthesis.engine import SynthJob
    from forgery_synth.synthesis.loading import NoImages
    from forgery_synth.synthesis.options import SynthOptions, parse_part

    given = _config_values(ctx, config, dict(ctx.params), skip={"inputs", "out", "config"})
    if given is not ctx.params:
        method, count, seed, workers, part, region, blend, post, exif, max_pixels, source_masks = (
            given[k] for k in ("method", "count", "seed", "workers", "part", "region", "blend", "post", "exif",
                               "max_pixels", "source_masks"))
        inpaint_model, device, dtype, prompt, negative_prompt, inpaint_steps, guidance, strength, batch_size = (
            given[k] for k in ("inpaint_model", "device", "dtype", "prompt", "negative_prompt", "inpaint_steps",
                               "guidance", "strength", "batch_size"))
        area = "-".join(str(v) for v in given["area"]) if isinstance(given["area"], (list, tuple)) else str(given["area"])
        ops = "-".join(str(v) for v in given["ops"]) if isinstance(given["ops"], (list, tuple)) else str(given["ops"])
        weights = (",".join(f"{k}={v}" for k, v in given["weights"].items()) if isinstance(given["weights"], dict)
                   else given["weights"])
        donors = [Path(d) for d in ([given["donors"]] if isinstance(given["donors"], str) else given["donors"] or [])] or None
        prompts = Path(given["prompts"]) if given["prompts"] else None
        sam_checkpoint = Path(given["sam_checkpoint"]) if given["sam_checkpoint"] else None
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
            inpaint=inpaint, ops=_parse_ops(ops),
        )
        job = SynthJob(inputs, out, options, workers=workers, part=parse_part(part) if part else None, donors=donors)
    except (ModelUnavailable, NoImages) as e:
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
    problems = f", {rejected} input(s) rejected (see {out / 'rejects.jsonl'})" if rejected else ", 0 input(s) rejected"
    done = f"{written} sample(s) written" + (f", {skipped} already present" if skipped else "")
    typer.echo(f"{done} from {len(job.inputs)} input(s){problems}; samples in {out}")
    raise typer.Exit(0 if written + skipped else 1)


@app.command()
def replay(
    log: Path = typer.Argument(..., metavar="LOG", help="An operation log (logs/<id>.json)."),
    source: Path = typer.Option(..., "--source", help="The source photo the log names."),
    donor: Optional[Path] = typer.Option(None, "--donor", help="The donor photo (splice)."),
    out: Path = typer.Option(..., "--out", help="Where to write the replayed image; the mask goes beside it as <stem>.mask.png."),
) -> None:
    """Reproduce a sample byte for byte from its log and source photo."""
    import json

    from forgery_synth.models.inpaint_pipeline import ModelUnavailable
    from forgery_synth.synthesis.engine import write_atomic
    from forgery_synth.synthesis.loading import ImageRejected
    from forgery_synth.synthesis.render import ReplayError, encode_mask
    from forgery_synth.synthesis.render import replay as replay_log

    try:
        record = json.loads(log.read_text())
        sample = replay_log(record, source, donor)
    except (OSError, json.JSONDecodeError) as e:
        typer.echo(f"Error: cannot read log {log}: {e}", err=True)
        raise typer.Exit(2) from None
    except ReplayError as e:
        if e.option:  # the caller gave the wrong photo (or none): a bad option
            typer.echo(f"Error: {e.option}: {e}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"Error: cannot replay {log}: {e}", err=True)
        raise typer.Exit(1) from None
    except (ImageRejected, ModelUnavailable, KeyError) as e:
        typer.echo(f"Error: cannot replay {log}: {e}", err=True)
        raise typer.Exit(1) from None
    wanted = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg"}.get(out.suffix.lower())
    if wanted != sample.ext:
        typer.echo(f"Error: --out {out}: the replayed sample is a {sample.ext.upper()} file (byte for byte, so it is "
                   f"not re-encoded); name it {out.with_suffix('.' + sample.ext).name}", err=True)
        raise typer.Exit(2)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, sample.image_bytes)
    write_atomic(out.with_name(out.stem + ".mask.png"), encode_mask(sample.mask))
    typer.echo(f"replayed {record.get('id', log.stem)} -> {out} ({sample.ext}, mask area {sample.mask_area:.4f})")


@app.command("sample-photos")
def sample_photos(dest: Path = typer.Argument(..., metavar="DEST", help="Folder to copy the photos into.")) -> None:
    """Copy the real photos bundled with scikit-image into a folder (no download)."""
    from forgery_synth.synthesis.sample_photos import copy_sample_photos

    paths = copy_sample_photos(dest)
    typer.echo(f"{len(paths)} photos in {dest}")
    raise typer.Exit(0 if paths else 1)



@app.command("documents")
def documents_cmd(
    out: Path = typer.Option(..., "--out", help="Folder to write <stem>.png and <stem>.layout.json into (re-runs skip finished pages)."),
    count: int = typer.Option(6, help="Pages to render."),
    kind: str = typer.Option("id-card,invoice,certificate", help="Comma-separated kinds: id-card, invoice, certificate."),
    lang: str = typer.Option("zh,en", help="Comma-separated languages of the text: zh, en."),
    portraits: Optional[Path] = typer.Option(None, help="Folder of photos for the ID cards' portraits "
                                             "(default: scikit-image's bundled astronaut photo)."),
    seed: int = typer.Option(0, help="Run seed; each page's seed derives from it and the page index."),
) -> None:
    """Render synthetic documents (ID cards, invoices, certificates) with their field layouts."""
    from forgery_synth.documents.fonts import FontUnavailable
    from forgery_synth.documents.generate import DocumentOptions, generate_documents

    options = DocumentOptions(count=count, kinds=tuple(k.strip() for k in kind.split(",") if k.strip()),
                              langs=tuple(v.strip() for v in lang.split(",") if v.strip()),
                              portraits=str(portraits) if portraits else None, seed=seed)
    written = skipped = 0
    try:
        options.validate()
        for _, new in generate_documents(out, options):
            written += new
            skipped += not new
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    except FontUnavailable as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{written} page(s) written" + (f", {skipped} already present" if skipped else "") + f"; documents in {out}")
    raise typer.Exit(0 if written + skipped else 1)


@app.command("fingerprint")
def fingerprint_cmd(
    photos: list[Path] = typer.Argument(..., metavar="PHOTOS", help="Photo files or folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", help="Folder for <make>_<model>.safetensors per camera and cameras.json."),
    min_photos: int = typer.Option(10, "--min-photos", help="A camera needs at least this many photos of its most "
                                   "common size; fewer: refused, with the reason."),
    max_pixels: int = typer.Option(64_000_000, help="Photos above this many pixels are skipped."),
) -> None:
    """Estimate a sensor noise fingerprint (PRNU) per camera (EXIF Make + Model) from its photos."""
    from tqdm import tqdm

    from forgery_synth.fingerprints.build import FingerprintOptionError, build_fingerprints

    try:
        with tqdm(unit="photo", desc="fingerprint", disable=None) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            report = build_fingerprints(list(photos), out, min_photos=min_photos, max_pixels=max_pixels,
                                        progress=progress)
    except FingerprintOptionError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    for skip in report.skipped:
        typer.echo(f"skipped {skip['path']}: {skip['error']}", err=True)
    for camera, reason in report.refused.items():
        typer.echo(f"refused camera {camera}: {reason}", err=True)
    for camera, entry in report.cameras.items():
        typer.echo(f"{camera}: {entry['n_photos']} photos, {entry['size'][0]}x{entry['size'][1]} -> {out / entry['file']}")
    typer.echo(f"{len(report.cameras)} fingerprint(s), {len(report.refused)} camera(s) refused, "
               f"{len(report.skipped)} photo(s) skipped; index {out / 'cameras.json'}")
    raise typer.Exit(0 if report.cameras else 1)


# ---------------------------------------------------------------- build-shards, inspect, check-shards (issue 4)


@app.command("build-shards")
def build_shards_cmd(
    samples: Optional[list[Path]] = typer.Argument(None, metavar="SAMPLES", help="Sample directories written by `forgery synth`."),
    out: Path = typer.Option(..., "--out", help="Shard directory: {train,val,test}-NNNNNN.tar, manifest.json, rejects.jsonl."),
    real: Optional[list[Path]] = typer.Option(None, "--real", metavar="DIR", help="Folders of authentic photos (repeatable)."),
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
    near_duplicates: int = typer.Option(10, help="Photos whose 64-bit perceptual hashes differ in at most this many "
                                        "bits share a split (stereo pairs, crops, re-saves); -1: off."),
    cls_position: str = typer.Option(DEFAULT_CLS_POSITION, "--cls-position", help="Where <cls> stands in the answers: "
                                     f"{' or '.join(CLS_POSITIONS)}. before-verdict: first, so its state sees only image "
                                     "and prompt; after-verdict: right after the verdict word (the notes' format). "
                                     "Training may move it."),
    mask_position: str = typer.Option(DEFAULT_MASK_POSITION, "--mask-position", help="Where <mask_1..32> stand: "
                                      f"{' or '.join(MASK_POSITIONS)}. before-answer: before any answer text, so "
                                      "their states see only image and prompt, as at inference; after-region: after "
                                      "the polygon / region sentence (the notes' format; teacher forcing shows them "
                                      "the true polygon). Training may move them."),
    split_by: str = typer.Option("source", "--split-by", help="What one split keeps whole: source (a photo and its "
                                 "near duplicates) or camera (EXIF Make+Model held out: every photo of a camera in one "
                                 "split; --splits are then shares of cameras; photos of no known camera split by source)."),
) -> None:
    """Pack samples and authentic photos into webdataset shards of training conversations."""
    from tqdm import tqdm

    from forgery_synth.dataset.conversations import LANGS, TEMPLATES
    from forgery_synth.dataset.shard_options import (
        OptionError,
        ShardOptions,
        parse_size,
        parse_weights,
    )
    from forgery_synth.dataset.shards import build_shards

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
            near_duplicates=near_duplicates, cls_position=cls_position, mask_position=mask_position, split_by=split_by,
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
    dropped = {label: sum(s["balance"]["available"][label] - s["balance"]["kept"][label]
                          for s in report.manifest["splits"].values()) for label in ("real", "fake")}
    balance = (f"; dropped {dropped['fake']} fake and {dropped['real']} real sample(s) to reach --real-ratio "
               f"{real_ratio:g} per split" if any(dropped.values()) else "")
    typer.echo(f"{sum(report.counts.values())} sample(s) in {len(report.shards)} shard(s) ({counts}); "
               f"{report.rejects} rejected (see {out / 'rejects.jsonl'}){balance}; manifest {out / 'manifest.json'}")
    raise typer.Exit(0 if sum(report.counts.values()) else 1)


@app.command("inspect")
def inspect_cmd(
    inputs: list[Path] = typer.Argument(..., metavar="SOURCES", help="A shard directory, .tar shards, or a samples directory."),
    out: Path = typer.Option(..., "--out", help="Contact sheet PNG to write."),
    n: int = typer.Option(16, "--n", help="How many samples to show."),
    cover: bool = typer.Option(False, "--cover", help="First one sample of every method, template and language."),
) -> None:
    """Write a contact sheet: images with masks overlaid and their answer text."""
    from forgery_synth.dataset.contact_sheet import make_contact_sheet

    if n < 1:
        typer.echo("Error: --n must be at least 1", err=True)
        raise typer.Exit(2)
    try:
        shown = make_contact_sheet(inputs, out, n, cover=cover)
    except ValueError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    if not shown:
        typer.echo("no samples found", err=True)
        raise typer.Exit(1)
    typer.echo(f"{shown} sample(s) in {out}")


@app.command("check-shards")
def check_shards_cmd(
    shard_dir: Path = typer.Argument(..., metavar="SHARD_DIR", help="A directory written by `forgery build-shards`."),
    audit_dir: Optional[Path] = typer.Option(None, "--audit", help="Also run `forgery audit` into this folder; "
                                             "a shortcut it finds counts as a problem."),
) -> None:
    """Validate shards against their manifest: members, JSON, special tokens, sizes, counts, hashes."""
    from forgery_synth.dataset.check import check_shards

    if not shard_dir.is_dir():
        typer.echo(f"Error: {shard_dir} is not a directory", err=True)
        raise typer.Exit(2)
    problems = check_shards(shard_dir)
    if audit_dir is not None and problems:
        typer.echo(f"--audit: not run, the shards have {len(problems)} problem(s) to fix first")
    if audit_dir is not None and not problems:
        from forgery_synth.dataset.audit import audit

        report = audit(shard_dir, audit_dir)
        problems += [f"audit: {f}" for f in report.failures]
        typer.echo(f"audit report: {audit_dir / 'audit.html'}")
    for p in problems[:100]:
        typer.echo(p)
    if len(problems) > 100:
        typer.echo(f"… and {len(problems) - 100} more")
    typer.echo(f"{len(problems)} problem(s) in {shard_dir}" if problems else f"{shard_dir}: OK")
    raise typer.Exit(1 if problems else 0)


@app.command("audit")
def audit_cmd(
    source: Path = typer.Argument(..., metavar="SOURCE", help="A shards folder (`forgery build-shards` output) or a samples directory."),
    out: Path = typer.Option(..., "--out", help="Folder for audit.json, audit.html and audit.png."),
    threshold: float = typer.Option(0.6, "--threshold", help="Largest grouped AUC a trivial feature set may reach."),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds, grouped by source photo."),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds and the classifier."),
    detectors: bool = typer.Option(True, "--detectors/--no-detectors", help="Score the classical detectors per method."),
) -> None:
    """Look for label shortcuts: trivial features, one-label sentences, colour in grey sources (exit 1 if any)."""
    from forgery_synth.dataset.audit import audit

    if not source.exists():
        typer.echo(f"Error: {source} does not exist", err=True)
        raise typer.Exit(2)
    if folds < 2:
        typer.echo("Error: --folds must be at least 2", err=True)
        raise typer.Exit(2)
    try:
        report = audit(source, out, threshold=threshold, folds=folds, seed=seed, detectors=detectors)
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    s = report.summary
    for bad in s["unreadable"][:20]:
        typer.echo(f"unreadable, left out: {bad['where']}: {bad['error']}", err=True)
    typer.echo(f"{s['n']['real']} real + {s['n']['fake']} fake samples, {s['groups']} source photos"
               + (f", {len(s['unreadable'])} unreadable left out" if s["unreadable"] else ""))
    for name, auc in s["feature_auc"].items():
        typer.echo(f"  {name:<17} AUC {'n/a' if auc is None else f'{auc:.3f}'}")
    for f in report.failures:
        typer.echo(f"SHORTCUT: {f}")
    typer.echo(f"{'no shortcut found' if report.passed else f'{len(report.failures)} shortcut(s)'}; report in {out / 'audit.html'}")
    raise typer.Exit(0 if report.passed else 1)


# ---------------------------------------------------------------- predict, eval, datasets (issue 7)


_PERTURB_KINDS = ("jpeg:", "resize:", "blur:", "noise:")


@app.command()
def predict(
    inputs: list[Path] = typer.Argument(..., metavar="IMAGES", help="Images and/or folders (searched recursively)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A checkpoint folder written by the trainer."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where <name>.mask.png and <name>.overlay.png of images "
                                       "judged forged go (default: a new folder <P>-predictions beside P, the "
                                       "folder holding the inputs; never inside it)."),
    threshold: Optional[float] = typer.Option(None, help="Verdict and mask threshold in [0, 1]; positive is strictly "
                                              "greater.  [default: the checkpoint's thresholds calibrated on validation "
                                              "(thresholds.json), else 0.5]"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(2, help="Images per forward pass."),
    max_new_tokens: int = typer.Option(256, help="Longest answer generated (greedy decoding)."),
    allow_download: bool = typer.Option(False, "--allow-download", help="Let Hugging Face models (backbone, "
                                        "tokenizer, processor) download when not cached; by default nothing is "
                                        "downloaded and a missing model exits 2 naming the command that fetches it."),
    verbose: bool = typer.Option(False, "--verbose", help="Show the libraries' warnings and loading bars."),
) -> None:
    """Say whether each image is forged and where: one JSON line per image on stdout.

    The verdict is the cls score's (score > threshold); regions, mask and overlay only for "fake";
    the answer's own verdict is reported beside it, and a disagreement is named."""
    _downloads(allow_download)
    import json

    from trainer.evaluation.predict import (
        PredictOptions,
        collect_images,
        default_out,
        load_predictor,
        predict_images,
    )
    from trainer.model.quiet import quiet_libraries

    if (threshold is not None and not 0.0 <= threshold <= 1.0) or batch_size < 1 or max_new_tokens < 1:
        typer.echo("Error: --threshold must be in [0, 1], --batch-size and --max-new-tokens >= 1", err=True)
        raise typer.Exit(2)
    from trainer.evaluation.predict import decision_thresholds

    try:
        decide = decision_thresholds(checkpoint, threshold)
    except ValueError as e:
        typer.echo(f"Error: cannot load checkpoint {checkpoint}: {e}", err=True)
        raise typer.Exit(2) from None
    paths, missing = collect_images(inputs)
    for m in missing:
        typer.echo(json.dumps({"image": str(m), "error": "no such file or folder"}))
    if not paths:
        typer.echo("Error: no images found under " + ", ".join(str(p) for p in inputs), err=True)
        raise typer.Exit(1)
    try:
        out = out if out is not None else default_out([p for p in inputs if p.exists()])
    except ValueError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    opt = PredictOptions(threshold=decide["image"], pixel_threshold=decide["pixel"], device=device,
                         batch_size=batch_size, max_new_tokens=max_new_tokens)
    counts = {"fake": 0, "real": 0, "error": 0}
    with quiet_libraries(verbose):
        try:
            predictor = load_predictor(checkpoint, opt)
        except (OSError, ValueError) as e:
            typer.echo(f"Error: cannot load checkpoint {checkpoint}: {e}", err=True)
            raise typer.Exit(2) from None
        for line in predict_images(paths, predictor, out, opt):
            counts["error" if "error" in line or line["verdict"] is None else line["verdict"]] += 1
            typer.echo(json.dumps(line, ensure_ascii=False))
    produced = counts["fake"] + counts["real"]
    where = f"; masks and overlays of forged images in {out}" if counts["fake"] else ""
    typer.echo(f"{produced} image(s) judged: {counts['fake']} forged, {counts['real']} real, "
               f"{counts['error'] + len(missing)} error(s){where}", err=True)
    raise typer.Exit(0 if produced else 1)


@app.command(
    "eval", context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
)
def eval_cmd(
    ctx: typer.Context,
    data: list[Path] = typer.Option(..., "--data", metavar="SOURCE", help="Shards, a samples directory, an IMDL-BenCo JSON list or an "
                                    "image-folder + mask-folder benchmark; repeat for several (per-dataset breakdown)."),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json, predictions.jsonl and report.html."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Evaluate this model (give this or --predictions)."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Or evaluate another detector's predictions: "
                                               "a folder of mask PNGs named like the images (+ optional scores.csv) "
                                               "or a JSONL of {image, score, mask}."),
    split: str = typer.Option("test", help="Shard split to read (shards only); 'all' reads every shard."),
    threshold: float = typer.Option(0.5, help="Decision threshold in [0, 1]; positive is strictly greater. The "
                                    "figures at the checkpoint's thresholds calibrated on validation are reported "
                                    "beside them (image.calibrated, pixel.calibrated)."),
    perturb: Optional[list[str]] = typer.Option(None, "--perturb", metavar="KIND:VALUES", help="Robustness conditions (needs --checkpoint): "
                                                "jpeg:QUALITY,.. resize:FACTOR,.. blur:KERNEL,.. noise:STD,.. "
                                                "(noise STD in 0-255 units; IMDL-BenCo's levels are variances)."),
    batch_size: int = typer.Option(2, help="Images per forward pass (--checkpoint)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N (--checkpoint)."),
    max_new_tokens: int = typer.Option(256, help="Longest answer generated, greedy (--checkpoint)."),
    limit: Optional[int] = typer.Option(None, help="At most this many samples per source."),
    examples: int = typer.Option(6, help="Best and worst examples shown in the report (each)."),
    seed: int = typer.Option(0, help="Seed of the noise perturbation."),
    border_band: str = typer.Option("7,5", "--border-band", metavar="INNER,OUTER", help="Band around the mask edge "
                                    "ignored by the border-tolerant F1, pixels inside,outside (TruFor's 15x15 erosion "
                                    "and 11x11 dilation = 7,5)."),
    allow_download: bool = typer.Option(False, "--allow-download", help="Let Hugging Face models (backbone, "
                                        "tokenizer, processor) download when not cached; by default nothing is "
                                        "downloaded and a missing model exits 2 naming the command that fetches it."),
) -> None:
    """Score a model (or another detector's predictions) against labelled images and write a report."""
    _downloads(allow_download)

    def bad(msg: str) -> None:
        typer.echo(f"Error: {msg}", err=True)
        raise typer.Exit(2)

    extra = list(ctx.args)  # the options are checked before anything heavy is imported
    specs = list(perturb or []) + [a for a in extra if a.startswith(_PERTURB_KINDS)]
    if any(not a.startswith(_PERTURB_KINDS) for a in extra):
        bad(f"unexpected arguments: {' '.join(a for a in extra if not a.startswith(_PERTURB_KINDS))}")
    if (checkpoint is None) == (predictions is None):
        bad("give exactly one of --checkpoint and --predictions")
    if not 0.0 <= threshold <= 1.0 or batch_size < 1 or max_new_tokens < 1 or (limit is not None and limit < 1):
        bad("--threshold must be in [0, 1], --batch-size, --max-new-tokens and --limit >= 1")
    from trainer.evaluation.conventions import parse_band
    try:
        band = parse_band(border_band)
    except ValueError as e:
        bad(str(e))

    from trainer.evaluation.evaluate import EvalOptions, run_evaluation
    from trainer.evaluation.perturb import parse_perturbations
    from trainer.evaluation.predictions import PredictionStore
    from trainer.evaluation.predictors import ExternalPredictor
    from trainer.evaluation.readers import source_kind
    try:
        perturbations = parse_perturbations(specs)
    except ValueError as e:
        bad(str(e))
    if perturbations and predictions is not None:
        bad("--perturb re-runs a model on degraded images, so it needs --checkpoint, not --predictions")
    split_opt = None if split == "all" else split
    for d in data:
        try:
            source_kind(d, split_opt)
        except ValueError as e:
            bad(str(e))
    if predictions is not None:
        try:
            predictor = ExternalPredictor(PredictionStore(predictions))
        except (OSError, ValueError) as e:
            bad(str(e))
        info = {"predictions": str(predictions)}
    else:
        from trainer.evaluation.predict import PredictOptions, load_predictor

        try:
            predictor = load_predictor(checkpoint, PredictOptions(threshold=threshold, device=device, batch_size=batch_size,
                                                                  max_new_tokens=max_new_tokens))
        except (OSError, ValueError) as e:
            bad(f"cannot load checkpoint {checkpoint}: {e}")
        from trainer.model.generation import generation_settings

        info = {"checkpoint": str(checkpoint), "generation": generation_settings(max_new_tokens)}
    extras: dict = {}
    if checkpoint is not None:
        from trainer.training.learning import checkpoint_eval_options

        try:
            extras = checkpoint_eval_options(checkpoint)
        except ValueError as e:
            bad(f"cannot load checkpoint {checkpoint}: {e}")
    opt = EvalOptions(threshold=threshold, split=split_opt, perturbations=perturbations, batch_size=batch_size,
                      seed=seed, limit=limit, n_examples=examples, border_band=band, **extras)
    result = run_evaluation(data, predictor, out, opt, progress=lambda s: typer.echo(s, err=True), info=info)
    m = result.metrics
    im, px = m["image"], m["pixel"]

    def f(v: object) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    typer.echo(f"{result.n_scored} image(s) scored, {m['counts']['errors']} error(s); "
               f"image acc {f(im['accuracy'])} F1 {f(im['f1'])} AUC {f(im['auc'])}; "
               f"pixel F1 {f(px['f1'])} IoU {f(px['iou'])} AUC {f(px['auc'])}; report {out / 'report.html'}")
    if "calibrated" in im:
        ic, pc = im["calibrated"], px["calibrated"]
        typer.echo(f"at the calibrated thresholds (image {ic['threshold']:.3f}, pixel {pc['threshold']:.2f}; {ic['note']}): "
                   f"image acc {f(ic['accuracy'])} balanced {f(ic['balanced_accuracy'])}; pixel F1 {f(pc['f1'])} "
                   f"IoU {f(pc['iou'])}")
    for message in (m.get("learning") or {}).get("messages", []):
        typer.echo(f"training: {message}")
    cv = m["conventions"]
    typer.echo(f"conventions: F1 double {f(cv['f1_double'])}; border F1 {f(cv['f1_border'])}, double "
               f"{f(cv['f1_border_double'])} (band {band[0]},{band[1]} px); gIoU {f(cv['giou'])} cIoU {f(cv['ciou'])}, "
               f"with authentic {f(cv['giou_with_authentic'])} / {f(cv['ciou_with_authentic'])}; DeepID F1 "
               f"{f(cv['f1_deepid'])}; image acc from cls {f(cv['image_from_cls']['accuracy'])}, from text "
               f"{f(cv['image_from_text']['accuracy'])}")
    raise typer.Exit(0 if result.n_scored else 1)


datasets_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Benchmark datasets: convert layouts to IMDL-BenCo JSON lists.")
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("convert")
def datasets_convert(
    source: Path = typer.Argument(..., metavar="SOURCE", help="Image-folder + mask-folder benchmark (CASIA, Columbia, Coverage, "
                                  "IMD2020 style), a samples directory, or a JSON list to re-check."),
    out: Path = typer.Option(..., "--out", help="The JSON list to write: [[image, mask_or_\"Negative\"], ...]."),
    relative: bool = typer.Option(False, help="Write paths relative to the JSON file's folder (default: absolute)."),
) -> None:
    """Write an IMDL-BenCo JSON list for a benchmark; unmatched files are listed on stderr."""
    from trainer.evaluation.convert import convert_to_json_list

    try:
        res = convert_to_json_list(source, out, relative=relative)
    except ValueError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    for path, msg in res.errors:
        typer.echo(f"skipped {path}: {msg}", err=True)
    n = res.n_fake + res.n_real
    typer.echo(f"{n} image(s) ({res.n_fake} forged, {res.n_real} authentic) -> {out}" if n else "nothing to write")
    raise typer.Exit(0 if n else 1)



# ---------------------------------------------------------------- train, export (issue 6)


@app.command()
def train(
    stage: int = typer.Option(..., "--stage", help="1: heads, token rows, SAM decoder; 2: + LoRA on the LLM; "
                              "3: + adversarial training and augmentation."),
    data: Path = typer.Option(..., "--data", help="Shard directory written by `forgery build-shards`."),
    out: Path = typer.Option(..., "--out", help="Run directory (new or empty; with --resume the run to continue)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file with any option (command line wins)."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="Stage 1: a Qwen2.5-VL folder or cached hub id; "
                                             "tiny or tiny-untied for a random test model. Required unless --init-from."),
    sam: Optional[str] = typer.Option(None, "--sam", help="Stage 1: a segment-anything checkpoint (.pth) for a real run; "
                                      "tiny, or vit_b/vit_l/vit_h (random weights, for shape and memory tests). "
                                      "Required unless --init-from."),
    mask_decoder: Optional[str] = typer.Option(None, "--mask-decoder", help="Stage 1: sam (SAM's prompt encoder and "
                                               "mask decoder) or conv (no SAM).  [default: sam]"),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="The previous stage's checkpoint "
                                             "(RUN/best); required for stages 2 and 3."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest checkpoint-<step> "
                                "(or last/) with its saved options; a larger --max-steps/--epochs extends it, any "
                                "other differing option is refused."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the balanced training data.  [default: 1]"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Optimizer steps (overrides --epochs)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="AdamW learning rate of the LoRA adapters on the LLM "
                                       "(stages 2, 3).  [default: 1e-4]"),
    head_lr: Optional[float] = typer.Option(None, "--head-lr", help="Learning rate of the new parts: cls, mask and "
                                            "expert heads, the forensic token rows, the mask decoder.  [default: 1e-3]"),
    vision_lr: Optional[float] = typer.Option(None, "--vision-lr", help="Learning rate of the Qwen vision tower's and "
                                              "SAM image encoder's trainable parameters, when they train.  "
                                              "[default: --lr]"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per micro-batch.  [default: 1 = no padding]"),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", help="Micro-batches per optimizer step.  [default: 8]"),
    warmup: Optional[float] = typer.Option(None, "--warmup", help="Warmup: fraction of the steps (< 1) or steps.  [default: 0.03]"),
    lora_r: Optional[int] = typer.Option(None, "--lora-r", help="LoRA rank (stages 2, 3).  [default: 16]"),
    lora_alpha: Optional[int] = typer.Option(None, "--lora-alpha", help="LoRA alpha.  [default: 32]"),
    hidden_layer: Optional[str] = typer.Option(None, "--hidden-layer", help="last, a layer index, or indices a,b to average."),
    cls_position: Optional[str] = typer.Option(None, "--cls-position", help="Where <cls> stands: before-verdict (first "
                                               "in the answer) or after-verdict (after the verdict word); training "
                                               "moves it in every answer, inference places it the same way.  "
                                               "[default: the shards', or the --init-from checkpoint's]"),
    mask_position: Optional[str] = typer.Option(None, "--mask-position", help="Where <mask_1..32> stand: "
                                                "before-answer (before any answer text: their states see only image "
                                                "and prompt, in training as at inference) or after-region (after the "
                                                "polygon, the notes' format: under teacher forcing they read the true "
                                                "polygon, which a generated answer lacks).  [default: the shards' "
                                                "when their manifest records it, else before-answer; or the "
                                                "--init-from checkpoint's]"),
    loss_weights: Optional[str] = typer.Option(None, "--loss-weights", help="NAME=W,... for text, cls, mask_bce, "
                                               "mask_dice, mask_boundary, contrastive (and focal_alpha, ...)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Run seed.  [default: 0]"),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="Write RUN/checkpoint-<step> every N steps.  [default: 0: off]"),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Validate every N steps.  [default: 0: at the end only]"),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early stopping: evaluations without improvement.  [default: 0: off]"),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", help="Data loader worker processes.  [default: 0]"),
    templates: Optional[str] = typer.Option(None, "--templates", help="Comma list of json, explain, conclusion, pair.  "
                                            "[default: stage 1: json; 2, 3: all]"),
    adv_share: Optional[float] = typer.Option(None, "--adv-share", help="Share of micro-batches trained adversarially.  "
                                              "[default: stage 3: 0.5, else 0]"),
    adv_eps: Optional[float] = typer.Option(None, "--adv-eps", help="L-inf radius in [0, 1] RGB intensity.  [default: 2/255]"),
    inference_prompt_share: Optional[float] = typer.Option(None, "--inference-prompt-share", help="Share of the json "
                                                           "samples asked with the prompt predict and eval ask, "
                                                           "instead of their own paraphrase, so the states the heads "
                                                           "read at inference are trained.  [default: 0.5]"),
    block_mask: Optional[float] = typer.Option(None, "--block-mask", help="Hide random blocks of the training images, "
                                               "inside and outside the forged region alike: the share of the image "
                                               "area hidden at the end of the ramp, growing linearly from 0; hidden "
                                               "pixels count in no mask loss.  [default: 0: off]"),
    block_mask_size: Optional[float] = typer.Option(None, "--block-mask-size", help="Block side as a fraction of the "
                                                    "image's shorter side.  [default: 0.125]"),
    block_mask_ramp: Optional[float] = typer.Option(None, "--block-mask-ramp", help="Fraction of the run over which "
                                                    "the hidden share grows to --block-mask.  [default: 1: all of it]"),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing",
                                                          help="Recompute the LLM's activations in backward."),
    mixed_precision: Optional[str] = typer.Option(None, "--mixed-precision", help="auto (bf16 on GPU), no, bf16, fp16."),
    expert: Optional[str] = typer.Option(None, "--expert", help="Stage 1: a forensic residual view the mask path and "
                                         "the cls score also read: noise (grey minus its 3x3 median), srm (the three "
                                         "SRM high-pass filters), ela (error levels at JPEG quality 90), classical (the baseline's two maps), "
                                         "forensic (21 maps of classical evidence for a learned combination, a wider "
                                         "head: the best of bench/learning.py), "
                                         "prnu (correlation with the camera fingerprint; needs --fingerprints), or none. "
                                         "Kept from --init-from/--resume checkpoints.  [default: none]"),
    fingerprints: Optional[Path] = typer.Option(None, "--fingerprints", help="With --expert prnu (required there): "
                                                "the folder of camera fingerprints written by forgery fingerprint; the "
                                                "view is the local correlation with the sample's camera fingerprint, "
                                                "zeros for an unknown camera."),
    sam_cache: Optional[bool] = typer.Option(None, "--sam-cache/--no-sam-cache", help="Read SAM image embeddings "
                                             "from `forgery cache-embeddings` files beside the shards, when they were "
                                             "made by this run's SAM, for images augmentation leaves unchanged.  "
                                             "[default: on]"),
    train_vision: Optional[str] = typer.Option(None, "--train-vision", help="Stage 1 (kept by later stages): what of "
                                               "the Qwen vision tower and merger trains: none, lora (LoRA on its "
                                               "blocks' and merger's linear layers, rank --lora-r), or full (every "
                                               "parameter; the checkpoint then holds vision.safetensors).  [default: none]"),
    train_sam_encoder: Optional[str] = typer.Option(None, "--train-sam-encoder", help="Stage 1 (kept by later stages): "
                                                    "none or lora (LoRA rank 8 on SAM's image-encoder blocks; SAM "
                                                    "embeddings are then computed live, never read from a cache).  "
                                                    "[default: none]"),
    language_model: Optional[str] = typer.Option(None, "--language-model", help="qwen, or none: the LLM-free control "
                                                 "(vision tower + SAM + cls head; stage 1 only, no text; predict and "
                                                 "eval answer with a fixed template).  [default: qwen]"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Weights of the frozen backbone and SAM image encoder: "
                                        "auto (bfloat16 for a real checkpoint, float32 for tiny and on GPUs without "
                                        "bf16), bfloat16, float16 or float32; trainable tensors stay float32. Kept "
                                        "from --init-from/--resume checkpoints.  [default: auto]"),
    val_samples: Optional[int] = typer.Option(None, "--val-samples", help="Validation samples per evaluation.  [default: 64]"),
    val_max_new_tokens: Optional[int] = typer.Option(None, "--val-max-new-tokens", help="Longest answer validation "
                                                     "generates (--val-mode generate).  [default: 128]"),
    val_mode: Optional[str] = typer.Option(None, "--val-mode", help="generate (answers generated, then scored) or "
                                           "teacher (the reference answer scored; no generation, fast).  [default: generate]"),
    allow_download: bool = typer.Option(False, "--allow-download", help="Let Hugging Face models (backbone, "
                                        "tokenizer, processor) download when not cached; by default nothing is "
                                        "downloaded and a missing model exits 2 naming the command that fetches it."),
) -> None:
    """Train one stage of the forensics model on the shards (docs/reference/training.md)."""
    _downloads(allow_download)
    from trainer.training.config import ConfigError, load_config, parse_loss_weights

    try:
        overrides = dict(
            stage=stage, data=str(data) if data else None, out=str(out), base_model=base_model, sam=sam,
            mask_decoder=mask_decoder,
            init_from=str(init_from) if init_from else None, resume=resume or None, epochs=epochs,
            max_steps=max_steps, lr=lr, head_lr=head_lr, vision_lr=vision_lr, batch_size=batch_size, grad_accum=grad_accum, warmup=warmup,
            lora_r=lora_r, lora_alpha=lora_alpha, hidden_layer=hidden_layer, cls_position=cls_position, mask_position=mask_position, seed=seed, save_every=save_every,
            eval_every=eval_every, patience=patience, num_workers=num_workers, templates=templates,
            adv_share=adv_share, adv_eps=adv_eps, inference_prompt_share=inference_prompt_share,
            gradient_checkpointing=gradient_checkpointing,
            block_mask=block_mask, block_mask_size=block_mask_size, block_mask_ramp=block_mask_ramp,
            mixed_precision=mixed_precision, expert=expert, fingerprints=str(fingerprints) if fingerprints else None,
            sam_cache=sam_cache, train_vision=train_vision, train_sam_encoder=train_sam_encoder,
            language_model=language_model, dtype=dtype, val_samples=val_samples,
            val_max_new_tokens=val_max_new_tokens, val_mode=val_mode,
            loss=parse_loss_weights(loss_weights) if loss_weights else None,
        )
        cfg = load_config(config, overrides)
        if not resume:
            cfg.validate()
    except ConfigError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None

    from trainer.training.loop import run_training

    try:
        result = run_training(cfg, log=lambda s: typer.echo(s, err=True))
    except ConfigError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    if result.steps == 0:
        typer.echo("Error: no optimizer step was made", err=True)
        raise typer.Exit(1)
    best = "n/a" if result.best_score is None else f"{result.best_score:.4f} at step {result.best_step}"
    typer.echo(f"{result.steps} step(s), {result.skipped_steps} skipped; best (image AUC + pixel F1) {best}"
               f"{'; stopped early' if result.stopped_early else ''}; run in {result.run_dir}")


@app.command("cache-embeddings")
def cache_embeddings_cmd(
    shards: list[Path] = typer.Argument(..., metavar="SHARDS", help="A shard directory (build-shards) or .tar shards."),
    sam: str = typer.Option(..., "--sam", help="The SAM training will use: a segment-anything checkpoint, or "
                            "tiny/vit_b/vit_l/vit_h (random weights, for tests)."),
    splits: str = typer.Option("train", "--splits", help="Comma list of the splits of a shard directory to cache."),
    batch_size: int = typer.Option(4, "--batch-size", help="Images per encoder call."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when there is one), cpu, cuda, cuda:N."),
) -> None:
    """Write SAM image embeddings once, one float16 file beside each shard (docs/reference/training.md)."""
    import itertools

    from tqdm import tqdm

    from trainer.training.sam_cache import cache_embeddings, shard_paths

    wanted = tuple(x.strip() for x in splits.split(",") if x.strip())
    bad = [x for x in wanted if x not in ("train", "val", "test")]
    if bad or not wanted or batch_size < 1:
        why = f"--splits: unknown split(s) {', '.join(bad)} (train, val, test)" if bad else (
            "--splits: name at least one split" if not wanted else f"--batch-size: must be >= 1, got {batch_size}")
        typer.echo(f"Error: {why}", err=True)
        raise typer.Exit(2)
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.empty(0, device=device)
        urls = shard_paths(shards, wanted)
        jobs = cache_embeddings(urls, sam, batch_size=batch_size, device=device)
        first = next(jobs, None)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    done = {"written": 0, "present": 0, "failed": 0}
    samples = 0
    with tqdm(total=len(urls), unit="shard", desc="cache-embeddings", disable=None) as bar:
        for r in itertools.chain([first] if first is not None else [], jobs):
            done[r.status] += 1
            samples += r.samples if r.status == "written" else 0
            for problem in r.problems:
                typer.echo(f"Error: {problem}", err=True)
            bar.update(1)
    typer.echo(f"{done['written']} shard cache(s) written ({samples} embeddings), {done['present']} already present, "
               f"{done['failed']} failed, of {len(urls)} shard(s)")
    if not urls or done["written"] + done["present"] == 0:
        raise typer.Exit(1)


@app.command()
def ablate(
    grid: Path = typer.Argument(..., metavar="GRID", help="The grid YAML: base options, axes (any `forgery train` "
                                "option, `stages` chains), seeds, eval settings (docs/reference/ablation.md)."),
    data: Path = typer.Option(..., "--data", help="Shard directory every cell trains and is evaluated on."),
    out: Path = typer.Option(..., "--out", help="Output folder: cells/<cell>/seed-<s>/, table.csv, table.md, report.html. "
                             "Re-running continues it."),
    jobs: int = typer.Option(1, "--jobs", help="Tasks at once, each in its own process; GPUs dealt round robin."),
    part: Optional[str] = typer.Option(None, "--part", help="i/N: only the i-th of N shares of the cells (cells "
                                       "sharing a stage-1 run stay together); the table waits for a run with all cells."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples of the intervals."),
    allow_download: bool = typer.Option(False, "--allow-download", help="Let Hugging Face models (backbone, "
                                        "tokenizer, processor) download when not cached; by default nothing is "
                                        "downloaded and a missing model exits 2 naming the command that fetches it."),
) -> None:
    """Train and evaluate every cell of a grid of training options; a table of mean ± std over seeds."""
    _downloads(allow_download)
    from forgery_synth.synthesis.options import parse_part
    from trainer.ablation.grid import GridError, load_grid
    from trainer.ablation.run import execute, plan

    try:
        if jobs < 1 or resamples < 1:
            raise GridError("--jobs and --resamples must be >= 1")
        share = parse_part(part) if part else None
        spec = load_grid(grid, data, out)
        tasks = plan(spec, data, out, share)
    except (GridError, ValueError) as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    todo = sum(not t.done for t in tasks)
    typer.echo(f"{len(spec.cells)} cell(s) x {len(spec.seeds)} seed(s), {len(spec.runs)} training run(s); "
               f"{todo} of {len(tasks)} task(s) to do{f' in part {part}' if part else ''}", err=True)
    outcome = execute(tasks, out, jobs=jobs, log=lambda s: typer.echo(s, err=True))
    for name, why in outcome.failed.items():
        typer.echo(f"failed: {name}: {why}", err=True)
    complete = all(t.done for t in plan(spec, data, out, None, write=False))
    if complete:
        from trainer.ablation.table import write_table

        paths = write_table(spec, out, resamples)
        typer.echo(paths["md"].read_text())
        typer.echo(f"table: {paths['csv']}, {paths['md']}; report: {paths['html']}")
    else:
        typer.echo("the table waits for every cell (run again without --part once all parts are done)", err=True)
    if outcome.failed:
        raise typer.Exit(1)


@app.command("export")
def export_cmd(
    checkpoint: Path = typer.Argument(..., metavar="CHECKPOINT", help="A checkpoint directory, e.g. RUN/best."),
    out: Path = typer.Option(..., "--out", help="Directory to write (new or empty); written under a temporary "
                             "name and renamed at the end."),
    allow_download: bool = typer.Option(False, "--allow-download", help="Let Hugging Face models (backbone, "
                                        "tokenizer, processor) download when not cached; by default nothing is "
                                        "downloaded and a missing model exits 2 naming the command that fetches it."),
) -> None:
    """Merge LoRA and the token rows into the backbone; write it with the heads and tokenizer, in the run's dtype."""
    _downloads(allow_download)
    from trainer.training.export import export_checkpoint

    try:
        dst = export_checkpoint(checkpoint, out)
    except (FileNotFoundError, FileExistsError) as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"exported {checkpoint} to {dst} (backbone/ loads with transformers)")


# ---------------------------------------------------------------- demo (issue 8)


@app.command()
def demo(
    out: Path = typer.Option(Path("out/demo"), "--out", help="Folder for every step's output (re-runs reuse the samples)."),
    quick: bool = typer.Option(False, help="A reduced run (fewer photos, smaller frames, a few steps) for CI."),
) -> None:
    """The whole pipeline on scikit-image's bundled photos with tiny random models: no download, no GPU."""
    import shutil

    from trainer.demo import run_demo

    for stale in ("runs", "eval", "ablation"):  # training refuses a non-empty run folder; the rest is reused
        shutil.rmtree(out / stale, ignore_errors=True)
    result = run_demo(out, quick=quick, log=typer.echo)
    im, px = result.metrics["image"], result.metrics["pixel"]

    def f(v: object) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    ci = result.metrics.get("ci95", {})

    def band(name: str) -> str:
        return f" (95% CI {ci[name][0]:.2f}-{ci[name][1]:.2f})" if ci.get(name) else ""

    typer.echo(f"\n{result.samples} samples -> shards {result.shards} -> 3 stages -> {result.checkpoint}")
    if im.get("collapse"):
        typer.echo(f"WARNING: {im['collapse']}")
    if result.val_collapse:
        typer.echo(f"WARNING: {result.val_collapse}")
    typer.echo(f"test split, {im['n_fake']} forged + {im['n_real']} authentic images: balanced accuracy "
               f"{f(im['balanced_accuracy'])}{band('image_balanced_accuracy')}, AUC {f(im['auc'])}{band('image_auc')}; "
               f"pixel F1 {f(px['f1'])}{band('pixel_f1')}, IoU {f(px['iou'])} (tiny random models: the numbers "
               f"prove the plumbing, not the method; with so few images the intervals are wide)")
    for name, bm in result.baselines.items():
        bim, bpx = bm["image"], bm["pixel"]
        typer.echo(f"classical {name} on the same images (thresholds fitted on the train split): balanced accuracy "
                   f"{f(bim['balanced_accuracy'])}, AUC {f(bim['auc'])}; pixel F1 {f(bpx['f1'])}, IoU {f(bpx['iou'])}")
    typer.echo(f"total {sum(result.seconds.values()):.0f} s")
    typer.echo(f"report: {result.report}")
    typer.echo(f"contact sheet: {result.sheet}")
    if result.ablation is not None:
        typer.echo(f"ablation table: {result.ablation}")


if __name__ == "__main__":
    app()
