"""Do two points tables hold the same numbers? Every column but the clocks, to the last digit.

A refactor must not move a number: run the default sweep before and after (same machine, same
`threads`) and compare, e.g. against the committed reference made before the change:

    vcmbench run sweep.progress=false report=false hydra.run.dir=results/after
    python benchmarks/same_numbers.py anchors/ci/points.csv results/after/points.csv

Prints one line per differing (codec, rate, column) and a summary; exits 1 when anything but
a time column (`*_s`, and `workers` / `contended`, which say how the times were taken) differs,
when a row is in one table only, or when the second table lacks a column of the first. Columns
the second table adds (new figures) are listed, not compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

POINT_KEY = ["dataset", "model", "codec", "rate"]
HOW_TIMED = {"workers", "contended"}


def row_key(a: pd.DataFrame) -> list[str]:
    """What identifies a row: (dataset, model, codec, rate), and the sequence or class of a video run's
    tables (a classes table has one row per class of each point)."""
    return POINT_KEY + [c for c in ("sequence", "class") if c in a.columns]


def compared_columns(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    key = row_key(a)
    cols = [c for c in a.columns if c in b.columns and c not in key]
    return [c for c in cols if not c.endswith("_s") and c not in HOW_TIMED]


def differences(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    key = row_key(a)
    out = []
    ka, kb = set(map(tuple, a[key].astype(str).values)), set(map(tuple, b[key].astype(str).values))
    out += [f"row only in the first table: {k}" for k in sorted(ka - kb)]
    out += [f"row only in the second table: {k}" for k in sorted(kb - ka)]
    only_a = sorted(set(compared_columns(a, a)) - set(b.columns))
    out += [f"column only in the first table (a number was dropped): {c}" for c in only_a]
    merged = a.astype({k: str for k in key}).merge(b.astype({k: str for k in key}), on=key, suffixes=("_a", "_b"))
    for col in compared_columns(a, b):
        x, y = merged[f"{col}_a"], merged[f"{col}_b"]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            same = (x.to_numpy() == y.to_numpy()) | (np.isnan(x.to_numpy(float)) & np.isnan(y.to_numpy(float)))
        else:
            same = (x.astype(str) == y.astype(str)).to_numpy()
        for i in np.flatnonzero(~same):
            row = merged.iloc[i]
            where = " ".join(str(row[k]) for k in key[2:])
            out.append(f"{where} {col}: {x.iloc[i]!r} != {y.iloc[i]!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    args = ap.parse_args(argv)
    a, b = pd.read_csv(args.first), pd.read_csv(args.second)
    diffs = differences(a, b)
    for line in diffs:
        print(line)
    added = sorted(set(compared_columns(b, b)) - set(a.columns))
    if added:
        print(f"columns the second table adds (not compared): {', '.join(added)}")
    n_cols = len(compared_columns(a, b))
    print(
        f"{len(a)} / {len(b)} rows, {n_cols} columns compared (time columns left out): "
        + ("identical" if not diffs else f"{len(diffs)} differences")
    )
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
