"""`vcmbench train-jde`: train the offline CI JDE (`model=ci_jde`) on synthetic videos (conf/train_jde.yaml).

**The command** a session runs, from the repository root (started again with the same settings, it
resumes from the last of its `checkpoint_every` states):

    vcmbench train-jde progress=false copy_to=vcmbench/checkpoints/ci_jde

then sets `conf_thres` in conf/model/ci_jde.yaml to the json's ``calibration.best_conf_thres`` if it
differs from 0.5 (`train.jde_eval`), and makes the CI reference with the committed checkpoint.

**Duration**: about 40 minutes on the 2-core machine: 4000 steps of 8 frames at 256x256, 0.59 s of
CPU a step with 1 thread (measured over 12 steps; 0.6 to 0.7 s wall with other jobs on the other core),
then about a minute of scoring. `threads: 1` is the default on purpose: with 2 threads and another
process on the cores, torch's threads wait on each other (measured: 6.7 s a step instead of 0.7 s);
on an idle machine `threads=2` is faster. In 300 steps the loss falls from 220 to about 60 (JDE's
uncertainty-weighted total, which goes negative as the learned weights grow); the identity term is
the slowest (from chance, 3 x log(3600) = 24.6 over the three scales).

**Data** (drawn on the fly, a pure function of the step): `train.sequences` synthetic videos
(`datasets.synthetic_video.SequencePlan`) of `train.frames` frames at the network's input size, seeds
``(train.seed, index)`` with ``train.seed`` (3_000_000) apart from the default video set's 2_000_000,
so the held-out set is never trained on. Sequence ``i`` pans by ``train.pans[i % len]`` and has
``train.objects`` objects moving at ``train.speed``. Step ``s`` takes ``batch_size /
frames_per_sequence`` sequences (in an order reshuffled every pass over the set) and
``frames_per_sequence`` random frames of each, so a batch sees the same objects at different times.
Each annotated object is a target: its visible box, and its identity ``index * max_objects +
track_id - 1`` (unique per (sequence, track id)); the identity classifier has ``sequences *
max_objects`` classes.

**Training**: JDE's losses (`train.jde_loss`), AdamW, linear warmup then cosine decay (`train.loop`),
gradient clipping; resumable through `run_loop`. Deterministic given `seed` (initial weights and the
sampler), up to the machine's float arithmetic.

**Outputs** (`<out_dir>`, copied to `copy_to`): ``ci_jde.pt`` (the network's fp16 state dict; the
identity classifier and the ``s_*`` are training-only and not stored), ``ci_jde.json`` (how it was
trained, its architecture, parameters, MACs per frame, split tensors, and the held-out MOTA of
uncompressed features with JDE's tracker: `train.jde_eval`) and ``loss.csv``.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from vcmbench.errors import ConfigError
from vcmbench.train.loop import Schedule, config_key, decay_optimizer, finish, run_loop, training_arithmetic

NAME_KEYS = (
    "_target_",
    "name",
    "weights",
    "seed",
    "split",
    "conf_thres",
    "nms_thres",
    "tracker",
    "width",
    "height",
    "run_defaults",
)
RUN_ONLY = ("resume", "progress", "copy_to", "threads", "val", "log_every", "checkpoint_every", "results_dir")


def arch_kwargs(model_cfg) -> dict:
    """`ci_jde.build_network`'s settings from the `model:` node."""
    kw = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    return {k: v for k, v in kw.items() if k not in NAME_KEYS}


class TrainVideos:
    """The training sequences and the batch of a step (module doc): a pure function of the step."""

    def __init__(self, tr, height: int, width: int):
        from vcmbench.datasets.synthetic import list_photos
        from vcmbench.datasets.synthetic_video import parse_sequences

        self.seed, self.count = int(tr.seed), int(tr.sequences)
        self.height, self.width = int(height), int(width)
        pans = [list(p) for p in tr.pans] or [[0, 0]]
        raw = [
            {
                "name": f"train{k}",
                "frames": int(tr.frames),
                "objects": list(tr.objects),
                "pan": pans[k],
                "speed": list(tr.speed),
            }
            for k in range(len(pans))
        ]
        self.specs = parse_sequences(raw)  # checked as the dataset checks them, one per pan
        self.max_objects = self.specs[0].objects[1]
        self.n_ids = self.count * self.max_objects
        self.photos = list_photos(tr.get("backgrounds"))
        if self.count < 1:
            raise ConfigError(f"train.sequences={self.count}: must be >= 1")

    def sequence_order(self, position: int) -> int:
        """The sequence at `position` of the endless shuffled order (a new permutation per pass)."""
        epoch, k = divmod(position, self.count)
        return int(np.random.default_rng([self.seed, epoch]).permutation(self.count)[k])

    def batch(self, step: int, batch_size: int, per_sequence: int) -> tuple[Tensor, list[Tensor]]:
        """(B, 3, H, W) float frames in [0, 1] and per frame (N, 5) identity, cx, cy, w, h in pixels."""
        from vcmbench.datasets.synthetic_video import SequencePlan

        images, targets = [], []
        n_seq = batch_size // per_sequence
        for j in range(n_seq):
            index = self.sequence_order(step * n_seq + j)
            spec = self.specs[index % len(self.specs)]
            plan = SequencePlan(self.seed, index, spec, self.height, self.width, self.photos)
            rng = np.random.default_rng([self.seed, step, j, 1])
            for t in sorted(rng.choice(spec.frames, per_sequence, replace=False).tolist()):
                image, anns = plan.frame(int(t))
                images.append(torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0))
                rows = [
                    [
                        index * self.max_objects + a.track_id - 1,
                        a.bbox[0] + a.bbox[2] / 2,
                        a.bbox[1] + a.bbox[3] / 2,
                        a.bbox[2],
                        a.bbox[3],
                    ]
                    for a in anns
                ]
                targets.append(torch.tensor(rows, dtype=torch.float32).reshape(-1, 5))
        return torch.stack(images), targets


def _optimizer(params: list[tuple[str, torch.nn.Parameter]], opt) -> torch.optim.Optimizer:
    return decay_optimizer((p for _, p in params), opt)


def train_jde(cfg: DictConfig, out_dir: str) -> dict:
    """Train, store fp16 weights + json in `out_dir`, score on the held-out videos; returns the json
    dict plus ``losses`` (every step's total loss). torch's threads and determinism flag are restored."""
    with training_arithmetic(cfg.threads):
        return _train(cfg, out_dir)


def _train(cfg: DictConfig, out_dir: str) -> dict:
    from vcmbench.train.jde_eval import evaluate_checkpoint
    from vcmbench.train.jde_loss import PARTS, JDELoss
    from vcmbench.vision.ci_frcnn import save_state
    from vcmbench.vision.ci_jde import build_network

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps, bs, per_seq = int(cfg.steps), int(cfg.batch_size), int(cfg.frames_per_sequence)
    if steps < 1 or bs < 1 or per_seq < 1 or bs % per_seq:
        raise ConfigError(
            f"steps={steps}, batch_size={bs}, frames_per_sequence={per_seq}: all >= 1, and batch_size a multiple "
            f"of frames_per_sequence"
        )
    if per_seq > int(cfg.train.frames):
        raise ConfigError(f"frames_per_sequence={per_seq}: more than train.frames={int(cfg.train.frames)}")
    if int(cfg.train.seed) == int(cfg.val.dataset.seed):
        raise ConfigError(
            f"train.seed={int(cfg.train.seed)} is the held-out set's (val.dataset.seed): its sequences would be "
            f"trained on; keep the default 3000000"
        )
    height, width = int(cfg.model.height), int(cfg.model.width)
    videos = TrainVideos(cfg.train, height, width)
    net, _ = build_network(int(cfg.seed), **arch_kwargs(cfg.model))
    heads = net.heads
    loss_fn = JDELoss(
        [net.head_anchors(h) for h in heads],
        [net.shapes[h].stride for h in heads],
        videos.n_ids,
        int(cfg.model.embedding_dim),
        float(cfg.loss.fg_iou),
        float(cfg.loss.bg_iou),
        bool(cfg.loss.best_anchor),
        str(cfg.loss.conf_loss),
    )
    params = [*net.named_parameters(), *loss_fn.named_parameters()]
    optimizer = _optimizer(params, cfg.optimizer)
    torch.manual_seed(int(cfg.seed) + 1)
    clip = float(cfg.optimizer.clip_grad_norm or 0)

    def step_fn(step: int) -> dict[str, float]:
        images, targets = videos.batch(step, bs, per_seq)
        loss, parts = loss_fn(net.train_forward(images), targets)
        if not torch.isfinite(loss):
            return {"loss": float(loss)}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_([p for _, p in params], clip)
        optimizer.step()
        return {"loss": float(loss.detach()), **parts, "targets": float(sum(len(t) for t in targets))}

    net.train()
    result = run_loop(
        step_fn,
        out=out,
        steps=steps,
        optimizer=optimizer,
        schedule=Schedule.of(cfg.optimizer, steps),
        state={"model": net, "loss": loss_fn, "optimizer": optimizer},
        config_key=config_key(OmegaConf.to_container(cfg, resolve=True), RUN_ONLY),
        resume=bool(cfg.resume),
        log_fields=["loss", *PARTS, "targets"],
        log_name="loss.csv",
        log_every=int(cfg.log_every),
        checkpoint_every=int(cfg.checkpoint_every),
        progress=bool(cfg.progress),
        desc="train-jde",
    )
    net.eval()
    t0 = time.perf_counter() - result.train_s
    ckpt = out / "ci_jde.pt"
    save_state(net, ckpt)
    losses, log_every = result.losses, max(1, int(cfg.log_every))
    info: dict = {
        "model": "ci_jde",
        "command": "vcmbench train-jde " + " ".join(_overrides()),
        "seed": int(cfg.seed),
        "steps": steps,
        "batch_size": bs,
        "frames_per_sequence": per_seq,
        "image_size": [height, width],
        "train_frames_seen": steps * bs,
        "train_data": {
            "generator": "vcmbench.datasets.synthetic_video.SequencePlan",
            "seed": videos.seed,
            "sequences": videos.count,
            "identities": videos.n_ids,
            "specs": [s.pixel_key() for s in videos.specs],
        },
        "train_seconds": round(result.train_s, 1),
        "train_cpu_seconds": round(result.cpu_s, 1),
        "threads": torch.get_num_threads(),
        "final_loss": round(float(np.mean(losses[-log_every:])), 4) if losses else None,
        "parameters": sum(p.numel() for p in net.parameters()),
        **network_costs(cfg),
        "checkpoint_bytes": ckpt.stat().st_size,
        "storage": "fp16 state dict of the network (integer buffers as stored); classifier and s_* not stored",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if bool(cfg.val.enabled):
        t1 = time.perf_counter()
        info.update(evaluate_checkpoint(cfg, ckpt, videos))
        info["eval_seconds"] = round(time.perf_counter() - t1, 1)
    info["wall_seconds"] = round(time.perf_counter() - t0, 1)
    info = finish(out, info, "ci_jde.json", [ckpt], cfg.copy_to)
    info["losses"] = losses
    return info


@torch.inference_mode()
def network_costs(cfg: DictConfig) -> dict:
    """MACs of one frame (unsplit, and the front of each split preset) and the presets' tensors (C, H, W)."""
    from torch.utils.flop_counter import FlopCounterMode

    from vcmbench.vision.ci_jde import build_network

    net, presets = build_network(0, **arch_kwargs(cfg.model))
    height, width = int(cfg.model.height), int(cfg.model.width)
    x = torch.zeros(1, 3, height, width)
    with FlopCounterMode(display=False) as total:
        net.compute(net.heads, {-1: x})
    splits = {}
    for name, layers in presets.items():
        with FlopCounterMode(display=False) as front:
            net.compute(layers, {-1: x})
        shapes = [net.shapes[i] for i in layers]
        splits[name] = {
            "layers": list(layers),
            "shapes": [[s.channels, height // s.stride, width // s.stride] for s in shapes],
            "front_macs": front.get_total_flops() // 2,
        }
    return {"macs_per_frame": total.get_total_flops() // 2, "splits": splits}


def _overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # not under Hydra (tests, notebooks)
        return []
