"""Sequence dataset contract: ordered frames, a frame rate and a class, streamed one at a time.

Every video set (SFU-HW-Objects-v1, MOT-challenge folders such as TVD and HiEve, the synthetic
videos) looks the same to the runner: an ordered list of sequences, each with its frames (a
frame is an `ImageRecord`, so its COCO image id is unique across the whole set), its fps and
the class of sequences it is reported under, plus one COCO-format annotation file over all
frames. In that file each image also has `sequence_id` and `frame_index`, and each annotation
a `track_id` where the source has identities (`tracking` is then true and MOTA/IDF1/HOTA are
computed). Frames are loaded one at a time (`frames`): a sequence is never held in memory.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from vcmbench.datasets.base import ImageRecord, Sample, item_view, load_sample
from vcmbench.errors import DatasetError
from vcmbench.paths import is_none


@dataclass(frozen=True)
class SequenceRecord:
    """One sequence: its id (the work item's id in records), name, class, fps and frames in order."""

    sequence_id: int
    name: str
    seq_class: str
    fps: float
    frames: tuple[ImageRecord, ...]

    @property
    def image_id(self) -> int:
        """The work item's id, as an image's is (records key on it)."""
        return self.sequence_id

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps

    @property
    def pixels(self) -> int:
        """Original pixels over all frames: the denominator of the sequence's bpp."""
        return sum(f.height * f.width for f in self.frames)

    @property
    def frame_ids(self) -> list[int]:
        return [f.image_id for f in self.frames]


class SequenceDataset:
    """Ordered sequences plus one COCO-format annotation file over all their frames.

    Subclasses give `load_frame` (how one frame's pixels are read: image files, a YUV file);
    the default reads `image_dir / frame.file_name`.
    """

    name: str = "sequences"
    metric: str = "coco"
    #: whether the annotations carry track ids (MOTA, IDF1, HOTA are then computed)
    tracking: bool = False

    def __init__(
        self, name: str, annotation_file: Path, image_dir: Path, sequences: list[SequenceRecord], tracking: bool = False
    ):
        self.name = name
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        self.sequences = sequences
        self.tracking = bool(tracking)
        ids = [f.image_id for s in sequences for f in s.frames]
        if len(set(ids)) != len(ids):
            raise DatasetError(f"{self.annotation_file}: frame image ids repeat across sequences; each must be unique")
        for s in sequences:
            if not s.fps > 0:
                raise DatasetError(f"{self.annotation_file}: sequence {s.name!r} has fps={s.fps}; give a positive rate")
            if not s.frames:
                raise DatasetError(f"{self.annotation_file}: sequence {s.name!r} has no frames")

    @property
    def records(self) -> list[SequenceRecord]:
        """The work items of the sweep: one per sequence."""
        return self.sequences

    def __len__(self) -> int:
        return len(self.sequences)

    def subset(self, sequence_ids: list[int]) -> SequenceDataset:
        """A view holding only the sequences of `sequence_ids` (a shard), in the dataset's order."""
        return item_view(self, "sequences", self.sequences, sequence_ids)

    @property
    def image_ids(self) -> list[int]:
        """The work items' ids (sequence ids), as Dataset.image_ids are the images'."""
        return [s.sequence_id for s in self.sequences]

    @property
    def frame_ids(self) -> list[int]:
        return [i for s in self.sequences for i in s.frame_ids]

    @property
    def classes(self) -> list[str]:
        """Classes of sequences in first-seen order."""
        return list(dict.fromkeys(s.seq_class for s in self.sequences))

    def load_frame(self, frame: ImageRecord) -> Sample:
        return load_sample(self.image_dir, frame, self.annotation_file, "frame")

    def frames(self, sequence: SequenceRecord) -> Iterator[Sample]:
        """The sequence's frames in order, loaded one at a time."""
        for frame in sequence.frames:
            yield self.load_frame(frame)

    @cached_property
    def ground_truth_tracks(self) -> dict[int, dict[int, list[tuple[int, list[float], int]]]]:
        """sequence id -> frame image id -> [(track_id, [x, y, w, h], category_id)] (tracking sets)."""
        coco = json.loads(self.annotation_file.read_text())
        by_frame: dict[int, list] = defaultdict(list)
        for a in coco["annotations"]:
            if a.get("iscrowd", 0):
                continue
            if "track_id" not in a:
                raise DatasetError(
                    f"{self.annotation_file}: annotation {a.get('id')} has no track_id; "
                    "a tracking set needs one on every annotation"
                )
            by_frame[a["image_id"]].append((int(a["track_id"]), [float(v) for v in a["bbox"]], int(a["category_id"])))
        return {s.sequence_id: {f: by_frame.get(f, []) for f in s.frame_ids} for s in self.sequences}


def sequences_from_coco(coco: dict, where: Path) -> list[SequenceRecord]:
    """Sequences from a COCO json with a `sequences` list ({id, name, class, fps}) and images
    carrying `sequence_id` and `frame_index`: the cached form every sequence set converts to."""
    try:
        meta = {int(s["id"]): s for s in coco["sequences"]}
        frames: dict[int, list[tuple[int, ImageRecord]]] = defaultdict(list)
        for im in coco["images"]:
            rec = ImageRecord(int(im["id"]), str(im["file_name"]), int(im["height"]), int(im["width"]))
            frames[int(im["sequence_id"])].append((int(im["frame_index"]), rec))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(
            f"{where}: not a sequence annotation file ({type(exc).__name__}: {exc}); "
            "it needs 'sequences' and images with 'sequence_id' and 'frame_index'"
        ) from None
    out = []
    for sid, s in meta.items():
        ordered = tuple(r for _, r in sorted(frames.get(sid, []), key=lambda t: t[0]))
        out.append(SequenceRecord(sid, str(s["name"]), str(s.get("class", "all")), float(s["fps"]), ordered))
    return out


def first_frames(sequences: list[SequenceRecord], max_frames) -> list[SequenceRecord]:
    """`dataset.max_frames`: each sequence's first N frames (null or none: all of them)."""
    if max_frames is None or is_none(max_frames):
        return sequences
    return [dataclasses.replace(s, frames=s.frames[: int(max_frames)]) for s in sequences]
