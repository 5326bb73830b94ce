"""`vcmbench train-predictor`: train the joint codec's feature -> image predictor.

The network (`vcmbench.codecs.learned.predictor.FeatureToImage`) learns to rebuild the input
image from decoded p2/p3, on the feature cache of `vcmbench train`; the joint codec's residual
mode codes only what it misses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from vcmbench.atomic import torch_save
from vcmbench.codecs.learned.predictor import FeatureToImage
from vcmbench.metrics.fidelity import psnr
from vcmbench.train.loop import Schedule, run_loop


def _data(model: str, train_images: int, val_images: int):
    """(train pairs, val pairs): lists of (feature-cache index, dataset, record) per split."""
    from hydra.utils import instantiate

    from vcmbench.codecs.learned.features import feature_set
    from vcmbench.config import compose_config

    cfg = compose_config("train", [f"model={model}"])
    out = []
    for split, n in (("train_set", train_images), ("val_set", val_images)):
        fs = feature_set(cfg.model, cfg[split], max_images=n, progress=True)
        ds = instantiate(cfg[split])
        records = {r.image_id: r for r in ds.records}
        out.append((fs, ds, [records[i] for i in fs.image_ids]))
    return out


def _batch(fs, ds, records, idx: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    p2, p3, img = [], [], []
    for i in idx:
        levels = fs.load(i)
        p2.append(levels[0])
        p3.append(levels[1])
        image = ds.load(records[i]).image.float()
        h, w = levels[0].shape[-2] * 4, levels[0].shape[-1] * 4
        img.append(F.pad(image, (0, w - image.shape[-1], 0, h - image.shape[-2]), mode="replicate"))
    return torch.stack(p2), torch.stack(p3), torch.stack(img)


def train(
    out: Path,
    model: str = "ci_frcnn",
    steps: int = 1500,
    batch_size: int = 8,
    lr: float = 2e-3,
    width: int = 48,
    train_images: int = 1000,
    val_images: int = 16,
    seed: int = 0,
    threads: int = 2,
) -> dict:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    (fs, ds, recs), (vfs, vds, vrecs) = _data(model, train_images, val_images)
    net = FeatureToImage(channels=fs.load(0)[0].shape[0], width=width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)

    def step_fn(step: int) -> dict[str, float]:
        idx = torch.randint(len(fs), (batch_size,), generator=gen).tolist()
        p2, p3, img = _batch(fs, ds, recs, idx)
        loss = F.mse_loss(net(p2, p3), img)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "psnr": psnr(loss.item(), 255.0)}

    out = Path(out)
    result = run_loop(
        step_fn,
        out=out.parent,
        steps=steps,
        optimizer=opt,
        schedule=Schedule(steps, 0, 0.05),
        state={},
        config_key="",
        resume=False,
        log_fields=["loss", "psnr"],
        log_name=out.with_suffix(".train.csv").name,
        log_every=100,
        progress=True,
        desc="train predictor",
    )
    train_s = result.train_s
    net.eval()
    with torch.no_grad():
        mses = []
        for i in range(len(vfs)):
            p2, p3, img = _batch(vfs, vds, vrecs, [i])
            mses.append(F.mse_loss(net(p2, p3).round().clamp(0, 255), img).item())
    info = {
        "command": " ".join(["vcmbench train-predictor", *sys.argv[1:]]),
        "model": model,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "width": width,
        "seed": seed,
        "train_images": len(fs),
        "train_s": round(train_s, 1),
        "threads": threads,
        "val_images": len(vfs),
        "val_psnr_pristine_features": round(sum(psnr(m, 255.0) for m in mses) / len(mses), 3),
    }
    torch_save(
        {
            "config": {"channels": net.channels, "width": net.width},
            "weights": {k: v.half() for k, v in net.state_dict().items()},
            "info": info,
        },
        out,
    )
    out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="vcmbench train-predictor",
        description="Train the feature -> image predictor of the joint codec's residual mode.",
    )
    ap.add_argument("--out", required=True, help="checkpoint path, e.g. checkpoints/joint_predictor/ci_frcnn.pt")
    ap.add_argument("--model", default="ci_frcnn", help="conf/model yaml whose front made the features")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=48)
    ap.add_argument("--train-images", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    info = train(
        Path(args.out),
        args.model,
        args.steps,
        args.batch_size,
        args.lr,
        args.width,
        args.train_images,
        threads=args.threads,
    )
    print(json.dumps(info, indent=1))
    return 0
