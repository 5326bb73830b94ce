"""`codec=hybrid_vvc`: learned feature reduction + a VVC inner codec + learned restoration (FCTM-style).

The FCM test model's architecture: a reduction network fuses P2..P5 into one small tensor, the
tensor is quantised to 10 bits with its own min/max and its channels are tiled into one monochrome
frame per item, a real VVC encoder codes the frames, and a restoration network rebuilds P2..P5 from
the decoded samples. The rate points are the inner codec's QPs: one pair of networks serves all.

Sequences: one range for the whole sequence (the reduced tensors of all its frames, which the
encoder keeps: a few KB each), and the packed frames go through the inner codec as one video with
the configured prediction structure (`sequence_gop: low_delay`, the CTC's intra period), so VVC's
inter prediction works on the reduced features.

Payload after the 30-byte container header (`vcmbench.codecs.base`; a sequence's has version 2 and
the frame count as a uvarint after it):

    model id  4 bytes   first 4 bytes of the checkpoint's fingerprint (decoders refuse another model)
    range     2 x f32   the item's (sequence's) min and max of the reduced tensor
    coding    u8        the inner bitstream's family id (1 VVC): VTM and libvvenc streams both decode
    stream    the rest  the inner codec's bitstream (parameter sets included: every byte counted)

The reduced tensor's shape follows from the shape table and the checkpoint (channels, grid level),
so it is not written.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from vcmbench.codecs.backends.codec import ExternalBackend, build_backend
from vcmbench.codecs.base import (
    FeatureCodec,
    RatePoint,
    Received,
    register_tags,
    require_pyramid,
)
from vcmbench.codecs.hybrid.network import ARCH, HybridNet
from vcmbench.codecs.hybrid.packing import BITS, frame_size, pack, unpack, value_range
from vcmbench.codecs.learned.checkpoint import load_checkpoint
from vcmbench.codecs.learned.models import bounded_levels, pad_levels, padded_p2
from vcmbench.codecs.sequence import (
    SequenceEncoder,
    SequenceInfo,
    check_gop_settings,
    ctc_gop,
    decoded_frames,
    frame_shapes,
    read_sequence_head,
    sequence_head,
)
from vcmbench.codecs.tiling import Reader, check_plausible
from vcmbench.errors import CheckpointError, ConfigError, ExternalCodecError, PayloadError, ShapeError
from vcmbench.paths import display_path, resolve_data_path
from vcmbench.thread_budget import torch_threads as _threads
from vcmbench.types import LEVELS, Features, FrontOutput, ImageMeta

TAG = b"HYBV"
register_tags(f"{__name__}.HybridCodec", TAG)
_FIXED = 4 + 8 + 1  # model id, range, coding byte


class HybridCodec(FeatureCodec):
    """Reduction network + packing + an inner frame codec (a VVC back-end) + restoration network.

    Args:
        name: the codec's name (its yaml key).
        checkpoint: the networks' checkpoint file (relative: working directory, then the package).
        backend: the inner codec (a back-end node with `_partial_: true`, or a built back-end).
        rates: the inner codec's QPs.
        sequence_gop / intra_period: how a sequence's frames are coded (as the frame codecs').
        threads: torch threads inside encode and decode (fixed, so no number depends on the caller).
        net, training: the networks' settings and the inner-codec stand-in (training only: a
            checkpoint carries its own settings).
    """

    knob = "qp"
    tag = TAG
    version = 1
    # the networks' MACs are counted (kmac_enc / kmac_dec); the inner codec runs outside torch and adds
    # only time, as the anchors' encoders do
    counts_macs = True

    def __init__(
        self,
        name: str,
        checkpoint: str,
        backend: ExternalBackend | Callable[..., ExternalBackend],
        rates: Sequence[object] | None = None,
        sequence_gop: str = "low_delay",
        intra_period: int | str = "auto",
        threads: int | None = 1,
        net: dict | None = None,
        training: dict | None = None,
    ):
        setting = f"codec.{name}"
        check_gop_settings(setting, sequence_gop, intra_period)
        self.sequence_gop, self.intra_period = sequence_gop, intra_period
        self.threads = int(threads) if threads else None
        self.backend = build_backend(backend, name, f"{setting}.backend")
        self.backend.validate("qp", bitdepth=BITS)
        self.checkpoint = resolve_data_path(str(checkpoint))
        if not self.checkpoint.is_file():
            raise CheckpointError(
                f"{setting}.checkpoint={checkpoint}: no such file ({self.checkpoint}). Train one with "
                f"`vcmbench train codec={name} copy_to=<folder>` and point codec.{name}.checkpoint at it"
            )
        super().__init__(name, rates)
        for rp in self.rates:
            self.backend.validate("qp", rp.value, setting=f"{setting}.rates")
        self._net: tuple[HybridNet, dict] | None = None

    def describe_encoder(self) -> str:
        return f"hybrid {self.checkpoint.name} + {self.backend.describe()}"

    def files(self) -> list[Path]:
        return [self.checkpoint]

    def trained_on(self) -> list[dict]:
        from vcmbench.codecs.learned.trained_on import read_checkpoint_info, trained_on_of

        info = read_checkpoint_info(self.checkpoint, lambda p: load_checkpoint(p)[1])
        return [trained_on_of(info) | {"source": display_path(self.checkpoint)}]

    def net(self) -> tuple[HybridNet, dict]:
        if self._net is None:
            net, meta = load_checkpoint(self.checkpoint)
            if meta.get("arch") != ARCH:
                raise CheckpointError(f"{self.checkpoint}: a {meta.get('arch')} checkpoint, not a {ARCH} one")
            self._net = (net, meta)
        return self._net

    def prepare(self, rate: RatePoint) -> None:
        self.net()

    # -- the networks ------------------------------------------------------------------------------
    def reduced_shape(self, shapes) -> tuple[int, int, int]:
        """(channels, H, W) of the reduced tensor for features of these shapes (P2 padded to the net's stride)."""
        net, _ = self.net()
        hp, wp = padded_p2(shapes[0][1], shapes[0][2], net.total_stride)
        return net.channels, hp // net.grid_stride, wp // net.grid_stride

    def reduce(self, features: Features) -> np.ndarray:
        require_pyramid(features, self.name)
        net, _ = self.net()
        shapes = [tuple(int(v) for v in features[k].shape) for k in LEVELS]
        if any(s[0] != net.N for s in shapes):
            raise ConfigError(
                f"codec {self.name}: features have {[s[0] for s in shapes]} channels; its networks reduce "
                f"{net.N}-channel FPN levels (train a checkpoint for this front: `vcmbench train codec={self.name} "
                "model=<your model>`)"
            )
        levels = [features[k].detach().to("cpu", torch.float32).unsqueeze(0) for k in LEVELS]
        with _threads(self.threads), torch.no_grad():
            padded, _ = pad_levels(levels, net.total_stride)
            return net.reduce(padded)[0].contiguous().numpy()

    def restore(self, reduced: np.ndarray, shapes) -> Features:
        net, _ = self.net()
        with _threads(self.threads), torch.no_grad():
            out = net.restore(torch.from_numpy(reduced).unsqueeze(0))
        cropped = [o[0, :, :h, :w] for o, (_c, h, w) in zip(out, shapes)]
        return dict(zip(LEVELS, bounded_levels(cropped, net.feat_absmax), strict=True))

    def _head(self, lo: float, hi: float) -> bytes:
        _, meta = self.net()
        return bytes.fromhex(meta["model_id"]) + struct.pack(">ff", lo, hi) + bytes([self.backend.family_id])

    def _read_head(self, r: Reader) -> tuple[float, float]:
        _, meta = self.net()
        model_id = r.take(4).hex()
        if model_id != meta["model_id"]:
            raise PayloadError(
                f"{self.name}: payload made by model {model_id}, this decoder's networks are model "
                f"{meta['model_id']} ({self.checkpoint}); it was encoded with another (retrained?) checkpoint"
            )
        lo, hi = struct.unpack(">ff", r.take(8))
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise PayloadError(f"{self.name}: payload range ({lo}, {hi}) is not a range (corrupt header)")
        family = r.u8()
        if family != self.backend.family_id:
            raise PayloadError(
                f"{self.name}: payload holds an inner bitstream of family {family}, this decoder reads "
                f"{self.backend.family} ({self.backend.family_id})"
            )
        return lo, hi

    # -- one item ----------------------------------------------------------------------------------
    def _encode_body(self, features: Features, rate: RatePoint, shapes) -> bytes:
        reduced = self.reduce(features)
        lo, hi = value_range(reduced)
        frame = pack(reduced, lo, hi)
        stream = self.backend.encode(frame[None], BITS, "qp", rate.value, intra=True)
        return self._head(lo, hi) + stream

    def _decode_body(self, body, shapes) -> list[torch.Tensor]:
        if len(shapes) != len(LEVELS):
            raise PayloadError(f"{self.name}: the payload holds {len(shapes)} tensors; this codec codes p2..p5")
        check_plausible(shapes, self.name)
        r = Reader(body, self.name)
        lo, hi = self._read_head(r)
        c, h, w = self.reduced_shape(shapes)
        try:
            frame = self.backend.decode(r.rest(), (1, *frame_size(c, h, w)), BITS)[0]
        except ExternalCodecError as exc:
            raise PayloadError(f"{self.name}: the {self.backend.family} bitstream does not decode: {exc}") from None
        return list(self.restore(unpack(frame, c, h, w, lo, hi), shapes).values())

    # -- sequences ---------------------------------------------------------------------------------
    def sequence_encoder(self, rate: RatePoint, info: SequenceInfo) -> SequenceEncoder:
        return HybridSequenceEncoder(self, rate, info)

    def sequence_decode(self, payload: bytes, metas: Sequence[ImageMeta]) -> Iterator[Received]:
        """The frames of a sequence payload, decoded and restored one at a time."""
        names, shapes, r = read_sequence_head(bytes(payload), self.tag, self.name, len(metas))
        if names != LEVELS:
            raise PayloadError(f"{self.name}: the payload holds tensors {list(names)}; this codec codes p2..p5")
        frames = len(metas)
        lo, hi = self._read_head(r)
        c, h, w = self.reduced_shape(shapes)
        fh, fw = frame_size(c, h, w)
        decoder = self.backend.open_decoder(r.rest(), frames, fh, fw, BITS)
        for (frame,) in decoded_frames([decoder], [1], frames, self.name, self.backend.family):
            yield Received(features=self.restore(unpack(frame[0], c, h, w, lo, hi), shapes))


class HybridSequenceEncoder(SequenceEncoder):
    """A sequence through the hybrid codec: each frame reduced as it arrives (only the small reduced
    tensors are kept), then at `finish` one range for all of them and one inter-coded video."""

    def __init__(self, codec: HybridCodec, rate: RatePoint, info: SequenceInfo):
        self.codec, self.rate, self.info = codec, rate, info
        self.reduced: list[np.ndarray] = []
        self.shapes: list[tuple[int, int, int]] = []

    def add(self, image: torch.Tensor, front: FrontOutput) -> None:
        self.shapes = frame_shapes(front.features, self.shapes, self.codec.name)
        self.reduced.append(self.codec.reduce(front.features))

    def finish(self) -> bytes:
        if not self.reduced:
            raise ShapeError(f"codec.{self.codec.name}: a sequence without frames")
        c = self.codec
        lo, hi = value_range(self.reduced)
        n = len(self.reduced)
        fh, fw = frame_size(*self.reduced[0].shape)
        gop = ctc_gop(c.sequence_gop, c.intra_period, self.info.fps)
        sink = c.backend.open_encoder(fh, fw, n, BITS, "qp", self.rate.value, gop)
        try:
            for reduced in self.reduced:
                sink.write(pack(reduced, lo, hi)[None])
            stream = sink.finish()
        except BaseException:
            sink.abort()
            raise
        return sequence_head(c.tag, self.shapes, n) + c._head(lo, hi) + stream
