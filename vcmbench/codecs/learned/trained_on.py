"""What a trained codec's checkpoint was trained on, read back from the checkpoint's files.

A learned codec only codes well the features of the network it was trained for; these facts let
the run refuse (or mark) a codec meeting another network's features (vcmbench.domain).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def read_checkpoint_info(path: Path, stored_meta: Callable[[Path], dict]) -> dict:
    """A checkpoint's sidecar json (q{k}.json), or its stored meta (`stored_meta(path)`) where there is none."""
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            return json.loads(sidecar.read_text())
        except ValueError:
            pass
    return stored_meta(path)


def trained_on_facts(model_cfg, train_set_cfg, front: dict, channels: int) -> dict:
    """The `trained_on` block a trainer writes into a checkpoint's json: the front's name, split, weights
    sha256 and front digest, the levels' channel count and the training set's name."""
    from vcmbench.codecs.learned.features import front_digest

    return {
        "network": front.get("name"),
        "split": str(model_cfg.get("split", "fpn")),
        "sha256": front.get("sha256"),
        "channels": int(channels),
        "data": str(train_set_cfg.get("name")),
        "front": front_digest(model_cfg),
    }


def trained_on_of(info: dict) -> dict:
    """The `trained_on` facts of a checkpoint's info (see Codec.trained_on), with `front`: the
    digest of the trained network's front weights, from the checkpoint or from its weights file."""
    facts = dict(info["trained_on"]) if isinstance(info.get("trained_on"), dict) else _derived(info)
    if not facts.get("front"):
        facts["front"] = _front_of(info.get("front") or {})
    return facts


def _front_of(front: dict) -> str | None:
    """The front digest of the weights a checkpoint's `front` names, where that file is here."""
    from vcmbench.codecs.learned.features import _resolve, weights_front_digest

    weights = str(front.get("weights") or "")
    if not weights or weights == "none":
        sha = str(front.get("sha256") or "")
        return sha if sha.startswith("random-seed-") else None
    path = _resolve(weights)
    return None if path is None else weights_front_digest(path)


def _derived(info: dict) -> dict:
    """The facts of a checkpoint made before checkpoints kept `trained_on`."""
    front = info.get("front") or {}
    config = info.get("config") or {}
    model = config.get("model") or {}
    train_set = info.get("train_set") or config.get("train_set") or {}
    return {
        "network": front.get("name") or model.get("name"),
        "split": str(model.get("split", "fpn")),
        "sha256": front.get("sha256"),
        "channels": int((info.get("net") or {}).get("N", 256)),
        "data": train_set.get("name"),
    }
