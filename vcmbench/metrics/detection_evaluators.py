"""The packaged detection evaluators, registered: COCO AP (pycocotools) and the Open Images
challenge mAP@0.5 (MPEG's evaluator), each with its per-item matching for the bootstrap."""

from __future__ import annotations

from vcmbench.metrics.detection import coco_ap
from vcmbench.metrics.evaluators import Evaluator, register
from vcmbench.metrics.item_matches import coco_classes, coco_score, oid_classes, oid_score
from vcmbench.metrics.openimages import oid_map50

COCO = register(
    Evaluator("coco", "COCO AP@[.5:.95]", "COCO mask AP@[.5:.95]", coco_ap, match=coco_classes, score=coco_score)
)
OID = register(
    Evaluator(
        "oid",
        "OpenImages challenge mAP@0.5",
        "OpenImages challenge mask mAP@0.5",
        oid_map50,
        match=oid_classes,
        score=oid_score,
    )
)
