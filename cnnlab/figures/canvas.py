"""Figures drawn off-screen with Agg and saved as PNG or SVG, chosen by the file's extension.

Figures are `matplotlib.figure.Figure` objects with an Agg canvas, never pyplot:
nothing is registered globally, so there is no window, no backend to select and
no figure to forget to close. SVG keeps its text as text (svg.fonttype 'none'),
so labels stay searchable and tests can read them back. A file that cannot be
written (a read-only folder, a full disk) is an `OutputError` naming the path; files are
written atomically, so the old file survives any failure.

Korean figures (cnnlab.i18n's language 'ko') draw their text in NanumGothic, the font bundled
by the PyPI package koreanize-matplotlib (a dependency): its .ttf is registered with
matplotlib's font manager by path, without importing the package (whose import rewrites the
global rcParams). The font is set on the figure's own texts when it is saved, never globally.
"""

from __future__ import annotations

import importlib.util
import io
from functools import cache
from pathlib import Path

import matplotlib
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from cnnlab.errors import ConfigError, OutputError
from cnnlab.fileio import atomic_write_bytes
from cnnlab.i18n import _, current_language

FORMATS = ("png", "svg")
DPI = 120  # PNG pixels per inch
HANGUL_FONT_PACKAGE = "koreanize_matplotlib"  # PyPI koreanize-matplotlib: fonts/NanumGothic.ttf
HANGUL_FONT_FILE = "NanumGothic.ttf"


@cache
def hangul_font() -> str | None:
    """The family name of the bundled Hangul font, registered once; None if it is not installed."""
    spec = importlib.util.find_spec(HANGUL_FONT_PACKAGE)  # finds the package, runs none of it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "fonts" / HANGUL_FONT_FILE
        if path.is_file():
            font_manager.fontManager.addfont(str(path))
            return font_manager.FontProperties(fname=str(path)).get_name()
    return None


def use_language_fonts(figure: Figure, language: str | None = None) -> Figure:
    """Korean: every text of `figure` in the Hangul font (its own font kept as the fallback)."""
    family = hangul_font() if (language or current_language()) == "ko" else None
    if family is None:
        return figure
    for text in figure.findobj(Text):
        own = list(text.get_fontfamily())
        # sans-serif text is drawn in the Hangul font, Latin included; monospace keeps its
        # own font first (aligned columns) and falls back to the Hangul font for Hangul
        fonts = [*own, family] if "monospace" in own else [family, *own]
        text.set_fontfamily(fonts)
    return figure


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
            raise ConfigError(
                _("format '{format}' is not one of: {formats}").format(
                    format=fmt, formats=", ".join(FORMATS)
                )
            )
        if suffix and suffix != fmt:
            raise ConfigError(
                _("{path} ends in .{suffix} but --format is {format}: use {name}").format(
                    path=path, suffix=suffix, format=fmt, name=f"{Path(path).stem}.{fmt}"
                )
            )
        return fmt
    if suffix not in FORMATS:
        raise ConfigError(
            _(
                "cannot tell the image format of {path}: end the name in .png or .svg "
                "(or give --format png|svg)"
            ).format(path=path)
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
    use_language_fonts(figure)
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
            _("cannot write {path}: {reason}; choose a writable folder with --out").format(
                path=path, reason=reason
            )
        ) from None
    return path
