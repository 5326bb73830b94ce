"""`vcmbench train codec=learned_interleaved quality=K [overrides]`: train one rate point.

Hydra config `conf/train.yaml`. The front (`model`, default ci_frcnn) runs once per image of
`train_set` / `val_set` and its p2..p5 are cached on disk (`features.py`); training then
draws random crops of those features (`crop` P2 cells, aligned to P5 cells) and minimises

    loss = lambda * D + bpp,   D = sum_{l=2..6} w_l MSE(P_l, P^_l)   (w_l = level_weight 0.2, or
                                                                    loss.level_weights per level)

with bpp = -sum log2(likelihoods) / input-image pixels of the crop (the crop's share of the
image's pixels), Adam (lr, aux_lr for the entropy bottleneck's quantiles), gradient
clipping, a cosine schedule (with `max_minutes`, driven by whichever of steps and time is
further along, so a time-bounded run still ends at the low learning rate). `loss.task_weight > 0` adds a task-aware term: the MSE
between the back's RPN head outputs (objectness and box deltas on p2..p6) on decoded and on
original features (torchvision fronts).

Outputs in the Hydra run dir: ``q{K}.pt`` (fp16 weights + CDF tables), ``q{K}.json`` (how it
was trained, final validation figures with real range-coded bytes), ``train.csv`` and
``val.csv`` (loss curves), ``train_state.pt`` (resumable state, removed at the end; a rerun
with the same settings resumes from it). ``copy_to=checkpoints/learned_interleaved`` copies
``q{K}.pt`` and ``q{K}.json`` there (relative: the repository root). ``init_from=<q.pt>``
fine-tunes from an existing checkpoint (e.g. a lower lambda from the highest one).
"""

from __future__ import annotations

import csv
import platform
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from vcmbench.errors import ConfigError
from vcmbench.train.loop import RUN_ONLY_KEYS, STATE_NAME, Schedule, config_key, finish, run_loop, training_device

PAYLOAD_FIELDS = 5  # the learned payload's model id (4) and quality (1) before the range-coded stream


def _codec_node(cfg: DictConfig) -> tuple[str, DictConfig]:
    node = cfg.get("codec")
    if not node or len(node) != 1:
        raise ConfigError("train: select exactly one learned codec, e.g. codec=learned_interleaved")
    (name,) = node.keys()
    sub = node[name]
    if "arch" not in sub or "net" not in sub:
        raise ConfigError(
            f"codec={name} is not a learned codec (no arch/net settings); use codec=learned_interleaved "
            f"or codec=learned_cascade"
        )
    return str(name), sub


def net_settings(node: DictConfig, quality: int, name: str = "<codec>") -> dict:
    """The network of one quality: `net`, updated by `net_by_quality[quality]` where the codec gives
    one (the paper's M=128 at low rates and 192 at high ones)."""
    net = OmegaConf.to_container(node.net, resolve=True)
    by_quality = node.get("net_by_quality") or {}
    extra = by_quality.get(quality) if quality in by_quality else by_quality.get(str(quality))
    if extra is not None:
        unknown = sorted(set(extra) - set(net))
        if unknown:
            raise ConfigError(
                f"codec.{name}.net_by_quality.{quality}: {unknown} are not settings of codec.{name}.net; "
                f"give keys of net (N, C, M, ...)"
            )
        net.update(OmegaConf.to_container(extra, resolve=True) if isinstance(extra, DictConfig) else dict(extra))
    return net


def _lambda(cfg: DictConfig, node: DictConfig, quality: int) -> float:
    if cfg.get("lmbda") is not None:
        return float(cfg.lmbda)
    lambdas = list(node.get("lambdas") or [])
    if not 1 <= quality <= len(lambdas):
        raise ConfigError(f"quality={quality}: codec lambdas are {lambdas}; choose 1..{len(lambdas)} or set lmbda=")
    return float(lambdas[quality - 1])


class CropSampler:
    """Random crops of cached features: batch of `crop` x `crop` P2 cells (+ matching p3..p5)."""

    def __init__(self, fs, crop: int, align: int, seed: int):
        self.fs, self.crop, self.align, self.seed = fs, int(crop), int(align), int(seed)

    def batch(self, step: int, batch_size: int, device) -> tuple[list[torch.Tensor], list[tuple[int, int]], float]:
        """levels (B,C,h,w) each, valid P2 sizes per sample, input-image pixels covered."""
        from vcmbench.codecs.learned.models import pad_levels

        rng = np.random.default_rng([self.seed, step])
        idx = rng.integers(0, len(self.fs), batch_size)
        per_level: list[list[torch.Tensor]] = [[] for _ in range(4)]
        valid, pixels = [], 0.0
        for i in idx:
            lv = self.fs.load(int(i))
            h2, w2 = lv[0].shape[-2:]
            ch, cw = min(self.crop, h2), min(self.crop, w2)
            y0 = int(rng.integers(0, (h2 - ch) // self.align + 1)) * self.align
            x0 = int(rng.integers(0, (w2 - cw) // self.align + 1)) * self.align
            crop = []
            for j, t in enumerate(lv):
                s = 1 << j
                crop.append(t[:, y0 // s : (y0 + ch + s - 1) // s, x0 // s : (x0 + cw + s - 1) // s].unsqueeze(0))
            crop, _ = pad_levels(crop, self.crop)
            for j in range(4):
                per_level[j].append(crop[j])
            valid.append((ch, cw))
            pixels += self.fs.pixels[int(i)] * (ch * cw) / (h2 * w2)
        return [torch.cat(p).to(device) for p in per_level], valid, pixels


def _valid_mse(out: list[torch.Tensor], ref: list[torch.Tensor], valid: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Per-level MSE (p2..p5 and p6 = p5[::2, ::2]) over each sample's valid (unpadded) region."""
    import torch.nn.functional as F

    if all(v == tuple(ref[0].shape[-2:]) for v in valid):
        from vcmbench.codecs.learned.models import level_mse

        return level_mse(out, ref)
    res = []
    for j in range(5):
        lvl = min(j, 3)
        errs, n = 0.0, 0
        for b, (h, w) in enumerate(valid):
            s = 1 << lvl
            hh, ww = (h + s - 1) // s, (w + s - 1) // s
            a, r = out[lvl][b, :, :hh, :ww], ref[lvl][b, :, :hh, :ww]
            if j == 4:
                a, r = a[:, ::2, ::2], r[:, ::2, ::2]
            errs = errs + F.mse_loss(a, r, reduction="sum")
            n += r.numel()
        res.append(errs / max(n, 1))
    return res


class TaskTerm:
    """Task-aware distortion: MSE between the back's RPN head outputs on decoded vs original features."""

    def __init__(self, detector, device):
        model = getattr(detector, "model", None)
        head = getattr(getattr(model, "rpn", None), "head", None)
        if head is None:
            raise ConfigError(
                "loss.task_weight > 0 needs a torchvision front (model.rpn.head); this model has none: "
                "set loss.task_weight=0"
            )
        self.head = head.to(device).eval()
        for p in self.head.parameters():
            p.requires_grad_(False)

    def __call__(self, out: list[torch.Tensor], ref: list[torch.Tensor]) -> torch.Tensor:
        from vcmbench.types import p6_from_p5

        a = list(out) + [p6_from_p5(out[-1])]
        r = [t.detach() for t in ref] + [p6_from_p5(ref[-1]).detach()]
        la, da = self.head(a)
        with torch.no_grad():
            lr_, dr = self.head(r)
        return sum(((x - y) ** 2).mean() for x, y in zip(la + da, lr_ + dr)) / len(a)


def _bits(likelihoods: dict) -> torch.Tensor:
    return sum(-torch.log2(v).sum() for v in likelihoods.values())


@torch.no_grad()
def validate(net, fs, device, lmbda: float, level_weights: list[float], limit: int | None = None) -> dict:
    """Likelihood-based figures on whole val images (padded to the model's stride)."""
    from vcmbench.codecs.learned.models import level_mse, pad_levels

    was = net.training
    net.eval()
    n = len(fs) if limit is None else min(limit, len(fs))
    tot_bits, tot_px, mse_sum, p2_power = 0.0, 0.0, np.zeros(5), 0.0
    for i in range(n):
        lv = [t.unsqueeze(0).to(device) for t in fs.load(i)]
        p2_power += float(lv[0].pow(2).mean())
        padded, _ = pad_levels(lv, net.total_stride)
        out = net(padded)
        dec = [o[..., : t.shape[-2], : t.shape[-1]] for o, t in zip(out["levels"], lv)]
        mse_sum += np.array([float(m) for m in level_mse(dec, lv)])
        tot_bits += float(_bits(out["likelihoods"]))
        tot_px += fs.pixels[i]
    net.train(was)
    mse = mse_sum / max(n, 1)
    d = float(np.dot(level_weights, mse))
    bpp = tot_bits / max(tot_px, 1.0)
    return {
        "images": n,
        "loss": lmbda * d + bpp,
        "bpp_est": bpp,
        "D": d,
        "mse": dict(zip(("p2", "p3", "p4", "p5", "p6"), [float(v) for v in mse])),
        "rel_p2": relative_error(float(mse[0]), p2_power / max(n, 1)),
    }


def relative_error(mse: float, power: float) -> float:
    """RMS error over RMS signal: P2's is a cheap stand-in for mAP while training (across the
    default codecs mAP follows P2's relative error: about 3 % gives 50 mAP on the default set)."""
    return float(np.sqrt(mse / power)) if power > 0 else float("nan")


def level_weights_of(loss_cfg) -> list[float]:
    """The distortion's weight of p2, p3, p4, p5, p6: `loss.level_weights` (5 numbers; P2-heavy for
    detectors that pool small objects from P2), else `loss.level_weight` for each."""
    given = loss_cfg.get("level_weights")
    if given is None:
        return [float(loss_cfg.level_weight)] * 5
    weights = [float(w) for w in given]
    if len(weights) != 5 or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(f"loss.level_weights={list(given)}: give 5 weights >= 0 (p2, p3, p4, p5, p6), not all 0")
    return weights


@torch.no_grad()
def validate_bytes(net, fs, limit: int | None = None) -> dict:
    """Real range-coded payloads on val images: bpp from bytes (with the container's shape table and the
    payload's fields, as LearnedCodec writes them) and decoded MSE."""
    from vcmbench.codecs.base import shape_table
    from vcmbench.codecs.learned.codec import TAGS, LearnedCodec, decode_levels, encode_levels
    from vcmbench.codecs.learned.models import level_mse

    n = len(fs) if limit is None else min(limit, len(fs))
    tot_bytes, tot_px, mse_sum, enc_s, dec_s = 0, 0.0, np.zeros(5), 0.0, 0.0
    for i in range(n):
        lv = fs.load(i)
        t0 = time.perf_counter()
        stream = encode_levels(net, lv)
        t1 = time.perf_counter()
        dec = decode_levels(net, stream, tuple(lv[0].shape[-2:]))
        dec_s += time.perf_counter() - t1
        enc_s += t1 - t0
        dec = [o[0, :, : t.shape[-2], : t.shape[-1]] for o, t in zip(dec, lv)]
        mse_sum += np.array([float(m) for m in level_mse(dec, lv)])
        shapes = [tuple(int(d) for d in t.shape) for t in lv]
        tot_bytes += len(shape_table(TAGS["interleaved"], LearnedCodec.version, shapes)) + PAYLOAD_FIELDS + len(stream)
        tot_px += fs.pixels[i]
    mse = mse_sum / max(n, 1)
    return {
        "images": n,
        "bpp": 8 * tot_bytes / tot_px,
        "bytes_per_image": tot_bytes / max(n, 1),
        "mse": dict(zip(("p2", "p3", "p4", "p5", "p6"), [float(v) for v in mse])),
        "enc_s": enc_s / max(n, 1),
        "dec_s": dec_s / max(n, 1),
    }


def _config_key(cfg: DictConfig, lmbda: float) -> str:
    """What a resumed run must share with the one it continues: of the codec's node only the
    network and the lambda (its rates, checkpoint folder or other lambdas may change meanwhile)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    name, node = _codec_node(cfg)
    config["codec"] = {
        name: {"arch": str(node.arch), "net": net_settings(node, int(cfg.quality), name), "lambda": lmbda}
    }
    return config_key(config, RUN_ONLY_KEYS)


def _overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # not under Hydra (tests)
        return []


def build_training_net(arch: str, net_kwargs: dict, stats: dict, init_from: str | None, seed: int):
    from vcmbench.codecs.learned.codec import load_checkpoint, resolve_dir
    from vcmbench.codecs.learned.models import build_net

    torch.manual_seed(seed)
    if init_from:
        path = Path(str(init_from)).expanduser()
        if not path.is_file():
            path = resolve_dir(str(init_from))
        src, meta = load_checkpoint(path)
        if meta.get("arch") != arch or meta.get("net") != net_kwargs:
            raise ConfigError(
                f"init_from={init_from}: a {meta.get('arch')} net with {meta.get('net')}; this run trains "
                f"{arch} with {net_kwargs}"
            )
        net = build_net(arch, **net_kwargs)
        net.load_state_dict(src.state_dict())
        for p in net.parameters():
            p.requires_grad_(True)
        return net, {"path": str(init_from), "model_id": meta.get("model_id"), "lambda": meta.get("lambda")}
    net = build_net(arch, **net_kwargs)
    net.set_feature_stats(stats["rms"], stats["absmax"])
    return net, None


def training_setup(cfg: DictConfig, out_dir: str, detector=None) -> tuple:
    """What every feature-codec trainer starts from: (its output folder, the device, whether to show
    progress, the cached features of train_set and of val_set), with cfg.threads applied."""
    from vcmbench.codecs.learned.features import feature_set

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    device = training_device(str(cfg.get("device", "auto")))
    progress = bool(cfg.get("progress", True))
    f = cfg.features
    train_fs = feature_set(cfg.model, cfg.train_set, f.get("cache_dir"), f.get("train_images"), progress, detector)
    val_fs = feature_set(cfg.model, cfg.val_set, f.get("cache_dir"), f.get("val_images"), progress, detector)
    return out, device, progress, train_fs, val_fs


def train_codec(cfg: DictConfig, out_dir: str) -> dict:
    """Train one quality of a learned codec; writes q{K}.pt/.json (+ CSV logs) into `out_dir`."""
    from hydra.utils import instantiate

    from vcmbench.codecs.learned.codec import save_checkpoint
    from vcmbench.codecs.learned.models import count_parameters
    from vcmbench.codecs.learned.trained_on import trained_on_facts

    name, node = _codec_node(cfg)
    quality = int(cfg.quality)
    lmbda = _lambda(cfg, node, quality)
    arch = str(node.arch)
    net_kwargs = net_settings(node, quality, name)
    detector = None
    if float(cfg.loss.get("task_weight", 0.0)) > 0:
        detector = instantiate(cfg.model)
    out, device, progress, train_fs, val_fs = training_setup(cfg, out_dir, detector)
    n_levels = [s[0] for s in train_fs.shapes[0]]
    if any(c != int(net_kwargs.get("N", 256)) for c in n_levels):
        raise ConfigError(f"the front gives {n_levels}-channel levels; set codec.{name}.net.N to match")

    net, init_info = build_training_net(arch, net_kwargs, train_fs.stats, cfg.get("init_from"), int(cfg.seed))
    net.to(device).train()
    crop = int(cfg.crop)
    if crop % net.total_stride:
        raise ConfigError(f"crop={crop}: must be a multiple of the model's total stride {net.total_stride} (P2 cells)")
    sampler = CropSampler(train_fs, crop, 8, int(cfg.seed))
    aux_params = [p for n, p in net.named_parameters() if n.endswith("quantiles")]
    main_params = [p for n, p in net.named_parameters() if not n.endswith("quantiles")]
    opt = torch.optim.Adam(main_params, lr=float(cfg.optimizer.lr))
    aux_opt = torch.optim.Adam(aux_params, lr=float(cfg.optimizer.aux_lr))
    task = TaskTerm(detector, device) if detector is not None else None
    level_weights = level_weights_of(cfg.loss)
    task_weight = float(cfg.loss.get("task_weight", 0.0))

    steps, bs = int(cfg.steps), int(cfg.batch_size)
    val_csv = out / "val.csv"
    vfields = ["step", "loss", "bpp_est", "D", "mse_p2", "mse_p3", "mse_p4", "mse_p5", "mse_p6", "rel_p2"]
    if not val_csv.is_file() or not (out / STATE_NAME).is_file():
        with val_csv.open("w", newline="") as f:
            csv.writer(f).writerow(vfields)

    def log_val(step: int) -> None:
        v = validate(net, val_fs, device, lmbda, level_weights, cfg.get("val_limit"))
        with val_csv.open("a", newline="") as f:
            csv.writer(f).writerow(
                [step, f"{v['loss']:.6g}", f"{v['bpp_est']:.6g}", f"{v['D']:.6g}"]
                + [f"{v['mse'][k]:.6g}" for k in ("p2", "p3", "p4", "p5", "p6")]
                + [f"{v['rel_p2']:.6g}"]
            )

    clip = float(cfg.optimizer.get("clip_grad_norm") or 0)

    def step_fn(step: int) -> dict[str, float]:
        x, valid, pixels = sampler.batch(step, bs, device)
        res = net(x)
        mses = _valid_mse(res["levels"], x, valid)
        d = sum(w * m for w, m in zip(level_weights, mses))
        rel_p2 = torch.sqrt(mses[0].detach() / x[0].pow(2).mean().clamp_min(1e-12))
        bpp = _bits(res["likelihoods"]) / pixels
        loss = lmbda * d + bpp
        tterm = torch.zeros(())
        if task is not None and task_weight > 0:
            tterm = task(res["levels"], x)
            loss = loss + lmbda * task_weight * tterm
        if not torch.isfinite(loss):
            return {"loss": float(loss)}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(main_params, clip)
        opt.step()
        aux = net.aux_loss()
        aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        aux_opt.step()
        names = ["loss", "bpp", "D", "mse_p2", "mse_p3", "mse_p4", "mse_p5", "mse_p6", "rel_p2", "task", "aux"]
        return dict(zip(names, (float(v.detach()) for v in (loss, bpp, d, *mses, rel_p2, tterm, aux))))

    result = run_loop(
        step_fn,
        out=out,
        steps=steps,
        optimizer=opt,
        schedule=Schedule.of(cfg.optimizer, steps),
        state={"net": net, "opt": opt, "aux_opt": aux_opt},
        config_key=_config_key(cfg, lmbda),
        resume=bool(cfg.get("resume", True)),
        log_fields=["loss", "bpp", "D", "mse_p2", "mse_p3", "mse_p4", "mse_p5", "mse_p6", "rel_p2", "task", "aux"],
        log_every=int(cfg.log_every),
        checkpoint_every=int(cfg.checkpoint_every),
        hooks=[(int(cfg.val_every), log_val)],
        max_seconds=float(cfg.max_minutes) * 60 if cfg.get("max_minutes") else None,
        progress=progress,
        desc=f"train {name} q{quality}",
    )
    losses, train_s, steps_done, stopped_early = (
        result.losses,
        result.train_s,
        result.steps_done,
        result.stopped_by_time,
    )

    # -- finalize: CDF tables from the fp16-rounded weights, real bytes on the val set ---------------
    net.to("cpu").eval()
    v_est = validate(net, val_fs, torch.device("cpu"), lmbda, level_weights, cfg.get("val_limit"))
    ck = out / f"q{quality}.pt"
    trained_on = trained_on_facts(cfg.model, cfg.train_set, train_fs.front, int(net_kwargs.get("N", 256)))
    meta = {"codec": name, "quality": quality, "lambda": lmbda, "front": train_fs.front, "trained_on": trained_on}
    meta = save_checkpoint(net, ck, arch, net_kwargs, meta)
    v_bytes = validate_bytes(net, val_fs, cfg.get("val_limit"))
    info = {
        "codec": name,
        "arch": arch,
        "quality": quality,
        "lambda": lmbda,
        "model_id": meta["model_id"],
        "fingerprint": meta["fingerprint"],
        "net": net_kwargs,
        "parameters": count_parameters(net),
        "checkpoint_bytes": meta["checkpoint_bytes"],
        "storage": "transform weights at 7-bit precision per output channel (integer codes, lzma), fp32 entropy-model "
        "parameters, zlib-compressed int32 CDF tables",
        "front": train_fs.front,
        "trained_on": trained_on,
        "train_set": {"name": str(cfg.train_set.get("name")), "images": len(train_fs), "cache": str(train_fs.folder)},
        "val_set": {"name": str(cfg.val_set.get("name")), "images": len(val_fs)},
        "init_from": init_info,
        "steps": steps_done,
        "steps_planned": steps,
        "stopped_by_time": stopped_early,
        "batch_size": bs,
        "crop_p2": crop,
        "train_seconds": round(train_s, 1),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "final_train_loss": round(float(np.mean(losses[-50:])), 6) if losses else None,
        "val": {
            "loss": v_est["loss"],
            "bpp_est": v_est["bpp_est"],
            "D": v_est["D"],
            "mse": v_est["mse"],
            "bpp": v_bytes["bpp"],
            "bytes_per_image": v_bytes["bytes_per_image"],
            "mse_decoded": v_bytes["mse"],
            "enc_s": v_bytes["enc_s"],
            "dec_s": v_bytes["dec_s"],
            "images": v_bytes["images"],
        },
        "command": "vcmbench train " + " ".join(_overrides()),
        "torch": torch.__version__,
        "compressai": __import__("compressai").__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    info = finish(out, info, f"q{quality}.json", [ck], cfg.get("copy_to"))
    info["losses"] = losses
    return info
