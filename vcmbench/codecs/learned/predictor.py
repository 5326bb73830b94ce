"""Image prediction from decoded features: the "collaborative" half of joint coding.

Duan et al. (IEEE TIP 2020) let the enhancement layer build on the base layer: the viewer's
decoder first predicts the image from the decoded features, and the enhancement layer only
carries the residual between the image and that prediction. This module is the predictor:
a small network from decoded p2 (stride 4) and p3 (stride 8) to RGB at p2's grid x 4 (the
padded input the front saw), and its training on cached features of the training scenes.

Network (about 0.2 M parameters): each level projected by a 1x1 convolution to `width`
channels, p3 upsampled (nearest) and added to p2, two 3x3 residual convolutions, then two
sub-pixel x2 upsamplings to RGB in [0, 255]. Trained with the L2 loss on the 8-bit image.

    python -m vcmbench.codecs.learned.predictor --steps 1500 --out checkpoints/joint_predictor/ci_frcnn.pt

trains it on ci_frcnn's cached features of the synthetic training scenes (the cache of
`vcmbench train`, made on first use) and writes the checkpoint and a json beside it (the
command, time, and validation PSNR of the prediction on the first val scenes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vcmbench.atomic import torch_save
from vcmbench.errors import CheckpointError
from vcmbench.metrics.fidelity import psnr
from vcmbench.vision.base import Features, ImageMeta


class FeatureToImage(nn.Module):
    """Decoded p2, p3 -> RGB (3, 4 H2, 4 W2) in [0, 255]."""

    def __init__(self, channels: int = 256, width: int = 48):
        super().__init__()
        self.channels, self.width = int(channels), int(width)
        self.p2 = nn.Conv2d(channels, width, 1)
        self.p3 = nn.Conv2d(channels, width, 1)
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1))
        self.up1 = nn.Sequential(nn.Conv2d(width, width * 4, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(inplace=True))
        self.up2 = nn.Sequential(nn.Conv2d(width, 3 * 4, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, p2: Tensor, p3: Tensor) -> Tensor:
        x = self.p2(p2) + F.interpolate(self.p3(p3), size=p2.shape[-2:], mode="nearest")
        x = x + self.body(F.relu(x))
        return 127.5 + 127.5 * torch.tanh(self.up2(self.up1(x)))


def load_predictor(path: str | Path, who: str) -> FeatureToImage:
    """The predictor of a checkpoint written by `train`; CheckpointError naming the file otherwise."""
    from vcmbench.codecs.learned.codec import resolve_dir

    p = resolve_dir(str(path))
    if not p.is_file():
        raise CheckpointError(
            f"{who}: predictor checkpoint {p} not found; train one with "
            f"`python -m vcmbench.codecs.learned.predictor --out {path}` or set {who} to a trained checkpoint"
        )
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
        net = FeatureToImage(**state["config"])
        net.load_state_dict({k: v.float() for k, v in state["weights"].items()})
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{who}: {p} is not a predictor checkpoint ({exc})") from None
    return net.eval()


@torch.no_grad()
def predict_image(net: FeatureToImage, features: Features, meta: ImageMeta) -> Tensor:
    """uint8 RGB (3, H, W) at the input's size: the prediction cropped to the resized image the
    front saw (the rest is batch padding) and resized back to the original size."""
    out = net(features["p2"][None].float(), features["p3"][None].float())
    rh, rw = meta.resized_size
    out = out[:, :, :rh, :rw]
    if (rh, rw) != tuple(meta.original_size):
        out = F.interpolate(out, size=tuple(meta.original_size), mode="bilinear", align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------- training


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


def train(out: Path, model: str = "ci_frcnn", steps: int = 1500, batch_size: int = 8, lr: float = 2e-3,
          width: int = 48, train_images: int = 1000, val_images: int = 16, seed: int = 0, threads: int = 2) -> dict:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    (fs, ds, recs), (vfs, vds, vrecs) = _data(model, train_images, val_images)
    net = FeatureToImage(channels=fs.load(0)[0].shape[0], width=width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        for g in opt.param_groups:  # cosine to 5 %
            g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps)))
        idx = torch.randint(len(fs), (batch_size,), generator=gen).tolist()
        p2, p3, img = _batch(fs, ds, recs, idx)
        loss = F.mse_loss(net(p2, p3), img)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps:
            print(f"step {step}/{steps}  mse {loss.item():.2f}  psnr {psnr(loss.item(), 255.0):.2f} dB", flush=True)
    train_s = time.perf_counter() - started
    net.eval()
    with torch.no_grad():
        mses = []
        for i in range(len(vfs)):
            p2, p3, img = _batch(vfs, vds, vrecs, [i])
            mses.append(F.mse_loss(net(p2, p3).round().clamp(0, 255), img).item())
    info = {
        "command": " ".join(["python -m vcmbench.codecs.learned.predictor", *sys.argv[1:]]),
        "model": model, "steps": steps, "batch_size": batch_size, "lr": lr, "width": width, "seed": seed,
        "train_images": len(fs), "train_s": round(train_s, 1), "threads": threads,
        "val_images": len(vfs), "val_psnr_pristine_features": round(sum(psnr(m, 255.0) for m in mses) / len(mses), 3),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch_save({"config": {"channels": net.channels, "width": net.width},
                "weights": {k: v.half() for k, v in net.state_dict().items()}, "info": info}, out)
    out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vcmbench.codecs.learned.predictor",
                                 description="Train the feature -> image predictor of the joint codec's residual mode.")
    ap.add_argument("--out", required=True, help="checkpoint path, e.g. checkpoints/joint_predictor/ci_frcnn.pt")
    ap.add_argument("--model", default="ci_frcnn", help="conf/model yaml whose front made the features")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=48)
    ap.add_argument("--train-images", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    info = train(Path(args.out), args.model, args.steps, args.batch_size, args.lr, args.width, args.train_images,
                 threads=args.threads)
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
