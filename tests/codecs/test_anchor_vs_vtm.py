"""benchmarks/anchor_vs_vtm.py end to end, with the fake VTM binaries the codec tests use.

The fake VTM is lossless (zlib), so only the quantiser limits its feature PSNR: its curve is the
one a perfect encoder would give, and every libvvenc preset must cost bits against it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.codecs_for_tests import fake_vtm

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "anchor_vs_vtm.py"


def _run(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


QPS = ["35", "39", "43", "47"]


@pytest.fixture(scope="module")
def preset_sweeps(tmp_path_factory):
    """One benchmark run against the fake VTM, the presets faster and fast, shared by both tests:
    the second re-reads its finished preset folders instead of encoding them again."""
    tmp_path = tmp_path_factory.mktemp("vs_vtm")
    enc, dec, log = fake_vtm(tmp_path)
    cfg = tmp_path / "encoder_intra_vtm.cfg"
    cfg.write_text("IntraPeriod : 1\n")
    out = tmp_path / "out"
    common = [
        "--encoder-app",
        str(enc),
        "--decoder-app",
        str(dec),
        "--cfg",
        str(cfg),
        "--images",
        "1",
        "--qps",
        *QPS,
        "--out",
        str(out),
    ]
    return out, log, common, _run(*common, "--presets", "faster", "fast")


@pytest.mark.timeout(300)
def test_benchmark_prints_bd_rate_and_time_ratio_of_each_preset_against_vtm(preset_sweeps):
    out, log, common, proc = preset_sweeps
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("1 images, QPs 35 39 43 47; reference: VTM encoder_intra_vtm.cfg")
    rows = {line.split("  ")[0].strip(): line for line in lines[3:6]}
    assert set(rows) == {"VTM encoder_intra_vtm.cfg", "libvvenc preset faster", "libvvenc preset fast"}
    assert rows["VTM encoder_intra_vtm.cfg"].split()[2:4] == ["(reference)", "(reference)"]
    assert rows["VTM encoder_intra_vtm.cfg"].split()[-1] == "1.00"  # the reference's time over its own
    vtm = pd.read_csv(out / "vtm" / "points.csv")
    assert sorted(vtm.rate) == ["qp=35", "qp=39", "qp=43", "qp=47"] and log.is_file()  # the fake EncoderApp ran
    # the fake VTM is lossless: every QP gives the same feature PSNR, so there is no curve to
    # integrate over; the cell says "–" and a note says why instead of inventing a number
    assert vtm.fid_psnr.nunique() == 1
    assert rows["libvvenc preset faster"].split()[3] == "–"
    assert any(line.startswith("– libvvenc preset faster, BD-rate feature PSNR %: ") for line in lines[6:])
    # the presets' own sweeps are real and differ; a rerun only re-reads the finished run folders
    faster = pd.read_csv(out / "faster" / "points.csv")
    fast = pd.read_csv(out / "fast" / "points.csv")
    assert (faster.encoder == "libvvenc preset faster").all() and (fast.encoder == "libvvenc preset fast").all()
    assert not faster.bytes.equals(fast.bytes)
    again = _run(*common, "--presets", "faster", "fast")
    assert again.returncode == 0 and pd.read_csv(out / "fast" / "points.csv").bytes.equals(fast.bytes)


@pytest.mark.timeout(300)
def test_preset_against_preset_without_vtm_and_a_clear_error_without_binaries(preset_sweeps, tmp_path):
    out = preset_sweeps[0]
    proc = _run("--reference", "fast", "--presets", "faster", "--images", "1", "--qps", *QPS, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    faster_row = next(line for line in proc.stdout.splitlines() if line.startswith("libvvenc preset faster"))
    bd_psnr, bd_map, enc_s, ratio = faster_row.split("libvvenc preset faster")[1].split()[:4]
    assert float(bd_psnr) > 0  # faster spends more bits than fast at equal feature PSNR
    assert float(ratio) > 1  # ... and takes less time
    missing = _run("--images", "1", "--out", str(tmp_path / "none"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "--encoder-app" in missing.stderr
    bad = _run("--encoder-app", str(tmp_path / "nope"), "--images", "1", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "codec.anchor_vtm.backend.encoder_app" in bad.stderr
