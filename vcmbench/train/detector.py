"""`vcmbench train-detector`: train ci_frcnn on synthetic scenes (config: conf/train_detector.yaml).

Deterministic given `seed`: the model's initial weights come from `seed`, step ``s`` trains
on scenes ``train.seed_start + (s * batch_size + j) % train.scenes`` (drawn on the fly, the
same pixels the dataset writes as PNG), and torch's sampler RNG is seeded too. Every
`log_every` steps the losses go to ``<out_dir>/loss.csv``; `checkpoint_every` steps a
resumable training state (``train_state.pt``, float32 + optimizer) is written, and a run
started in the same folder resumes from it. At the end the weights are stored in fp16
(``ci_frcnn.pt``), evaluated on the held-out val scenes (seeds from 1_000_000: the full
`val.count` set and its first `val.small_count` scenes, which the tests re-check), and
described in ``ci_frcnn.json``; ``copy_to`` copies both into a folder (relative: the repo root).
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from vcmbench.errors import ConfigError
from vcmbench.train.loop import Schedule, config_key, decay_optimizer, finish, run_loop, training_arithmetic


def _targets(anns, size: tuple[int, int], masks: bool = False, keypoints: bool = False) -> dict[str, torch.Tensor]:
    boxes = torch.tensor(
        [[a.bbox[0], a.bbox[1], a.bbox[0] + a.bbox[2], a.bbox[1] + a.bbox[3]] for a in anns], dtype=torch.float32
    ).reshape(-1, 4)
    labels = torch.tensor([a.category_id for a in anns], dtype=torch.int64)
    out = {"boxes": boxes, "labels": labels}
    if masks:  # the objects' visible pixels (Mask R-CNN's targets), decoded from their RLE
        from pycocotools import mask as mask_utils

        rles = [{"size": a.segmentation["size"], "counts": a.segmentation["counts"].encode()} for a in anns]
        dense = mask_utils.decode(rles) if rles else np.zeros((*size, 0), np.uint8)
        out["masks"] = torch.from_numpy(np.ascontiguousarray(dense.transpose(2, 0, 1)))
    if keypoints:  # (N, K, 3): x, y, visibility (Keypoint R-CNN's targets; v = 0 is not learned from)
        k = len(anns[0].keypoints) // 3 if anns else 4
        out["keypoints"] = torch.tensor([a.keypoints for a in anns], dtype=torch.float32).reshape(-1, k, 3)
    return out


def semantic_target(scene) -> torch.Tensor:
    """(H, W) int64 class map of a synthetic scene: 0 background, each annotated object's visible
    pixels its category id, the unlabeled objects' pixels `ci_heads.IGNORE`."""
    from pycocotools import mask as mask_utils

    from vcmbench.vision.ci_heads import IGNORE

    target = np.zeros(scene.unlabeled.shape, np.int64)
    for a in scene.annotations:
        rle = {"size": a.segmentation["size"], "counts": a.segmentation["counts"].encode()}
        target[mask_utils.decode(rle) > 0] = a.category_id
    target[scene.unlabeled] = IGNORE
    return torch.from_numpy(target)


def train_batch(
    step: int,
    batch_size: int,
    seed_start: int,
    scenes: int,
    size: int,
    photos=(),
    masks: bool = False,
    keypoints: bool = False,
    semantic: bool = False,
):
    """The images (float 0..1) and targets of one step: a pure function of the step."""
    from vcmbench.datasets.synthetic import render_scene

    images, targets = [], []
    for j in range(batch_size):
        seed = seed_start + (step * batch_size + j) % scenes
        scene = render_scene(seed, size, size, photos)
        images.append(torch.from_numpy(scene.image).permute(2, 0, 1).float().div_(255.0))
        target = _targets(scene.annotations, (size, size), masks, keypoints)
        if semantic:
            target["semantic"] = semantic_target(scene)
        targets.append(target)
    return images, targets


def _optimizer(model: torch.nn.Module, cfg: DictConfig) -> torch.optim.Optimizer:
    return decay_optimizer((p for p in model.parameters() if p.requires_grad), cfg.optimizer)


@torch.inference_mode()
def evaluate(split, dataset, image_ids=None, progress: bool = False) -> dict[str, float]:
    """COCO AP/AP50 (percent) of a split detector's full model on (a subset of) a dataset, with mask
    AP, keypoint AP and mIoU (`semantic_miou`) where the network gives masks, keypoints, a class map."""
    from tqdm import tqdm

    from vcmbench.metrics.detection import coco_ap, detections_to_coco
    from vcmbench.records import encode_masks

    wanted = set(dataset.image_ids if image_ids is None else image_ids)
    recs = [r for r in dataset.records if r.image_id in wanted]
    dets: list[dict] = []
    maps: dict[int, np.ndarray] = {}
    for rec in tqdm(recs, desc="val", unit="img", disable=not progress, leave=False):
        sample = dataset.load(rec)
        d = split.full(sample.image)
        rows = detections_to_coco(rec.image_id, d.boxes, d.scores, d.labels, split.category_ids)
        if d.masks is not None:
            for row, counts in zip(rows, encode_masks(d.masks.numpy())):
                row["segmentation"] = {"size": list(d.masks.shape[1:]), "counts": counts}
        if d.keypoints is not None:
            for row, points in zip(rows, d.keypoints.tolist()):
                row["keypoints"] = [v for point in points for v in point]
        if d.semantic is not None:
            maps[rec.image_id] = d.semantic.numpy()
        dets += rows
    ids = [r.image_id for r in recs]
    scores = coco_ap(dataset.annotation_file, dets, ids)
    if dets and "segmentation" in dets[0]:
        segm = coco_ap(dataset.annotation_file, dets, ids, iou_type="segm")
        scores.update({"map_segm": segm["map"], "ap50_segm": segm["ap50"]})
    if dets and "keypoints" in dets[0]:
        from vcmbench.metrics.keypoints import keypoint_ap

        kp = keypoint_ap(dataset.annotation_file, dets, ids)
        scores.update({"map_kp": kp["map"], "ap50_kp": kp["ap50"]})
    if maps:
        scores["miou"] = _synthetic_miou(dataset, maps)
    return scores


def _synthetic_miou(dataset, maps: dict[int, np.ndarray]) -> float:
    """mIoU (percent) over every pixel of the scenes (their seeds are their image ids), background
    and the 8 classes, the unlabeled objects' pixels ignored: one confusion matrix pooled over the set."""
    from vcmbench.datasets.synthetic import CATEGORIES, list_photos, render_scene
    from vcmbench.metrics.semseg import confusion_matrix, score
    from vcmbench.vision.ci_heads import IGNORE

    classes = len(CATEGORIES) + 1
    total = np.zeros((classes, classes), np.int64)
    photos = list_photos(getattr(dataset, "backgrounds", None))
    for image_id, predicted in maps.items():
        h, w = predicted.shape
        truth = semantic_target(render_scene(image_id, h, w, photos)).numpy()
        total += confusion_matrix(truth, predicted, classes, ignore_label=IGNORE)
    return score(total, list(range(classes))).miou


def _model_kwargs(cfg: DictConfig) -> dict:
    kw = OmegaConf.to_container(cfg.model, resolve=True)
    for key in ("_target_", "name", "weights", "seed", "category_ids", "split"):
        kw.pop(key, None)
    return kw


def build_training_model(cfg: DictConfig) -> torch.nn.Module:
    from vcmbench.vision.ci_frcnn import build_model

    torch.manual_seed(int(cfg.seed))
    kw = _model_kwargs(cfg)
    for key in ("widths", "blocks", "aspect_ratios"):
        if key in kw:
            kw[key] = tuple(kw[key])
    if int(kw.get("image_size", cfg.image_size)) != int(cfg.image_size):
        raise ConfigError(
            f"model.image_size={kw['image_size']} differs from image_size={cfg.image_size}: the detector must "
            f"not resize the training scenes; set both to the same value"
        )
    return build_model(**kw)


def train_detector(cfg: DictConfig, out_dir: str) -> dict:
    """Train, save fp16 weights + json in `out_dir`, evaluate on val; returns the json dict.

    The returned dict also holds ``losses`` (every step's total loss), which the json does not.
    torch's thread count and deterministic-algorithms flag are restored afterwards.
    """
    with training_arithmetic(cfg.threads):
        return _train(cfg, out_dir)


def _start_from(model: torch.nn.Module, cfg: DictConfig) -> dict | None:
    """`init_from`: load a trained checkpoint's weights into every parameter and buffer it has
    (same name and shape), so a new head trains on a detector that is already trained; `train_only`:
    train just the parameters under those module prefixes and freeze the rest, BatchNorm running
    statistics included (`_freeze_norms`): the frozen part computes exactly its checkpoint's features.
    Returns what the json records."""
    from vcmbench.paths import file_sha256
    from vcmbench.vision.ci_frcnn import resolve_weights

    info = None
    if cfg.get("init_from") not in (None, "none", "null"):
        path = resolve_weights(str(cfg.init_from), str(cfg.model.get("name")))
        state = torch.load(path, map_location="cpu", weights_only=True)
        own = model.state_dict()
        taken = {k: v.to(own[k].dtype) for k, v in state.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(taken, strict=False)
        info = {
            "init_from": str(cfg.init_from),
            "sha256": file_sha256(path),
            "loaded_tensors": len(taken),
            "new_tensors": sorted(k for k in own if k not in taken),
        }
    prefixes = list(cfg.get("train_only") or [])
    if prefixes:
        names = [n for n, _ in model.named_parameters()]
        for prefix in prefixes:
            if not any(n.startswith(f"{prefix}.") for n in names):
                raise ConfigError(
                    f"train_only={prefixes}: no parameter under {prefix!r} (module prefixes are like "
                    f"{sorted({n.rsplit('.', 2)[0] for n in names})[:4]})"
                )
        for n, p in model.named_parameters():
            p.requires_grad_(any(n.startswith(f"{prefix}.") for prefix in prefixes))
        info = {
            **(info or {}),
            "train_only": prefixes,
            "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        }
    return info


def _freeze_norms(model: torch.nn.Module, prefixes: list[str]) -> None:
    """Batch norms outside the trained prefixes in eval mode: their running statistics stay the
    checkpoint's (requires_grad=False alone would still update them in train mode)."""
    if not prefixes:
        return
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not any(
            name.startswith(f"{p}.") or name == p for p in prefixes
        ):
            module.eval()


def _train(cfg: DictConfig, out_dir: str) -> dict:

    from vcmbench.datasets import synthetic
    from vcmbench.vision.ci_frcnn import count_parameters, load_state, save_state
    from vcmbench.vision.torchvision_split import TorchvisionSplit

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps, bs, size = int(cfg.steps), int(cfg.batch_size), int(cfg.image_size)
    tr = cfg.train
    if int(tr.seed_start) + int(tr.scenes) > synthetic.VAL_SEED_START:
        raise ConfigError(
            f"train.seed_start + train.scenes = {int(tr.seed_start) + int(tr.scenes)} reaches the validation "
            f"seeds (from {synthetic.VAL_SEED_START}); keep training scenes below them"
        )
    if steps < 1 or bs < 1:
        raise ConfigError(f"steps={steps}, batch_size={bs}: both must be >= 1")
    photos = synthetic.list_photos(tr.get("backgrounds"))

    model = build_training_model(cfg)
    started_from = _start_from(model, cfg)
    segments = bool(cfg.model.get("mask_head", False))
    poses = bool(cfg.model.get("keypoint_head", False))
    labels_pixels = bool(cfg.model.get("semantic_head", False))
    trained = list(cfg.get("train_only") or [])
    if labels_pixels and trained and all(p.startswith("semantic_head") for p in trained):
        model.detector_losses = False  # the frozen detector's losses would train nothing
    name = str(cfg.model.get("name", "ci_frcnn"))
    optimizer = _optimizer(model, cfg)
    torch.manual_seed(int(cfg.seed) + 1)  # the RPN/ROI samplers' RNG
    clip = float(cfg.optimizer.clip_grad_norm or 0)

    def step_fn(step: int) -> dict[str, float]:
        images, targets = train_batch(
            step, bs, int(tr.seed_start), int(tr.scenes), size, photos, segments, poses, labels_pixels
        )
        parts = model(images, targets)
        loss = sum(parts.values())
        if not torch.isfinite(loss):
            return {"loss": float(loss)}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip)
        optimizer.step()
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}}

    opt = cfg.optimizer
    model.train()
    _freeze_norms(model, list(cfg.get("train_only") or []))  # once: nothing later switches modes back
    result = run_loop(
        step_fn,
        out=out,
        steps=steps,
        optimizer=optimizer,
        schedule=Schedule(steps, int(opt.warmup_steps), float(opt.final_lr_fraction)),
        state={"model": model, "optimizer": optimizer},
        config_key=_config_key(cfg),
        resume=bool(cfg.resume),
        log_fields=[
            "loss",
            "loss_objectness",
            "loss_rpn_box_reg",
            "loss_classifier",
            "loss_box_reg",
            *(["loss_mask"] if segments else []),
            *(["loss_keypoint"] if poses else []),
            *(["loss_semantic"] if labels_pixels else []),
        ],
        log_name="loss.csv",
        log_every=int(cfg.log_every),
        checkpoint_every=int(cfg.checkpoint_every),
        progress=bool(cfg.progress),
        desc="train",
    )
    losses, train_s, train_cpu_s = result.losses, result.train_s, result.cpu_s
    log_every = max(1, int(cfg.log_every))
    t0 = time.perf_counter() - train_s

    ckpt = out / f"{name}.pt"
    save_state(model, ckpt)
    info: dict = {
        "model": name,
        "command": "vcmbench train-detector " + " ".join(_overrides()),
        "seed": int(cfg.seed),
        "steps": steps,
        "batch_size": bs,
        "image_size": size,
        "train_images_seen": steps * bs,
        "train_seconds": round(train_s, 1),
        "train_cpu_seconds": round(train_cpu_s, 1),  # all threads; wall = this / threads on an idle machine
        "threads": torch.get_num_threads(),
        "final_loss": round(sum(losses[-log_every:]) / max(1, len(losses[-log_every:])), 4) if losses else None,
        "parameters": count_parameters(model),
        **({"started_from": started_from} if started_from else {}),
        "checkpoint_bytes": ckpt.stat().st_size,
        "storage": "fp16 state dict (integer buffers as stored)",
        "torch": torch.__version__,
        "torchvision": __import__("torchvision").__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }

    v = cfg.val
    if int(v.count) > 0:
        t1 = time.perf_counter()
        eval_model = build_training_model(cfg)
        load_state(eval_model, ckpt)  # evaluate what is stored: the fp16-rounded weights
        split = TorchvisionSplit(eval_model, name)
        ds = synthetic.build("synthetic_val", int(v.seed_start), int(v.count), size, size, v.cache_dir)
        ap = evaluate(split, ds, progress=bool(cfg.progress))
        info["val"] = {
            "seed_start": int(v.seed_start),
            "count": int(v.count),
            "height": size,
            "width": size,
            **{k: round(x, 3) for k, x in ap.items()},
        }
        n_small = min(int(v.small_count), int(v.count))
        if n_small > 0:
            ap_s = evaluate(split, ds, ds.image_ids[:n_small])
            info["val_small"] = {
                "seed_start": int(v.seed_start),
                "count": n_small,
                "height": size,
                "width": size,
                **{k: round(x, 3) for k, x in ap_s.items()},
            }
        info["eval_seconds"] = round(time.perf_counter() - t1, 1)
    info["wall_seconds"] = round(time.perf_counter() - t0, 1)
    info = finish(out, info, f"{name}.json", [ckpt], cfg.copy_to)
    info["losses"] = losses  # per-step losses of this process (not written to the json)
    return info


def _config_key(cfg: DictConfig) -> str:
    return config_key(
        OmegaConf.to_container(cfg, resolve=True),
        ("resume", "progress", "copy_to", "threads", "val", "log_every", "checkpoint_every"),
    )


def _overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # not under Hydra (tests, notebooks)
        return []
