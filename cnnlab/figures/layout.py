"""Stacked figures: titled sections top to bottom, each a grid of tiles or a bar chart.

Filter and feature-map figures are built from `Section`s; the pixels of a grid
come from `evaluate/grids.py` (numpy only), which the server draws too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cnnlab.evaluate.grids import Grid
from cnnlab.figures.canvas import new_figure
from cnnlab.i18n import _

FIGURE_WIDTH = 8.0  # inches, for stacked grid sections
BARS_HEIGHT = 1.8  # inches, for a section of bars
MAP_CMAP = "viridis"  # feature maps: dark = the channel's minimum, yellow = its maximum
MARGIN, GAP, LINE = 0.15, 0.25, 0.17  # inches: page edge, between sections, one title line
AXIS_ROOM = (0.6, 0.7)  # inches left of and below a bar chart, for its tick labels


@dataclass
class Section:
    """One titled part of a stacked figure: a grid of tiles, or bars (one per value)."""

    title: str
    grid: Grid | None = None
    cmap: str | None = MAP_CMAP  # None: draw RGB pixels as they are
    max_height: float = 4.0  # inches
    mask: np.ndarray | None = None  # grid pixels to leave white (default: the separators)
    bars: Sequence[float] | None = None
    labels: Sequence[str] | None = None  # one per bar


def draw_grid(ax: Axes, grid: Grid, cmap: str | None, mask: np.ndarray | None = None) -> None:
    """Draw a Grid's pixels; in gray grids the separators (or `mask`) show as white."""
    if grid.pixels.ndim == 2 and cmap is not None:
        colours = matplotlib.colormaps[cmap].with_extremes(bad="white")
        hidden = grid.separators() if mask is None else mask
        pixels = np.ma.masked_array(grid.pixels, mask=hidden)
        ax.imshow(pixels, cmap=colours, vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(grid.pixels, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def draw_bars(ax: Axes, values: Sequence[float], labels: Sequence[str] | None) -> None:
    """One bar per value (red positive, blue negative), labelled when labels are given."""
    colours = ["#b2182b" if v >= 0 else "#2166ac" for v in values]
    ax.bar(range(len(values)), values, color=colours)
    ax.axhline(0, color="#555555", linewidth=0.8)
    if labels:
        ax.set_xticks(range(len(values)), list(labels), rotation=30, ha="right", fontsize=8)
    else:
        ax.set_xlabel(_("index"), fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", alpha=0.3)


def _section_height(section: Section) -> float:
    """Inches for the section's body: bars a fixed height, a grid as its aspect and cap allow."""
    if section.grid is None:
        return BARS_HEIGHT
    h, w = section.grid.pixels.shape[:2]
    return min(max((FIGURE_WIDTH - 2 * MARGIN) * h / w, 0.8), section.max_height)


def _title_band(title: str) -> float:
    """Inches for a title of one or more lines."""
    return 0.1 + LINE * (title.count("\n") + 1)


def _draw_section(figure: Figure, section: Section, box: tuple[float, float, float, float]) -> None:
    """The section's grid or bars in the axes at `box` (figure fractions), titled."""
    ax = figure.add_axes(box)
    if section.grid is None:
        draw_bars(ax, section.bars or [], section.labels)
    else:
        draw_grid(ax, section.grid, section.cmap, section.mask)
    ax.set_title(section.title, fontsize=8, family="monospace", pad=3)


def stacked_figure(sections: list[Section], title: str = "") -> Figure:
    """One grid per section, top to bottom, each as wide as its aspect and height cap allow."""
    if not sections:
        raise ValueError("nothing to draw")
    heights = [_section_height(s) for s in sections]
    title_bands = [_title_band(s.title) for s in sections]
    below = [AXIS_ROOM[1] if s.grid is None else 0.0 for s in sections]
    top_space = MARGIN + (_title_band(title) if title else 0)
    total = (
        top_space + sum(heights) + sum(title_bands) + sum(below) + GAP * (len(sections) - 1)
    ) + MARGIN
    figure = new_figure(FIGURE_WIDTH, total)
    y = total - top_space  # inches from the bottom, moving down
    for section, height, band, room in zip(sections, heights, title_bands, below, strict=True):
        y -= band + height
        left = MARGIN + (AXIS_ROOM[0] if section.grid is None else 0.0)
        width = 1 - (left + MARGIN) / FIGURE_WIDTH
        _draw_section(figure, section, (left / FIGURE_WIDTH, y / total, width, height / total))
        y -= room + GAP
    if title:
        figure.suptitle(title, fontsize=10, y=1 - MARGIN / total, va="top")
    return figure
