"""SFU-HW-Objects-v1, the detection sequences of MPEG's FCM common test conditions, as a sequence
dataset: raw 8-bit 4:2:0 YUV files plus per-frame YOLO-style txt annotations, converted once to
a cached COCO json. `build` also reads the MPEG FCM test-data layout (PNG frames plus one COCO
json a sequence, `sfu_hw_fcm`): which one a root holds is detected, or set by `layout`.

Inputs under `root` (YUV layout):

* `<yuv_dir>/<Name>_<W>x<H>_<fps>[_...].yuv` — planar Y, U, V, 8 bits, 4:2:0 (chroma planes
  ceil(W/2) x ceil(H/2)), frames back to back, e.g. `Traffic_2560x1600_30_crop.yuv`,
  `Kimono1_1920x1080_24.yuv`, `BQSquare_416x240_60.yuv`. A table entry finds its file by name
  (or alias) and size; `extra_sequences.<name>.file` names one explicitly.
* `<annotation_dir>/<SequenceName>/*_<frame>.txt` — one file per frame, lines
  `class_id cx cy w h` (class: the COCO 80-class index 0..79; centre and size normalised to
  0..1). Any txt whose name ends in `_<digits>.txt` counts, the digits being the frame number
  in the YUV, counted from 0. The sequence folder may be named as the table entry, an alias,
  the YUV file's stem or `<Name>_<W>x<H>_<fps>`, directly under `annotation_dir` or under a
  `Class<X>` / `<X>` folder of its class. Frames without a txt are frames with no objects.

The COCO json maps SFU class k to the real COCO category id (`SFU_TO_COCO[k]`: 0 -> 1 person,
2 -> 3 car, 79 -> 90 toothbrush) and carries all 80 COCO categories, so a COCO-trained
detector's category ids match; boxes are absolute `[x, y, w, h]` pixels. Frame image id =
`sequence_id * 1_000_000 + frame` (frame: the YUV frame number, also the json's
`frame_index`); `file_name` is a label `<SequenceName>/<frame:05d>`, pixels come from the YUV.

Frames are decoded one at a time with BT.601 limited-range ("studio swing", Y 16..235, C
16..240) coefficients: the matrix FFmpeg's scaler assumes for untagged YUV input, which is how
the PNG frames of most FCM evaluation pipelines are made. These files carry no colour tags and
some were shot for BT.709; with BT.601 their hues shift slightly, the same for every codec, so
the comparison is unaffected. Chroma is upsampled by pixel repetition (each chroma sample
covers its 2x2 luma block): exact and cheap, with no filter choice to document further.

The json is cached under `cache_dir` (default `$VCMBENCH_CACHE/sfu_hw` or
`~/.cache/vcmbench/sfu_hw`) with a fingerprint of every input's path, size and mtime, and
rebuilt only when one changes.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vcmbench.datasets.base import ImageRecord, Sample
from vcmbench.datasets.cache import cache_root, digest, plain, read_cached, write_cached
from vcmbench.datasets.sequences import SequenceDataset, SequenceRecord, sequences_from_coco
from vcmbench.datasets.sfu_hw_fcm import build_fcm, fcm_layout
from vcmbench.datasets.sfu_table import (
    COCO_CATEGORIES,
    FRAME_ID_STRIDE,
    SFU_SEQUENCES,
    SFU_TO_COCO,
    SfuSequence,
    labelled,
    labels_setting,
    select_entries,
    sequence_table,
    stamp,
    unset,
)
from vcmbench.datasets.shards import shardable
from vcmbench.errors import DatasetError

# Re-exported: the table and the COCO mapping live in sfu_table, shared with the FCM layout.
__all__ = ["COCO_CATEGORIES", "FRAME_ID_STRIDE", "SFU_SEQUENCES", "SFU_TO_COCO", "SfuSequence", "build"]

log = logging.getLogger(__name__)

#: Bump when the json layout or the conversion rules change, so old caches are rebuilt.
CACHE_FORMAT = 1
HOW_TO_GET = (
    "get SFU-HW-Objects-v1 from the SFU / MPEG FCM CTC distribution and put the YUV files in dataset.root/yuv_dir "
    "(or point dataset.root at MPEG's fcm_testdata)"
)
HOW_TO_GET_ANNOTATIONS = (
    "put the SFU-HW-Objects-v1 per-frame txt files in dataset.root/annotation_dir/<sequence>/ "
    "or set dataset.annotation_dir"
)

_YUV_NAME = re.compile(r"^(?P<base>.+?)_(?P<w>\d+)x(?P<h>\d+)_(?P<fps>\d+(?:\.\d+)?)(?:hz)?(?:_.*)?\.yuv$", re.I)
_FRAME_TXT = re.compile(r"_(\d+)\.txt$", re.I)

# BT.601: luma weights; limited range scales Y by 255/219 and Cb/Cr by 255/224.
_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB
_Y_SCALE, _C_SCALE = 255.0 / 219.0, 255.0 / 224.0
_R_CR = 2.0 * (1.0 - _KR) * _C_SCALE
_G_CB = -2.0 * (1.0 - _KB) * _KB / _KG * _C_SCALE
_G_CR = -2.0 * (1.0 - _KR) * _KR / _KG * _C_SCALE
_B_CB = 2.0 * (1.0 - _KB) * _C_SCALE


def frame_bytes(width: int, height: int) -> int:
    """Bytes of one 8-bit 4:2:0 frame (w*h*3/2 for even sizes)."""
    return width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)


def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """8-bit planes (H, W), (ceil(H/2), ceil(W/2)) x2 -> uint8 RGB (3, H, W): BT.601 limited range,
    chroma repeated over its 2x2 block, rounded to nearest and clipped to 0..255."""
    h, w = y.shape
    cb = np.repeat(np.repeat(u, 2, axis=0), 2, axis=1)[:h, :w].astype(np.float32) - 128.0
    cr = np.repeat(np.repeat(v, 2, axis=0), 2, axis=1)[:h, :w].astype(np.float32) - 128.0
    luma = (y.astype(np.float32) - 16.0) * np.float32(_Y_SCALE)
    rgb = np.empty((3, h, w), dtype=np.float32)
    rgb[0] = luma + np.float32(_R_CR) * cr
    rgb[1] = luma + np.float32(_G_CB) * cb + np.float32(_G_CR) * cr
    rgb[2] = luma + np.float32(_B_CB) * cb
    np.rint(rgb, out=rgb)
    np.clip(rgb, 0.0, 255.0, out=rgb)
    return rgb.astype(np.uint8)


def read_yuv420_frame(path: Path, index: int, width: int, height: int) -> np.ndarray:
    """Frame `index` (from 0) of an 8-bit 4:2:0 YUV file as uint8 RGB (3, H, W); reads only that frame."""
    size = frame_bytes(width, height)
    try:
        with open(path, "rb") as f:
            f.seek(index * size)
            buf = f.read(size)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read frame {index} ({exc}); {HOW_TO_GET}") from exc
    if len(buf) != size:
        raise DatasetError(
            f"{path}: frame {index} is past the end of the file (a {width}x{height} 4:2:0 frame is "
            f"{size} bytes); the file is truncated or changed since the dataset was built"
        )
    cw, ch = (width + 1) // 2, (height + 1) // 2
    planes = np.frombuffer(buf, dtype=np.uint8)
    y = planes[: width * height].reshape(height, width)
    u = planes[width * height : width * height + cw * ch].reshape(ch, cw)
    v = planes[width * height + cw * ch :].reshape(ch, cw)
    return yuv420_to_rgb(y, u, v)


@dataclass(frozen=True)
class YuvSource:
    path: Path
    width: int
    height: int


class SfuHwObjects(SequenceDataset):
    """SFU-HW-Objects-v1 sequences; frames decoded from the YUV files one at a time."""

    def __init__(
        self,
        name: str,
        annotation_file: Path,
        image_dir: Path,
        sequences: list[SequenceRecord],
        sources: dict[int, YuvSource],
    ):
        super().__init__(name, annotation_file, image_dir, sequences, tracking=False)
        self.sources = sources

    def load_frame(self, frame: ImageRecord) -> Sample:
        sid, index = divmod(frame.image_id, FRAME_ID_STRIDE)
        src = self.sources[sid]
        rgb = read_yuv420_frame(src.path, index, src.width, src.height)
        return Sample(frame.image_id, frame.file_name, torch.from_numpy(rgb), src.height, src.width)


def default_cache_dir() -> Path:
    return cache_root("sfu_hw")


def _fmt_fps(fps: float) -> str:
    return str(int(fps)) if float(fps).is_integer() else str(fps)


@dataclass(frozen=True)
class _Resolved:
    """A selected sequence with its YUV file and its window checked against it."""

    entry: SfuSequence
    yuv: Path
    width: int
    height: int
    fps: float
    first: int
    count: int


def _find_yuv(entry: SfuSequence, yuv_root: Path, listing: list[Path]) -> Path | None:
    if entry.file is not None:
        path = yuv_root / entry.file
        if not path.is_file():
            raise DatasetError(
                f"YUV for sequence {entry.name!r} not found: {path.absolute()} "
                f"(dataset.extra_sequences.{entry.name}.file); {HOW_TO_GET}"
            )
        return path
    names = {n.casefold() for n in (entry.name, *entry.aliases)}
    hits = []
    for p in listing:
        m = _YUV_NAME.match(p.name)
        if not m or m["base"].casefold() not in names:
            continue
        if entry.width is not None and int(m["w"]) != entry.width:
            continue
        if entry.height is not None and int(m["h"]) != entry.height:
            continue
        hits.append(p)
    if len(hits) > 1:
        raise DatasetError(
            f"several YUV files in {yuv_root.absolute()} fit sequence {entry.name!r}: "
            f"{', '.join(p.name for p in hits)}; keep one or name it with "
            f"dataset.extra_sequences.{entry.name}.file"
        )
    return hits[0] if hits else None


def _yuv_pattern(entry: SfuSequence, yuv_root: Path) -> str:
    size = f"{entry.width}x{entry.height}" if entry.width and entry.height else "<W>x<H>"
    return f"{yuv_root.absolute()}/{entry.name}_{size}_*.yuv"


def _resolve(entry: SfuSequence, yuv: Path) -> _Resolved:
    m = _YUV_NAME.match(yuv.name)
    width = entry.width if entry.width is not None else (int(m["w"]) if m else None)
    height = entry.height if entry.height is not None else (int(m["h"]) if m else None)
    fps = entry.fps if entry.fps is not None else (float(m["fps"]) if m else None)
    if width is None or height is None or fps is None:
        raise DatasetError(
            f"{yuv}: cannot tell the size / frame rate of sequence {entry.name!r} from the file name "
            f"(<Name>_<W>x<H>_<fps>.yuv); give width, height and fps in "
            f"dataset.extra_sequences.{entry.name}"
        )
    if m and (int(m["w"]), int(m["h"])) != (width, height):
        raise DatasetError(
            f"{yuv}: the file name says {m['w']}x{m['h']} but sequence {entry.name!r} is "
            f"{width}x{height}; fix dataset.extra_sequences.{entry.name} or the file"
        )
    size = yuv.stat().st_size
    fb = frame_bytes(width, height)
    if size == 0 or size % fb:
        raise DatasetError(
            f"{yuv}: {size} bytes is not a whole number of {width}x{height} 8-bit 4:2:0 frames "
            f"({fb} bytes each); the file is truncated or not {width}x{height} 4:2:0 8-bit"
        )
    total = size // fb
    count = entry.count if entry.count is not None else total - entry.first
    if count < 1 or entry.first + count > total:
        raise DatasetError(
            f"{yuv}: holds {total} frames but sequence {entry.name!r} needs frames {entry.first}.."
            f"{entry.first + max(count, 1) - 1}; get the full sequence, or set "
            f"dataset.frame_window.{entry.name}=[first,count] to fit (a YUV already cut to the "
            f"window: [0,count])"
        )
    if entry.first + count > FRAME_ID_STRIDE:
        raise DatasetError(f"{yuv}: at most {FRAME_ID_STRIDE} frames a sequence are supported")
    return _Resolved(entry, yuv, width, height, float(fps), entry.first, count)


def annotation_folder(ann_root: Path, r: _Resolved, taken: set[str] = frozenset()) -> Path:
    """The sequence's annotation folder: the first of the documented name variants that exists.

    `taken`: names of other sequences, never used as an alias (RaceHorsesC's alias RaceHorses is
    the class D sequence's name, so its folder is never taken for class C's).
    """
    stem = r.yuv.name[: -len(r.yuv.suffix)]
    m = _YUV_NAME.match(r.yuv.name)
    names = [r.entry.name, *(a for a in r.entry.aliases if a not in taken), stem]
    if m:
        names.append(f"{m['base']}_{r.width}x{r.height}_{_fmt_fps(r.fps)}")
    names = list(dict.fromkeys(names))
    cls = r.entry.seq_class
    for parent in (ann_root, ann_root / f"Class{cls}", ann_root / cls):
        for n in names:
            if (parent / n).is_dir():
                return parent / n
    raise DatasetError(
        f"annotations of sequence {r.entry.name!r} not found: no folder {ann_root.absolute()}/"
        f"{{{','.join(names)}}} (nor under Class{cls}/ or {cls}/); {HOW_TO_GET_ANNOTATIONS}"
    )


def annotation_files(folder: Path) -> dict[int, Path]:
    """frame number -> txt, for every `*_<digits>.txt` in the folder."""
    out: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        m = _FRAME_TXT.search(p.name)
        if not m or not p.is_file():
            continue
        k = int(m.group(1))
        if k in out:
            raise DatasetError(f"{folder}: two annotation files for frame {k}: {out[k].name} and {p.name}; remove one")
        out[k] = p
    return out


def read_annotation(path: Path, width: int, height: int) -> list[tuple[int, list[float]]]:
    """(COCO category id, [x, y, w, h] in pixels) of each line of a YOLO-style txt."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        parts = text.split()
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            vals = []
        tol = 1e-6
        if len(vals) != 5 or not vals[0].is_integer() or not all(-tol <= v <= 1 + tol for v in vals[1:]):
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise DatasetError(
                f"{path} line {n}: expected 'class cx cy w h' with values in 0..1, got {shown!r}; fix the line"
            )
        cls = int(vals[0])
        if not 0 <= cls < len(SFU_TO_COCO):
            raise DatasetError(
                f"{path} line {n}: class id {cls} is outside 0..79 (the COCO 80-class index "
                "SFU-HW-Objects uses); fix the line"
            )
        cx, cy, bw, bh = vals[1:]
        w, h = bw * width, bh * height
        out.append((SFU_TO_COCO[cls], [cx * width - w / 2, cy * height - h / 2, w, h]))
    return out


def convert(resolved: list[_Resolved], folders: list[Path]) -> dict[str, Any]:
    """The COCO dict over the selected sequences (ids 1..N in selection order)."""
    sequences, images, annotations = [], [], []
    for sid, (r, folder) in enumerate(zip(resolved, folders, strict=True), start=1):
        sequences.append(
            {
                "id": sid,
                "name": r.entry.name,
                "class": r.entry.seq_class,
                "fps": r.fps,
                "width": r.width,
                "height": r.height,
                "first": r.first,
                "count": r.count,
                "yuv": str(r.yuv.absolute()),
                "annotations": str(folder.absolute()),
            }
        )
        txts = annotation_files(folder)
        unlabelled = 0
        for k in range(r.first, r.first + r.count):
            image_id = sid * FRAME_ID_STRIDE + k
            images.append(
                {
                    "id": image_id,
                    "file_name": f"{r.entry.name}/{k:05d}",
                    "height": r.height,
                    "width": r.width,
                    "sequence_id": sid,
                    "frame_index": k,
                }
            )
            if k not in txts:
                unlabelled += 1
                continue
            for cat, box in read_annotation(txts[k], r.width, r.height):
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": cat,
                        "bbox": box,
                        "area": box[2] * box[3],
                        "iscrowd": 0,
                    }
                )
        if unlabelled:
            log.info(
                "%s: %d of %d frames have no annotation file in %s (no objects)",
                r.entry.name,
                unlabelled,
                r.count,
                folder,
            )
    categories = [{"id": cid, "name": name} for cid, name in COCO_CATEGORIES]
    return {"info": {}, "sequences": sequences, "images": images, "annotations": annotations, "categories": categories}


@shardable
def build(
    name: str,
    root: str,
    layout: str = "auto",
    yuv_dir: str = ".",
    annotation_dir: str = "annotations",
    sequences: list[str] | None = None,
    classes: list[str] | None = None,
    class_labels: str = "letters",
    frame_window: dict[str, list[int]] | None = None,
    extra_sequences: dict[str, dict[str, Any]] | None = None,
    max_frames: int | None = None,
    cache_dir: str | None = None,
    how_to_get: str | None = None,
) -> SequenceDataset:
    """Hydra target: `dataset=sfu_hw_objects dataset.root=/data/SFU-HW-Objects-v1` (or the FCM
    test data's folder: `layout` auto picks it, see `sfu_hw_fcm.fcm_layout`).

    `yuv_dir`/`annotation_dir` are relative to root unless absolute. `sequences`: names (table
    order otherwise; default: every FCM CTC entry and every `extra_sequences` entry whose YUV is
    present, an error if none is). `classes`: keep sequences of these classes (e.g. ['A','B'] or
    CTTC names such as CLASS-AB); naming 'E' selects the non-CTC class E entries. `class_labels`:
    'letters' or 'cttc' (CLASS-AB, CLASS-C, ...). `frame_window`: name -> [first, count],
    overriding the table. `extra_sequences`: add or amend table entries (see `sequence_table`),
    e.g. `{MySeq: {class: B}}` for `MySeq_1920x1080_30.yuv`, all its frames. `max_frames`: the
    first N frames of each window (the cached json always holds the whole window).
    `how_to_get` is accepted for config symmetry; the errors carry their own instructions.
    """
    del how_to_get
    rootp = Path(str(root)).expanduser()
    if not rootp.is_dir():
        raise DatasetError(f"SFU-HW-Objects folder not found: {rootp.absolute()} (dataset.root); {HOW_TO_GET}")
    if not unset(max_frames) and int(max_frames) < 1:
        raise DatasetError(f"dataset.max_frames={max_frames}: must be >= 1 or null")
    labels = labels_setting(class_labels)
    folder = default_cache_dir() if unset(cache_dir) else Path(str(cache_dir)).expanduser()
    yuv_root = rootp / Path(str(yuv_dir)).expanduser()
    fcm = fcm_layout(rootp, layout, yuv_root)
    if fcm is not None:
        if not unset(frame_window):
            raise DatasetError(
                f"dataset.frame_window={plain(frame_window)}: the FCM layout's frames are those of each "
                "sequence's annotation json; remove it (dataset.max_frames keeps the first N)"
            )
        return build_fcm(name, fcm, sequences, classes, labels, extra_sequences, max_frames, folder)
    if not yuv_root.is_dir():
        raise DatasetError(f"YUV folder not found: {yuv_root.absolute()} (dataset.yuv_dir); {HOW_TO_GET}")
    ann_root = rootp / Path(str(annotation_dir)).expanduser()
    table = sequence_table(extra_sequences, frame_window)
    extra_names = {str(k) for k in (plain(extra_sequences) or {})}
    entries, explicit = select_entries(table, sequences, classes, extra_names)

    listing = sorted(p for p in yuv_root.iterdir() if p.suffix.lower() == ".yuv")
    found: list[tuple[SfuSequence, Path]] = []
    for e in entries:
        path = _find_yuv(e, yuv_root, listing)
        if path is None and (explicit or e.name in extra_names):
            raise DatasetError(f"YUV for sequence {e.name!r} not found: {_yuv_pattern(e, yuv_root)}; {HOW_TO_GET}")
        if path is not None:
            found.append((e, path))
    if not found:
        raise DatasetError(
            f"no SFU-HW-Objects YUV found in {yuv_root.absolute()} (dataset.yuv_dir) for "
            f"{', '.join(e.name for e in entries)}; {HOW_TO_GET}"
        )
    resolved = [_resolve(e, p) for e, p in found]
    folders = [annotation_folder(ann_root, r, set(table) - {r.entry.name}) for r in resolved]
    relabelled = labelled([r.entry for r in resolved], labels)
    resolved = [dataclasses.replace(r, entry=e) for r, e in zip(resolved, relabelled, strict=True)]

    options = {
        "format": CACHE_FORMAT,
        "root": str(rootp.absolute()),
        "sequences": [
            [r.entry.name, r.entry.seq_class, str(r.yuv.absolute()), r.width, r.height, r.fps, r.first, r.count]
            for r in resolved
        ],
        "annotations": [str(f.absolute()) for f in folders],
    }
    inputs = [
        [stamp(r.yuv), [stamp(p) for _, p in sorted(annotation_files(f).items())]]
        for r, f in zip(resolved, folders, strict=True)
    ]
    cache_file = folder / f"{name}-{digest(options)[:12]}.json"
    fp = digest({"options": options, "inputs": inputs})
    data = read_cached(cache_file, fp)
    if data is None:
        log.info("converting %d SFU-HW sequences of %s to COCO json %s", len(resolved), name, cache_file)
        data = convert(resolved, folders)
        data["info"] = {
            "description": f"vcmbench {name}: SFU-HW-Objects-v1 converted to COCO format",
            "vcmbench_fingerprint": fp,
            "vcmbench_format": CACHE_FORMAT,
            "source": options,
        }
        write_cached(cache_file, data)
    recs = sequences_from_coco(data, cache_file)
    if not unset(max_frames):
        recs = [dataclasses.replace(s, frames=s.frames[: int(max_frames)]) for s in recs]
    sources = {sid: YuvSource(r.yuv, r.width, r.height) for sid, r in enumerate(resolved, start=1)}
    return SfuHwObjects(name, cache_file, yuv_root, recs, sources)
