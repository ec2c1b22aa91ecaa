"""The projector figure: one dot per image at its 2-D embedding, coloured by true class, the
misclassified ones with a black edge and a cross.

The points come from `evaluate/embed.py`; nothing here computes them.
"""

from __future__ import annotations

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cnnlab.evaluate.embed import Embedding
from cnnlab.figures.canvas import new_figure
from cnnlab.figures.patches import short_data_name
from cnnlab.i18n import _
from cnnlab.text import printable


def class_colours(count: int) -> list:
    """A distinct colour per class: tab10 up to 10 classes, tab20 up to 20, then a hue wheel."""
    if count <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(count)]
    wheel = matplotlib.colormaps["hsv"]
    return [wheel(i / count) for i in range(count)]


def _dot_size(points: int) -> float:
    """Marker area in points^2: large for a few dots, small for thousands."""
    return max(5.0, min(40.0, 12000.0 / max(points, 1)))


def _legend_entry(colour, label: str, edge: str | None = None) -> Line2D:
    """A dot in the legend (no line)."""
    return Line2D([], [], marker="o", linestyle="", color=colour, markeredgecolor=edge, label=label)


def embed_figure(embedding: Embedding, title: str = "") -> Figure:
    """The scatter of `embedding` with a legend of class names and of the misclassified mark."""
    figure = new_figure(9.0, 6.5)
    ax = figure.add_subplot()
    xy = embedding.points.numpy()
    labels = embedding.labels.numpy()
    wrong = embedding.wrong.numpy()
    colours = class_colours(len(embedding.classes))
    size = _dot_size(len(xy))
    handles = []
    for k, name in enumerate(embedding.classes):
        right = (labels == k) & ~wrong
        missed = (labels == k) & wrong
        ax.scatter(xy[right, 0], xy[right, 1], s=size, color=colours[k], alpha=0.75, linewidths=0)
        # misclassified: the true class's colour, a black edge, on top of the others
        ax.scatter(
            xy[missed, 0],
            xy[missed, 1],
            s=size * 1.6,
            color=colours[k],
            edgecolors="black",
            linewidths=0.9 if size >= 20 else 0.4,  # thin on thousands of small dots
            zorder=3,
        )
        count = int((labels == k).sum())
        handles.append(_legend_entry(colours[k], f"{printable(name)} ({count})"))
    mark = _("misclassified ({count}): black edge, colour = true class").format(
        count=int(wrong.sum())
    )
    handles.append(_legend_entry("white", mark, edge="black"))
    ax.legend(
        handles=handles,
        title=_("true class (images)"),
        fontsize=8,
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
    )
    x_label, y_label = embedding.axis_labels()
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if title:
        ax.set_title(title, fontsize=10)
    return figure


def embed_title(run_name: str, embedding: Embedding) -> str:
    """What the picture shows: run, method, layer, how many images, and any subsample."""
    method = "PCA" if embedding.method == "pca" else "t-SNE"
    shown = len(embedding.points)
    lines = [
        f"{run_name}: {method} of the {embedding.features} features entering "
        f"{embedding.layer} (the last fc layer)",
        f"{shown:,} {short_data_name(embedding.data)} images"
        + (f" (a seeded sample of {embedding.total:,})" if shown < embedding.total else ""),
    ]
    if embedding.method == "tsne":
        lines.append("t-SNE keeps neighbours close; distances between clusters mean little")
    return "\n".join(lines)
