"""timing.csv, the timing pass's table (vcmbench.timing_pass), as the report reads it back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TIMING_FILE = "timing.csv"
#: how the pass's times were taken: the report's legend reads them back
COLUMNS = ["codec", "rate", "enc_s", "dec_s", "items", "arithmetic", "threads", "cpu"]
#: the cores other processes kept busy during the pass, on average (NaN where it cannot be read),
#: and the cores there are: a pass beside other work says so (timing.csv files made before it lack them)
LOAD_COLUMNS = ["others_cores", "cores"]
#: other processes' use above which the report warns that the pass's times are contended too
BUSY_CORES = 0.25


def read_timing(run_dir: Path) -> pd.DataFrame | None:
    """A run folder's timing pass, or None where it has none (or an unreadable one: the sweep's times stand)."""
    path = Path(run_dir) / TIMING_FILE
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype={"rate": str, "codec": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    return table if set(COLUMNS) <= set(table.columns) and len(table) else None


def describe(table: pd.DataFrame) -> str:
    """One sentence for the report: how the times it shows were taken."""
    items = int(table["items"].max())
    arithmetic = str(table["arithmetic"].iloc[0])
    how = {"native": "torch's float kernels", "exact": "the exact mode's float64 arithmetic"}.get(
        arithmetic, arithmetic
    )
    return (
        f"enc/dec times: a timing pass after the sweep, each codec alone in one process on the set's first "
        f"{items} item(s), {how}, {int(table['threads'].iloc[0])} torch thread(s), on {table['cpu'].iloc[0]}"
        f"{_load(table)} (points.csv keeps the sweep's own times, taken with other items coded in parallel)"
    )


def _load(table: pd.DataFrame) -> str:
    """What else ran during the pass: the figures are only uncontended on an otherwise idle machine."""
    if not set(LOAD_COLUMNS) <= set(table.columns):
        return ""
    others, cores = float(table["others_cores"].iloc[0]), int(table["cores"].iloc[0])
    if others != others:  # NaN: not measurable here
        return f" ({cores} cores; what else ran was not measured)"
    if others > BUSY_CORES:
        return (
            f" (WARNING: other processes kept {others:.2f} of its {cores} cores busy during the pass, so these "
            "times are contended too; rerun `vcmbench run` on an idle machine: it resumes and times again "
            "after deleting timing.csv)"
        )
    return f" (other processes: {others:.2f} of its {cores} cores busy during the pass)"
