"""What `vcmbench train-jde` measures of the network it stored: tracking on held-out synthetic videos.

* **val** (`val.dataset`, by default the default `synthetic_video` set with its yaml's 6 frames per
  sequence, what `vcmbench run model=ci_jde dataset=synthetic_video` tracks): the stored (fp16-rounded)
  network's unsplit detections, which uncompressed features reproduce bit for bit, tracked by JDE's
  tracker (`vision.jde_tracker`, the model's `tracker` settings, each sequence's fps), scored by
  `metrics.tracking` (TrackEval's CLEAR, Identity, HOTA; class-agnostic) per class of sequences and
  over all, at the model's `conf_thres`. ByteTracker's MOTA with the run's settings (`conf/config.yaml`
  `tracker:`, the tracker the run uses until JDE's is wired in) is recorded beside it.
* **calibration** (`val.calibration`): JDE's 0.5 confidence threshold suits JDE's training; a network
  trained for minutes may be less (or more) confident. On `sequences` further videos of the training
  generator (indices from `train.sequences` on: never trained on, and not the held-out set) the
  detections are taken once at the lowest threshold of `thresholds` and tracked at each threshold
  (detections and tracker both keep scores above it; greedy NMS keeps the same boxes above a
  threshold whichever lower one it ran at); the threshold with the best MOTA is recorded as
  ``best_conf_thres``, with the held-out figures at it (``val_at_best``). Set `model.conf_thres` to
  it (the yaml) so the run tracks what was measured.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from vcmbench.metrics.tracking import COMBINED, evaluate_sequences

KEYS = ("mota", "idf1", "hota", "id_switches", "fp", "fn", "tp", "gt_dets")


def split_of(cfg: DictConfig, weights: str, conf_thres: float | None = None):
    """`model=ci_jde` as configured, with `weights` (and another `conf_thres`)."""
    from vcmbench.vision.ci_jde import build

    kw = OmegaConf.to_container(cfg.model, resolve=True)
    kw.pop("_target_", None)
    kw["weights"] = weights
    if conf_thres is not None:
        kw["conf_thres"] = float(conf_thres)
        kw["tracker"] = {**(kw.get("tracker") or {}), "conf_thres": float(conf_thres)}
    return build(**kw)


@torch.inference_mode()
def frame_rows(split, image: torch.Tensor) -> tuple[list[list[float]], np.ndarray]:
    """One frame's detections as the trackers take them: [x, y, w, h, score, category_id] rows and
    the (N, D) embeddings."""
    d = split.full(image)
    xywh = torch.cat([d.boxes[:, :2], d.boxes[:, 2:] - d.boxes[:, :2]], 1)
    cats = split.to_category_id(d.labels)
    return [[*b, float(s), c] for b, s, c in zip(xywh.tolist(), d.scores.tolist(), cats)], d.embeddings.numpy()


def evaluate_checkpoint(cfg: DictConfig, ckpt: Path, videos) -> dict:
    """The json's held-out figures (module doc)."""
    from vcmbench.datasets.shards import instantiate_whole

    split = split_of(cfg, str(ckpt))
    node = OmegaConf.create(OmegaConf.to_container(cfg.val.dataset, resolve=True))
    dataset = instantiate_whole(node)[0]
    result: dict = {"val": score_tracking(split, dataset)}
    if bool(cfg.val.all_frames):
        node.max_frames = None
        result["val_all_frames"] = score_tracking(split, instantiate_whole(node)[0])
    cal = cfg.val.calibration
    if int(cal.sequences) > 0:
        calibration = calibrate(cfg, ckpt, videos)
        best = calibration["best_conf_thres"]
        if best is not None:
            calibration["val_at_best"] = score_tracking(split_of(cfg, str(ckpt), best), dataset)
        result["calibration"] = calibration
    return result


@torch.inference_mode()
def score_tracking(split, dataset) -> dict:
    """JDE-tracker figures per class of sequences and over all, with ByteTracker's MOTA."""
    from vcmbench.paths import CONF_DIR
    from vcmbench.vision.jde_tracker import jde_track_sequence
    from vcmbench.vision.tracker import track_sequence

    byte_settings = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml").tracker, resolve=True)
    byte_settings = {k: v for k, v in byte_settings.items() if k not in ("kind", "jde")}  # ByteTrack's own keys
    truth = dataset.ground_truth_tracks
    jde_pairs, byte_pairs, classes = {}, {}, {}
    for seq in dataset.sequences:
        frames = [frame_rows(split, sample.image) for sample in dataset.frames(seq)]
        gt = [truth[seq.sequence_id][f] for f in seq.frame_ids]
        settings = dataclasses.replace(split.tracker_settings, frame_rate=float(seq.fps))
        jde_pairs[seq.name] = (gt, jde_track_sequence(frames, settings))
        byte_pairs[seq.name] = (gt, track_sequence([rows for rows, _ in frames], **byte_settings))
        classes.setdefault(seq.seq_class, []).append(seq.name)
    out: dict = {
        "dataset": dataset.name,
        "sequences": len(dataset.sequences),
        "frames": sum(len(s.frames) for s in dataset.sequences),
        "conf_thres": split.conf_thres,
        "tracker": "jde",
        "tracker_settings": dataclasses.asdict(split.tracker_settings) | {"frame_rate": "sequence fps"},
    }
    for group, names in [*sorted(classes.items()), ("all", [s.name for s in dataset.sequences])]:
        jde = evaluate_sequences({n: jde_pairs[n] for n in names})[COMBINED]
        byte = evaluate_sequences({n: byte_pairs[n] for n in names})[COMBINED]
        out[group] = {k: round(float(jde[k]), 3) for k in KEYS} | {"mota_byte_tracker": round(float(byte["mota"]), 3)}
    return out


@torch.inference_mode()
def calibrate(cfg: DictConfig, ckpt: Path, videos) -> dict:
    """MOTA at each of `val.calibration.thresholds` on unseen training-generator videos (module doc)."""
    from vcmbench.datasets.synthetic_video import SequencePlan
    from vcmbench.vision.jde_tracker import jde_track_sequence

    cal = cfg.val.calibration
    thresholds = sorted(float(t) for t in cal.thresholds)
    split = split_of(cfg, str(ckpt), thresholds[0])
    sequences = []
    for k in range(int(cal.sequences)):
        index = videos.count + k
        spec = videos.specs[index % len(videos.specs)]
        plan = SequencePlan(videos.seed, index, spec, videos.height, videos.width, videos.photos)
        frames, gt = [], []
        for t in range(min(int(cal.frames), spec.frames)):
            image, anns = plan.frame(t)
            frames.append(frame_rows(split, torch.from_numpy(image).permute(2, 0, 1).contiguous()))
            gt.append([(a.track_id, list(a.bbox), a.category_id) for a in anns])
        sequences.append((gt, frames))
    n_frames = sum(len(gt) for gt, _ in sequences)
    mota: dict[str, float | None] = {}
    for thres in thresholds:
        kept = [[_above(rows, emb, thres) for rows, emb in frames] for _, frames in sequences]
        if sum(len(rows) for frames in kept for rows, _ in frames) > float(cal.max_detections) * n_frames:
            mota[f"{thres:g}"] = None  # a flood of detections: hopeless, and slow to track
            continue
        settings = dataclasses.replace(split.tracker_settings, conf_thres=thres, frame_rate=30.0)
        pairs = {
            f"s{k}": (gt, jde_track_sequence(frames, settings))
            for k, ((gt, _), frames) in enumerate(zip(sequences, kept))
        }
        mota[f"{thres:g}"] = round(float(evaluate_sequences(pairs)[COMBINED]["mota"]), 3)
    scored = {t: m for t, m in mota.items() if m is not None}
    return {
        "seed": videos.seed,
        "sequence_indices": [videos.count, videos.count + int(cal.sequences) - 1],
        "frames": n_frames,
        "mota_by_conf_thres": mota,
        "best_conf_thres": float(max(scored, key=scored.get)) if scored else None,
    }


def _above(rows: list[list[float]], embeddings: np.ndarray, thres: float) -> tuple[list[list[float]], np.ndarray]:
    keep = [i for i, row in enumerate(rows) if row[4] > thres]
    return [rows[i] for i in keep], embeddings[keep]
