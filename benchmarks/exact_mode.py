"""What determinism=exact changes and costs: uncompressed AP of ci_frcnn and ci_maskrcnn on their held-out
scenes in exact vs loose arithmetic, and seconds per image of the front and the back in each mode.

    python benchmarks/exact_mode.py                 # 200 held-out scenes (the checkpoints' val set)
    python benchmarks/exact_mode.py --scenes 20     # the default run's 20

Both modes run in this one process on the same images, one thread, alternating image by image (so
both see the same load); AP is pycocotools' on the split detector's detections (front then back on
untouched features, what the `raw` codec measures). The exact/loose ratio of the seconds is the
figure to read; the seconds themselves are this machine's.
"""

from __future__ import annotations

import argparse
import time

import torch
from hydra.utils import instantiate

from vcmbench import determinism
from vcmbench.config import compose_config
from vcmbench.metrics.detection import coco_ap, detections_to_coco
from vcmbench.records import encode_masks


def _rows(image_id, dets, detector) -> list[dict]:
    rows = detections_to_coco(image_id, dets.boxes, dets.scores, dets.labels, detector.category_ids)
    if dets.masks is not None:
        for row, counts in zip(rows, encode_masks(dets.masks.numpy())):
            row["segmentation"] = {"size": list(dets.masks.shape[1:]), "counts": counts}
    return rows


def measure(model: str, scenes: int) -> list[dict]:
    cfg = compose_config("config", [f"model={model}", f"dataset.count={scenes}"])
    dataset, detector = instantiate(cfg.dataset), instantiate(cfg.model)
    dets = {"loose": [], "exact": []}
    seconds = {(m, s): 0.0 for m in dets for s in ("front", "back")}
    for record in dataset.records:
        image = dataset.load(record).image
        for mode in ("loose", "exact"):
            with determinism.arithmetic(mode):
                t0 = time.perf_counter()
                front = detector.front(image)
                t1 = time.perf_counter()
                out = detector.back(front.features, front.meta)
                t2 = time.perf_counter()
            seconds[mode, "front"] += t1 - t0
            seconds[mode, "back"] += t2 - t1
            dets[mode] += _rows(record.image_id, out, detector)
    rows = []
    for mode, found in dets.items():
        box = coco_ap(dataset.annotation_file, found, dataset.image_ids)
        row = {"model": model, "mode": mode, "AP": box["map"], "AP50": box["ap50"]}
        if found and "segmentation" in found[0]:
            segm = coco_ap(dataset.annotation_file, found, dataset.image_ids, iou_type="segm")
            row.update({"mask AP": segm["map"], "mask AP50": segm["ap50"]})
        n = len(dataset.records)
        row.update({"front ms": 1000 * seconds[mode, "front"] / n, "back ms": 1000 * seconds[mode, "back"] / n})
        rows.append(row)
    for key in ("front ms", "back ms"):
        rows[1][key.replace("ms", "x loose")] = rows[1][key] / rows[0][key]
    return rows


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--models", default="ci_frcnn,ci_maskrcnn")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [r for m in args.models.split(",") for r in measure(m, args.scenes)]
    print(f"exact vs loose arithmetic, {args.scenes} held-out scenes, 1 thread, CPU: {determinism.cpu_model()}")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep=""))


if __name__ == "__main__":
    main()
