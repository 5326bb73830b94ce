"""SFU-HW-Objects-v1 in the MPEG FCM test-data layout: PNG frames plus one COCO json a sequence.

MPEG contributors hold SFU-HW the way the group's platform, CompressAI-Vision, prescribes
(its data/mpeg-fcm/README.md), not as the raw YUV + YOLO txt files `sfu_hw` reads:

    fcm_testdata/SFU_HW_Obj/<Name>_<W>x<H>_<fps>_val/
        annotations/<Name>_<W>x<H>_<fps>_val.json   the sequence's COCO json (MPEG m59143)
        images/<Name>_<W>x<H>_<fps>_val_000.png ...  one PNG a frame, the CTC window only
        seqinfo.ini                                   [Sequence] frameRate, seqLength, ...

Reading these files directly lets a contributor's numbers come from the very frames and ground
truth the platform's do, with nothing to convert by hand. What is read, and why:

* the json is found as the platform finds it, `annotations/<folder name>.json`. Its images are the
  frames, in id order (the platform's loader sorts by id); the frame count is its image count.
  Its `id`s are the frame's index in the window (written as floats, 0.0, 1.0, ...): vcmbench's
  image id is `sequence_id * 1_000_000 + id`, as the YUV layout's is, because a run holds several
  sequences and ids must not repeat across them; `frame_index` keeps the file's id. Its
  `category_id`s are the 0-based COCO 80-class index (0 person, 2 car; each annotation's `class`
  names it), the index the platform's detectron2 models predict; they become real COCO category
  ids (`SFU_TO_COCO`) as the YUV layout's are, so the same detectors and evaluator serve both.
  The file's own `categories` list (ids 0..79 with other names) is not used; the converted json
  carries the 80 COCO categories. `bbox_mode` is ignored, as the platform's loader ignores it:
  boxes are COCO `[x, y, w, h]` pixels.
* `seqinfo.ini` gives the frame rate (the platform takes the bitrate's fps from it); its
  `seqLength` must equal the json's image count, and `imWidth`/`imHeight` the folder name's size.
  Its `imDir=img1` is a leftover of the MOT format: the platform reads `images/`, and so does this.
* `images/<file_name>` is read for each frame's pixels; every frame must exist when the dataset
  is built, and the first frame's size must be the json's, so a mislaid folder fails at once.

The folder name's `<Name>` and size pick the sequence's entry in the shared table (`sfu_table`),
which gives its vcmbench name and class: `RaceHorses_832x480_30_val` is RaceHorsesC (class C),
`RaceHorses_416x240_30_val` is RaceHorses (class D). Folders no entry claims are skipped (named in
the log) unless `extra_sequences` adds them. The converted json is cached as the YUV layout's is.
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcmbench.datasets.cache import digest, plain, read_cached, write_cached
from vcmbench.datasets.images import image_size
from vcmbench.datasets.sequences import SequenceDataset, sequences_from_coco
from vcmbench.datasets.sfu_table import (
    COCO_CATEGORIES,
    FRAME_ID_STRIDE,
    SFU_TO_COCO,
    SfuSequence,
    labelled,
    select_entries,
    sequence_table,
    stamp,
    unset,
)
from vcmbench.errors import DatasetError

log = logging.getLogger(__name__)

#: Bump when the converted json's layout or the conversion rules change.
CACHE_FORMAT = 1
LAYOUTS = ("auto", "yuv", "fcm")
#: The SFU folder inside MPEG's fcm_testdata.
FCM_SUBDIR = "SFU_HW_Obj"
PLATFORM = "InterDigitalInc/CompressAI-Vision"
_FOLDER = re.compile(r"^(?P<base>.+?)_(?P<w>\d+)x(?P<h>\d+)_(?P<fps>\d+(?:\.\d+)?)(?:_(?P<tag>.+))?$")
#: extra_sequences keys the FCM layout takes from its files instead.
_YUV_ONLY_KEYS = ("first", "count", "fps", "file")


@dataclass(frozen=True)
class FcmRoot:
    """Where the sequence folders are; `only`: root was one sequence's folder (as the platform's
    per-sequence `dataset.config.root` is), so just that one is read."""

    data_dir: Path
    only: str | None = None


@dataclass(frozen=True)
class FcmFolder:
    """A sequence folder and what its name says: `<base>_<width>x<height>_<fps>[_<tag>]`."""

    path: Path
    base: str
    width: int
    height: int
    fps: float


def _is_sequence_folder(path: Path) -> bool:
    return (
        _FOLDER.match(path.name) is not None
        and path.is_dir()
        and ((path / "seqinfo.ini").is_file() or (path / "annotations").is_dir())
    )


def _find(root: Path) -> FcmRoot | None:
    if _is_sequence_folder(root):
        return FcmRoot(root.parent, root.name)
    for folder in (root, root / FCM_SUBDIR):
        if folder.is_dir() and any(_is_sequence_folder(p) for p in folder.iterdir()):
            return FcmRoot(folder)
    return None


def fcm_layout(root: Path, layout: Any, yuv_root: Path) -> FcmRoot | None:
    """The FCM folders `root` holds, or None for the YUV layout, as `layout` (auto|yuv|fcm) says.

    auto: FCM when `root`, `root/SFU_HW_Obj` or `root` itself is (or holds) a folder
    `<Name>_<W>x<H>_<fps>[_val]` with a seqinfo.ini or an annotations/ folder; refused when the
    YUV folder also holds .yuv files, since either reading could be the one meant.
    """
    mode = "auto" if unset(layout) else str(layout).strip().lower()
    if mode not in LAYOUTS:
        raise DatasetError(f"dataset.layout={layout!r}: use one of {list(LAYOUTS)}")
    if mode == "yuv":
        return None
    found = _find(root)
    if mode == "fcm" and found is None:
        raise DatasetError(
            f"dataset.layout=fcm: no folder <Name>_<W>x<H>_<fps>_val/ with a seqinfo.ini in "
            f"{root.absolute()} nor in {root.absolute() / FCM_SUBDIR}; point dataset.root at fcm_testdata, "
            f"its {FCM_SUBDIR} or one sequence's folder"
        )
    if mode == "auto" and found is not None and yuv_root.is_dir():
        if any(p.suffix.lower() == ".yuv" for p in yuv_root.iterdir()):
            raise DatasetError(
                f"dataset.root={root}: holds both FCM sequence folders ({found.data_dir}) and .yuv files "
                f"({yuv_root}); set dataset.layout=fcm or dataset.layout=yuv"
            )
    return found


def sequence_folders(fcm: FcmRoot) -> list[FcmFolder]:
    """The sequence folders of `fcm`, by name."""
    paths = (
        [fcm.data_dir / fcm.only] if fcm.only else sorted(p for p in fcm.data_dir.iterdir() if _is_sequence_folder(p))
    )
    out = []
    for p in paths:
        m = _FOLDER.match(p.name)
        assert m is not None  # _is_sequence_folder checked the name
        out.append(FcmFolder(p, m["base"], int(m["w"]), int(m["h"]), float(m["fps"])))
    return out


def _fits(entry: SfuSequence, folders: list[FcmFolder]) -> list[FcmFolder]:
    names = {n.casefold() for n in (entry.name, *entry.aliases)}
    return [
        f
        for f in folders
        if f.base.casefold() in names
        and (entry.width is None or f.width == entry.width)
        and (entry.height is None or f.height == entry.height)
    ]


def folder_of(entry: SfuSequence, folders: list[FcmFolder]) -> FcmFolder | None:
    """The folder of a table entry: its name or an alias, and its size where the entry has one
    (which tells RaceHorses_832x480 (RaceHorsesC) from RaceHorses_416x240)."""
    hits = _fits(entry, folders)
    if len(hits) > 1:
        raise DatasetError(
            f"several folders in {hits[0].path.parent} fit sequence {entry.name!r}: "
            f"{', '.join(f.path.name for f in hits)}; move all but one elsewhere"
        )
    return hits[0] if hits else None


def _folder_names_to_entries(sequences: Any, table: dict[str, SfuSequence], folders: list[FcmFolder]) -> Any:
    """`sequences` with folder names (BQSquare_416x240_60_val, as MPEG's scripts name them) as table names."""
    names = plain(sequences)
    if unset(names):
        return names
    owner = {f.path.name: e.name for e in table.values() for f in _fits(e, folders)}
    return [owner.get(str(n), str(n)) for n in ([names] if isinstance(names, str) else names)]


def _expected(entry: SfuSequence, data_dir: Path) -> str:
    size = f"{entry.width}x{entry.height}" if entry.width and entry.height else "<W>x<H>"
    fps = f"{entry.fps:g}" if entry.fps else "<fps>"
    return f"{data_dir.absolute()}/{entry.name}_{size}_{fps}_val"


def annotation_path(folder: FcmFolder) -> Path:
    """`annotations/<folder name>.json`, where the platform looks; an error naming the fix if absent."""
    path = folder.path / "annotations" / f"{folder.path.name}.json"
    if path.is_file():
        return path
    others = sorted(p.name for p in (folder.path / "annotations").glob("*.json"))
    seen = f" (the folder holds {', '.join(others)})" if others else ""
    raise DatasetError(
        f"annotation file not found: {path}{seen}; copy {folder.path.name}.json from {PLATFORM} "
        "data/mpeg-fcm/SFUHW/sfu-annotations-from-m59143/ there (the file is named as its sequence folder)"
    )


def seqinfo_path(folder: FcmFolder) -> Path:
    """The folder's seqinfo.ini; an error naming where to get it if absent."""
    path = folder.path / "seqinfo.ini"
    if not path.is_file():
        raise DatasetError(
            f"sequence info not found: {path}; copy it from {PLATFORM} "
            f"data/mpeg-fcm/fcm_testdata/{FCM_SUBDIR}/{folder.path.name}/seqinfo.ini (frameRate, seqLength)"
        )
    return path


def read_seqinfo(path: Path) -> dict[str, str]:
    """The [Sequence] section of a seqinfo.ini, keys lower-cased (framerate, seqlength, ...)."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8-sig"))
        return dict(parser["Sequence"])
    except (configparser.Error, KeyError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"{path}: not a seqinfo.ini ({type(exc).__name__}: {' '.join(str(exc).split())}); "
            "it needs a [Sequence] section with frameRate and seqLength"
        ) from None


def _number(info: dict[str, str], key: str, path: Path) -> float:
    """A positive number of the [Sequence] section, or an error naming the key and its value."""
    try:
        value = float(info[key.lower()])
    except KeyError:
        raise DatasetError(f"{path}: no {key}= in its [Sequence] section; add it") from None
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise DatasetError(f"{path}: {key}={info[key.lower()]!r} is not a positive number; fix the file")
    return value


def _whole_id(value: Any) -> int | None:
    """A json id as an int: 3 and 3.0 are 3; anything else (3.5, "3", None, -1) is None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value) if float(value).is_integer() and value >= 0 else None


def _images(coco: dict, ann: Path, folder: FcmFolder) -> list[tuple[int, dict]]:
    """(frame id, image entry) in id order, each checked: a distinct whole id, the folder's size."""
    images = coco.get("images")
    if not isinstance(images, list) or not images:
        raise DatasetError(f"{ann}: no 'images' list (or an empty one); replace it with MPEG's file for this sequence")
    out: dict[int, dict] = {}
    for n, im in enumerate(images):
        fid = _whole_id(im.get("id")) if isinstance(im, dict) else None
        if fid is None or fid in out or fid >= FRAME_ID_STRIDE or not isinstance(im.get("file_name"), str):
            shown = im.get("id") if isinstance(im, dict) else im
            raise DatasetError(
                f"{ann}: images[{n}] has id {shown!r}; each image needs a 'file_name' and a distinct "
                f"whole-number id below {FRAME_ID_STRIDE} (its frame index: 0.0, 1.0, ... in MPEG's files)"
            )
        if (im.get("width"), im.get("height")) != (folder.width, folder.height):
            raise DatasetError(
                f"{ann}: image id {fid} ({im['file_name']}) is {im.get('width')}x{im.get('height')} but the "
                f"folder name {folder.path.name} says {folder.width}x{folder.height}; fix the json or the folder name"
            )
        out[fid] = im
    return sorted(out.items())


def _annotation(a: Any, ann: Path, image_ids: dict[int, int]) -> dict[str, Any]:
    """One annotation of the file as vcmbench's COCO json holds it (without its new id)."""
    if not isinstance(a, dict):
        raise DatasetError(f"{ann}: an annotation is {a!r}, not an object; fix the file")
    aid = a.get("id")
    fid = _whole_id(a.get("image_id"))
    if fid not in image_ids:
        raise DatasetError(
            f"{ann}: annotation id {aid} has image_id {a.get('image_id')!r}, no image's id; fix or remove it"
        )
    k = _whole_id(a.get("category_id"))
    if k is None or k >= len(SFU_TO_COCO):
        raise DatasetError(
            f"{ann}: annotation id {aid} has category_id {a.get('category_id')!r}; MPEG's SFU jsons use the "
            "COCO 80-class index 0..79 (0 person, 2 car); fix the annotation"
        )
    named = a.get("class")
    if isinstance(named, str) and named.casefold() != COCO_CATEGORIES[k][1].casefold():
        raise DatasetError(
            f"{ann}: annotation id {aid} has category_id {k} (index of {COCO_CATEGORIES[k][1]!r}) but class "
            f"{named!r}; the file does not use the COCO 80-class index of MPEG's files: convert its category_ids"
        )
    box = a.get("bbox")
    if (
        not isinstance(box, list)
        or len(box) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box)
        or box[2] < 0
        or box[3] < 0
    ):
        raise DatasetError(f"{ann}: annotation id {aid} has bbox {box!r}; give [x, y, width, height] in pixels")
    bbox = [float(v) for v in box]
    area = a.get("area")
    area = float(area) if isinstance(area, int | float) and not isinstance(area, bool) else bbox[2] * bbox[3]
    return {
        "image_id": image_ids[fid],
        "category_id": SFU_TO_COCO[k],
        "bbox": bbox,
        "area": area,
        "iscrowd": int(a.get("iscrowd", 0) or 0),
    }


def convert(found: list[tuple[SfuSequence, FcmFolder]]) -> dict[str, Any]:
    """The COCO dict over the selected sequences (ids 1..N in selection order), every file checked."""
    sequences, images, annotations = [], [], []
    for sid, (entry, folder) in enumerate(found, start=1):
        ann, ini = annotation_path(folder), seqinfo_path(folder)
        info = read_seqinfo(ini)
        try:
            coco = json.loads(ann.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(
                f"{ann}: not a readable json ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                f"replace it with {folder.path.name}.json from {PLATFORM}"
            ) from None
        if not isinstance(coco, dict):
            raise DatasetError(f"{ann}: not a COCO json object; replace it with MPEG's file for this sequence")
        frames = _images(coco, ann, folder)
        fps = _number(info, "frameRate", ini)
        length = _number(info, "seqLength", ini)
        if length != len(frames):
            raise DatasetError(
                f"{ini}: seqLength={info['seqlength']} but {ann} has {len(frames)} images; the annotation "
                "file's count is the sequence's: fix seqLength or use the matching json"
            )
        if not math.isclose(fps, folder.fps, rel_tol=1e-6):
            raise DatasetError(
                f"{ini}: frameRate={info['framerate']} but the folder name {folder.path.name} says "
                f"{folder.fps:g} fps; fix the one that is wrong"
            )
        if "imwidth" in info and "imheight" in info:
            size = (_number(info, "imWidth", ini), _number(info, "imHeight", ini))
            if size != (folder.width, folder.height):
                raise DatasetError(
                    f"{ini}: imWidth x imHeight = {info['imwidth']}x{info['imheight']} but the folder name "
                    f"{folder.path.name} says {folder.width}x{folder.height}; fix the file"
                )
        sequences.append(
            {
                "id": sid,
                "name": entry.name,
                "class": entry.seq_class,
                "fps": fps,
                "width": folder.width,
                "height": folder.height,
                "count": len(frames),
                "folder": str(folder.path.absolute()),
                "annotations": str(ann.absolute()),
            }
        )
        image_ids = {fid: sid * FRAME_ID_STRIDE + fid for fid, _ in frames}
        for fid, im in frames:
            images.append(
                {
                    "id": image_ids[fid],
                    "file_name": f"{folder.path.name}/images/{im['file_name']}",
                    "height": folder.height,
                    "width": folder.width,
                    "sequence_id": sid,
                    "frame_index": fid,
                }
            )
        raw = coco.get("annotations", [])
        if not isinstance(raw, list):
            raise DatasetError(f"{ann}: 'annotations' is not a list; replace the file with MPEG's")
        for a in raw:
            annotations.append({"id": len(annotations) + 1, **_annotation(a, ann, image_ids)})
    categories = [{"id": cid, "name": name} for cid, name in COCO_CATEGORIES]
    return {"info": {}, "sequences": sequences, "images": images, "annotations": annotations, "categories": categories}


def check_frames(data_dir: Path, coco: dict[str, Any], entries: dict[int, SfuSequence]) -> None:
    """Every frame's PNG exists and each sequence's first is the json's size: checked at every
    build, since frames can go missing without the cached json changing. A short images/ folder
    is what CompressAI-Vision's prepare_sfu_data.py (31165da) makes of 6 sequences, whose windows
    its sfu-configs.json gets wrong, so the error says which YUV frames the json's are."""
    first: set[int] = set()
    for im in coco["images"]:
        path = data_dir / im["file_name"]
        if not path.parent.is_dir():
            raise DatasetError(f"image folder not found: {path.parent}; put the sequence's PNG frames there")
        sid = im["sequence_id"]
        if not path.is_file():
            listed = sum(i["sequence_id"] == sid for i in coco["images"])
            held = sum(1 for p in path.parent.iterdir() if p.suffix.lower() == ".png")
            e = entries[sid]
            window = f"frames {e.first}..{e.first + listed - 1} of" if e.count == listed else "the frames of"
            raise DatasetError(
                f"frame not found: {path}; {path.parent} holds {held} PNGs of the {listed} frames the json lists: "
                f"write {window} the sequence's YUV there, named as the json names them"
            )
        if sid not in first:
            first.add(sid)
            w, h = image_size(path)
            if (w, h) != (im["width"], im["height"]):
                raise DatasetError(
                    f"{path}: frame is {w}x{h} but its sequence folder and json say {im['width']}x{im['height']}; "
                    "replace the frames with the sequence's own"
                )


def build_fcm(
    name: str,
    fcm: FcmRoot,
    sequences: Any,
    classes: Any,
    labels: str,
    extra_sequences: Any,
    max_frames: Any,
    cache_dir: Path,
) -> SequenceDataset:
    """The FCM layout's dataset (`sfu_hw.build` calls this when the root holds that layout).

    Selection (`sequences`, `classes`, `class_labels`) is the YUV layout's; `extra_sequences`
    takes class, aliases, width and height only (the rest comes from the folder's files).
    """
    extra = plain(extra_sequences) or {}
    for seq, spec in extra.items():
        bad = [k for k in _YUV_ONLY_KEYS if k in (spec or {})]
        if bad:
            raise DatasetError(
                f"dataset.extra_sequences.{seq}.{bad[0]}: the FCM layout takes frames and fps from the "
                "sequence folder's json and seqinfo.ini; remove it (class, aliases, width, height apply)"
            )
    table = sequence_table(extra)
    extra_names = {str(k) for k in extra}
    folders = sequence_folders(fcm)
    entries, explicit = select_entries(table, _folder_names_to_entries(sequences, table, folders), classes, extra_names)
    claimed = {id(f) for e in table.values() for f in _fits(e, folders)}
    skipped = [f.path.name for f in folders if id(f) not in claimed]
    if skipped:
        log.info(
            "%s: not SFU-HW table sequences, skipped (add with dataset.extra_sequences): %s", fcm.data_dir, skipped
        )
    found: list[tuple[SfuSequence, FcmFolder]] = []
    for e in entries:
        folder = folder_of(e, folders)
        if folder is None and (explicit or e.name in extra_names):
            asked = "dataset.sequences" if explicit else "dataset.extra_sequences"
            raise DatasetError(
                f"sequence folder of {e.name!r} not found: {_expected(e, fcm.data_dir)}/ ({asked}); "
                f"copy it there as {PLATFORM}'s data/mpeg-fcm/README.md lays it out"
            )
        if folder is not None:
            found.append((e, folder))
    if not found:
        raise DatasetError(
            f"no SFU-HW-Objects sequence folder in {fcm.data_dir.absolute()} for {', '.join(e.name for e in entries)}; "
            f"lay the FCM test data out as {PLATFORM}'s data/mpeg-fcm/README.md says"
        )
    entries = labelled([e for e, _ in found], labels)
    found = [(e, f) for e, (_, f) in zip(entries, found, strict=True)]

    options = {
        "format": CACHE_FORMAT,
        "layout": "fcm",
        "data_dir": str(fcm.data_dir.absolute()),
        "sequences": [[e.name, e.seq_class, str(f.path.absolute())] for e, f in found],
    }
    inputs = [[stamp(annotation_path(f)), stamp(seqinfo_path(f))] for _, f in found]
    cache_file = cache_dir / f"{name}-fcm-{digest(options)[:12]}.json"
    fp = digest({"options": options, "inputs": inputs})
    data = read_cached(cache_file, fp)
    if data is None:
        log.info("converting %d SFU-HW FCM sequences of %s to COCO json %s", len(found), name, cache_file)
        data = convert(found)
        data["info"] = {
            "description": f"vcmbench {name}: SFU-HW-Objects-v1 (MPEG FCM test-data layout) in COCO format",
            "vcmbench_fingerprint": fp,
            "vcmbench_format": CACHE_FORMAT,
            "source": options,
        }
        write_cached(cache_file, data)
    check_frames(fcm.data_dir, data, {sid: e for sid, (e, _) in enumerate(found, start=1)})
    recs = sequences_from_coco(data, cache_file)
    if not unset(max_frames):
        recs = [dataclasses.replace(s, frames=s.frames[: int(max_frames)]) for s in recs]
    return SequenceDataset(name, cache_file, fcm.data_dir, recs, tracking=False)
