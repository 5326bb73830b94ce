"""Feature codecs: one module and one yaml in conf/codec/ each."""

from vcmbench.codecs.base import FeatureCodec, RatePoint

__all__ = ["FeatureCodec", "RatePoint"]
