"""Learned feature codecs against the MPEG anchor, the packing baselines and the image anchor, in one run.

    python benchmarks/learned_vs_anchor.py                        # runs (or resumes) the default sweep, prints
    python benchmarks/learned_vs_anchor.py --run-dir results/X    # reads/resumes that run dir
    python benchmarks/learned_vs_anchor.py --read-only --run-dir results/synthetic_val-ci_frcnn

The sweep is the project's default run (`vcmbench run`: the default set, detector and codecs, so
the figures are those of the default set) into its own run dir; a run dir that already holds
records is resumed, so a finished run is only re-read. Printed:

* the points of the learned codecs, the anchors and the uncompressed features;
* BD-rate (mAP vs bpp, pchip) of each learned codec against anchor_vvc, each packing baseline,
  the other learned codec and the image anchor image_vvc, with the mAP interval integrated over
  and the share of the anchor's own mAP range that interval is;
* each codec's top point: its mAP gap to the uncompressed features, and for the learned codecs
  the share of the raw float32 feature size their near-lossless point spends;
* encode and decode seconds per image, back to back: the first `--time-images` images, every codec
  and rate point one after the other in this process (`transmit_encode` / `transmit_decode`, so
  the image anchor is timed on its image), under the same load, after one untimed warm-up pass
  per rate point (checkpoint loading, binary start-up);
* complexity: kMAC per input pixel of front, learned encoder, learned decoder and back (the run's
  kmac_* columns; external encoders: time only);
* the learned codecs' targets (the figures the retrained checkpoints were to reach), each MET or NOT MET.
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
IMAGE_ANCHOR = "image_vvc"
UNCOMPRESSED = "raw"
TIMED = (*LEARNED, "anchor_vvc", "pack_tile", IMAGE_ANCHOR)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--run-dir",
        type=Path,
        default=REPO / "results" / "learned_vs_anchor",
        help="run dir to create, resume or read (default results/learned_vs_anchor)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the timing pass (default: torch's); the sweep keeps the default run's "
        "settings, whose features depend on the thread count",
    )
    ap.add_argument("--read-only", action="store_true", help="only read points.csv of --run-dir; never run")
    ap.add_argument(
        "--overrides", nargs="*", default=[], help="extra Hydra overrides for the sweep (e.g. dataset.count=50)"
    )
    ap.add_argument(
        "--time-images",
        type=int,
        default=5,
        help="back-to-back timing pass over the first N images (0: skip; default 5)",
    )
    return ap.parse_args(argv)


def run_or_read(args) -> pd.DataFrame:
    points_csv = args.run_dir / "points.csv"
    if args.read_only:
        if not points_csv.is_file():
            sys.exit(f"{points_csv} does not exist; run without --read-only first")
        return pd.read_csv(points_csv)
    from vcmbench.config import compose_config
    from vcmbench.run import run_sweep

    cfg = compose_config("config", ["report=false", *args.overrides])
    t0 = time.perf_counter()
    points = run_sweep(cfg, args.run_dir)
    print(f"sweep: {time.perf_counter() - t0:.0f} s ({args.run_dir})", file=sys.stderr)
    return points


def timing_pass(args, codecs: list[str], n: int) -> pd.DataFrame:
    """Per-image encode/decode seconds of each codec under the same conditions: one process, the
    codecs back to back on the same images and features (the sweep's times may have shared the
    machine with other work while some codecs ran)."""
    from hydra.utils import instantiate

    from vcmbench.config import compose_config, selected_codec_configs

    cfg = compose_config("config", [f"codec=[{','.join(codecs)}]", f"dataset.max_images={n}", *args.overrides])
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = instantiate(cfg.dataset)
    detector = instantiate(cfg.model)
    items = [(s.image, detector.front(s.image)) for s in dataset]
    rows = []
    for name, node in selected_codec_configs(cfg).items():
        codec = instantiate(node)
        for rp in codec.rates:
            # one untimed pass first: a learned rate point loads its checkpoint (and its parents) on
            # first use, an external encoder's binary is read from disk; neither is per-image work
            image, front = items[0]
            codec.transmit_decode(codec.transmit_encode(image, front, rp), front.meta)
            enc = dec = 0.0
            for image, front in items:
                t0 = time.perf_counter()
                payload = codec.transmit_encode(image, front, rp)
                t1 = time.perf_counter()
                codec.transmit_decode(payload, front.meta)
                dec += time.perf_counter() - t1
                enc += t1 - t0
            rows.append({"codec": name, "rate": rp.label, "enc_s": enc / len(items), "dec_s": dec / len(items)})
    return pd.DataFrame(rows)


def compare(anchor: pd.DataFrame, test: pd.DataFrame, test_name: str, anchor_name: str) -> dict:
    """BD-rate of `test` vs `anchor` as `vcmbench report` and `bdrate` compute it (dominated points
    left out), the mAP interval it integrates and that interval's share of the anchor's mAP range."""
    from vcmbench.analysis import bd_row, pareto_front

    r = bd_row(anchor, test, test_name, anchor_name)
    if not r.ok:
        return {"bd": None, "note": f"n/a ({r.reason})", "anchor_share": None, "dominated": r.dominated}
    front, _ = pareto_front(anchor)
    span = float(front["map"].max() - front["map"].min())
    share = (r.overlap_hi - r.overlap_lo) / span if span > 0 else None
    note = f"{r.overlap_lo:.2f}..{r.overlap_hi:.2f}"
    return {"bd": r.bd_rate, "note": note, "anchor_share": share, "dominated": r.dominated}


def main(argv=None) -> dict:
    args = parse_args(argv)
    points = run_or_read(args)
    curves = {c: g.sort_values("bpp") for c, g in points.groupby("codec")}
    shown = [c for c in (*LEARNED, *BASELINES, IMAGE_ANCHOR, UNCOMPRESSED) if c in curves]
    cols = [c for c in ("codec", "rate", "n_images", "n_failed", "bpp", "map", "enc_s", "dec_s") if c in points]
    print("## Points\n")
    print(
        points[points.codec.isin(shown)][cols]
        .sort_values(["codec", "bpp"])
        .to_string(index=False, float_format=lambda v: f"{v:.5g}")
    )

    results: dict = {"bd": {}}
    print("\n## BD-rate (mAP vs bpp, pchip; negative = fewer bits than the anchor at equal mAP)\n")
    print("| test | anchor | BD-rate % | mAP interval | share of the anchor's mAP range |\n|---|---|---:|---|---:|")
    dominated: set[str] = set()
    for test in (c for c in LEARNED if c in curves):
        others = [a for a in (*BASELINES, *(x for x in LEARNED if x != test), IMAGE_ANCHOR) if a in curves]
        for anchor in others:
            r = compare(curves[anchor], curves[test], test, anchor)
            results["bd"][(test, anchor)] = r
            bd = "n/a" if r["bd"] is None else f"{r['bd']:+.1f}"
            share = "" if r["anchor_share"] is None else f"{100 * r['anchor_share']:.0f}%"
            print(f"| {test} | {anchor} | {bd} | {r['note']} | {share} |")
            dominated.update(r["dominated"])

    if dominated:
        print(
            f"\nLeft out as dominated (more bits, no higher mAP), as `vcmbench report` does: {', '.join(sorted(dominated))}"
        )

    raw = curves.get(UNCOMPRESSED)
    raw_map = float(raw["map"].max()) if raw is not None else None
    raw_bytes = float(raw["bytes"].max()) if raw is not None else None
    print("\n## Top points\n")
    print(
        "| codec | top mAP | gap to uncompressed | bpp there | share of raw float32 size |\n|---|---:|---:|---:|---:|"
    )
    top = {}
    for c in shown:
        best = curves[c].loc[curves[c]["map"].idxmax()]
        gap = None if raw_map is None else raw_map - float(best["map"])
        share = None if raw_bytes is None or c not in LEARNED else float(best["bytes"]) / raw_bytes
        top[c] = {"map": float(best["map"]), "gap": gap, "bpp": float(best.bpp), "raw_share": share}
        print(
            f"| {c} | {best['map']:.2f} | {'' if gap is None else f'{gap:.2f}'} | {best.bpp:.4g} | "
            f"{'' if share is None else f'{100 * share:.2f}%'} |"
        )
    results["top"] = top

    ratio = None
    if args.time_images > 0:
        timed = timing_pass(args, [c for c in TIMED if c in curves], args.time_images)
        per = timed.groupby("codec", sort=False)[["enc_s", "dec_s"]].mean()
        print(
            f"\n## Speed, back to back ({args.time_images} images, every rate point, one process, "
            f"{torch.get_num_threads()} torch threads; seconds per image)\n"
        )
        print("| codec | encode s | decode s |\n|---|---:|---:|")
        for c, r in per.iterrows():
            print(f"| {c} | {r.enc_s:.4f} | {r.dec_s:.4f} |")
        results["speed"] = {c: (float(r.enc_s), float(r.dec_s)) for c, r in per.iterrows()}
        if "anchor_vvc" in per.index and "learned_interleaved" in per.index:
            ratio = float(per.loc["anchor_vvc", "enc_s"] / per.loc["learned_interleaved", "enc_s"])
            print(f"\nanchor_vvc / learned_interleaved encode time: {ratio:.1f}x")

    kmac = [c for c in ("kmac_front", "kmac_enc", "kmac_dec", "kmac_back") if c in points]
    if kmac:
        print("\n## Complexity (kMAC per input pixel; external encoders: time only)\n")
        rows = points[points.codec.isin(shown)].drop_duplicates("codec", keep="last")
        print(rows[["codec", *kmac]].to_string(index=False, float_format=lambda v: f"{v:.1f}", na_rep="time only"))

    print("\n## Targets\n")
    ok = lambda b: "MET" if b else "NOT MET"  # noqa: E731
    li = curves.get("learned_interleaved")
    if li is not None and raw_map is not None:
        print(
            f"- top learned_interleaved point {li['map'].max():.2f} mAP, {raw_map - li['map'].max():.2f} below "
            f"uncompressed {raw_map:.2f} (target: within 2.5): {ok(raw_map - li['map'].max() <= 2.5)}"
        )
        print(
            f"- lowest learned_interleaved point {li['map'].min():.2f} mAP (target <= 15): {ok(li['map'].min() <= 15)}"
        )
    vs_anchor = results["bd"].get(("learned_interleaved", "anchor_vvc"))
    if vs_anchor and vs_anchor["bd"] is not None:
        met = vs_anchor["bd"] <= -90 and vs_anchor["anchor_share"] >= 0.9
        print(
            f"- BD-rate vs anchor_vvc {vs_anchor['bd']:+.1f}% over {100 * vs_anchor['anchor_share']:.0f}% of the "
            f"anchor's mAP range (target <= -90% over >= 90%): {ok(met)}"
        )
    if ratio is not None:
        print(f"- encoding {ratio:.1f}x faster than anchor_vvc, back to back (target >= 10x): {ok(ratio >= 10)}")
    casc = results["bd"].get(("learned_interleaved", "learned_cascade"))
    if casc and casc["bd"] is not None:
        print(
            f"- learned_interleaved vs learned_cascade at equal size: {casc['bd']:+.1f}% (target < 0): "
            f"{ok(casc['bd'] < 0)}"
        )
    img = results["bd"].get(("learned_interleaved", IMAGE_ANCHOR))
    if img:
        bd = "n/a" if img["bd"] is None else f"{img['bd']:+.1f}%"
        print(
            f"- reported, not a target: BD-rate vs {IMAGE_ANCHOR} {bd} over mAP {img['note']} (negative: coding the "
            f"features beats coding the image)"
        )
    results["enc_speedup"] = ratio
    return results


if __name__ == "__main__":
    main()
