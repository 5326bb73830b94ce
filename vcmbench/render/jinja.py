"""The Jinja2 environment and stylesheet every report template renders with (render/templates/)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pandas as pd

from vcmbench.tables import md_table

if TYPE_CHECKING:
    from markupsafe import Markup

MISSING = "–"  # the report's mark for a number that is not there


#: a cell that reads as a figure (a number, a percentage, an interval, the missing mark): right-aligned
_FIGURE = re.compile(r"^[\s\d.,%+\-−–eE\[\]()±⚠×x/]*$")


def html_table(df: pd.DataFrame, cls: str = "") -> str:
    """The table as HTML; cells of text (names, descriptions) are marked `t`, left-aligned, figures stay right."""
    html = df.to_html(index=False, escape=True, border=0, na_rep=MISSING, classes=cls or None)
    return re.sub(
        r"<td>(.*?)</td>",
        lambda m: m.group(0) if _FIGURE.match(m.group(1)) else f'<td class="t">{m.group(1)}</td>',
        html,
    )


def figure_align(df: pd.DataFrame) -> str:
    """Markdown alignment of a table by its cells, the rule html_table applies: a column whose every
    cell reads as a figure (and some hold a digit) is right-aligned, any other (names, notes) left."""

    def figures(col: pd.Series) -> bool:
        cells = [str(v) for v in col]
        return bool(cells) and all(_FIGURE.match(c) for c in cells) and any(ch.isdigit() for c in cells for ch in c)

    return "".join("r" if figures(df[c]) else "l" for c in df.columns)


def inline_html(text: str) -> Markup:
    """A legend's markdown emphasis for HTML: **bold** stays bold, the *italic* marks are dropped."""
    from markupsafe import Markup, escape

    bold = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", str(escape(text)))
    return Markup(bold.replace("*", ""))


def templates(autoescape: bool):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("vcmbench.render", "templates"),
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md"] = md_table
    env.filters["md_code"] = lambda v: f"`{v}`"
    env.filters["html_table"] = lambda df, cls="": jinja2.filters.Markup(html_table(df, cls))
    env.filters["inline_html"] = inline_html
    return env


CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #333}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}.bd td:last-child,td.t{text-align:left}
.note{color:#7a4a00}.legend{font-size:.88em;color:#444;max-width:60em}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
code{background:#f3f3f3;padding:0 .2em}
"""
