"""Refresh the CI references (anchors/ci/*.csv) for some codecs only: their rows are rerun, every other row stays.

    .venv/bin/python scripts/refresh_references.py learned_interleaved learned_cascade joint_interleaved_vvc

For retrained checkpoints (or any change that moves one codec's numbers and no other's): the
`make ci-reference` sweeps (the default 20 scenes, the 50-scene set, the 6-frame video set, the
reduced Mask R-CNN run), run
for the named codecs alone, and each table's rows of those codecs replaced by the new ones. The
other rows are as they were measured, to the last digit, so the regress gate still checks them.
A codec a reference does not hold (the video or mask one) is not run for it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CI = REPO / "anchors" / "ci"
#: table -> (sweep overrides, the run's tables it takes rows from)
SWEEPS = {
    "20": ([], {"points.csv": "points.csv"}),
    "50": (["dataset.count=50"], {"points-50.csv": "points.csv"}),
    "video": (
        ["dataset=synthetic_video"],
        {"video-points.csv": "points.csv", "video-classes.csv": "classes.csv"},
    ),
    # the Makefile's MASK_CI_RUN, less its codec list (tests/vision/test_ci_maskrcnn.py: MASK_RUN)
    "maskrcnn": (
        ["model=ci_maskrcnn", "dataset.max_images=4", "complexity=false"],
        {"maskrcnn-points.csv": "points.csv"},
    ),
    # the Makefile's TASK_CI_RUN per task model, less its codec list (tests/vision/test_ci_task_runs.py)
    "semseg": (
        ["model=ci_semseg", "dataset.max_images=4", "complexity=false", "timing.items=0"],
        {"semseg-points.csv": "points.csv"},
    ),
    "keypoints": (
        ["model=ci_keypoints", "dataset.max_images=4", "complexity=false", "timing.items=0"],
        {"keypoints-points.csv": "points.csv"},
    ),
    # the Makefile's JDE_CI_RUN, less its codec list (tests/vision/test_ci_jde_run.py)
    "jde": (
        ["model=ci_jde", "dataset=synthetic_video", "dataset.max_frames=3", "complexity=false", "timing.items=0"],
        {"jde-points.csv": "points.csv", "jde-classes.csv": "classes.csv"},
    ),
}


def replace_rows(reference: pd.DataFrame, new: pd.DataFrame, codecs: list[str]) -> pd.DataFrame:
    """`reference` with the rows of `codecs` replaced by `new`'s (columns: the reference's, then new ones)."""
    kept = reference[~reference.codec.isin(codecs)]
    columns = list(reference.columns) + [c for c in new.columns if c not in reference.columns]
    out = pd.concat([kept, new[new.codec.isin(codecs)]], ignore_index=True)[columns]
    keys = [k for k in ("codec", "sequence", "class", "bpp") if k in out.columns]
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("codecs", nargs="+")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "ci-refresh", help="run dirs go under it")
    args = ap.parse_args(argv)
    vcmbench = [sys.executable, "-m", "vcmbench", "run", "sweep.progress=false", "report=false"]
    for name, (overrides, tables) in SWEEPS.items():
        # round_trip: the kept rows are written back to the last digit (the default parser is not exact)
        refs = {t: pd.read_csv(CI / t, float_precision="round_trip") for t in tables}
        held = set().union(*(set(r.codec) for r in refs.values()))
        codecs = [c for c in args.codecs if c in held]
        if not codecs:
            continue
        run_dir = args.out / name
        subprocess.run(
            [*vcmbench, *overrides, f"codec=[{','.join(codecs)}]", f"hydra.run.dir={run_dir}"], check=True, cwd=REPO
        )
        for table, produced in tables.items():
            refreshed = replace_rows(refs[table], pd.read_csv(run_dir / produced, float_precision="round_trip"), codecs)
            refreshed.to_csv(CI / table, index=False)
            print(f"{CI / table}: rows of {', '.join(codecs)} replaced ({len(refreshed)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
