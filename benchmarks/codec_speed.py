"""Per-image encode/decode speed, bytes and bpp of the feature codecs at two rate points.

    python benchmarks/codec_speed.py                       # 10 images, default-run codecs, 800-px front
    python benchmarks/codec_speed.py --images 3 --min-size 256 --codecs anchor_vvc pack_tile

Features come from torchvision Faster R-CNN R50-FPN with random weights (the speed of a
codec does not depend on whether the weights are trained; its bytes do somewhat) on real
images of coco-val2017-mini. Each codec runs at the first and the last of its configured
rate points (`--rates all` for every point). enc_s / dec_s are wall seconds of
codec.encode / codec.decode alone (packing, quantisation, external process included);
bpp = 8 x payload bytes / input-image pixels.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch


def parse_args(argv=None):
    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10, help="number of coco-val2017-mini images (default 10)")
    ap.add_argument(
        "--assets",
        type=Path,
        default=Path(os.environ.get("VCMBENCH_ASSETS", repo.parent / "shared" / "assets")),
        help="shared assets folder holding coco-val2017-mini (default: $VCMBENCH_ASSETS or ../shared/assets)",
    )
    ap.add_argument(
        "--codecs",
        nargs="*",
        default=None,
        help="codec names from conf/codec (default: every default-run codec except raw/raw16)",
    )
    ap.add_argument(
        "--rates",
        choices=["ends", "all"],
        default="ends",
        help="ends: first and last configured rate point (default); all: every point",
    )
    ap.add_argument("--min-size", type=int, default=800, help="detector input min size (default 800, the model's)")
    ap.add_argument("--max-size", type=int, default=1333)
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the front")
    ap.add_argument("--summary-only", action="store_true", help="print only the means, not the per-image rows")
    return ap.parse_args(argv)


def build_codecs(names):
    from vcmbench.config import all_codec_configs, build, runnable_codec_config

    nodes = all_codec_configs(include_optional=names is not None)
    if names is None:
        names = [n for n in nodes if n not in ("raw", "raw16")]
    codecs = []
    for n in names:
        if n not in nodes:
            sys.exit(f"unknown codec {n!r}; conf/codec has {sorted(nodes)}")
        codecs.append(build(runnable_codec_config(nodes[n], n)))
    return codecs


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from vcmbench.datasets.images import read_rgb
    from vcmbench.vision.torchvision_split import build

    image_dir = args.assets / "coco-val2017-mini" / "val2017"
    paths = sorted(image_dir.glob("*.jpg"))[: args.images]
    if not paths:
        sys.exit(f"no images in {image_dir}; pass --assets /path/to/shared/assets")
    codecs = build_codecs(args.codecs)
    detector = build(weights="none", seed=0, min_size=args.min_size, max_size=args.max_size)
    rows = []
    for path in paths:
        image = read_rgb(path)
        pixels = int(image.shape[-2]) * int(image.shape[-1])
        features = detector.front(image).features
        shape = "x".join(str(v) for v in features["p2"].shape)
        for codec in codecs:
            rates = codec.rates if args.rates == "all" or len(codec.rates) < 2 else [codec.rates[0], codec.rates[-1]]
            for rate in rates:
                t0 = time.perf_counter()
                payload = codec.encode(features, rate)
                enc_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                codec.decode(payload)
                dec_s = time.perf_counter() - t0
                rows.append(
                    dict(
                        image=path.stem,
                        p2=shape,
                        codec=codec.name,
                        rate=rate.label,
                        enc_s=enc_s,
                        dec_s=dec_s,
                        bytes=len(payload),
                        bpp=8 * len(payload) / pixels,
                    )
                )
                print(
                    f"{path.stem} {codec.name} {rate.label}: {enc_s:.2f} s / {dec_s:.2f} s, {len(payload)} bytes",
                    file=sys.stderr,
                    flush=True,
                )
    table = pd.DataFrame(rows)
    fmt = {"enc_s": "{:.3f}".format, "dec_s": "{:.3f}".format, "bpp": "{:.4f}".format}
    with pd.option_context("display.width", 200, "display.max_rows", 10_000):
        if not args.summary_only:
            print(table.to_string(index=False, formatters=fmt))
            print()
        summary = (
            table.groupby(["codec", "rate"], sort=False)
            .agg(
                images=("image", "size"),
                enc_s=("enc_s", "mean"),
                dec_s=("dec_s", "mean"),
                bytes=("bytes", "mean"),
                bpp=("bpp", "mean"),
            )
            .reset_index()
        )
        summary["bytes"] = summary["bytes"].round().astype(int)
        print(
            f"per-image means over {len(paths)} images, front min_size={args.min_size}, "
            f"p2 {table.p2.iloc[0]} (first image)"
        )
        print(summary.to_string(index=False, formatters=fmt))
    return table


if __name__ == "__main__":
    main()
