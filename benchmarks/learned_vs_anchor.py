"""Learned feature codecs vs the MPEG anchor and the channel-packing baselines, in one run.

    python benchmarks/learned_vs_anchor.py                        # runs (or resumes) the sweep, prints the tables
    python benchmarks/learned_vs_anchor.py --run-dir results/X    # reads/resumes that run dir
    python benchmarks/learned_vs_anchor.py --max-images 10        # a quicker look

The sweep is `vcmbench run dataset=synthetic_val model=ci_frcnn
codec=[learned_interleaved,learned_cascade,anchor_vvc,pack_concat,pack_diff,pack_tile,raw]`
(the same features and detector for every codec, in one process on this machine); a run dir
that already holds records is resumed, so a finished run is only re-read. Printed:

* the points (bpp, mAP, AP50, per-image encode/decode seconds) of each codec;
* BD-rate (mAP vs bpp, pchip) of learned_interleaved against anchor_vvc, each packing
  baseline and learned_cascade, and of learned_cascade against the same baselines; the
  "best baseline" is the one against which learned_interleaved saves least;
* encode/decode speed: mean per-image seconds in the sweep, then a back-to-back timing pass
  (`--time-images` images, every codec and rate point in one process under the same load);
  the anchor_vvc / learned_interleaved encode ratio is taken from the timing pass.

Targets (issue 5): BD-rate <= -52 % vs the best of anchor_vvc and the packing baselines;
learned_interleaved better than learned_cascade (negative BD-rate against it); encoding at
least 5x faster than anchor_vvc at its default preset.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
LEARNED = ("learned_interleaved", "learned_cascade")
BASELINES = ("anchor_vvc", "pack_concat", "pack_diff", "pack_tile")
DEFAULT_CODECS = (*LEARNED, *BASELINES, "raw")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=REPO / "results" / "learned_vs_anchor",
                    help="run dir to create, resume or read (default results/learned_vs_anchor)")
    ap.add_argument("--codecs", nargs="*", default=list(DEFAULT_CODECS))
    ap.add_argument("--dataset", default="synthetic_val")
    ap.add_argument("--model", default="ci_frcnn")
    ap.add_argument("--max-images", type=int, default=None, help="first N images (default: the whole set)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the sweep (default 2)")
    ap.add_argument("--read-only", action="store_true", help="only read points.csv of --run-dir; never run")
    ap.add_argument("--overrides", nargs="*", default=[], help="extra Hydra overrides for the sweep")
    ap.add_argument("--time-images", type=int, default=5,
                    help="back-to-back timing pass: encode/decode the first N images with every codec at each "
                         "rate point, in this process, one codec after the other (0: skip; default 5)")
    return ap.parse_args(argv)


def run_or_read(args) -> pd.DataFrame:
    points_csv = args.run_dir / "points.csv"
    if args.read_only:
        if not points_csv.is_file():
            sys.exit(f"{points_csv} does not exist; run without --read-only first")
        return pd.read_csv(points_csv)
    from vcmbench.config import compose_config
    from vcmbench.run import run_sweep

    overrides = [f"dataset={args.dataset}", f"model={args.model}", f"codec=[{','.join(args.codecs)}]",
                 f"threads={args.threads}", *args.overrides]
    # conf/config.yaml caps dataset.max_images for the quick default run: lift it
    overrides.append(f"dataset.max_images={args.max_images or 'null'}")
    cfg = compose_config("config", overrides)
    t0 = time.perf_counter()
    points = run_sweep(cfg, args.run_dir)
    print(f"sweep: {time.perf_counter() - t0:.0f} s ({args.run_dir})", file=sys.stderr)
    return points


def timing_pass(args, codecs: list[str], n: int) -> pd.DataFrame:
    """Per-image encode/decode seconds of each codec under the same conditions (one process,
    codecs back to back on the same features), unlike the sweep's, which may have shared the
    machine with other work while some codecs ran."""
    from hydra.utils import instantiate

    from vcmbench.config import compose_config, selected_codec_configs

    overrides = [f"dataset={args.dataset}", f"model={args.model}", f"codec=[{','.join(codecs)}]",
                 f"dataset.max_images={n}", *args.overrides]
    cfg = compose_config("config", overrides)
    torch.set_num_threads(args.threads)
    dataset = instantiate(cfg.dataset)
    detector = instantiate(cfg.model)
    feats = [detector.front(s.image).features for s in dataset]
    rows = []
    for name, node in selected_codec_configs(cfg).items():
        codec = instantiate(node)
        for rp in codec.rates:
            enc = dec = 0.0
            for f in feats:
                t0 = time.perf_counter()
                payload = codec.encode(f, rp)
                t1 = time.perf_counter()
                codec.decode(payload)
                dec += time.perf_counter() - t1
                enc += t1 - t0
            rows.append({"codec": name, "rate": rp.label, "enc_s": enc / len(feats), "dec_s": dec / len(feats)})
    return pd.DataFrame(rows)


def bd(anchor: pd.DataFrame, test: pd.DataFrame) -> tuple[float | None, str]:
    from vcmbench.errors import MetricError
    from vcmbench.metrics.bd import compare

    try:
        r = compare(anchor, test)
    except MetricError as exc:
        return None, f"n/a ({exc})"
    note = f"overlap mAP {r.overlap_lo:.2f}..{r.overlap_hi:.2f} ({100 * r.overlap_fraction:.0f}% of the shorter curve)"
    return r.bd_rate, note


def main(argv=None) -> dict:
    args = parse_args(argv)
    points = run_or_read(args)
    curves = {c: g.sort_values("bpp") for c, g in points.groupby("codec")}
    cols = [c for c in ("codec", "rate", "n_images", "n_failed", "bpp", "map", "ap50", "enc_s", "dec_s")
            if c in points.columns]
    print("## Points\n")
    print(points[cols].sort_values(["codec", "bpp"]).to_string(index=False, float_format=lambda v: f"{v:.5g}"))

    results: dict = {"bd": {}, "speed": {}}
    print("\n## BD-rate (mAP vs bpp, pchip; negative = fewer bits than the anchor at equal mAP)\n")
    print("| test | anchor | BD-rate % | note |\n|---|---|---|---|")
    for test in LEARNED:
        if test not in curves:
            continue
        anchors = [a for a in (*BASELINES, *(x for x in LEARNED if x != test)) if a in curves]
        for anchor in anchors:
            val, note = bd(curves[anchor], curves[test])
            results["bd"][(test, anchor)] = val
            print(f"| {test} | {anchor} | {'n/a' if val is None else f'{val:+.1f}'} | {note} |")
    tested = [results["bd"].get(("learned_interleaved", a)) for a in BASELINES if a in curves]
    tested = [v for v in tested if v is not None]
    best = max(tested) if tested else None

    print("\n## Speed (mean seconds per image of codec.encode / codec.decode, this machine)\n")
    print("| codec | enc_s | dec_s |\n|---|---|---|")
    for c, g in curves.items():
        enc, dec = float(g["enc_s"].mean()), float(g["dec_s"].mean())
        results["speed"][c] = (enc, dec)
        print(f"| {c} | {enc:.4f} | {dec:.4f} |")
    ratio = None
    if "anchor_vvc" in results["speed"] and "learned_interleaved" in results["speed"]:
        ratio = results["speed"]["anchor_vvc"][0] / results["speed"]["learned_interleaved"][0]
    if args.time_images > 0:
        timed = timing_pass(args, [c for c in args.codecs if c != "raw"], args.time_images)
        per = timed.groupby("codec")[["enc_s", "dec_s"]].mean()
        print(f"\nBack-to-back timing pass ({args.time_images} images, every rate point, one process, "
              f"{args.threads} torch threads):\n")
        print("| codec | enc_s | dec_s |\n|---|---|---|")
        for c, r in per.iterrows():
            print(f"| {c} | {r.enc_s:.4f} | {r.dec_s:.4f} |")
        results["speed_timed"] = {c: (float(r.enc_s), float(r.dec_s)) for c, r in per.iterrows()}
        if "anchor_vvc" in per.index and "learned_interleaved" in per.index:
            ratio = float(per.loc["anchor_vvc", "enc_s"] / per.loc["learned_interleaved", "enc_s"])

    print("\n## Targets\n")
    ok = lambda b: "MET" if b else "NOT MET"  # noqa: E731
    if best is not None:
        print(f"- BD-rate vs the best of anchor_vvc and the packing baselines: {best:+.1f}% (target <= -52%): {ok(best <= -52)}")
    casc = results["bd"].get(("learned_interleaved", "learned_cascade"))
    if casc is not None:
        print(f"- learned_interleaved vs learned_cascade: {casc:+.1f}% (target < 0): {ok(casc < 0)}")
    if ratio is not None:
        print(f"- encode speed-up vs anchor_vvc: {ratio:.1f}x (target >= 5x): {ok(ratio >= 5)}")
    results.update({"best_baseline_bd": best, "cascade_bd": casc, "enc_speedup": ratio})
    return results


if __name__ == "__main__":
    main()
