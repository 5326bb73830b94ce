"""The sweep: dataset x model x codecs x rate points -> records -> points table.

Item-major: each image runs through the front once, then through every (codec, rate)
still missing for it, so the front never runs once per rate point and no feature cache is
needed. A sequence is an item too: its frames are streamed through the front once each and
handed to one sequence encoder per missing (codec, rate), then each payload is decoded frame
by frame through the back (`ItemCoder.code_sequence`). Every finished (item, codec, rate) is
appended to records.jsonl at once; a rerun with the same config redoes nothing finished.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from queue import Empty

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from vcmbench import determinism
from vcmbench.aggregate import CodecDescription, RunDescription, write_tables
from vcmbench.atomic import write_bytes
from vcmbench.codecs.base import Codec, RatePoint
from vcmbench.codecs.sequence import (
    SequenceEncoder,
    SequenceInfo,
    decode_sequence,
    describe_sequence_coding,
    needs_sequence_range,
    open_sequence,
)
from vcmbench.config import (
    build,
    codec_allow_foreign,
    fingerprint,
    selected_codec_configs,
    selected_codec_roles,
)
from vcmbench.datasets.base import Dataset, ImageRecord
from vcmbench.datasets.sequences import SequenceDataset, SequenceRecord
from vcmbench.datasets.shards import instantiate_whole, select_shard
from vcmbench.domain import DomainCheck, check_codec, run_network
from vcmbench.errors import ConfigError, MissingDependencyError, PayloadError
from vcmbench.metrics.complexity import complexity_table
from vcmbench.metrics.fidelity import fidelity, image_fidelity
from vcmbench.paths import file_sha256
from vcmbench.points import CodecLabel
from vcmbench.provenance import provenance
from vcmbench.records import Record, RecordStore, RunLock, encode_masks
from vcmbench.settings import RunSettings, as_bool
from vcmbench.types import LEVELS, Detections, FrontOutput, ImageMeta, feature_digest
from vcmbench.vision.base import SplitDetector

log = logging.getLogger("vcmbench.run")


@dataclass
class CodecJob:
    codec: Codec
    setup: str
    role: str = "test"  # the yaml's meta.role; travels in points.csv
    foreign: bool = False  # a trained codec coding another network's features (allow_foreign)


def codec_label(job: CodecJob, sequences: bool) -> CodecLabel:
    """The job's role and encoder for the points table; a sequence run adds the GOP it codes with."""
    encoder = job.codec.describe_encoder()
    if sequences:
        encoder += f"; {describe_sequence_coding(job.codec)}"
    return CodecLabel(job.role, encoder)


def to_rows(dets: Detections, detector: SplitDetector) -> list[list[float]]:
    """Detections -> [x, y, w, h, score, category_id] rows at full float precision."""
    b = dets.boxes.double()
    xywh = torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], dim=1).tolist()
    cats = detector.to_category_id(dets.labels)
    return [[*box, float(s), float(c)] for box, s, c in zip(xywh, dets.scores.double().tolist(), cats)]


def file_digest(path: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) for the run's lifetime."""
    st = Path(path).stat()
    return _file_digest(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def build_jobs(cfg: DictConfig, verdict: DomainCheck | None = None) -> list[CodecJob]:
    """The run's codecs, each built once, with its setup hash and role. A trained codec made for
    another network than the run's is refused, left out or marked (vcmbench.domain); `verdict`
    collects what was decided."""
    # exact features are other features: records of a loose run are not reused (and vice versa)
    mode = RunSettings.from_config(cfg).determinism
    base = fingerprint(cfg.model, cfg.dataset.name, *(["determinism=exact"] if mode == "exact" else []))
    verdict = verdict if verdict is not None else DomainCheck([], set())
    explicit = bool(cfg.get("codec"))
    allowed = codec_allow_foreign(cfg)
    network = None
    jobs = []
    roles = selected_codec_roles(cfg)
    for name, node in selected_codec_configs(cfg).items():
        codec_settings = OmegaConf.masked_copy(node, [k for k in node if k != "rates"])
        codec = build(node)
        if network is None and codec.trained_on():
            network = run_network(cfg.model)
        if not check_codec(name, codec, network, explicit, allowed.get(name, False), verdict):
            continue
        contents = [file_digest(p) for p in codec.files()]  # retrained checkpoints are other setups
        setup = fingerprint(base, codec_settings, *([contents] if contents else []))
        jobs.append(CodecJob(codec, setup, roles.get(name, "test"), name in verdict.foreign))
    if not jobs:
        raise ConfigError(f"no codec left to run: {verdict.note(network) if network else 'none selected'}")
    return jobs


def code_one(codec: Codec, rate: RatePoint, front: FrontOutput, detector: SplitDetector, sample, front_s: float,
             setup: str, pristine: Detections | None = None, feature_hash: str = "") -> Record:
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
    rec = Record(image_id=sample.image_id, codec=codec.name, rate=rate.label, setup=setup, bytes=len(payload),
                 pixels=sample.pixels, enc_s=enc_s, dec_s=0.0, front_s=front_s if "features" in codec.takes else 0.0,
                 back_s=0.0, feature_hash=feature_hash)
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


def _receive(rec: Record, codec: Codec, payload: bytes, front: FrontOutput, detector: SplitDetector, sample,
             pristine: Detections | None) -> None:
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

    def __init__(self, cfg: DictConfig, jobs: list[CodecJob] | None = None, dataset: Dataset | None = None,
                 detector: SplitDetector | None = None):
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
            record = code_one(job.codec, job.codec.rates[r], front, self.detector, sample, front_s, job.setup,
                              pristine, digest)
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
            rec = Record(image_id=seq.sequence_id, codec=p.job.codec.name, rate=p.rate.label, setup=p.job.setup,
                         bytes=len(p.payload), pixels=seq.pixels, enc_s=p.enc_s / n, dec_s=0.0,
                         front_s=front_s / n if "features" in p.job.codec.takes else 0.0, back_s=0.0, frames=n,
                         frame_ids=seq.frame_ids, workers=self.workers,
                         feature_hash=digest.hexdigest() if digest is not None else "")
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
                    raise PayloadError(f"{rec.codec}: the payload decoded to {len(rows)} frames, the sequence has "
                                       f"{len(metas)}")
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


_WORKER: dict[str, object] = {}


def _worker_init(cfg_yaml: str, threads: int, workers: int, queue) -> None:
    """Build this worker's ItemCoder once; records go back through `queue` as they finish."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    cfg = OmegaConf.create(cfg_yaml)
    torch.set_num_threads(threads)
    coder = ItemCoder(cfg)
    coder.workers = workers
    _WORKER.update(coder=coder, queue=queue, mode=RunSettings.from_config(cfg).determinism)


def _worker_code(image: ImageRecord, todo: list[tuple[int, int]]) -> tuple[int, BaseException | None]:
    """Code one image in a worker; each record is sent as it finishes, so a crash later in
    the image loses none of them. Returns (records sent, the error that stopped it or None)."""
    coder, queue = _WORKER["coder"], _WORKER["queue"]
    sent = 0
    try:
        with determinism.arithmetic(_WORKER["mode"]):
            for record in coder.code(image, todo):
                queue.put(asdict(record))
                sent += 1
    except Exception as exc:  # noqa: BLE001 - handed to the main process, which stops the sweep
        return sent, exc
    return sent, None


def _code_in_workers(cfg: DictConfig, work: list[tuple[ImageRecord, list[tuple[int, int]]]], settings: RunSettings,
                     save: Callable[[Record], None]) -> None:
    """A pool of worker processes, fed image by image; this process is the only writer.

    External encoders are processes and each worker holds its own detector, so N workers
    keep N images in flight. Every record that reached this process is saved before the
    first error is raised: a failing image costs no finished work.
    """
    # The codecs as this process selected them (a user's --config-dir codecs included): workers
    # are not under Hydra and would list only the packaged ones for `codec: null`.
    cfg = cfg.copy()
    OmegaConf.update(cfg, "codec", selected_codec_configs(cfg), merge=False, force_add=True)
    ctx = mp.get_context("spawn")  # no fork after torch has started its thread pools
    queue = ctx.Queue()
    error: BaseException | None = None
    with ProcessPoolExecutor(settings.workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(OmegaConf.to_yaml(cfg, resolve=True), settings.threads, settings.workers,
                                       queue)) as pool:
        pending = {pool.submit(_worker_code, image, todo) for image, todo in work}
        expected = received = 0
        while pending or received < expected:
            try:
                save(Record(**queue.get(timeout=0.2)))
                received += 1
                continue
            except Empty:
                pass
            for fut in [f for f in pending if f.done()]:
                pending.discard(fut)
                try:
                    sent, exc = fut.result()
                except BaseException as exc_:  # a worker process died: its in-flight records are lost
                    sent, exc = 0, exc_
                expected += sent
                if exc is not None and error is None:
                    error = exc
                    for other in pending:
                        other.cancel()
            if error is not None and all(f.done() for f in pending) and received >= expected:
                break
    if error is not None:
        raise error


def run_sweep(cfg: DictConfig, run_dir: Path) -> pd.DataFrame:
    """The sweep into `run_dir`, which it holds alone (RunLock) from the first step to the last."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    with RunLock(run_dir):  # one writer per run folder; refused at once if another run holds it
        return _sweep(cfg, run_dir, started)


def _sweep(cfg: DictConfig, run_dir: Path, started: float) -> pd.DataFrame:
    settings = RunSettings.from_config(cfg)
    torch.set_num_threads(settings.threads)
    (run_dir / "config.resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    # Dataset, detector and codecs are built here first even when workers code the images:
    # a bad setting (a missing checkpoint, an out-of-range rate) stops the run with its
    # message before any work starts.
    whole, shard = instantiate_whole(cfg.dataset)
    dataset = select_shard(whole, shard) if shard is not None else whole
    detector: SplitDetector = instantiate(cfg.model)
    verdict = DomainCheck([], set())
    jobs = build_jobs(cfg, verdict)
    if verdict.left_out:
        log.warning("%s", verdict.note(run_network(cfg.model)))
    run_info = {**software_versions(), "workers": settings.workers, "threads": settings.threads,
                "left_out": [{"codec": c, "why": verdict.note(run_network(cfg.model))} for c in verdict.left_out],
                "description": describe_run(detector, jobs, isinstance(dataset, SequenceDataset)).to_json(),
                **determinism.environment(settings.determinism),
                **provenance(shard.label if shard is not None else None)}
    write_bytes(run_dir / "run.json", json.dumps({**run_info, "finished": False}, indent=1).encode())
    store = RecordStore(run_dir / "records.jsonl", repair=as_bool(cfg.get("repair", False), "repair"))
    work = []
    for image in dataset.records:
        todo = [(j, r) for j, job in enumerate(jobs) for r, rp in enumerate(job.codec.rates)
                if (image.image_id, job.codec.name, rp.label, job.setup) not in store]
        if todo:
            work.append((image, todo))
    total = len(dataset) * sum(len(j.codec.rates) for j in jobs)
    unit = "sequences" if isinstance(dataset, SequenceDataset) else "images"
    bar = tqdm(total=total, initial=total - sum(len(t) for _, t in work), unit="pt", desc=f"{unit} x rate points",
               disable=not settings.progress)

    def save(record: Record) -> None:
        store.append(record)
        bar.set_postfix_str(f"image {record.image_id}", refresh=False)
        bar.update(1)

    try:
        if settings.workers > 1 and len(work) > 1:
            _code_in_workers(cfg, work, settings, save)
        elif work:
            coder = ItemCoder(cfg, jobs, whole, detector)
            with determinism.arithmetic(settings.determinism):
                for image, todo in work:
                    for record in coder.code(image, todo):
                        save(record)
    finally:
        bar.close()
        store.close()
    shard_columns = {"shard": shard.label, "partial": True} if shard is not None else {}
    points = write_points(cfg, run_dir, list(store.records.values()), dataset, whole, detector, jobs, shard_columns)
    write_bytes(run_dir / "run.json", json.dumps({**run_info, "finished": True, "items": len(dataset),
                                                  "items_whole": len(whole)}, indent=1).encode())
    (run_dir / "timing.json").write_text(json.dumps({"sweep_s": time.perf_counter() - started,
                                                     "workers": settings.workers, "threads": settings.threads}))
    return points


def describe_run(detector: SplitDetector, jobs: list[CodecJob], sequences: bool) -> RunDescription:
    """What the run's tables need of its model and codecs (run.json's `description`)."""
    codecs = []
    for job in jobs:
        label = codec_label(job, sequences)
        codecs.append(CodecDescription(job.codec.name, label.role, label.encoder, job.setup,
                                       tuple(rp.label for rp in job.codec.rates), job.foreign))
    return RunDescription(detector.name, getattr(detector, "split", "fpn"), tuple(codecs))


def write_points(cfg: DictConfig, run_dir: Path, records: list[Record], dataset: Dataset | SequenceDataset,
                 whole: Dataset | SequenceDataset, detector: SplitDetector, jobs: list[CodecJob],
                 columns: dict[str, object] | None = None) -> pd.DataFrame:
    """The end of a sweep: the complexity counts (once per setup, on the first item of the `whole`
    set, so a shard and the merge of all shards count the same image), then the tables from the
    records (`aggregate.write_tables`, which a merge calls without any live model or codec)."""
    sequences = isinstance(dataset, SequenceDataset)
    if RunSettings.from_config(cfg).complexity and not sequences and len(whole):
        _complexity(run_dir, detector, jobs, whole)
    return write_tables(cfg, run_dir, records, dataset, describe_run(detector, jobs, sequences), columns)


def _complexity(run_dir: Path, detector: SplitDetector, jobs: list[CodecJob], dataset: Dataset) -> None:
    """Count the kmac_* figures of every job's rate points into <run dir>/complexity.csv, once per
    setup, so a rerun that has nothing to do counts nothing either."""
    path = run_dir / "complexity.csv"
    cached = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["codec", "rate", "setup"])
    have = set(zip(cached.codec, cached.rate, cached.setup))
    missing = [j for j in jobs if any((j.codec.name, rp.label, j.setup) not in have for rp in j.codec.rates)]
    if missing:
        fresh = complexity_table(detector, [j.codec for j in missing], dataset.load(dataset.records[0]))
        fresh["setup"] = fresh.codec.map({j.codec.name: j.setup for j in missing})
        cached = pd.concat([cached[~cached.codec.isin(set(fresh.codec))], fresh], ignore_index=True)
        write_bytes(path, cached.to_csv(index=False).encode())


def software_versions() -> dict[str, str]:
    import platform

    import compressai
    import torchvision

    import vcmbench

    return {
        "vcmbench": vcmbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "compressai": compressai.__version__,
        "platform": platform.platform(),
    }
