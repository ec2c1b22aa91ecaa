"""The learning-rate range test as a figure: smoothed loss against lr, log x axis, the suggestion marked."""

from __future__ import annotations

from typing import Protocol

from matplotlib.figure import Figure

from cnnlab.figures.canvas import new_figure
from cnnlab.i18n import _


class RangeCurve(Protocol):
    """What the figure draws of a learning-rate range test (training/lrfind.py's RangeTest)."""

    lrs: list[float]
    losses: list[float]  # smoothed, one per lr
    minimum: float

    @property
    def suggestion(self) -> float: ...

    @property
    def rule(self) -> str: ...


def lrfind_figure(test: RangeCurve, title: str = "") -> Figure:
    """Loss (smoothed) against learning rate; the suggestion and minimum/10 marked."""
    figure = new_figure(7, 4.5)
    ax = figure.add_subplot(1, 1, 1)
    ax.plot(test.lrs, test.losses, color="tab:blue", label=_("smoothed training loss"))
    ax.set_xscale("log")
    marks = (
        (
            test.suggestion,
            "tab:red",
            "-",
            _("suggestion {lr} ({rule})").format(lr=f"{test.suggestion:.2g}", rule=test.rule),
        ),
        (
            test.minimum / 10,
            "tab:gray",
            ":",
            _("cautious {lr} (minimum/10)").format(lr=f"{test.minimum / 10:.2g}"),
        ),
    )
    for lr, colour, style, label in marks:
        ax.axvline(lr, color=colour, linestyle=style, linewidth=1.5, label=label)
    # the curve's end shoots up; keep the interesting part readable
    low, high = min(test.losses), max(test.losses[: max(1, len(test.losses) * 9 // 10)])
    ax.set_ylim(low - 0.05 * (high - low + 1e-9), high + 0.1 * (high - low + 1e-9))
    ax.set_xlabel(_("learning rate (log scale)"))
    ax.set_ylabel(_("training loss (smoothed)"))
    ax.set_title(title or _("learning-rate range test"), fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure
