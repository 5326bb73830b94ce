"""The image anchor (remote inference): real VVC/PNG coding of real images, the sweep's image path,
and the lossless limit equal to the unsplit detector."""

from __future__ import annotations

import json
import math
import struct
import zlib
from functools import partial

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from tests.assets import SKIP_FIGURES
from tests.codecs_for_tests import fake_vtm
from vcmbench.codecs.backends.ffmpeg_codecs import Ffv1Backend, PngBackend, VvencBackend
from vcmbench.codecs.backends.vtm import VtmBackend
from vcmbench.codecs.image_anchor import ImageAnchorCodec, scaled_size
from vcmbench.codecs.sequence import SequenceInfo
from vcmbench.config import compose_config
from vcmbench.errors import ConfigError, PayloadError, ShapeError
from vcmbench.metrics.detection import evaluate
from vcmbench.metrics.fidelity import image_fidelity
from vcmbench.run import run_sweep, to_rows

SYNTHETIC = ["dataset=synthetic_val", "dataset.max_images=4", "model=ci_frcnn", "sweep.progress=false"]


@pytest.fixture(scope="module")
def odd_crop(val_images) -> torch.Tensor:
    """A real photo cut to odd sides, so the even-size padding and the crop are exercised."""
    return val_images[0][:, :181, :203].contiguous()


def test_vvc_image_anchor_round_trip_is_real_and_rate_ordered(odd_crop, codec_from_yaml):
    codec = codec_from_yaml("image_vvc", rates=[22, 37, 47])
    assert isinstance(codec, ImageAnchorCodec) and isinstance(codec.backend, VvencBackend)
    assert codec.describe_encoder() == "libvvenc preset faster"
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


def test_downscaled_anchor_is_its_own_curve_and_smaller(odd_crop, codec_from_yaml):
    full = codec_from_yaml("image_vvc", rates=[32])
    half = codec_from_yaml("image_vvc", rates=[32], scale=0.5)
    assert half.name == "image_vvc_s50" and full.name == "image_vvc"
    assert scaled_size(181, 203, 50) == (91, 102)
    small, big = half.encode(odd_crop, half.rates[0]), full.encode(odd_crop, full.rates[0])
    assert len(small) < len(big)
    decoded = half.decode(small)
    assert decoded.shape == odd_crop.shape  # upscaled back to the input size
    assert image_fidelity(odd_crop, decoded)["image_psnr"] < image_fidelity(odd_crop, full.decode(big))["image_psnr"]


def test_png_reference_is_lossless(odd_crop, codec_from_yaml):
    codec = codec_from_yaml("image_lossless")
    assert codec.lossless and isinstance(codec.backend, PngBackend) and codec.describe_encoder() == "png"
    assert [r.label for r in codec.rates] == ["lossless=png"]
    assert torch.equal(codec.decode(codec.encode(odd_crop, codec.rates[0])), odd_crop)


def test_bad_payloads_raise_payload_errors(odd_crop, codec_from_yaml):
    vvc = codec_from_yaml("image_vvc", rates=[37])
    png = codec_from_yaml("image_lossless")
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


def test_bad_settings_and_inputs_name_the_field(odd_crop, codec_from_yaml):
    with pytest.raises(ConfigError, match=r"codec.image_vvc.scale"):
        codec_from_yaml("image_vvc", scale=0.333)
    with pytest.raises(ConfigError, match=r"codec.image_vvc.bits=8: VvencBackend codes 10-bit pictures only"):
        codec_from_yaml("image_vvc", bits=8)
    with pytest.raises(ConfigError, match=r"codec.image_vvc.backend: Ffv1Backend does not code colour pictures"):
        codec_from_yaml("image_vvc", backend=Ffv1Backend)
    with pytest.raises(ConfigError, match=r"codec.image_vvc.backend.threads=8"):
        codec_from_yaml("image_vvc", backend__threads=8)  # the back-end's own checks name its node
    with pytest.raises(ConfigError, match=r"codec.image_lossless.scale=0.5: the lossless \(PngBackend\)"):
        codec_from_yaml("image_lossless", scale=0.5)
    with pytest.raises(ConfigError, match="qp=70"):
        codec_from_yaml("image_vvc", rates=[70])  # refused when the sweep starts, not at the first image
    codec = ImageAnchorCodec("image_vvc", partial(VvencBackend, preset="faster"), rates=[37])  # built in Python
    with pytest.raises(ShapeError, match="uint8"):
        codec.encode(odd_crop.float(), codec.rates[0])
    with pytest.raises(ShapeError, match=r"\(3, H, W\)"):
        codec.encode(odd_crop[:1], codec.rates[0])


def _cfg(*overrides: str):
    return compose_config("config", [*SYNTHETIC, *overrides])


def test_lossless_image_limit_equals_the_unsplit_detector(tmp_path):
    """The image anchor's uncompressed limit: PNG-coded images through the sweep give exactly the
    accuracy of the unsplit detector (model.full) on the original images."""
    cfg = _cfg("codec=[image_lossless,image_vvc]", "codec.image_vvc.rates=[27,42]", "sweep.workers=1", *SKIP_FIGURES)
    points = run_sweep(cfg, tmp_path / "run").set_index(["codec", "rate"])
    dataset, detector = instantiate(cfg.dataset), instantiate(cfg.model)
    results = []
    for rec in dataset.records:
        dets = detector.full(dataset.load(rec).image)
        results += [
            {"image_id": rec.image_id, "bbox": r[:4], "score": r[4], "category_id": int(r[5])}
            for r in to_rows(dets, detector)
        ]
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


@pytest.mark.timeout(60)
def test_vtm_image_anchor_from_its_yaml_codes_what_the_fake_vtm_wrote(tmp_path, codec_from_yaml, odd_crop):
    """codec=image_vtm: the image converted by ffmpeg to 4:2:0 10-bit, coded by (fake) EncoderApp with
    4:2:0 input; the payload's bitstream is the bytes the fake wrote; its DecoderApp's output decodes."""
    enc, dec, log = fake_vtm(tmp_path)
    cfg = tmp_path / "encoder_intra_vtm.cfg"
    cfg.write_text("IntraPeriod : 1\n")
    codec = codec_from_yaml(
        "image_vtm", rates=[37], backend__encoder_app=str(enc), backend__decoder_app=str(dec), backend__cfg=str(cfg)
    )
    assert isinstance(codec.backend, VtmBackend) and codec.describe_encoder() == "VTM encoder_intra_vtm.cfg"
    image = odd_crop[:, :63, :64].contiguous()  # odd height: padded to even for 4:2:0
    payload = codec.encode(image, codec.rates[0])
    opts = json.loads(log.read_text())["opts"]
    assert opts["InputChromaFormat"] == opts["ChromaFormatIDC"] == "420" and opts["QP"] == "37"
    assert (opts["SourceWidth"], opts["SourceHeight"], opts["FramesToBeEncoded"]) == ("64", "64", "1")
    assert opts["InputBitDepth"] == opts["InternalBitDepth"] == opts["OutputBitDepth"] == "10"
    assert payload[:4] == b"IMGV" and payload[9] == 100  # image_vvc's tag: a VVC stream; scale 100 %
    stream = payload[10:]
    yuv = zlib.decompress(stream[10:])
    assert len(yuv) == 64 * 64 * 3  # 4:2:0 at 16 bits a sample
    assert stream == b"FV42" + struct.pack(">HHH", 64, 64, 1) + zlib.compress(yuv)  # all the fake wrote, no more
    decoded = codec.decode(payload)
    assert decoded.shape == image.shape and decoded.dtype == torch.uint8
    assert image_fidelity(image, decoded)["image_psnr"] > 35.0  # the fake is lossless: 4:2:0 costs the rest
    with pytest.raises(PayloadError, match="does not decode"):
        codec.decode(payload[:10] + b"JUNK" + payload[14:])


@pytest.mark.timeout(60)
def test_vtm_image_anchor_codes_a_sequence_with_its_sequence_cfg(tmp_path, codec_from_yaml, odd_crop):
    enc, dec, log = fake_vtm(tmp_path)
    lowdelay = tmp_path / "encoder_lowdelay_vtm.cfg"
    lowdelay.write_text("GOPSize : 8\n")
    settings = {"rates": [32], "backend__encoder_app": str(enc), "backend__decoder_app": str(dec)}
    frames = [odd_crop[:, :48, :64].contiguous(), odd_crop[:, 10:58, 5:69].contiguous()]
    codec = codec_from_yaml("image_vtm", backend__sequence_cfg=str(lowdelay), **settings)
    encoder = codec.sequence_encoder(codec.rates[0], SequenceInfo(frames=2, fps=30.0))
    for frame in frames:
        encoder.add(frame, None)
    payload = encoder.finish()
    call = json.loads(log.read_text())
    assert call["argv"][:2] == ["-c", str(lowdelay.resolve())] and call["opts"]["FramesToBeEncoded"] == "2"
    assert call["opts"]["IntraPeriod"] == "32" and call["opts"]["InputChromaFormat"] == "420"
    decoded = [r.image for r in codec.sequence_decode(payload, [None, None])]
    assert [d.shape for d in decoded] == [f.shape for f in frames]
    assert all(image_fidelity(f, d)["image_psnr"] > 35.0 for f, d in zip(frames, decoded))
    with pytest.raises(ConfigError, match=r"codec\.image_vtm\.backend\.sequence_cfg"):
        no_cfg = codec_from_yaml("image_vtm", **settings)
        no_cfg.sequence_encoder(no_cfg.rates[0], SequenceInfo(frames=2, fps=30.0)).add(frames[0], None)


@pytest.mark.timeout(60)
def test_a_sweep_runs_codec_image_vtm_with_the_fake_vtm(tmp_path):
    """`vcmbench run codec=image_vtm` with the backend's paths set: no Python of its own, one yaml."""
    enc, dec, _ = fake_vtm(tmp_path)
    cfg = compose_config(
        "config",
        [
            "dataset=synthetic_val",
            "dataset.max_images=1",
            "model=ci_frcnn",
            "sweep.progress=false",
            "codec=image_vtm",
            "codec.image_vtm.rates=[37]",
            f"codec.image_vtm.backend.encoder_app={enc}",
            f"codec.image_vtm.backend.decoder_app={dec}",
        ],
    )
    points = run_sweep(cfg, tmp_path / "run")
    row = points.set_index(["codec", "rate"]).loc[("image_vtm", "qp=37")]
    assert row.n_failed == 0 and row.role == "image_anchor" and row.encoder == "VTM"
    records = pd.read_json(tmp_path / "run" / "records.jsonl", lines=True)
    assert int(records.bytes.sum()) == row["bytes"] > 0
