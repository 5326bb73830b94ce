"""The converted-annotation cache shared by every dataset read from another format.

OpenImages CSVs, SFU-HW annotation folders and MOT folders are converted once to a COCO-style
json; the json keeps a fingerprint of its inputs (`info.vcmbench_fingerprint`) and is rebuilt
only when that changes. Writes are atomic, so parallel sweep workers never read half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from vcmbench.atomic import write_bytes
from vcmbench.errors import DatasetError


def read_cached(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The cached json if it was made from the same inputs; anything unreadable just means 'rebuild'."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("info", {}).get("vcmbench_fingerprint") != fingerprint:
        return None
    return data


def write_cached(path: Path, data: dict[str, Any], setting: str = "dataset.cache_dir") -> None:
    """Write the converted json atomically; an unwritable place names the setting that moves it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, json.dumps(data).encode("utf-8"))
    except OSError as exc:
        raise DatasetError(
            f"cannot write the converted COCO json {path} ({exc}); set {setting} to a writable "
            f"{'folder' if setting.endswith('_dir') else 'path'}"
        ) from exc


def digest(obj: Any) -> str:
    """sha256 of a json-able value (sorted keys): the fingerprint of conversion inputs."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def cache_root(kind: str) -> Path:
    """Where a dataset of `kind` caches what it builds: $VCMBENCH_CACHE/KIND or ~/.cache/vcmbench/KIND."""
    root = os.environ.get("VCMBENCH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "vcmbench") / kind


def plain(value: Any) -> Any:
    """Hydra hands lists and mappings over as ListConfig/DictConfig: plain Python containers here."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def converted(cache_file: Path, fingerprint: str, convert, description: str, options: dict, fmt: int) -> dict[str, Any]:
    """A set's COCO json: the cached one if it was made from the same inputs, else `convert()`'s,
    stamped with what it was made from (`info`) and written to `cache_file`."""
    data = read_cached(cache_file, fingerprint)
    if data is None:
        data = convert()
        data["info"] = {
            "description": description,
            "vcmbench_fingerprint": fingerprint,
            "vcmbench_format": fmt,
            "source": options,
        }
        write_cached(cache_file, data)
    return data
