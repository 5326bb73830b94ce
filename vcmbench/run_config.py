"""The schema of `vcmbench run`'s configuration, one structured config (Hydra's ConfigStore).

Every top-level setting of conf/config.yaml is declared here with its default; the yaml
(`defaults: [run_schema, ...]`) puts its values and their explanations on top, so a key that is
not here is refused when the command line is composed, and `vcmbench run --cfg job` shows the
whole run. The values the sweep reads are checked once, into `settings.RunSettings` (one line
naming the setting, the bad value and the fix); so the fields those checks cover stay `Any` here,
and Hydra's own type errors (a different wording) never reach a user first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from vcmbench.settings import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED

SCHEMA = "run_schema"


@dataclass
class SweepNode:
    """How the sweep runs (vcmbench.run): no number depends on these."""

    workers: Any = "auto"
    threads: Any = 1
    progress: Any = True
    repair: Any = False


@dataclass
class TimingNode:
    """The timing pass after the sweep (vcmbench.timing_pass)."""

    items: Any = 2
    arithmetic: Any = "native"


@dataclass
class BootstrapNode:
    """The report's BD-rate intervals (vcmbench.bootstrap)."""

    resamples: Any = DEFAULT_RESAMPLES
    seed: Any = DEFAULT_SEED
    level: Any = DEFAULT_LEVEL


@dataclass
class JDETrackerNode:
    """JDE's own tracker (vcmbench.vision.jde_tracker.JDETrackerSettings); the reference's defaults."""

    conf_thres: Any = 0.5
    track_buffer: Any = 30
    frame_rate: Any = 30  # the MPEG platform's, for every sequence; "sequence": each sequence's fps
    embedding_alpha: Any = 0.9
    motion_lambda: Any = 0.98
    embedding_thresh: Any = 0.7
    iou_thresh: Any = 0.5
    unconfirmed_thresh: Any = 0.7
    min_box_area: Any = 200.0
    max_aspect_ratio: Any = 1.6


@dataclass
class TrackerNode:
    """The tracker run on each sequence's decoded detections (vcmbench.vision.trackers): `kind`, the
    ByteTrack-style tracker's settings (vcmbench.vision.tracker) and JDE's under `jde`."""

    kind: Any = "auto"
    high_score: float = 0.7
    low_score: float = 0.1
    new_track_score: float = 0.8
    match_iou: float = 0.2
    max_age: int = 30
    per_class: bool = False
    jde: JDETrackerNode = field(default_factory=JDETrackerNode)


@dataclass
class RunConfig:
    """`vcmbench run`: dataset x model x codecs x rate points, and how the sweep runs."""

    dataset: Any = MISSING  # a conf/dataset/ config
    model: Any = MISSING  # a conf/model/ config
    codec: Any = None  # conf/codec/ configs; null: every codec of the default run
    run_name: str = MISSING
    results_dir: str = "results"
    sweep: SweepNode = field(default_factory=SweepNode)  # how the sweep runs
    determinism: Any = "exact"
    # what it measures and writes
    fidelity: Any = True
    complexity: Any = True
    task_metric: Any = "auto"
    report: Any = True
    timing: TimingNode = field(default_factory=TimingNode)
    bootstrap: BootstrapNode = field(default_factory=BootstrapNode)
    tracker: TrackerNode = field(default_factory=TrackerNode)


#: the settings that moved under `sweep:`, by their old top-level names
MOVED_TO_SWEEP = ("workers", "threads", "progress", "repair")


def moved_overrides(overrides: Sequence[str], warn: Callable[[str], None] | None = None) -> list[str]:
    """Command-line overrides with the old top-level names of the sweep's settings (`workers=2`)
    rewritten to their node (`sweep.workers=2`), so command lines and scripts written before the
    move keep working; `warn` gets one line per old name used."""
    out = []
    for override in overrides:
        prefix = override[: len(override) - len(override.lstrip("+~"))]
        key, sep, value = override[len(prefix) :].partition("=")
        if key in MOVED_TO_SWEEP and (sep or prefix == "~"):
            if warn is not None:
                warn(f"vcmbench: note: {key}= is now sweep.{key}= (the old name still works)")
            override = f"{prefix}sweep.{key}{sep}{value}"
        out.append(override)
    return out


ConfigStore.instance().store(name=SCHEMA, node=RunConfig)
