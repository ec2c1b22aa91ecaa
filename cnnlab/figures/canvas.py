"""Figures drawn off-screen with Agg and saved as PNG or SVG, chosen by the file's extension.

Figures are `matplotlib.figure.Figure` objects with an Agg canvas, never pyplot:
nothing is registered globally, so there is no window, no backend to select and
no figure to forget to close. SVG keeps its text as text (svg.fonttype 'none'),
so labels stay searchable and tests can read them back. A file that cannot be
written (a read-only folder, a full disk) is an `OutputError` naming the path; files are
written atomically, so the old file survives any failure.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnlab.errors import ConfigError, OutputError
from cnnlab.fileio import atomic_write_bytes

FORMATS = ("png", "svg")
DPI = 120  # PNG pixels per inch


def new_figure(width: float, height: float) -> Figure:
    """A figure of width x height inches on an Agg canvas (not known to pyplot)."""
    figure = Figure(figsize=(width, height), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def figure_format(path: str | Path, fmt: str | None = None) -> str:
    """'png' or 'svg': from `fmt` when given, else from the file's extension."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise ConfigError(f"format '{fmt}' is not one of: {', '.join(FORMATS)}")
        if suffix and suffix != fmt:
            raise ConfigError(
                f"{path} ends in .{suffix} but --format is {fmt}: use {Path(path).stem}.{fmt}"
            )
        return fmt
    if suffix not in FORMATS:
        raise ConfigError(
            f"cannot tell the image format of {path}: end the name in .png or .svg "
            "(or give --format png|svg)"
        )
    return suffix


def output_paths(outs: list[str] | None, fmt: str | None, default_stem: str) -> list[Path]:
    """The files to write: each --out (format by extension or --format), else DEFAULT_STEM.png/.svg."""
    if not outs:
        outs = [f"{default_stem}.{fmt or 'png'}"]
    paths = []
    for out in outs:
        path = Path(out)
        if not path.suffix and fmt:
            path = path.with_suffix(f".{fmt}")
        figure_format(path, fmt)  # refuse an unknown or contradictory format before drawing
        paths.append(path)
    return paths


def save_figure(figure: Figure, path: str | Path, fmt: str | None = None) -> Path:
    """Write `figure` as PNG or SVG (by extension or `fmt`), creating the folder; returns the path.

    Drawn into memory first, then written atomically (`fileio.atomic_write_bytes`): a drawing
    error or a full disk leaves the old file as it was and no partial or empty file behind.
    """
    path = Path(path)
    fmt = figure_format(path, fmt)
    buffer = io.BytesIO()
    # Text as <text> elements; a fixed hash salt and no date keep the SVG reproducible.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "cnnlab"}):
        figure.savefig(
            buffer,
            format=fmt,
            dpi=DPI,
            bbox_inches="tight",
            facecolor="white",
            metadata={"Date": None} if fmt == "svg" else None,
        )
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputError(
            f"cannot write {path}: {reason}; choose a writable folder with --out"
        ) from None
    return path
