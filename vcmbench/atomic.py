"""Atomic file writes: a reader (a parallel sweep worker, a resumed run) sees the old file or
the new one, never half of one, and a crash leaves no partial file under the real name."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

__all__ = ["write_bytes", "torch_save"]


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a unique temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def torch_save(obj: object, path: str | os.PathLike) -> None:
    """`torch.save` through `write_bytes`."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())
