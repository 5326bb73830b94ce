"""The codec jobs' setup hashes: records of other settings or other checkpoint contents are never
reused."""

from __future__ import annotations

from tests.assets import SKIP_FIGURES, SMALL_NET, fast_run_cfg
from vcmbench.run import run_sweep


def test_retrained_checkpoint_at_the_same_path_is_another_setup(tmp_path):
    """The content of a codec's files (checkpoints) is in its resume fingerprint, not just their path."""
    from vcmbench.run import build_jobs

    weights = tmp_path / "w.pt"
    weights.write_bytes(b"first training")
    cfg = fast_run_cfg("+codec.raw_w._target_=tests.codecs_for_tests.RawWithWeights", f"+codec.raw_w.weights={weights}")
    first = build_jobs(cfg)[0].setup
    assert build_jobs(cfg)[0].setup == first
    weights.write_bytes(b"retrained, same path")
    assert build_jobs(cfg)[0].setup != first


def test_changed_codec_settings_are_not_reused(tmp_path):
    run_sweep(fast_run_cfg(*SMALL_NET, *SKIP_FIGURES, "codec=raw"), tmp_path)
    points = run_sweep(fast_run_cfg(*SMALL_NET, *SKIP_FIGURES, "codec=raw", "codec.raw.dtype=float16"), tmp_path)
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 4
    assert points.rate.tolist() == ["dtype=float16"]
