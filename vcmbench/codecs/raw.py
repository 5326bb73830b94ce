"""Uncompressed references: float32 (exact, the 100% point) and float16."""

from __future__ import annotations

import numpy as np
import torch

from vcmbench.codecs.base import FeatureCodec, RatePoint, register_tags, strip_crc, with_crc
from vcmbench.errors import ConfigError, PayloadError
from vcmbench.types import Features

_DTYPES = {"float32": np.dtype(">f4"), "float16": np.dtype(">f2")}
_TAGS = {"float32": b"RAW4", "float16": b"RAW2"}
register_tags(f"{__name__}.RawCodec", *_TAGS.values())


class RawCodec(FeatureCodec):
    """The split's tensors (p2..p5, or any others) as big-endian floats, one after the other, with a CRC32.

    Payload = header (6 + 24 bytes for p2..p5; `codecs.base.shape_table`) + 4 or 2 bytes per element
    + 4 bytes CRC.
    """

    knob = "dtype"

    def __init__(self, name: str = "raw", dtype: str = "float32"):
        if dtype not in _DTYPES:
            raise ConfigError(f"codec.{name}.dtype={dtype!r}: choose one of {sorted(_DTYPES)}")
        self.dtype = dtype
        self.tag = _TAGS[dtype]
        super().__init__(name, [dtype])

    def describe_encoder(self) -> str:
        return f"none ({self.dtype} samples)"

    def _encode_body(self, features: Features, rate: RatePoint, shapes) -> bytes:
        dt = _DTYPES[self.dtype]
        parts = [t.detach().cpu().float().numpy().astype(dt).tobytes() for t in features.values()]
        return with_crc(b"".join(parts))

    def _decode_body(self, body, shapes) -> list[torch.Tensor]:
        data = strip_crc(body, self.name)
        dt = _DTYPES[self.dtype]
        need = sum(int(np.prod(s)) for s in shapes) * dt.itemsize
        if len(data) != need:
            raise PayloadError(f"{self.name}: body has {len(data)} bytes, shapes need {need} (truncated payload)")
        out, off = [], 0
        for s in shapes:
            n = int(np.prod(s)) * dt.itemsize
            arr = np.frombuffer(data, dtype=dt, count=n // dt.itemsize, offset=off).astype(np.float32)
            out.append(torch.from_numpy(arr.reshape(s)))
            off += n
        return out
