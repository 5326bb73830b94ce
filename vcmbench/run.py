"""The sweep: dataset x model x codecs x rate points -> records -> points table.

Item-major: each image runs through the front once, then through every (codec, rate)
still missing for it, so the front never runs once per rate point and no feature cache is
needed. A sequence is an item too: its frames are streamed through the front once each and
handed to one sequence encoder per missing (codec, rate), then each payload is decoded frame
by frame through the back (`ItemCoder.code`: an image is a one-frame item of the same loop). Every finished (item, codec, rate) is
appended to records.jsonl at once; a rerun with the same config redoes nothing finished.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from queue import Empty

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from vcmbench import determinism, thread_budget
from vcmbench.aggregate import write_tables
from vcmbench.atomic import write_bytes
from vcmbench.config import selected_codec_configs
from vcmbench.datasets.base import Dataset, ImageRecord
from vcmbench.datasets.sequences import SequenceDataset
from vcmbench.datasets.shards import instantiate_whole, select_shard
from vcmbench.domain import DomainCheck
from vcmbench.item_coding import ItemCoder, to_rows
from vcmbench.jobs import CodecJob, build_jobs, codec_label, describe_run
from vcmbench.metrics.complexity import complexity_table
from vcmbench.provenance import provenance
from vcmbench.records import Record, RecordStore, RunLock
from vcmbench.settings import RunSettings
from vcmbench.timing_pass import write_timing
from vcmbench.vision.base import SplitDetector
from vcmbench.vision.trackers import TrackerChoice

log = logging.getLogger("vcmbench.run")

#: what other modules and scripts import from here (the pieces now live in jobs and item_coding)
__all__ = [
    "CodecJob",
    "ItemCoder",
    "build_jobs",
    "codec_label",
    "describe_run",
    "run_sweep",
    "software_versions",
    "to_rows",
    "write_points",
]


#: this worker process's ItemCoder, its records queue and its determinism mode (_worker_init)
_WORKER: dict[str, object] = {}


def _worker_init(cfg_yaml: str, threads: int, workers: int, queue, parent: int) -> None:
    """Build this worker's ItemCoder once; records go back through `queue` as they finish. `parent`:
    the sweep's process id, whose end ends this worker."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    _exit_with_parent(parent)
    cfg = OmegaConf.create(cfg_yaml)
    torch.set_num_threads(threads)
    coder = ItemCoder(cfg)
    coder.workers = workers
    mode = RunSettings.from_config(cfg).determinism
    if mode == "exact":  # no number depends on threads there: the codecs' own threads must not oversubscribe
        thread_budget.limit(threads)
    _WORKER.update(coder=coder, queue=queue, mode=mode)


def _exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """End this worker when the sweep's process `parent` is gone (killed: SIGTERM or SIGKILL leave a
    process pool's workers running, coding items nobody will write, on cores a rerun needs). A
    daemon thread watches this process's parent id: an orphan is adopted by another process (init),
    also when the sweep died while this worker was still starting. Portable; no signal needed."""
    import threading

    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


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


def worker_config(cfg: DictConfig, kept: list[str]) -> DictConfig:
    """The config a sweep worker builds its codecs from: the codecs this process selected and kept
    (`kept`, the jobs' names in order), named. Workers are not under Hydra, so for `codec: null` they
    would list only the packaged codecs (a user's --config-dir ones lost), and they would take every
    one of a default selection as named, refusing the codecs this process left out for another network."""
    selected = selected_codec_configs(cfg)
    out = cfg.copy()
    OmegaConf.update(out, "codec", {name: selected[name] for name in kept}, merge=False, force_add=True)
    return out


def _code_in_workers(
    cfg: DictConfig,
    work: list[tuple[ImageRecord, list[tuple[int, int]]]],
    settings: RunSettings,
    save: Callable[[Record], None],
    kept: list[str],
) -> None:
    """A pool of worker processes, fed image by image; this process is the only writer.

    External encoders are processes and each worker holds its own detector, so N workers
    keep N images in flight. Every record that reached this process is saved before the
    first error is raised: a failing image costs no finished work.
    """
    cfg = worker_config(cfg, kept)
    ctx = mp.get_context("spawn")  # no fork after torch has started its thread pools
    queue = ctx.Queue()
    error: BaseException | None = None
    with ProcessPoolExecutor(
        settings.workers,
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(OmegaConf.to_yaml(cfg, resolve=True), settings.threads, settings.workers, queue, os.getpid()),
    ) as pool:
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


def run_sweep(cfg: DictConfig, run_dir: Path, timing_pass: bool = False) -> pd.DataFrame:
    """The sweep into `run_dir`, which it holds alone (RunLock) from the first step to the last.

    `timing_pass`: after the sweep, time each codec alone for the report (vcmbench.timing_pass),
    where the sweep's own times are not that already; `vcmbench run` asks for it when it writes
    the report.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    with RunLock(run_dir):  # one writer per run folder; refused at once if another run holds it
        return _sweep(cfg, run_dir, started, timing_pass)


def _sweep(cfg: DictConfig, run_dir: Path, started: float, timing_pass: bool) -> pd.DataFrame:
    settings = RunSettings.from_config(cfg)
    torch.set_num_threads(settings.threads)
    (run_dir / "config.resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    # Dataset, detector and codecs are built here first even when workers code the images:
    # a bad setting (a missing checkpoint, an out-of-range rate) stops the run with its
    # message before any work starts.
    whole, shard = instantiate_whole(cfg.dataset)
    dataset = select_shard(whole, shard) if shard is not None else whole
    detector: SplitDetector = instantiate(cfg.model)
    if isinstance(dataset, SequenceDataset) and dataset.tracking:  # the tracker's settings, before any work
        TrackerChoice.from_settings(settings.tracker_settings).resolve(detector.embeds)
    verdict = DomainCheck()
    jobs = build_jobs(cfg, verdict)
    left_out = verdict.note()
    if left_out:
        log.warning("%s", left_out)
    run_info = {
        **software_versions(),
        "workers": settings.workers,
        "threads": settings.threads,
        "left_out": [{"codec": c, "why": left_out} for c in verdict.left_out],
        "description": describe_run(detector, jobs, isinstance(dataset, SequenceDataset)).to_json(),
        **determinism.environment(settings.determinism),
        **provenance(shard.label if shard is not None else None),
    }
    write_bytes(run_dir / "run.json", json.dumps({**run_info, "finished": False}, indent=1).encode())
    store = RecordStore(run_dir / "records.jsonl", repair=settings.repair)
    work = []
    for image in dataset.records:
        todo = [
            (j, r)
            for j, job in enumerate(jobs)
            for r, rp in enumerate(job.codec.rates)
            if (image.image_id, job.codec.name, rp.label, job.setup) not in store
        ]
        if todo:
            work.append((image, todo))
    total = len(dataset) * sum(len(j.codec.rates) for j in jobs)
    unit = "sequences" if isinstance(dataset, SequenceDataset) else "images"
    bar = tqdm(
        total=total,
        initial=total - sum(len(t) for _, t in work),
        unit="pt",
        desc=f"{unit} x rate points",
        disable=not settings.progress,
    )

    def save(record: Record) -> None:
        store.append(record)
        bar.set_postfix_str(f"image {record.image_id}", refresh=False)
        bar.update(1)

    coder = ItemCoder(cfg, jobs, whole, detector)
    try:
        if settings.workers > 1 and len(work) > 1:
            _code_in_workers(cfg, work, settings, save, [job.codec.name for job in jobs])
        elif work:
            with determinism.arithmetic(settings.determinism):
                for image, todo in work:
                    for record in coder.code(image, todo):
                        save(record)
    finally:
        bar.close()
        store.close()
    shard_columns = {"shard": shard.label, "partial": True} if shard is not None else {}
    points = write_points(cfg, run_dir, list(store.records.values()), dataset, whole, detector, jobs, shard_columns)
    sweep_s = time.perf_counter() - started
    if timing_pass and _sweep_times_differ(settings):
        write_timing(run_dir, coder, dataset.records, settings.timing, settings.determinism)
    write_bytes(
        run_dir / "run.json",
        json.dumps({**run_info, "finished": True, "items": len(dataset), "items_whole": len(whole)}, indent=1).encode(),
    )
    (run_dir / "timing.json").write_text(
        json.dumps(
            {
                "sweep_s": sweep_s,
                "timing_pass_s": time.perf_counter() - started - sweep_s,
                "workers": settings.workers,
                "threads": settings.threads,
            }
        )
    )
    return points


def _sweep_times_differ(settings: RunSettings) -> bool:
    """Whether the timing pass would measure other times than the sweep's: the sweep's were taken
    beside other workers, or in another arithmetic than the pass's."""
    other_arithmetic = settings.timing.arithmetic == "native" and settings.determinism == "exact"
    return settings.workers > 1 or other_arithmetic


def write_points(
    cfg: DictConfig,
    run_dir: Path,
    records: list[Record],
    dataset: Dataset | SequenceDataset,
    whole: Dataset | SequenceDataset,
    detector: SplitDetector,
    jobs: list[CodecJob],
    columns: dict[str, object] | None = None,
) -> pd.DataFrame:
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
