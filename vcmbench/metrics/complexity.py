"""Complexity as the MPEG platform reports it: thousands of multiply-accumulates per input pixel.

Counted, not estimated: `torch.utils.flop_counter.FlopCounterMode` sees every convolution and
matrix product torch runs (a MAC is two of its FLOPs), so the count is that of the real code
path: the front on the image, the learned encoder and decoder on its features (with the
float64 hyper-decoder the range coder needs), the back on the decoded features. Element-wise
work (activations, GDN's square roots), the range coder and custom ops without a FLOP formula
(RoI Align) are not multiplies it counts. An external encoder is outside torch, so for it only
time is measured: its kMAC columns are empty (NaN), never zero.

The count is taken once per run on the set's first image (a convolutional network does the same
work per pixel on every image of a size; the back's box head works per proposal), in a pass of
its own after the timed sweep, so counting never slows a timed stage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import pandas as pd

from vcmbench.codecs.base import Codec
from vcmbench.vision.base import SplitDetector

T = TypeVar("T")
COMPLEXITY_COLUMNS = ["kmac_front", "kmac_enc", "kmac_dec", "kmac_back"]


def count_macs(fn: Callable[..., T], *args) -> tuple[T, int]:
    """Run `fn(*args)` once; (its result, the multiply-accumulates torch counted while it ran)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        out = fn(*args)
    return out, int(counter.get_total_flops()) // 2


def complexity_table(detector: SplitDetector, codecs: Sequence[Codec], sample) -> pd.DataFrame:
    """kMAC per input pixel of front, encoder, decoder and back, per (codec, rate), on `sample`.

    A learned codec (`counts_macs`) is run again, encode then decode, and the back is counted on
    what it decoded. Any other codec is not rerun (an external encoder is slow, and its work is
    not torch's): its front and back figures are those of the same networks on the uncompressed
    features, and its encoder and decoder columns are NaN.
    """
    per_kpx = 1e3 * float(sample.pixels)
    front, front_macs = count_macs(detector.front, sample.image)
    _, pristine_back_macs = count_macs(detector.back, front.features, front.meta)
    rows = []
    for codec in codecs:
        for rate in codec.rates:
            enc_macs = dec_macs = float("nan")
            back_macs = pristine_back_macs
            if codec.counts_macs:
                payload, enc_macs = count_macs(codec.transmit_encode, sample.image, front, rate)
                received, dec_macs = count_macs(codec.transmit_decode, payload, front.meta)
                _, back_macs = count_macs(detector.back, received.features, front.meta)
            rows.append(
                {
                    "codec": codec.name,
                    "rate": rate.label,
                    "kmac_front": front_macs / per_kpx,
                    "kmac_enc": enc_macs / per_kpx,
                    "kmac_dec": dec_macs / per_kpx,
                    "kmac_back": back_macs / per_kpx,
                }
            )
    return pd.DataFrame(rows, columns=["codec", "rate", *COMPLEXITY_COLUMNS])
