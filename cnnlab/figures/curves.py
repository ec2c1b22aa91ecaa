"""Training curves of a run: loss, accuracy and learning rate, one point per epoch (metrics.csv)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cnnlab.figures.canvas import new_figure
from cnnlab.i18n import N_, _

# (panel title, y label, [(metrics.csv column, line label)])
# (marked with N_, translated where drawn)
CURVE_PANELS = (
    (
        N_("loss"),
        N_("cross-entropy"),
        (("train_loss", N_("train")), ("val_loss", N_("validation"))),
    ),
    (
        N_("accuracy"),
        N_("accuracy"),
        (("train_accuracy", N_("train")), ("val_accuracy", N_("validation"))),
    ),
    (N_("learning rate"), N_("lr at the epoch's end"), (("lr", "lr"),)),
)


def _has_values(values: Sequence[float]) -> bool:
    return any(not math.isnan(v) for v in values)


def _draw_panel(
    ax: Axes,
    panel: tuple[str, str, tuple[tuple[str, str], ...]],
    rows: list[dict[str, float]],
    test_accuracy: float | None,
) -> None:
    """One panel: a line per metrics column that has values, against the epoch."""
    name, ylabel, series = panel
    epochs = [int(row["epoch"]) for row in rows]
    for column, label in series:
        values = [float(row.get(column, math.nan)) for row in rows]
        if _has_values(values):
            ax.plot(epochs, values, marker="o", markersize=4, label=_(label))
    heading = _(name)
    if name == "accuracy":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        if test_accuracy is not None and not math.isnan(test_accuracy):
            heading += _(" (test {accuracy})").format(accuracy=f"{test_accuracy:.2%}")
    if name == "learning rate":
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.set_title(heading, fontsize=10)
    ax.set_xlabel(_("epoch"))
    ax.set_ylabel(_(ylabel))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if name != "learning rate" and ax.lines:
        ax.legend(fontsize=8)


def curves_figure(
    rows: list[dict[str, float]], title: str = "", test_accuracy: float | None = None
) -> Figure:
    """Loss, accuracy (train and validation where present) and learning rate: one point per epoch."""
    if not rows:
        raise ValueError("curves_figure needs at least one epoch")
    figure = new_figure(13, 3.8)
    axes = figure.subplots(1, len(CURVE_PANELS))
    for ax, panel in zip(axes, CURVE_PANELS, strict=True):
        _draw_panel(ax, panel, rows, test_accuracy)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.subplots_adjust(wspace=0.3, top=0.82 if title else 0.9, bottom=0.15)
    return figure
