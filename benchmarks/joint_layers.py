"""Joint feature + image coding: what each layer costs and gives, and whether the collaborative
(residual) enhancement layer beats the independent image layer, in one run.

    python benchmarks/joint_layers.py                       # runs (or resumes) the sweep, prints the tables
    python benchmarks/joint_layers.py --max-images 10       # a quicker look
    python benchmarks/joint_layers.py --base-quality 2

The sweep: the default scenes and detector (synthetic_val, ci_frcnn), one base layer
(learned_interleaved at --base-quality) under every enhancement QP in --qps, for both
enhancement modes (joint_interleaved_vvc: the image coded on its own; joint_residual_vvc:
the residual over the image predicted from the decoded base features), plus the image
anchor (image_vvc) at the same QPs. A run dir that holds records is resumed.

Printed: per point the layers' bpp, the base layer's mAP, the viewer's PSNR/MS-SSIM; then
BD-rate of the residual layer against the image layer, with the enhancement layer's bits
(bpp_enh) as the rate and image PSNR, then MS-SSIM, as the metric (negative = the
prediction from the features saves enhancement bits at equal image quality).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
MODES = ("joint_interleaved_vvc", "joint_residual_vvc")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=REPO / "results" / "joint_layers")
    ap.add_argument("--max-images", type=int, default=None, help="first N images (default: all 50 default scenes)")
    ap.add_argument("--base-quality", type=int, default=3, help="learned_interleaved quality of the base layer")
    ap.add_argument("--qps", type=int, nargs="*", default=[22, 27, 32, 37, 42, 47], help="enhancement-layer QPs")
    ap.add_argument("--threads", type=int, default=2)
    return ap.parse_args(argv)


def run(args) -> pd.DataFrame:
    from vcmbench.config import compose_config
    from vcmbench.run import run_sweep

    pairs = "[" + ",".join(f"[{args.base_quality},{qp}]" for qp in args.qps) + "]"
    qps = "[" + ",".join(str(q) for q in args.qps) + "]"
    overrides = [
        "dataset=synthetic_val",
        "model=ci_frcnn",
        f"codec=[{','.join(MODES)},image_vvc]",
        *(f"codec.{m}.rates={pairs}" for m in MODES),
        f"codec.image_vvc.rates={qps}",
        f"sweep.threads={args.threads}",
        "sweep.progress=false",
        f"dataset.max_images={args.max_images or 'null'}",
    ]
    cfg = compose_config("config", overrides)
    t0 = time.perf_counter()
    points = run_sweep(cfg, args.run_dir)
    print(f"sweep: {time.perf_counter() - t0:.0f} s ({args.run_dir})", file=sys.stderr)
    return points


def main(argv=None) -> int:
    args = parse_args(argv)
    points = run(args)
    from vcmbench.analysis import bd_row
    from vcmbench.render.report import bd_display
    from vcmbench.tables import text_table

    cols = [
        "codec",
        "rate",
        "n_images",
        "bpp",
        "bpp_base",
        "bpp_enh",
        "map",
        "image_psnr",
        "image_msssim",
        "enc_s",
        "dec_s",
    ]
    shown = points[[c for c in cols if c in points]].sort_values(["codec", "bpp"])
    with pd.option_context("display.width", 200, "display.float_format", "{:.4g}".format):
        print(shown.to_string(index=False))
    image_layer = points[points.codec == MODES[0]]
    residual_layer = points[points.codec == MODES[1]]
    for metric in ("image_psnr", "image_msssim"):
        row = bd_row(image_layer, residual_layer, MODES[1], MODES[0], metric=metric, rate_col="bpp_enh")
        print(f"\nBD-rate of the enhancement layer, {MODES[1]} vs {MODES[0]} (rate: bpp_enh, metric: {metric})")
        table = bd_display([row]).rename(columns={"BD-mAP": f"BD-{metric}", "mAP range used": f"{metric} range used"})
        print(text_table(table, "lrrrrl"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
