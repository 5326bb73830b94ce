"""Bootstrap intervals of BD-rate on a run: how wide, how fast, and exact on the full set.

    python benchmarks/bootstrap_intervals.py results/ci-reference-50              # 20 and 50 images
    python benchmarks/bootstrap_intervals.py RUN --images 20 50 --resamples 1000 --anchor anchor_vvc

For each N in --images, the run's first N images (in image-id order: the default run's 20 scenes
are the first 20 of the 50-scene run) are matched once (`metrics.item_matches`, timed as
"match s") and every codec with a curve is bootstrapped against the anchor on one set of
resamples (timed as "bootstrap s": the figure the "on by default" target is about). Printed:

* per N: the seconds, and the check that the full set, aggregated from the per-item matches,
  gives each point's mAP exactly as the evaluator does on the same records;
* per codec and N: BD-rate on the full set, the resamples' median, the 95% interval, its width
  and P(BD < 0);
* how the width scales from the smallest to the largest N (1/sqrt(N) would be the textbook rate).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run folder of an image set (points.csv, records.jsonl, config)")
    ap.add_argument("--images", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--anchor", default="anchor_vvc")
    ap.add_argument("--codecs", nargs="*", default=None, help="codecs to show (default: every codec with a curve)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from vcmbench.bootstrap import RunItems, bootstrap_bd, item_points
    from vcmbench.metrics.detection import evaluate
    from vcmbench.records import coco_results, read_records
    from vcmbench.tables import text_table

    cfg = OmegaConf.load(args.run / "config.resolved.yaml")
    dataset = instantiate(cfg.dataset)
    records = read_records(args.run / "records.jsonl")
    all_ids = sorted(dataset.image_ids)
    timing, rows = [], []
    for n in args.images:
        if n > len(all_ids):
            print(f"skipping N={n}: the run has {len(all_ids)} images", file=sys.stderr)
            continue
        ids = all_ids[:n]
        t0 = time.perf_counter()
        points = item_points(records, dataset.metric, dataset.annotation_file, ids)
        t1 = time.perf_counter()
        exact = all(
            float(p.values(None)[1][0])
            == evaluate(
                dataset.metric,
                dataset.annotation_file,
                coco_results(
                    [r for r in records if r.codec == p.codec and r.rate == p.rate and r.image_id in set(ids)]
                ),
                image_ids=ids,
            )["map"]
            for pts in points.values()
            for p in pts
        )
        items = RunItems(dataset.name, "", ids, points)
        codecs = args.codecs or [c for c, pts in points.items() if len(pts) >= 4 and c != args.anchor]
        t2 = time.perf_counter()
        found = bootstrap_bd(items, args.anchor, codecs, n_resamples=args.resamples, seed=args.seed)
        t3 = time.perf_counter()
        n_points = sum(len(points[c]) for c in {*codecs, args.anchor} if c in points)
        timing.append(
            {
                "images": n,
                "points": n_points,
                "pairs": len(found),
                "resamples": args.resamples,
                "match s": f"{t1 - t0:.1f}",
                "bootstrap s": f"{t3 - t2:.1f}",
                "full set == evaluator": "yes, every point" if exact else "NO",
            }
        )
        for iv in found:
            rows.append(
                {
                    "codec": iv.codec,
                    "images": n,
                    "BD-rate %": f"{iv.estimate:+.2f}",
                    "median %": f"{iv.median:+.2f}",
                    "95% interval %": f"{iv.lo:+.2f} … {iv.hi:+.2f}",
                    "width": iv.hi - iv.lo,
                    "P(BD<0)": f"{iv.p_below_0:.3f}",
                    "valid": f"{iv.n_valid}/{iv.n_resamples}",
                }
            )
    print(f"{args.run}: paired bootstrap vs {args.anchor}, seed {args.seed}")
    print(text_table(pd.DataFrame(timing), "rrrrrrl"))
    table = pd.DataFrame(rows).sort_values(["codec", "images"], kind="stable")
    shown = table.assign(width=table.width.map(lambda w: f"{w:.2f}"))
    print()
    print(text_table(shown, "lrrrrrrr"))
    if len(args.images) > 1:
        lo_n, hi_n = min(args.images), max(args.images)
        print()
        for codec, sub in table.groupby("codec", sort=False):
            w = dict(zip(sub.images, sub.width))
            if lo_n in w and hi_n in w and w[hi_n] > 0:
                print(
                    f"{codec}: width x{w[lo_n] / w[hi_n]:.2f} from {hi_n} to {lo_n} images "
                    f"(1/sqrt(N) predicts x{math.sqrt(hi_n / lo_n):.2f})"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
