"""Records -> the run folder's tables: a function of the records, the run's description and the
evaluators, with no model or codec alive.

The end of a sweep, `vcmbench merge` and anything else that turns records into points call
`write_tables`. What it needs of the model and the codecs (their names, roles, encoders, rate
labels and setup hashes, the split point) the sweep writes into run.json as the run's
`description`, so merging shards coded with VTM needs no VTM binary on the merging host.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from vcmbench.datasets.base import Dataset
from vcmbench.datasets.sequences import SequenceDataset
from vcmbench.points import CodecLabel, build_points, build_sequence_points
from vcmbench.records import Record, write_detections
from vcmbench.settings import RunSettings


@dataclass(frozen=True)
class CodecDescription:
    """One codec of a run as its points need it."""

    name: str
    role: str
    encoder: str  # the encoder and its preset (and, for sequences, the GOP it codes with)
    setup: str  # the hash that tells its records from another setup's
    rates: tuple[str, ...]  # its rate points' labels
    foreign: bool = False  # coded another network's features than its checkpoints were trained on


@dataclass(frozen=True)
class RunDescription:
    """The model and codecs of a run, as run.json keeps them (`description`)."""

    model: str
    split: str
    codecs: tuple[CodecDescription, ...]

    def to_json(self) -> dict:
        return {"model": self.model, "split": self.split, "codecs": [asdict(c) for c in self.codecs]}

    @classmethod
    def from_json(cls, info: dict) -> RunDescription | None:
        """The description in a run.json's contents; None for a run folder made before runs kept one."""
        d = info.get("description")
        if not d:
            return None
        codecs = tuple(
            CodecDescription(
                c["name"], c["role"], c["encoder"], c["setup"], tuple(c["rates"]), bool(c.get("foreign", False))
            )
            for c in d["codecs"]
        )
        return cls(d["model"], d["split"], codecs)

    def wanted(self) -> set[tuple[str, str, str]]:
        """The (codec, rate, setup) keys of the records that belong to this run."""
        return {(c.name, rate, c.setup) for c in self.codecs for rate in c.rates}


def complexity_columns(run_dir: Path, description: RunDescription) -> pd.DataFrame | None:
    """The kmac_* columns of the run's rate points from <run dir>/complexity.csv (counted by the
    sweep, copied by a merge), or None where it was not counted."""
    path = run_dir / "complexity.csv"
    if not path.is_file():
        return None
    counted = pd.read_csv(path)
    wanted = description.wanted()
    rows = [(c, r, s) in wanted for c, r, s in zip(counted.codec, counted.rate, counted.setup)]
    return counted[rows].drop(columns="setup")


def write_tables(
    cfg: DictConfig,
    run_dir: Path,
    records: list[Record],
    dataset: Dataset | SequenceDataset,
    description: RunDescription,
    columns: dict[str, object] | None = None,
) -> pd.DataFrame:
    """The run folder's points.csv (classes.csv for sequences) and detections/ from the records of
    `dataset`'s items.

    Metrics are computed once over the union of the items' records (never averaged over parts);
    `columns` are appended to every row (a shard's `shard`/`partial`).
    """
    settings = RunSettings.from_config(cfg)
    wanted = description.wanted()
    items = set(dataset.image_ids)
    finished = [r for r in records if (r.codec, r.rate, r.setup) in wanted and r.image_id in items]
    labels = {c.name: CodecLabel(c.role, c.encoder) for c in description.codecs}
    # a trained codec that coded another network's features than it was trained for (allow_foreign):
    # the `foreign` column is there when one did
    foreign = {c.name for c in description.codecs if c.foreign}
    if isinstance(dataset, SequenceDataset):
        points, classes = build_sequence_points(finished, dataset, description.model, labels, settings.tracker_settings)
        classes["determinism"] = settings.determinism
        if foreign:
            classes["foreign"] = classes["codec"].isin(foreign)
        for name, value in (columns or {}).items():
            classes[name] = value
        classes.to_csv(run_dir / "classes.csv", index=False)
    else:
        points = build_points(
            finished,
            dataset.name,
            description.model,
            dataset.metric,
            dataset.annotation_file,
            dataset.image_ids,
            labels=labels,
        )
        counted = complexity_columns(run_dir, description) if settings.complexity else None
        if counted is not None and len(points):
            points = points.merge(counted, on=["codec", "rate"], how="left")
    # the split point (fpn: P2..P5 | backbone: C2..C5; the model column names it too when not fpn),
    # after the design's columns, whose order is fixed
    points["split"] = description.split
    # exact: these numbers are the same on any machine; loose: they depend on the CPU and threads (run.json says which)
    points["determinism"] = settings.determinism
    if foreign:
        points["foreign"] = points["codec"].isin(foreign)
    for name, value in (columns or {}).items():
        points[name] = value
    write_detections(finished, dataset.image_ids, run_dir / "detections")
    points.to_csv(run_dir / "points.csv", index=False)
    return points
