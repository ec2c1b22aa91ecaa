"""The class activation map figure: the image, its heatmap drawn over it, and the sanity check.

The numbers come from `evaluate/cam.py` (`CamResult`); this module only draws them.
"""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure

from cnnlab.evaluate.cam import CamResult
from cnnlab.figures.canvas import new_figure
from cnnlab.i18n import _

HEAT_CMAP = "jet"  # 0 (no evidence) blue .. the map's largest value red
SIGNED_CMAP = "RdBu_r"  # occlusion: red = covering it lowered the class's probability
OVERLAY_ALPHA = 0.5
PANEL_INCHES = 3.2
TITLE_WIDTH = 48  # characters per line of a layer line in a panel title (8 pt, PANEL_INCHES)


def _gray(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """A uint8 (C, H, W) image as imshow takes it: (H, W) with a gray map, or (H, W, 3)."""
    if image.shape[0] == 1:
        return image[0], "gray"
    return np.ascontiguousarray(image.transpose(1, 2, 0)), None


def _heat_panel(ax, image: np.ndarray, heatmap: np.ndarray, signed: bool, title: str):
    """The image in gray with the heatmap over it, half transparent; returns the heat's artist."""
    pixels, cmap = _gray(image)
    ax.imshow(pixels if cmap is None else pixels, cmap=cmap, vmin=0, vmax=255)
    top = float(np.abs(heatmap).max()) or 1.0  # a flat zero map still draws (all blue)
    low = -top if signed else 0.0
    heat = ax.imshow(
        heatmap,
        cmap=SIGNED_CMAP if signed else HEAT_CMAP,
        vmin=low,
        vmax=top,
        alpha=OVERLAY_ALPHA,
        interpolation="nearest",
    )
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return heat


def cam_title(result: CamResult) -> str:
    """'gradcam for top-left (97.1%, predicted top-left)' and the layer or window line."""
    predicted = result.classes[result.predicted] if result.classes else str(result.predicted)
    first = (
        f"{result.method} for {result.class_name} ({result.probability:.1%}, predicted {predicted})"
    )
    if result.layer is not None:  # wrapped: the note on a field wider than the image is long
        return "\n".join([first, *textwrap.wrap(result.layer.describe(), TITLE_WIDTH)])
    if result.window is not None:
        (ph, pw), (sh, sw) = result.window
        return f"{first}\n" + _("{patch} px patches, stride {stride}").format(
            patch=f"{ph}x{pw}", stride=f"{sh}x{sw}"
        )
    return f"{first}\n" + _("|gradient| of the logit per pixel")


def cam_figure(image: np.ndarray, result: CamResult, title: str = "") -> Figure:
    """The uint8 (C, H, W) image, the heatmap over it (with its colour scale) and, when the sanity
    check ran, the map of the randomised model beside it with the rank correlation."""
    image = np.asarray(image)
    panels = 3 if result.randomized is not None else 2
    figure = new_figure(PANEL_INCHES * panels + 0.6, PANEL_INCHES + 0.9)
    axes = figure.subplots(1, panels)
    pixels, cmap = _gray(image)
    axes[0].imshow(pixels, cmap=cmap, vmin=0, vmax=255)
    axes[0].set_title(_("input (before normalize)"), fontsize=8)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    signed = result.method == "occlusion"
    heat = _heat_panel(axes[1], image, result.heatmap, signed, cam_title(result))
    figure.colorbar(heat, ax=axes[1], fraction=0.046, pad=0.04)
    if result.randomized is not None:
        correlation = _("undefined") if result.sanity is None else f"{result.sanity:.2f}"
        _heat_panel(
            axes[2],
            image,
            result.randomized,
            signed,
            _(
                "sanity: the same {method}, randomised weights (own scale)\n"
                "rank correlation with the map: {correlation}"
            ).format(method=result.method, correlation=correlation),
        )
    if title:
        figure.suptitle(title, fontsize=9)
    return figure
