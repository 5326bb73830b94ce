"""Rate-distortion and timing plots of a points table (matplotlib, Agg backend: no display needed).

Every figure is written as PNG (for the self-contained HTML report) and SVG (for papers).
Figures are meant to stay readable when printed in greyscale: each codec gets its own
marker *and* line style, not only its own colour; the anchor is the one dashed black line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless, deterministic

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

__all__ = ["CodecStyle", "codec_styles", "rd_plot", "time_plot", "layer_plot", "has_layers", "has_times", "FORMATS"]

FORMATS = ("png", "svg")
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#555555", "#F0E442"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*"]
_LINESTYLES = ["-", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1))]
_ANCHOR_COLOR = "black"


@dataclass(frozen=True)
class CodecStyle:
    color: str
    marker: str
    linestyle: object
    linewidth: float
    anchor: bool


RATE_LABELS = {
    "bpp": "bits per input-image pixel (bpp, log scale)",
    "kbps": "bit rate (kbps = 8 x bytes x fps / 1000 / frames, log scale)",
}


def codec_styles(codecs: list[str], anchor: str | None) -> dict[str, CodecStyle]:
    """One stable style per codec, in the order given; the anchor is black and dashed."""
    styles, k = {}, 0
    for codec in codecs:
        if codec == anchor:
            styles[codec] = CodecStyle(_ANCHOR_COLOR, "o", "--", 2.0, True)
            continue
        styles[codec] = CodecStyle(
            _COLORS[k % len(_COLORS)],
            _MARKERS[(k + 1) % len(_MARKERS)],  # "o" is the anchor's
            _LINESTYLES[k % len(_LINESTYLES)],
            1.6,
            False,
        )
        k += 1
    return styles


def _bpp_formatter(v: float, _pos: int) -> str:
    if v <= 0:
        return ""
    return f"{v:g}" if 1e-3 <= v < 1e4 else f"{v:.0e}"


def _log_axis(ax, axis: str) -> None:
    """Log scale with plain-number labels; minor ticks labelled too when the range is under a decade."""
    getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    target.set_major_locator(LogLocator(base=10, numticks=12))
    target.set_major_formatter(FuncFormatter(_bpp_formatter))
    lo, hi = getattr(ax, f"get_{axis}lim")()
    narrow = lo > 0 and math.log10(hi / lo) < 1.3
    target.set_minor_formatter(FuncFormatter(_bpp_formatter) if narrow else NullFormatter())


def _clamp_at_zero(ax, values) -> None:
    """Accuracy and time are never negative: no negative ticks, but room for markers sitting at 0."""
    vals = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    lo, hi = ax.get_ylim()
    if len(vals) and vals.min() >= 0 and lo < 0:
        hi = hi if hi > 0 else 1.0
        ax.set_ylim(-0.03 * hi, hi)


def _label(codec: str, style: CodecStyle, n_points: int) -> str:
    label = f"{codec} (anchor)" if style.anchor else codec
    return label if n_points != 1 else f"{label}, 1 point"


def _save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in FORMATS:
        path = stem.with_suffix(f".{fmt}")
        # Fixed metadata keeps the SVG byte-stable between runs (no date in it).
        meta = {"Date": None} if fmt == "svg" else {"Software": "vcmbench"}
        fig.savefig(path, dpi=150, bbox_inches="tight", metadata=meta)
        out.append(path)
    plt.close(fig)
    return out


def _curves(points: pd.DataFrame, ycol: str, codecs: list[str], xcol: str = "bpp"):
    for codec in codecs:
        sub = points[points.codec == codec]
        x = sub[xcol].astype(float)
        sub = sub[np.isfinite(x) & (x > 0)]
        sub = sub[np.isfinite(sub[ycol].astype(float))] if ycol in sub else sub.iloc[0:0]
        if len(sub):
            yield codec, sub.sort_values(xcol).assign(bpp=sub[xcol])


def _draw(
    ax, points: pd.DataFrame, ycol: str, codecs: list[str], styles: dict[str, CodecStyle], xcol: str = "bpp"
) -> bool:
    """Draw one line per codec (x: `xcol`); True when some point had failed decodes (ringed)."""
    any_failed = False
    for codec, sub in _curves(points, ycol, codecs, xcol):
        st = styles[codec]
        single = len(sub) == 1
        ax.plot(
            sub.bpp.astype(float),
            sub[ycol].astype(float),
            color=st.color,
            marker=st.marker,
            linestyle="none" if single else st.linestyle,
            linewidth=st.linewidth,
            markersize=(6 if st.anchor else 7) + (2 if single else 0),
            markerfacecolor="white" if st.anchor else st.color,
            markeredgecolor=st.color if st.anchor else "#222222",
            markeredgewidth=1.3 if st.anchor else 0.8,
            label=_label(codec, st, len(sub)),
            zorder=3 if st.anchor else 4,
        )
        if "n_failed" in sub:
            failed = sub[pd.to_numeric(sub.n_failed, errors="coerce").fillna(0) > 0]
            if len(failed):
                any_failed = True
                ax.plot(
                    failed.bpp.astype(float),
                    failed[ycol].astype(float),
                    linestyle="none",
                    marker="o",
                    markersize=15,
                    markerfacecolor="none",
                    markeredgecolor="#C00000",
                    markeredgewidth=1.5,
                    zorder=5,
                )
    return any_failed


def _failed_handle() -> Line2D:
    return Line2D(
        [],
        [],
        linestyle="none",
        marker="o",
        markersize=11,
        markerfacecolor="none",
        markeredgecolor="#C00000",
        markeredgewidth=1.5,
        label="point with failed decodes",
    )


def _legend(ax, extra: list | None = None) -> None:
    handles, labels = ax.get_legend_handles_labels()
    for h in extra or []:
        handles.append(h)
        labels.append(h.get_label())
    if handles:
        ax.legend(
            handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False, fontsize=9
        )


def rd_plot(
    points: pd.DataFrame,
    out_stem: Path,
    *,
    title: str,
    anchor: str | None = None,
    uncompressed: tuple[str, float] | None = None,
    metric: str = "map",
    metric_label: str = "mAP (%)",
    codecs: list[str] | None = None,
    rate_col: str = "bpp",
) -> list[Path]:
    """Task accuracy vs bits per pixel (or `rate_col="kbps"` for sequences; log x), one line per
    codec; returns the PNG and SVG paths.

    ``uncompressed`` = (label, accuracy) draws the accuracy of the uncompressed features as a
    horizontal line (the `raw` codec's mAP).
    """
    codecs = codecs or list(dict.fromkeys(points.codec))
    styles = codec_styles(codecs, anchor)
    fig, ax = plt.subplots(figsize=(8.0, 5.0))
    failed = _draw(ax, points, metric, codecs, styles, rate_col)
    if uncompressed is not None and math.isfinite(uncompressed[1]):
        label, value = uncompressed
        ax.axhline(
            value, color="#444444", linestyle=(0, (1, 2)), linewidth=1.4, zorder=2, label=f"{label}: {value:.2f}"
        )
    _log_axis(ax, "x")
    _clamp_at_zero(ax, points[metric] if metric in points else [])
    ax.set_xlabel(RATE_LABELS.get(rate_col, rate_col))
    ax.set_ylabel(metric_label)
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="major", color="#cccccc", linewidth=0.7)
    ax.grid(True, which="minor", axis="x", color="#eeeeee", linewidth=0.5)
    _legend(ax, [_failed_handle()] if failed else None)
    return _save(fig, out_stem)


def has_times(points: pd.DataFrame) -> bool:
    """Whether any point has a finite encode or decode time (published tables often have none)."""
    return any(
        col in points and np.isfinite(pd.to_numeric(points[col], errors="coerce")).any() for col in ("enc_s", "dec_s")
    )


def time_plot(
    points: pd.DataFrame,
    out_stem: Path,
    *,
    title: str,
    anchor: str | None = None,
    codecs: list[str] | None = None,
) -> list[Path]:
    """Encode and decode wall time per image vs bpp (two panels, log x; log y when times span >10x)."""
    codecs = codecs or list(dict.fromkeys(points.codec))
    styles = codec_styles(codecs, anchor)
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.4), sharex=True)
    failed = False
    for ax, col, what in ((axes[0], "enc_s", "encode"), (axes[1], "dec_s", "decode")):
        failed |= _draw(ax, points, col, codecs, styles)
        vals = pd.to_numeric(points[col], errors="coerce") if col in points else pd.Series(dtype=float)
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if len(vals) and vals.max() / vals.min() > 10:
            _log_axis(ax, "y")
            ax.set_ylabel(f"{what} time per image (s, log scale)")
        else:
            top = float(vals.max()) * 1.1 if len(vals) else 1.0
            ax.set_ylim(0, max(ax.get_ylim()[1], top))  # linear time axis starts at 0 (honest ratios)
            ax.set_ylabel(f"{what} time per image (s)")
        _log_axis(ax, "x")
        ax.set_xlabel("bits per input-image pixel (bpp, log scale)")
        ax.set_title(f"{what} time", fontsize=10)
        ax.grid(True, which="major", color="#cccccc", linewidth=0.7)
    fig.suptitle(title, fontsize=11)
    _legend(axes[1], [_failed_handle()] if failed else None)
    fig.tight_layout()
    return _save(fig, out_stem)


def has_layers(points: pd.DataFrame) -> bool:
    """Whether a layered (joint feature + image) codec has points here (its bpp_base column)."""
    return "bpp_base" in points and pd.to_numeric(points["bpp_base"], errors="coerce").notna().any()


def layer_plot(
    points: pd.DataFrame,
    out_stem: Path,
    *,
    title: str,
    anchor: str | None = None,
    metric_label: str = "mAP (%)",
    codecs: list[str] | None = None,
) -> list[Path]:
    """One RD panel per layer of the layered codecs, beside the codecs that serve the same user.

    Left, the machine: task accuracy vs the bits the task decoder reads: a layered codec's
    base layer (bpp_base), every other codec's whole payload. Middle and right, the person:
    image PSNR and MS-SSIM vs the bits the viewer reads: a layered codec's whole payload
    (both layers), an image codec's payload. Codecs that make no image (feature codecs) and
    the lossless reference (PSNR infinite) have no line there.
    """
    codecs = codecs or list(dict.fromkeys(points.codec))
    styles = codec_styles(codecs, anchor)
    machine = points.copy()
    base = pd.to_numeric(machine.get("bpp_base"), errors="coerce")
    machine["bpp"] = base.where(base.notna(), machine["bpp"])
    fig, axes = plt.subplots(1, 3, figsize=(15.0, 4.6))
    panels = (
        (axes[0], machine, "map", metric_label, "machine: task accuracy vs base-layer bits"),
        (axes[1], points, "image_psnr", "image PSNR (dB, RGB)", "person: image PSNR vs all bits"),
        (axes[2], points, "image_msssim", "image MS-SSIM", "person: image MS-SSIM vs all bits"),
    )
    failed = False
    for ax, pts, col, ylabel, what in panels:
        if col in pts:
            pts = pts[np.isfinite(pd.to_numeric(pts[col], errors="coerce"))]
        failed |= _draw(ax, pts, col, codecs, styles)
        _log_axis(ax, "x")
        if col == "map":
            _clamp_at_zero(ax, pts[col] if col in pts else [])
        ax.set_xlabel("bits per input-image pixel (bpp, log scale)")
        ax.set_ylabel(ylabel)
        ax.set_title(what, fontsize=10)
        ax.grid(True, which="major", color="#cccccc", linewidth=0.7)
    fig.suptitle(title, fontsize=11)
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if failed:
        handles["point with failed decodes"] = _failed_handle()
    axes[2].legend(
        list(handles.values()),
        list(handles),
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        frameon=False,
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, out_stem)
