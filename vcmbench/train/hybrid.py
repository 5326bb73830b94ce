"""`vcmbench train codec=hybrid_vvc`: train the hybrid codec's reduction and restoration networks.

One pair of networks serves every rate point (the inner codec's QPs), as in the FCM test model. The
inner codec is not differentiable, so training goes through a stand-in (`packing.normalised_with_noise`):
each item's reduced tensor is normalised to 10-bit samples by its own min/max, rounded (straight-through
gradients), and perturbed by Gaussian noise whose standard deviation is the inner codec's real error
at a QP drawn for that item from `training.qp_range`. That error is measured, not assumed: every
`training.calibrate_every` steps the current networks' packed frames of `training.calibrate_images`
training images are coded by the real back-end at `training.calibrate_qps` and the RMS sample error
per QP is interpolated (log-linear in QP) for the noise. Loss: the level-weighted feature MSE the
learned codecs use (`loss.level_weights`), no rate term (the QP sets the rate).

The checkpoint is the learned codecs' format (7-bit weights per output channel, a fingerprint whose
first 4 bytes payloads name); its json records the calibration tables, the training time, and real
bytes and decoded feature MSE at each rate point on the validation images.
"""

from __future__ import annotations

import math
import platform

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from vcmbench.codecs.hybrid.network import ARCH
from vcmbench.errors import ConfigError
from vcmbench.train.codec import CropSampler, _overrides, _valid_mse, level_weights_of, relative_error, training_setup
from vcmbench.train.loop import RUN_ONLY_KEYS, Schedule, config_key, finish, run_loop


def is_hybrid(node: DictConfig) -> bool:
    """Whether a codec node is the hybrid codec (trained here, not by the learned codecs' trainer)."""
    return str(node.get("_target_", "")).startswith("vcmbench.codecs.hybrid.")


def _backend(name: str, node: DictConfig):
    from hydra.utils import instantiate

    from vcmbench.codecs.backends.codec import build_backend

    return build_backend(instantiate(node.backend), name, f"codec.{name}.backend")


@torch.no_grad()
def calibrate(net, fs, backend, qps, images: int) -> dict[int, float]:
    """RMS error in 10-bit samples of the real inner codec at each QP, on the packed frames the current
    networks make of the first `images` items of `fs` (each at its own min/max, as the codec packs)."""
    from vcmbench.codecs.hybrid.packing import BITS, pack, value_range
    from vcmbench.codecs.learned.models import pad_levels

    was = net.training
    net.eval()
    frames = []
    for i in range(min(images, len(fs))):
        padded, _ = pad_levels([t.unsqueeze(0) for t in fs.load(i)], net.total_stride)
        reduced = net.reduce(padded)[0].numpy()
        frames.append(pack(reduced, *value_range(reduced)))
    net.train(was)
    table = {}
    for qp in qps:
        se, n = 0.0, 0
        for f in frames:
            dec = backend.decode(backend.encode(f[None], BITS, "qp", int(qp), intra=True), (1, *f.shape), BITS)[0]
            se += float(((dec.astype(np.float64) - f) ** 2).sum())
            n += f.size
        table[int(qp)] = math.sqrt(se / max(n, 1))
    return table


def _dct_matrix(n: int) -> torch.Tensor:
    """The orthonormal n-point DCT-II matrix (rows: frequencies)."""
    k = torch.arange(n, dtype=torch.float64)
    m = torch.cos(math.pi / n * (k[None, :] + 0.5) * k[:, None]) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.float()


def rate_proxy(samples: torch.Tensor, qps: torch.Tensor, block: int = 8) -> torch.Tensor:
    """Bits a transform coder would spend on each item's 10-bit samples, as a differentiable estimate:
    sum over the AC coefficients of `block`-point 2-D DCTs of log2(1 + |c| / step), step = VVC's quantisation
    step at that item's QP in 10-bit units (4 x 2**((QP - 4) / 6)). (B, C, H, W) -> (B,) bits; H and W
    are cropped to whole blocks."""
    b, c, h, w = samples.shape
    h8, w8 = h // block * block, w // block * block
    x = samples[..., :h8, :w8].reshape(b, c, h8 // block, block, w8 // block, block)
    d = _dct_matrix(block).to(samples.device)
    coeffs = torch.einsum("ij,bcyjxk,lk->bcyixl", d, x, d)
    step = (4.0 * torch.pow(2.0, (qps - 4.0) / 6.0)).to(samples.device).view(b, 1, 1, 1, 1, 1)
    ac = torch.ones(block, block, device=samples.device)
    ac[0, 0] = 0.0  # a block's mean is mostly predicted from its neighbours (intra DC/planar): not counted
    return (torch.log2(1.0 + coeffs.abs() / step) * ac.view(block, 1, block)).sum(dim=(1, 2, 3, 4, 5))


def noise_std(table: dict[int, float], qps: torch.Tensor) -> torch.Tensor:
    """The calibrated error at each (real-valued) QP: log-linear between the measured QPs."""
    xs = sorted(table)
    if len(xs) == 1:
        return torch.full(qps.shape, float(table[xs[0]]))
    logs = torch.tensor([math.log(max(table[q], 1e-3)) for q in xs], dtype=torch.float32)
    x = torch.tensor(xs, dtype=torch.float32)
    q = qps.clamp(float(xs[0]), float(xs[-1]))
    idx = torch.searchsorted(x, q).clamp(1, len(xs) - 1)
    lo, hi = x[idx - 1], x[idx]
    t = (q - lo) / (hi - lo)
    return torch.exp(logs[idx - 1] * (1 - t) + logs[idx] * t)


@torch.no_grad()
def validate_real(codec, fs, limit: int | None) -> dict:
    """Real payloads of `codec` (a HybridCodec on the checkpoint just saved: container, packing, the
    inner codec, restoration, as a run codes) on `fs`: per QP, bpp from the payloads' bytes and the
    decoded features' MSE per level (p6: p5 subsampled, as the back makes it) and P2's relative error."""
    from vcmbench.codecs.learned.models import level_mse
    from vcmbench.types import LEVELS

    n = len(fs) if limit is None else min(int(limit), len(fs))
    out = {}
    for rate in codec.rates:
        total_bytes, total_px, mse, power = 0, 0.0, np.zeros(5), 0.0
        for i in range(n):
            levels = fs.load(i)
            payload = codec.encode(dict(zip(LEVELS, levels, strict=True)), rate)
            decoded = codec.decode(payload)
            mse += np.array([float(m) for m in level_mse([decoded[k] for k in LEVELS], levels)])
            power += float(levels[0].pow(2).mean())
            total_bytes += len(payload)
            total_px += fs.pixels[i]
        mse /= max(n, 1)
        out[int(rate.value)] = {
            "bpp": 8 * total_bytes / max(total_px, 1.0),
            "bytes_per_image": total_bytes / max(n, 1),
            "mse": dict(zip(("p2", "p3", "p4", "p5", "p6"), [float(v) for v in mse])),
            "rel_p2": relative_error(float(mse[0]), power / max(n, 1)),
        }
    return out


def train_hybrid(cfg: DictConfig, out_dir: str) -> dict:
    """Train the hybrid codec's networks; writes hybrid.pt/.json (+ CSV log) into `out_dir`."""
    from vcmbench.codecs.hybrid.codec import HybridCodec
    from vcmbench.codecs.hybrid.network import build_hybrid_net
    from vcmbench.codecs.learned.checkpoint import save_checkpoint
    from vcmbench.codecs.learned.models import count_parameters
    from vcmbench.codecs.learned.trained_on import trained_on_facts

    (name,) = cfg.codec.keys()
    node = cfg.codec[name]
    training = node.get("training") or {}
    net_kwargs = OmegaConf.to_container(node.net, resolve=True)
    qp_lo, qp_hi = (float(v) for v in training.get("qp_range", [22, 47]))
    cal_qps = [int(v) for v in training.get("calibrate_qps", list(range(12, 53, 5)))]
    if not qp_lo <= qp_hi or not cal_qps:
        raise ConfigError(f"codec.{name}.training: qp_range {qp_lo}..{qp_hi} and calibrate_qps {cal_qps} must be set")
    out, device, progress, train_fs, val_fs = training_setup(cfg, out_dir)
    channels = [s[0] for s in train_fs.shapes[0]]
    if any(c != int(net_kwargs.get("N", 256)) for c in channels):
        raise ConfigError(f"the front gives {channels}-channel levels; set codec.{name}.net.N to match")

    torch.manual_seed(int(cfg.seed))
    net = build_hybrid_net(**net_kwargs)
    net.set_feature_stats(train_fs.stats["rms"], train_fs.stats["absmax"])
    net.to(device).train()
    crop = int(cfg.crop)
    if crop % net.total_stride:
        raise ConfigError(f"crop={crop}: must be a multiple of the model's stride {net.total_stride} (P2 cells)")
    backend = _backend(name, node)
    sampler = CropSampler(train_fs, crop, 8, int(cfg.seed))
    opt = torch.optim.Adam(net.parameters(), lr=float(cfg.optimizer.lr))
    level_weights = level_weights_of(cfg.loss)
    every = int(training.get("calibrate_every", 500))
    rate_weight = float(training.get("rate_weight", 0.0))
    cal_images = int(training.get("calibrate_images", 8))
    tables: list[dict] = []
    noise = {"table": calibrate(net.cpu(), train_fs, backend, cal_qps, cal_images)}
    net.to(device)
    tables.append({"step": 0, "rmse": noise["table"]})
    gen = torch.Generator().manual_seed(int(cfg.seed))
    clip = float(cfg.optimizer.get("clip_grad_norm") or 0)

    def recalibrate(step: int) -> None:
        noise["table"] = calibrate(net.cpu(), train_fs, backend, cal_qps, cal_images)
        net.to(device)
        tables.append({"step": step, "rmse": noise["table"]})

    def step_fn(step: int) -> dict[str, float]:
        from vcmbench.codecs.hybrid.packing import normalised_with_noise, samples_of

        x, valid, pixels = sampler.batch(step, int(cfg.batch_size), device)
        qps = qp_lo + (qp_hi - qp_lo) * torch.rand(x[0].shape[0], generator=gen)
        reduced = net.reduce(x)
        noisy = normalised_with_noise(reduced, noise_std(noise["table"], qps).to(device))
        mses = _valid_mse(net.restore(noisy), x, valid)
        loss = sum(w * m for w, m in zip(level_weights, mses))
        bpp = torch.zeros(())
        if rate_weight > 0:  # the inner codec's rate, estimated on the samples it would code
            bpp = rate_proxy(samples_of(reduced), qps).sum() / pixels
            loss = loss + rate_weight * bpp
        rel_p2 = torch.sqrt(mses[0].detach() / x[0].pow(2).mean().clamp_min(1e-12))
        if not torch.isfinite(loss):
            return {"loss": float(loss)}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        names = ["loss", "mse_p2", "mse_p3", "mse_p4", "mse_p5", "mse_p6", "rel_p2", "bpp_proxy"]
        return dict(zip(names, (float(v.detach()) for v in (loss, *mses, rel_p2, bpp))))

    steps = int(cfg.steps)
    key = config_key(OmegaConf.to_container(cfg, resolve=True), RUN_ONLY_KEYS)
    result = run_loop(
        step_fn,
        out=out,
        steps=steps,
        optimizer=opt,
        schedule=Schedule.of(cfg.optimizer, steps),
        state={"net": net, "opt": opt},
        config_key=key,
        resume=bool(cfg.get("resume", True)),
        log_fields=["loss", "mse_p2", "mse_p3", "mse_p4", "mse_p5", "mse_p6", "rel_p2", "bpp_proxy"],
        log_every=int(cfg.log_every),
        checkpoint_every=int(cfg.checkpoint_every),
        hooks=[(every, recalibrate)],
        max_seconds=float(cfg.max_minutes) * 60 if cfg.get("max_minutes") else None,
        progress=progress,
        desc=f"train {name}",
    )

    net.to("cpu").eval()
    trained_on = trained_on_facts(cfg.model, cfg.train_set, train_fs.front, int(net_kwargs.get("N", 256)))
    ck = out / "hybrid.pt"
    meta = {"codec": name, "front": train_fs.front, "trained_on": trained_on}
    meta = save_checkpoint(net, ck, ARCH, net_kwargs, meta)
    rates = [int(v) for v in node.get("rates") or cal_qps]
    info = {
        "codec": name,
        "arch": ARCH,
        "model_id": meta["model_id"],
        "fingerprint": meta["fingerprint"],
        "net": net_kwargs,
        "parameters": count_parameters(net),
        "checkpoint_bytes": meta["checkpoint_bytes"],
        "storage": "weights at 7-bit precision per output channel (integer codes, lzma): the learned codecs' format",
        "front": train_fs.front,
        "trained_on": trained_on,
        "train_set": {"name": str(cfg.train_set.get("name")), "images": len(train_fs), "cache": str(train_fs.folder)},
        "val_set": {"name": str(cfg.val_set.get("name")), "images": len(val_fs)},
        "steps": result.steps_done,
        "steps_planned": steps,
        "stopped_by_time": result.stopped_by_time,
        "batch_size": int(cfg.batch_size),
        "crop_p2": crop,
        "qp_range": [qp_lo, qp_hi],
        "noise_calibration": tables,
        "train_seconds": round(result.train_s, 1),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "inner_codec": backend.describe(),
        "final_train_loss": round(float(np.mean(result.losses[-50:])), 6) if result.losses else None,
        "val": validate_real(HybridCodec(name, str(ck), backend, rates), val_fs, cfg.get("val_limit")),
        "command": "vcmbench train " + " ".join(_overrides()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    info = finish(out, info, "hybrid.json", [ck], cfg.get("copy_to"))
    info["losses"] = result.losses
    return info
