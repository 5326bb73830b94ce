"""The image anchor (remote inference): real VVC/PNG coding of real images, the sweep's image path,
and the lossless limit equal to the unsplit detector."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from vcmbench.codecs.image_anchor import ImageAnchorCodec, scaled_size
from vcmbench.config import compose_config
from vcmbench.errors import ConfigError, PayloadError, ShapeError
from vcmbench.metrics.detection import evaluate
from vcmbench.metrics.fidelity import image_fidelity
from vcmbench.run import run_sweep, to_rows

SYNTHETIC = ["dataset=synthetic_val", "dataset.max_images=4", "model=ci_frcnn", "progress=false"]


@pytest.fixture(scope="module")
def odd_crop(val_images) -> torch.Tensor:
    """A real photo cut to odd sides, so the even-size padding and the crop are exercised."""
    return val_images[0][:, :181, :203].contiguous()


def test_vvc_image_anchor_round_trip_is_real_and_rate_ordered(odd_crop):
    codec = ImageAnchorCodec("image_vvc", rates=[22, 37, 47])
    sizes, psnrs = [], []
    for rp in codec.rates:
        payload = codec.encode(odd_crop, rp)
        decoded = codec.decode(payload)
        assert decoded.shape == odd_crop.shape and decoded.dtype == torch.uint8
        assert payload[:4] == b"IMGV"
        sizes.append(len(payload))
        psnrs.append(image_fidelity(odd_crop, decoded)["image_psnr"])
    assert sizes[0] > sizes[1] > sizes[2]  # lower QP, more bytes
    assert psnrs[0] > psnrs[1] > psnrs[2] > 20.0
    assert not math.isinf(psnrs[0])  # lossy: 4:2:0 and quantisation


def test_downscaled_anchor_is_its_own_curve_and_smaller(odd_crop):
    full = ImageAnchorCodec("image_vvc", rates=[32])
    half = ImageAnchorCodec("image_vvc", rates=[32], scale=0.5)
    assert half.name == "image_vvc_s50" and full.name == "image_vvc"
    assert scaled_size(181, 203, 50) == (91, 102)
    small, big = half.encode(odd_crop, half.rates[0]), full.encode(odd_crop, full.rates[0])
    assert len(small) < len(big)
    decoded = half.decode(small)
    assert decoded.shape == odd_crop.shape  # upscaled back to the input size
    assert image_fidelity(odd_crop, decoded)["image_psnr"] < image_fidelity(odd_crop, full.decode(big))["image_psnr"]


def test_png_reference_is_lossless(odd_crop):
    codec = ImageAnchorCodec("image_lossless", inner="png")
    assert [r.label for r in codec.rates] == ["lossless=png"]
    assert torch.equal(codec.decode(codec.encode(odd_crop, codec.rates[0])), odd_crop)


def test_bad_payloads_raise_payload_errors(odd_crop):
    vvc = ImageAnchorCodec("image_vvc", rates=[37])
    png = ImageAnchorCodec("image_lossless", inner="png")
    payload = vvc.encode(odd_crop, vvc.rates[0])
    with pytest.raises(PayloadError, match="does not decode"):
        vvc.decode(payload[: len(payload) // 2])
    with pytest.raises(PayloadError, match="shorter than the header"):
        vvc.decode(payload[:5])
    with pytest.raises(PayloadError, match="another codec"):
        png.decode(payload)
    bad_scale = payload[:9] + bytes([0]) + payload[10:]
    with pytest.raises(PayloadError, match="scale"):
        vvc.decode(bad_scale)


def test_bad_settings_and_inputs_name_the_field(odd_crop):
    with pytest.raises(ConfigError, match=r"codec.image_vvc.scale"):
        ImageAnchorCodec("image_vvc", scale=0.333)
    with pytest.raises(ConfigError, match=r"codec.image_vvc.bits"):
        ImageAnchorCodec("image_vvc", bits=8)
    with pytest.raises(ConfigError, match=r"codec.image_vvc.inner"):
        ImageAnchorCodec("image_vvc", inner="jpeg2000")
    with pytest.raises(ConfigError, match="qp=70"):
        ImageAnchorCodec("image_vvc", rates=[70])  # refused when the sweep starts, not at the first image
    codec = ImageAnchorCodec("image_vvc", rates=[37])
    with pytest.raises(ShapeError, match="uint8"):
        codec.encode(odd_crop.float(), codec.rates[0])
    with pytest.raises(ShapeError, match=r"\(3, H, W\)"):
        codec.encode(odd_crop[:1], codec.rates[0])


def _cfg(*overrides: str):
    return compose_config("config", [*SYNTHETIC, *overrides])


def test_lossless_image_limit_equals_the_unsplit_detector(tmp_path):
    """The image anchor's uncompressed limit: PNG-coded images through the sweep give exactly the
    accuracy of the unsplit detector (model.full) on the original images."""
    cfg = _cfg("codec=[image_lossless,image_vvc]", "codec.image_vvc.rates=[27,42]")
    points = run_sweep(cfg, tmp_path / "run").set_index(["codec", "rate"])
    dataset, detector = instantiate(cfg.dataset), instantiate(cfg.model)
    results = []
    for rec in dataset.records:
        dets = detector.full(dataset.load(rec).image)
        results += [{"image_id": rec.image_id, "bbox": r[:4], "score": r[4], "category_id": int(r[5])}
                    for r in to_rows(dets, detector)]
    unsplit = evaluate(dataset.metric, dataset.annotation_file, results, image_ids=dataset.image_ids)
    lossless = points.loc[("image_lossless", "lossless=png")]
    assert lossless["map"] == pytest.approx(unsplit["map"], abs=1e-9)
    assert lossless["ap50"] == pytest.approx(unsplit["ap50"], abs=1e-9)
    assert lossless["image_psnr"] == math.inf and lossless["image_msssim"] == pytest.approx(1.0)
    lo, hi = points.loc[("image_vvc", "qp=42")], points.loc[("image_vvc", "qp=27")]
    assert lo["bpp"] < hi["bpp"] < lossless["bpp"]
    assert lo["image_psnr"] < hi["image_psnr"]
    assert (points.n_failed == 0).all()
    # the receiver's network time is measured on the decoded image
    assert (points.front_s > 0).all() and (points.back_s > 0).all()
    # bytes are the payloads: header + scale byte + the real bitstream
    records = pd.read_json(tmp_path / "run" / "records.jsonl", lines=True)
    summed = records.groupby(["codec", "rate"]).bytes.sum()
    assert summed.to_dict() == points["bytes"].to_dict()
