"""Per-(image, codec, rate) records, appended as they finish so a killed sweep resumes.

One JSON object per line in `records.jsonl`, flushed and fsynced after every line:
a crash loses at most the record being written, and a torn last line is ignored on
reload. Detections live inside the record, so evaluation can be redone from this
file alone and there is no second file to keep consistent.

What a line holds beside the numbers: detection rows; a segmenting network's instance masks (COCO
RLE counts, deflated together: `_stored`); a keypoint network's keypoints; and the per-pixel
category map of a network that labels every pixel (`Detections.semantic`: a semantic or panoptic
segmentation, category ids as the detection rows carry them, 0 where no category is), as
`semantic` (an image) or `frame_semantic` (one per frame of a sequence). A map is stored lossless
as a PNG image, base64-encoded behind the tag `png:` (`encode_semantic`): one grey channel whose
pixel values are the ids, 8-bit when every id is below 256, else 16-bit (ids up to 65535). A PNG
because its row filters and deflate make the few large regions of a segmentation small (measured:
about 15 kB for a 1920x1080 map of thirty regions, a few hundred bytes for a 64x36 one) and because
any tool opens it (`base64 -d`, then an image viewer). A re-identifying network's appearance embeddings
(`Detections.embeddings`, JDE's: one unit vector per detection row, what its tracker associates by)
are kept per frame as `embeddings` (an image) or `frame_embeddings` (one per frame), so the tracker
runs again from the records alone (`encode_embeddings`): `f16:<D>:` then the base64 of the (N, D)
rows as little-endian IEEE float16, row after row in the order of the detection rows (N = the frame's
row count; a frame without detections is `f16:<D>:`). Half precision because it keeps a unit vector's
components to 5e-4 (cosine distances move by about 1e-3, against JDE's association threshold of 0.7)
at half the bytes: 512 components take 1 KiB per detection, 1.4 KiB of base64. The fields of keypoints,
semantic maps and embeddings are left out of the lines of networks without them, which stay byte for
byte what they were.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import socket
import time
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from vcmbench.atomic import write_bytes
from vcmbench.errors import VcmbenchError


class RunFolderInUse(VcmbenchError):
    """Another live `vcmbench run` holds this run folder."""


class RunLock:
    """One writer per run folder: an exclusive `flock` on `<run dir>/.vcmbench.lock`.

    Two sweeps on one folder would both do all the work and interleave their records. The lock
    is the kernel's: it goes with the process, so a run killed with SIGKILL leaves a stale file
    whose lock is free, and the next run takes it over (and rewrites the holder it names). The
    file says who holds it (pid, host, start time) for the error of the run that is refused.
    flock is per host: on a network file system shared by several hosts it may not exclude.
    """

    NAME = ".vcmbench.lock"

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / self.NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise RunFolderInUse(
                f"{self.path.parent}: in use by {holder}; wait for that run to end, or give this "
                "one another folder (hydra.run.dir=...)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0
        )
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class FrameResult(NamedTuple):
    """One frame's results in a record: its image id, detection rows and their masks and keypoints
    (if the network gives them: one entry per detection row), its semantic map as stored
    (`encode_semantic`; "" when the network labels no pixel) and its detections' embeddings as stored
    (`encode_embeddings`; "" when the network gives none)."""

    frame_id: int
    detections: list[list[float]]
    masks: list[str]
    keypoints: list[list[float]] = []  # noqa: RUF012 - a NamedTuple default, never mutated
    semantic: str = ""
    embeddings: str = ""


@dataclass
class Record:
    """One (item, codec, rate): the item's bytes and times, and per frame its results.

    A work item is a sequence of frames and an image is a one-frame item; read a record's results
    through `frame_results()` (and `item_id`), which are the same for both. On disk an image's one
    frame keeps its fields `detections` / `masks` and a sequence's frames `frame_*` (with
    `image_id` the sequence id): the line format every run folder, shard and reference already has,
    so runs made before still resume and merge.
    """

    image_id: int
    codec: str
    rate: str
    setup: str  # hash of model, dataset and codec settings: records of another setup are not reused
    bytes: int
    pixels: int
    enc_s: float
    dec_s: float
    front_s: float
    back_s: float
    status: str = "ok"  # "ok" | "decode_failed" | "encode_failed"
    error: str = ""
    # COCO results rows without image_id: [x, y, w, h, score, category_id]
    detections: list[list[float]] = field(default_factory=list)
    # instance masks of a segmenting network, one per detection row: COCO compressed RLE counts
    # (pycocotools.mask; a few hundred bytes each, never dense arrays; records.jsonl stores them
    # deflated, `_stored`) of an image `mask_size`
    # [height, width]; empty for box-only networks
    masks: list[str] = field(default_factory=list)
    mask_size: list[int] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)  # codec/fidelity figures, become columns
    # bytes of each layer of a layered payload (base, enh): they add up to `bytes`
    layer_bytes: dict[str, int] = field(default_factory=dict)
    # Images coded in parallel when this record's times were taken: 1 = uncontended enc_s/dec_s.
    workers: int = 1
    # Sequences: the record is one (sequence, codec, rate); image_id is the sequence id, bytes the
    # whole sequence payload, times are per frame, and `frame_detections[k]` holds frame k's rows
    # (same format as `detections`) for frame image id `frame_ids[k]`.
    frames: int = 0
    frame_ids: list[int] = field(default_factory=list)
    frame_detections: list[list[list[float]]] = field(default_factory=list)
    # a segmenting network's masks of frame k's detections (as `masks`; all frames `mask_size`)
    frame_masks: list[list[str]] = field(default_factory=list)
    # blake2b of the item's front features (p2..p5 as float32 bytes; a sequence's frames in order)
    # and of the features the back ran on after decoding: the same config on two machines gives
    # the same feature_hash exactly when the environment computes the same features
    feature_hash: str = ""
    decoded_hash: str = ""
    # a keypoint network's keypoints, one entry per detection row: [x1, y1, v1, x2, y2, v2, ...] in
    # original-image pixels (COCO keypoint results' layout); `frame_keypoints[k]` those of frame k.
    # Empty for networks without keypoints, and then left out of the records.jsonl line
    keypoints: list[list[float]] = field(default_factory=list)
    frame_keypoints: list[list[list[float]]] = field(default_factory=list)
    # the per-pixel category map of a network that labels every pixel (`Detections.semantic`), as a
    # base64 PNG (`encode_semantic`); `frame_semantic[k]` that of frame k. Empty for networks without
    # one, and then left out of the records.jsonl line
    semantic: str = ""
    frame_semantic: list[str] = field(default_factory=list)
    # a re-identifying network's appearance embeddings of the detection rows (`encode_embeddings`);
    # `frame_embeddings[k]` those of frame k. Empty for networks without them, left out of the line
    embeddings: str = ""
    frame_embeddings: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, str, str, str]:
        return (self.image_id, self.codec, self.rate, self.setup)

    @property
    def item_id(self) -> int:
        """The work item's id: an image's, or a sequence's (its frames have their own)."""
        return self.image_id

    @property
    def is_sequence(self) -> bool:
        return bool(self.frames)

    def frame_results(self) -> list[FrameResult]:
        """Each frame's results in order: an image record's one frame, a sequence record's frames."""
        if self.frames:
            masks = self.frame_masks or [[] for _ in self.frame_ids]
            keypoints = self.frame_keypoints or [[] for _ in self.frame_ids]
            semantic = self.frame_semantic or ["" for _ in self.frame_ids]
            embeddings = self.frame_embeddings or ["" for _ in self.frame_ids]
            frames = zip(self.frame_ids, self.frame_detections, masks, keypoints, semantic, embeddings)
            return [FrameResult(*f) for f in frames]
        return [FrameResult(self.image_id, self.detections, self.masks, self.keypoints, self.semantic, self.embeddings)]

    @property
    def has_masks(self) -> bool:
        """Whether the network segmented: the record's frames carry instance masks."""
        return bool(self.masks or self.frame_masks)

    @property
    def has_keypoints(self) -> bool:
        """Whether the network gave keypoints: the record's frames carry them."""
        return bool(self.keypoints or any(self.frame_keypoints))

    @property
    def has_semantic(self) -> bool:
        """Whether the network labelled every pixel: the record's frames carry semantic maps."""
        return bool(self.semantic or any(self.frame_semantic))

    @property
    def has_embeddings(self) -> bool:
        """Whether the network gave appearance embeddings: the record's frames carry them."""
        return bool(self.embeddings or any(self.frame_embeddings))

    def semantic_maps(self) -> list:
        """Each frame's semantic map, in `frame_results()`'s order: an (H, W) int64 array of category
        ids, or None for a frame without one (a failed item's)."""
        return [decode_semantic(f.semantic) if f.semantic else None for f in self.frame_results()]

    def embedding_arrays(self) -> list:
        """Each frame's embeddings, in `frame_results()`'s order: an (N, D) float32 array, one row per
        detection row, or None for a frame without them (a failed item's, a network without any)."""
        return [decode_embeddings(f.embeddings) if f.embeddings else None for f in self.frame_results()]


class RecordsCorrupt(VcmbenchError):
    """records.jsonl has a bad line before its last one: not a crash's torn tail."""


class RecordStore:
    """Append-only record file with an in-memory index of finished keys.

    A crash can only tear the last line (each line is flushed and fsynced before the next is
    written), so a bad last line is dropped and its work redone. A bad line before it means the
    file was damaged some other way: that is an error naming the line, unless `repair` is set,
    which drops every bad line so the run redoes their work.
    """

    def __init__(self, path: Path, repair: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: dict[tuple[int, str, str, str], Record] = {}
        if self.path.exists():
            self._load(repair)
        self._fh = open(self.path, "a", encoding="utf-8")

    def _load(self, repair: bool) -> None:
        parsed = _parse(self.path)
        self.records.update(parsed.records)
        if parsed.damaged and not repair:
            raise _corrupt(self.path, parsed.damaged)
        # Rewrite without the bad lines so appends start on a clean line boundary.
        if parsed.bad:
            write_bytes(self.path, "".join(g + "\n" for g in parsed.good).encode("utf-8"))

    def __contains__(self, key: tuple[int, str, str, str]) -> bool:
        return key in self.records

    def append(self, rec: Record) -> None:
        self._fh.write(json.dumps(_stored(rec), separators=(",", ":")) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.records[rec.key] = rec

    def close(self) -> None:
        self._fh.close()


class _Parsed(NamedTuple):
    records: dict[tuple[int, str, str, str], Record]  # by key
    good: list[str]  # the lines that are records
    bad: list[tuple[int, str]]  # (line number, why) of every line that is not
    damaged: list[tuple[int, str]]  # the bad lines but a torn last one (which a crash can leave)


MASKS_PACKED = "z85:"  # a record line's masks: deflated RLE counts (one per line), base85


def _stored(rec: Record) -> dict:
    """A record as its records.jsonl line holds it: the masks' RLE counts, one per detection, are
    deflated together and base85-encoded (the masks of one image's detections overlap and share
    most of their runs: about 30 % smaller than the RLE text, which keeps a segmenting run's records
    under twice a box-only run's); `_loaded` undoes it, so a Record always holds plain RLE counts."""
    d = asdict(rec)
    if d["masks"]:
        d["masks"] = _pack(d["masks"])
    if d["frame_masks"]:
        d["frame_masks"] = [_pack(m) if m else "" for m in d["frame_masks"]]
    else:
        del d["frame_masks"]  # image records and box-only sequences: their lines stay as they were
    for key in ("keypoints", "frame_keypoints", "semantic", "frame_semantic", "embeddings", "frame_embeddings"):
        if not d[key]:
            del d[key]  # networks without keypoints, semantic maps or embeddings: their lines stay as they were
    return d


def _pack(masks: list[str]) -> str:
    return MASKS_PACKED + base64.b85encode(zlib.compress("\n".join(masks).encode("ascii"), 9)).decode()


def _unpack(masks: str) -> list[str]:
    if not masks:
        return []
    if not masks.startswith(MASKS_PACKED):
        raise ValueError(f"masks: not {MASKS_PACKED!r}-packed RLE counts")
    return zlib.decompress(base64.b85decode(masks[len(MASKS_PACKED) :])).decode("ascii").split("\n")


def _loaded(d: dict) -> Record:
    masks = d.get("masks")
    if isinstance(masks, str):  # packed (a list: records written before the masks were packed)
        d["masks"] = _unpack(masks)
    if d.get("frame_masks"):
        d["frame_masks"] = [_unpack(m) for m in d["frame_masks"]]
    return Record(**d)


def _parse(path: Path) -> _Parsed:
    """A records file, line by line, for a run that resumes and for a reader alike."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        numbered = [(n, line) for n, line in enumerate(fh.read().split("\n"), start=1) if line.strip()]
    records: dict[tuple[int, str, str, str], Record] = {}
    good, bad = [], []
    for n, line in numbered:
        try:
            rec = _loaded(json.loads(line))
        except (json.JSONDecodeError, TypeError, ValueError, zlib.error) as exc:
            bad.append((n, type(exc).__name__))
            continue
        records[rec.key] = rec
        good.append(line)
    return _Parsed(records, good, bad, [(n, why) for n, why in bad if n != numbered[-1][0]])


def _corrupt(path: Path, damaged: list[tuple[int, str]]) -> RecordsCorrupt:
    n, why = damaged[0]
    more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
    return RecordsCorrupt(
        f"{path}: line {n} is not a record ({why}){more}, and it is not a torn last "
        "line; rerun with repair=true (vcmbench run --repair) to drop the bad lines and "
        "redo their work"
    )


def write_records(path: Path, records: list[Record]) -> None:
    """A records file holding `records` in order, written at once (a merge of shards' records): the
    same lines a run appends one by one."""
    write_bytes(Path(path), "".join(json.dumps(_stored(r), separators=(",", ":")) + "\n" for r in records).encode())


def read_records(path: Path) -> list[Record]:
    """A finished (or interrupted) run's records, read only: a torn last line is skipped, a bad
    line before it is RecordsCorrupt, as for a run that resumes."""
    parsed = _parse(Path(path))
    if parsed.damaged:
        raise _corrupt(Path(path), parsed.damaged)
    return list(parsed.records.values())


def complete_groups(records: list[Record], image_ids: list[int]) -> dict[tuple[str, str], list[Record]]:
    """(codec, rate) -> its records of `image_ids`, sorted by image, for the groups that cover every
    one of them: a partial group would give a metric over another image set than its neighbours."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    wanted = set(image_ids)
    for r in records:
        if r.image_id in wanted:
            groups[(r.codec, r.rate)].append(r)
    return {
        key: sorted(recs, key=lambda r: r.image_id)
        for key, recs in groups.items()
        if {r.image_id for r in recs} == wanted
    }


def coco_results(records: list[Record]) -> list[dict]:
    """The records' detections as COCO results (what any COCO tool re-evaluates), with their
    `segmentation` RLE when the network segments and their `keypoints` when it gives them; a sequence record gives its frames' detections
    under the frames' image ids."""
    out = []
    for r in records:
        for image_id, rows, masks, keypoints, *_ in r.frame_results():
            for i, d in enumerate(rows):
                row = {"image_id": image_id, "bbox": d[:4], "score": d[4], "category_id": int(d[5])}
                if masks:
                    row["segmentation"] = {"size": list(r.mask_size), "counts": masks[i]}
                if keypoints:
                    row["keypoints"] = keypoints[i]
                out.append(row)
    return out


SEMANTIC_PNG = "png:"  # a record's semantic map: a PNG, base64


def encode_semantic(semantic) -> str:
    """An (H, W) map of category ids (>= 0; a tensor or an array) -> `png:` + the base64 of a
    lossless PNG of it: one grey channel, 8-bit where every id is below 256, else 16-bit."""
    import io

    import numpy as np
    from PIL import Image

    ids = np.asarray(semantic.cpu() if hasattr(semantic, "cpu") else semantic)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"a semantic map is an (H, W) array of integer category ids, not {ids.dtype} {ids.shape}")
    low, top = (int(ids.min()), int(ids.max())) if ids.size else (0, 0)
    if low < 0 or top > 65535:
        raise ValueError(f"semantic map ids span {low}..{top}; a record stores ids 0..65535")
    out = io.BytesIO()
    Image.fromarray(ids.astype(np.uint8 if top < 256 else np.uint16)).save(out, format="PNG", compress_level=9)
    return SEMANTIC_PNG + base64.b64encode(out.getvalue()).decode("ascii")


def decode_semantic(stored: str):
    """`encode_semantic`'s string -> the (H, W) int64 array of category ids."""
    import io

    import numpy as np
    from PIL import Image

    if not stored.startswith(SEMANTIC_PNG):
        raise ValueError(f"semantic: not a {SEMANTIC_PNG!r} map")
    try:
        with Image.open(io.BytesIO(base64.b64decode(stored[len(SEMANTIC_PNG) :], validate=True))) as image:
            if image.format != "PNG" or image.mode not in ("L", "I;16"):
                raise ValueError(f"a {image.format} image of mode {image.mode}, not an 8- or 16-bit grey PNG")
            return np.asarray(image).astype(np.int64)
    except (OSError, ValueError) as exc:
        raise ValueError(f"semantic: not a stored semantic map ({exc})") from None


EMBEDDINGS_F16 = "f16:"  # a frame's embeddings: f16:<D>: then base64 float16 rows


def encode_embeddings(embeddings) -> str:
    """(N, D) embeddings (a tensor or an array) -> `f16:<D>:` + the base64 of their little-endian
    float16 bytes, row after row (the module doc)."""
    import numpy as np

    rows = np.asarray(embeddings.detach().cpu() if hasattr(embeddings, "detach") else embeddings, dtype=np.float32)
    if rows.ndim != 2:
        raise ValueError(f"embeddings are (N, D) rows, one per detection, not an array of shape {rows.shape}")
    data = rows.astype("<f2").tobytes()
    return f"{EMBEDDINGS_F16}{rows.shape[1]}:" + base64.b64encode(data).decode("ascii")


def decode_embeddings(stored: str):
    """`encode_embeddings`' string -> the (N, D) float32 array of the embeddings, as stored (float16)."""
    import numpy as np

    tag, dim, data = (stored.split(":", 2) + ["", ""])[:3]
    try:
        raw = base64.b64decode(data, validate=True)
        d = int(dim)
        if f"{tag}:" != EMBEDDINGS_F16 or d < 1 or len(raw) % (2 * d):
            raise ValueError
    except ValueError:
        raise ValueError(f"embeddings: not stored embeddings ({EMBEDDINGS_F16}<D>:<base64>): {stored[:24]!r}") from None
    return np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(-1, d)


def encode_masks(masks) -> list[str]:
    """(N, H, W) bool masks -> COCO compressed RLE counts, one string per mask (pycocotools.mask)."""
    import numpy as np
    from pycocotools import mask as mask_utils

    if len(masks) == 0:
        return []
    dense = np.asfortranarray(np.asarray(masks, dtype=np.uint8).transpose(1, 2, 0))
    return [rle["counts"].decode("ascii") for rle in mask_utils.encode(dense)]


def write_detections(records: list[Record], image_ids: list[int], folder: Path) -> None:
    """`<folder>/<codec>/<rate>.json`: each complete point's COCO results json."""
    for (codec, rate), recs in complete_groups(records, image_ids).items():
        out = Path(folder) / codec / f"{rate}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(coco_results(recs)))
