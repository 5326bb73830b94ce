"""Records -> points table: one row per (dataset, model, codec, rate).

Columns follow docs/design.md (never rename them): dataset, model, codec, rate,
n_images, bytes, pixels, bpp, map, ap50, enc_s, dec_s, front_s, back_s, plus
n_failed, `workers` / `contended` (how many images were coded in parallel while the
times were taken; contended times include the others' load), `role`, `encoder` (what made the
bits and its preset: a CodecLabel) and `metric`, and any
per-record extras, averaged over the images; a record's layer sizes (`layer_bytes` of layered
codecs) are summed like `bytes` into `bytes_<layer>` with a `bpp_<layer>` column each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vcmbench.datasets.sequences import SequenceDataset, SequenceRecord
from vcmbench.metrics.detection import evaluate
from vcmbench.metrics.tracking import COMBINED, evaluate_sequences
from vcmbench.records import Record, coco_results, complete_groups
from vcmbench.vision.tracker import track_sequence

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
    """Aggregate records of the given images into points; evaluates mAP on real detections.

    Only (codec, rate) groups that cover every image in `image_ids` become points
    (records.complete_groups).
    """
    rows = []
    for (codec, rate), recs in complete_groups(records, image_ids).items():
        results = coco_results(recs)
        scores = evaluate(metric, annotation_file, results, image_ids=sorted(image_ids))
        n = len(recs)
        total_bytes = sum(r.bytes for r in recs)
        total_pixels = sum(r.pixels for r in recs)
        row = {
            "dataset": dataset_name,
            "model": model_name,
            "codec": codec,
            "rate": rate,
            "n_images": n,
            "n_failed": sum(r.status != "ok" for r in recs),
            "bytes": total_bytes,
            "pixels": total_pixels,
            "bpp": 8.0 * total_bytes / total_pixels,
            "map": scores["map"],
            "ap50": scores["ap50"],
            "enc_s": sum(r.enc_s for r in recs) / n,
            "dec_s": sum(r.dec_s for r in recs) / n,
            "front_s": sum(r.front_s for r in recs) / n,
            "back_s": sum(r.back_s for r in recs) / n,
            # whether enc_s/dec_s were taken while other images were coded in parallel
            "workers": max(r.workers for r in recs),
            "contended": max(r.workers for r in recs) > 1,
            **label_columns(labels, codec),
            "metric": metric,  # the evaluator that gave map/ap50: coco | oid
            **feature_hashes(recs),
            **mask_scores(metric, annotation_file, results, image_ids, recs),
        }
        extras = {k for r in recs for k in r.extra} | {f"bytes_{k}" for r in recs for k in r.layer_bytes}
        for k in sorted(extras):
            if k.startswith("bytes_"):
                # a layer's bytes: summed like `bytes`, with its own bpp (bpp_base + bpp_enh = bpp)
                row[k] = int(sum(r.layer_bytes.get(k[len("bytes_") :], 0) for r in recs))
                row["bpp_" + k[len("bytes_") :]] = 8.0 * row[k] / total_pixels
            else:
                vals = [r.extra[k] for r in recs if k in r.extra]
                row[k] = sum(vals) / len(vals) if vals else float("nan")
        rows.append(row)
    df = pd.DataFrame(rows, columns=POINT_COLUMNS if not rows else None)
    if rows:
        df = df.sort_values(["codec", "bpp"], kind="stable").reset_index(drop=True)
    return df


def mask_scores(
    metric: str, annotation_file: Path, results: list[dict], image_ids: list[int], recs: list[Record]
) -> dict[str, float]:
    """map_segm / ap50_segm when the network segments (its records carry masks): COCO mask AP, or
    for an OpenImages set the instance-segmentation challenge's mask mAP@0.5."""
    if not any(r.masks or r.frame_masks for r in recs):
        return {}
    segm = evaluate(metric, annotation_file, results, image_ids=sorted(image_ids), iou_type="segm")
    return {"map_segm": segm["map"], "ap50_segm": segm["ap50"]}


def has_mask_truth(annotation_file: Path) -> bool:
    """Whether every non-crowd annotation of a set has a segmentation: mask AP can be computed."""
    from vcmbench.metrics.ground_truth import load_ground_truth

    anns = load_ground_truth(annotation_file)[0].get("annotations", [])
    return bool(anns) and all(a.get("segmentation") for a in anns if not a.get("iscrowd", 0))


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
    one payload, kbps = 8 x bytes x fps / (1000 x frames), bpp over all its frames' pixels, COCO AP
    and AP50 over its frames (pycocotools) and, for tracking sets, MOTA / IDF1 / HOTA (TrackEval)
    of the tracker (`tracker`: ByteTracker settings) run on the decoded detections; `map` is MOTA
    for tracking sets, AP otherwise (docs/design.md). Per class: kbps is the mean of its sequences'
    kbps weighted by duration, and every metric is recomputed jointly over the class's frames
    (AP over the union of its frames, MOTA/IDF1/HOTA combined over its sequences), as the CTC
    does; times are per frame over the class's frames.
    """
    by_id = {s.sequence_id: s for s in dataset.sequences}
    metric = "mota" if dataset.tracking else dataset.metric
    seq_rows, class_rows = [], []
    for (codec, rate), recs in complete_groups(records, dataset.image_ids).items():
        common = {"dataset": dataset.name, "model": model_name, "codec": codec, "rate": rate}
        tracks = {}
        if dataset.tracking:
            tracks = {
                by_id[r.image_id].name: (
                    _gt_frames(dataset, by_id[r.image_id]),
                    track_sequence(r.frame_detections, **(tracker or {})),
                )
                for r in recs
            }
        for r in recs:
            seq = by_id[r.image_id]
            scores = _sequence_scores(dataset, [r], [seq], {seq.name: tracks[seq.name]} if tracks else {})
            row = {
                **common,
                **_totals([r], [seq]),
                "sequence": seq.name,
                "class": seq.seq_class,
                "fps": seq.fps,
                **scores,
                **label_columns(labels, codec),
                "metric": metric,
            }
            row.update(_extras([r], row["pixels"]))
            seq_rows.append(row)
        for cls in dataset.classes:
            members = [r for r in recs if by_id[r.image_id].seq_class == cls]
            seqs = [by_id[r.image_id] for r in members]
            scores = _sequence_scores(dataset, members, seqs, {s.name: tracks[s.name] for s in seqs} if tracks else {})
            totals = _totals(members, seqs)
            durations = [s.duration_s for s in seqs]
            kbps = [8.0 * r.bytes * s.fps / (1000.0 * len(s.frames)) for r, s in zip(members, seqs)]
            totals["kbps"] = sum(k * d for k, d in zip(kbps, durations)) / sum(durations)
            row = {
                **common,
                "class": cls,
                "sequences": len(seqs),
                "duration_s": sum(durations),
                **totals,
                **scores,
                **label_columns(labels, codec),
                "metric": metric,
            }
            row.update(_extras(members, row["pixels"]))
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


def _gt_frames(dataset: SequenceDataset, seq: SequenceRecord) -> list:
    gt = dataset.ground_truth_tracks[seq.sequence_id]
    return [gt[f] for f in seq.frame_ids]


def _totals(recs: list[Record], seqs: list[SequenceRecord]) -> dict:
    """Bytes, pixels, frames, bpp, kbps and per-frame times of records of whole sequences."""
    frames = sum(len(s.frames) for s in seqs)
    total_bytes = sum(r.bytes for r in recs)
    pixels = sum(s.pixels for s in seqs)
    seconds = sum(s.duration_s for s in seqs)
    workers = max(r.workers for r in recs)
    out = {
        "n_images": frames,
        "n_failed": sum(r.status != "ok" for r in recs),
        "frames": frames,
        "bytes": total_bytes,
        "pixels": pixels,
        "bpp": 8.0 * total_bytes / pixels,
        "kbps": 8.0 * total_bytes / (1000.0 * seconds),
        "workers": workers,
        "contended": workers > 1,
        **feature_hashes(recs),
    }
    for t in ("enc_s", "dec_s", "front_s", "back_s"):  # per frame: each record's are per its frames
        out[t] = sum(getattr(r, t) * len(s.frames) for r, s in zip(recs, seqs)) / frames
    return out


def _sequence_scores(dataset: SequenceDataset, recs: list[Record], seqs: list[SequenceRecord], tracks: dict) -> dict:
    """AP/AP50 over the frames of `seqs` jointly and, with tracks, the combined tracking metrics."""
    frame_ids = sorted(i for s in seqs for i in s.frame_ids)
    results = coco_results(recs)
    scores = evaluate(dataset.metric, dataset.annotation_file, results, image_ids=frame_ids)
    out = {"ap": scores["map"], "ap50": scores["ap50"], "map": scores["map"]}
    if has_mask_truth(dataset.annotation_file):  # a video set may annotate boxes only (the synthetic videos)
        out.update(mask_scores(dataset.metric, dataset.annotation_file, results, frame_ids, recs))
    if tracks:
        combined = evaluate_sequences(tracks)[COMBINED]
        out.update({k: combined[k] for k in ("mota", "idf1", "hota", "id_switches")})
        out["map"] = combined["mota"]
    return out


def _extras(recs: list[Record], pixels: int) -> dict:
    """Per-record extras averaged, layer bytes summed (as for images)."""
    out: dict = {}
    for k in sorted({k for r in recs for k in r.extra}):
        vals = [r.extra[k] for r in recs if k in r.extra]
        out[k] = sum(vals) / len(vals)
    for layer in sorted({k for r in recs for k in r.layer_bytes}):
        out[f"bytes_{layer}"] = int(sum(r.layer_bytes.get(layer, 0) for r in recs))
        out[f"bpp_{layer}"] = 8.0 * out[f"bytes_{layer}"] / pixels
    return out
