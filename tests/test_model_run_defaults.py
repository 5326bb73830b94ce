"""A network's own run defaults (model.run_defaults): its rate points and dataset settings, where the
packaged ones suit another network; whatever the command line says wins."""

from __future__ import annotations

import pytest

from vcmbench.config import compose_config, selected_codec_configs

pytestmark = pytest.mark.timeout(120)

JDE = ["model=ci_jde", "dataset=synthetic_video"]


def test_a_tracking_network_takes_every_frame_and_its_own_qps():
    cfg = compose_config("config", JDE)
    wanted = cfg.model.run_defaults.codec_rates
    assert cfg.dataset.max_frames is None
    codecs = selected_codec_configs(cfg)
    assert list(codecs["anchor_vvc"].rates) == list(wanted.anchor_vvc)
    assert list(codecs["pack_tile"].rates) == list(wanted.pack_tile)
    assert list(codecs["image_vvc"].rates) == list(
        selected_codec_configs(compose_config("config", []))["image_vvc"].rates
    )


def test_the_command_line_wins():
    cfg = compose_config(
        "config", [*JDE, "dataset.max_frames=3", "codec=[anchor_vvc,pack_tile]", "codec.anchor_vvc.rates=[30,40]"]
    )
    assert cfg.dataset.max_frames == 3
    codecs = selected_codec_configs(cfg)
    assert list(codecs["anchor_vvc"].rates) == [30, 40]  # the user's
    assert list(codecs["pack_tile"].rates) == list(cfg.model.run_defaults.codec_rates.pack_tile)  # named, not changed


def test_other_networks_and_datasets_keep_the_packaged_settings():
    frcnn = compose_config("config", ["dataset=synthetic_video"])
    assert frcnn.dataset.max_frames == 6
    assert list(selected_codec_configs(frcnn)["anchor_vvc"].rates) == [35, 37, 39, 41, 43, 45]
    images = compose_config("config", ["model=ci_jde"])  # an image set has no max_frames: none is added
    assert "max_frames" not in images.dataset
