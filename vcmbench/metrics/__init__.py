"""Rate and task metrics.

- ``bd``: Bjontegaard deltas (BD-rate, BD-mAP, overlap) between two RD curves.
- ``detection``: COCO AP (pycocotools) and Open Images challenge mAP@0.5 evaluators, and
  conversion of detector outputs to COCO results dicts.

pycocotools is imported only when a COCO evaluation runs, so importing this package is cheap.
"""

from vcmbench.metrics.bd import BDResult, Overlap, bd_metric, bd_overlap, bd_rate, compare
from vcmbench.metrics.detection import coco_ap, detections_to_coco, evaluate, oid_map50

__all__ = [
    "BDResult",
    "Overlap",
    "bd_rate",
    "bd_metric",
    "bd_overlap",
    "compare",
    "coco_ap",
    "oid_map50",
    "evaluate",
    "detections_to_coco",
]
