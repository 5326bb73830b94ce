"""The report header's sentence on whether its numbers hold on another machine.

A points table made with determinism=exact holds to the bit on any CPU and thread count; one made
loose holds on its own machine only (features, and so bytes and metrics, follow the CPU's
instruction set, vendor and the thread count). The sentence names the mode of every table the
report reads, and for loose ones the machine they were made on (run.json) and the mode that is not
machine-dependent.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vcmbench.provenance import read_run_info


def table_mode(points: pd.DataFrame, run_dir: Path | None = None) -> tuple[str, str]:
    """(mode, machine) of one points table: exact | loose | unknown (a table older than the column)."""
    info = read_run_info(run_dir) if run_dir is not None and Path(run_dir).is_dir() else {}
    mode = info.get("determinism") or ""
    if not mode and "determinism" in points.columns and points["determinism"].notna().any():
        mode = str(points["determinism"].dropna().iloc[0])
    mode = {"strict": "loose", "off": "loose"}.get(mode, mode)  # before exact existed every run was machine-dependent
    return (mode if mode in ("exact", "loose") else "unknown"), str(info.get("cpu_model") or "")


def statement(tables: list[tuple[str, pd.DataFrame, Path | None]]) -> str:
    """One sentence for the header from (label, points, run folder or None) of each source."""
    modes = {label: table_mode(points, run_dir) for label, points, run_dir in tables}
    if modes and all(m == "exact" for m, _ in modes.values()):
        return (
            "Numbers: machine-independent (determinism=exact): every byte count, metric and hash is the same "
            "on any CPU and thread count; only the seconds are this machine's."
        )
    dependent = [
        f"{label} ({'loose' if m == 'loose' else 'mode not recorded'}{', ' + cpu if cpu else ''})"
        for label, (m, cpu) in modes.items()
        if m != "exact"
    ]
    return (
        "Numbers: machine-dependent in " + ", ".join(dependent) + ": features, and with them bytes and metrics, "
        "follow the CPU and the thread count there; `vcmbench run determinism=exact` (the default) gives numbers "
        "that are the same on any machine."
    )
