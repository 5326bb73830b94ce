"""Records -> points table: one row per (dataset, model, codec, rate).

Columns follow DESIGN.md (never rename them): dataset, model, codec, rate,
n_images, bytes, pixels, bpp, map, ap50, enc_s, dec_s, front_s, back_s, plus
n_failed, `workers` / `contended` (how many images were coded in parallel while the
times were taken; contended times include the others' load), `role` and `metric`, and any
per-record extras, averaged over the images; a record's layer sizes (`layer_bytes` of layered
codecs) are summed like `bytes` into `bytes_<layer>` with a `bpp_<layer>` column each.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vcmbench.metrics.detection import evaluate
from vcmbench.records import Record, coco_results, complete_groups

POINT_COLUMNS = [
    "dataset", "model", "codec", "rate", "n_images", "n_failed", "bytes", "pixels", "bpp",
    "map", "ap50", "enc_s", "dec_s", "front_s", "back_s",
]  # fmt: skip


def build_points(
    records: list[Record],
    dataset_name: str,
    model_name: str,
    metric: str,
    annotation_file: Path,
    image_ids: list[int],
    roles: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Aggregate records of the given images into points; evaluates mAP on real detections.

    Only (codec, rate) groups that cover every image in `image_ids` become points
    (records.complete_groups).
    """
    rows = []
    for (codec, rate), recs in complete_groups(records, image_ids).items():
        scores = evaluate(metric, annotation_file, coco_results(recs), image_ids=sorted(image_ids))
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
            # the codec yaml's meta.role: feature_anchor | image_anchor | uncompressed | test
            "role": (roles or {}).get(codec, "test"),
            "metric": metric,  # the evaluator that gave map/ap50: coco | oid
        }
        extras = {k for r in recs for k in r.extra} | {f"bytes_{k}" for r in recs for k in r.layer_bytes}
        for k in sorted(extras):
            if k.startswith("bytes_"):
                # a layer's bytes: summed like `bytes`, with its own bpp (bpp_base + bpp_enh = bpp)
                row[k] = int(sum(r.layer_bytes.get(k[len("bytes_"):], 0) for r in recs))
                row["bpp_" + k[len("bytes_"):]] = 8.0 * row[k] / total_pixels
            else:
                vals = [r.extra[k] for r in recs if k in r.extra]
                row[k] = sum(vals) / len(vals) if vals else float("nan")
        rows.append(row)
    df = pd.DataFrame(rows, columns=POINT_COLUMNS if not rows else None)
    if rows:
        df = df.sort_values(["codec", "bpp"], kind="stable").reset_index(drop=True)
    return df
