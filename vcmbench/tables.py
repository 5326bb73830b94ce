"""Points tables: read, check, merge, group. The bottom of reporting: analysis and rendering
build on it, and `vcmbench regress` needs nothing else of a report.

A source is a run folder (its points.csv with the resolved config, software versions and
overrides beside it; a folder holding several, e.g. a multirun sweep, is searched) or a
points-table .csv (anchors/*.csv: published curves, CI references).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from vcmbench.errors import VcmbenchError
from vcmbench.points import POINT_COLUMNS

REQUIRED_COLUMNS = ["dataset", "model", "codec", "rate", "bpp", "map"]


@dataclass
class Source:
    """One points table and, for a run folder, what describes the run."""

    path: Path
    label: str
    kind: str  # "run" (a run folder) or "table" (a points-table .csv, e.g. an anchor)
    points: pd.DataFrame
    config: str | None = None
    versions: dict | None = None
    overrides: list[str] | None = None
    metric: str | None = None  # the dataset's evaluator ('coco' / 'oid') from the run's config
    task_metric: str | None = None  # the run's config `task_metric` (box | mask | auto)
    timing: str | None = None  # how its enc_s/dec_s were taken, where a timing pass replaced the sweep's


def read_points(path: Path) -> pd.DataFrame:
    """Read a points table, checking the columns a report needs."""
    try:
        # names as written: PandaSet's sequences are "057", not 57
        text = {"rate": str, "codec": str, "dataset": str, "model": str, "sequence": str, "class": str}
        df = pd.read_csv(path, dtype=text)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise VcmbenchError(f"{path}: cannot read it as a points table (csv): {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise VcmbenchError(
            f"{path}: not a points table: column(s) {missing} missing (has {list(df.columns)}); "
            f"a points table has at least {POINT_COLUMNS} (docs/design.md)"
        )
    for col in ("bpp", "map", "ap50", "map_segm", "ap50_segm", "enc_s", "dec_s", "n_images", "n_failed"):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def _run_source(run_dir: Path, label: str) -> Source:
    src = Source(run_dir, label, "run", read_points(run_dir / "points.csv"))
    _use_timing_pass(src)
    cfg = run_dir / "config.resolved.yaml"
    if cfg.is_file():
        src.config = cfg.read_text()
        try:
            resolved = yaml.safe_load(src.config) or {}
            ds = resolved.get("dataset") or {}
            src.metric = ds.get("metric") if isinstance(ds, dict) else None
            src.task_metric = resolved.get("task_metric")
        except yaml.YAMLError:
            src.metric = None
    for name in ("run.json",):
        p = run_dir / name
        if p.is_file():
            try:
                src.versions = json.loads(p.read_text())
            except json.JSONDecodeError:
                src.versions = {"run.json": "unreadable"}
    ov = run_dir / ".hydra" / "overrides.yaml"
    if ov.is_file():
        src.overrides = [ln[2:].strip() for ln in ov.read_text().splitlines() if ln.startswith("- ")]
    return src


def _use_timing_pass(src: Source) -> None:
    """A run's timing pass (vcmbench.timing_pass), where it has one, gives the report its enc_s/dec_s:
    each codec timed alone, not beside the other workers' items."""
    from vcmbench.timing_table import describe, read_timing

    timing = read_timing(src.path)
    if timing is None:
        return
    alone = timing.set_index(["codec", "rate"])
    keys = list(zip(src.points.codec, src.points.rate.astype(str)))
    found = [k in alone.index for k in keys]
    if not any(found):
        return
    for col in ("enc_s", "dec_s"):
        sweep = pd.to_numeric(src.points[col], errors="coerce") if col in src.points else [float("nan")] * len(keys)
        src.points[col] = [float(alone.loc[k, col]) if f else s for k, f, s in zip(keys, found, sweep)]
    src.timing = describe(timing)


def load_sources(paths: list[str | Path]) -> list[Source]:
    """Run folders, folders of run folders (multirun sweeps) and points-table .csv files."""
    sources: list[Source] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            if p.name == "points.csv" and (
                (p.parent / "run.json").is_file() or (p.parent / "config.resolved.yaml").is_file()
            ):
                sources.append(_run_source(p.parent, p.parent.name))
            else:
                sources.append(Source(p, p.stem, "table", read_points(p)))
        elif p.is_dir():
            if (p / "points.csv").is_file():
                sources.append(_run_source(p, p.name))
                continue
            found = sorted(p.rglob("points.csv"))
            if not found:
                raise VcmbenchError(
                    f"{p}: no points.csv in this folder or below it; pass a run folder "
                    "(results/<run>/, made by `vcmbench run`) or a points-table .csv"
                )
            sources.extend(_run_source(f.parent, str(f.parent.relative_to(p))) for f in found)
        else:
            raise VcmbenchError(
                f"{p}: no such file or folder; pass a run folder (holding points.csv) or a points-table .csv"
            )
    seen: dict[str, int] = {}
    for s in sources:  # unique labels
        n = seen.get(s.label, 0)
        seen[s.label] = n + 1
        if n:
            s.label = f"{s.label} ({n + 1})"
    return sources


def merge_points(sources: list[Source]) -> tuple[pd.DataFrame, list[str]]:
    """One table of every source's points; a (dataset, model, codec, rate) given twice keeps the last."""
    frames = []
    for s in sources:
        df = s.points.copy()
        df["_source"] = s.label
        frames.append(df)
    if not frames:
        raise VcmbenchError("nothing to report: pass at least one run folder or points table")
    merged = pd.concat(frames, ignore_index=True, sort=False)
    notes = []
    key = ["dataset", "model", "codec", "rate"]
    dup = merged.duplicated(key, keep="last")
    for _, row in merged[dup].iterrows():
        later = merged[(merged[key] == row[key]).all(axis=1) & ~dup]["_source"].iloc[0]
        notes.append(
            f"{row.dataset} / {row.model}: {row.codec} {row.rate} is in both {row._source} and {later}; "
            f"the points of {later} (given later) are used"
        )
    return merged[~dup].reset_index(drop=True), notes


def groups(points: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """(dataset, model) groups in order of first appearance."""
    keys = list(dict.fromkeys(zip(points.dataset, points.model)))
    return [((d, m), points[(points.dataset == d) & (points.model == m)]) for d, m in keys]


def codec_order(points: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(points.codec))


def codecs_with_role(points: pd.DataFrame, role: str) -> list[str]:
    """Codecs whose rows say `role` (the codec yaml's meta.role, carried in points.csv), those
    measured in a run (bytes known) before published curves (bpp only)."""
    if "role" not in points.columns:
        return []
    found = [c for c in codec_order(points) if (points.loc[points.codec == c, "role"] == role).any()]
    measured = {c for c in found if "bytes" in points.columns and points.loc[points.codec == c, "bytes"].notna().any()}
    return sorted(found, key=lambda c: c not in measured)


def encoder_of(points: pd.DataFrame, codec: str) -> str:
    """The codec's encoder and preset as its rows record them (`encoder` column), or "" for a
    table made before vcmbench recorded them."""
    if "encoder" not in points.columns:
        return ""
    named = points.loc[(points.codec == codec) & points.encoder.notna(), "encoder"].astype(str)
    return named.iloc[0] if len(named) and named.iloc[0].strip() else ""


def codec_title(points: pd.DataFrame, codec: str) -> str:
    """`anchor_vvc (libvvenc preset faster)`: how a report names a codec BD-rates are taken against."""
    encoder = encoder_of(points, codec)
    return f"{codec} ({encoder})" if encoder else f"{codec} (encoder not recorded)"


def codecs_table(points: pd.DataFrame) -> pd.DataFrame:
    """One row per codec: its role and encoder (the report's "Codecs" table)."""

    def role(codec: str) -> str:
        known = points.loc[points.codec == codec, "role"].dropna() if "role" in points.columns else []
        return str(known.iloc[0]) if len(known) else "test"

    return pd.DataFrame(
        [
            {"codec": c, "role": role(c), "encoder": encoder_of(points, c) or "(not recorded)"}
            for c in codec_order(points)
        ]
    )


def md_table(df: pd.DataFrame, align: str = "") -> str:
    """A GitHub-flavoured markdown table of a frame of strings (no `tabulate` needed).

    `align` has one letter per column, l(eft) or r(ight); columns past its end are left-aligned.
    """

    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [cell(c) for c in df.columns]
    marks = ["---:" if align[i : i + 1] == "r" else ":---" for i in range(len(cols))]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def text_table(df: pd.DataFrame, align: str = "") -> str:
    """A plain-text table for the terminal; `align` as in md_table (default: left)."""
    cols = [str(c) for c in df.columns]
    rows = [[str(v) for v in r] for r in df.itertuples(index=False)]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]

    def line(vals: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if align[i : i + 1] == "r" else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths))
        ).rstrip()

    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows])
