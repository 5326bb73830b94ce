"""The 80 COCO object categories, and class names as MPEG's files spell them.

COCO-trained detectors (detectron2's model zoo, the MPEG anchor network) label with these ids,
so every dataset converted for them carries this table: then a detection's category id is
the ground truth's without any mapping. MPEG's OpenImages files name the classes in COCO's
words with underscores (`traffic_light`, `cell_phone`), which `coco_id` accepts too.
"""

from __future__ import annotations

#: (COCO category id, name), in the order of the 0-based 80-class index of COCO-trained
#: detectors; the ids skip 12, 26, 29, 30, 45, 66, 68, 69, 71 and 83.
# fmt: off
COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"),
    (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"),
    (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"),
    (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"),
    (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)
# fmt: on


def class_key(name: str) -> str:
    """A class name compared the way MPEG's platform compares them: case and `_`/space blind."""
    return " ".join(str(name).replace("_", " ").lower().split())


_ID_OF = {class_key(name): cid for cid, name in COCO_CATEGORIES}


def coco_id(name: str) -> int | None:
    """The COCO category id of a class name (`cell_phone`, `Cell phone`), None if not a COCO class."""
    return _ID_OF.get(class_key(name))


def coco_category_dicts() -> list[dict]:
    """The table as COCO json `categories`."""
    return [{"id": cid, "name": name} for cid, name in COCO_CATEGORIES]
