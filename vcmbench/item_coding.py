"""Coding one work item, whatever it is: its frames through the front, every missing (codec, rate)
and the back, each stage timed; a failure costs its item and rate point only.

A work item is a sequence of frames, and an image is a one-frame sequence: one loop codes both.
The sender side loads each frame once and runs the front on it once for all points, handing it
to one encoder per (codec, rate) (`open_sequence`: a codec's own sequence encoder, the framewise
adapter for intra-only codecs; an image item gets the codec's one-shot payload, so its bytes are
what the codec writes for one image, with no sequence container). The receiver side then takes
the frames again in order: each point's decoder yields its next frame, the back runs on it, and
the frame's results (detections, masks, image and task fidelity) join the point's record.

The runner does not know codec kinds: a codec takes what it declares of the item
(`transmit_encode`) and says what reached the receiver (`transmit_decode`, a `Received`):
features go to the back; an image without features goes through the whole network first
(remote inference: front_s / back_s are then the receiver's times on the decoded image).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from vcmbench.codecs.base import Codec, RatePoint
from vcmbench.codecs.sequence import (
    SequenceEncoder,
    SequenceInfo,
    decode_sequence,
    needs_sequence_range,
    open_sequence,
)
from vcmbench.datasets.base import Dataset, ImageRecord, Sample
from vcmbench.datasets.sequences import SequenceRecord
from vcmbench.datasets.shards import instantiate_whole
from vcmbench.errors import ConfigError, MissingDependencyError, PayloadError
from vcmbench.jobs import CodecJob, build_jobs
from vcmbench.metrics.fidelity import fidelity, image_fidelity
from vcmbench.records import Record, encode_embeddings, encode_masks, encode_semantic
from vcmbench.settings import RunSettings
from vcmbench.types import Detections, Features, FrontOutput, ImageMeta, feature_digest, feature_names
from vcmbench.vision.base import SplitDetector

log = logging.getLogger("vcmbench.run")  # the sweep's log, as run.py's

#: what stops a sweep instead of costing one item: the same for every item (docs/design.md)
STOPS_THE_SWEEP = (ConfigError, MissingDependencyError)


def to_rows(dets: Detections, detector: SplitDetector) -> list[list[float]]:
    """Detections -> [x, y, w, h, score, category_id] rows at full float precision."""
    b = dets.boxes.double()
    xywh = torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], dim=1).tolist()
    cats = detector.to_category_id(dets.labels)
    return [[*box, float(s), float(c)] for box, s, c in zip(xywh, dets.scores.double().tolist(), cats)]


class OneImageEncoder(SequenceEncoder):
    """An image item's encoder: the codec's own one-shot payload (`transmit_encode`)."""

    def __init__(self, codec: Codec, rate: RatePoint):
        self.codec, self.rate, self.payload = codec, rate, b""

    def add(self, image: torch.Tensor, front: FrontOutput) -> None:
        self.payload = self.codec.transmit_encode(image, front, self.rate)

    def finish(self) -> bytes:
        return self.payload


def one_image_decode(codec: Codec, payload: bytes, metas: list[ImageMeta]) -> Iterator:
    """The inverse of OneImageEncoder: what reached the receiver of the one frame."""
    yield codec.transmit_decode(payload, metas[0])


@dataclass
class ItemFrames:
    """A work item seen as frames: an image (one frame, coded with one-shot payloads) or a sequence."""

    item: ImageRecord | SequenceRecord
    dataset: Dataset

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.item, SequenceRecord)

    @property
    def count(self) -> int:
        return len(self.item.frames) if self.is_sequence else 1

    def samples(self) -> Iterator[Sample]:
        """The frames in order, loaded one at a time."""
        if self.is_sequence:
            yield from self.dataset.frames(self.item)
        else:
            yield self.dataset.load(self.item)

    def open(self, codec: Codec, rate: RatePoint, info: SequenceInfo) -> SequenceEncoder:
        return open_sequence(codec, rate, info) if self.is_sequence else OneImageEncoder(codec, rate)

    def decode(self, codec: Codec, payload: bytes, metas: list[ImageMeta]) -> Iterator:
        return decode_sequence(codec, payload, metas) if self.is_sequence else one_image_decode(codec, payload, metas)


@dataclass
class Point:
    """One (codec, rate point) of an item being coded: its encoder, payload and failure on the sender
    side; its decoder, clock readings and per-frame results on the receiver side."""

    job: CodecJob
    rate: RatePoint
    encoder: SequenceEncoder | None = None
    payload: bytes = b""
    enc_s: float = 0.0
    failure: str = ""  # the sender side's: no payload
    decoder: Iterator | None = None
    error: Exception | None = None  # the receiver side's: decode_failed
    dec_s: float = 0.0
    front_s: float = 0.0  # the receiver's front, on an image the codec carried
    back_s: float = 0.0
    rows: list[list[list[float]]] = field(default_factory=list)
    masks: list[list[str]] = field(default_factory=list)
    mask_size: list[int] = field(default_factory=list)
    keypoints: list[list[list[float]]] = field(default_factory=list)  # per frame, per detection: x, y, v, ...
    semantic: list[str] = field(default_factory=list)  # per frame: the stored semantic map (records.encode_semantic)
    embeddings: list[str] = field(default_factory=list)  # per frame: the stored embeddings (records.encode_embeddings)
    layers: dict[str, int] = field(default_factory=dict)
    layer_s: dict[str, float] = field(default_factory=dict)
    figures: list[dict[str, float]] = field(default_factory=list)  # per frame: image and task fidelity
    decoded: object = None  # a running hash of the features the back ran on

    @property
    def codec(self) -> Codec:
        return self.job.codec

    @property
    def live(self) -> bool:
        return not self.failure and self.error is None

    def run(self, step: Callable[[], object]) -> None:
        """One timed encoder step; a failure costs this point only (see timed_encode)."""
        if self.failure:
            return
        _, seconds, failure = timed_encode(lambda: step() or b"")
        self.enc_s += seconds
        if failure:
            self.failure = failure
            if self.encoder is not None:
                self.encoder.abort()


def timed_encode(encode: Callable[[], bytes]) -> tuple[bytes, float, str]:
    """Run and time one encode step: (payload, seconds, "") or (b"", seconds, what went wrong).

    An encoder that fails on one item (an external process that crashes, a shape it cannot take)
    costs that item and rate point only: the record says `encode_failed` and the sweep goes on.
    Setting and installation errors are the same for every item, so they still stop the sweep.
    """
    t0 = time.perf_counter()
    try:
        return encode(), time.perf_counter() - t0, ""
    except STOPS_THE_SWEEP:
        raise
    except Exception as exc:  # noqa: BLE001 - any encoder failure is recorded, not fatal
        return b"", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"


class ItemCoder:
    """Everything one process needs to code work items: the dataset, the detector, the codecs.

    The sweep's main process uses one directly (`workers: 1`); with more workers each worker
    process builds its own from the same config, so no model or codec state crosses processes
    and every worker computes exactly what a serial run would.
    """

    def __init__(
        self,
        cfg: DictConfig,
        jobs: list[CodecJob] | None = None,
        dataset: Dataset | None = None,
        detector: SplitDetector | None = None,
    ):
        # the whole set: a shard's items are picked by the sweep, any item loads here
        self.dataset: Dataset = dataset if dataset is not None else instantiate_whole(cfg.dataset)[0]
        self.detector: SplitDetector = detector if detector is not None else instantiate(cfg.model)
        self.jobs = jobs if jobs is not None else build_jobs(cfg)
        self.fidelity = RunSettings.from_config(cfg).fidelity
        self.workers = 1
        # the timing pass's mode (vcmbench.timing_pass): decode each frame, but run no network on it
        self.codec_times_only = False

    def code(self, item: ImageRecord | SequenceRecord, todo: list[tuple[int, int]]) -> Iterator[Record]:
        """The records of one work item at the (job index, rate index) points still missing.

        Sender side: frames are loaded and run through the front one at a time, each frame going to
        every point's encoder (a running encoder process for inter-coded codecs), so the front runs
        once per frame for all points and no frame's features outlive its turn. Codecs that quantise
        with a sequence's range get it from a first pass of the front (`range_pass_s` per frame).
        Receiver side: the frames are taken again in order and each point decodes its next frame
        (see `_receive`). enc_s / dec_s / front_s / back_s are per frame.
        """
        frames = ItemFrames(item, self.dataset)
        points = [Point(self.jobs[j], self.jobs[j].codec.rates[r]) for j, r in todo]
        ranges, range_s = None, 0.0
        if frames.is_sequence and any(needs_sequence_range(p.codec) for p in points):
            ranges, range_s = self._sequence_ranges(frames)
        info = SequenceInfo(frames.count, getattr(item, "fps", 0.0), ranges)
        first, metas, front_s, digest = self._send(frames, points, info)
        n = frames.count
        for p in self._receive(frames, points, metas, first):  # each point as soon as it is done
            rec = Record(
                image_id=item.image_id,
                codec=p.codec.name,
                rate=p.rate.label,
                setup=p.job.setup,
                bytes=len(p.payload),
                pixels=first.sample.pixels if not frames.is_sequence else item.pixels,
                enc_s=p.enc_s / n,
                dec_s=p.dec_s / n,
                front_s=(p.front_s if p.front_s else front_s if "features" in p.codec.takes else 0.0) / n,
                back_s=p.back_s / n,
                workers=self.workers,
                feature_hash=digest.hexdigest() if digest is not None else "",
            )
            if frames.is_sequence:
                rec.frames, rec.frame_ids = n, list(item.frame_ids)
                if needs_sequence_range(p.codec):
                    rec.extra["range_pass_s"] = range_s / n
            yield self._finish(rec, p, frames)

    def _send(self, frames: ItemFrames, points: list[Point], info: SequenceInfo):
        """The sender side: (the first frame's sample, front and pristine output, every frame's meta,
        the front's seconds, the running hash of the front's features)."""
        metas: list[ImageMeta] = []
        front_s = 0.0
        digest = None
        first: FrameView | None = None
        try:
            for p in points:
                p.codec.prepare(p.rate)  # one-time loading stays out of enc_s
                p.run(lambda p=p: setattr(p, "encoder", frames.open(p.codec, p.rate, info)))
            for sample in frames.samples():
                t0 = time.perf_counter()
                front = self.detector.front(sample.image)
                front_s += time.perf_counter() - t0
                metas.append(front.meta)
                digest = feature_digest(front.features, digest)
                if frames.count == 1:  # kept for the receiver side of a one-frame item (an image)
                    first = FrameView(sample, front, self._pristine(front))
                for p in points:
                    p.run(lambda p=p, image=sample.image, front=front: p.encoder.add(image, front))
            for p in points:
                p.run(lambda p=p: setattr(p, "payload", p.encoder.finish()))
        except BaseException:
            for p in points:
                if p.encoder is not None:
                    p.encoder.abort()
            raise
        return first, metas, front_s, digest

    def _pristine(self, front: FrontOutput) -> Detections | None:
        """The back's output on untouched features: the reference of the task-fidelity figures."""
        return self.detector.back(front.features, front.meta) if self.fidelity else None

    def _views(self, frames: ItemFrames) -> Iterator[FrameView]:
        """A sequence's frames again for the receiver side, reloaded, with the front and the pristine
        back run again only for the fidelity figures (its frames' features are not kept between the
        two sides; a one-frame item's receiver side uses the sender's view instead)."""
        for sample in frames.samples():
            front = self.detector.front(sample.image) if self.fidelity else None
            yield FrameView(sample, front, self._pristine(front) if front is not None else None)

    def _receive(
        self, frames: ItemFrames, points: list[Point], metas: list[ImageMeta], first: FrameView
    ) -> Iterator[Point]:
        """The receiver side, frame by frame: each live point decodes its next frame and the back runs
        on it; whatever goes wrong for a point (a payload that does not decode, a shape the back
        rejects, the back itself) is that point's `decode_failed` and the others go on. Points are
        yielded as they are done, so their records are written at once: an image's one by one (its
        frame is the last), a sequence's after its last frame."""
        if frames.count == 1:
            for p in points:
                self._decode_frames(frames, [p], metas, iter([first]))
                yield p
            return
        self._decode_frames(frames, points, metas, self._views(frames))
        yield from points

    def _decode_frames(
        self, frames: ItemFrames, points: list[Point], metas: list[ImageMeta], views: Iterator[FrameView]
    ) -> None:
        """`points` decoded in step over the frames `views` gives, then each decoder's end check."""
        for p in points:
            if p.live:
                p.decoder = frames.decode(p.codec, p.payload, metas)
        try:
            for k, (view, meta) in enumerate(zip(views, metas)):
                for p in points:
                    if p.live:
                        self._guarded(p, lambda p=p, k=k, view=view, meta=meta: self._frame(p, k, view, meta, metas))
            for p in points:  # the decoder's end check: nothing after the last frame
                if p.live:
                    self._guarded(p, lambda p=p: self._end_check(p, len(metas)))
        finally:
            for p in points:
                if p.decoder is not None:
                    p.decoder.close()

    @staticmethod
    def _guarded(p: Point, step: Callable[[], None]) -> None:
        try:
            step()
        except STOPS_THE_SWEEP:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the receiver side meets costs this point only
            p.error = exc

    def _frame(self, p: Point, k: int, view: FrameView, meta: ImageMeta, metas: list[ImageMeta]) -> None:
        """Frame k of point p: decode (timed), the whole network on a carried image, the back, and the
        frame's figures."""
        t0 = time.perf_counter()
        try:
            received = next(p.decoder, None)
        finally:
            p.dec_s += time.perf_counter() - t0
        if received is None:
            raise PayloadError(f"{p.codec.name}: the payload decoded to {k} frames, the item has {len(metas)}")
        if self.codec_times_only:
            return
        features = received.features
        if features is None:  # the image was carried: the receiver runs the whole network on it
            t0 = time.perf_counter()
            at_receiver = self.detector.front(received.image)
            p.front_s += time.perf_counter() - t0
            features, meta = at_receiver.features, at_receiver.meta
        t0 = time.perf_counter()
        dets = self.detector.back(features, meta)
        p.back_s += time.perf_counter() - t0
        p.rows.append(to_rows(dets, self.detector))
        if dets.masks is not None:
            p.masks.append(encode_masks(dets.masks.cpu().numpy()))
            p.mask_size = [int(v) for v in dets.masks.shape[-2:]]
        if dets.keypoints is not None:
            p.keypoints.append(dets.keypoints.double().reshape(len(dets), -1).tolist())
        if dets.semantic is not None:
            p.semantic.append(encode_semantic(dets.semantic))
        if dets.embeddings is not None:
            p.embeddings.append(encode_embeddings(dets.embeddings))
        p.decoded = feature_digest(features, p.decoded)
        for layer, size in received.layers.items():
            p.layers[layer] = p.layers.get(layer, 0) + size
        for layer, seconds in received.layer_seconds.items():
            p.layer_s[layer] = p.layer_s.get(layer, 0.0) + seconds
        figures: dict[str, float] = {}
        if received.image is not None:
            figures.update(image_fidelity(view.sample.image, received.image))
        if view.pristine is not None and _same_shapes(features, view.front.features):
            figures.update(fidelity(view.front.features, features, view.pristine, dets))
        p.figures.append(figures)

    @staticmethod
    def _end_check(p: Point, n: int) -> None:
        t0 = time.perf_counter()
        try:
            for _ in p.decoder:
                raise PayloadError(f"{p.codec.name}: the payload holds more frames than the item's {n}")
        finally:
            p.dec_s += time.perf_counter() - t0

    def _finish(self, rec: Record, p: Point, frames: ItemFrames) -> Record:
        """The point's record: its results, or what failed (nothing of a failed point counts)."""
        n = frames.count
        if p.failure:
            rec.status, rec.error = "encode_failed", p.failure
            log.warning("item %s, %s %s: encode failed: %s", rec.image_id, rec.codec, rec.rate, p.failure)
        elif p.error is not None:
            rec.status = "decode_failed"
            rec.error = str(p.error) if isinstance(p.error, PayloadError) else f"{type(p.error).__name__}: {p.error}"
            log.warning("item %s, %s %s: %s", rec.image_id, rec.codec, rec.rate, rec.error)
        if rec.status != "ok":
            if frames.is_sequence:
                rec.frame_detections = [[] for _ in range(n)]
            return rec
        rec.decoded_hash = p.decoded.hexdigest() if p.decoded is not None else ""
        rec.layer_bytes = dict(p.layers)
        rec.extra.update({f"dec_{layer}_s": s / n for layer, s in p.layer_s.items()})
        rec.extra.update(_mean_figures(p.figures))
        if frames.is_sequence:
            rec.frame_detections = p.rows
            rec.frame_masks = p.masks
            rec.frame_keypoints = p.keypoints
            rec.frame_semantic = p.semantic
            rec.frame_embeddings = p.embeddings
        else:
            rec.detections = p.rows[0] if p.rows else []  # none in the timing pass's mode
            rec.masks = p.masks[0] if p.masks else []
            rec.keypoints = p.keypoints[0] if p.keypoints else []
            rec.semantic = p.semantic[0] if p.semantic else ""
            rec.embeddings = p.embeddings[0] if p.embeddings else ""
        rec.mask_size = p.mask_size if p.masks else []
        return rec

    def _sequence_ranges(self, frames: ItemFrames) -> tuple[tuple[tuple[float, float], ...], float]:
        """Each level's (min, max) over the sequence's frames: a pass of the front, one frame at a time."""
        t0 = time.perf_counter()
        lo: list[float] = []
        hi: list[float] = []
        for sample in frames.samples():
            feats = self.detector.front(sample.image).features
            names = feature_names(feats)
            if not lo:
                lo, hi = [float("inf")] * len(names), [float("-inf")] * len(names)
            for i, k in enumerate(names):
                lo[i], hi[i] = min(lo[i], float(feats[k].min())), max(hi[i], float(feats[k].max()))
        return tuple(zip(lo, hi)), time.perf_counter() - t0


@dataclass
class FrameView:
    """One frame as the receiver side's figures need it: the input, the front's output on it and the
    back's output on that (None where fidelity is off)."""

    sample: Sample
    front: FrontOutput | None
    pristine: Detections | None


def _same_shapes(decoded: Features, sent: Features) -> bool:
    """Whether the receiver got the tensors the front sent, by name and shape (an image codec's
    receiver runs the front on a decoded image of another size: no feature fidelity then)."""
    return set(decoded) == set(sent) and all(decoded[k].shape == sent[k].shape for k in sent)


def _mean_figures(per_frame: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's mean over the frames that have it (an image item: its one frame's)."""
    keys = sorted({k for f in per_frame for k in f})
    return {k: sum(f[k] for f in per_frame if k in f) / sum(k in f for f in per_frame) for k in keys}
