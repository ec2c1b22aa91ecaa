"""Figures of a trained run: training curves, confusion matrix, top losses, filters, feature maps.

Every function returns a matplotlib `Figure` on an Agg canvas (plotting.py);
`plotting.save_figure` writes it as PNG or SVG. The pixels of filter and
feature-map grids come from `grids.py` (numpy only), which the server uses too.
Nothing here computes a score or a shape: scores come from `evaluate.py`,
feature maps from `featuremaps.py`, shapes from the model's analysis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cnnlab.evaluate.featuremaps import FeatureMap
from cnnlab.evaluate.grids import Grid, feature_map_grid, filter_grid, tile_images
from cnnlab.figures.canvas import new_figure
from cnnlab.model.cnn import CnnModel
from cnnlab.spec.analysis import describe_shape

# (panel title, y label, [(metrics.csv column, line label)])
CURVE_PANELS = (
    ("loss", "cross-entropy", (("train_loss", "train"), ("val_loss", "validation"))),
    ("accuracy", "accuracy", (("train_accuracy", "train"), ("val_accuracy", "validation"))),
    ("learning rate", "lr at the epoch's end", (("lr", "lr"),)),
)
# Layers whose output is an activation map: shown by default in feature-map figures.
MAP_KINDS = frozenset(
    {"conv", "relu", "leakyrelu", "sigmoid", "tanh", "gelu", "maxpool", "minpool", "avgpool"}
)
FIGURE_WIDTH = 8.0  # inches, for stacked grid sections
BARS_HEIGHT = 1.8  # inches, for a section of bars
MAX_BARS = 64  # flat outputs up to this size are drawn as bars, larger ones as a tile
MAP_CMAP = "viridis"  # feature maps: dark = the channel's minimum, yellow = its maximum
FILTER_CMAP = "RdBu_r"  # filters: blue negative, white 0, red positive


# --- training curves ------------------------------------------------------------------------


def _has_values(values: Sequence[float]) -> bool:
    return any(not math.isnan(v) for v in values)


def curves_figure(
    rows: list[dict[str, float]], title: str = "", test_accuracy: float | None = None
) -> Figure:
    """Loss, accuracy (train and validation where present) and learning rate: one point per epoch."""
    if not rows:
        raise ValueError("curves_figure needs at least one epoch")
    epochs = [int(row["epoch"]) for row in rows]
    figure = new_figure(13, 3.8)
    axes = figure.subplots(1, len(CURVE_PANELS))
    for ax, (name, ylabel, series) in zip(axes, CURVE_PANELS, strict=True):
        for column, label in series:
            values = [float(row.get(column, math.nan)) for row in rows]
            if _has_values(values):
                ax.plot(epochs, values, marker="o", markersize=4, label=label)
        heading = name
        if name == "accuracy":
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            if test_accuracy is not None and not math.isnan(test_accuracy):
                heading += f" (test {test_accuracy:.2%})"
        if name == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.set_title(heading, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if name != "learning rate" and ax.lines:
            ax.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.subplots_adjust(wspace=0.3, top=0.82 if title else 0.9, bottom=0.15)
    return figure


# --- evaluation -----------------------------------------------------------------------------


def confusion_figure(confusion: Any, classes: Sequence[str], title: str = "") -> Figure:
    """Counts in every cell, rows = true class, columns = predicted; shaded by share of the row."""
    counts = np.asarray(confusion, dtype=np.int64)
    k = len(classes)
    if counts.shape != (k, k):
        raise ValueError(f"confusion is {counts.shape}, expected ({k}, {k}) for {k} classes")
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    side = max(4.5, 0.6 * k + 2.0)
    figure = new_figure(side + 1.2, side)
    ax = figure.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fontsize = 9 if k <= 12 else 7 if k <= 20 else 5
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if share[i, j] > 0.5 else "#bbbbbb" if counts[i, j] == 0 else "black",
            )
    ax.set_xticks(range(k), list(classes), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), list(classes), fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    colorbar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colorbar.set_label("share of the true class (row)")
    if title:
        ax.set_title(title, fontsize=10)
    return figure


def _show_image(ax: Axes, image: torch.Tensor) -> None:
    """A (C, H, W) uint8 image: gray for one channel, RGB for three."""
    pixels = image.detach().cpu().numpy()
    if pixels.shape[0] == 1:
        ax.imshow(pixels[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(pixels.transpose(1, 2, 0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def gallery_figure(
    images: torch.Tensor, items: list[dict[str, Any]], title: str = "", columns: int = 8
) -> Figure:
    """The images of `items` (evaluate.top_losses rows: index, true, predicted, probability)."""
    if not items:
        raise ValueError("gallery_figure needs at least one image")
    cols = min(columns, len(items))
    rows = math.ceil(len(items) / cols)
    figure = new_figure(1.55 * cols, 1.9 * rows + (0.5 if title else 0.1))
    for i, item in enumerate(items):
        ax = figure.add_subplot(rows, cols, i + 1)
        _show_image(ax, images[item["index"]])
        wrong = item["true"] != item["predicted"]
        ax.set_title(
            f"#{item['index']} true {item['true']}\n"
            f"pred {item['predicted']} {item['probability']:.0%}",
            fontsize=7,
            color="#b2182b" if wrong else "black",
        )
    if title:
        figure.suptitle(title, fontsize=10)
    figure.subplots_adjust(hspace=0.6, wspace=0.1, top=1 - 0.45 / figure.get_figheight())
    return figure


# --- stacked grids (filters, feature maps) --------------------------------------------------


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
        ax.set_xlabel("index", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", alpha=0.3)


def stacked_figure(sections: list[Section], title: str = "") -> Figure:
    """One grid per section, top to bottom, each as wide as its aspect and height cap allow."""
    if not sections:
        raise ValueError("nothing to draw")
    margin, gap, line = 0.15, 0.25, 0.17  # inches: page edge, between sections, one title line
    axis_room = (0.6, 0.7)  # inches left of and below a bar chart, for its tick labels
    heights = []
    for s in sections:
        if s.grid is None:
            heights.append(BARS_HEIGHT)
            continue
        h, w = s.grid.pixels.shape[:2]
        heights.append(min(max((FIGURE_WIDTH - 2 * margin) * h / w, 0.8), s.max_height))
    title_bands = [0.1 + line * (s.title.count("\n") + 1) for s in sections]
    below = [axis_room[1] if s.grid is None else 0.0 for s in sections]
    top_space = margin + (0.1 + line * (title.count("\n") + 1) if title else 0)
    total = (
        top_space + sum(heights) + sum(title_bands) + sum(below) + gap * (len(sections) - 1)
    ) + margin
    figure = new_figure(FIGURE_WIDTH, total)
    y = total - top_space  # inches from the bottom, moving down
    for section, height, band, room in zip(sections, heights, title_bands, below, strict=True):
        y -= band + height
        left = margin + (axis_room[0] if section.grid is None else 0.0)
        ax = figure.add_axes(
            (left / FIGURE_WIDTH, y / total, 1 - (left + margin) / FIGURE_WIDTH, height / total)
        )
        if section.grid is None:
            draw_bars(ax, section.bars or [], section.labels)
        else:
            draw_grid(ax, section.grid, section.cmap, section.mask)
        ax.set_title(section.title, fontsize=8, family="monospace", pad=3)
        y -= room + gap
    if title:
        figure.suptitle(title, fontsize=10, y=1 - margin / total, va="top")
    return figure


# --- filters --------------------------------------------------------------------------------


@dataclass
class ConvFilters:
    """The weights of one conv layer."""

    name: str  # conv1
    layer: str  # conv(32, 3, padding=same)
    weight: torch.Tensor  # (O, I/groups, kh, kw)
    groups: int

    @property
    def shape_text(self) -> str:
        return "x".join(str(n) for n in self.weight.shape)

    def can_be_rgb(self) -> bool:
        return self.weight.shape[1] == 3 and self.groups == 1


def conv_filters(model: CnnModel) -> list[ConvFilters]:
    """Every conv layer's weights, in order."""
    out = []
    for (name, module), layer in zip(model.named_children(), model.spec.layers, strict=True):
        if layer.kind == "conv":
            out.append(ConvFilters(name, layer.text(), module.weight.detach().cpu(), module.groups))
    return out


def filters_figure(layers: list[ConvFilters], rgb: bool = True, title: str = "") -> Figure:
    """A section per conv layer: rows = filters, columns = input channels (RGB tiles where asked)."""
    sections = []
    for f in layers:
        as_rgb = rgb and f.can_be_rgb()
        grid = filter_grid(f.weight, rgb=as_rgb)
        out_c, in_c, kh, kw = f.weight.shape
        what = (
            f"{out_c} filters in RGB"
            if as_rgb
            else f"{out_c} filters"
            if in_c == 1
            else f"rows: {out_c} filters, columns: {in_c} input channels"
        )
        top = f.weight.abs().max().item()
        sections.append(
            Section(
                f"{f.name}: {f.layer}  weights {f.shape_text}\n{what}, {kh}x{kw} each; "
                f"colour scale +-{top:.3g}",
                grid,
                None if as_rgb else FILTER_CMAP,
                max_height=9.0,
            )
        )
    return stacked_figure(sections, title)


# --- feature maps ---------------------------------------------------------------------------


def default_map_layers(maps: list[FeatureMap]) -> list[FeatureMap]:
    """The conv, activation and pooling outputs that are still images."""
    return [m for m in maps if m.kind in MAP_KINDS and m.is_image]


def map_title(fm: FeatureMap) -> str:
    """'conv1: conv(32, 3, padding=same) -> 32 x 28 x 28, values -1.2 .. 3.4'."""
    shape = " x ".join(str(n) for n in fm.values.shape)
    low, high = fm.values.min().item(), fm.values.max().item()
    tiles = f"{fm.values.shape[0]} maps" if fm.is_image else "a vector"
    return f"{fm.name}: {fm.layer} -> {shape} ({tiles}), values {low:.3g} .. {high:.3g}"


def output_layers(maps: list[FeatureMap]) -> list[str]:
    """The layers whose values are one per class: the last fc and the layers after it."""
    fcs = [i for i, m in enumerate(maps) if m.kind == "fc"]
    return [m.name for m in maps[fcs[-1] :]] if fcs else []


def _vector_section(fm: FeatureMap, labels: Sequence[str] | None) -> Section:
    """Small flat outputs as bars; large ones as one near-square tile, its unused end left white."""
    values = fm.values.flatten()
    if len(values) <= MAX_BARS:
        fitting = labels if labels is not None and len(labels) == len(values) else None
        return Section(map_title(fm), bars=values.tolist(), labels=fitting)
    grid = feature_map_grid(fm)
    mask = grid.separators()
    h, w = grid.tile_shape
    unused = np.arange(h * w).reshape(h, w) >= len(values)  # the row-major cells after the last
    mask[:h, :w] |= unused
    return Section(map_title(fm), grid, mask=mask)


def featuremaps_figure(
    image: torch.Tensor,
    maps: list[FeatureMap],
    title: str = "",
    labels: dict[str, Sequence[str]] | None = None,
) -> Figure:
    """The input image, then one section per layer: a grid of a tile per channel, each scaled to
    its own range; flat outputs as bars (`labels[name]` names them, e.g. the classes)."""
    pixels = image.detach().cpu().numpy()
    tiles = pixels[None, 0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)[None]
    sections = [
        Section(
            f"input: {describe_shape(tuple(image.shape))} (as the model sees it, before normalize)",
            tile_images(np.ascontiguousarray(tiles)),
            "gray" if pixels.shape[0] == 1 else None,
            max_height=2.0,
        )
    ]
    for fm in maps:
        if fm.is_image:
            sections.append(Section(map_title(fm), feature_map_grid(fm)))
        else:
            sections.append(_vector_section(fm, (labels or {}).get(fm.name)))
    return stacked_figure(sections, title)
