"""`--region object --sam-checkpoint PATH`: regions from a tiny in-process SAM loaded through the real path."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cli import app
from forgery_synth.models.sam import SamSpec, _build_sam, spec_from_state_dict
from forgery_synth.synthesis import sam_regions
from forgery_synth.synthesis.regions import rasterize

runner = CliRunner()
TINY_SAM = SamSpec(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,),
                   prompt_dim=32, decoder_mlp_dim=64)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SAM's state dict, saved like a released checkpoint (a plain dict of tensors)."""
    # A random SAM's masks are arbitrary; this seed's automatic generator yields one mask of about
    # a quarter of the test photo, inside the --area range the end-to-end test asks for.
    sam = _build_sam(spec=TINY_SAM, seed=1)
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(sam.state_dict(), path)
    return path


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    from skimage import data

    path = tmp_path / "photos" / "astronaut.png"
    path.parent.mkdir()
    Image.fromarray(cv2.resize(data.astronaut(), (120, 96), interpolation=cv2.INTER_AREA)).save(path)
    return path


def test_spec_is_read_from_the_checkpoint(checkpoint: Path) -> None:
    assert spec_from_state_dict(torch.load(checkpoint, weights_only=True)) == TINY_SAM
    assert TINY_SAM.name == "custom"


def test_released_shapes_map_to_registry_variants() -> None:
    def fake(embed: int, depth: int, heads: int, globals_: tuple[int, ...]) -> dict:
        sd = {"image_encoder.patch_embed.proj.weight": torch.empty(embed, 3, 16, 16),
              "image_encoder.pos_embed": torch.empty(1, 64, 64, embed),
              "mask_decoder.iou_token.weight": torch.empty(1, 256),
              "mask_decoder.transformer.layers.0.mlp.lin1.weight": torch.empty(2048, 256)}
        for i in range(depth):
            sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"] = torch.empty(127 if i in globals_ else 27, embed // heads)
        return sd

    assert spec_from_state_dict(fake(768, 12, 12, (2, 5, 8, 11))).name == "vit_b"
    assert spec_from_state_dict(fake(1024, 24, 16, (5, 11, 17, 23))).name == "vit_l"
    spec = spec_from_state_dict(fake(1280, 32, 16, (7, 15, 23, 31)))
    assert spec.name == "vit_h" and spec.encoder_global_attn_indexes == (7, 15, 23, 31) and spec.encoder_num_heads == 16


def test_sam_region_end_to_end(checkpoint: Path, photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sam_regions, "POINTS_PER_SIDE", 4)  # 16 prompts: the tiny model on a shared CPU
    out = tmp_path / "out"
    res = runner.invoke(app, [
        "synth", str(photo.parent), "--out", str(out), "--method", "inpaint", "--inpaint-model", "tiny",
        "--inpaint-steps", "2", "--device", "cpu", "--region", "object", "--sam-checkpoint", str(checkpoint),
        "--area", "0.05-0.5",
    ])
    assert res.exit_code == 0, res.output
    (line,) = (out / "index.jsonl").read_text().splitlines()
    log = json.loads((out / json.loads(line)["log"]).read_text())
    region = log["ops"][0]["region"]
    assert region["kind"] == "object" and region["method"] == "sam" and len(region["sam_scores"]) == 2
    source = np.asarray(Image.open(photo).convert("RGB"))
    footprint = rasterize(region, source.shape[:2])
    assert 0.05 <= footprint.mean() <= 0.5
    image = np.asarray(Image.open(out / json.loads(line)["image"]).convert("RGB"))
    assert np.array_equal(image[~footprint], source[~footprint])


@pytest.mark.parametrize("content", [None, b"not a checkpoint", "pickle"])
def test_unloadable_sam_checkpoint_stops_before_writing(photo: Path, tmp_path: Path, content: bytes | str | None) -> None:
    path = tmp_path / "sam.pth"
    if content == "pickle":
        torch.save({"model": Path("/x")}, path)  # an arbitrary object: weights_only=True refuses it
    elif content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    res = runner.invoke(app, ["synth", str(photo.parent), "--out", str(out), "--method", "inpaint", "--inpaint-model",
                              "tiny", "--device", "cpu", "--region", "object", "--sam-checkpoint", str(path)])
    assert res.exit_code == 1, res.output
    assert "--sam-checkpoint" in res.output and not out.exists()


def test_sam_checkpoint_is_an_inpaint_option(checkpoint: Path, photo: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["synth", str(photo.parent), "--out", str(tmp_path / "o"), "--method", "copy-move",
                              "--sam-checkpoint", str(checkpoint)])
    assert res.exit_code == 2 and "--inpaint-model" in res.output
    res = runner.invoke(app, ["synth", str(photo.parent), "--out", str(tmp_path / "o"), "--method", "copy-move",
                              "--inpaint-model", "tiny", "--sam-checkpoint", str(checkpoint)])
    assert res.exit_code == 2 and "--sam-checkpoint" in res.output
