"""JDE through a real run: `vcmbench run model=jde_1088x608` (random weights, the real architecture at a
256x160 letterbox, split at TVD's layers 36, 61, 74) on two small synthetic videos of two classes, through
the uncompressed features, the MPEG anchor and a packing baseline, under determinism=exact. The run
finishes; its records carry each detection's appearance embedding, so `tracker.kind: auto` tracks with
JDE's own tracker and the tables say so; raw's bytes are the named-tensor container's to the byte; the
VVC-coded rows decode. Another tracker re-scores the run without recoding; the codecs trained on p2..p5
and JDE's tracker without embeddings are refused in one line before any work.
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from tests.assets import REPO
from vcmbench.codecs.tiling import uvarint
from vcmbench.config import compose_config
from vcmbench.domain import DomainCheck
from vcmbench.errors import ConfigError
from vcmbench.jobs import build_jobs
from vcmbench.records import read_records
from vcmbench.run import run_sweep

pytestmark = pytest.mark.timeout(300)

SEQUENCES = "[{name: a1, class: A, frames: 3, fps: 30}, {name: b1, class: B, frames: 3, fps: 25, objects: [4, 6]}]"
#: a random JDE's confidences saturate on synthetic frames (over a thousand boxes above 0.7 per frame);
#: 0.9999 keeps some 25 to 140 per frame, enough to track and small enough for the records
MODEL = ["model=jde_1088x608", "model.weights=none", "model.width=256", "model.height=160", "model.conf_thres=0.9999"]
DATASET = [
    "dataset=synthetic_video",
    f"dataset.sequences={SEQUENCES}",
    "dataset.max_frames=null",
    "dataset.height=160",
    "dataset.width=160",
]
CODECS = ["codec=[raw,anchor_vvc,pack_tile]", "codec.anchor_vvc.rates=[41]", "codec.pack_tile.rates=[42]"]
QUIET = ["sweep.workers=1", "sweep.progress=false", "fidelity=false", "timing.items=0"]
#: what TVD's split sends for a 256x160 letterbox: (name, channels, stride)
SENT = [("l36", 256, 8), ("l61", 512, 16), ("l74", 1024, 32)]


def overrides(tmp: str, *extra: str, codecs: list[str] = CODECS) -> list[str]:
    return [*MODEL, *DATASET, f"dataset.cache_dir={tmp}/cache", *codecs, *QUIET, *extra]


@pytest.fixture(scope="module")
def jde_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jde")
    out = tmp / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "vcmbench", "run", f"hydra.run.dir={out}", *overrides(str(tmp))],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return tmp, out


def test_the_run_tracks_with_jdes_tracker_and_scores_mota_per_class(jde_run):
    _, out = jde_run
    points, classes = pd.read_csv(out / "points.csv"), pd.read_csv(out / "classes.csv")
    assert set(points.codec) == set(classes.codec) == {"raw", "anchor_vvc", "pack_tile"}
    assert (points.n_failed == 0).all() and (classes.n_failed == 0).all()  # every coded row decoded
    assert (points.tracker == "jde").all() and (classes.tracker == "jde").all()
    assert (points.split == "tvd").all() and (points.metric == "mota").all()
    assert sorted(classes["class"].unique()) == ["A", "B"] and len(classes) == 6
    for table in (points, classes):
        assert table.mota.notna().all() and (table["map"] == table.mota).all()
    report = (out / "report" / "report.md").read_text()
    assert "Tracks: JDE's own tracker on the decoded detections and their appearance embeddings" in report


def test_raw_bytes_are_the_named_container_exactly(jde_run):
    """Per frame: tag 4 + version 1 + count 1, (C, H, W) 6 bytes per tensor, each name (length byte + ASCII),
    4 bytes per float32 element, CRC 4; a sequence: the framewise container (SEQF, version, frame count,
    each frame's length as a uvarint before it)."""
    _, out = jde_run
    elements = sum(c * (160 // s) * (256 // s) for _, c, s in SENT)
    frame = 6 + 6 * len(SENT) + sum(1 + len(n) for n, *_ in SENT) + 4 * elements + 4
    assert frame == 6 + 18 + 12 + 4 * 286_720 + 4
    raw = pd.read_csv(out / "points.csv").query("codec == 'raw'")
    assert list(raw.frames) == [3, 3]
    assert (raw.bytes == 5 + len(uvarint(3)) + 3 * (len(uvarint(frame)) + frame)).all()


def test_the_records_carry_each_detections_embedding(jde_run):
    _, out = jde_run
    records = read_records(out / "records.jsonl")
    assert len(records) == 6 and all(r.status == "ok" and r.has_embeddings for r in records)
    for r in records:
        for f, emb in zip(r.frame_results(), r.embedding_arrays()):
            assert emb.shape == (len(f.detections), 512)
    assert sum(len(f.detections) for r in records for f in r.frame_results()) >= 50 * len(records)


def test_another_tracker_rescores_the_run_without_recoding(jde_run):
    tmp, out = jde_run
    records = (out / "records.jsonl").read_bytes()
    before = pd.read_csv(out / "classes.csv")
    points = run_sweep(compose_config("config", [*overrides(str(tmp)), "tracker.kind=bytetrack", "report=false"]), out)
    assert (out / "records.jsonl").read_bytes() == records  # nothing was coded again
    assert (points.tracker == "bytetrack").all()
    after = pd.read_csv(out / "classes.csv")
    assert (after.tracker == "bytetrack").all() and list(after.bytes) == list(before.bytes)
    assert not after.mota.equals(before.mota)  # another tracker's tracks, scored again


def test_jdes_tracker_on_a_network_without_embeddings_stops_before_any_work(tmp_path):
    cfg = compose_config(
        "config",
        [*DATASET, f"dataset.cache_dir={tmp_path}/cache", "codec=raw", *QUIET, "tracker.kind=jde", "report=false"],
    )
    with pytest.raises(ConfigError, match=r"^tracker\.kind=jde: JDE's tracker needs each detection's") as info:
        run_sweep(cfg, tmp_path / "run")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run" / "run.json").exists() and not (tmp_path / "run" / "records.jsonl").exists()


def test_codecs_trained_on_p2_p5_are_refused_in_one_line_or_left_out_of_the_default_selection(tmp_path):
    """The domain check reads the model's settings only (no network is built): JDE's split (tvd) is not the
    fpn the learned and hybrid checkpoints were trained on. Named, they stop the run in one line (the command
    line prints it as its `vcmbench: error:` line); in the default selection they are left out, and the run
    says so."""
    cfg = compose_config("config", overrides(str(tmp_path), codecs=[]))
    verdict = DomainCheck()
    kept = {job.codec.name for job in build_jobs(cfg, verdict)}
    assert {"learned_interleaved", "hybrid_vvc"} <= set(verdict.left_out) and not kept & set(verdict.left_out)
    assert {"raw", "anchor_vvc", "pack_tile"} <= kept
    assert verdict.note().startswith("left out ") and "jde_1088x608 (tvd, weights random-seed-0)" in verdict.note()
    for name in ("learned_interleaved", "hybrid_vvc"):
        named = compose_config("config", overrides(str(tmp_path), codecs=[f"codec=[raw,{name}]"]))
        with pytest.raises(ConfigError, match=rf"^codec {name}: .* but this run's network is jde_1088x608") as info:
            build_jobs(named, DomainCheck())
        assert "\n" not in str(info.value)
