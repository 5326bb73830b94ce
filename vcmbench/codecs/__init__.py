"""Codecs: one module and one yaml in conf/codec/ each. Feature codecs code p2..p5, image
codecs the input image (remote inference), layered codecs both in one payload."""

from vcmbench.codecs.base import Codec, FeatureCodec, ImageCodec, LayeredCodec, RatePoint

__all__ = ["Codec", "FeatureCodec", "ImageCodec", "LayeredCodec", "RatePoint"]
