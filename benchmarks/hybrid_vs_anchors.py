"""The hybrid codec (hybrid_vvc) against the feature anchor, the learned codec and the image anchor.

    python benchmarks/hybrid_vs_anchors.py                      # anchors/ci/points.csv (the image default)
    python benchmarks/hybrid_vs_anchors.py --image results/ci-reference --video results/synthetic_video-ci_frcnn

Reads finished runs only (a points.csv or a run folder; for video, its classes.csv) and prints:

* BD-rate (pchip, the task metric vs bpp; dominated points left out, as the report does) of
  hybrid_vvc against anchor_vvc, learned_interleaved and image_vvc on the image run, with the
  metric interval integrated over and that interval's share of the anchor's own range;
* the same per class of the video run (kbps), where a video run is given;
* hybrid_vvc's encode and decode seconds per item (the run's timing pass, timing.csv, where it has
  one, else the sweep's) and the kMAC per input pixel of its networks;
* the issue's targets, each MET or NOT MET.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TEST = "hybrid_vvc"
ANCHORS = ("anchor_vvc", "learned_interleaved", "image_vvc")


def _table(path: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(path / name if path.is_dir() else path)


def bd(anchor: pd.DataFrame, test: pd.DataFrame, anchor_name: str, rate_col: str) -> dict:
    """BD-rate of the hybrid vs one anchor, its metric interval and that interval's share of the anchor's range."""
    from vcmbench.analysis import bd_row, pareto_front

    r = bd_row(anchor, test, TEST, anchor_name, rate_col=rate_col)
    if not r.ok:
        return {"bd": None, "note": f"n/a ({r.reason})", "share": None}
    front, _ = pareto_front(anchor, rate_col)
    span = float(front["map"].max() - front["map"].min())
    share = (r.overlap_hi - r.overlap_lo) / span if span > 0 else None
    return {"bd": r.bd_rate, "note": f"{r.overlap_lo:.2f}..{r.overlap_hi:.2f}", "share": share}


def _row(group: str, anchor: str, r: dict) -> str:
    value = "n/a" if r["bd"] is None else f"{r['bd']:+.1f}"
    share = "" if r["share"] is None else f"{100 * r['share']:.0f}%"
    return f"| {group} | {anchor} | {value} | {r['note']} | {share} |"


def image_table(points: pd.DataFrame) -> dict:
    print("## Image default: BD-rate of hybrid_vvc (mAP vs bpp, pchip)\n")
    print("| set | anchor | BD-rate % | mAP interval | share of the anchor's range |\n|---|---|---:|---|---:|")
    test = points[points.codec == TEST]
    out = {}
    for anchor in ANCHORS:
        out[anchor] = bd(points[points.codec == anchor], test, anchor, "bpp")
        print(_row(str(points.dataset.iloc[0]), anchor, out[anchor]))
    return out


def video_table(classes: pd.DataFrame) -> dict:
    metric = str(classes.metric.iloc[0]) if "metric" in classes else "map"
    print(f"\n## Video: BD-rate of hybrid_vvc per class (the run's task metric, {metric}, vs kbps, pchip)\n")
    print(f"| class | anchor | BD-rate % | {metric} interval | share of the anchor's range |\n|---|---|---:|---|---:|")
    out = {}
    for cls, group in classes.groupby("class"):
        test = group[group.codec == TEST]
        for anchor in ANCHORS:
            out[(cls, anchor)] = bd(group[group.codec == anchor], test, anchor, "kbps")
            print(_row(str(cls), anchor, out[(cls, anchor)]))
    return out


def costs(run: Path, points: pd.DataFrame) -> None:
    rows = points[points.codec == TEST]
    timing = run / "timing.csv" if run.is_dir() else None
    source = "the sweep (points.csv)"
    if timing is not None and timing.is_file():
        t = pd.read_csv(timing)
        rows = rows.drop(columns=["enc_s", "dec_s"]).merge(t[["codec", "rate", "enc_s", "dec_s"]], on=["codec", "rate"])
        source = "the timing pass (timing.csv: every rate point alone, back to back)"
    print(f"\n## hybrid_vvc: seconds per item from {source}, kMAC per input pixel of its networks\n")
    cols = [c for c in ("rate", "bpp", "map", "enc_s", "dec_s", "kmac_enc", "kmac_dec") if c in rows]
    print(rows.sort_values("bpp")[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def targets(image: dict, video: dict | None) -> None:
    print("\n## Targets\n")

    def verdict(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    a = image["anchor_vvc"]
    ok = a["bd"] is not None and a["bd"] <= -90 and (a["share"] or 0) >= 0.9
    print(f"- image: <= -90 % vs anchor_vvc over >= 90 % of its range: {verdict(ok)}")
    i = image["image_vvc"]
    print(f"- image: <= -50 % vs image_vvc: {verdict(i['bd'] is not None and i['bd'] <= -50)}")
    if video is not None:
        for (cls, anchor), r in sorted(video.items()):
            if anchor == "anchor_vvc":
                ok = r["bd"] is not None and r["bd"] <= -90 and (r["share"] or 0) >= 0.9
                print(f"- video class {cls}: <= -90 % vs anchor_vvc over >= 90 % of its range: {verdict(ok)}")
            if anchor == "image_vvc":
                print(f"- video class {cls}: < 0 vs image_vvc: {verdict(r['bd'] is not None and r['bd'] < 0)}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--image", type=Path, default=REPO / "anchors" / "ci" / "points.csv", help="image run (folder or points.csv)"
    )
    ap.add_argument("--video", type=Path, default=None, help="video run (folder or classes.csv)")
    args = ap.parse_args(argv)
    points = _table(args.image, "points.csv")
    image = image_table(points)
    video = video_table(_table(args.video, "classes.csv")) if args.video else None
    costs(args.image, points)
    targets(image, video)


if __name__ == "__main__":
    main()
