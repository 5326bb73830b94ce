"""Where vcmbench finds its own files, wherever it is installed.

The Hydra configs (`vcmbench/conf/`) and the committed checkpoints (`vcmbench/checkpoints/`)
ship inside the package, so an installed wheel works from any working directory. A relative
path in a config (`checkpoints/ci_frcnn/ci_frcnn.pt`) means the user's file when one exists
under the working directory, and the packaged one otherwise; results and caches always go
under the working directory (or the folder the config names).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONF_DIR = PACKAGE_DIR / "conf"
CHECKPOINTS_DIR = PACKAGE_DIR / "checkpoints"


def is_none(value: object) -> bool:
    """A config value that means "not set": YAML null, an empty string or the word none."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "none", "None", "null"))


def resolve_data_path(value: str | Path) -> Path:
    """A config path made concrete: absolute as given; relative, the working directory's file
    if it exists, else the packaged one (which may not exist either: callers check and say
    which setting to fix)."""
    path = Path(str(value)).expanduser()
    if path.is_absolute() or path.exists():
        return path
    packaged = PACKAGE_DIR / path
    return packaged if packaged.exists() else path


def display_path(path: Path) -> str:
    """A path as a user would type it in a config: relative to the package for packaged files
    (`checkpoints/learned_interleaved`), relative to the working directory when under it."""
    path = Path(path).resolve()
    for root in (PACKAGE_DIR, Path.cwd()):
        try:
            return str(path.relative_to(root))
        except ValueError:
            continue
    return str(path)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's content, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
