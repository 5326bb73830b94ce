"""Shared fixtures: real images from tests/data/coco-mini and small, fast detectors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from tests.assets import coco_mini_image_paths
from vcmbench.points import POINT_COLUMNS

torch.set_num_threads(min(2, torch.get_num_threads()))


#: test files by how long they take on 2 cores, longest first (seconds in a fresh-clone CI run).
#: `make test` / `make e2e` hand whole files to 2 workers (`--dist loadfile --no-loadscope-reorder`)
#: in collection order, so these go first: the longest file starting last would leave one worker
#: idle at the end (longest processing time first). Unlisted files follow in their usual order.
LONGEST_FIRST = (
    "tests/test_default_run.py",  # 760: the offline default run
    "tests/test_video_default.py",  # 300: the video default
    "tests/vision/test_ci_maskrcnn.py",  # 160
    "tests/test_shards.py",  # 155 (SLURM)
    "tests/test_regress.py",  # 135
    "tests/test_run_safety.py",  # 95
    "tests/test_determinism.py",  # 60
    "tests/vision/test_backbone_split.py",  # 45
)


def pytest_collection_modifyitems(config, items) -> None:
    """Put the files of LONGEST_FIRST first, in its order (a stable sort: a file's tests keep theirs)."""
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def pytest_terminal_summary(terminalreporter) -> None:
    """The machine the suite ran on, printed last (CI logs show it, -q too): what a golden or reference
    mismatch is read against."""
    from vcmbench.determinism import cpu_model

    terminalreporter.write_line(
        f"vcmbench machine: {cpu_model()} ({os.cpu_count()} CPUs, torch kernels "
        f"{torch.backends.cpu.get_cpu_capability()})"
    )


@pytest.fixture(scope="session")
def val_images() -> list[torch.Tensor]:
    from vcmbench.datasets.images import read_rgb

    return [read_rgb(p) for p in coco_mini_image_paths(2)]


@pytest.fixture(scope="session")
def small_frcnn():
    """torchvision R50-FPN, random weights, small input size: real features, fast."""
    from vcmbench.vision.torchvision_split import build

    return build(arch="fasterrcnn_resnet50_fpn", weights="none", seed=0, score_thresh=0.0, min_size=320, max_size=512)


@pytest.fixture(scope="session")
def codec_from_yaml():
    """Build a codec from its packaged yaml, as a sweep would, with overrides.

    `codec_from_yaml("anchor_hevc", rates=[35], quantiser__range="global", backend=Ffv1Backend)`:
    keyword keys are the yaml's, `__` for nesting; `backend=CLASS` swaps the codec's back-end node
    for that back-end class (settings the new class does not take are dropped);
    `name=` renames the codec (its errors then name `codec.<name>...`).
    """
    import inspect

    from omegaconf import OmegaConf

    from vcmbench.config import all_codec_configs, runnable_codec_config
    from vcmbench.config import build as build_codec

    def build(yaml_name: str, backend: type | None = None, **overrides):
        node = runnable_codec_config(all_codec_configs(include_optional=True)[yaml_name], yaml_name)
        if backend is not None:
            cls = backend
            accepted = set()
            for klass in cls.__mro__:
                if "__init__" in vars(klass):
                    accepted |= set(inspect.signature(klass.__init__).parameters)
            kept = {k: v for k, v in node.backend.items() if k in accepted}
            node.backend = {"_target_": f"{cls.__module__}.{cls.__name__}", "_partial_": True, **kept}
        for key, value in overrides.items():
            OmegaConf.update(node, key.replace("__", "."), value, force_add=True)
        return build_codec(node)

    return build


@pytest.fixture(scope="session")
def small_detector():
    """torchvision R50-FPN with random weights at a 128-px input size, every box kept, 100 proposals."""
    from vcmbench.vision.torchvision_split import build

    det = build(weights="none", seed=0, min_size=128, max_size=192, score_thresh=0.0)
    det.model.rpn._pre_nms_top_n["testing"] = 200  # fewer proposals: a faster back, same features
    det.model.rpn._post_nms_top_n["testing"] = 100
    return det


@pytest.fixture(scope="session")
def front_output(small_detector):
    """The small detector's front on the first mini-set image."""
    from vcmbench.datasets.images import read_rgb

    return small_detector.front(read_rgb(coco_mini_image_paths(1)[0]))


@pytest.fixture(scope="session")
def real_features(front_output):
    """`real_features(channels=None)`: p2..p5 of a real COCO image through the small random-weights
    R50-FPN (p2 is 32x48), a fresh copy each call, optionally only the first `channels` channels
    of every level (smaller, faster)."""
    from vcmbench.types import LEVELS

    def features(channels: int | None = None) -> dict[str, torch.Tensor]:
        feats = front_output.features
        return {k: (feats[k] if channels is None else feats[k][:channels]).clone() for k in LEVELS}

    return features


# Hand-written points tables (test_report, test_regress: the `points_tables` fixture). Curves with known
# BD-rates: scaling every bpp of a curve by k at the same mAP gives a BD-rate of exactly
# (k - 1) x 100 % against the unscaled curve, whatever the interpolation.
BPP = np.array([0.05, 0.1, 0.2, 0.4, 0.8, 1.6])
MAP = np.array([20.0, 27.0, 32.0, 35.0, 36.5, 37.1])
PIXELS = 8 * 640 * 480


# the meta.role each codec's yaml gives it (what `vcmbench run` writes into points.csv)
ROLES = {
    "anchor_vvc": "feature_anchor",
    "raw": "uncompressed",
    "image_vvc": "image_anchor",
    "image_vtm": "image_anchor",
}
# and the encoder it names (Codec.describe_encoder); codecs not listed leave the cell empty
ENCODERS = {
    "anchor_vvc": "libvvenc preset faster",
    "raw": "none (float32 samples)",
    "image_vvc": "libvvenc preset faster",
}


def curve(
    codec: str,
    bpp,
    maps,
    *,
    enc=0.05,
    dec=0.02,
    failed: dict[int, int] | None = None,
    dataset: str = "coco_val2017_mini",
    model: str = "frcnn_r50_fpn",
    rates=None,
) -> list[dict]:
    rows = []
    for i, (b, m) in enumerate(zip(bpp, maps)):
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "codec": codec,
                "rate": rates[i] if rates is not None else f"qp={40 - 3 * i}",
                "n_images": 8,
                "n_failed": (failed or {}).get(i, 0),
                "bytes": int(round(float(b) * PIXELS / 8)),
                "pixels": PIXELS,
                "bpp": float(b),
                "map": float(m),
                "ap50": float(m) * 1.6,
                "enc_s": enc * (1 + 0.3 * i),
                "dec_s": dec * (1 + 0.2 * i),
                "front_s": 0.3,
                "back_s": 0.2,
                "role": ROLES.get(codec, "test"),
                "encoder": ENCODERS.get(codec, ""),
            }
        )
    return rows


def lossless(codec: str, bpp: float, map_: float, rate: str, **kw) -> list[dict]:
    return curve(codec, [bpp], [map_], rates=[rate], **kw)


def table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[*POINT_COLUMNS, "role", "encoder"])


def write_run(run_dir: Path, rows: list[dict], metric: str = "coco") -> Path:
    """A run folder as `vcmbench run` leaves it (points table, resolved config, versions)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    table(rows).to_csv(run_dir / "points.csv", index=False)
    (run_dir / "config.resolved.yaml").write_text(
        f"dataset:\n  name: coco_val2017_mini\n  metric: {metric}\nmodel:\n  name: frcnn_r50_fpn\n"
    )
    (run_dir / "run.json").write_text(json.dumps({"vcmbench": "0.1.0", "python": "3.11.7", "torch": "2.14.1"}))
    return run_dir


def write_csv(path: Path, rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def points_tables() -> SimpleNamespace:
    """The hand-written points tables above: `points_tables.curve(...)`, `.write_run(...)`, ..."""
    return SimpleNamespace(
        BPP=BPP,
        MAP=MAP,
        PIXELS=PIXELS,
        ROLES=ROLES,
        curve=curve,
        lossless=lossless,
        table=table,
        write_run=write_run,
        write_csv=write_csv,
    )
