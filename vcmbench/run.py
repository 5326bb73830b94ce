"""The sweep: dataset x model x codecs x rate points -> records -> points table.

Image-major: each image runs through the front once, then through every
(codec, rate) still missing for it, so the front never runs once per rate point and
no feature cache is needed. Every finished (image, codec, rate) is appended to
records.jsonl at once; a rerun with the same config redoes nothing finished.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from vcmbench.codecs.base import Codec, ImageCodec, LayeredCodec, RatePoint
from vcmbench.config import fingerprint, selected_codec_configs
from vcmbench.datasets.base import Dataset
from vcmbench.errors import PayloadError
from vcmbench.metrics.fidelity import fidelity, image_fidelity
from vcmbench.points import build_points
from vcmbench.records import Record, RecordStore
from vcmbench.vision.base import LEVELS, Detections, Features, FrontOutput, SplitDetector

log = logging.getLogger("vcmbench.run")


@dataclass
class CodecJob:
    codec: Codec
    setup: str


def to_rows(dets: Detections, detector: SplitDetector) -> list[list[float]]:
    """Detections -> [x, y, w, h, score, category_id] rows at full float precision."""
    b = dets.boxes.double()
    xywh = torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], dim=1).tolist()
    cats = detector.to_category_id(dets.labels)
    return [[*box, float(s), float(c)] for box, s, c in zip(xywh, dets.scores.double().tolist(), cats)]


def build_jobs(cfg: DictConfig) -> list[CodecJob]:
    base = fingerprint(cfg.model, cfg.dataset.name)
    jobs = []
    for name, node in selected_codec_configs(cfg).items():
        codec_settings = OmegaConf.masked_copy(node, [k for k in node if k != "rates"])
        codec = instantiate(node)
        extra = codec.setup_extra()
        setup = fingerprint(base, codec_settings) if extra is None else fingerprint(base, codec_settings, extra)
        jobs.append(CodecJob(codec, setup))
    return jobs


def code_one(codec: Codec, rate: RatePoint, front: FrontOutput, detector: SplitDetector, sample, front_s: float,
             setup: str, pristine: Detections | None = None) -> Record:
    """One image at one rate point through the codec and the network, every stage timed.

    Where the codec sits depends on its kind (DESIGN.md data flow; ImageCodec and
    LayeredCodec in codecs/base.py): a feature codec codes the front's features and the
    back runs on the decoded ones; an image codec codes the image and the whole network
    (front, then back) runs on the decoded image; a layered codec codes both, the back
    runs on its base layer and the viewer's image comes from its enhancement layer.

    With `pristine` (the back's output on untouched features) the record also gets the
    task-fidelity figures (feature MSE/PSNR per level, detection agreement): `fid_*`.
    """
    if codec.kind == "image":
        return _code_image(codec, rate, front, detector, sample, setup, pristine)
    if codec.kind == "layered":
        return _code_layered(codec, rate, front, detector, sample, front_s, setup, pristine)
    t0 = time.perf_counter()
    payload = codec.encode(front.features, rate)
    enc_s = time.perf_counter() - t0
    rec = Record(sample.image_id, codec.name, rate.label, setup, len(payload), sample.pixels,
                 enc_s, 0.0, front_s, 0.0)
    decoded = _timed_decode(rec, lambda: codec.decode(payload))
    if decoded is None:
        return rec
    dets = _timed_back(rec, detector, decoded, front.meta)
    if pristine is not None:
        rec.extra = fidelity(front.features, decoded, pristine, dets)
    return rec


def _timed_back(rec: Record, detector: SplitDetector, features: Features, meta) -> Detections:
    """Run and time the back into rec.back_s; its detections go into the record (and are returned)."""
    t0 = time.perf_counter()
    dets = detector.back(features, meta)
    rec.back_s = time.perf_counter() - t0
    rec.detections = to_rows(dets, detector)
    return dets


def _timed_decode(rec: Record, decode: Callable[[], object]):
    """Run and time one decode into rec.dec_s; a PayloadError marks the record failed (None)."""
    t0 = time.perf_counter()
    try:
        out = decode()
    except PayloadError as exc:
        rec.status, rec.error = "decode_failed", str(exc)
        log.warning("image %s, %s %s: %s", rec.image_id, rec.codec, rec.rate, exc)
        out = None
    rec.dec_s += time.perf_counter() - t0
    return out


def _code_image(codec: ImageCodec, rate: RatePoint, front: FrontOutput, detector: SplitDetector, sample,
                setup: str, pristine: Detections | None) -> Record:
    """Remote inference: the image is coded; front and back both run on the decoded image.

    front_s / back_s are the receiver's network times on the decoded image (front + back is
    the unsplit detector: the split-exactness tests hold every model to it).
    """
    t0 = time.perf_counter()
    payload = codec.encode(sample.image, rate)
    enc_s = time.perf_counter() - t0
    rec = Record(sample.image_id, codec.name, rate.label, setup, len(payload), sample.pixels, enc_s, 0.0, 0.0, 0.0)
    image = _timed_decode(rec, lambda: codec.decode(payload))
    if image is None:
        return rec
    t0 = time.perf_counter()
    received = detector.front(image)
    rec.front_s = time.perf_counter() - t0
    dets = _timed_back(rec, detector, received.features, received.meta)
    rec.extra = image_fidelity(sample.image, image)
    if pristine is not None and received.features[LEVELS[0]].shape == front.features[LEVELS[0]].shape:
        rec.extra.update(fidelity(front.features, received.features, pristine, dets))
    return rec


def _code_layered(codec: LayeredCodec, rate: RatePoint, front: FrontOutput, detector: SplitDetector, sample,
                  front_s: float, setup: str, pristine: Detections | None) -> Record:
    """Joint coding: the back runs on the base layer, the image comes from the enhancement layer.

    dec_s is the whole payload's decode (both layers); dec_base_s (what the machine needs)
    and dec_enh_s are extra columns, as are bytes_base and bytes_enh (they add up to bytes).
    """
    t0 = time.perf_counter()
    payload = codec.encode(sample.image, front.features, front.meta, rate)
    enc_s = time.perf_counter() - t0
    rec = Record(sample.image_id, codec.name, rate.label, setup, len(payload), sample.pixels,
                 enc_s, 0.0, front_s, 0.0)
    layers = _timed_decode(rec, lambda: codec.layer_bytes(payload))
    if layers is None:
        return rec
    base = _timed_decode(rec, lambda: codec.decode_base(payload))
    if base is None:
        return rec
    dec_base_s = rec.dec_s
    image = _timed_decode(rec, lambda: codec.decode_enhancement(payload, base, front.meta))
    if image is None:
        return rec
    dets = _timed_back(rec, detector, base, front.meta)
    rec.extra = {"bytes_base": float(layers[0]), "bytes_enh": float(layers[1]),
                 "dec_base_s": dec_base_s, "dec_enh_s": rec.dec_s - dec_base_s}
    rec.extra.update(image_fidelity(sample.image, image))
    if pristine is not None:
        rec.extra.update(fidelity(front.features, base, pristine, dets))
    return rec


def run_points(one: Callable[[CodecJob, RatePoint], Record], todo: list[tuple[CodecJob, RatePoint]],
               pool: ThreadPoolExecutor | None) -> Iterator[Record]:
    """Yield finished records of one image, serially or from a thread pool.

    External encoders are separate processes and torch releases the GIL, so threads
    overlap them. In parallel every record that finished is still yielded (and saved)
    before the first error is raised: a failing point costs no finished work.
    """
    if pool is None:
        for job, rp in todo:
            yield one(job, rp)
        return
    futures = [pool.submit(one, job, rp) for job, rp in todo]
    error: BaseException | None = None
    for fut in as_completed(futures):
        try:
            yield fut.result()
        except BaseException as exc:  # keep draining: the other points' work is already done
            error = error or exc
    if error is not None:
        raise error


def run_sweep(cfg: DictConfig, run_dir: Path) -> pd.DataFrame:
    started = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(cfg.get("threads") or torch.get_num_threads()))
    (run_dir / "config.resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    dataset: Dataset = instantiate(cfg.dataset)
    detector: SplitDetector = instantiate(cfg.model)
    jobs = build_jobs(cfg)
    store = RecordStore(run_dir / "records.jsonl")
    points_per_image = sum(len(j.codec.rates) for j in jobs)
    workers = int(cfg.get("workers") or 1)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="vcmbench") if workers > 1 else None
    bar = tqdm(total=len(dataset) * points_per_image, unit="pt", desc="images x rate points",
               disable=not cfg.get("progress", True))
    try:
        for rec in dataset.records:
            todo = [(j, rp) for j in jobs for rp in j.codec.rates
                    if (rec.image_id, j.codec.name, rp.label, j.setup) not in store]
            bar.update(points_per_image - len(todo))
            if not todo:
                continue
            sample = dataset.load(rec)
            t0 = time.perf_counter()
            front = detector.front(sample.image)
            front_s = time.perf_counter() - t0
            pristine = detector.back(front.features, front.meta) if cfg.get("fidelity", True) else None

            def one(job: CodecJob, rp: RatePoint) -> Record:
                return code_one(job.codec, rp, front, detector, sample, front_s, job.setup, pristine)

            bar.set_postfix_str(f"image {rec.image_id}", refresh=False)
            for record in run_points(one, todo, pool):
                store.append(record)
                bar.update(1)
    finally:
        bar.close()
        store.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    wanted = {(j.codec.name, rp.label, j.setup) for j in jobs for rp in j.codec.rates}
    points = build_points(
        [r for r in store.records.values() if (r.codec, r.rate, r.setup) in wanted],
        dataset.name,
        detector.name,
        dataset.metric,
        dataset.annotation_file,
        dataset.image_ids,
        detections_dir=run_dir / "detections",
    )
    points.to_csv(run_dir / "points.csv", index=False)
    (run_dir / "run.json").write_text(json.dumps(software_versions(), indent=1))
    (run_dir / "timing.json").write_text(json.dumps({"sweep_s": time.perf_counter() - started}))
    return points


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
