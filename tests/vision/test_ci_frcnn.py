"""ci_frcnn: split exactness, feature layout, training that learns, the committed checkpoint's AP."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

from tests.assets import CHECKPOINTS
from vcmbench.config import compose_config
from vcmbench.datasets import synthetic
from vcmbench.datasets.synthetic_video import build as build_video
from vcmbench.errors import CheckpointError
from vcmbench.types import LEVELS
from vcmbench.vision.ci_frcnn import DEFAULT_WEIGHTS, build

CKPT = CHECKPOINTS.parent / DEFAULT_WEIGHTS
INFO = CKPT.with_suffix(".json")


def _scene(seed: int = 1_000_000, size: int = 256) -> torch.Tensor:
    img, _ = synthetic.render(seed, size, size)
    return torch.from_numpy(img).permute(2, 0, 1).contiguous()


@pytest.fixture(scope="module")
def random_det():
    return build(weights="none", seed=0, score_thresh=0.0)


@pytest.mark.parametrize("weights", ["none", DEFAULT_WEIGHTS])
def test_front_back_equals_unsplit_model(weights, random_det):
    det = random_det if weights == "none" else build(weights=weights, score_thresh=0.0)
    for seed in (1_000_000,):
        image = _scene(seed)
        ref = det.full(image)
        front = det.front(image)
        out = det.back(front.features, front.meta)
        assert len(ref) >= 50
        assert torch.equal(ref.boxes, out.boxes)
        assert torch.equal(ref.scores, out.scores)
        assert torch.equal(ref.labels, out.labels)


@pytest.mark.timeout(120)
def test_split_is_exact_on_every_frame(tmp_path):
    """The committed checkpoint split, on each frame of a panning synthetic video."""
    detector = build(weights=DEFAULT_WEIGHTS)
    spec = [{"name": "pan", "class": "A", "frames": 6, "fps": 30, "pan": [2, 1]}]
    ds = build_video(sequences=spec, cache_dir=tmp_path, max_frames=3)
    for sample in ds.frames(ds.sequences[0]):
        ref = detector.full(sample.image)
        front = detector.front(sample.image)
        out = detector.back(front.features, front.meta)
        assert len(ref) > 0
        assert torch.equal(ref.boxes, out.boxes) and torch.equal(ref.scores, out.scores)
        assert torch.equal(ref.labels, out.labels)


def test_front_gives_256_channel_p2_to_p5_at_strides_4_to_32(random_det):
    front = random_det.front(_scene())
    assert list(front.features) == list(LEVELS)
    for i, lvl in enumerate(LEVELS):
        assert tuple(front.features[lvl].shape) == (256, 256 // 4 // 2**i, 256 // 4 // 2**i)
    assert front.meta.original_size == front.meta.resized_size == front.meta.padded_size == (256, 256)


def test_missing_checkpoint_names_field_and_command(tmp_path):
    with pytest.raises(CheckpointError, match=r"model.weights=.*no such checkpoint.*vcmbench train-detector"):
        build(weights=str(tmp_path / "missing.pt"))


def test_checkpoint_roundtrip_is_fp16(tmp_path, random_det):
    from vcmbench.vision.ci_frcnn import save_state

    path = tmp_path / "w.pt"
    save_state(random_det.model, path)
    again = build(weights=str(path), seed=1)
    for (k, a), b in zip(random_det.model.state_dict().items(), again.model.state_dict().values()):
        ref = a.half().float() if a.is_floating_point() else a
        assert torch.equal(ref, b), k


def test_training_steps_reduce_loss_deterministically(tmp_path):
    from vcmbench.train.detector import train_detector

    common = [
        "model.image_size=128",
        "batch_size=2",
        "val.count=0",
        "progress=false",
        "threads=1",
        "optimizer.warmup_steps=2",
        "log_every=1",
        "checkpoint_every=0",
    ]
    info = train_detector(compose_config("train_detector", common + ["steps=10"]), str(tmp_path / "a"))
    losses = info["losses"]
    assert len(losses) == 10 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    assert (tmp_path / "a" / "ci_frcnn.pt").is_file() and (tmp_path / "a" / "loss.csv").is_file()
    # same seed: the same losses (the lr schedule depends on `steps` only after the warmup)
    again = train_detector(compose_config("train_detector", common + ["steps=2"]), str(tmp_path / "b"))
    assert again["losses"][:2] == losses[:2]


def test_committed_checkpoint_is_small_and_described():
    assert CKPT.is_file(), (
        f"{CKPT} missing: train it with `vcmbench train-detector copy_to=vcmbench/checkpoints/ci_frcnn`"
    )
    assert CKPT.stat().st_size <= 10 * 1024 * 1024
    info = json.loads(INFO.read_text())
    for key in ("config", "seed", "steps", "val", "val_small", "torch"):
        assert key in info
    assert info["val"]["count"] == 200


def test_committed_checkpoint_reaches_recorded_ap(tmp_path):
    from vcmbench.train.detector import evaluate

    info = json.loads(INFO.read_text())
    small = info["val_small"]
    cfg = compose_config(
        "config",
        [
            "model=ci_frcnn",
            "dataset=synthetic_val",
            f"dataset.count={small['count']}",
            f"dataset.seed_start={small['seed_start']}",
            f"dataset.height={small['height']}",
            f"dataset.width={small['width']}",
            f"dataset.cache_dir={tmp_path}",
            "dataset.max_images=null",
        ],
    )
    det = instantiate(cfg.model)
    ds = instantiate(cfg.dataset)
    assert len(ds) == small["count"]
    ap = evaluate(det, ds)
    assert abs(ap["map"] - small["map"]) <= 1.0, (ap, small)
    assert abs(ap["ap50"] - small["ap50"]) <= 1.0, (ap, small)
