"""Throughput of local shards: images x rate points per second for 1 and 2 shards (and more with
--shards), each shard its own `vcmbench run` process (`vcmbench sweep --launcher local`), on the
reduced default set; then checks that each merged points table equals the 1-shard one in every
column but the times.

    python benchmarks/shard_throughput.py                 # 8 scenes, 4 codecs, 1 and 2 shards
    python benchmarks/shard_throughput.py --shards 1 2 4 --count 20

Wall time is the whole command (Python start, model loading, coding, merge), as a user meets it.
A last row runs one shard with a worker process per core (`workers=auto`'s choice), for comparison.
Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--count", type=int, default=8, help="synthetic scenes (default 8)")
    ap.add_argument("--codecs", default="raw,anchor_vvc,learned_interleaved,image_vvc")
    args = ap.parse_args()
    overrides = [f"dataset.count={args.count}", f"codec=[{args.codecs}]", "sweep.progress=false", "complexity=false"]
    rows, tables = [], {}
    # each shard count with one worker per shard; then, for comparison, one run with a worker per core
    setups = [(n, 1) for n in args.shards] + [(1, os.cpu_count() or 1)]
    with tempfile.TemporaryDirectory() as tmp:
        for n, workers in setups:
            out = Path(tmp) / f"n{n}w{workers}"
            t0 = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "vcmbench",
                    "sweep",
                    "--shards",
                    str(n),
                    "--launcher",
                    "local",
                    "--out",
                    str(out),
                    *overrides,
                    f"sweep.workers={workers}",
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
                return 1
            points = pd.read_csv(out / "merged" / "points.csv", dtype={"rate": str}, float_precision="round_trip")
            work = int((points.n_images).sum())
            tables[(n, workers)] = points[
                [c for c in points.columns if not c.endswith("_s") and c not in ("workers", "contended")]
            ]
            rows.append(
                {
                    "shards": n,
                    "workers per shard": workers,
                    "wall_s": wall,
                    "images x rate points": work,
                    "points per s": work / wall,
                }
            )
    df = pd.DataFrame(rows)
    df["speed-up"] = df["points per s"] / df["points per s"].iloc[0]
    print(f"local shards on {args.count} synthetic scenes, codecs {args.codecs}")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    first = setups[0]
    for (n, workers), table in tables.items():
        same = (
            table.sort_values(["codec", "rate"])
            .reset_index(drop=True)
            .equals(tables[first].sort_values(["codec", "rate"]).reset_index(drop=True))
        )
        print(
            f"merged points of {n} shard(s) x {workers} worker(s) == {first[0]} shard(s) x {first[1]}, every "
            f"column but the times: {same}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
