"""MOT-challenge folders (MOT16/17/20, and TVD and HiEve as MPEG's FCM conditions use them) as a
sequence dataset, converted once to a cached COCO json.

Layout, one folder per sequence under `root`::

    root/<sequence>/seqinfo.ini       [Sequence] name, imDir, frameRate, seqLength, imWidth, imHeight, imExt
    root/<sequence>/img1/000001.jpg   frames 1..seqLength, or 0..seqLength-1 (imDir / imExt as the ini says)
    root/<sequence>/gt/gt.txt         frame, id, x, y, w, h, flag, class, visibility

gt.txt semantics (MOT16 and later): a row whose flag (7th column) is 0 is "ignore" and dropped;
rows of 8 or 9 columns are kept only if their class (8th column) is in `classes` (default [1],
pedestrian); a class of -1, rows of 6 or 7 columns, and MOT15-style rows of 10 columns (whose
8th-10th columns are world coordinates, not a class) are kept whatever `classes` says. Every
kept row becomes category 1 ("person") with its MOT id as `track_id`; its MOT class is kept as
`mot_class` and its visibility as `visibility` where the row has them. Rows with a width or
height <= 0 are dropped (logged). MOT boxes count pixels from 1 (the top-left pixel is (1, 1));
COCO's from 0, so x and y are shifted by -1 (`MOT_ORIGIN`), the frame of the detectors' boxes.
Distractor classes (MOT17's static persons, reflections, ...) are dropped, not kept as
ignore regions, so scores can differ slightly from the official MOT evaluation.

A frame file's number is its frame number, the number gt.txt rows name: frames count from 1 as
in MOT, or from 0 where the folder holds a 000000 file (HiEve as the MPEG FCM test data has it;
see vcmbench.datasets.fcm_tracking). A `RowRule` replaces the flag/class rules above for a
benchmark whose evaluator keeps other rows (TVD, HiEve in the FCM conditions).

Ids: sequences 1..N in the order chosen; a frame's image id is `sequence_id * 1_000_000 +
frame number`, and its `frame_index` in the json is that frame number. The json is
cached under `cache_dir` (default `$VCMBENCH_CACHE/mot` or `~/.cache/vcmbench/mot`) with a
fingerprint of every input's path, size and mtime (seqinfo.ini, gt.txt, each frame file) in its
`info`, and rebuilt only when one changes.
"""

from __future__ import annotations

import configparser
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcmbench.datasets.cache import cache_root, converted, digest, plain
from vcmbench.datasets.images import image_size
from vcmbench.datasets.sequences import SequenceDataset, first_frames, sequences_from_coco
from vcmbench.datasets.shards import shardable
from vcmbench.errors import DatasetError
from vcmbench.paths import is_none

log = logging.getLogger(__name__)

#: Bump when the json layout or the conversion rules change, so old caches are rebuilt.
CACHE_FORMAT = 1
#: Frame image id = sequence_id * FRAME_ID_STRIDE + frame number.
FRAME_ID_STRIDE = 1_000_000
#: MOT pixel coordinates start at 1; COCO's at 0.
MOT_ORIGIN = 1
CATEGORIES = [{"id": 1, "name": "person"}]
HOW_TO_GET = "download the sequences from motchallenge.net (MOT) or the TVD / HiEve sites and give dataset.root"


@dataclass(frozen=True)
class MotSequence:
    """One sequence folder as its seqinfo.ini and image folder describe it."""

    name: str  # the folder name under root
    folder: Path
    fps: float
    width: int
    height: int
    frame_files: tuple[str, ...]  # file names relative to root; entry k is frame first + k
    gt: Path
    stats: tuple[tuple[str, int, int], ...]  # (path, size, mtime_ns) of every input file
    first: int = 1  # the frame number of frame_files[0] (0 or 1)

    @property
    def length(self) -> int:
        return len(self.frame_files)


@dataclass(frozen=True)
class RowRule:
    """Which gt.txt rows are ground truth where a benchmark's evaluator keeps other rows than MOT's
    flag/class rules: a row is kept if its 7th column (flag) is >= `min_flag` and, with `classes`
    given, its 8th column (class) is one of them. A row lacking a column the rule reads is dropped,
    as motmetrics (which reads it as NaN) drops it."""

    min_flag: float
    classes: tuple[int, ...] | None = None

    def keeps(self, vals: list[float]) -> bool:
        if len(vals) < 7 or not vals[6] >= self.min_flag:
            return False
        return self.classes is None or (len(vals) >= 8 and vals[7] in self.classes)


def default_cache_dir() -> Path:
    return cache_root("mot")


def _stat(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.absolute()), int(st.st_size), int(st.st_mtime_ns)


def list_sequences(root: Path) -> list[str]:
    """Names of the folders under root that hold a seqinfo.ini, sorted."""
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "seqinfo.ini").is_file())
    if not names:
        raise DatasetError(f"{root.absolute()}: no sequence folder with a seqinfo.ini under dataset.root; {HOW_TO_GET}")
    return names


def _ini_number(ini: Path, section: configparser.SectionProxy, key: str, kind: type) -> Any:
    raw = section.get(key)
    if raw is None or not raw.strip():
        return None
    try:
        value = kind(float(raw)) if kind is int else kind(raw)
    except ValueError:
        raise DatasetError(f"{ini}: {key}={raw!r} is not a number; fix the [Sequence] section") from None
    if kind is int and float(raw) != value:
        raise DatasetError(f"{ini}: {key}={raw!r} is not a whole number; fix the [Sequence] section")
    return value


def read_sequence(root: Path, name: str, how_to_get: str = HOW_TO_GET) -> MotSequence:
    """Read root/<name>/seqinfo.ini and list its frames; every inconsistency is a one-line DatasetError
    (`how_to_get`: the fix its messages end with)."""
    folder = root / name
    if not folder.is_dir():
        raise DatasetError(f"MOT sequence folder not found: {folder.absolute()} (dataset.sequences); {how_to_get}")
    ini = folder / "seqinfo.ini"
    if not ini.is_file():
        raise DatasetError(f"seqinfo.ini not found: {ini.absolute()}; every sequence folder needs one; {how_to_get}")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(ini.read_text(encoding="utf-8-sig"), source=str(ini))
    except (configparser.Error, UnicodeDecodeError) as exc:
        msg = " ".join(str(exc).split())
        raise DatasetError(f"{ini}: not a valid seqinfo.ini ({msg}); fix the file or {how_to_get}") from None
    if "Sequence" not in parser:
        raise DatasetError(f"{ini}: no [Sequence] section; fix the file or {how_to_get}")
    sec = parser["Sequence"]
    fps = _ini_number(ini, sec, "frameRate", float)
    if fps is None or not fps > 0:
        raise DatasetError(
            f"{ini}: frameRate is missing or not positive ({sec.get('frameRate')!r}); "
            "give the sequence's frame rate, e.g. frameRate=30"
        )
    length = _ini_number(ini, sec, "seqLength", int)
    width = _ini_number(ini, sec, "imWidth", int)
    height = _ini_number(ini, sec, "imHeight", int)
    im_dir = (sec.get("imDir") or "img1").strip()
    ext = (sec.get("imExt") or ".jpg").strip()
    ext = ext if ext.startswith(".") else f".{ext}"

    images = folder / im_dir
    if not images.is_dir():
        raise DatasetError(f"image folder not found: {images.absolute()} (imDir of {ini}); {how_to_get}")
    found = [p for p in images.iterdir() if p.suffix.lower() == ext.lower() and p.stem.isdigit()]
    numbered = {int(p.stem): p for p in sorted(found)}
    count = len(found)
    if count == 0:
        raise DatasetError(f"{images.absolute()}: no frames named <number>{ext}; {how_to_get}")
    if length is None:
        length = count
    if count != length:
        raise DatasetError(
            f"{ini}: seqLength={length} but {images.absolute()} holds {count} {ext} frames; "
            "fix seqLength or restore the missing frames"
        )
    first = 0 if 0 in numbered else 1  # the MOT challenge's count from 1; MPEG's HiEve pngs from 0
    missing = [k for k in range(first, first + length) if k not in numbered]
    if missing:
        raise DatasetError(
            f"{images.absolute()}: frame {missing[0]:06d}{ext} is missing (frames must be numbered "
            f"{first}..{first + length - 1} for seqLength={length}); restore it or {how_to_get}"
        )
    if length >= FRAME_ID_STRIDE:
        raise DatasetError(f"{ini}: seqLength={length}; at most {FRAME_ID_STRIDE - 1} frames a sequence are supported")
    frames = [numbered[k] for k in range(first, first + length)]
    w, h = image_size(frames[0])
    if (width, height) != (w, h) and not (width is None and height is None):
        raise DatasetError(
            f"{ini}: imWidth x imHeight = {width}x{height} but {frames[0]} is {w}x{h}; fix the ini or the frames"
        )

    gt = folder / "gt" / "gt.txt"
    if not gt.is_file():
        raise DatasetError(
            f"ground truth not found: {gt.absolute()} (test splits have none; use sequences with gt); {how_to_get}"
        )
    stats = (_stat(ini), _stat(gt), *(_stat(p) for p in frames))
    rel = tuple(f"{name}/{im_dir}/{p.name}" for p in frames)
    return MotSequence(name, folder, float(fps), w, h, rel, gt, stats, first)


def read_gt(
    path: Path, length: int, classes: set[int] | None, first: int = 1, rule: RowRule | None = None
) -> list[dict[str, Any]]:
    """The kept rows of a gt.txt as {frame, track_id, bbox (COCO, 0-based), mot_class?, visibility?};
    frames must lie within first..first+length-1 (the frame files' numbers); `rule`, when given,
    chooses the rows in place of the flag and `classes`."""
    rows: list[dict[str, Any]] = []
    dropped_size = 0
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            parts = [p.strip() for p in text.split(",")]
            while parts and parts[-1] == "":  # a trailing comma
                parts.pop()
            try:
                vals = [float(p) for p in parts]
            except ValueError:
                vals = []
            if len(vals) < 6:
                shown = text if len(text) <= 80 else text[:77] + "..."
                raise DatasetError(
                    f"{path} line {n}: expected at least 6 comma-separated numbers, got {shown!r}; "
                    "fix or remove the line"
                )
            frame, tid = vals[0], vals[1]
            if not frame.is_integer() or not first <= frame < first + length or not tid.is_integer():
                raise DatasetError(
                    f"{path} line {n}: frame {parts[0]} / id {parts[1]} must be whole numbers, the frame "
                    f"within {first}..{first + length - 1} (the frame files' numbers, seqLength={length}); "
                    "fix or remove the line"
                )
            ncol = len(vals)
            has_class = 8 <= ncol <= 9  # MOT16+ layout; 10 columns is MOT15's (world x, y, z)
            cls = int(vals[7]) if has_class else None
            if rule is not None:
                if not rule.keeps(vals):
                    continue
            elif ncol >= 7 and vals[6] == 0:  # flag 0: ignore
                continue
            elif classes is not None and cls is not None and cls != -1 and cls not in classes:
                continue
            x, y, w, h = vals[2:6]
            if not (w > 0 and h > 0):
                dropped_size += 1
                continue
            row: dict[str, Any] = {
                "frame": int(frame),
                "track_id": int(tid),
                "bbox": [x - MOT_ORIGIN, y - MOT_ORIGIN, w, h],
            }
            if cls is not None:
                row["mot_class"] = cls
            if ncol == 9:
                row["visibility"] = vals[8]
            rows.append(row)
    if dropped_size:
        log.warning("%s: dropped %d rows with a width or height <= 0", path, dropped_size)
    return rows


def convert(
    seqs: list[MotSequence],
    classes: set[int] | None,
    seq_class: dict[str, str],
    rule: RowRule | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The COCO dict over the sequences (ids 1..N in list order); `labels`: folder name -> the name
    the sequence is reported under (default: the folder's)."""
    sequences, images, annotations = [], [], []
    for sid, s in enumerate(seqs, start=1):
        sequences.append(
            {
                "id": sid,
                "name": (labels or {}).get(s.name, s.name),
                "class": seq_class.get(s.name, "all"),
                "fps": s.fps,
                "length": s.length,
                "width": s.width,
                "height": s.height,
            }
        )
        for k, file_name in enumerate(s.frame_files, start=s.first):
            images.append(
                {
                    "id": sid * FRAME_ID_STRIDE + k,
                    "file_name": file_name,
                    "height": s.height,
                    "width": s.width,
                    "sequence_id": sid,
                    "frame_index": k,
                }
            )
        rows = read_gt(s.gt, s.length, classes, s.first, rule)
        rows.sort(key=lambda r: (r["frame"], r["track_id"]))
        for r in rows:
            w, h = r["bbox"][2], r["bbox"][3]
            ann = {
                "id": len(annotations) + 1,
                "image_id": sid * FRAME_ID_STRIDE + r["frame"],
                "category_id": 1,
                "bbox": r["bbox"],
                "area": w * h,
                "iscrowd": 0,
                "track_id": r["track_id"],
            }
            ann.update({k: r[k] for k in ("mot_class", "visibility") if k in r})
            annotations.append(ann)
    return {
        "info": {},
        "sequences": sequences,
        "images": images,
        "annotations": annotations,
        "categories": [dict(c) for c in CATEGORIES],
    }


def _classes(classes: Any) -> set[int] | None:
    classes = plain(classes)
    if classes is None or is_none(classes):
        return None
    items = classes if isinstance(classes, list | tuple | set) else [classes]
    try:
        return {int(c) for c in items}
    except (TypeError, ValueError):
        raise DatasetError(
            f"dataset.classes={classes!r}: give a list of MOT class numbers, e.g. [1], or null"
        ) from None


@shardable
def build(
    name: str,
    root: str,
    sequences: list[str] | None = None,
    classes: list[int] | tuple[int, ...] | None = (1,),
    seq_class: dict[str, str] | str | None = None,
    max_frames: int | None = None,
    cache_dir: str | None = None,
    how_to_get: str | None = None,
) -> SequenceDataset:
    """Hydra target: `dataset=mot_folder dataset.root=/data/MOT17/train`.

    `sequences`: folder names under root (default: every folder with a seqinfo.ini, sorted);
    `classes`: MOT classes kept (null: all); `seq_class`: sequence name -> the class it is
    reported under (a single string: the class of every sequence; default 'all');
    `max_frames`: the first N frames of each sequence (the cached json always holds them all).
    `how_to_get` is accepted for config symmetry; the errors carry their own instructions.
    """
    del how_to_get
    rootp = Path(str(root)).expanduser()
    if not rootp.is_dir():
        raise DatasetError(f"MOT folder not found: {rootp.absolute()} (dataset.root); {HOW_TO_GET}")
    if max_frames is not None and not is_none(max_frames) and int(max_frames) < 1:
        raise DatasetError(f"dataset.max_frames={max_frames}: must be >= 1 or null")
    sequences = plain(sequences)
    names = list_sequences(rootp) if sequences is None or is_none(sequences) else [str(s) for s in sequences]
    if len(set(names)) != len(names):
        raise DatasetError(f"dataset.sequences={names}: a sequence is listed twice")
    keep = _classes(classes)
    seq_class = plain(seq_class)
    if seq_class is None or is_none(seq_class):
        class_of: dict[str, str] = {}
    elif isinstance(seq_class, str):
        class_of = dict.fromkeys(names, seq_class)
    elif isinstance(seq_class, dict):
        class_of = {str(k): str(v) for k, v in seq_class.items()}
        unknown = sorted(k for k in class_of if not (rootp / k).is_dir())
        if unknown:
            raise DatasetError(
                f"dataset.seq_class names {unknown}, not sequence folders of {rootp.absolute()}; fix the names"
            )
    else:
        raise DatasetError(f"dataset.seq_class={seq_class!r}: give a mapping sequence name -> class, a string or null")

    return assemble(name, rootp, names, keep, class_of, max_frames, cache_dir)


def assemble(
    name: str,
    root: Path,
    names: list[str],
    classes: set[int] | None,
    class_of: dict[str, str],
    max_frames: int | None,
    cache_dir: str | None,
    *,
    rule: RowRule | None = None,
    labels: dict[str, str] | None = None,
    how_to_get: str = HOW_TO_GET,
) -> SequenceDataset:
    """The dataset over root/<names> (checked arguments): read, converted or taken from the cache.

    Shared by `build` and the readers of MOT folders in other benchmarks' layouts (fcm_tracking),
    which choose their rows (`rule`), reported names (`labels`) and fix (`how_to_get`) themselves.
    """
    seqs = [read_sequence(root, n, how_to_get) for n in names]
    options: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "root": str(root.absolute()),
        "sequences": names,
        "classes": sorted(classes) if classes is not None else None,
        "seq_class": {n: class_of.get(n, "all") for n in names},
    }
    if rule is not None:  # only then, so that the caches of plain MOT folders keep their names
        options["rule"] = dataclasses.asdict(rule)
    if labels:
        options["labels"] = {n: labels[n] for n in names if n in labels}
    folder = default_cache_dir() if cache_dir is None or is_none(cache_dir) else Path(str(cache_dir)).expanduser()
    cache_file = folder / f"{name}-{digest(options)[:12]}.json"
    fp = digest({"options": options, "inputs": [s.stats for s in seqs]})

    def build() -> dict:
        log.info("converting %d MOT sequences of %s to COCO json %s", len(seqs), name, cache_file)
        return convert(seqs, classes, options["seq_class"], rule, labels)

    description = f"vcmbench {name}: MOT-challenge folder converted to COCO format"
    data = converted(cache_file, fp, build, description, options, CACHE_FORMAT)
    recs = first_frames(sequences_from_coco(data, cache_file), max_frames)
    return SequenceDataset(name, cache_file, root, recs, tracking=True)
