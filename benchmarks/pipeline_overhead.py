"""Overhead of the sweep runner over the bare pipeline, and its memory growth with N.

Prints, for N images of coco-val2017-mini with codec=raw:
  * bare: image decode + front + encode + decode + back in a plain loop (per image),
  * run : `vcmbench run` on the same images (fidelity=false: the bare loop runs the back
          once, the fidelity columns need a second back pass), wall time per image measured
          around the whole command in a fresh process (start-up, model build, records,
          evaluation), and the time of run_sweep alone (no interpreter start-up/imports),
  * the peak RSS of `vcmbench run` at each N.
Targets (the runner must not cost more than the work it runs): overhead <= 5 %; peak RSS at N=100 within 10 % of N=20.

    python benchmarks/pipeline_overhead.py --sizes 20 100 [--min-size 800]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from vcmbench.cli import main
rc = main(sys.argv[1:])
wall = time.perf_counter() - t0
print("BENCH" + json.dumps({"rc": rc, "wall": wall,
      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bare_loop(n: int, min_size: int, max_size: int) -> float:
    """Seconds per image of the pipeline alone, no runner around it."""
    from vcmbench.codecs.raw import RawCodec
    from vcmbench.datasets.coco import build as coco
    from vcmbench.vision.torchvision_split import build as frcnn

    ds = coco(
        str(REPO.parent / "shared/assets/coco-val2017-mini"),
        "annotations/instances_val2017_subset.json",
        "val2017",
        max_images=n,
    )
    det = frcnn(weights="none", min_size=min_size, max_size=max_size)
    codec = RawCodec()
    rp = codec.rates[0]
    t0 = time.perf_counter()
    for rec in ds.records:
        sample = ds.load(rec)
        front = det.front(sample.image)
        det.back(codec.decode(codec.encode(front.features, rp)), front.meta)
    return (time.perf_counter() - t0) / n


def run_cli(n: int, min_size: int, max_size: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "run",
            "codec=raw",
            "model=frcnn_r50_fpn",
            "model.weights=none",
            f"model.min_size={min_size}",
            f"model.max_size={max_size}",
            "dataset=coco_val2017_mini",
            f"dataset.max_images={n}",
            "sweep.progress=false",
            "fidelity=false",
            f"hydra.run.dir={tmp}",
        ]
        proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, cwd=REPO)
        line = [x for x in proc.stdout.splitlines() if x.startswith("BENCH")]
        if proc.returncode != 0 or not line:
            raise SystemExit(f"vcmbench run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        out = json.loads(line[0][5:])
        sweep = json.loads((Path(tmp) / "timing.json").read_text())
        out.update(sweep)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 100])
    ap.add_argument("--min-size", type=int, default=800)
    ap.add_argument("--max-size", type=int, default=1333)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    for n in args.sizes:
        bare = bare_loop(n, args.min_size, args.max_size)
        cli = run_cli(n, args.min_size, args.max_size)
        rows.append(
            {
                "N": n,
                "bare_s/img": bare,
                "run_sweep_s/img": cli["sweep_s"] / n,
                "vcmbench_run_s/img": cli["wall"] / n,
                "overhead_sweep_%": 100 * (cli["sweep_s"] / n / bare - 1),
                "overhead_cli_%": 100 * (cli["wall"] / n / bare - 1),
                "peak_rss_MB": cli["rss_mb"],
            }
        )
    df = pd.DataFrame(rows)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if len(rows) > 1:
        print(f"peak RSS N={rows[-1]['N']} / N={rows[0]['N']}: {rows[-1]['peak_rss_MB'] / rows[0]['peak_rss_MB']:.3f}")


if __name__ == "__main__":
    main()
