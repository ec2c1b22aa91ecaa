"""Evaluation figures: the confusion matrix and the gallery of top-loss test images.

The counts and the top losses come from `evaluate/scores.py`; nothing here computes a score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cnnlab.figures.canvas import new_figure
from cnnlab.i18n import _
from cnnlab.text import printable

WRONG_COLOUR = "#b2182b"  # titles of misclassified images
NAME_CHARS = 18  # a file name in a tile's title, cut to fit 1.55 inches at 7 points


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
    ax.set_xlabel(_("predicted class"))
    ax.set_ylabel(_("true class"))
    colorbar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colorbar.set_label(_("share of the true class (row)"))
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


def _image_name(item: dict[str, Any]) -> str:
    """'#12' for an image of a built-in data set; its file name (cut to fit) for folder data."""
    if "file" not in item:
        return f"#{item['index']}"
    name = printable(PurePath(item["file"]).name)
    return name if len(name) <= NAME_CHARS else f"{name[: NAME_CHARS - 3]}..."


def gallery_figure(
    images: torch.Tensor, items: list[dict[str, Any]], title: str = "", columns: int = 8
) -> Figure:
    """The images of `items` (Evaluation.top_losses rows: index, file if any, true, predicted, probability)."""
    if not items:
        raise ValueError("gallery_figure needs at least one image")
    cols = min(columns, len(items))
    rows = math.ceil(len(items) / cols)
    named = any("file" in item for item in items)  # captions of 3 lines: name, true, predicted
    figure = new_figure(1.55 * cols, (2.1 if named else 1.9) * rows + (0.5 if title else 0.1))
    for i, item in enumerate(items):
        ax = figure.add_subplot(rows, cols, i + 1)
        _show_image(ax, images[item["index"]])
        wrong = item["true"] != item["predicted"]
        # A file name gets a line of its own: beside the class it would overrun the next tile.
        joint = "\n" if "file" in item else " "
        ax.set_title(
            _image_name(item)
            + joint
            + _("true {true}\npred {predicted} {probability}").format(
                true=item["true"],
                predicted=item["predicted"],
                probability=f"{item['probability']:.0%}",
            ),
            fontsize=7,
            color=WRONG_COLOUR if wrong else "black",
        )
    if title:
        figure.suptitle(title, fontsize=10)
    top = (0.75 if named else 0.45) / figure.get_figheight()  # inches above the first captions
    figure.subplots_adjust(hspace=0.8 if named else 0.6, wspace=0.1, top=1 - top)
    return figure
