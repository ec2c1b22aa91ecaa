"""Evaluation figures: the confusion matrix and the gallery of top-loss test images.

The counts and the top losses come from `evaluate/scores.py`; nothing here computes a score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cnnlab.figures.canvas import new_figure

WRONG_COLOUR = "#b2182b"  # titles of misclassified images


def _cell_colour(share: float, count: int) -> str:
    """Readable text on the cell's shade: white on dark, gray for empty cells."""
    return "white" if share > 0.5 else "#bbbbbb" if count == 0 else "black"


def _write_counts(ax: Axes, counts: np.ndarray, share: np.ndarray) -> None:
    """The count of every cell, written in its centre."""
    k = len(counts)
    fontsize = 9 if k <= 12 else 7 if k <= 20 else 5
    for i in range(k):
        for j in range(k):
            colour = _cell_colour(share[i, j], counts[i, j])
            ax.text(
                j, i, str(counts[i, j]), ha="center", va="center", fontsize=fontsize, color=colour
            )


def confusion_figure(confusion: Any, classes: Sequence[str], title: str = "") -> Figure:
    """Counts in every cell, rows = true class, columns = predicted; shaded by share of the row."""
    counts = np.asarray(confusion, dtype=np.int64)  # (k, k)
    k = len(classes)
    if counts.shape != (k, k):
        raise ValueError(f"confusion is {counts.shape}, expected ({k}, {k}) for {k} classes")
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    side = max(4.5, 0.6 * k + 2.0)  # inches
    figure = new_figure(side + 1.2, side)
    ax = figure.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    _write_counts(ax, counts, share)
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
    """The images of `items` (Evaluation.top_losses rows: index, true, predicted, probability)."""
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
            color=WRONG_COLOUR if wrong else "black",
        )
    if title:
        figure.suptitle(title, fontsize=10)
    figure.subplots_adjust(hspace=0.6, wspace=0.1, top=1 - 0.45 / figure.get_figheight())
    return figure
