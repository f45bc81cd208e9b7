"""Readers of evaluation sources and `forgery datasets convert` (trainer/evaluation/readers.py, convert.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainer.evaluation.convert import convert_to_json_list
from trainer.evaluation.predictions import PredictionStore
from trainer.evaluation.readers import open_source, scan_folder_layout, source_kind
from trainer.evaluation.samples import SourceOptions, load_mask


def _by_id(path: Path, **kw: object) -> dict:
    return {s.id: s for s in open_source(path, SourceOptions(**kw))}  # type: ignore[arg-type]


def test_casia_layout_reads_and_converts(tmp_path: Path, casia_layout) -> None:
    truth = casia_layout(tmp_path / "casia")
    assert source_kind(tmp_path / "casia") == "folder"
    got = _by_id(tmp_path / "casia")
    assert set(got) == set(truth)
    for k, s in got.items():
        assert s.error is None and s.image is not None and s.image.dtype == np.uint8
        assert s.label == (1 if k.startswith("Tp") else 0)
        assert np.array_equal(s.mask, truth[k])
        assert s.dataset == "casia"
    res = convert_to_json_list(tmp_path / "casia", tmp_path / "casia.json")
    assert (res.n_fake, res.n_real, res.errors) == (3, 2, [])
    rows = json.loads((tmp_path / "casia.json").read_text())
    assert sum(r[1] == "Negative" for r in rows) == 2 and all(Path(r[0]).is_absolute() for r in rows)
    back = _by_id(tmp_path / "casia.json")
    assert {k: (s.label, int(s.mask.sum())) for k, s in back.items()} == \
        {k: (s.label, int(s.mask.sum())) for k, s in got.items()}
    rel = convert_to_json_list(tmp_path / "casia", tmp_path / "sub" / "rel.json", relative=True)
    assert rel.n_fake == 3
    rel_rows = json.loads((tmp_path / "sub" / "rel.json").read_text())
    assert all(not Path(r[0]).is_absolute() for r in rel_rows)
    assert len(_by_id(tmp_path / "sub" / "rel.json")) == 5


def test_coverage_and_imd2020_layouts(tmp_path: Path, make_pair, save_png) -> None:
    cov = tmp_path / "coverage"
    img, m = make_pair(1)
    save_png(cov / "image" / "1t.tif", img)
    save_png(cov / "mask" / "1forged.tif", m)
    imd = tmp_path / "imd"
    img2, m2 = make_pair(2)
    save_png(imd / "camA" / "c1_0.jpg", img2)
    save_png(imd / "camA" / "c1_0_mask.png", m2)
    save_png(imd / "camA" / "c1_orig.jpg", make_pair(3)[0])
    lay = scan_folder_layout(cov)
    assert [(p.name, q.name) for p, q in lay.pairs] == [("1t.tif", "1forged.tif")] and not lay.errors
    lay2 = scan_folder_layout(imd)
    assert [p.name for p, _ in lay2.pairs] == ["c1_0.jpg"] and [p.name for p in lay2.authentic] == ["c1_orig.jpg"]


def test_bad_files_are_reported_and_run_goes_on(tmp_path: Path, casia_layout, make_pair, save_png) -> None:
    root = tmp_path / "bench"
    casia_layout(root, n_fake=2, n_real=1)
    (root / "Tp" / "Tp_S_000.png").write_bytes(b"not an image")
    save_png(root / "Tp" / "orphan.png", make_pair(9)[0])
    save_png(root / "Gt" / "Tp_S_001_gt.png", np.zeros((5, 5), bool))  # wrong size
    got = _by_id(root)
    assert "cannot read image" in (got["Tp_S_000"].error or "")
    assert "no mask matched" in (got["orphan"].error or "")
    assert "mask of" in (got["Tp_S_001"].error or "")
    assert got["Au_000"].error is None


def test_samples_dir_and_shards(tmp_path: Path, make_shards, samples_dir) -> None:
    t1 = samples_dir(tmp_path / "samples")
    got = _by_id(tmp_path / "samples")
    assert {k: s.label for k, s in got.items()} == {"s00": 1, "s01": 1, "s02": 0, "s03": 0}
    assert got["s00"].method == "copy-move" and np.array_equal(got["s00"].mask, t1["s00"])
    t2 = make_shards(tmp_path / "shards", "test")
    make_shards(tmp_path / "shards", "train", n_fake=1, n_real=0)
    assert source_kind(tmp_path / "shards", "test") == "shards"
    got2 = _by_id(tmp_path / "shards", split="test")
    assert set(got2) == set(t2) and got2["k0000"].method == "splice" and got2["k0002"].label == 0
    assert np.array_equal(got2["k0001"].mask, t2["k0001"])
    assert len(list(open_source(tmp_path / "shards", SourceOptions(split=None)))) == 4
    with pytest.raises(ValueError):
        source_kind(tmp_path / "shards", "val")
    res = convert_to_json_list(tmp_path / "samples", tmp_path / "s.json")
    assert (res.n_fake, res.n_real) == (2, 2)
    with pytest.raises(ValueError):
        convert_to_json_list(tmp_path / "shards", tmp_path / "x.json")


def test_json_list_errors(tmp_path: Path, make_pair, save_png) -> None:
    img, m = make_pair(4)
    save_png(tmp_path / "a.png", img)
    save_png(tmp_path / "a_gt.png", m)
    (tmp_path / "list.json").write_text(json.dumps([["a.png", "a_gt.png"], ["missing.png", "Negative"], "bad"]))
    got = list(open_source(tmp_path / "list.json"))
    assert got[0].error is None and got[0].label == 1
    assert got[1].error and got[2].error


def test_mask_binarisation_rule(tmp_path: Path, save_png) -> None:
    a = np.array([[127, 128, 255, 0]], np.uint8)
    save_png(tmp_path / "m.png", a)
    assert load_mask(tmp_path / "m.png").tolist() == [[False, True, True, False]]
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 0] = [255, 0, 0]  # mean 85: not forged
    rgb[0, 1] = [255, 255, 0]  # mean 170: forged
    save_png(tmp_path / "c.png", rgb)
    assert load_mask(tmp_path / "c.png").tolist() == [[False, True]]


def test_prediction_store_layouts(tmp_path: Path, save_png) -> None:
    d = tmp_path / "pred"
    save_png(d / "a.png", np.zeros((2, 2), np.uint8))
    save_png(d / "b_mask.png", np.zeros((2, 2), np.uint8))
    (d / "scores.csv").write_text("image,score\nsub/a.jpg,0.7\nc.png,0.2\n")
    st = PredictionStore(d)
    assert st.get("a").score == 0.7 and st.get("a").mask_path is not None
    assert st.get("b").mask_path.name == "b_mask.png" and st.get("b").score is None
    assert st.get("c").mask_path is None and st.get("zzz") is None
    assert st.get("x", "/data/Tp/A.png") is st.get("a") and st.get("A") is st.get("a")
    jl = tmp_path / "p.jsonl"
    jl.write_text(json.dumps({"image": "x/a.png", "score": 0.3, "mask": "pred/a.png"}) + "\n"
                  + json.dumps({"image": "b.jpg", "score": None}) + "\n")
    st2 = PredictionStore(jl)
    assert st2.get("a").mask_path == tmp_path / "pred" / "a.png" and st2.get("b").score is None
    (tmp_path / "bad.jsonl").write_text("{nope\n")
    with pytest.raises(ValueError):
        PredictionStore(tmp_path / "bad.jsonl")
