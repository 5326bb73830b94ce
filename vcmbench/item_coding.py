"""Coding one work item: an image, or a sequence streamed frame by frame, through the front, every
missing (codec, rate) and the back, each stage timed; a failure costs its item only.

The runner does not know codec kinds: a codec takes what it declares of the item
(`transmit_encode`) and says what reached the receiver (`transmit_decode`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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
from vcmbench.datasets.base import Dataset, ImageRecord
from vcmbench.datasets.sequences import SequenceRecord
from vcmbench.datasets.shards import instantiate_whole
from vcmbench.errors import ConfigError, MissingDependencyError, PayloadError
from vcmbench.jobs import CodecJob, build_jobs
from vcmbench.metrics.fidelity import fidelity, image_fidelity
from vcmbench.records import Record, encode_masks
from vcmbench.settings import as_bool
from vcmbench.types import LEVELS, Detections, FrontOutput, ImageMeta, feature_digest
from vcmbench.vision.base import SplitDetector

log = logging.getLogger("vcmbench.run")  # the sweep's log, as run.py's


def to_rows(dets: Detections, detector: SplitDetector) -> list[list[float]]:
    """Detections -> [x, y, w, h, score, category_id] rows at full float precision."""
    b = dets.boxes.double()
    xywh = torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], dim=1).tolist()
    cats = detector.to_category_id(dets.labels)
    return [[*box, float(s), float(c)] for box, s, c in zip(xywh, dets.scores.double().tolist(), cats)]


def code_one(
    codec: Codec,
    rate: RatePoint,
    front: FrontOutput,
    detector: SplitDetector,
    sample,
    front_s: float,
    setup: str,
    pristine: Detections | None = None,
    feature_hash: str = "",
) -> Record:
    """One work item at one rate point through the codec and the network, every stage timed.

    The runner does not know codec kinds (docs/design.md): the codec takes what it declares of the
    item (`transmit_encode`) and says what reached the receiver (`transmit_decode`, a
    `Received`). Features go to the back; an image without features goes through the whole
    network first (remote inference: front_s / back_s are then the receiver's times on the
    decoded image); a viewable image adds image fidelity; layers add their bytes and decode
    seconds. With `pristine` (the back's output on untouched features) the record also gets the
    task-fidelity figures (feature MSE/PSNR per level, detection agreement): `fid_*`.
    """
    codec.prepare(rate)  # one-time loading stays out of enc_s
    payload, enc_s, failure = _timed_encode(lambda: codec.transmit_encode(sample.image, front, rate))
    rec = Record(
        image_id=sample.image_id,
        codec=codec.name,
        rate=rate.label,
        setup=setup,
        bytes=len(payload),
        pixels=sample.pixels,
        enc_s=enc_s,
        dec_s=0.0,
        front_s=front_s if "features" in codec.takes else 0.0,
        back_s=0.0,
        feature_hash=feature_hash,
    )
    if failure:
        return _encode_failed(rec, failure)
    try:
        _receive(rec, codec, payload, front, detector, sample, pristine)
    except (ConfigError, MissingDependencyError):
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the receiver side meets costs this item only
        _decode_failed(rec, exc)
    return rec


def _decode_failed(rec: Record, exc: Exception) -> None:
    """Record a receiver-side failure (a payload that does not decode, a shape the back rejects,
    the back itself) on the item: `decode_failed` with the one-line reason."""
    rec.status = "decode_failed"
    rec.error = str(exc) if isinstance(exc, PayloadError) else f"{type(exc).__name__}: {exc}"
    rec.detections, rec.masks, rec.mask_size, rec.decoded_hash = [], [], [], ""  # nothing of it counts
    log.warning("item %s, %s %s: %s", rec.image_id, rec.codec, rec.rate, rec.error)


def _receive(
    rec: Record,
    codec: Codec,
    payload: bytes,
    front: FrontOutput,
    detector: SplitDetector,
    sample,
    pristine: Detections | None,
) -> None:
    """The receiver side of `code_one`: decode, (the whole network on a carried image,) the back,
    the fidelity figures, each timed into `rec`."""
    t0 = time.perf_counter()
    try:
        received = codec.transmit_decode(payload, front.meta)
    finally:
        rec.dec_s = time.perf_counter() - t0
    features, meta = received.features, front.meta
    if features is None:  # the image was carried: the receiver runs the whole network on it
        t0 = time.perf_counter()
        at_receiver = detector.front(received.image)
        rec.front_s = time.perf_counter() - t0
        features, meta = at_receiver.features, at_receiver.meta
    t0 = time.perf_counter()
    dets = detector.back(features, meta)
    rec.back_s = time.perf_counter() - t0
    rec.detections = to_rows(dets, detector)
    if dets.masks is not None:
        rec.masks, rec.mask_size = encode_masks(dets.masks.cpu().numpy()), [int(v) for v in dets.masks.shape[-2:]]
    rec.decoded_hash = feature_digest(features).hexdigest()
    rec.layer_bytes = dict(received.layers)
    rec.extra = {f"dec_{layer}_s": s for layer, s in received.layer_seconds.items()}
    if received.image is not None:
        rec.extra.update(image_fidelity(sample.image, received.image))
    if pristine is not None and features[LEVELS[0]].shape == front.features[LEVELS[0]].shape:
        rec.extra.update(fidelity(front.features, features, pristine, dets))


def _timed_encode(encode: Callable[[], bytes]) -> tuple[bytes, float, str]:
    """Run and time one encode: (payload, seconds, "") or (b"", seconds, what went wrong).

    An encoder that fails on one image (an external process that crashes, a shape it cannot
    take) costs that image and rate point only: the record says `encode_failed` and the sweep
    goes on. Setting and installation errors are the same for every image, so they still stop
    the sweep with their message.
    """
    t0 = time.perf_counter()
    try:
        return encode(), time.perf_counter() - t0, ""
    except (ConfigError, MissingDependencyError):
        raise
    except Exception as exc:  # noqa: BLE001 - any encoder failure is recorded, not fatal
        return b"", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"


def _encode_failed(rec: Record, failure: str) -> Record:
    """A lost payload: no bytes were sent, so the image has no detections."""
    rec.status, rec.error = "encode_failed", failure
    log.warning("image %s, %s %s: encode failed: %s", rec.image_id, rec.codec, rec.rate, failure)
    return rec


class ItemCoder:
    """Everything one process needs to code work items: the dataset, the detector, the codecs.

    An item is an image (`code_image`) or a sequence (`code_sequence`: its frames streamed
    through the same front, codecs and back one at a time).

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
        self.fidelity = as_bool(cfg.get("fidelity", True), "fidelity")
        self.workers = 1

    def code(self, item: ImageRecord | SequenceRecord, todo: list[tuple[int, int]]) -> Iterator[Record]:
        """The records of one work item (an image or a sequence) at the points still missing."""
        if isinstance(item, SequenceRecord):
            yield from self.code_sequence(item, todo)
        else:
            yield from self.code_image(item, todo)

    def code_image(self, image: ImageRecord, todo: list[tuple[int, int]]) -> Iterator[Record]:
        """The records of one image at the (job index, rate index) points still missing.

        The front runs once for all of them (image-major), then each point is coded, decoded
        and run through the back. Records are yielded as each point finishes.
        """
        sample = self.dataset.load(image)
        t0 = time.perf_counter()
        front = self.detector.front(sample.image)
        front_s = time.perf_counter() - t0
        pristine = self.detector.back(front.features, front.meta) if self.fidelity else None
        digest = feature_digest(front.features).hexdigest()
        for j, r in todo:
            job = self.jobs[j]
            record = code_one(
                job.codec, job.codec.rates[r], front, self.detector, sample, front_s, job.setup, pristine, digest
            )
            record.workers = self.workers
            yield record

    def code_sequence(self, seq: SequenceRecord, todo: list[tuple[int, int]]) -> Iterator[Record]:
        """The records of one sequence at the points still missing, its frames streamed.

        Frames are loaded and run through the front one at a time; each frame goes to one
        sequence encoder per point (a running encoder process for inter-coded codecs), so the
        front runs once per frame for all points and no frame's features outlive its turn. Then
        each point's payload is decoded frame by frame and each frame goes through the back.
        Codecs that quantise with the sequence's range get it from a first pass of the front
        over the frames (its seconds per frame: `range_pass_s`). enc_s / dec_s are per frame:
        the seconds spent handing frames to the encoder and waiting for it to finish, and in
        taking decoded frames from the decoder (external encoders also work while the front
        runs on the next frame, so enc_s of an inter-coded codec is the wall time it added).
        """
        n = len(seq.frames)
        ranges, range_s = None, 0.0
        if any(needs_sequence_range(self.jobs[j].codec) for j, _ in todo):
            ranges, range_s = self._sequence_ranges(seq)
        info = SequenceInfo(n, seq.fps, ranges)
        points = [SequencePoint(self.jobs[j], self.jobs[j].codec.rates[r]) for j, r in todo]
        metas: list[ImageMeta] = []
        front_s = 0.0
        digest = None  # a running hash over the frames' features
        try:
            for p in points:
                p.job.codec.prepare(p.rate)  # one-time loading stays out of enc_s
                p.run(lambda p=p: setattr(p, "encoder", open_sequence(p.job.codec, p.rate, info)))
            for sample in self.dataset.frames(seq):
                t0 = time.perf_counter()
                front = self.detector.front(sample.image)
                front_s += time.perf_counter() - t0
                metas.append(front.meta)
                digest = feature_digest(front.features, digest)
                for p in points:
                    p.run(lambda p=p, image=sample.image, front=front: p.encoder.add(image, front))
            for p in points:
                p.run(lambda p=p: setattr(p, "payload", p.encoder.finish()))
        except BaseException:
            for p in points:
                if p.encoder is not None:
                    p.encoder.abort()
            raise
        for p in points:
            rec = Record(
                image_id=seq.sequence_id,
                codec=p.job.codec.name,
                rate=p.rate.label,
                setup=p.job.setup,
                bytes=len(p.payload),
                pixels=seq.pixels,
                enc_s=p.enc_s / n,
                dec_s=0.0,
                front_s=front_s / n if "features" in p.job.codec.takes else 0.0,
                back_s=0.0,
                frames=n,
                frame_ids=seq.frame_ids,
                workers=self.workers,
                feature_hash=digest.hexdigest() if digest is not None else "",
            )
            if needs_sequence_range(p.job.codec):
                rec.extra["range_pass_s"] = range_s / n
            if p.failure:
                rec.frame_detections = [[] for _ in range(n)]
                yield _encode_failed(rec, p.failure)
            else:
                yield self._decode_sequence(rec, p, metas)

    def _sequence_ranges(self, seq: SequenceRecord) -> tuple[tuple[tuple[float, float], ...], float]:
        """Each level's (min, max) over the sequence's frames: a pass of the front, one frame at a time."""
        t0 = time.perf_counter()
        lo = [float("inf")] * len(LEVELS)
        hi = [float("-inf")] * len(LEVELS)
        for sample in self.dataset.frames(seq):
            feats = self.detector.front(sample.image).features
            for i, k in enumerate(LEVELS):
                lo[i], hi[i] = min(lo[i], float(feats[k].min())), max(hi[i], float(feats[k].max()))
        return tuple(zip(lo, hi)), time.perf_counter() - t0

    def _decode_sequence(self, rec: Record, p: SequencePoint, metas: list[ImageMeta]) -> Record:
        """Decode one point's payload frame by frame through the back (or, for an image carried,
        the whole network); a payload that does not decode is the point's `decode_failed`."""
        frames = decode_sequence(p.job.codec, p.payload, metas)
        rows: list[list[list[float]]] = []
        dec_s = front_s = back_s = 0.0
        layers: dict[str, int] = {}
        decoded = None
        try:
            for meta in metas:
                t0 = time.perf_counter()
                received = next(frames, None)
                dec_s += time.perf_counter() - t0
                if received is None:
                    raise PayloadError(
                        f"{rec.codec}: the payload decoded to {len(rows)} frames, the sequence has {len(metas)}"
                    )
                features = received.features
                if features is None:
                    t0 = time.perf_counter()
                    at_receiver = self.detector.front(received.image)
                    front_s += time.perf_counter() - t0
                    features, meta = at_receiver.features, at_receiver.meta
                t0 = time.perf_counter()
                rows.append(to_rows(self.detector.back(features, meta), self.detector))
                back_s += time.perf_counter() - t0
                decoded = feature_digest(features, decoded)
                for layer, size in received.layers.items():
                    layers[layer] = layers.get(layer, 0) + size
            t0 = time.perf_counter()
            for _ in frames:  # the decoder's end check: nothing after the last frame
                raise PayloadError(f"{rec.codec}: the payload holds more frames than the sequence's {len(metas)}")
            dec_s += time.perf_counter() - t0
        except (ConfigError, MissingDependencyError):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the receiver side meets costs this item only
            _decode_failed(rec, exc)
            rows = []
        finally:
            frames.close()
        n = len(metas)
        rec.frame_detections = rows if rows else [[] for _ in range(n)]
        rec.decoded_hash = decoded.hexdigest() if rows and decoded is not None else ""
        rec.dec_s, rec.back_s = dec_s / n, back_s / n
        if front_s:
            rec.front_s = front_s / n
        rec.layer_bytes = layers
        return rec


@dataclass
class SequencePoint:
    """One (codec, rate point) of a sequence being coded: its encoder, seconds, payload, failure."""

    job: CodecJob
    rate: RatePoint
    encoder: SequenceEncoder | None = None
    payload: bytes = b""
    enc_s: float = 0.0
    failure: str = ""

    def run(self, step: Callable[[], object]) -> None:
        """One timed encoder step; a failure costs this point only (see _timed_encode)."""
        if self.failure:
            return
        _, seconds, failure = _timed_encode(lambda: step() or b"")
        self.enc_s += seconds
        if failure:
            self.failure = failure
            if self.encoder is not None:
                self.encoder.abort()
