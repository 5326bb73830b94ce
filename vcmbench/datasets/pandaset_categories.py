"""The category tables MPEG's FCM platform scores PandaSet semantic segmentation with, as data.

A point of PandaSet's ground truth carries a PandaSet semantic category (0..42); the network
(detectron2's Panoptic FPN, trained on COCO panoptic) labels a pixel with a COCO thing or stuff
category. The platform brings both to one coarser category set, the VCM categories (0..18), and
scores ten of them. Three tables do it, whose values here are those of CompressAI-Vision's
`compressai_vision/evaluators/config.py` (HEAD 31165da: `coco_things_to_pandaset`,
`coco_stuff_to_pandaset`, `pandaset_to_vcm_category`, `vcm_eval_category`):

* thing -> PandaSet, keyed as detectron2 labels a thing segment: the 0-based 80-class index
  (the order of `vcmbench.datasets.coco_categories.COCO_CATEGORIES`);
* stuff -> PandaSet, keyed as detectron2's Panoptic FPN labels a stuff segment: the index of its
  semantic head, 1..53 over the 53 COCO panoptic stuff categories in id order (0 is the head's
  "things" class and -1 background, both unlabeled). `COCO_STUFF` keeps each index's COCO
  panoptic id (92..200), checked against detectron2's `_get_coco_panoptic_separated_meta`;
* PandaSet -> VCM.

Unlabeled (PandaSet 0, VCM 0) is where everything without a counterpart goes: COCO things with no
road-scene meaning (backpack, cup, ...), stuff such as sky or sea, pixels no segment covers. The
platform scores only `VCM_EVAL_CATEGORIES`, but it drops no point: a ground-truth point of an
unscored category (unlabeled included) that is predicted as a scored one is that category's false
positive (`vcmbench.metrics.semseg`).
"""

from __future__ import annotations

import numpy as np

from vcmbench.datasets.coco_categories import COCO_CATEGORIES
from vcmbench.errors import MetricError

#: PandaSet's semantic categories; the index is the id the annotations carry (0: unlabeled).
# fmt: off
PANDASET_CATEGORIES: tuple[str, ...] = (
    "unlabeled", "Smoke", "Exhaust", "Spray or rain", "Reflection", "Vegetation", "Ground", "Road",
    "Lane Line Marking", "Stop Line Marking", "Other Road Marking", "Sidewalk", "Driveway", "Car",
    "Pickup Truck", "Medium-sized Truck", "Semi-truck", "Towed Object", "Motorcycle",
    "Other Vehicle - Construction Vehicle", "Other Vehicle - Uncommon", "Other Vehicle - Pedicab",
    "Emergency Vehicle", "Bus", "Personal Mobility Device", "Motorized Scooter", "Bicycle", "Train",
    "Trolley", "Tram / Subway", "Pedestrian", "Pedestrian with Object", "Animals - Bird",
    "Animals - Other", "Pylons", "Road Barriers", "Signs", "Cones", "Construction Signs",
    "Temporary Construction Barriers", "Rolling Containers", "Building", "Other Static Object",
)

#: The VCM categories; the index is the id.
VCM_CATEGORIES: tuple[str, ...] = (
    "unlabeled", "vegetation", "ground", "road", "sidewalk", "car", "truck", "motorcycle", "bicycle",
    "other vehicle", "bus", "train", "pedestrian", "animals - bird", "animals - other", "signs",
    "road barriers", "building", "other static object",
)
# fmt: on

#: The VCM categories the platform's mIoU is the mean over (those that occur in the ground truth).
VCM_EVAL_CATEGORIES: tuple[int, ...] = (1, 3, 4, 5, 6, 7, 8, 10, 12, 17)
VCM_UNLABELED = 0
PANDASET_UNLABELED = 0

#: PANDASET_TO_VCM[p]: the VCM category of PandaSet category p.
# fmt: off
PANDASET_TO_VCM: tuple[int, ...] = (
    0, 0, 5, 0, 0, 1, 2, 3, 3, 3,         # 0..9: unlabeled, smoke, exhaust -> car, ..., road markings -> road
    3, 4, 4, 5, 6, 6, 6, 5, 7, 9,         # 10..19: driveway -> sidewalk, trucks -> truck, towed -> car
    9, 9, 9, 10, 7, 7, 8, 11, 0, 11,      # 20..29: other vehicles, bus, scooters -> motorcycle, trolley -> 0
    12, 12, 13, 14, 16, 16, 15, 16, 15, 16,  # 30..39: pedestrians, animals, pylons/cones -> road barriers
    18, 17, 18,                           # 40..42: rolling containers, building, other static object
)

#: COCO_THING_TO_PANDASET[k]: the PandaSet category of the k-th COCO thing (0 person ... 79 toothbrush).
COCO_THING_TO_PANDASET: tuple[int, ...] = (
    30, 26, 13, 18, 20, 23, 27, 14, 20, 42,  # 0..9: person, bicycle, car, motorcycle, airplane, bus, train, truck, boat, traffic light
    42, 36, 42, 42, 32, 33, 33, 33, 33, 33,  # 10..19: fire hydrant, stop sign, parking meter, bench, bird, cat ... cow
    33, 33, 33, 33, 0, 0, 0, 0, 0, 0,        # 20..29: elephant ... giraffe, backpack ... frisbee
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,            # 30..39
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,            # 40..49
    0, 0, 0, 0, 0, 0, 42, 0, 5, 0,           # 50..59: chair -> other static object, potted plant -> vegetation
    42, 0, 0, 0, 0, 0, 0, 0, 0, 0,           # 60..69: dining table -> other static object
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,            # 70..79
)

#: COCO_STUFF[k - 1] for stuff index k (1..53): (COCO panoptic category id, name, PandaSet category).
COCO_STUFF: tuple[tuple[int, str, int], ...] = (
    (92, "banner", 42), (93, "blanket", 0), (95, "bridge", 0), (100, "cardboard", 0), (107, "counter", 0),
    (109, "curtain", 0), (112, "door-stuff", 0), (118, "floor-wood", 41), (119, "flower", 5), (122, "fruit", 5),
    (125, "gravel", 6), (128, "house", 41), (130, "light", 0), (133, "mirror-stuff", 4), (138, "net", 39),
    (141, "pillow", 0), (144, "platform", 0), (145, "playingfield", 6), (147, "railroad", 6), (148, "river", 0),
    (149, "road", 7), (151, "roof", 41), (154, "sand", 6), (155, "sea", 0), (156, "shelf", 42),
    (159, "snow", 0), (161, "stairs", 0), (166, "tent", 42), (168, "towel", 0), (171, "wall-brick", 41),
    (175, "wall-stone", 41), (176, "wall-tile", 41), (177, "wall-wood", 41), (178, "water-other", 0),
    (180, "window-blind", 41), (181, "window-other", 41), (184, "tree-merged", 5), (185, "fence-merged", 39),
    (186, "ceiling-merged", 0), (187, "sky-other-merged", 0), (188, "cabinet-merged", 42),
    (189, "table-merged", 42), (190, "floor-other-merged", 41), (191, "pavement-merged", 11),
    (192, "mountain-merged", 0), (193, "grass-merged", 5), (194, "dirt-merged", 6), (195, "paper-merged", 0),
    (196, "food-other-merged", 0), (197, "building-other-merged", 41), (198, "rock-merged", 0),
    (199, "wall-other-merged", 41), (200, "rug-merged", 0),
)
# fmt: on

#: COCO panoptic id -> PandaSet category, things and stuff together (0, the panoptic format's void:
#: unlabeled).
_PANDASET_OF_COCO: dict[int, int] = {
    0: PANDASET_UNLABELED,
    **{cid: COCO_THING_TO_PANDASET[k] for k, (cid, _) in enumerate(COCO_CATEGORIES)},
    **{cid: p for cid, _, p in COCO_STUFF},
}


def pandaset_of_thing(index: int) -> int:
    """The PandaSet category of a thing segment labelled with the 0-based COCO thing index."""
    if not 0 <= index < len(COCO_THING_TO_PANDASET):
        raise MetricError(f"thing category index {index}: not a COCO thing (0..79, detectron2's contiguous ids)")
    return COCO_THING_TO_PANDASET[index]


def pandaset_of_stuff(index: int) -> int:
    """The PandaSet category of a stuff segment labelled with Panoptic FPN's semantic index (1..53;
    0 'things' and -1 background are unlabeled, as the platform's table has them)."""
    if index in (-1, 0):
        return PANDASET_UNLABELED
    if not 1 <= index <= len(COCO_STUFF):
        raise MetricError(f"stuff category index {index}: not a COCO panoptic stuff index (-1..53)")
    return COCO_STUFF[index - 1][2]


def vcm_of_pandaset(category: int) -> int:
    """The VCM category of a PandaSet category (0..42)."""
    if not 0 <= category < len(PANDASET_TO_VCM):
        raise MetricError(f"PandaSet category {category}: not one of 0..{len(PANDASET_TO_VCM) - 1}")
    return PANDASET_TO_VCM[category]


def vcm_of_coco(category_id: int) -> int:
    """The VCM category of a COCO panoptic category id (things 1..90, stuff 92..200; 0, no segment,
    is unlabeled): through its PandaSet category, as the platform maps a predicted segment."""
    if category_id not in _PANDASET_OF_COCO:
        raise MetricError(
            f"COCO panoptic category id {category_id}: neither a thing (1..90) nor a stuff id (92..200) "
            "of COCO panoptic; map the model's labels to COCO panoptic ids first"
        )
    return PANDASET_TO_VCM[_PANDASET_OF_COCO[category_id]]


#: VCM category of each COCO panoptic id 0..200 (-1: an id that is neither a thing nor a stuff)
_VCM_OF_COCO_TABLE = np.array([vcm_of_coco(i) if i in _PANDASET_OF_COCO else -1 for i in range(201)], dtype=np.int64)
_VCM_OF_PANDASET_TABLE = np.array(PANDASET_TO_VCM, dtype=np.int64)


def vcm_of_coco_array(ids: np.ndarray) -> np.ndarray:
    """`vcm_of_coco` of every id of an integer array at once (a panoptic map's ids at the points)."""
    ids = np.asarray(ids, dtype=np.int64)
    inside = (ids >= 0) & (ids < len(_VCM_OF_COCO_TABLE))
    out = np.where(inside, _VCM_OF_COCO_TABLE[np.where(inside, ids, 0)], -1)
    if (out < 0).any():
        vcm_of_coco(int(ids[out < 0].flat[0]))  # raises, naming the id
    return out


def vcm_of_pandaset_array(categories: np.ndarray) -> np.ndarray:
    """`vcm_of_pandaset` of every category of an integer array at once (ground-truth points)."""
    cats = np.asarray(categories, dtype=np.int64)
    bad = (cats < 0) | (cats >= len(_VCM_OF_PANDASET_TABLE))
    if bad.any():
        vcm_of_pandaset(int(cats[bad].flat[0]))  # raises, naming the category
    return _VCM_OF_PANDASET_TABLE[cats]
