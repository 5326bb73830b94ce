"""The second split point: `model.split=backbone` cuts before the FPN.

The front sends the backbone's C2..C5 (ResNet-50: 256/512/1024/2048 channels at strides
4..32; ci_frcnn: 32/64/128/256), the back runs the FPN and the heads. Held to the same bar as
the FPN cut: front + back on untouched features equals the unsplit model bit for bit. Codecs
that take any channel count code them; the learned codecs refuse them by name.
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch

from tests.assets import REPO
from vcmbench.config import compose_config
from vcmbench.errors import ConfigError, ShapeError
from vcmbench.types import LEVELS

pytestmark = pytest.mark.timeout(600)


def _assert_exact(det, image) -> int:
    ref = det.full(image)
    front = det.front(image)
    out = det.back(front.features, front.meta)
    for a, b in ((ref.boxes, out.boxes), (ref.scores, out.scores), (ref.labels, out.labels)):
        assert torch.equal(a, b)
    assert (ref.masks is None) == (out.masks is None)
    if ref.masks is not None:
        assert torch.equal(ref.masks, out.masks)
    return len(ref)


@pytest.mark.parametrize("arch", ["fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn"])
def test_resnet50_backbone_split_gives_c2_to_c5_and_equals_the_unsplit_model(arch, val_images):
    from vcmbench.vision.torchvision_split import build

    det = build(arch=arch, weights="none", seed=0, score_thresh=0.0, min_size=320, max_size=512, split="backbone")
    assert det.name == f"{arch}@backbone" and det.split == "backbone"
    image = val_images[0]
    front = det.front(image)
    ph, pw = front.meta.padded_size
    assert list(front.features) == list(LEVELS)
    for i, (lvl, channels) in enumerate(zip(LEVELS, (256, 512, 1024, 2048))):
        assert tuple(front.features[lvl].shape) == (channels, ph // 4 // 2**i, pw // 4 // 2**i)
    assert _assert_exact(det, image) >= 50


def test_ci_models_split_at_the_backbone_exactly():
    from hydra.utils import instantiate

    from vcmbench.datasets.synthetic import render

    img, _ = render(1_000_000, 256, 256)
    image = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    for model in ("ci_frcnn", "ci_maskrcnn"):
        cfg = compose_config(
            "config", [f"model={model}", "model.split=backbone", "model.weights=none", "model.score_thresh=0.0"]
        )
        det = instantiate(cfg.model)
        front = det.front(image)
        assert [front.features[k].shape[0] for k in LEVELS] == [32, 64, 128, 256] == det.out_channels
        assert _assert_exact(det, image) >= 50
        bad = dict(front.features, p3=front.features["p3"][:32])
        with pytest.raises(ShapeError, match="p3 has 32 channels; this model expects 64"):
            det.back(bad, front.meta)


def test_an_unknown_split_and_detectron2_backbone_split_are_refused():
    from vcmbench.vision.ci_frcnn import build

    with pytest.raises(ConfigError, match="model.split='neck'"):
        build(weights="none", split="neck")
    from vcmbench.vision.detectron2_split import build as d2_build

    with pytest.raises(ConfigError, match="detectron2 models split after the FPN only"):
        d2_build(split="backbone")


def _run(out, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "vcmbench",
            "run",
            "sweep.progress=false",
            f"hydra.run.dir={out}",
            "model.split=backbone",
            "dataset.max_images=2",
            "sweep.workers=1",  # 2 images: worker processes would cost more to start than they save
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=500,
        cwd=REPO,
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_backbone_run_codes_c2_to_c5_and_records_the_split(tmp_path):
    proc = _run(
        tmp_path / "run",
        "codec=[raw,anchor_vvc,pack_tile]",
        "codec.anchor_vvc.rates=[40]",
        "codec.pack_tile.rates=[40]",
        "complexity=false",
        "report=false",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    points = pd.read_csv(tmp_path / "run" / "points.csv")
    assert (points.split == "backbone").all() and (points.model == "ci_frcnn@backbone").all()
    assert (points.n_failed == 0).all() and (points.bpp > 0).all()
    # the uncompressed C2..C5 give the unsplit detector's mAP on these images
    fpn = _run(tmp_path / "fpn", "codec=raw", "model.split=fpn", "complexity=false", "report=false")
    assert fpn.returncode == 0, fpn.stderr[-3000:]
    same = pd.read_csv(tmp_path / "fpn" / "points.csv")
    assert float(points.set_index("codec").loc["raw", "map"]) == float(same.set_index("codec").loc["raw", "map"])


def test_learned_codecs_refuse_backbone_features_by_name():
    """A setting error (the same for every image), so the sweep stops with it (exit 2) rather than
    recording every image as failed."""
    from hydra.utils import instantiate

    from vcmbench.config import selected_codec_configs
    from vcmbench.datasets.synthetic import render

    cfg = compose_config("config", ["model.split=backbone", "codec=learned_interleaved"])
    front = instantiate(cfg.model).front(torch.from_numpy(render(1_000_000, 256, 256)[0]).permute(2, 0, 1))
    codec = instantiate(selected_codec_configs(cfg)["learned_interleaved"])
    with pytest.raises(
        ConfigError,
        match=r"learned_interleaved: features have \[32, 64, 128, 256\] channels.*"
        r"split=backbone",
    ):
        codec.encode(front.features, codec.rates[0])
