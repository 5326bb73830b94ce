"""Checks of single config values, with the one-line error a user needs.

Hydra configs are untyped YAML, so `workers=abc` or `dataset.max_images=-3` arrive as they
were typed. Each check names the setting, the bad value and what would be accepted, so the
CLI can print it as one `vcmbench: error:` line before any work starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from vcmbench.determinism import DEFAULT as DEFAULT_DETERMINISM
from vcmbench.determinism import check_mode
from vcmbench.errors import ConfigError
from vcmbench.paths import is_none
from vcmbench.types import TASK_COLUMNS

#: the report's BD-rate intervals by default (conf/config.yaml `bootstrap:`, `vcmbench report`'s flags)
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95


def as_int(
    value: object, setting: str, minimum: int | None = None, maximum: int | None = None, allow_none: bool = False
) -> int | None:
    """`value` as an int within [minimum, maximum]; None allowed only with allow_none."""
    if allow_none and is_none(value):
        return None
    bounds = _bounds(minimum, maximum) + (" or null" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{setting}={value!r}: not an integer; use an integer {bounds}")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{setting}={value!r}: not an integer; use an integer {bounds}") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ConfigError(f"{setting}={number}: out of range; use an integer {bounds}")
    return number


def as_bool(value: object, setting: str) -> bool:
    """`value` as a bool: true/false (YAML), or the strings true/false/1/0."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigError(f"{setting}={value!r}: not a boolean; use {setting}=true or {setting}=false")


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"from {minimum} to {maximum}"
    if minimum is not None:
        return f">= {minimum}"
    if maximum is not None:
        return f"<= {maximum}"
    return ""


#: the timing pass's arithmetic (vcmbench.timing_pass)
TIMING_ARITHMETIC = ("native", "sweep")


@dataclass(frozen=True)
class TimingSettings:
    """The `timing` node: how many items the pass codes again (0: no pass) and in which arithmetic."""

    items: int = 2
    arithmetic: str = "native"

    @classmethod
    def from_config(cls, node) -> TimingSettings:
        node = node or {}
        arithmetic = str(node.get("arithmetic", "native"))
        if arithmetic not in TIMING_ARITHMETIC:
            raise ConfigError(
                f"timing.arithmetic={arithmetic!r}: choose native (torch's float kernels) or sweep "
                f"(the run's determinism mode)"
            )
        return cls(as_int(node.get("items", 2), "timing.items", minimum=0), arithmetic)


@dataclass(frozen=True)
class RunSettings:
    """Every top-level setting of a run (conf/config.yaml over `run_config.RunConfig`), checked and
    typed in one place: a bad value is one line naming it, the value and the fix.

    `workers` processes code whole images in parallel (`auto`: one per CPU core, at most 8);
    each runs torch with `threads` intra-op threads (default 1). Under determinism=exact no
    number depends on either; under loose, features (and so bytes and detections) depend on the
    thread count but not on the number of workers: a run with 4 workers gives the records of a
    serial one, only sooner. Timings taken with workers > 1
    include contention, and the points table says so.
    """

    workers: int
    threads: int  # null in the config: torch's default for this machine
    progress: bool
    fidelity: bool
    report: bool
    complexity: bool = True  # kmac_* columns (vcmbench/metrics/complexity.py)
    determinism: str = "exact"  # exact | loose (vcmbench/determinism.py)
    task_metric: str = "auto"  # the report's task metric: box | mask | keypoints | semseg | auto
    timing: TimingSettings = TimingSettings()  # the timing pass after the sweep (vcmbench.timing_pass)
    repair: bool = False  # drop a damaged records.jsonl's bad lines and redo their work
    # the tracker's settings (vision.trackers: kind, ByteTracker's, jde: JDE's), as pairs (jde's too)
    tracker: tuple[tuple[str, object], ...] = ()
    # the report's intervals (bootstrap.BootstrapSettings): resamples, seed, coverage
    bootstrap: tuple[int, int, float] = (DEFAULT_RESAMPLES, DEFAULT_SEED, DEFAULT_LEVEL)

    @classmethod
    def from_config(cls, cfg) -> RunSettings:
        sweep = cfg.get("sweep") or {}
        workers = sweep.get("workers", 1)
        if isinstance(workers, str) and workers.strip() == "auto":
            workers = min(os.cpu_count() or 1, MAX_AUTO_WORKERS)
        return cls(
            workers=as_int(workers, "sweep.workers", minimum=1),
            threads=as_int(sweep.get("threads"), "sweep.threads", minimum=1, allow_none=True) or torch_threads(),
            progress=as_bool(sweep.get("progress", True), "sweep.progress"),
            fidelity=as_bool(cfg.get("fidelity", True), "fidelity"),
            report=as_bool(cfg.get("report", True), "report"),
            complexity=as_bool(cfg.get("complexity", True), "complexity"),
            determinism=check_mode(cfg.get("determinism", DEFAULT_DETERMINISM)),
            task_metric=check_task_metric(cfg.get("task_metric", "auto")),
            timing=TimingSettings.from_config(cfg.get("timing")),
            repair=as_bool(sweep.get("repair", False), "sweep.repair"),
            tracker=_pairs(_plain(cfg.get("tracker"))),
            bootstrap=_bootstrap(cfg.get("bootstrap")),
        )

    @property
    def tracker_settings(self) -> dict[str, object]:
        return {k: dict(v) if isinstance(v, tuple) else v for k, v in self.tracker}


def _pairs(node: dict) -> tuple[tuple[str, object], ...]:
    """A settings mapping as sorted pairs, a nested mapping (tracker.jde) as pairs too: hashable."""
    return tuple(sorted((k, _pairs(v) if isinstance(v, dict) else v) for k, v in node.items()))


def _plain(node) -> dict:
    """A config node as a plain dict (an empty one for null)."""
    from omegaconf import DictConfig, OmegaConf

    if node is None:
        return {}
    return dict(OmegaConf.to_container(node, resolve=True)) if isinstance(node, DictConfig) else dict(node)


def _bootstrap(node) -> tuple[int, int, float]:
    """`bootstrap:` (resamples, seed, level), each checked; the interval's own checks are the report's."""
    node = node or {}
    try:
        level = float(node.get("level", DEFAULT_LEVEL))
    except (TypeError, ValueError):
        raise ConfigError(f"bootstrap.level={node.get('level')!r}: give the interval's coverage, e.g. 0.95") from None
    return (
        as_int(node.get("resamples", DEFAULT_RESAMPLES), "bootstrap.resamples", minimum=0),
        as_int(node.get("seed", DEFAULT_SEED), "bootstrap.seed"),
        level,
    )


def check_task_metric(value: object) -> str:
    """`task_metric`: auto, or one of TASK_COLUMNS' tasks."""
    choices = ["auto", *TASK_COLUMNS]
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(
            f"task_metric={value!r}: choose one of {choices} (auto: semseg where the points have mIoU, else "
            "keypoints where the model gives them, else mask where it segments, else box)"
        )
    return value


MAX_AUTO_WORKERS = 8


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


_SHARD_FORM = re.compile(r"^\s*(\d+)\s*(?:/|of)\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Part `index` (1-based) of `count` of a dataset's items (`dataset.shard=K/N`; datasets/shards.py
    says which items)."""

    index: int
    count: int

    @property
    def label(self) -> str:
        """`K/N`, as given on the command line and written in points.csv."""
        return f"{self.index}/{self.count}"

    @property
    def tag(self) -> str:
        """`shardKofN`: the label where a slash cannot go (folder names)."""
        return f"shard{self.index}of{self.count}"


def parse_shard(value: object, setting: str = "dataset.shard") -> Shard | None:
    """`K/N` (or `KofN`, 1 <= K <= N) as a Shard; null/none/empty as no shard."""
    if is_none(value):
        return None
    match = _SHARD_FORM.match(str(value))
    if not match:
        raise ConfigError(
            f"{setting}={value!r}: not a shard; give K/N, the K-th of N parts (e.g. {setting}=1/4), "
            f"or {setting}=null for the whole set"
        )
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= index <= count:
        raise ConfigError(
            f"{setting}={value!r}: K must be from 1 to N; the parts of {count} are 1/{count} .. {count}/{count}"
        )
    return Shard(index, count)
