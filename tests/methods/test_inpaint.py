"""`forgery synth --method inpaint` with the tiny in-process pipeline (no network, CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli import app
from forgery_synth.methods import MIXED_WEIGHTS
from forgery_synth.methods.base import MethodOptions
from forgery_synth.methods.inpaint import apply, crop_window, get_params, window
from forgery_synth.methods.inpaint_config import InpaintConfig
from forgery_synth.methods.inpaint_prompts import draw_prompt, read_prompts
from forgery_synth.synthesis.blend import edge_band
from forgery_synth.synthesis.options import SynthOptions
from forgery_synth.synthesis.regions import rasterize
from forgery_synth.synthesis.render import replay

runner = CliRunner()
TINY_ARGS = ["--method", "inpaint", "--inpaint-model", "tiny", "--inpaint-steps", "2", "--device", "cpu"]


def _photos(folder: Path) -> list[Path]:
    """Two small real photos (scikit-image's astronaut and cat), PNG."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, img, size in (("astronaut", data.astronaut(), (120, 96)), ("cat", data.chelsea(), (112, 80))):
        path = folder / f"{name}.png"
        Image.fromarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    _photos(folder)
    return folder


@pytest.fixture(scope="module")
def batched_run(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two photos x 2 samples, 2 samples per pipeline call."""
    out = tmp_path_factory.mktemp("run") / "out"
    res = runner.invoke(app, ["synth", str(photos), "--out", str(out), *TINY_ARGS, "--count", "2", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    return out


def _samples(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_cli_writes_inpaint_samples_with_honest_masks(batched_run: Path) -> None:
    samples = _samples(batched_run)
    assert len(samples) == 4 and {s["method"] for s in samples} == {"inpaint"}
    assert (batched_run / "rejects.jsonl").read_text() == ""
    for s in samples:
        log = json.loads((batched_run / s["log"]).read_text())
        op = log["ops"][0]
        for key in ("model", "pipeline", "scheduler", "prompt", "negative_prompt", "steps", "guidance",
                    "strength", "seed", "device", "dtype", "batch", "size", "crop"):
            assert key in op, key
        assert (op["model"], op["steps"], op["batch"], op["size"], op["device"]) == ("tiny", 2, 2, 64, "cpu")
        source = _rgb(Path(log["source"]["path"]))
        image = _rgb(batched_run / s["image"])
        mask = cv2.imread(str(batched_run / s["mask"]), cv2.IMREAD_GRAYSCALE) > 0
        region = rasterize(op["region"], source.shape[:2])
        changed = (image != source).any(axis=-1)
        assert np.array_equal(image[~region], source[~region]), "a pixel outside the region changed"
        assert np.array_equal(mask, changed), "the mask must be exactly the pixels that changed"
        assert mask.any() and not (mask & ~region).any()
        edge = cv2.imread(str(batched_run / "masks" / f"{s['id']}.edge.png"), cv2.IMREAD_GRAYSCALE) > 0
        assert np.array_equal(edge, edge_band(region, op["radius"]))


def test_same_seed_same_bytes_on_cpu(photos: Path, batched_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    res = runner.invoke(app, ["synth", str(photos), "--out", str(out), *TINY_ARGS, "--count", "2", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    first, second = _samples(batched_run), _samples(out)
    assert [s["id"] for s in first] == [s["id"] for s in second]
    for a, b in zip(first, second):
        for key in ("image", "mask", "log"):
            assert (batched_run / a[key]).read_bytes() == (out / b[key]).read_bytes(), key


def test_replay_of_a_batched_inpaint_log_is_byte_exact(batched_run: Path, tmp_path: Path) -> None:
    for s in _samples(batched_run)[:2]:
        log = json.loads((batched_run / s["log"]).read_text())
        assert log["ops"][0]["batch"] == 2
        sample = replay(log, log["source"]["path"])
        assert sample.image_bytes == (batched_run / s["image"]).read_bytes()
    s = _samples(batched_run)[0]
    log_path = batched_run / s["log"]
    res = runner.invoke(app, ["replay", str(log_path), "--source", json.loads(log_path.read_text())["source"]["path"],
                              "--out", str(tmp_path / "r.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r.png").read_bytes() == (batched_run / s["image"]).read_bytes()


@pytest.mark.parametrize("model", ["/nonexistent/sd-inpainting", "nobody-here/no-such-inpainting-model"])
def test_missing_model_stops_before_writing(photos: Path, tmp_path: Path, model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "out"
    res = runner.invoke(app, ["synth", str(photos), "--out", str(out), "--method", "inpaint", "--inpaint-model", model])
    assert res.exit_code == 1, res.output
    assert not out.exists()
    assert "--inpaint-model" in res.output and model in res.output
    assert "tried" in res.output or "no such folder" in res.output
    assert res.output.count("Error:") == 1


def test_inpaint_without_model_is_an_option_error(photos: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["synth", str(photos), "--out", str(tmp_path / "o"), "--method", "inpaint"])
    assert res.exit_code == 2 and "--inpaint-model" in res.output
    assert not (tmp_path / "o").exists()


def test_window_leaving_the_image_is_reflected_and_outside_stays(tmp_path: Path) -> None:
    image = _rgb(_photos(tmp_path)[1])[:70, :90].copy()
    footprint = np.zeros(image.shape[:2], bool)
    footprint[6:64, 8:80] = True  # 72 px wide: the window (108 px) is larger than the image
    x0, y0, side = crop_window(footprint, 64)
    assert side == 108 and (x0 < 0 or y0 < 0)
    assert window(image, x0, y0, side).shape == (side, side, 3)
    config = InpaintConfig("tiny", device="cpu", steps=1)
    params = get_params(image, np.random.default_rng(3), MethodOptions(region="rect", area=(0.3, 0.45), inpaint=config))
    params.update(region={"kind": "rect", "box": [8, 6, 72, 58]}, crop=[x0, y0, side])
    forgery = apply(image, params)
    region = rasterize(params["region"], image.shape[:2])
    assert np.array_equal(forgery.image[~region], image[~region])
    assert np.array_equal(forgery.mask > 0, (forgery.image != image).any(-1))


def test_mixed_includes_inpaint_only_with_a_model() -> None:
    assert "inpaint" not in MIXED_WEIGHTS
    assert "inpaint" not in SynthOptions(method="mixed").mixed_weights
    with_model = SynthOptions(method="mixed", inpaint=InpaintConfig("tiny"))
    assert with_model.mixed_weights["inpaint"] > 0 and with_model.uses_model
    with pytest.raises(ValueError, match="--inpaint-model"):
        SynthOptions(method="mixed", weights={"inpaint": 1.0}).validate()


def test_prompts_file_and_draws(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("# objects\na green car\n\na yellow kite  # with a comment\n")
    prompts = read_prompts(path)
    assert prompts == ("a green car", "a yellow kite")
    rng = np.random.default_rng(0)
    assert {draw_prompt(rng, "rect", prompts) for _ in range(20)} == set(prompts)
    assert draw_prompt(np.random.default_rng(0), "stroke") == draw_prompt(np.random.default_rng(0), "stroke")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="--prompts"):
        read_prompts(tmp_path / "empty.txt")


def test_no_heavy_import_at_module_level() -> None:
    code = "import sys, cli, forgery_synth.synthesis.engine, forgery_synth.methods.inpaint, forgery_synth.synthesis.sam_regions; " \
           "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'segment_anything') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
