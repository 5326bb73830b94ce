"""`vcmbench run` end to end in a fresh process: the true bytes and bpp of a run, its complexity
columns, detections and resolved config."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.assets import FAST_RUN, fast_run_cfg
from vcmbench.points import POINT_COLUMNS

HEADER_AND_CRC = 30 + 4


def test_cli_run_raw_gives_true_bytes_and_bpp(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "vcmbench", "run", *FAST_RUN, "codec=raw", "timing.items=1", f"hydra.run.dir={out}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    points = pd.read_csv(out / "points.csv")
    assert list(points.columns[: len(POINT_COLUMNS)]) == POINT_COLUMNS
    assert len(points) == 1 and points.loc[0, "rate"] == "dtype=float32"
    assert points.loc[0, "role"] == "uncompressed" and points.loc[0, "encoder"] == "none (float32 samples)"
    # complexity: the networks are counted, a codec torch does not run is time only (NaN, not 0)
    assert points.loc[0, "kmac_front"] > 1 and points.loc[0, "kmac_back"] > 1
    assert pd.isna(points.loc[0, "kmac_enc"]) and pd.isna(points.loc[0, "kmac_dec"])
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2
    # Recompute the expected payload from the real front on the same images.
    cfg = fast_run_cfg("codec=raw")
    from hydra.utils import instantiate

    ds, det = instantiate(cfg.dataset), instantiate(cfg.model)
    expected_bytes = 0
    for rec in ds.records:
        feats = det.front(ds.load(rec).image).features
        expected_bytes += 4 * sum(v.numel() for v in feats.values()) + HEADER_AND_CRC
    row = points.iloc[0]
    assert row["bytes"] == expected_bytes
    assert row["pixels"] == sum(r.height * r.width for r in ds.records)
    assert row["bpp"] == pytest.approx(8 * row["bytes"] / row["pixels"], rel=1e-12)
    assert (out / "detections" / "raw" / "dtype=float32.json").is_file()
    assert (out / "config.resolved.yaml").is_file()
