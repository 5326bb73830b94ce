"""PandaSet, the semantic segmentation sequences of MPEG's FCM common test conditions, read in the
layout of the FCM platform (CompressAI-Vision): the `pandaset` dataset.

MPEG contributors hold the sequences as the platform's scripts read them::

    fcm_testdata/PandaSet/<seq>/camera/front_camera/00.jpg ... (1920x1080 JPEGs, the front camera)
    fcm_testdata/PandaSet/<seq>/annotations/<seq>.npz          (the ground truth: labelled points)
    fcm_testdata/PandaSet/<seq>/seqinfo.ini                    (frameRate; optional here)

`dataset.root` is the fcm_testdata folder or its PandaSet folder. The ground truth of a frame is
not a mask but points: a row (x, y, category) per labelled pixel, x the column and y the row in
the frame, category a PandaSet semantic category (`vcmbench.datasets.pandaset_categories`). They
stay in the npz and are read a sequence at a time by the evaluator (`ground_truth_points`); the
cached COCO json (sequences and frames, no annotations) records each frame's number of points.

What the platform reads, and where each fact was found (InterDigitalInc/CompressAI-Vision, HEAD
31165da):

- Folders: scripts/evaluation/pandaset/eval_on_pandaset_{vtm,hm,vcmrs}.sh (and
  scripts/evaluation/default_vision_performances.sh) run each sequence with dataset.config.root=
  <testdata>/PandaSet/<seq>, imgs_folder=camera/front_camera, ext=jpg and annotation_file=
  annotations/<seq>.npz, relative to that root: the npz is inside the sequence's folder.
  scripts/metrics/utils.py looks for the same npz and for <seq>/seqinfo.ini.
- Frames: the PANDASET data catalog (compressai_vision/datasets/image.py) lists
  sorted(camera/front_camera/*.jpg); the encoder names its output frames from 0 (png_yuv.py).
- Ground truth: the npz's `gt` (np.load with allow_pickle=True: an object array of one integer
  array per frame, rows (x, y, category); being a pickle, the file must be trusted, here as
  there). SEMANTICSEG-EVAL (compressai_vision/evaluators/evaluators.py) pairs the k-th frame it
  scores with gt[k] and reads the prediction at (y, x) of the 1920x1080 frame. vcmbench pairs
  them the same way and requires as many `gt` entries as frames (the platform fails on a shorter
  `gt` and never reads the extra entries of a longer one), each point inside its frame.
- Frame rate and intra period: 30 and 32 for every sequence (scripts/evaluation/pandaset/
  pandaset.json; the scripts pass its intra_period, the codecs read seqinfo.ini's frameRate).
  vcmbench reads seqinfo.ini's frameRate where the file is there (as the platform's codecs do,
  a value other than 30 is logged) and takes 30 otherwise; a codec's `intra_period: auto` gives 32
  at 30 fps.
- Sequences and classes: the 36 of pandaset.json, reported by scripts/metrics/gen_mpeg_cttc_csv.py
  in three classes, PANDAM1 (057 ... 077), PANDAM2 (003 ... 097) and PANDAM3 (088 ... 124), in
  that order. A class's mIoU there is the mean of its sequences' mIoUs (vcmbench.metrics.semseg).

Ids: sequences 1..N in the order chosen; frame k (from 0, in file-name order) has image id
`sequence_id * 1_000_000 + k` and `frame_index` k. The json is cached under `cache_dir`
(default `$VCMBENCH_CACHE/pandaset` or `~/.cache/vcmbench/pandaset`) with a fingerprint of every
input's path, size and mtime, and rebuilt only when one changes.
"""

from __future__ import annotations

import configparser
import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vcmbench.datasets.cache import cache_root, converted, digest, plain
from vcmbench.datasets.images import image_size
from vcmbench.datasets.pandaset_categories import (
    PANDASET_CATEGORIES,
    VCM_CATEGORIES,
    VCM_EVAL_CATEGORIES,
    vcm_of_coco_array,
    vcm_of_pandaset_array,
)
from vcmbench.datasets.sequences import SequenceDataset, SequenceRecord, first_frames, sequences_from_coco
from vcmbench.datasets.shards import shardable
from vcmbench.errors import DatasetError
from vcmbench.paths import is_none

log = logging.getLogger(__name__)

#: Bump when the json layout or the conversion rules change, so old caches are rebuilt.
CACHE_FORMAT = 1
#: Frame image id = sequence_id * FRAME_ID_STRIDE + frame position.
FRAME_ID_STRIDE = 1_000_000
FOLDER = "PandaSet"
IMAGES = Path("camera") / "front_camera"
FRAME_RATE = 30.0  # pandaset.json's frame_rate, every sequence
INTRA_PERIOD = 32  # pandaset.json's intra_period, every sequence
OTHER_CLASS = "other"  # the class of a sequence outside the CTTC's list
HOW_TO_GET = (
    "put the MPEG FCM test data's PandaSet folder (<seq>/camera/front_camera/*.jpg and "
    "<seq>/annotations/<seq>.npz per sequence) in dataset.root, or give that folder itself as dataset.root"
)

#: The CTTC's sequences and classes, in the order of pandaset.json and the CTTC csv.
# fmt: off
CTTC_CLASSES: dict[str, tuple[str, ...]] = {
    "PANDAM1": ("057", "058", "069", "070", "072", "073", "077"),
    "PANDAM2": ("003", "011", "016", "017", "021", "023", "027", "029", "030", "033", "035", "037", "039", "043",
                "053", "056", "097"),
    "PANDAM3": ("088", "089", "090", "095", "109", "112", "113", "115", "117", "119", "122", "124"),
}
# fmt: on
CTTC_SEQUENCES: dict[str, str] = {s: cls for cls, names in CTTC_CLASSES.items() for s in names}


@dataclass(frozen=True)
class PandaSource:
    """One sequence folder as read: its frames in order, its ground truth and frame rate."""

    name: str
    folder: Path  # <PandaSet>/<seq>
    frames: tuple[str, ...]  # file names in camera/front_camera, in the platform's (sorted) order
    npz: Path
    fps: float
    stats: tuple[tuple[str, int, int], ...]  # (path, size, mtime_ns) of every input file


class PandaSetDataset(SequenceDataset):
    """PandaSet sequences: JPEG frames, and per frame the labelled points the evaluator scores."""

    metric = "miou"  # the evaluator it names: SEMANTICSEG-EVAL's mIoU over labelled points (metrics/semseg.py)
    # How metrics.semseg_evaluator scores its points (a LabelledPoints set): both sides brought to the VCM
    # categories, the mean over the platform's ten
    point_categories = VCM_CATEGORIES
    scored_categories = VCM_EVAL_CATEGORIES

    def __init__(
        self,
        name: str,
        annotation_file: Path,
        image_dir: Path,
        sequences: list[SequenceRecord],
        points_files: dict[int, Path],
    ):
        super().__init__(name, annotation_file, image_dir, sequences, tracking=False)
        self.points_files = points_files  # sequence id -> its npz

    def ground_truth_points(self, sequence: SequenceRecord) -> dict[int, np.ndarray]:
        """frame image id -> (N, 3) int64 rows (x, y, PandaSet category) of the sequence's frames,
        read from its npz (checked when the dataset was built)."""
        npz = self.points_files[sequence.sequence_id]
        frames = read_points(npz)
        index = {f.image_id: f.image_id % FRAME_ID_STRIDE for f in sequence.frames}
        if max(index.values()) >= len(frames):
            raise DatasetError(
                f"{npz}: 'gt' now holds {len(frames)} frames, fewer than when the dataset was built; "
                "it changed during the run: rerun"
            )
        return {fid: frames[k] for fid, k in index.items()}

    @staticmethod
    def truth_categories(categories: np.ndarray) -> np.ndarray:
        """Ground-truth points' PandaSet categories -> VCM categories (the platform's table)."""
        return vcm_of_pandaset_array(categories)

    @staticmethod
    def predicted_categories(ids: np.ndarray) -> np.ndarray:
        """A network's category ids at the points -> VCM categories: the ids of Panoptic FPN's map
        (`Detections.semantic`: COCO thing ids, COCO panoptic stuff ids, 0 where no segment is)
        through the platform's COCO -> PandaSet -> VCM tables."""
        return vcm_of_coco_array(ids)


def default_cache_dir() -> Path:
    return cache_root("pandaset")


def _stat(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.absolute()), st.st_size, st.st_mtime_ns


def read_points(npz: Path) -> list[np.ndarray]:
    """The npz's `gt`: per frame an (N, 3) int64 array of (x, y, category) rows, shapes and types
    checked (values are checked against the frames by `check_points`)."""
    try:
        with np.load(npz, allow_pickle=True) as data:  # an object array of per-frame arrays, as the platform writes
            if "gt" not in data.files:
                raise DatasetError(
                    f"{npz}: no 'gt' array (it holds {data.files}); the platform reads each frame's "
                    "points (x, y, category) from 'gt': use the npz of the MPEG FCM test data"
                )
            gt = data["gt"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise DatasetError(
            f"{npz}: cannot be read as an npz ({type(exc).__name__}: {' '.join(str(exc).split())}); copy it again"
        ) from None
    if gt.ndim == 0:
        raise DatasetError(f"{npz}: 'gt' is a single value, not one entry per frame; use the FCM test data's npz")
    frames = []
    for k, entry in enumerate(gt):
        rows = np.asarray(entry)
        if rows.size == 0:
            rows = rows.reshape(0, 3).astype(np.int64)
        if rows.ndim != 2 or rows.shape[1] != 3 or not np.issubdtype(rows.dtype, np.integer):
            raise DatasetError(
                f"{npz}: gt[{k}] has dtype {rows.dtype} and shape {rows.shape}; each frame's entry must be "
                "integer rows (x, y, category), shape (N, 3)"
            )
        frames.append(rows.astype(np.int64, copy=False))
    return frames


def check_points(npz: Path, k: int, rows: np.ndarray, width: int, height: int) -> None:
    """A frame's points must fall inside it and name PandaSet categories."""
    x, y, cat = rows[:, 0], rows[:, 1], rows[:, 2]
    outside = (x < 0) | (x >= width) | (y < 0) | (y >= height)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise DatasetError(
            f"{npz}: gt[{k}] row {i} is the point ({int(x[i])}, {int(y[i])}), outside its {width}x{height} "
            "frame; the npz belongs to other frames: copy the frames and the npz of the same sequence"
        )
    unknown = (cat < 0) | (cat >= len(PANDASET_CATEGORIES))
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise DatasetError(
            f"{npz}: gt[{k}] row {i} has category {int(cat[i])}, not a PandaSet category "
            f"(0..{len(PANDASET_CATEGORIES) - 1}); use the FCM test data's npz"
        )


def pandaset_folder(root: str | Path, names: list[str]) -> Path:
    """The folder holding the sequences: root/PandaSet if there is one, else root itself if it holds
    one of `names` with a camera/front_camera folder (root given as the PandaSet folder)."""
    rootp = Path(str(root)).expanduser()
    if not rootp.is_dir():
        raise DatasetError(f"dataset.root={rootp.absolute()}: folder not found; {HOW_TO_GET}")
    if (rootp / FOLDER).is_dir():
        return rootp / FOLDER
    if any((rootp / n / IMAGES).is_dir() for n in names):
        return rootp
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    raise DatasetError(
        f"dataset.root={rootp.absolute()}: holds neither {FOLDER}/ nor a sequence folder ({shown}) with "
        f"{IMAGES.as_posix()}/; give the fcm_testdata folder or its {FOLDER} folder"
    )


def requested(sequences: Any) -> list[str] | None:
    """The sequence names asked for (None: the CTTC's); numbers become PandaSet's 3-digit names."""
    sequences = plain(sequences)
    if sequences is None or is_none(sequences):
        return None
    items = sequences if isinstance(sequences, list | tuple) else [sequences]
    names = [f"{s:03d}" if isinstance(s, int) else str(s) for s in items]
    if len(set(names)) != len(names):
        raise DatasetError(f"dataset.sequences={names}: a sequence is listed twice")
    return names


def present(folder: Path, names: list[str] | None) -> list[str]:
    """The sequences to read: the ones asked for, or every CTTC sequence in `folder` (CTTC order)."""
    if names is not None:
        return names
    found = [n for n in CTTC_SEQUENCES if (folder / n).is_dir()]
    absent = [n for n in CTTC_SEQUENCES if n not in found]
    if not found:
        raise DatasetError(f"{folder.absolute()}: none of the CTTC's PandaSet sequences is there; {HOW_TO_GET}")
    if absent:
        log.warning("%s: sequences %s are absent; their classes are reported without them", folder, absent)
    return found


def frame_rate(folder: Path, name: str) -> float:
    """seqinfo.ini's frameRate where the sequence has one (the platform's codecs read it), else 30."""
    ini = folder / "seqinfo.ini"
    if not ini.is_file():
        return FRAME_RATE
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(ini.read_text(encoding="utf-8-sig"))
        fps = float(parser["Sequence"]["frameRate"])
    except (OSError, configparser.Error, KeyError, ValueError) as exc:
        raise DatasetError(
            f"{ini}: no readable [Sequence] frameRate ({type(exc).__name__}: {exc}); fix it or remove the file "
            f"(the CTC's rate, {FRAME_RATE:g}, is then used)"
        ) from None
    if not fps > 0:
        raise DatasetError(f"{ini}: frameRate={fps:g}; give a positive rate")
    if fps != FRAME_RATE and name in CTTC_SEQUENCES:
        log.warning(
            "%s: frameRate=%g, the FCM CTC's is %g; the ini's is used, as the platform does", ini, fps, FRAME_RATE
        )
    return fps


def read_sequence(folder: Path, name: str) -> PandaSource:
    """One sequence folder: its frames, npz and frame rate, or a one-line error naming what is missing."""
    seq = folder / name
    if not seq.is_dir():
        raise DatasetError(f"sequence folder not found: {seq.absolute()} (dataset.sequences); {HOW_TO_GET}")
    images = seq / IMAGES
    if not images.is_dir():
        raise DatasetError(
            f"frames not found: {images.absolute()}; the platform reads {name}/{IMAGES.as_posix()}/*.jpg: "
            "copy the sequence's front-camera JPEGs there"
        )
    frames = tuple(p.name for p in sorted(images.glob("*.jpg")))
    if not frames:
        raise DatasetError(f"{images.absolute()}: no .jpg frame; copy the sequence's front-camera JPEGs there")
    npz = seq / "annotations" / f"{name}.npz"
    if not npz.is_file():
        raise DatasetError(
            f"ground truth not found: {npz.absolute()}; SEMANTICSEG-EVAL scores {name} against "
            f"annotations/{name}.npz in its folder: copy it from the MPEG FCM test data"
        )
    inputs = [npz, *(images / f for f in frames)]
    if (seq / "seqinfo.ini").is_file():
        inputs.append(seq / "seqinfo.ini")
    return PandaSource(name, seq, frames, npz, frame_rate(seq, name), tuple(_stat(p) for p in inputs))


def convert(sources: list[PandaSource]) -> dict[str, Any]:
    """The COCO dict over the sequences (ids 1..N in list order): frames with their sizes and point
    counts, no annotations (the points stay in the npz files)."""
    sequences, images = [], []
    for sid, src in enumerate(sources, start=1):
        points = read_points(src.npz)
        if len(points) != len(src.frames):
            raise DatasetError(
                f"{src.npz}: 'gt' holds {len(points)} frames but {src.folder / IMAGES} has {len(src.frames)} .jpg "
                "frames; SEMANTICSEG-EVAL pairs the k-th frame with gt[k]: copy the frames and the npz of one release"
            )
        sizes = [image_size(src.folder / IMAGES / f) for f in src.frames]
        for k, (rows, (w, h)) in enumerate(zip(points, sizes, strict=True)):
            check_points(src.npz, k, rows, w, h)
        sequences.append(
            {
                "id": sid,
                "name": src.name,
                "class": CTTC_SEQUENCES.get(src.name, OTHER_CLASS),
                "fps": src.fps,
                "intra_period": INTRA_PERIOD,
                "length": len(src.frames),
                "width": sizes[0][0],
                "height": sizes[0][1],
                "npz": str(src.npz.absolute()),
            }
        )
        for k, (file_name, (w, h), rows) in enumerate(zip(src.frames, sizes, points, strict=True)):
            images.append(
                {
                    "id": sid * FRAME_ID_STRIDE + k,
                    "file_name": f"{src.name}/{IMAGES.as_posix()}/{file_name}",
                    "height": h,
                    "width": w,
                    "sequence_id": sid,
                    "frame_index": k,
                    "points": int(rows.shape[0]),
                }
            )
    categories = [{"id": i, "name": n} for i, n in enumerate(PANDASET_CATEGORIES)]
    return {"info": {}, "sequences": sequences, "images": images, "annotations": [], "categories": categories}


@shardable
def build(
    name: str,
    root: str,
    sequences: list[str] | None = None,
    max_frames: int | None = None,
    cache_dir: str | None = None,
    how_to_get: str | None = None,
) -> PandaSetDataset:
    """Hydra target: `dataset=pandaset dataset.root=/data/fcm_testdata` (or its PandaSet folder).

    `sequences`: folder names (default: every CTTC sequence present, in the CTTC's order; a sequence
    outside the CTTC's list is read the same way and reported under class 'other'); `max_frames`:
    the first N frames of each. `how_to_get` is accepted for config symmetry.
    """
    del how_to_get
    if max_frames is not None and not is_none(max_frames) and int(max_frames) < 1:
        raise DatasetError(f"dataset.max_frames={max_frames}: must be >= 1 or null")
    asked = requested(sequences)
    folder = pandaset_folder(root, asked if asked is not None else list(CTTC_SEQUENCES))
    names = present(folder, asked)
    sources = [read_sequence(folder, n) for n in names]
    options = {"format": CACHE_FORMAT, "folder": str(folder.absolute()), "sequences": names}
    cache = default_cache_dir() if cache_dir is None or is_none(cache_dir) else Path(str(cache_dir)).expanduser()
    cache_file = cache / f"{name}-{digest(options)[:12]}.json"
    fp = digest({"options": options, "inputs": [s.stats for s in sources]})

    def build() -> dict:
        log.info("converting %d PandaSet sequences of %s to COCO json %s", len(sources), name, cache_file)
        return convert(sources)

    description = f"vcmbench {name}: PandaSet (MPEG FCM layout) frames; points stay in the npz files"
    data = converted(cache_file, fp, build, description, options, CACHE_FORMAT)
    recs = first_frames(sequences_from_coco(data, cache_file), max_frames)
    points_files = {sid: s.npz for sid, s in enumerate(sources, start=1)}
    return PandaSetDataset(name, cache_file, folder, recs, points_files)
