"""Joint feature + image coding: two layers in one payload, their bytes, their metrics, their report."""

from __future__ import annotations

from functools import partial

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from tests.assets import SKIP_FIGURES
from vcmbench.codecs.backends.ffmpeg_codecs import PngBackend, VvencBackend
from vcmbench.codecs.image_anchor import ImageAnchorCodec
from vcmbench.codecs.joint import JointCodec
from vcmbench.config import compose_config
from vcmbench.errors import ConfigError, PayloadError
from vcmbench.render.report import write_report
from vcmbench.run import run_sweep

#: the enhancement layer's back-end node as the joint yamls give it
VVC = partial(VvencBackend, preset="faster")
SYNTHETIC = ["dataset=synthetic_val", "dataset.max_images=2", "model=ci_frcnn", "sweep.progress=false"]


def _cfg(*overrides: str):
    return compose_config("config", [*SYNTHETIC, *overrides])


@pytest.fixture(scope="module")
def scene():
    cfg = _cfg()
    dataset, detector = instantiate(cfg.dataset), instantiate(cfg.model)
    image = dataset.load(dataset.records[0]).image
    return image, detector.front(image)


@pytest.fixture(scope="module")
def joint(codec_from_yaml) -> JointCodec:
    return codec_from_yaml("joint_interleaved_vvc")


def test_layers_are_the_base_codec_and_the_image_codec(scene, joint, codec_from_yaml):
    image, front = scene
    assert [r.label for r in joint.rates] == ["quality=2+qp=42", "quality=4+qp=32"]
    base_codec = codec_from_yaml("learned_interleaved")
    image_codec = ImageAnchorCodec("image_vvc", VVC, rates=[32])
    rate = joint.rate_point("quality=4+qp=32")
    payload = joint.encode(image, front.features, front.meta, rate)
    n_base, n_enh = joint.layer_bytes(payload)
    assert n_base + n_enh == len(payload)
    base_alone = base_codec.encode(front.features, base_codec.rate_point(4))
    image_alone = image_codec.encode(image, image_codec.rates[0])
    assert n_base == 9 + len(base_alone) and n_enh == len(image_alone)  # 9: the layer header
    base = joint.decode_base(payload)
    expected = base_codec.decode(base_alone)
    assert all(torch.equal(base[k], expected[k]) for k in expected)
    assert torch.equal(joint.decode_enhancement(payload, base, front.meta), image_codec.decode(image_alone))


def test_truncated_or_foreign_payloads_are_refused(scene, joint):
    image, front = scene
    payload = joint.encode(image, front.features, front.meta, joint.rates[0])
    n_base, _ = joint.layer_bytes(payload)
    with pytest.raises(PayloadError, match="truncated"):
        joint.layer_bytes(payload[: n_base - 1])
    with pytest.raises(PayloadError, match="no enhancement layer"):
        joint.decode_enhancement(payload[:n_base], {}, front.meta)
    with pytest.raises(PayloadError, match="not a joint payload"):
        joint.layer_bytes(b"XXXX" + payload[4:])
    with pytest.raises(PayloadError):
        joint.decode_enhancement(payload[: n_base + 20], {}, front.meta)


def test_bad_settings_name_the_field(codec_from_yaml):
    with pytest.raises(ConfigError, match=r"\$\{codec_yaml:nope\}: no codec yaml named 'nope'"):
        codec_from_yaml("joint_interleaved_vvc", base="${codec_yaml:nope}")
    learned = codec_from_yaml("learned_interleaved")
    with pytest.raises(ConfigError, match=r"codec.j.rates\[0\]"):
        JointCodec("j", base=learned, rates=[2], backend=VVC)
    with pytest.raises(ConfigError, match=r"codec.j.base: .*not a feature codec"):
        JointCodec("j", base=codec_from_yaml("image_vvc"), rates=[[22, 42]], backend=VVC)
    with pytest.raises(ConfigError, match=r"codec.j.base: 'learned_interleaved' is not a feature codec.*codec_yaml"):
        JointCodec("j", base="learned_interleaved", rates=[[2, 42]], backend=VVC)  # a name is not a codec
    with pytest.raises(ConfigError, match=r"codec.j.backend: PngBackend is lossless; the enhancement layer is a lossy"):
        JointCodec("j", base=codec_from_yaml("raw"), rates=[["float32", "png"]], backend=partial(PngBackend))
    with pytest.raises(ConfigError, match=r"codec.joint_interleaved_vvc.backend.threads=8"):
        codec_from_yaml("joint_interleaved_vvc", backend__threads=8)  # the node's path, not the image layer's
    with pytest.raises(ConfigError, match=r"codec.joint_interleaved_vvc.scale=0.333"):
        codec_from_yaml("joint_interleaved_vvc", scale=0.333)


def test_sweep_reports_each_layer(tmp_path):
    cfg = _cfg(
        "codec=[joint_interleaved_vvc,learned_interleaved,image_vvc]",
        "codec.learned_interleaved.rates=[2,4]",
        "codec.image_vvc.rates=[32,42]",  # the joint codec's QPs: the points its layers are compared with
        "sweep.workers=1",
        *SKIP_FIGURES,
    )
    points = run_sweep(cfg, tmp_path / "run").set_index(["codec", "rate"])
    joint = points.loc["joint_interleaved_vvc"]
    assert list(joint.index) == ["quality=2+qp=42", "quality=4+qp=32"]
    assert (joint.bytes_base + joint.bytes_enh == joint["bytes"]).all()
    assert (joint.bpp_base + joint.bpp_enh).to_numpy() == pytest.approx(joint.bpp.to_numpy(), rel=1e-12)
    for quality, qp in ((2, 42), (4, 32)):
        row = joint.loc[f"quality={quality}+qp={qp}"]
        alone = points.loc[("learned_interleaved", f"quality={quality}")]
        image = points.loc[("image_vvc", f"qp={qp}")]
        # the task metric is the base layer's: exactly the feature codec's own, on the same features
        assert row["map"] == pytest.approx(alone["map"], abs=1e-12)
        assert row.bytes_base == alone["bytes"] + 9 * row.n_images
        # the viewer's image is the enhancement layer's: exactly the image anchor's at that QP
        assert row.bytes_enh == image["bytes"]
        assert row.image_psnr == pytest.approx(image.image_psnr) and 0 < row.image_msssim < 1
    assert (joint.dec_base_s > 0).all() and (joint.dec_enh_s > 0).all()

    rep = write_report([tmp_path / "run"], tmp_path / "report", anchor="image_vvc")
    md = rep.markdown.read_text()
    assert "### Layers of the joint feature + image codecs" in md
    assert "quality=4+qp=32" in md.split("### Layers")[1]
    assert {"rd", "layers"} <= set(rep.groups[0].figures)
    assert all(p.is_file() for p in rep.groups[0].figures["layers"])
    table = pd.read_csv(tmp_path / "run" / "points.csv")
    assert {"bytes_base", "bytes_enh", "bpp_base", "bpp_enh", "image_psnr", "image_msssim"} <= set(table.columns)


def test_residual_layer_builds_on_the_decoded_base(scene, codec_from_yaml):
    """Collaborative mode: the enhancement layer is a residual over a prediction from the base layer,
    so the viewer's image depends on the base features, and adds to what the prediction alone gives."""
    from vcmbench.codecs.learned.predictor import predict_image
    from vcmbench.metrics.fidelity import image_fidelity

    image, front = scene
    codec = codec_from_yaml("joint_residual_vvc")
    simulcast = codec_from_yaml("joint_interleaved_vvc")
    rate = codec.rate_point("quality=4+qp=32")
    payload = codec.encode(image, front.features, front.meta, rate)
    n_base, n_enh = codec.layer_bytes(payload)
    assert n_base + n_enh == len(payload)
    assert n_base == simulcast.layer_bytes(simulcast.encode(image, front.features, front.meta, rate))[0]
    base = codec.decode_base(payload)
    viewed = codec.decode_enhancement(payload, base, front.meta)
    predicted = predict_image(codec._predictor, base, front.meta)
    assert image_fidelity(image, viewed)["image_psnr"] > image_fidelity(image, predicted)["image_psnr"] + 1.0
    other = {k: torch.zeros_like(v) for k, v in base.items()}
    assert not torch.equal(codec.decode_enhancement(payload, other, front.meta), viewed)


def test_residual_mode_needs_its_predictor(tmp_path, codec_from_yaml):
    learned = codec_from_yaml("learned_interleaved")
    with pytest.raises(Exception, match=r"codec.j.predictor.*not found.*vcmbench train-predictor"):
        JointCodec(
            "j",
            base=learned,
            rates=[[2, 42]],
            backend=VVC,
            enhancement="residual",
            predictor=str(tmp_path / "missing.pt"),
        )
    with pytest.raises(ConfigError, match=r"codec.j.scale"):
        JointCodec(
            "j",
            base=learned,
            rates=[[2, 42]],
            backend=VVC,
            enhancement="residual",
            predictor="checkpoints/joint_predictor/ci_frcnn.pt",
            scale=0.5,
        )
    with pytest.raises(ConfigError, match=r"codec.j.enhancement"):
        JointCodec("j", base=learned, rates=[[2, 42]], backend=VVC, enhancement="both")
