"""The top-patches figure: a row per channel, a column per top image, each tile the exact
receptive field of the channel's strongest position in that image, titled with the activation.

The crops and windows come from `evaluate/patches.py`; nothing here computes them.
"""

from __future__ import annotations

from pathlib import PurePath

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cnnlab.evaluate.patches import Patch, TopPatches
from cnnlab.figures.canvas import new_figure
from cnnlab.i18n import _
from cnnlab.text import printable

TILE = 0.95  # inches per tile
IMAGE_EDGE = "#e6550d"  # outline of the part of a crop inside the image, when it is clipped
LABEL_CHARS = 9  # of a class name under a tile


def short_data_name(name: str) -> str:
    """'folder:/home/me/photos test' -> 'photos test': titles name a folder, not its whole path."""
    if not name.startswith("folder:"):
        return printable(name)
    path, _sep, split = name.removeprefix("folder:").rpartition(" ")
    return printable(f"{PurePath(path).name} {split}" if path else PurePath(split).name)


def _short(name: str) -> str:
    name = printable(name)
    return name if len(name) <= LABEL_CHARS else f"{name[: LABEL_CHARS - 1]}."


def _draw_patch(ax: Axes, patch: Patch, image_hw: tuple[int, int]) -> None:
    """One crop (gray or RGB), the in-image part outlined when the window reaches into padding."""
    pixels = patch.crop.numpy()
    if pixels.shape[0] == 1:
        ax.imshow(pixels[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(pixels.transpose(1, 2, 0), interpolation="nearest")
    window = patch.window
    part = window.clipped(*image_hw)
    if part != window and part.height and part.width:
        ax.add_patch(
            Rectangle(
                (part.left - window.left - 0.5, part.top - window.top - 0.5),
                part.width,
                part.height,
                fill=False,
                edgecolor=IMAGE_EDGE,
                linewidth=1.2,
            )
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{patch.activation:.3g}", fontsize=7, pad=2)
    ax.set_xlabel(f"#{patch.index} {_short(patch.label)}", fontsize=6, labelpad=1)


def patches_figure(result: TopPatches, title: str = "") -> Figure:
    """The grid of `result`: rows = channels, columns = top images, best on the left."""
    rows = len(result.channels)
    cols = max(len(row) for row in result.patches)
    header = 0.25 + 0.2 * (title.count("\n") + 1) if title else 0.4  # inches above the grid
    figure = new_figure(0.7 + TILE * cols, TILE * 1.25 * rows + header)
    _channels, h, w = result.image_shape
    for r, (channel, row) in enumerate(zip(result.channels, result.patches, strict=True)):
        for c, patch in enumerate(row):
            ax = figure.add_subplot(rows, cols, r * cols + c + 1)
            _draw_patch(ax, patch, (h, w))
            if c == 0:
                ax.set_ylabel(_("channel {channel}").format(channel=channel), fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.subplots_adjust(
        left=0.55 / figure.get_figwidth(),
        right=0.99,
        top=1 - header / figure.get_figheight(),
        bottom=0.15 / figure.get_figheight(),
        hspace=0.55,
        wspace=0.12,
    )
    return figure


def patches_title(run_name: str, result: TopPatches) -> str:
    """Two or three lines: what the grid shows, how to read a crop, and where padding shows."""
    g = result.geometry
    size = f"{g.size[0]}x{g.size[1]}"
    top = max(len(r) for r in result.patches)
    data = short_data_name(result.data)
    lines = [
        f"{run_name}: {g.name} = {g.spec}, top {top} of {result.images:,} {data} images "
        "per channel (title: max activation)",
        f"each crop is the {size} px receptive field of the strongest position (jump "
        f"{g.jump[0]}x{g.jump[1]} px)",
    ]
    if result.clipped:
        lines.append(
            f"{result.clipped} crop(s) reach past the image border: grey = padding, "
            "orange box = the image"
        )
    return "\n".join(lines)
