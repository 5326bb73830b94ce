"""timing.csv, the timing pass's table (vcmbench.timing_pass), as the report reads it back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TIMING_FILE = "timing.csv"
#: how the pass's times were taken: the report's legend reads them back
COLUMNS = ["codec", "rate", "enc_s", "dec_s", "items", "arithmetic", "threads", "cpu"]


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
        f"{items} item(s), {how}, {int(table['threads'].iloc[0])} torch thread(s), on {table['cpu'].iloc[0]} "
        f"(points.csv keeps the sweep's own times, taken with other items coded in parallel)"
    )
