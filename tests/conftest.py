"""Shared fixtures: real images from tests/data/coco-mini and small, fast detectors."""

from __future__ import annotations

import pytest
import torch

from tests.assets import coco_mini_image_paths

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def val_images() -> list[torch.Tensor]:
    from vcmbench.datasets.images import read_rgb

    return [read_rgb(p) for p in coco_mini_image_paths(2)]


@pytest.fixture(scope="session")
def small_frcnn():
    """torchvision R50-FPN, random weights, small input size: real features, fast."""
    from vcmbench.vision.torchvision_split import build

    return build(arch="fasterrcnn_resnet50_fpn", weights="none", seed=0, score_thresh=0.0, min_size=320, max_size=512)


@pytest.fixture(scope="session")
def codec_from_yaml():
    """Build a codec from its packaged yaml, as a sweep would, with overrides.

    `codec_from_yaml("anchor_hevc", rates=[35], quantiser__range="global", backend="ffv1")`:
    keyword keys are the yaml's, `__` for nesting; `backend=KIND` swaps the frame back-end for
    `vcmbench.codecs.external.BACKENDS[KIND]` (settings the new class does not take are dropped);
    `name=` renames the codec (its errors then name `codec.<name>...`).
    """
    import inspect

    from omegaconf import OmegaConf

    from vcmbench.codecs.external import BACKENDS
    from vcmbench.config import all_codec_configs, runnable_codec_config
    from vcmbench.config import build as build_codec

    def build(yaml_name: str, backend: str | None = None, **overrides):
        node = runnable_codec_config(all_codec_configs(include_optional=True)[yaml_name], yaml_name)
        if backend is not None:
            cls = BACKENDS[backend]
            accepted = set()
            for klass in cls.__mro__:
                if "__init__" in vars(klass):
                    accepted |= set(inspect.signature(klass.__init__).parameters)
            kept = {k: v for k, v in node.backend.items() if k in accepted}
            node.backend = {"_target_": f"{cls.__module__}.{cls.__name__}", "_partial_": True, **kept}
        for key, value in overrides.items():
            OmegaConf.update(node, key.replace("__", "."), value, force_add=True)
        return build_codec(node)

    return build
