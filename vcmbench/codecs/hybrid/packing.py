"""The reduced tensor as the inner codec's picture: 10-bit min/max quantisation and channel tiling.

An item's (a sequence's) reduced tensor is mapped linearly from [min, max] to the 10-bit samples
0..1023 (the two float32 bounds travel in the payload), and its channels are tiled in raster order
into one monochrome frame: rows x cols tiles of the reduced grid, rows = the near-square divisor of
the channel count (`vcmbench.codecs.tiling.near_square_rows`: 8 channels -> 2 x 4 tiles). Both ends
derive the grid from the channel count and the grid size, so nothing about it is written.

`normalised_with_noise` is the training-time stand-in for all of it (quantisation and the inner
codec's error as additive noise in sample units), kept here so training and coding share one
definition of the samples.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vcmbench.codecs.tiling import dequantize, near_square_rows, quantize, tile, untile

BITS = 10
MAX_SAMPLE = (1 << BITS) - 1


def tile_grid(channels: int) -> tuple[int, int]:
    """(rows, cols) of tiles for `channels` reduced channels."""
    rows = near_square_rows(channels)
    return rows, math.ceil(channels / rows)


def frame_size(channels: int, height: int, width: int) -> tuple[int, int]:
    """The packed frame's (height, width) for a (channels, height, width) reduced tensor."""
    rows, cols = tile_grid(channels)
    return rows * height, cols * width


def value_range(reduced: np.ndarray | list[np.ndarray]) -> tuple[float, float]:
    """The float32 (min, max) of one item's reduced tensor, or of a sequence's frames together."""
    arrays = reduced if isinstance(reduced, list) else [reduced]
    lo = min(float(np.float32(a.min())) for a in arrays)
    hi = max(float(np.float32(a.max())) for a in arrays)
    return lo, hi


def pack(reduced: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(C, H, W) float -> the (rows*H, cols*W) frame of 10-bit samples (spare tiles at mid-grey)."""
    rows, cols = tile_grid(reduced.shape[0])
    return tile(quantize(reduced, lo, hi, BITS), rows, cols, fill=1 << (BITS - 1))


def unpack(frame: np.ndarray, channels: int, height: int, width: int, lo: float, hi: float) -> np.ndarray:
    """Inverse of `pack`: a decoded frame -> the (C, H, W) float32 reduced tensor."""
    rows, cols = tile_grid(channels)
    samples = untile(np.minimum(frame, MAX_SAMPLE), channels, height, width, rows, cols)
    return dequantize(samples, lo, hi, BITS)


def samples_of(reduced: torch.Tensor) -> torch.Tensor:
    """Each batch item's reduced tensor as the 10-bit samples `pack` makes of it (unrounded, differentiable)."""
    b = reduced.shape[0]
    flat = reduced.reshape(b, -1)
    lo = flat.min(dim=1).values.view(b, 1, 1, 1)
    hi = flat.max(dim=1).values.view(b, 1, 1, 1)
    return (reduced - lo) / (hi - lo).clamp_min(1e-6) * MAX_SAMPLE


def normalised_with_noise(reduced: torch.Tensor, noise_std: torch.Tensor) -> torch.Tensor:
    """Training's differentiable stand-in for pack -> inner codec -> unpack, per batch item.

    Each item is mapped to [0, 1023] by its own min/max (as `pack` does), rounded with straight-through
    gradients, perturbed by Gaussian noise of `noise_std` samples (one per item: the inner codec's
    error at that item's QP, calibrated on real bitstreams), and mapped back."""
    b = reduced.shape[0]
    flat = reduced.reshape(b, -1)
    lo = flat.min(dim=1).values.view(b, 1, 1, 1)
    hi = flat.max(dim=1).values.view(b, 1, 1, 1)
    span = (hi - lo).clamp_min(1e-6)
    samples = (reduced - lo) / span * MAX_SAMPLE
    samples = samples + (torch.round(samples) - samples).detach()
    samples = samples + torch.randn_like(samples) * noise_std.view(b, 1, 1, 1)
    return samples / MAX_SAMPLE * span + lo
