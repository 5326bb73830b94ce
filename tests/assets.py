"""The one rule for where tests find data: inside the repository, never beside it.

`tests/data/coco-mini` holds 12 real COCO val2017 images and their annotations (its README
gives each image's license); configs and checkpoints come from the package itself
(`vcmbench/conf`, `vcmbench/checkpoints`), as they do for an installed wheel.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vcmbench.paths import CHECKPOINTS_DIR, CONF_DIR

REPO = Path(__file__).resolve().parents[1]
CONF = CONF_DIR
CHECKPOINTS = CHECKPOINTS_DIR
COCO_MINI = REPO / "tests" / "data" / "coco-mini"
COCO_MINI_IMAGES = COCO_MINI / "val2017"
COCO_MINI_JSON = COCO_MINI / "annotations" / "instances_val2017_mini.json"
COCO_MINI_COUNT = 12

# The mini set as a `vcmbench run` dataset (Hydra overrides).
COCO_MINI_DATASET = [
    "dataset=coco_folder", "dataset.name=coco_mini", f"dataset.root={COCO_MINI}",
    "dataset.annotation_file=annotations/instances_val2017_mini.json", "dataset.image_dir=val2017",
]  # fmt: skip


# A quick `vcmbench run` on the mini set's first 2 images: torchvision's R50-FPN with random weights at a
# small input size, one process, no progress bar.
FAST_RUN = [
    *COCO_MINI_DATASET,
    "dataset.max_images=2",
    "model=frcnn_r50_fpn",
    "model.weights=none",
    "model.min_size=256",
    "model.max_size=384",
    "sweep.progress=false",
    "sweep.workers=1",
]

# FAST_RUN's network at a 128-px input size (4 times fewer pixels): for tests of how a run goes (workers,
# resume, the command line), not of what the network gives.
SMALL_NET = ["model.min_size=128", "model.max_size=192"]

# What a test of another property may leave out of a run: the complexity counts (kmac_*) and the
# task-fidelity figures (the back's second pass on untouched features).
SKIP_FIGURES = ["complexity=false", "fidelity=false"]


def run_command_line(out: Path, *overrides: str, timeout: int) -> Path:
    """`vcmbench run` in a process of its own, as a user types it, into `out` (which it returns); a
    failure shows the end of its output."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "vcmbench", "run", "sweep.progress=false", f"hydra.run.dir={out}", *overrides]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out


def fast_run_cfg(*overrides: str):
    """The run config of FAST_RUN with these overrides."""
    from vcmbench.config import compose_config

    return compose_config("config", [*FAST_RUN, *overrides])


def video_run_cfg(tmp_path: Path, *overrides: str):
    """A run over the synthetic videos' first 3 frames (drawn into tmp_path/cache), one process, no report."""
    from vcmbench.config import compose_config

    return compose_config(
        "config",
        [
            "dataset=synthetic_video",
            f"dataset.cache_dir={tmp_path / 'cache'}",
            "dataset.max_frames=3",
            "sweep.progress=false",
            "sweep.workers=1",
            "report=false",
            *overrides,
        ],
    )


def coco_mini_image_paths(n: int) -> list[Path]:
    """The first n mini-set images by file name."""
    paths = sorted(COCO_MINI_IMAGES.glob("*.jpg"))[:n]
    assert len(paths) == n, f"expected {n} images in {COCO_MINI_IMAGES}"
    return paths


def numbers_of(table: Path) -> pd.DataFrame:
    """A points/classes table without what may differ between two runs of the same numbers: the
    clock's columns (`*_s`) and how the run was spread over processes (workers, contended)."""
    df = pd.read_csv(table)
    keep = [c for c in df.columns if not c.endswith("_s") and c not in ("workers", "contended")]
    keys = [c for c in ("codec", "rate", "sequence", "class") if c in df.columns]
    return df[keep].sort_values(keys).reset_index(drop=True)


def assert_same_numbers(run_table: Path, reference: Path) -> None:
    """Every non-time column of `run_table` equals `reference`'s, to the last bit: what determinism=exact
    promises on any machine. The message names the columns and rows that differ."""
    got, want = numbers_of(run_table), numbers_of(reference)
    assert list(got.columns) == list(want.columns), f"columns differ from {reference}"
    assert len(got) == len(want), f"{len(got)} rows, {reference} has {len(want)}"
    differ = [c for c in want.columns if not got[c].equals(want[c])]
    if differ:
        rows = sorted({i for c in differ for i in got.index[(got[c] != want[c]) & ~(got[c].isna() & want[c].isna())]})
        show = want.loc[rows[:5], [c for c in ("codec", "rate", "sequence") if c in want.columns]]
        raise AssertionError(f"{run_table} differs from {reference} in columns {differ}, rows:\n{show}")
