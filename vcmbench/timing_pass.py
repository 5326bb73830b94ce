"""Speed figures a reader can trust: the first items coded again, each codec alone, in one process.

A sweep with several workers codes items in parallel, so every encode and decode it times shares
the cores with the other workers' networks and encoders (`contended` in points.csv). Worse, a
codec with threads of its own (the learned codecs encode on 2 torch threads) then competes with
itself. Those times rank codecs by how they happened to be scheduled. After such a sweep, this
pass codes the set's first `timing.items` items again through the same `ItemCoder`, serially, in
this process, every codec and rate point back to back (the method of
`benchmarks/learned_vs_anchor.py`), and writes the mean seconds per item (per frame for sequences)
to `<run dir>/timing.csv`. The report shows those times, and says so; points.csv keeps the sweep's.

Arithmetic: `native` (default) times torch's own float kernels, what a deployed codec runs;
`sweep` times the run's determinism mode (exact mode computes the networks in float64, about 3x
slower, for machine-independent numbers; external encoders cost the same in both). The pass's
payloads and detections are thrown away: only the clock readings are kept.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from vcmbench.atomic import write_bytes
from vcmbench.datasets.sequences import SequenceRecord
from vcmbench.item_coding import ItemCoder
from vcmbench.settings import TimingSettings
from vcmbench.timing_table import COLUMNS, LOAD_COLUMNS, TIMING_FILE

log = logging.getLogger("vcmbench.run")


def time_alone(coder: ItemCoder, items: Sequence, settings: TimingSettings, sweep_mode: str) -> pd.DataFrame:
    """Code the first `settings.items` items at every (codec, rate) of `coder`, serially, and return
    each point's mean encode/decode seconds over the items that coded (columns: COLUMNS).

    An image set's first image is coded once untimed before: this process has not run the sweep's
    codings (its workers did), and a point's first encode here pays one-time costs (kernel
    selection, buffers, a binary read from disk) that are not per-item work. A sequence set's pass
    is its first sequence alone, untimed warm-up none: its times are per frame over all its frames,
    which spreads those costs, and a second sequence would double the pass for little. The pass
    decodes every frame but runs no network on what it decoded, and computes no fidelity figure:
    only the codecs' clocks are kept.
    """
    import torch

    from vcmbench import determinism

    mode = sweep_mode if settings.arithmetic == "sweep" else "loose"
    todo = [(j, r) for j, job in enumerate(coder.jobs) for r in range(len(job.codec.rates))]
    fidelity, workers = coder.fidelity, coder.workers
    coder.fidelity, coder.workers, coder.codec_times_only = False, 1, True
    sequences = any(isinstance(item, SequenceRecord) for item in items)
    timed = list(items)[: min(settings.items, 1) if sequences else settings.items]
    warm_up = [] if sequences else timed[:1]
    rows = []
    before = _cpu_seconds()
    try:
        with determinism.arithmetic(mode):
            for k, item in enumerate(warm_up + timed):
                for rec in coder.code(item, todo):
                    if k >= len(warm_up) and rec.status == "ok":
                        rows.append({"codec": rec.codec, "rate": rec.rate, "enc_s": rec.enc_s, "dec_s": rec.dec_s})
    finally:
        coder.fidelity, coder.workers, coder.codec_times_only = fidelity, workers, False
    others = _others_cores(before, _cpu_seconds())
    if not rows:
        return pd.DataFrame(columns=COLUMNS + LOAD_COLUMNS)
    table = (
        pd.DataFrame(rows)
        .groupby(["codec", "rate"], sort=False)
        .agg(enc_s=("enc_s", "mean"), dec_s=("dec_s", "mean"), items=("enc_s", "size"))
        .reset_index()
    )
    return table.assign(
        arithmetic="exact" if mode == "exact" else "native",
        threads=torch.get_num_threads(),
        cpu=determinism.cpu_model(),
        others_cores=others,
        cores=os.cpu_count() or 1,
    )[COLUMNS + LOAD_COLUMNS]


def _cpu_seconds() -> tuple[float, float, float] | None:
    """(wall clock, CPU seconds the whole machine spent busy, CPU seconds of this process and its
    waited-for children: the external encoders), or None where /proc/stat cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user .. steal, not guest (counted in user)
    t = os.times()
    return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system


def _others_cores(before: tuple | None, after: tuple | None) -> float:
    """The cores other processes kept busy on average between two `_cpu_seconds` readings: the
    machine's busy CPU time less this process's own, over the wall time (NaN where not measurable)."""
    if before is None or after is None or after[0] <= before[0]:
        return float("nan")
    others = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, others / (after[0] - before[0]))


def write_timing(run_dir: Path, coder: ItemCoder, items: Sequence, settings: TimingSettings, sweep_mode: str) -> None:
    """Run the pass into <run dir>/timing.csv unless it is off or already there for these codecs and rates."""
    path = Path(run_dir) / TIMING_FILE
    wanted = {(job.codec.name, rp.label) for job in coder.jobs for rp in job.codec.rates}
    if not settings.items or not wanted:
        return
    if path.is_file():
        have = pd.read_csv(path, dtype={"rate": str, "codec": str})
        if wanted <= set(zip(have.codec, have.rate)):
            return
    log.info("timing pass: %d item(s), every codec alone in this process", min(settings.items, len(items)))
    table = time_alone(coder, items, settings, sweep_mode)
    write_bytes(path, table.to_csv(index=False).encode())
