"""Label shortcuts in the shards, measured: `forgery audit` over the bundled-photo corpus.

Corpus: the 22 photos bundled with scikit-image, scikit-learn and matplotlib (10 greyscale;
`forgery_synth.synthesis.sample_photos.AUDIT_PHOTOS`). For each of the post chains none and
``jpeg:70-95``: `synth --method mixed --count N` and `synth --method authentic --count N` (the same
chain for both labels); then, for each codec (png, jpeg), `build-shards` over both sample folders and
`audit` of the result. Prints the grouped AUC of every trivial feature set, the template rates, the
colour share among grey-source samples, the one-label sentences and the classical detectors' pixel
AUC per method, and writes each audit (json + html) under --out.

    .venv/bin/python bench/audit.py --out out/bench-audit          # ~10 min on 2 cores
    .venv/bin/python bench/audit.py --count 4 --codecs png         # quicker
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from forgery_synth.dataset.audit import audit  # noqa: E402
from forgery_synth.dataset.shard_options import ShardOptions  # noqa: E402
from forgery_synth.dataset.shards import build_shards  # noqa: E402
from forgery_synth.synthesis.engine import synthesize  # noqa: E402
from forgery_synth.synthesis.options import SynthOptions  # noqa: E402
from forgery_synth.synthesis.sample_photos import audit_photo_paths  # noqa: E402

POSTS = {"none": "", "jpeg": "jpeg:70-95"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/bench-audit"))
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--codecs", default="png,jpeg")
    ap.add_argument("--posts", default="none,jpeg")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    photos = out / "photos"
    photos.mkdir(parents=True)
    for p in audit_photo_paths():
        shutil.copyfile(p, photos / p.name)
    results = {}
    for post_name in args.posts.split(","):
        t0 = time.perf_counter()
        dirs = []
        for method in ("mixed", "authentic"):
            d = out / f"samples-{post_name}-{method}"
            synthesize([photos], d, SynthOptions(method=method, count=args.count, seed=args.seed, post=POSTS[post_name]),
                       workers=args.workers)
            dirs.append(str(d))
        t_synth = time.perf_counter() - t0
        for codec in args.codecs.split(","):
            name = f"post-{post_name}_codec-{codec}"
            shards = out / f"shards-{name}"
            build_shards(ShardOptions(samples=dirs, out=str(shards), codec=codec, seed=args.seed))
            t1 = time.perf_counter()
            report = audit(shards, out / f"audit-{name}", seed=args.seed)
            results[name] = report.summary
            print(f"\n== {name}: {report.summary['n']} from {report.summary['groups']} photos "
                  f"(synth {t_synth:.0f} s, audit {time.perf_counter() - t1:.0f} s)")
            _print(report.summary)
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"\nresults in {out / 'results.json'}")


def _print(s: dict) -> None:
    print("  feature set        grouped AUC")
    for k, v in s["feature_auc"].items():
        flag = "  <-- above threshold" if v is not None and v > s["threshold"] else ""
        print(f"  {k:<18} {'n/a' if v is None else f'{v:.3f}'}{flag}")
    rates = s["template_rates"]
    for t in sorted({t for r in rates.values() for t in r}):
        print(f"  template {t:<10} real {rates['real'].get(t, 0):.3f}  fake {rates['fake'].get(t, 0):.3f}")
    g = s["grey_sources"]
    print(f"  grey sources: {g['groups']} photos; colour share real {g['real']['colour_share']} "
          f"(n={g['real']['n']}), fake {g['fake']['colour_share']} (n={g['fake']['n']})")
    print(f"  sentences said for one label only: {len(s['sentences_one_label'])}")
    for d in s["sentences_one_label"][:5]:
        print(f"    {d['label']} x{d['count']}: {d['sentence'][:100]}")
    for m, per in s["detectors"].items():
        print(f"  detector pixel AUC {m:<10} " + "  ".join(f"{k} {v['pixel_auc']:.3f} (n={v['n']})" for k, v in per.items()))
    print(f"  failures: {len(s['failures'])}")


if __name__ == "__main__":
    main()
