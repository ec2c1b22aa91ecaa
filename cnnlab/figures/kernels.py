"""The kernel gallery: one panel per classic kernel applied to an image, its matrix under it.

The kernels and their arithmetic live in `cnnlab.explain.kernels` (pure torch);
this module only decides what a panel shows and draws it with matplotlib (Agg).
"""

from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure

from cnnlab.explain.kernels import KERNELS, Kernel, apply_kernel, get_kernel
from cnnlab.figures.canvas import new_figure
from cnnlab.i18n import _


def display_values(output: torch.Tensor, kernel: Kernel) -> torch.Tensor:
    """What a panel shows, in [0, 1]: |response| / its peak for edges, else clipped.

    Zero-sum kernels (edges) answer 0 on flat areas and +-x on edges, so the
    magnitude is scaled to the largest; brightness-keeping kernels are clipped.
    """
    if kernel.total == 0:
        magnitude = output.abs()
        peak = float(magnitude.max())
        return magnitude / peak if peak > 0 else magnitude
    return output.clamp(0.0, 1.0)


def kernels_figure(
    image: torch.Tensor, names: list[str] | None = None, title: str = "image"
) -> Figure:
    """One panel per kernel (identity shows the image itself), each kernel's matrix under it."""
    chosen = [get_kernel(n) for n in names] if names else list(KERNELS.values())
    cols = min(len(chosen), 5)
    rows = math.ceil(len(chosen) / cols)
    figure = new_figure(2.6 * cols, 3.5 * rows + 0.4)
    h, w = image.shape
    figure.suptitle(
        _(
            "{title}: {size} grayscale, each kernel applied with conv2d "
            "(same padding, replicate border)"
        ).format(title=title, size=f"{h}x{w}"),
        fontsize=10,
    )
    for i, kernel in enumerate(chosen):
        ax = figure.add_subplot(rows, cols, i + 1)
        ax.imshow(
            display_values(apply_kernel(image, kernel), kernel).numpy(),
            cmap="gray",
            vmin=0.0,
            vmax=1.0,
            interpolation="nearest",
        )
        shown = "|response|" if kernel.total == 0 else _("clipped to [0, 1]")
        ax.set_title(f"{kernel.name}\n({shown})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(kernel.text(), family="monospace", fontsize=8)
    figure.subplots_adjust(hspace=0.55, wspace=0.15)
    return figure
