"""`final_<SET>.csv`: a run's results in the file MPEG's platform writes for the CTTC template.

The platform (CompressAI-Vision's `scripts/metrics/gen_mpeg_cttc_csv.py`, FCM mode) reads one
summary per sequence and rate point and writes, per codec and test set, one csv written by pandas
with its index:

* video, `,Dataset,qp,bitrate (kbps),end_accuracy,nn_part_1,encode,decode,nn_part_2`: the
  sequence rows (qp: the numeric QP; rows of a sequence by qp, increasing), then the class rows in
  the set's class order (qp: the operating point's index 0, 1, ... in that same order). A class row's
  bitrate and times are the mean of its sequences' values weighted by their durations
  (frames / fps), `(1 / total) * sum(value * duration)`; its end_accuracy is the metric evaluated
  jointly over the class's frames (here: the run's classes.csv). The first column numbers the
  rows 0, 1, ...
* image (OIV6), `,Dataset,qp,avg_bpp,end_accuracy,nn_part_1,encode,decode,nn_part_2`: one row per
  dataset and rate point, sorted by dataset name then qp; no class rows. The index column keeps the
  order the platform read the summaries in (segmentation first, then detection; rate points in qp
  order here, the file system's listing order there).

Cells: numbers as Python writes a float in full (`repr`, what pandas writes), the QP as an integer,
a missing number as an empty cell. end_accuracy is in percent (vcmbench's `map`: COCO AP, MOTA,
PandaSet's mIoU; `map_segm` for the OpenImages segmentation set). PandaSet (PANDAM1..3): a class
row's end_accuracy is the plain mean of its sequences' mIoUs, the platform's
`compute_per_class_miou.py`, which the run's classes.csv holds (vcmbench.metrics.semseg_evaluator);
its bitrate and times are duration-weighted as for every set. Times are seconds over all the
sequence's frames (all the set's images), vcmbench's seconds per frame times `frames` (`n_images`).

Where a rate label is not one knob's number (a joint codec's `quality=2+qp=42`), the qp cell holds
the label and rate points are ordered by bitrate, highest first (as increasing QPs are). Sets the
platform has no table for (vcmbench.render.cttc_tables) keep vcmbench's names and classes, with
sequences sorted by name and classes in the run's order.

What still differs from the platform's script (31165da), and why:

* Numbers are vcmbench's measurements: its evaluation (pycocotools AP; MOTA by TrackEval, not
  motmetrics, of the tracker the run's `tracker` column names: JDE's own for JDE, as on the platform,
  else vcmbench's ByteTrack-style one) and its times (seconds per frame times frames, so their last
  digits differ from the platform's accumulated sums). The layout is the platform's; the values agree
  as far as the measurements do.
* No `encode_<module>` / `decode_<module>` columns (the platform adds them when its codec reports
  per-module times) and no `inv_mse` (when its pipeline computes a feature MSE): vcmbench measures
  neither. Codecs that code the image (the platform's remote-inference pipeline, whose summaries have
  `encode, decode, nn_task`) get the split-inference columns here: nn_part_1 and nn_part_2 are
  the receiver's network on the decoded image, which the platform's nn_task sums.
* The platform refuses a folder lacking any of the set's sequences or any of its
  `--nb_operation_points` (4) rate points per sequence; here the sequences and rate points the run
  has are written, and a class row covers the class's sequences present in the run.
* FCM mode only: no `--mode VCM` (SFU without Kimono and Cactus, CLASS-O, no class rows, monotonic
  fitting of the rows; TVD's split sequences), `--no-cactus`, `--add-non-scale` (CLASS-AB* of the
  ns_ sequences) or `--metric AP50`: vcmbench's runs are FCM runs scored on its `map`.
* OIV6: the platform needs detection and segmentation results in one folder and numbers the rows of
  one set in its file system's listing order; here a file holds the OpenImages sets of the runs given
  (pass both runs for both), numbered in qp order. Other image sets (COCO, synthetic) have no
  platform file: written in the same layout as `final_<dataset>.csv`.
* Files: the platform writes `final_<SET>.csv` into its result folder; here into
  `<out>/<dataset>__<model>__<codec>/` (video) or `<out>/<codec>/` (images).
* PandaSet: the platform averages its sequences' mIoUs read from their eval_info jsons for a class
  row; here classes.csv holds that mean (vcmbench.metrics.semseg_evaluator), read as for every set.
"""

from __future__ import annotations

import csv
import math
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd

from vcmbench.errors import VcmbenchError
from vcmbench.render.cttc_tables import IMAGE_SETS, platform_set, qp_value

__all__ = ["VIDEO_HEADER", "IMAGE_HEADER", "write_video_final", "write_image_final"]

# (platform column, vcmbench seconds-per-frame column)
TIMES = (("nn_part_1", "front_s"), ("encode", "enc_s"), ("decode", "dec_s"), ("nn_part_2", "back_s"))
VIDEO_HEADER = ["Dataset", "qp", "bitrate (kbps)", "end_accuracy", *(t for t, _ in TIMES)]
IMAGE_HEADER = ["Dataset", "qp", "avg_bpp", "end_accuracy", *(t for t, _ in TIMES)]


def cell(value) -> str:
    """A cell as pandas writes it: '' for a missing number, ints as ints, floats in full."""
    if value is None:
        return ""
    if isinstance(value, Integral) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, Real):
        f = float(value)
        return "" if math.isnan(f) else repr(f)
    return str(value)


def _write(path: Path, header: list[str], rows: list[tuple[int, list]]) -> None:
    """The csv with pandas' unnamed index column first: (index, cells) per row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["", *header])
        out.writerows([str(i), *(cell(c) for c in cells)] for i, cells in rows)


def _num(row: pd.Series, col: str) -> float:
    value = row.get(col, math.nan)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def rate_order(rows: pd.DataFrame, rate_col: str) -> list[str]:
    """The rate labels of one codec as the platform orders its qp column: by number, increasing;
    by `rate_col` (bitrate), highest first, when a label is not a number."""
    labels = list(dict.fromkeys(str(r) for r in rows["rate"]))
    values = [qp_value(r) for r in labels]
    if all(v is not None for v in values):
        return [lab for _, lab in sorted(zip(values, labels), key=lambda p: p[0])]
    mean = rows.groupby(rows["rate"].astype(str))[rate_col].mean()
    return sorted(labels, key=lambda r: -mean.get(r, -math.inf))


def _qp_cell(label: str):
    value = qp_value(label)
    return label if value is None else value


def _times(row: pd.Series, count: float) -> list[float]:
    return [_num(row, col) * count for _, col in TIMES]


def _one(rows: pd.DataFrame, what: str, label: str) -> pd.Series:
    if rows.empty:
        raise VcmbenchError(f"{label}: no row for {what}; every sequence needs every rate point of its codec")
    return rows.iloc[0]


# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------


def _video_layout(pts: pd.DataFrame) -> tuple[str, dict[str, str], list[str], list[tuple[str, list[str]]]]:
    """(file tag, vcmbench name -> platform name, sequences in row order, [(class, members)])."""
    seqs = list(dict.fromkeys(str(s) for s in pts["sequence"]))
    found = platform_set(seqs)
    if found is None:
        groups = []
        for cls in dict.fromkeys(str(c) for c in pts["class"]):
            groups.append((cls, [s for s in seqs if (pts.loc[pts.sequence == s, "class"].astype(str) == cls).any()]))
        return str(pts["dataset"].iloc[0]), {s: s for s in seqs}, sorted(seqs), groups
    pset, names = found
    rank = {n: i for i, n in enumerate(pset.names)}
    ordered = sorted(seqs, key=(lambda s: rank[names[s]]) if pset.listed_order else (lambda s: names[s]))
    by_platform = {names[s]: s for s in seqs}
    groups = []
    for cls, members in pset.classes:
        present = [by_platform[m] for m in members if m in by_platform]
        if present:
            groups.append((cls, present))
    return pset.tag, names, ordered, groups


def _run_class(pts: pd.DataFrame, cls: str, members: list[str], label: str) -> str:
    """The run's class whose sequences are exactly `members` (its joint metric is the class row's)."""
    theirs = list(dict.fromkeys(str(c) for c in pts.loc[pts.sequence.isin(members), "class"]))
    if len(theirs) == 1 and set(pts.loc[pts["class"] == theirs[0], "sequence"]) == set(members):
        return theirs[0]
    raise VcmbenchError(
        f"{label}: no class of the run holds exactly the sequences of the CTTC's {cls} ({', '.join(members)}; "
        f"the run's classes of them: {', '.join(theirs)}); its end_accuracy is evaluated jointly over the "
        "class's frames: run the set with the CTTC's classes (SFU: dataset.class_labels=cttc)"
    )


def write_video_final(pts: pd.DataFrame, classes: pd.DataFrame, folder: Path, label: str) -> Path:
    """Write one codec's `final_<SET>.csv` (pts, classes: one dataset, model and codec) under `folder`."""
    tag, names, ordered, groups = _video_layout(pts)
    rates = rate_order(pts, "kbps")
    rows: list[list] = []
    for s in ordered:
        for r in rates:
            row = _one(pts[(pts.sequence == s) & (pts.rate == r)], f"sequence {s} at {r}", label)
            frames = _num(row, "frames")
            rows.append([names[s], _qp_cell(r), _num(row, "kbps"), _num(row, "map"), *_times(row, frames)])
    for cls, members in groups:
        theirs = _run_class(pts, cls, members, label)
        for i, r in enumerate(rates):
            seq_rows = [
                _one(pts[(pts.sequence == s) & (pts.rate == r)], f"sequence {s} at {r}", label) for s in members
            ]
            length = np.array([_num(x, "frames") / _num(x, "fps") for x in seq_rows])
            total = length.sum()

            def mean(values: list[float], length=length, total=total) -> float:
                return float((1 / total) * (np.array(values) * length).sum())

            joint = classes[(classes["class"] == theirs) & (classes.rate == r)]
            if joint.empty:
                raise VcmbenchError(f"{label}: no row for class {theirs} at {r}; pass the classes.csv of the same run")
            times = [mean([_num(x, col) * _num(x, "frames") for x in seq_rows]) for _, col in TIMES]
            rows.append([cls, i, mean([_num(x, "kbps") for x in seq_rows]), _num(joint.iloc[0], "map"), *times])
    path = folder / f"final_{tag}.csv"
    _write(path, VIDEO_HEADER, list(enumerate(rows)))
    return path


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _accuracy_column(dataset: str, rows: pd.DataFrame) -> str:
    """The platform scores its OIV6 segmentation set on masks: vcmbench's map_segm there."""
    if IMAGE_SETS.get(dataset, ("", ""))[1].endswith("segmentation") and "map_segm" in rows:
        if rows["map_segm"].notna().any():
            return "map_segm"
    return "map"


def write_image_final(points: pd.DataFrame, folder: Path, label: str) -> list[Path]:
    """Write, for one codec's image points (any datasets), one `final_<SET>.csv` per set under `folder`."""
    by_tag: dict[str, list[str]] = {}
    for dataset in dict.fromkeys(str(d) for d in points["dataset"]):
        by_tag.setdefault(IMAGE_SETS.get(dataset, (dataset, dataset))[0], []).append(dataset)
    written = []
    for tag, datasets in by_tag.items():
        reading = sorted(datasets, key=lambda d: (list(IMAGE_SETS).index(d) if d in IMAGE_SETS else len(IMAGE_SETS), d))
        rows: list[tuple[str, object, list]] = []  # (name, qp sort key, cells) in reading order
        for dataset in reading:
            pts = points[points.dataset == dataset]
            models = list(dict.fromkeys(str(m) for m in pts["model"]))
            if len(models) > 1:
                raise VcmbenchError(
                    f"{label}: dataset {dataset} has points of several models ({', '.join(models)}) for codec "
                    f"{pts['codec'].iloc[0]}; the CTTC file has one row per rate point: pass one model's run"
                )
            name = IMAGE_SETS.get(dataset, (dataset, dataset))[1]
            acc = _accuracy_column(dataset, pts)
            for rank, r in enumerate(rate_order(pts, "bpp")):
                row = _one(pts[pts.rate == r], f"{dataset} at {r}", label)
                count = _num(row, "n_images")
                cells = [name, _qp_cell(r), _num(row, "bpp"), _num(row, acc), *_times(row, count)]
                rows.append((name, rank, cells))
        indexed = [(i, name, rank, cells) for i, (name, rank, cells) in enumerate(rows)]
        indexed.sort(key=lambda t: (t[1], t[2]))
        path = folder / f"final_{tag}.csv"
        _write(path, IMAGE_HEADER, [(i, cells) for i, _, _, cells in indexed])
        written.append(path)
    return written
