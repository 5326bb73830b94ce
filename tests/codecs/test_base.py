"""The codec registry: names from yaml keys, vcmbench's own keys under meta:, unique payload tags."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from vcmbench.codecs.base import PAYLOAD_TAGS, register_tags
from vcmbench.config import ROLES, all_codec_configs, codec_meta, runnable_codec_config, selected_codec_roles
from vcmbench.errors import ConfigError


def test_every_codec_yaml_has_a_role_and_no_name_of_its_own():
    configs = all_codec_configs(include_optional=True)
    assert {"anchor_vvc", "image_vvc", "raw", "pack_tile", "learned_interleaved"} <= set(configs)
    for name, node in configs.items():
        assert "name" not in node, f"{name}: the name is the yaml key"
        assert codec_meta(node)["role"] in ROLES
        assert runnable_codec_config(node, name).name == name and "meta" not in runnable_codec_config(node, name)
    roles = selected_codec_roles(OmegaConf.create({"codec": None}))
    assert roles["anchor_vvc"] == "feature_anchor" and roles["image_vvc"] == "image_anchor"
    assert roles["raw"] == "uncompressed" and roles["pack_tile"] == "test"
    assert "anchor_vtm" not in roles  # meta.in_default_run: false


def test_a_name_that_disagrees_with_the_key_is_refused():
    node = OmegaConf.create({"_target_": "vcmbench.codecs.raw.RawCodec", "name": "other"})
    with pytest.raises(ConfigError, match=r"codec\.raw\.name='other'.*yaml key"):
        runnable_codec_config(node, "raw")
    with pytest.raises(ConfigError, match="meta.role='boss'"):
        codec_meta(OmegaConf.create({"meta": {"role": "boss"}}))


def test_payload_tags_are_unique():
    import vcmbench.codecs.frames  # noqa: F401 - registers its tags at import
    import vcmbench.codecs.image_anchor  # noqa: F401
    import vcmbench.codecs.joint  # noqa: F401
    import vcmbench.codecs.learned.codec  # noqa: F401
    import vcmbench.codecs.raw  # noqa: F401

    assert {b"ANCH", b"PKTL", b"PKCC", b"PKCD", b"RAW4", b"RAW2", b"LMSI", b"LMSC", b"JNT1", b"IMGV"} <= set(
        PAYLOAD_TAGS
    )
    register_tags(PAYLOAD_TAGS[b"RAW4"], b"RAW4")  # the same owner again: fine (a re-import)
    with pytest.raises(ConfigError, match=r"b'ANCH' is already vcmbench\.codecs\.frames\.StackedMosaic's"):
        register_tags("my.codecs.Mine", b"ANCH")
    with pytest.raises(ConfigError, match="4 bytes"):
        register_tags("my.codecs.Mine", b"TOOLONG")


def test_the_one_yaml_codec_of_the_architecture_page_runs(real_features):
    """docs/architecture.md's "a codec on an existing back-end: one yaml" example, as written."""
    import re

    from tests.assets import REPO
    from vcmbench.config import build

    text = (REPO / "docs" / "architecture.md").read_text()
    block = re.search(r"```yaml\n(my_anchor:.*?)```", text, flags=re.S).group(1)
    node = OmegaConf.create(block)
    codec = build(runnable_codec_config(node.my_anchor, "my_anchor"))
    assert codec.name == "my_anchor" and codec_meta(node.my_anchor)["role"] == "test"
    feats = real_features(channels=16)
    sizes = [len(codec.encode(feats, rp)) for rp in codec.rates]
    assert sizes[0] > sizes[1] > sizes[2]
    assert codec.decode(codec.encode(feats, codec.rates[0]))["p3"].shape == feats["p3"].shape


def test_every_anchor_names_its_encoder_and_preset(codec_from_yaml, tmp_path):
    """The points table's `encoder` column and the report header come from describe_encoder."""
    from tests.codecs_for_tests import fake_vtm

    assert codec_from_yaml("anchor_vvc").describe_encoder() == "libvvenc preset faster"
    assert codec_from_yaml("anchor_vvc_medium").describe_encoder() == "libvvenc preset medium"
    assert codec_from_yaml("anchor_hevc").describe_encoder() == "libx265 preset ultrafast"
    assert codec_from_yaml("image_vvc").describe_encoder() == "libvvenc preset faster"
    assert codec_from_yaml("anchor_vvc", backend__preset="slow").describe_encoder() == "libvvenc preset slow"
    enc, dec, _ = fake_vtm(tmp_path)
    cfg = tmp_path / "encoder_intra_vtm.cfg"
    cfg.write_text("IntraPeriod : 1\n")
    vtm = codec_from_yaml(
        "anchor_vtm", backend__encoder_app=str(enc), backend__decoder_app=str(dec), backend__cfg=str(cfg)
    )
    assert vtm.describe_encoder() == "VTM encoder_intra_vtm.cfg"
    assert (
        codec_from_yaml("learned_interleaved").describe_encoder() == "learned interleaved (learned_interleaved/q*.pt)"
    )
