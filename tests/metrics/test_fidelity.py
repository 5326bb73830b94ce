"""Task fidelity: feature MSE/PSNR per level and detections on decoded vs pristine features."""

from __future__ import annotations

import math

import pytest
import torch

from vcmbench.errors import MetricError, ShapeError
from vcmbench.metrics.fidelity import detection_fidelity, feature_fidelity, fidelity
from vcmbench.types import LEVELS, Detections


def dets(boxes, scores, labels) -> Detections:
    return Detections(
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.tensor(labels, dtype=torch.int64),
    )


def synthetic_features(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(4, 16 >> i, 16 >> i, generator=g) for i, k in enumerate(LEVELS)}


# ---------------------------------------------------------------------------- features


def test_identical_features_have_zero_mse_and_infinite_psnr():
    f = synthetic_features()
    out = feature_fidelity(f, {k: v.clone() for k, v in f.items()})
    assert set(out) == {f"fid_{m}_{k}" for m in ("mse", "psnr") for k in LEVELS} | {"fid_mse", "fid_psnr"}
    assert all(out[f"fid_mse_{k}"] == 0.0 for k in LEVELS) and out["fid_mse"] == 0.0
    assert math.isinf(out["fid_psnr"])


def test_mse_and_psnr_use_the_pristine_level_range_as_peak():
    f = synthetic_features()
    noise = {k: torch.full_like(v, 0.1 * (i + 1)) for i, (k, v) in enumerate(f.items())}
    out = feature_fidelity(f, {k: f[k] + noise[k] for k in LEVELS})
    total_sq, total_n = 0.0, 0
    for i, k in enumerate(LEVELS):
        mse = (0.1 * (i + 1)) ** 2
        peak = float(f[k].max() - f[k].min())
        assert out[f"fid_mse_{k}"] == pytest.approx(mse, rel=1e-5)
        assert out[f"fid_psnr_{k}"] == pytest.approx(10 * math.log10(peak**2 / mse), rel=1e-5)
        total_sq += mse * f[k].numel()
        total_n += f[k].numel()
    peak = max(float(v.max()) for v in f.values()) - min(float(v.min()) for v in f.values())
    assert out["fid_mse"] == pytest.approx(total_sq / total_n, rel=1e-5)
    assert out["fid_psnr"] == pytest.approx(10 * math.log10(peak**2 / out["fid_mse"]), rel=1e-5)


def test_shape_mismatch_is_refused():
    f = synthetic_features()
    g = dict(f)
    g["p3"] = g["p3"][:2]
    with pytest.raises(ShapeError, match="p3"):
        feature_fidelity(f, g)


# -------------------------------------------------------------------------- detections

GT = dets([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 70]], [0.9, 0.8, 0.3], [1, 2, 1])


def test_identical_detections_are_perfect():
    out = detection_fidelity(GT, GT)
    assert out["fid_ap50"] == 100.0 and out["fid_recall50"] == 100.0 and out["fid_precision50"] == 100.0
    assert out["fid_n_gt"] == 2.0  # the 0.3 box is under the score threshold: not ground truth
    assert all(k.startswith("fid_") and isinstance(v, float) for k, v in out.items())


def test_class_aware_iou_matching():
    moved = dets([[0, 0, 10, 10], [30, 30, 50, 50]], [0.9, 0.8], [1, 2])  # second IoU = 100/700
    out = detection_fidelity(GT, moved)
    assert out["fid_ap50"] == pytest.approx(50.0)  # class 1: AP 1, class 2: AP 0
    assert out["fid_recall50"] == pytest.approx(50.0) and out["fid_precision50"] == pytest.approx(50.0)
    relabelled = dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [3, 2])
    assert detection_fidelity(GT, relabelled)["fid_recall50"] == pytest.approx(50.0)
    assert detection_fidelity(GT, moved, iou=0.1)["fid_ap50"] == pytest.approx(100.0)


def test_ap_ranks_by_score_and_low_scoring_hits_count_for_ap_not_recall():
    # a false positive scoring above the true positive halves the precision at recall 1
    pred = dets([[100, 100, 110, 110], [0, 0, 10, 10], [20, 20, 40, 40]], [0.95, 0.6, 0.2], [1, 1, 2])
    out = detection_fidelity(GT, pred)
    assert out["fid_ap50"] == pytest.approx(100 * (0.5 + 1.0) / 2)
    assert out["fid_recall50"] == pytest.approx(50.0)  # the class-2 hit scores 0.2 < 0.5
    assert out["fid_precision50"] == pytest.approx(50.0)
    assert out["fid_n_det"] == 2.0


def test_no_ground_truth_gives_nan_and_empty_predictions_give_zero():
    out = detection_fidelity(dets([], [], []), GT)
    assert math.isnan(out["fid_ap50"]) and math.isnan(out["fid_recall50"]) and out["fid_n_gt"] == 0.0
    out = detection_fidelity(GT, dets([], [], []))
    assert out["fid_ap50"] == 0.0 and out["fid_recall50"] == 0.0 and math.isnan(out["fid_precision50"])


def test_several_images_are_pooled():
    other = dets([[0, 0, 5, 5]], [0.99], [1])
    out = detection_fidelity([GT, other], [GT, dets([], [], [])])
    assert out["fid_n_gt"] == 3.0 and out["fid_recall50"] == pytest.approx(200 / 3)
    with pytest.raises(MetricError, match="2 pristine images but 1"):
        detection_fidelity([GT, other], [GT])


def test_fidelity_through_a_real_codec_and_the_back(codec_from_yaml, small_detector, front_output):
    """Pristine vs decoded anchor_hevc features through the small random-weights detector."""
    det, front = small_detector, front_output
    codec = codec_from_yaml("anchor_hevc", rates=[35])
    decoded = codec.decode(codec.encode(front.features, codec.rates[0]))
    pristine_dets, decoded_dets = det.back(front.features, front.meta), det.back(decoded, front.meta)
    # random weights score everything low: take the top-scoring half of the pristine boxes as truth
    thresh = float(pristine_dets.scores.median()) if len(pristine_dets) else 0.0
    out = fidelity(front.features, decoded, pristine_dets, decoded_dets, score_thresh=thresh)
    assert 0 < out["fid_mse"] < float("inf") and 0 < out["fid_psnr"] < 100
    assert all(0 < out[f"fid_psnr_{k}"] < 100 for k in LEVELS)
    assert out["fid_n_gt"] > 0 and 0.0 <= out["fid_ap50"] <= 100.0 and 0.0 <= out["fid_recall50"] <= 100.0
    same = detection_fidelity(pristine_dets, pristine_dets, score_thresh=thresh)
    assert same["fid_ap50"] == pytest.approx(100.0) and same["fid_recall50"] == pytest.approx(100.0)
