"""Task and feature fidelity: how far decoded features, and what the back makes of them,
are from the pristine ones. Every function returns a flat dict of floats whose keys start
with `fid_`, ready to go into a record's `extra` (and from there into points.csv).

Feature fidelity (per image): MSE and PSNR per level, PSNR peak = the pristine level's
max - min; overall MSE over all elements, PSNR with the peak over all levels. Identical
features give MSE 0 and PSNR +inf.

Image fidelity (image and layered codecs): `image_psnr` (dB, over the three 8-bit RGB
channels, peak 255) and `image_msssim` (MS-SSIM, pytorch_msssim: Gaussian window 11,
sigma 1.5, five scales with the standard weights, computed on RGB in [0, 255]) of the
decoded image against the input. MS-SSIM's five scales need both sides > 160 pixels;
smaller images get NaN, not a number from fewer scales that would not compare.

Detection fidelity: the back's detections on decoded features against its detections on
pristine features taken as ground truth: pristine boxes scoring at least `score_thresh`
are the ground truth, every decoded box is a prediction, matched class-aware as in mAP
(by descending score, each to the unmatched ground-truth box of highest IoU, a hit when
IoU >= `iou`). `fid_ap50` is the mean over ground-truth classes of the all-point
interpolated AP (VOC2010+ / Open Images), in percent; `fid_recall50` and
`fid_precision50` are recall and precision of the decoded boxes that themselves score at
least `score_thresh` (the operating point), in percent. With no ground truth (no pristine
box over the threshold, common with untrained weights) they are NaN, and the counts
`fid_n_gt` / `fid_n_det` say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from vcmbench.errors import MetricError, ShapeError
from vcmbench.metrics.detection import box_overlaps
from vcmbench.types import LEVELS, Detections, Features

__all__ = ["feature_fidelity", "detection_fidelity", "fidelity", "image_fidelity", "DEFAULT_SCORE_THRESH"]

#: pristine detections at or above this score are the ground truth (a trained detector's
#: usual display threshold: confident boxes only, so the ground truth is what the task
#: would act on)
DEFAULT_SCORE_THRESH = 0.5


def psnr(mse: float, peak: float) -> float:
    """PSNR in dB of an MSE at a peak value: +inf for a zero MSE, NaN for a flat (zero-peak) signal."""
    if mse == 0.0:
        return math.inf
    if peak <= 0.0:
        return math.nan
    return 10.0 * math.log10(peak * peak / mse)


def feature_fidelity(pristine: Features, decoded: Features) -> dict[str, float]:
    """fid_mse_pN / fid_psnr_pN per level and overall fid_mse / fid_psnr."""
    levels = [k for k in LEVELS if k in pristine] or sorted(pristine)
    if not levels:
        raise ShapeError("feature_fidelity: pristine features are empty")
    out: dict[str, float] = {}
    total_sq, total_n = 0.0, 0
    lo, hi = math.inf, -math.inf
    for k in levels:
        if k not in decoded:
            raise ShapeError(f"feature_fidelity: decoded features lack level {k}")
        a = torch.as_tensor(pristine[k]).detach().to("cpu", torch.float64)
        b = torch.as_tensor(decoded[k]).detach().to("cpu", torch.float64)
        if a.shape != b.shape:
            raise ShapeError(f"feature_fidelity: level {k} is {tuple(b.shape)} decoded, {tuple(a.shape)} pristine")
        # numpy's pairwise sum, not torch's: a torch reduction's order follows the thread count,
        # and these figures must not move with it (determinism=strict)
        sq = float(np.square(a.numpy() - b.numpy()).sum())
        n = a.numel()
        amin, amax = float(a.min()), float(a.max())
        mse = sq / n
        out[f"fid_mse_{k}"] = mse
        out[f"fid_psnr_{k}"] = psnr(mse, amax - amin)
        total_sq += sq
        total_n += n
        lo, hi = min(lo, amin), max(hi, amax)
    out["fid_mse"] = total_sq / total_n
    out["fid_psnr"] = psnr(out["fid_mse"], hi - lo)
    return out


def _arrays(d: Detections | Mapping, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        if isinstance(d, Mapping):
            boxes, scores, labels = d["boxes"], d["scores"], d["labels"]
        else:
            boxes, scores, labels = d.boxes, d.scores, d.labels
        boxes = np.asarray(torch.as_tensor(boxes).detach().cpu(), dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(torch.as_tensor(scores).detach().cpu(), dtype=np.float64).reshape(-1)
        labels = np.asarray(torch.as_tensor(labels).detach().cpu(), dtype=np.int64).reshape(-1)
    except (KeyError, AttributeError, TypeError, ValueError, RuntimeError) as exc:
        raise MetricError(f"detection_fidelity: {what} are not Detections (boxes, scores, labels): {exc}") from None
    if not len(boxes) == len(scores) == len(labels):
        raise MetricError(
            f"detection_fidelity: {what} have {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels"
        )
    return boxes, scores, labels


def _average_precision(scores: np.ndarray, tp: np.ndarray, n_pos: int) -> float:
    """All-point interpolated AP of predictions (score, hit) against n_pos ground-truth boxes.

    The area under the precision envelope over recall steps. metrics.detection.average_precision
    (the OpenImages evaluator's) is the same quantity summed at the true positives; the two
    round differently in the last digits, and fid_ap50 keeps this form so its recorded values
    do not move.
    """
    if n_pos == 0:
        return math.nan
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hits = tp[order].astype(np.float64)
    ctp = np.cumsum(hits)
    cfp = np.cumsum(1.0 - hits)
    recall = ctp / n_pos
    precision = ctp / np.maximum(ctp + cfp, np.finfo(float).eps)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def detection_fidelity(
    pristine_dets: Detections | Sequence[Detections],
    decoded_dets: Detections | Sequence[Detections],
    iou: float = 0.5,
    score_thresh: float = DEFAULT_SCORE_THRESH,
) -> dict[str, float]:
    """Decoded detections scored against pristine detections as ground truth.

    Either one image's Detections each, or equal-length sequences (one per image, pooled
    as mAP pools images). Returns fid_ap50, fid_recall50, fid_precision50 (percent;
    NaN when undefined), fid_n_gt and fid_n_det (counts over the images).
    """
    if isinstance(pristine_dets, (list, tuple)) != isinstance(decoded_dets, (list, tuple)):
        raise MetricError("detection_fidelity: pass one Detections each or one sequence of Detections each")
    pris = list(pristine_dets) if isinstance(pristine_dets, (list, tuple)) else [pristine_dets]
    deco = list(decoded_dets) if isinstance(decoded_dets, (list, tuple)) else [decoded_dets]
    if len(pris) != len(deco):
        raise MetricError(f"detection_fidelity: {len(pris)} pristine images but {len(deco)} decoded images")
    if not 0.0 < iou <= 1.0:
        raise MetricError(f"detection_fidelity: iou={iou} must be in (0, 1]")

    per_class: dict[int, dict[str, list]] = {}
    n_gt = n_det = 0
    op_tp = op_det = 0
    for p, d in zip(pris, deco):
        gb, gs, gl = _arrays(p, "pristine detections")
        keep = gs >= score_thresh
        gb, gl = gb[keep], gl[keep]
        db, ds, dl = _arrays(d, "decoded detections")
        n_gt += len(gb)
        n_det += int((ds >= score_thresh).sum())
        for c in np.union1d(gl, dl):
            gt_c = gb[gl == c]
            sel = np.nonzero(dl == c)[0]
            sel = sel[np.argsort(-ds[sel], kind="stable")]
            ious = box_overlaps(db[sel], gt_c)[0]
            used = np.zeros(len(gt_c), bool)
            hit = np.zeros(len(sel), bool)
            for j in range(len(sel)):
                if len(gt_c) == 0:
                    break
                cand = np.where(used, -1.0, ious[j])
                best = int(np.argmax(cand))
                if cand[best] >= iou:
                    used[best] = True
                    hit[j] = True
            entry = per_class.setdefault(int(c), {"scores": [], "hits": [], "n_pos": [0]})
            entry["scores"].append(ds[sel])
            entry["hits"].append(hit)
            entry["n_pos"][0] += len(gt_c)
            at_op = ds[sel] >= score_thresh
            op_det += int(at_op.sum())
            op_tp += int(hit[at_op].sum())

    aps = []
    for entry in per_class.values():
        n_pos = entry["n_pos"][0]
        if n_pos == 0:
            continue
        aps.append(_average_precision(np.concatenate(entry["scores"]), np.concatenate(entry["hits"]), n_pos))
    return {
        "fid_ap50": 100.0 * float(np.mean(aps)) if aps else math.nan,
        "fid_recall50": 100.0 * op_tp / n_gt if n_gt else math.nan,
        "fid_precision50": 100.0 * op_tp / op_det if op_det else math.nan,
        "fid_n_gt": float(n_gt),
        "fid_n_det": float(n_det),
    }


def fidelity(
    pristine: Features,
    decoded: Features,
    pristine_dets: Detections | None = None,
    decoded_dets: Detections | None = None,
    iou: float = 0.5,
    score_thresh: float = DEFAULT_SCORE_THRESH,
) -> dict[str, float]:
    """feature_fidelity, plus detection_fidelity when both detection sets are given."""
    out = feature_fidelity(pristine, decoded)
    if pristine_dets is not None and decoded_dets is not None:
        out.update(detection_fidelity(pristine_dets, decoded_dets, iou=iou, score_thresh=score_thresh))
    return out


#: smallest side MS-SSIM's five scales (window 11, four 2x poolings) are defined on
MSSSIM_MIN_SIDE = 161


def image_fidelity(original: torch.Tensor, decoded: torch.Tensor) -> dict[str, float]:
    """PSNR and MS-SSIM of a decoded uint8 RGB image (3, H, W) against the original."""
    if original.shape != decoded.shape:
        raise ShapeError(
            f"image_fidelity: decoded image is {tuple(decoded.shape)}, the original {tuple(original.shape)}"
        )
    a = original.detach().to("cpu", torch.float64)
    b = decoded.detach().to("cpu", torch.float64)
    out = {"image_psnr": psnr(float(((a - b) ** 2).mean()), 255.0)}
    if min(original.shape[-2:]) < MSSSIM_MIN_SIDE:
        out["image_msssim"] = math.nan
    else:
        from pytorch_msssim import ms_ssim

        out["image_msssim"] = float(ms_ssim(a[None].float(), b[None].float(), data_range=255.0, size_average=True))
    return out
