"""Peak memory of coding one sequence at 8 and 64 frames: frames stream, features never pile up.

Each measurement is a fresh Python process that codes one synthetic sequence (the default
synthetic_video look, one sequence of N frames) through the sweep's sequence loop
(`ItemCoder.code`: front, the codecs' sequence encoders, decode, back, frame by frame)
and prints its own peak RSS (`ru_maxrss`) and that of its encoder/decoder processes. The
target: the 64-frame peak within 10% of the 8-frame one.

    python benchmarks/sequence_memory.py [--size 256] [--codecs anchor_vvc,pack_tile,image_vvc] [OVERRIDES]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def measure(frames: int, size: int, codecs: str, overrides: list[str]) -> dict:
    """Code one sequence of `frames` frames in this process; peak RSS in MiB."""
    from hydra.utils import instantiate

    from vcmbench.config import compose_config
    from vcmbench.run import ItemCoder

    with tempfile.TemporaryDirectory() as cache:
        spec = f"[{{name: bench, class: A, frames: {frames}, fps: 30, pan: [2, 1], objects: [8, 12]}}]"
        cfg = compose_config(
            "config",
            [
                "dataset=synthetic_video",
                f"dataset.cache_dir={cache}",
                f"dataset.sequences={spec}",
                f"dataset.height={size}",
                f"dataset.width={size}",
                f"codec=[{codecs}]",
                "sweep.workers=1",
                "fidelity=false",
                *overrides,
            ],
        )
        coder = ItemCoder(cfg, dataset=instantiate(cfg.dataset))
        seq = coder.dataset.sequences[0]
        todo = [(j, r) for j, job in enumerate(coder.jobs) for r in range(len(job.codec.rates))]
        t0 = time.perf_counter()
        records = list(coder.code(seq, todo))
        seconds = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "frames": frames,
        "points": len(records),
        "failed": sum(r.status != "ok" for r in records),
        "peak_rss_mib": own,
        "peak_child_rss_mib": children,
        "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256, help="frame side in pixels (default 256)")
    ap.add_argument(
        "--codecs",
        default="anchor_vvc,pack_tile,image_vvc",
        help="comma-separated codec names (default: the inter-coded ones)",
    )
    ap.add_argument(
        "overrides",
        nargs="*",
        default=["codec.anchor_vvc.rates=[37]", "codec.pack_tile.rates=[37]", "codec.image_vvc.rates=[37]"],
        help="Hydra overrides (default: one rate point per codec)",
    )
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.size, args.codecs, args.overrides)))
        return
    rows = []
    for frames in (8, 64):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(frames),
                "--size",
                str(args.size),
                "--codecs",
                args.codecs,
                *args.overrides,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"one sequence at {args.size}x{args.size}, codecs {args.codecs}, {' '.join(args.overrides) or 'every rate point'}; "
        "a fresh process each"
    )
    print("| frames | points | failed | peak RSS (MiB) | peak encoder/decoder RSS (MiB) | seconds |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['frames']} | {r['points']} | {r['failed']} | {r['peak_rss_mib']:.0f} | "
            f"{r['peak_child_rss_mib']:.0f} | {r['seconds']:.1f} |"
        )
    ratio = rows[1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    print(f"64-frame / 8-frame peak RSS: {ratio:.3f} ({'within' if abs(ratio - 1) <= 0.10 else 'OUTSIDE'} 10%)")


if __name__ == "__main__":
    main()
