"""The report's tables as shown: rate points, layers, complexity and BD-rate rows formatted for
markdown and HTML, with their legends, and the task metrics' labels (image and video runs' alike,
kept in one place). Numbers are formatted here only; they are computed in
vcmbench.analysis and vcmbench.bootstrap.
"""

from __future__ import annotations

import math

import pandas as pd

from vcmbench.analysis import POOR_OVERLAP, WARN, BDRow, foreign_codecs
from vcmbench.bootstrap import BDInterval
from vcmbench.metrics.bd import MIN_POINTS
from vcmbench.render.jinja import MISSING
from vcmbench.tables import codec_order
from vcmbench.types import TASK_COLUMNS

BD_LEGEND = (
    f"BD-rate: bits of the codec relative to the anchor at equal mAP, in percent, averaged over the "
    f"mAP range both curves cover (negative = fewer bits = better); BD-mAP: mean mAP gain in points "
    f"over the shared log-bpp range. *mAP range used* is that shared range; *overlap* is the smaller "
    f"fraction of either curve's mAP span that it covers. {WARN} poor overlap: below "
    f"{POOR_OVERLAP:.0%}, the figure rests on a small part of a curve: add rate points so that both "
    f"curves span the same accuracies. *not computed*: the reason is given (a BD figure needs at "
    f"least {MIN_POINTS} rate points per curve with mAP rising with bpp, and overlapping mAP ranges). "
    f"*interval*: where the BD-rate of the same codecs would fall on other images like these (a "
    f"paired bootstrap over the images; its settings follow); *P(BD<0)*: the share of resamples in "
    f"which the codec needs fewer bits than the anchor. A resample whose curves give no BD-rate (a "
    f"curve left with fewer than {MIN_POINTS} points by the pareto rule, mAP ranges that do not "
    f"overlap, ...) is left out: the note says how many of how many and why, each cause with its "
    f"count, and the interval and P(BD<0) are then conditioned on a resample having a BD-rate."
)


def _fmt(v, spec: str) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return MISSING if v is None or (isinstance(v, str) and not v) else str(v)
    if not math.isfinite(f):
        return MISSING
    return format(f, spec)


_TASK_WORDS = {
    "box": "boxes (detection)",
    "mask": "masks (instance segmentation)",
    "keypoints": "keypoints (pose estimation)",
    "semseg": "semantic segmentation (mIoU)",
}
#: a task's word in section and figure titles ("synthetic_val / ci_semseg (semantic segmentation)")
_TASK_TITLES = {"box": "boxes", "mask": "masks", "keypoints": "keypoints", "semseg": "semantic segmentation"}
#: what a task's accuracy column is called in a section's tables (its AP50: "mAP" -> "AP50")
_TASK_MEASURE = {"box": "mAP", "mask": "mask mAP", "keypoints": "keypoint mAP", "semseg": "mIoU"}


def _metric_label(metric: str | None, task: str = "box") -> str:
    from vcmbench.metrics.evaluators import registered

    if task in ("box", "mask"):  # the set's box evaluator, on boxes or masks
        evaluator = registered().get(metric or "")
        name = None if evaluator is None else evaluator.mask_label if task == "mask" else evaluator.label
    else:  # one evaluator fills the task's column, whatever the set's box evaluator (keypoints, mIoU)
        column = TASK_COLUMNS[task][0]
        evaluator = next((e for e in registered().values() if column in e.columns), None)
        name = evaluator.label if evaluator is not None else None
    measure = _TASK_MEASURE[task]
    return f"{measure} (%, {name})" if name and name != measure else f"{measure} (%)"


def _metric_sentence(label: str) -> str:
    head, _, inner = label.partition(" (%, ")
    return f"{head}: {inner[:-1]}, in percent" if inner else f"{head.removesuffix(' (%)')} in percent"


def points_display(points: pd.DataFrame, anchor: str | None, task: str = "box") -> pd.DataFrame:
    """The rate-points table; `task` names the accuracy columns (a mask section's are mask AP, a
    semantic segmentation section's mIoU, with no AP50)."""
    measure = _TASK_MEASURE[task]
    ap50 = measure.replace("mAP", "AP50") if TASK_COLUMNS[task][1] else None
    foreign = set(foreign_codecs(points))
    rows = []
    for codec in codec_order(points):
        sub = points[points.codec == codec].sort_values("bpp", na_position="last")
        for _, r in sub.iterrows():
            n_img, n_fail = r.get("n_images", math.nan), r.get("n_failed", math.nan)
            if isinstance(n_fail, float) and math.isnan(n_fail):
                failed = MISSING
            else:
                failed = f"{int(n_fail)}/{_fmt(n_img, '.0f')} {WARN}" if n_fail > 0 else "0"
            name = f"{codec} {WARN} foreign" if codec in foreign else codec
            row = {
                "codec": f"{codec} (anchor)" if codec == anchor else name,
                "rate": str(r.rate),
                "bpp": _fmt(r.bpp, ".4g"),
                f"{measure} (%)": _fmt(r["map"], ".2f"),
            }
            if ap50:
                row[f"{ap50} (%)"] = _fmt(r.get("ap50"), ".2f")
            row.update(
                {
                    "enc (s/img)": _fmt(r.get("enc_s"), ".3g"),
                    "dec (s/img)": _fmt(r.get("dec_s"), ".3g"),
                    "images": _fmt(n_img, ".0f"),
                    "failed": failed,
                }
            )
            rows.append(row)
    return pd.DataFrame(rows)


def layers_display(points: pd.DataFrame) -> pd.DataFrame:
    """Rows of the layered codecs: each layer's bits, the task metric and the image quality."""
    rows = []
    if "bpp_base" not in points:
        return pd.DataFrame(rows)
    layered = points[pd.to_numeric(points["bpp_base"], errors="coerce").notna()]
    for codec in codec_order(layered):
        for _, r in layered[layered.codec == codec].sort_values("bpp").iterrows():
            rows.append(
                {
                    "codec": codec,
                    "rate": str(r.rate),
                    "bpp base": _fmt(r.get("bpp_base"), ".4g"),
                    "bpp enh": _fmt(r.get("bpp_enh"), ".4g"),
                    "bpp total": _fmt(r.bpp, ".4g"),
                    "mAP (%) base": _fmt(r["map"], ".2f"),
                    "PSNR (dB) enh": _fmt(r.get("image_psnr"), ".2f"),
                    "MS-SSIM enh": _fmt(r.get("image_msssim"), ".4f"),
                }
            )
    return pd.DataFrame(rows)


def complexity_display(points: pd.DataFrame) -> pd.DataFrame:
    """kMAC per input pixel of each stage (the run's kmac_* columns): one row per codec, the
    learned codecs one per rate point (their count can differ by rate), external encoders with
    "time only" where torch cannot count."""
    from vcmbench.metrics.complexity import COMPLEXITY_COLUMNS

    if not set(COMPLEXITY_COLUMNS) <= set(points.columns):
        return pd.DataFrame()
    rows = []
    for codec in codec_order(points):
        sub = points[points.codec == codec].sort_values("bpp")
        counted = bool(pd.to_numeric(sub["kmac_enc"], errors="coerce").notna().any())
        if not counted:  # one row: the networks' counts do not depend on the rate; times averaged
            sub = sub.head(1).assign(rate="(all)", enc_s=sub.enc_s.mean(), dec_s=sub.dec_s.mean())
        for _, r in sub.iterrows():
            if pd.isna(pd.to_numeric(r.get("kmac_front"), errors="coerce")):
                continue  # a points table from before the columns existed
            coder = None if counted else "time only"
            rows.append(
                {
                    "codec": codec,
                    "rate": str(r.rate),
                    "front": _fmt(r.kmac_front, ".1f"),
                    "encoder": coder or _fmt(r.kmac_enc, ".1f"),
                    "decoder": coder or _fmt(r.kmac_dec, ".1f"),
                    "back": _fmt(r.kmac_back, ".1f"),
                    "enc s": _fmt(r.enc_s, ".3f"),
                    "dec s": _fmt(r.dec_s, ".3f"),
                }
            )
    return pd.DataFrame(rows)


COMPLEXITY_LEGEND = (
    "Complexity in kMAC per input pixel (thousands of multiply-accumulates), counted by torch's "
    "FlopCounterMode on the set's first image: the front on the image, the learned encoder (analysis, "
    "hyper-analysis and the hyper-decoder it needs for the scales) and decoder (hyper-decoder and "
    "synthesis) on its features (the hybrid codec: its reduction and restoration networks; its inner VVC "
    "codec adds time only), the back on the decoded features. External encoders run outside torch: "
    "for them only time is measured (*time only*), and front/back are those networks on the uncompressed "
    "features. enc s / dec s: wall seconds per image, as in the rate-points table (a *time only* row: the mean over its rate points)."
)

LAYERS_LEGEND = (
    "Layered codecs (joint feature + image stream): *bpp base* is the base layer the task decoder "
    "reads (features, and the layer header), *bpp enh* the enhancement layer the viewer adds; they "
    "add up to *bpp total*, the whole payload, which is also the bpp of the rate-points table and of "
    "the BD-rates. mAP comes from the base layer alone; PSNR (RGB, 8-bit peak) and MS-SSIM from the "
    "image rebuilt from both layers, averaged over the images."
)


def bd_display(rows: list[BDRow], intervals: dict[str, BDInterval] | None = None, task: str = "box") -> pd.DataFrame:
    """The BD table; with `intervals` (the bootstrap's), each row's interval and P(BD-rate < 0). Its
    accuracy columns name `task`'s measure: BD-mAP, BD-mIoU, ..."""
    measure = _TASK_MEASURE[task]
    gain, span = f"BD-{measure}", f"{measure} range used"
    columns = ["codec", "BD-rate (%)", gain, span, "overlap", "note"]
    if intervals is not None:
        columns[2:2] = ["interval (%)", "P(BD<0)"]
    out = []
    for r in rows:
        row = {
            "codec": r.codec,
            "BD-rate (%)": _fmt(r.bd_rate, "+.2f"),
            gain: _fmt(r.bd_metric, "+.3f"),
            span: (f"{r.overlap_lo:.2f}–{r.overlap_hi:.2f}" if r.ok else MISSING),
            "overlap": _fmt(r.overlap_fraction * 100, ".0f") + ("%" if r.ok else ""),
            "note": r.note,
        }
        if intervals is not None:
            iv = intervals.get(r.codec)
            usable = iv is not None and iv.ok and r.ok
            row["interval (%)"] = f"{iv.lo:+.2f} … {iv.hi:+.2f}" if usable else MISSING
            row["P(BD<0)"] = f"{iv.p_below_0:.3f}" if usable else MISSING
            if usable:
                dropped = iv.dropped_note()
            else:  # a figure without an interval: say why (e.g. no resample had a BD-rate, by cause)
                dropped = f"no interval: {iv.reason}" if iv is not None and r.ok and iv.reason else ""
            row["note"] = "; ".join(x for x in (row["note"], dropped) if x)
        out.append(row)
    return pd.DataFrame(out, columns=columns)
