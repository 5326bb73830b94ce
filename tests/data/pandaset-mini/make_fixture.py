"""Writes tests/data/pandaset-mini: two short PandaSet sequences in the MPEG FCM platform's layout.

    PandaSet/057/camera/front_camera/00.jpg 01.jpg 02.jpg   64x36 JPEGs
    PandaSet/057/annotations/057.npz                         'gt': an object array, one (N, 3) array a frame
    PandaSet/057/seqinfo.ini                                 frameRate=30
    PandaSet/003/camera/front_camera/00.jpg 01.jpg          64x36 JPEGs
    PandaSet/003/annotations/003.npz                         'gt': one int32 array (frames, N, 3)

The points are rows (x, y, PandaSet category); tests/datasets/test_pandaset.py spells them out
again (`POINTS`). Frame 02 of 057 has no labelled point. Rerun only on purpose:
`.venv/bin/python tests/data/pandaset-mini/make_fixture.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SIZE = (64, 36)  # the real 1920x1080 frames, scaled down 30 times

#: sequence -> per frame, its points (x, y, category)
POINTS: dict[str, list[list[tuple[int, int, int]]]] = {
    "057": [
        [(0, 0, 7), (63, 35, 13), (10, 20, 30), (5, 5, 0)],  # road, car, pedestrian, unlabeled
        [(1, 2, 5), (2, 3, 41)],  # vegetation, building
        [],
    ],
    "003": [
        [(30, 10, 13), (31, 11, 14)],  # car, pickup truck
        [(32, 12, 8), (0, 35, 11)],  # lane line marking, sidewalk
    ],
}


def frame(seq: int, k: int) -> Image.Image:
    """A flat frame whose colour says which sequence and frame it is (JPEG keeps flat colours nearly exact)."""
    return Image.new("RGB", SIZE, (40 * seq, 60 * k, 128))


def main() -> None:
    for i, (name, frames) in enumerate(POINTS.items(), start=1):
        seq = HERE / "PandaSet" / name
        (seq / "camera" / "front_camera").mkdir(parents=True, exist_ok=True)
        (seq / "annotations").mkdir(exist_ok=True)
        for k in range(len(frames)):
            frame(i, k).save(seq / "camera" / "front_camera" / f"{k:02d}.jpg", quality=95)
        if name == "057":  # ragged: an object array, as the platform's files hold them
            gt = np.empty(len(frames), dtype=object)
            for k, rows in enumerate(frames):
                gt[k] = np.array(rows, dtype=np.int64).reshape(-1, 3)
            (seq / "seqinfo.ini").write_text("[Sequence]\nname=057\nframeRate=30\n")
        else:  # as many points in every frame: a plain integer array also passes
            gt = np.array(frames, dtype=np.int32)
        np.savez(seq / "annotations" / f"{name}.npz", gt=gt)


if __name__ == "__main__":
    main()
