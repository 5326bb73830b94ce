"""Pose estimation, registered: `map_kp` / `ap50_kp`, COCO keypoint AP (pycocotools' OKS evaluation,
`metrics.keypoints`) of the detections' keypoints, whenever the network gives keypoints and the set's
ground truth has keypoint categories.

Like mask AP it is a figure beside the rate-distortion `map` (the person boxes' AP), not one (no
headline): the points table of a keypoint network holds both, so a sweep shows what coding does to
the boxes and to the poses of the same detections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from vcmbench.metrics.evaluators import Evaluator, ItemRecord, ItemSet, register
from vcmbench.metrics.ground_truth import load_ground_truth
from vcmbench.metrics.keypoints import keypoint_ap


def has_keypoint_truth(annotation_file: Path) -> bool:
    """Whether a category of the set names keypoints (COCO's person_keypoints files do)."""
    cats = load_ground_truth(annotation_file)[0].get("categories", [])
    return any(c.get("keypoints") for c in cats)


def gives_keypoints(items: ItemSet, records: Sequence[ItemRecord]) -> bool:
    """The records carry keypoints and the set's ground truth can score them."""
    return any(r.has_keypoints for r in records) and has_keypoint_truth(items.annotation_file)


def keypoint_scores(
    items: ItemSet, records: Sequence[ItemRecord], results: list[dict], memo: dict
) -> Mapping[str, float]:
    """COCO keypoint AP of the results that carry keypoints, over the set's frames."""
    poses = [r for r in results if "keypoints" in r]
    kp = keypoint_ap(items.annotation_file, poses, items.frame_ids)
    return {"map_kp": kp["map"], "ap50_kp": kp["ap50"]}


KEYPOINTS = register(
    Evaluator(
        "keypoints",
        "COCO keypoint AP (OKS)",
        columns=("map_kp", "ap50_kp"),
        headline=None,
        applies=gives_keypoints,
        evaluate_items=keypoint_scores,
    )
)
