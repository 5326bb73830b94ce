"""Records -> points table: one row per (dataset, model, codec, rate).

Columns follow docs/design.md (never rename them): dataset, model, codec, rate,
n_images, bytes, pixels, bpp, map, ap50, enc_s, dec_s, front_s, back_s, plus
n_failed, `workers` / `contended` (how many images were coded in parallel while the
times were taken; contended times include the others' load), `role`, `encoder` (what made the
bits and its preset: a CodecLabel) and `metric` (the evaluator whose headline is `map`), the
other columns of every evaluator that applies (metrics.evaluators: mask AP, tracking, keypoint AP,
mIoU), and any per-record extras, averaged over the images; a record's layer sizes (`layer_bytes`
of layered codecs) are summed like `bytes` into `bytes_<layer>` with a `bpp_<layer>` column each.

Images and sequences share one core over a group of records (`tally`, `extras`, `group_scores`);
they differ only in their layout: a sequence's rows add kbps and keep the box AP in `ap`, and
sequences get a second table per class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vcmbench.datasets.sequences import SequenceDataset, SequenceRecord
from vcmbench.metrics.evaluators import ItemSet, SetScores, score_items
from vcmbench.records import Record, coco_results, complete_groups

POINT_COLUMNS = [
    "dataset", "model", "codec", "rate", "n_images", "n_failed", "bytes", "pixels", "bpp",
    "map", "ap50", "enc_s", "dec_s", "front_s", "back_s",
]  # fmt: skip


@dataclass(frozen=True)
class CodecLabel:
    """What the points table says of a codec beside its numbers: the yaml's meta.role
    (feature_anchor | image_anchor | uncompressed | test) and its encoder with the preset
    (Codec.describe_encoder), so an anchor is never an unnamed one."""

    role: str = "test"
    encoder: str = ""


def label_columns(labels: dict[str, CodecLabel] | None, codec: str) -> dict[str, str]:
    label = (labels or {}).get(codec, CodecLabel())
    return {"role": label.role, "encoder": label.encoder}


def build_points(
    records: list[Record],
    dataset_name: str,
    model_name: str,
    metric: str,
    annotation_file: Path,
    image_ids: list[int],
    labels: dict[str, CodecLabel] | None = None,
) -> pd.DataFrame:
    """Aggregate records of the given images into points, scored by every evaluator that applies
    (metrics.evaluators: `metric`'s box AP, mask AP when the network segments).

    Only (codec, rate) groups that cover every image in `image_ids` become points
    (records.complete_groups).
    """
    items = ItemSet(metric, annotation_file, sorted(image_ids))
    rows = []
    for (codec, rate), recs in complete_groups(records, image_ids).items():
        t = tally(recs, [1] * len(recs), [r.pixels for r in recs])
        scores = group_scores(items, recs, {})
        row = {
            "dataset": dataset_name,
            "model": model_name,
            "codec": codec,
            "rate": rate,
            **_pick(t, "n_images", "n_failed", "bytes", "pixels", "bpp"),
            "map": scores.map,
            "ap50": scores.columns.get("ap50", math.nan),  # NaN where no box metric applies (mIoU's sets)
            **_pick(t, *TIMES),
            # whether enc_s/dec_s were taken while other images were coded in parallel
            **_pick(t, "workers", "contended"),
            **label_columns(labels, codec),
            "metric": scores.metric,  # the evaluator that gave map: coco | oid | miou
            **_pick(t, *HASHES),
            **{k: v for k, v in scores.columns.items() if k not in ("map", "ap50")},
            **extras(recs, t["pixels"]),
        }
        rows.append(row)
    df = pd.DataFrame(rows, columns=POINT_COLUMNS if not rows else None)
    if rows:
        df = df.sort_values(["codec", "bpp"], kind="stable").reset_index(drop=True)
    return df


# ------------------------------------------------------------------ the core: a group of records

TIMES = ("enc_s", "dec_s", "front_s", "back_s")
HASHES = ("features_hash", "decoded_hash")


def tally(recs: list[Record], frames: list[int], pixels: list[int]) -> dict:
    """What a group of records (one per item: an image, a sequence) adds up to, whatever its items
    are: n_images (frames), n_failed, bytes, pixels and bpp, times per frame (each record's are per
    its `frames`), how they were timed (workers, contended) and the feature digests."""
    n = sum(frames)
    total_bytes = sum(r.bytes for r in recs)
    total_pixels = sum(pixels)
    workers = max(r.workers for r in recs)
    return {
        "n_images": n,
        "n_failed": sum(r.status != "ok" for r in recs),
        "bytes": total_bytes,
        "pixels": total_pixels,
        "bpp": 8.0 * total_bytes / total_pixels,
        **{t: sum(getattr(r, t) * f for r, f in zip(recs, frames)) / n for t in TIMES},
        "workers": workers,
        "contended": workers > 1,
        **feature_hashes(recs),
    }


def extras(recs: list[Record], pixels: int) -> dict:
    """The records' extras averaged over those that have each, and their layer sizes (layered
    codecs' `layer_bytes`) summed like `bytes` into `bytes_<layer>`, each followed by its own
    `bpp_<layer>` (bpp_base + bpp_enh = bpp); in the order of the column names."""
    averaged = {k for r in recs for k in r.extra}
    layers = {f"bytes_{k}" for r in recs for k in r.layer_bytes}
    out: dict = {}
    for k in sorted(averaged | layers):
        if k in averaged:
            vals = [r.extra[k] for r in recs if k in r.extra]
            out[k] = sum(vals) / len(vals)
        else:
            layer = k[len("bytes_") :]
            out[k] = int(sum(r.layer_bytes.get(layer, 0) for r in recs))
            out[f"bpp_{layer}"] = 8.0 * out[k] / pixels
    return out


def group_scores(items: ItemSet, recs: list[Record], memo: dict) -> SetScores:
    """Every applicable evaluator's figures over `items` from their records; `memo` lives as long as
    one (codec, rate) group, whose items may be scored in several sets (a sequence, its class)."""
    return score_items(items, recs, coco_results(recs), memo)


def _pick(values: dict, *keys: str) -> dict:
    return {k: values[k] for k in keys}


# ------------------------------------------------------------------------------ sequences

SEQUENCE_COLUMNS = POINT_COLUMNS + ["sequence", "class", "frames", "fps", "kbps"]


def build_sequence_points(
    records: list[Record],
    dataset: SequenceDataset,
    model_name: str,
    labels: dict[str, CodecLabel] | None = None,
    tracker: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records of sequences -> (points: one row per sequence, codec and rate; classes: one row per
    class of sequences, codec and rate).

    A (codec, rate) becomes points only when it covers every sequence. Per sequence: bytes of its
    one payload, kbps = 8 x bytes x fps / (1000 x frames), bpp over all its frames' pixels, and
    every evaluator that applies (metrics.evaluators) over its frames: the box AP and AP50
    (pycocotools) in `ap` / `ap50`, mask AP where the network segments and the set has masks, and,
    for tracking sets, MOTA / IDF1 / HOTA (TrackEval) of the tracker run on the decoded detections
    (`tracker`: the `tracker:` settings; its kind decided once over all the records, `vision.trackers`,
    and named in a `tracker` column); `map` is the headline evaluator's (MOTA for tracking
    sets, AP otherwise; docs/design.md). Per class: kbps is the mean of its sequences' kbps
    weighted by duration, and every metric is recomputed jointly over the class's frames (AP over
    the union of its frames, MOTA/IDF1/HOTA combined over its sequences), as the CTC does; times
    are per frame over the class's frames.
    """
    by_id = {s.sequence_id: s for s in dataset.sequences}
    tracker, ran = _tracker(dataset, records, tracker)
    seq_rows, class_rows = [], []
    for (codec, rate), recs in complete_groups(records, dataset.image_ids).items():
        common = {"dataset": dataset.name, "model": model_name, "codec": codec, "rate": rate}
        memo: dict = {}  # what an evaluator does once per sequence of this group (its tracks)
        for r in recs:
            seq = by_id[r.image_id]
            scores = group_scores(_frames(dataset, [seq], tracker), [r], memo)
            row = {
                **common,
                **_sequence_totals([r], [seq]),
                "sequence": seq.name,
                "class": seq.seq_class,
                "fps": seq.fps,
                **_sequence_scores(scores),
                **label_columns(labels, codec),
                "metric": scores.metric,
                **ran,
            }
            row.update(extras([r], row["pixels"]))
            seq_rows.append(row)
        for cls in dataset.classes:
            members = [r for r in recs if by_id[r.image_id].seq_class == cls]
            seqs = [by_id[r.image_id] for r in members]
            scores = group_scores(_frames(dataset, seqs, tracker), members, memo)
            totals = _sequence_totals(members, seqs)
            durations = [s.duration_s for s in seqs]
            kbps = [8.0 * r.bytes * s.fps / (1000.0 * len(s.frames)) for r, s in zip(members, seqs)]
            totals["kbps"] = sum(k * d for k, d in zip(kbps, durations)) / sum(durations)
            row = {
                **common,
                "class": cls,
                "sequences": len(seqs),
                "duration_s": sum(durations),
                **totals,
                **_sequence_scores(scores),
                **label_columns(labels, codec),
                "metric": scores.metric,
                **ran,
            }
            row.update(extras(members, row["pixels"]))
            class_rows.append(row)
    points = pd.DataFrame(seq_rows, columns=SEQUENCE_COLUMNS if not seq_rows else None)
    classes = pd.DataFrame(class_rows)
    if seq_rows:
        order = {s.name: i for i, s in enumerate(dataset.sequences)}
        points = points.sort_values(
            ["codec", "sequence", "kbps"], key=lambda c: c.map(order) if c.name == "sequence" else c, kind="stable"
        ).reset_index(drop=True)
        classes = classes.sort_values(["codec", "class", "kbps"], kind="stable").reset_index(drop=True)
    return points, classes


def _tracker(dataset: SequenceDataset, records: list[Record], tracker: dict | None) -> tuple[dict | None, dict]:
    """The tracker settings with `kind` decided over all the records (vision.trackers: one tracker for
    the whole run, a failed sequence's included), and the rows' `tracker` column naming it; the
    settings as given and no column for sets without track ids."""
    if not dataset.tracking:
        return tracker, {}
    from vcmbench.vision.trackers import TrackerChoice

    kind = TrackerChoice.from_settings(tracker).resolve(any(r.has_embeddings for r in records))
    return {**(tracker or {}), "kind": kind}, {"tracker": kind}


def feature_hashes(recs: list[Record]) -> dict[str, str]:
    """`features_hash` / `decoded_hash` of a point: one digest over its items' hashes (in item
    order), so two points tables say whether their runs computed the same features; empty when
    a record has none (older records, failed items)."""
    import hashlib

    out = {}
    for column, attr in (("features_hash", "feature_hash"), ("decoded_hash", "decoded_hash")):
        values = [getattr(r, attr) for r in sorted(recs, key=lambda r: r.image_id)]
        out[column] = hashlib.blake2b("|".join(values).encode(), digest_size=12).hexdigest() if all(values) else ""
    return out


def _frames(dataset: SequenceDataset, seqs: list[SequenceRecord], tracker: dict | None) -> ItemSet:
    """The frames of `seqs`, scored jointly (one sequence's, or a class's)."""
    frame_ids = sorted(i for s in seqs for i in s.frame_ids)
    return ItemSet(dataset.metric, dataset.annotation_file, frame_ids, dataset, tracker)


def _sequence_totals(recs: list[Record], seqs: list[SequenceRecord]) -> dict:
    """The core's totals of records of whole sequences (pixels and frames are the sequences'), with
    `frames` and kbps over their duration, in the sequence tables' column order."""
    t = tally(recs, [len(s.frames) for s in seqs], [s.pixels for s in seqs])
    seconds = sum(s.duration_s for s in seqs)
    return {
        **_pick(t, "n_images", "n_failed"),
        "frames": t["n_images"],
        **_pick(t, "bytes", "pixels", "bpp"),
        "kbps": 8.0 * t["bytes"] / (1000.0 * seconds),
        **_pick(t, "workers", "contended", *HASHES, *TIMES),
    }


def _sequence_scores(scores: SetScores) -> dict:
    """A sequence table's scores: the box AP stays in `ap` beside the headline `map` (MOTA on a
    tracking set), then the other evaluators' columns; `ap` and `ap50` are NaN where no box metric
    applies (PandaSet, scored by mIoU alone)."""
    rest = {k: v for k, v in scores.columns.items() if k not in ("map", "ap50")}
    box = {k: scores.columns.get(k, math.nan) for k in ("map", "ap50")}
    return {"ap": box["map"], "ap50": box["ap50"], "map": scores.map, **rest}
