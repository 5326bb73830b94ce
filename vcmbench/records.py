"""Per-(image, codec, rate) records, appended as they finish so a killed sweep resumes.

One JSON object per line in `records.jsonl`, flushed and fsynced after every line:
a crash loses at most the record being written, and a torn last line is ignored on
reload. Detections live inside the record, so evaluation can be redone from this
file alone and there is no second file to keep consistent.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vcmbench.atomic import write_bytes


@dataclass
class Record:
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
    extra: dict[str, float] = field(default_factory=dict)  # codec/fidelity figures, become columns
    # bytes of each layer of a layered payload (base, enh): they add up to `bytes`
    layer_bytes: dict[str, int] = field(default_factory=dict)
    # Images coded in parallel when this record's times were taken: 1 = uncontended enc_s/dec_s.
    workers: int = 1

    @property
    def key(self) -> tuple[int, str, str, str]:
        return (self.image_id, self.codec, self.rate, self.setup)


class RecordStore:
    """Append-only record file with an in-memory index of finished keys."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: dict[tuple[int, str, str, str], Record] = {}
        if self.path.exists():
            self._load()
        self._fh = open(self.path, "a", encoding="utf-8")

    def _load(self) -> None:
        with open(self.path, encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        good = []
        for line in lines:
            if not line.strip():
                continue
            try:
                rec = Record(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue  # a line torn by a crash: that work is simply redone
            self.records[rec.key] = rec
            good.append(line)
        # Rewrite without the torn line so appends start on a clean line boundary.
        if len(good) != len([ln for ln in lines if ln.strip()]):
            write_bytes(self.path, "".join(g + "\n" for g in good).encode("utf-8"))

    def __contains__(self, key: tuple[int, str, str, str]) -> bool:
        return key in self.records

    def append(self, rec: Record) -> None:
        self._fh.write(json.dumps(asdict(rec), separators=(",", ":")) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.records[rec.key] = rec

    def close(self) -> None:
        self._fh.close()
