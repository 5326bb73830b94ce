"""Pure numpy work of the report spread over the machine's cores: one pool, started once, when worth it.

Why: after a sweep, the report scores every rate point on 1,000 resamples of the images and draws a
BD-rate per codec and resample (`bootstrap`); on the default run that is most of the time after
the sweep, and it ran on one core of a machine whose other cores sat idle. The work splits into
independent calls (one per point, one per codec pair) whose results do not depend on where they
run, so the numbers are the same with any number of processes.

Processes are spawned, not forked: this process has started torch's thread pools, and a forked
child inheriting them can hang. Spawning costs an import of vcmbench per worker (seconds), so small
jobs (tests, a report of a few points) stay in this process: `min_calls` says how many calls make
the pool worth it. The pool is kept for the rest of the command and shut down at exit.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

MAX_PROCESSES = 8

_POOL: ProcessPoolExecutor | None = None


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _pool(processes: int) -> ProcessPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn"))
        atexit.register(_POOL.shutdown, cancel_futures=True)
    return _POOL


def process_map(fn: Callable[..., Any], calls: Sequence[tuple], *, min_calls: int) -> list[Any]:
    """[fn(*args) for args in calls], in that order; on a pool of worker processes (one per core, at
    most MAX_PROCESSES) when there are at least `min_calls` calls and more than one core, else here.
    `fn` must be a module-level function and its arguments and results picklable."""
    processes = min(available_cores(), MAX_PROCESSES)
    if processes < 2 or len(calls) < max(min_calls, 2) or mp.current_process().name != "MainProcess":
        return [fn(*args) for args in calls]
    pool = _pool(processes)
    return list(pool.map(_call, [(fn, args) for args in calls]))


def _call(job: tuple[Callable[..., Any], tuple]) -> Any:
    fn, args = job
    return fn(*args)
