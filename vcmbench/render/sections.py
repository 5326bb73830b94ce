"""The shape of one section of the report, as both templates (report.md.j2, report.html.j2) render it.

A section is one (dataset, model) under one task metric. Image runs and video runs fill it with
different tables, but the report reads the same way for both, leading with the answer: the title,
a lead paragraph saying what the numbers are, the notes, the RD figures, then the *answer* blocks
(BD-rate tables) and after them the *detail* blocks (rate points, codecs, speed, ...). Because the
templates only walk these lists, a kind of run adds sections by filling them, never by a second
template.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

import pandas as pd

from vcmbench.tables import Source


class Section(Protocol):
    """What the report asks of a section, whatever kind of run it comes from."""

    figures: dict[str, list[Path]]  # a key per figure -> [png, svg]

    @property
    def title(self) -> str:
        """The section's heading (dataset / model, and the task metric where a model has two)."""
        ...

    def context(self, out_dir: Path, sources: list[Source]) -> dict:
        """The section as the templates render it (`section` below)."""
        ...

    def summary(self) -> list[str]:
        """The lines `vcmbench report` prints for the section: its BD-rate table(s) and notes."""
        ...


def section(
    title: str,
    lead: list[str],
    notes: list[str],
    figures: list[dict],
    answer: list[dict],
    details: list[dict],
) -> dict:
    """One section's context: `answer` blocks come right after the figures, `details` after them."""
    return {"title": title, "lead": lead, "notes": notes, "figures": figures, "answer": answer, "details": details}


def block(
    heading: str,
    table: pd.DataFrame | None,
    align: str = "",
    *,
    legends: list[str] | None = None,
    bd: bool = False,
    empty: str = "",
) -> dict:
    """A heading, its table (or the sentence `empty` where there is none) and the legends below it.

    `align` is one letter per column for markdown (l: text, r: figures), so text columns stay
    left-aligned; `bd` marks a BD-rate table for the HTML stylesheet (its last column, the note,
    is text).
    """
    return {"heading": heading, "table": table, "align": align, "legends": legends or [], "bd": bd, "empty": empty}


def figure(out_dir: Path, paths: list[Path], alt: str) -> dict:
    """One figure as the templates show it: the PNG inline (HTML embeds it), the SVG linked."""
    png, svg = Path(paths[0]), Path(paths[1])
    return {
        "alt": alt,
        "png_path": png,
        "png": png.relative_to(out_dir).as_posix(),
        "svg": svg.relative_to(out_dir).as_posix(),
        "svg_name": svg.name,
    }


def slug(*parts: str) -> str:
    """A file-name-safe stem of the figure of a section (dataset, model, ...)."""
    return "__".join(re.sub(r"[^A-Za-z0-9_.=-]+", "_", p) for p in parts)
