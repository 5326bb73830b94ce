"""One exception family, so callers (the sweep, the CLI) can tell our errors from bugs.

Every message names what is wrong (file, field) and how to fix it: the user of a
benchmark harness is usually mid-sweep and needs the fix, not a traceback.
"""

from __future__ import annotations


def error_line(exc: BaseException) -> str:
    """The one line a user error is shown as (terminal, run.log): `vcmbench: error: <message>`, the
    message's line breaks folded."""
    return f"vcmbench: error: {' '.join(str(exc).split())}"


class VcmbenchError(Exception):
    """Base of every error vcmbench raises on purpose."""


class ConfigError(VcmbenchError):
    """A config value is missing or invalid."""


class DatasetError(VcmbenchError):
    """A dataset folder, annotation file or image is missing or malformed."""


class CheckpointError(VcmbenchError):
    """Model weights are missing, unreachable or do not fit the model."""


class MissingDependencyError(VcmbenchError):
    """An optional package or external binary is not installed."""


class ShapeError(VcmbenchError):
    """Features do not have the shape a codec or model expects."""


class PayloadError(VcmbenchError):
    """A bitstream is truncated, corrupt, or was made by another codec/model.

    The sweep catches this per image and rate point, records the failure and goes on.
    """


class ExternalCodecError(VcmbenchError):
    """An external encoder/decoder process failed; the message carries its command and output."""


class MetricError(VcmbenchError):
    """Inputs to a metric (BD-rate, mAP) cannot give a meaningful number."""
