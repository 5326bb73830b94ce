"""How far the default run's BD-rates move with its scene count.

The default run codes 20 synthetic scenes so that it finishes in under 5 minutes on 2 cores.
This prints, for every codec, its BD-rate against each anchor on the 20-scene reference
(anchors/ci/points.csv) beside the same on 50 scenes (anchors/ci/points-50.csv, made by
`make ci-reference`), and the difference in percentage points: what a user gives up by trusting
the quick default instead of the longer run.

    python benchmarks/default_scenes.py [--short anchors/ci/points.csv] [--long anchors/ci/points-50.csv]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from vcmbench.analysis import bd_rows
from vcmbench.tables import read_points

REPO = Path(__file__).resolve().parents[1]


def bd_table(points: pd.DataFrame, anchor: str) -> dict[str, float]:
    return {row.codec: row.bd_rate for row in bd_rows(points, anchor)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", type=Path, default=REPO / "anchors" / "ci" / "points.csv")
    ap.add_argument("--long", type=Path, default=REPO / "anchors" / "ci" / "points-50.csv")
    ap.add_argument("--anchors", nargs="*", default=["anchor_vvc", "image_vvc"])
    args = ap.parse_args()
    short, long = read_points(args.short), read_points(args.long)
    n_short, n_long = int(short.n_images.max()), int(long.n_images.max())
    for anchor in args.anchors:
        a, b = bd_table(short, anchor), bd_table(long, anchor)
        rows = []
        for codec in sorted(set(a) | set(b)):
            x, y = a.get(codec, math.nan), b.get(codec, math.nan)
            if math.isnan(x) and math.isnan(y):
                continue  # a fixed-rate codec (raw, lossless): no curve, no BD-rate
            rows.append(
                {
                    "codec": codec,
                    f"BD-rate {n_short} scenes %": x,
                    f"BD-rate {n_long} scenes %": y,
                    "moved (points)": x - y,
                }
            )
        df = pd.DataFrame(rows)
        moved = df["moved (points)"].abs()
        print(f"\nBD-rate vs {anchor} (pchip, mAP), {n_short} vs {n_long} scenes")
        print(df.to_string(index=False, float_format=lambda v: f"{v:+.2f}"))
        print(f"largest move {moved.max():.2f} points, median {moved.median():.2f}")


if __name__ == "__main__":
    main()
