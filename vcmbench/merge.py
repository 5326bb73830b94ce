"""`vcmbench merge`: the shards of one sweep -> one run folder, as if one process had run it.

Each shard (`dataset.shard=K/N`) is an ordinary run folder over part of the items. Merging
concatenates their records and builds the points table from the union once (aggregate.write_tables:
the same code as the end of a sweep, with no model or codec built), so mAP is the mAP of the whole set, never an average of
the shards' mAPs, and every column but the times equals an unsharded run's.

It refuses, in one line each: shards whose settings differ (anything but the shard and the
settings that change no number), two folders holding the same items (the same shard twice, or
parts of different cuts), and a set the shards do not cover (a missing shard, named with how many
items it holds, or a shard that did not finish). `allow_partial` merges what is there instead, and
the points table says so (`n_images`, `partial`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from vcmbench.aggregate import RunDescription, write_tables
from vcmbench.atomic import write_bytes
from vcmbench.datasets.shards import SHARD_KEY, Shard, parse_shard, partition
from vcmbench.errors import VcmbenchError, error_line
from vcmbench.provenance import read_run_info
from vcmbench.records import Record, read_records, write_records

# Settings that change no number (or only a path on the machine that ran the shard); every other
# setting must be the same in all shards of a sweep.
NEUTRAL_SETTINGS = (
    "sweep.workers",
    "sweep.progress",
    "sweep.repair",
    "workers",  # the same three in shards made before they moved under `sweep:`
    "progress",
    "repair",
    "report",
    "results_dir",
    "run_name",
    "task_metric",
    "bootstrap",
    f"dataset.{SHARD_KEY}",
    "dataset.cache_dir",
)


class MergeError(VcmbenchError):
    """Run folders that are not the shards of one sweep, or that do not cover its items."""


@dataclass
class ShardRun:
    """One run folder given to the merge: its config, its shard (1/1 when unsharded) and run.json."""

    path: Path
    config: DictConfig
    shard: Shard
    info: dict

    @property
    def label(self) -> str:
        return f"shard {self.shard.label} ({self.path})"


def read_shard_run(path: str | Path) -> ShardRun:
    path = Path(path)
    for need in ("config.resolved.yaml", "records.jsonl"):
        if not (path / need).is_file():
            raise MergeError(f"{path}: no {need}; pass run folders made by `vcmbench run dataset.shard=K/N`")
    cfg = OmegaConf.load(path / "config.resolved.yaml")
    shard = parse_shard(cfg.dataset.get(SHARD_KEY), f"{path}/config.resolved.yaml: dataset.{SHARD_KEY}")
    return ShardRun(path, cfg, shard or Shard(1, 1), read_run_info(path))


def settings_of(cfg: DictConfig) -> dict[str, object]:
    """Every setting of a resolved config that can change a number, flattened to dotted keys."""
    flat: dict[str, object] = {}

    def walk(node: object, prefix: str) -> None:
        if prefix and any(prefix == n or prefix.startswith(n + ".") for n in NEUTRAL_SETTINGS):
            return
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def check_same_settings(runs: list[ShardRun]) -> None:
    first = settings_of(runs[0].config)
    for run in runs[1:]:
        other = settings_of(run.config)
        for key in sorted(set(first) | set(other)):
            if first.get(key) != other.get(key):
                raise MergeError(
                    f"{run.path}: {key}={other.get(key)!r}, but {runs[0].path} has "
                    f"{key}={first.get(key)!r}; merge the shards of one sweep only (the same settings "
                    f"but dataset.shard)"
                )


def check_cut(runs: list[ShardRun]) -> int:
    """N of the sweep's K/N (every folder must be cut the same way, each part given once)."""
    counts = sorted({r.shard.count for r in runs})
    if len(counts) > 1:
        raise MergeError(
            "overlapping shards: "
            + ", ".join(f"{r.path} is part {r.shard.label}" for r in runs)
            + f"; parts of a cut into {counts[0]} and of one into {counts[1]} hold the same items: "
            "merge the shards of one cut"
        )
    seen: dict[int, ShardRun] = {}
    for run in runs:
        if run.shard.index in seen:
            raise MergeError(
                f"overlapping shards: {seen[run.shard.index].path} and {run.path} are both shard "
                f"{run.shard.label}; pass one of them"
            )
        seen[run.shard.index] = run
    return counts[0]


def run_description(runs: list[ShardRun]) -> RunDescription:
    """The shards' common description of their model and codecs (run.json): what the tables need,
    so the merge builds no model and no codec (no VTM binary needed where shards are merged)."""
    first = RunDescription.from_json(runs[0].info)
    for run in runs:
        mine = RunDescription.from_json(run.info)
        if mine is None:
            raise MergeError(
                f"{run.path}/run.json describes no model and codecs (made by an older vcmbench); rerun "
                "that shard with the same settings: it resumes from its records and writes them"
            )
        if mine != first:
            raise MergeError(
                f"{run.path}: its codecs or model ({mine.model}, {[c.encoder for c in mine.codecs]}) differ "
                f"from {runs[0].path}'s ({first.model}, {[c.encoder for c in first.codecs]}); merge the "
                "shards of one sweep, coded with the same encoders"
            )
    return first


def merge_runs(paths: list[str | Path], out: str | Path, allow_partial: bool = False) -> pd.DataFrame:
    """Merge the shard folders `paths` into the run folder `out`; returns its points table."""
    from vcmbench.datasets.shards import instantiate_whole
    from vcmbench.provenance import provenance
    from vcmbench.run import software_versions

    if not paths:
        raise MergeError("no run folders to merge; pass the shards' run folders")
    runs = sorted((read_shard_run(p) for p in paths), key=lambda r: r.shard.index)
    out = Path(out)
    if any(out.resolve() == r.path.resolve() for r in runs):
        raise MergeError(f"--out {out}: that is one of the shards; give the merged run its own folder")
    check_same_settings(runs)
    count = check_cut(runs)
    cfg = runs[0].config.copy()
    cfg.dataset[SHARD_KEY] = None
    whole, _ = instantiate_whole(cfg.dataset)
    parts = partition(whole.records, count)
    description = run_description(runs)
    wanted = description.wanted()
    unit = "sequences" if hasattr(whole, "sequences") else "images"

    records: list[Record] = []
    holder: dict[int, ShardRun] = {}
    problems: list[str] = []
    for run in runs:
        mine = [r for r in read_records(run.path / "records.jsonl") if (r.codec, r.rate, r.setup) in wanted]
        for r in mine:
            other = holder.setdefault(r.image_id, run)
            if other is not run:
                raise MergeError(
                    f"overlapping shards: {other.path} and {run.path} both hold {unit[:-1]} "
                    f"{r.image_id}; pass each item's shard once"
                )
        part = {item.image_id for item in parts[run.shard.index - 1]}
        stray = sorted({r.image_id for r in mine} - part)
        if stray:
            raise MergeError(
                f"{run.path}: holds {len(stray)} {unit} outside shard {run.shard.label} (e.g. {stray[0]}); "
                "it was made from another item list (dataset settings) than the other shards"
            )
        done = {(r.image_id, r.codec, r.rate) for r in mine}
        missing = len(part) * len(wanted) - len(done)
        if missing:
            problems.append(
                f"{run.label} is unfinished: {missing} of {len(part) * len(wanted)} {unit} x rate points "
                "missing (rerun it: it resumes)"
            )
        records.extend(mine)
    given = {r.shard.index for r in runs}
    for index in range(1, count + 1):
        if index not in given:
            problems.append(f"shard {index}/{count} is missing ({len(parts[index - 1])} of {len(whole)} {unit})")
    if problems and not allow_partial:
        raise MergeError(
            "; ".join(problems) + f"; pass every shard's run folder (or run the missing ones: vcmbench run "
            f"dataset.shard=K/{count} ...), or --allow-partial to merge what is there"
        )

    points_per_item = Counter(r.image_id for r in records)
    covered = [i for i in whole.image_ids if points_per_item.get(i, 0) == len(wanted)]
    dataset = whole.subset(covered) if problems else whole
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("points.csv", "classes.csv"):
        (out / stale).unlink(missing_ok=True)
    (out / "config.resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    write_records(out / "records.jsonl", records)
    counted = [r.path / "complexity.csv" for r in runs if (r.path / "complexity.csv").is_file()]
    if counted:  # every shard counts on the whole set's first item: the counts are the same
        shutil.copyfile(counted[0], out / "complexity.csv")
    points = write_tables(cfg, out, records, dataset, description, {"partial": bool(problems)})
    info = {
        **software_versions(),
        **provenance(None),
        "description": description.to_json(),
        "finished": True,
        "items": len(dataset),
        "items_whole": len(whole),
        "partial": bool(problems),
        "missing": problems,
        "shards": [
            {
                "path": str(r.path.resolve()),
                "shard": r.shard.label,
                "items": len(parts[r.shard.index - 1]),
                **{
                    k: r.info.get(k)
                    for k in ("git_commit", "git_dirty", "host", "job", "workers", "threads", "finished")
                },
            }
            for r in runs
        ],
    }
    write_bytes(out / "run.json", json.dumps(info, indent=1).encode())
    return points


def merge_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="vcmbench merge",
        description="Merge the run folders of a sharded sweep (dataset.shard=K/N) into one run folder: the records "
        "concatenated, every metric computed once over the union of the items.",
    )
    ap.add_argument("paths", nargs="+", metavar="RUN_DIR", help="the shards' run folders")
    ap.add_argument("--out", required=True, metavar="DIR", help="the merged run folder (vcmbench report DIR)")
    ap.add_argument(
        "--allow-partial",
        action="store_true",
        help="merge the shards there are (points over the items they cover; points.csv says partial)",
    )
    args = ap.parse_args(argv)
    try:
        points = merge_runs(args.paths, args.out, args.allow_partial)
    except VcmbenchError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    cols = [
        c
        for c in ("codec", "rate", "sequence", "n_images", "n_failed", "bpp", "kbps", "map", "partial")
        if c in points.columns
    ]
    print(points[cols].to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    print(f"points table: {Path(args.out) / 'points.csv'}")
    return 0


def merge_sharded(paths: list[str | Path]) -> list[Path]:
    """Report inputs with each sweep folder's shards merged (`vcmbench report SWEEP_DIR`).

    Below a folder that is not itself a run: a merged folder (its run.json lists its shards) stands
    for the shards it lists; the other shards are grouped by their settings and each group is merged
    into `<folder>/merged` (`merged-2`, ... for more groups), with the same refusals as `vcmbench
    merge`. Folders without shards are passed on as they are.
    """
    out: list[Path] = []
    for raw in paths:
        top = Path(raw)
        if not top.is_dir() or (top / "points.csv").is_file():
            out.append(top)
            continue
        folders = sorted(f.parent for f in top.rglob("points.csv"))
        infos = {f: read_run_info(f) for f in folders}
        merged = {f for f, info in infos.items() if info.get("shards")}
        covered = {s["path"] for f in merged for s in infos[f]["shards"]}
        groups: dict[str, list[Path]] = {}
        plain = []
        for f in folders:
            if f in merged:
                plain.append(f)
            elif str(f.resolve()) in covered:
                continue  # merged already: its merged folder stands for it
            elif infos[f].get("shard"):
                key = json.dumps(settings_of(read_shard_run(f).config), sort_keys=True, default=str)
                groups.setdefault(key, []).append(f)
            else:
                plain.append(f)
        if not groups and not merged:
            out.append(top)  # no shards below: the folder as it is
            continue
        for i, members in enumerate(groups.values(), start=1):
            target = top / ("merged" if i == 1 else f"merged-{i}")
            merge_runs(members, target)
            plain.append(target)
        out.extend(sorted(set(plain)))
    return out
