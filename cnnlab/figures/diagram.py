"""Architecture diagrams drawn with matplotlib: one box per feature map, sized by its shape.

As in the classic LeNet/AlexNet drawings, every tensor the model makes is a
cuboid whose front face grows with the height H, whose thickness grows with
the channels C and whose slant grows with the width W; flat vectors (after
flatten, gap, fc) are bars whose length grows with their size. Each box is
labelled with the layers that made it and its output shape 'C x H x W'.
Layers that keep the shape (batchnorm, activations, dropout, softmax) join the
box before them, so a conv-bn-relu block is one box. A res block is one box
(its output) labelled with its own layers, and its skip is a dashed arc from the
box before it, marked '+ input' or '+ shortcut'. Every shape comes from
`analysis.analyze`; nothing here computes one.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Polygon, Rectangle

from cnnlab.figures.canvas import new_figure
from cnnlab.i18n import _
from cnnlab.spec.analysis import LayerReport, ModelReport, Shape, analyze, branch_reports
from cnnlab.spec.kinds import LAYER_KINDS
from cnnlab.spec.language import ModelSpec

INPUT_COLOUR = "#d9d9d9"  # the input box; each layer kind has its own `colour`
INCH_PER_UNIT = 0.7  # drawing units -> figure inches
CHAR_UNITS = 0.085  # width of one 7-point monospace character, in drawing units
MAX_FACE = 2.6  # tallest front face (the largest H), in units


@dataclass
class Block:
    """One box: the tensor made by `layers` (the first sets the shape; the rest keep it)."""

    kind: str  # 'input' or the first layer's kind
    shape: Shape  # (C, H, W) or (F,)
    layers: list[LayerReport] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The label under the box: one line per layer, 'conv1: conv(32, 3, padding=same)'; a res
        block's line 'res1: layers + input' and then its own layers, 'body.conv1: conv(...)'."""
        if not self.layers:
            return ["input"]
        lines = []
        for r in self.layers:
            if not r.inner:
                lines.append(f"{r.name}: {r.layer.text()}")
                continue
            lines.append(f"{r.name}: layers + {skip_name(r)}")
            lines += [f"  {i.name.split('.', 1)[1]}: {i.layer.text()}" for i in r.inner]
        return lines

    @property
    def residual(self) -> LayerReport | None:
        """The res block that makes this box, if one does (its skip is drawn over the boxes)."""
        return self.layers[0] if self.layers and self.layers[0].inner else None


def skip_name(r: LayerReport) -> str:
    """What a res block adds to its layers' output: 'input' or 'shortcut'."""
    return "shortcut" if branch_reports(r, "shortcut") else "input"


def shape_label(shape: Shape) -> str:
    """(32, 28, 28) -> '32 x 28 x 28'; (3136,) -> '3136'."""
    return " x ".join(str(n) for n in shape)


def diagram_blocks(report: ModelReport, every_layer: bool = False) -> list[Block]:
    """The boxes to draw, input first; shape-keeping layers join the box before them."""
    blocks = [Block("input", tuple(report.input_shape))]
    for r in report.layers:
        if LAYER_KINDS[r.layer.kind].shape_keeping and not every_layer:
            blocks[-1].layers.append(r)
        else:
            blocks.append(Block(r.layer.kind, tuple(r.out_shape), [r]))
    return blocks


def _scale(value: int, largest: int, low: float, high: float, log: bool = False) -> float:
    """Map 1..largest to low..high (square-root or log), so tiny and huge sizes both show."""
    if largest <= 1:
        return high
    ratio = math.log(value + 1) / math.log(largest + 1) if log else math.sqrt(value / largest)
    return low + (high - low) * ratio


@dataclass
class _Geometry:
    face_h: float  # front face height (H); bars: their length
    depth: float  # thickness along x (C); bars: their width
    slant: float  # diagonal offset (W); 0 for bars

    @property
    def width(self) -> float:
        return self.depth + 0.7 * self.slant

    @property
    def height(self) -> float:
        return self.face_h + 0.5 * self.slant


def _geometries(blocks: list[Block]) -> list[_Geometry]:
    maps = [b.shape for b in blocks if len(b.shape) == 3]
    vectors = [b.shape[0] for b in blocks if len(b.shape) == 1]
    max_side = max((max(s[1], s[2]) for s in maps), default=1)
    max_c = max((s[0] for s in maps), default=1)
    max_f = max(vectors, default=1)
    out = []
    for b in blocks:
        if len(b.shape) == 3:
            c, h, w = b.shape
            out.append(
                _Geometry(
                    _scale(h, max_side, 0.35, MAX_FACE),
                    _scale(c, max_c, 0.12, 1.1, log=True),
                    _scale(w, max_side, 0.2, 1.3),
                )
            )
        else:
            out.append(_Geometry(_scale(b.shape[0], max_f, 0.4, MAX_FACE + 0.5, log=True), 0.22, 0))
    return out


def _draw_box(ax: Axes, x: float, g: _Geometry, colour: str) -> tuple[float, float]:
    """A cuboid (or bar) with its front face's left edge at x, centred on y = 0; returns (left, right)."""
    ox, oy = 0.7 * g.slant, 0.5 * g.slant  # the slant's projection
    y0 = -g.height / 2
    style = dict(edgecolor="#333333", linewidth=0.8)
    ax.add_patch(Rectangle((x, y0), g.depth, g.face_h, facecolor=colour, **style))
    if g.slant:
        top = [(x, y0 + g.face_h), (x + g.depth, y0 + g.face_h)]
        ax.add_patch(
            Polygon(
                [*top, (x + g.depth + ox, y0 + g.face_h + oy), (x + ox, y0 + g.face_h + oy)],
                facecolor=colour,
                alpha=0.75,
                **style,
            )
        )
        right = [(x + g.depth, y0), (x + g.depth + ox, y0 + oy)]
        ax.add_patch(
            Polygon(
                [*right, (x + g.depth + ox, y0 + g.face_h + oy), (x + g.depth, y0 + g.face_h)],
                facecolor=colour,
                alpha=0.55,
                **style,
            )
        )
    return x, x + g.width


def _slots(blocks: list[Block], geometries: list[_Geometry]) -> list[float]:
    """Each block's width in units: its box plus room, or its widest label line, at least 2."""
    return [
        max(g.width + 0.9, CHAR_UNITS * max(len(line) for line in b.lines()) + 0.5, 2.0)
        for b, g in zip(blocks, geometries, strict=True)
    ]


def _draw_blocks(
    ax: Axes, blocks: list[Block], geometries: list[_Geometry], slots: list[float]
) -> list[tuple[float, float]]:
    """Every box centred in its slot, its shape and layers written below; returns box edges."""
    tallest = max(g.height for g in geometries)
    edges = []
    x = 0.0
    for block, g, slot in zip(blocks, geometries, slots, strict=True):
        left = x + (slot - g.width) / 2
        colour = INPUT_COLOUR if block.kind == "input" else LAYER_KINDS[block.kind].colour
        edges.append(_draw_box(ax, left, g, colour))
        centre = x + slot / 2
        y = -tallest / 2 - 0.3
        ax.text(
            centre, y, shape_label(block.shape), ha="center", va="top", fontsize=9, weight="bold"
        )
        for line in block.lines():
            y -= 0.24
            ax.text(centre, y, line, ha="center", va="top", fontsize=7, family="monospace")
        x += slot
    return edges


def _draw_arrows(ax: Axes, edges: list[tuple[float, float]]) -> None:
    """An arrow from each box's right edge to the next box's left edge, along y = 0."""
    for (_left, right), (next_left, _right) in zip(edges, edges[1:], strict=False):
        ax.annotate(
            "",
            xy=(next_left - 0.05, 0),
            xytext=(right + 0.05, 0),
            arrowprops=dict(arrowstyle="->", color="#555555", lw=1.0),
        )


def _draw_skips(
    ax: Axes, blocks: list[Block], geometries: list[_Geometry], edges: list[tuple[float, float]]
) -> None:
    """A res block's skip: a dashed arc from the box before it (its input) over to its box, '+'."""
    for i, block in enumerate(blocks):
        if block.residual is None or i == 0:
            continue
        (left_a, right_a), (left_b, right_b) = edges[i - 1], edges[i]
        start = ((left_a + right_a) / 2, geometries[i - 1].height / 2)
        end = ((left_b + right_b) / 2, geometries[i].height / 2)
        ax.annotate(
            "",
            xy=end,
            xytext=start,
            arrowprops=dict(
                arrowstyle="->",
                color="#b03060",
                lw=1.2,
                linestyle="--",
                connectionstyle="arc3,rad=-0.35",
                shrinkA=2,
                shrinkB=2,
            ),
        )
        label = f"+ {skip_name(block.residual)}"
        # arc3's curve peaks about rad/2 of the distance above the straight line between its ends
        top = (start[1] + end[1]) / 2 + 0.18 * (end[0] - start[0]) + 0.06
        ax.text((start[0] + end[0]) / 2, top, label, ha="center", fontsize=7, color="#b03060")


def _write_headings(figure: Figure, report: ModelReport, heading: str, total_w: float) -> None:
    """The spec (wrapped) with parameters and FLOPs on top; the legend of the boxes below."""
    width_chars = max(int(total_w * INCH_PER_UNIT * 14), 40)  # about 14 characters per inch at 8 pt
    figure.suptitle(
        "\n".join(textwrap.wrap(heading, width_chars))
        + "\n"
        + _("{params} parameters, {flops} FLOPs per image").format(
            params=f"{report.total_params:,}", flops=f"{report.total_flops:,}"
        ),
        fontsize=8,
        family="monospace",
    )
    figure.text(
        0.5,
        0.01,
        _("boxes: height ~ H, thickness ~ channels, slant ~ W; bars: length ~ number of values"),
        ha="center",
        fontsize=7,
        color="#555555",
    )


def diagram_figure(
    model: ModelReport | ModelSpec, every_layer: bool = False, title: str | None = None
) -> Figure:
    """The architecture diagram of a model (a ModelReport, or a ModelSpec with its input shape)."""
    report = model if isinstance(model, ModelReport) else analyze(model)
    blocks = diagram_blocks(report, every_layer)
    geometries = _geometries(blocks)
    slots = _slots(blocks, geometries)
    total_w = sum(slots)  # units
    tallest = max(g.height for g in geometries)
    label_lines = max(len(b.lines()) for b in blocks) + 1
    bottom = -tallest / 2 - 0.35 - 0.24 * label_lines
    # room above the boxes for the arcs of res blocks' skips
    skips = any(b.residual for b in blocks)
    top = tallest / 2 + (0.5 + 0.2 * max(slots) if skips else 0.3)
    bottom -= 0.24 * skips  # a res block's long label: one line more between it and the legend
    figure = new_figure(total_w * INCH_PER_UNIT, (top - bottom) * INCH_PER_UNIT + 1.1)
    ax = figure.add_axes((0, 0, 1, 0.82))
    ax.set_xlim(0, total_w)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.axis("off")
    edges = _draw_blocks(ax, blocks, geometries, slots)
    _draw_arrows(ax, edges)
    _draw_skips(ax, blocks, geometries, edges)
    _write_headings(figure, report, title or report.spec.text(), total_w)
    return figure
