"""The worked steps of `worked.py` as rich terminal output: matrices, windows, sums.

This module owns the look of `cnnlab explain`: each `render_*` turns an
explanation (data) into a list of rich renderables, printed in order. Window
cells are shown in [brackets] (and colour), padding dimmed, numbers through
`worked.fmt`, so the text matches the JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from cnnlab.explain.cell import CellExplanation, CellStep

from cnnlab.explain.worked import (
    ConvExplanation,
    ConvStep,
    Number,
    PaddingExplanation,
    Pads,
    Pair,
    PoolExplanation,
    PoolStep,
    StrideExplanation,
    fmt,
    pad_matrix,
)
from cnnlab.i18n import N_, _

WINDOW_STYLE = "bold yellow"
PAD_STYLE = "dim"
DEFAULT_MAX_STEPS = 25  # --max-steps default: a 5x5 output in full
CROSS_CORRELATION_NOTE = N_(
    "note: a CNN's 'convolution' is cross-correlation: the kernel slides as it is, "
    "without the flip of the mathematical convolution (torch's conv2d does the same)"
)


def matrix_literal(matrix: list[list[Number | None]]) -> str:
    """[[4, 3], [2, 4]] -> '[[4,3],[2,4]]': the form --input accepts."""
    return "[" + ",".join("[" + ",".join(fmt(v) for v in row) + "]" for row in matrix) + "]"


def partial_output(shape: Pair, filled: list[tuple[int, int, Number]]) -> list[list[Number | None]]:
    """The output map with the values computed so far; None ('.') for the rest."""
    out: list[list[Number | None]] = [[None] * shape[1] for _ in range(shape[0])]
    for i, j, value in filled:
        out[i][j] = value
    return out


def matrix_text(
    matrix: list[list[Number | None]],
    marked: set[tuple[int, int]] | frozenset = frozenset(),
    pads: Pads | None = None,
    dimmed: list[list[bool]] | None = None,
) -> Text:
    """A matrix as aligned text; `marked` cells in [brackets] (and colour), padding dimmed
    (the outer `pads` rows and columns, or the cells `dimmed` marks True)."""
    cells = [[fmt(v) for v in row] for row in matrix]
    width = max(len(cell) for row in cells for cell in row)
    h, w = len(matrix), len(matrix[0])
    text = Text()
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            on_pad = (dimmed is not None and dimmed[r][c]) or (
                pads is not None
                and (r < pads[0] or r >= h - pads[1] or c < pads[2] or c >= w - pads[3])
            )
            if (r, c) in marked:
                text.append(f"[{cell:>{width}}]", WINDOW_STYLE)
            else:
                text.append(f" {cell:>{width}} ", PAD_STYLE if on_pad else "")
        if r < h - 1:
            text.append("\n")
    return text


def side_by_side(captions: list[str], blocks: list[RenderableType]) -> Table:
    """Blocks in one row, each under its caption."""
    grid = Table.grid(padding=(0, 4))
    for _block in blocks:
        grid.add_column()
    grid.add_row(*(Text(caption, "bold") for caption in captions))
    grid.add_row(*blocks)
    return grid


def _line(text: str, style: str = "") -> Text:
    return Text(text, style)


def _pair_text(pair: Pair) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _pads_text(pads: Pads) -> str:
    top, bottom, left, right = pads
    if top == bottom == left == right:
        return str(top)
    return _("top {top}, bottom {bottom}, left {left}, right {right}").format(
        top=top, bottom=bottom, left=left, right=right
    )


def _span(cells: list[int]) -> str:
    """[0, 1, 2] -> '0-2'; dilated taps [0, 2, 4] -> '0,2,4'."""
    if len(cells) == 1:
        return str(cells[0])
    if cells[-1] - cells[0] == len(cells) - 1:
        return f"{cells[0]}-{cells[-1]}"
    return ",".join(str(c) for c in cells)


def _window(rows: list[int], cols: list[int]) -> set[tuple[int, int]]:
    return {(r, c) for r in rows for c in cols}


def _steps(ex: Any, render_step: Callable, max_steps: int | None) -> list[RenderableType]:
    """The first `max_steps` steps (all for 0 or None), then how many were left out."""
    shown = len(ex.steps) if not max_steps else min(len(ex.steps), max_steps)
    out: list[RenderableType] = []
    for step in ex.steps[:shown]:
        out += render_step(ex, step)
    if shown < len(ex.steps):
        more = len(ex.steps) - shown
        out.append(
            _line(_("... {count} more steps (--max-steps 0 shows them all)").format(count=more))
        )
    return out


def render_conv(
    ex: ConvExplanation, brief: bool = False, max_steps: int | None = DEFAULT_MAX_STEPS
) -> list[RenderableType]:
    """The convolution as terminal output: formula, padded input, each step, the output."""
    channels = len(ex.inputs)
    h, w = len(ex.inputs[0]), len(ex.inputs[0][0])
    kh, kw = len(ex.kernels[0]), len(ex.kernels[0][0])
    padding = ex.padding if isinstance(ex.padding, str) else _pair_text(ex.padding)
    out: list[RenderableType] = [
        _line(
            _(
                "convolution: {channels} channel(s) of {size}, kernel {kernel}, stride {stride}, "
                "padding {padding} ({mode}), dilation {dilation}"
            ).format(
                channels=channels,
                size=f"{h}x{w}",
                kernel=f"{kh}x{kw}",
                stride=_pair_text(ex.stride),
                padding=padding,
                mode=ex.padding_mode,
                dilation=_pair_text(ex.dilation),
            ),
            "bold",
        ),
        _line(_(CROSS_CORRELATION_NOTE)),
    ]
    out += [_line(_("padding: {note}").format(note=note)) for note in ex.notes]
    out += [_line(_("output size: {formula}").format(formula=f)) for f in ex.formulas]
    if not brief:
        out += _conv_setup(ex)
        out += _steps(ex, _conv_step, max_steps)
    out += _conv_result(ex)
    return out


def _conv_setup(ex: ConvExplanation) -> list[RenderableType]:
    out: list[RenderableType] = [_line("")]
    kernels_differ = any(k != ex.kernels[0] for k in ex.kernels)
    for c, (matrix, kernel) in enumerate(zip(ex.inputs, ex.kernels, strict=True)):
        caption = _("channel {n} input").format(n=c + 1) if len(ex.inputs) > 1 else _("input")
        captions, blocks = [caption], [matrix_text(matrix)]
        if c == 0 or kernels_differ:
            captions.append(_("kernel {n}").format(n=c + 1) if kernels_differ else _("kernel"))
            blocks.append(matrix_text(kernel))
        if any(ex.pads):
            padded = _("padded ({pads}, {mode})").format(
                pads=_pads_text(ex.pads), mode=ex.padding_mode
            )
            captions.append(padded)
            blocks.append(matrix_text(ex.padded[c], pads=ex.pads))
        out.append(side_by_side(captions, blocks))
    if len(ex.inputs) > 1 and not kernels_differ:
        out.append(_line(_("the same kernel slides over every channel")))
    return out


def _conv_step(ex: ConvExplanation, step: ConvStep) -> list[RenderableType]:
    filled = [(s.row, s.col, s.value) for s in ex.steps[: step.index]]
    so_far = matrix_text(partial_output(ex.out_size, filled), {(step.row, step.col)})
    out: list[RenderableType] = [
        _line(""),
        _line(
            _(
                "step {index}/{count}: output[{row}][{col}], kernel on rows {rows}, columns {cols}"
            ).format(
                index=step.index,
                count=len(ex.steps),
                row=step.row,
                col=step.col,
                rows=_span(step.rows),
                cols=_span(step.cols),
            ),
            "bold",
        ),
    ]
    grid = Table.grid(padding=(0, 4))
    for _column in range(4):
        grid.add_column()
    grid.add_row(
        *(
            Text(c, "bold")
            for c in (_("input (window in [ ])"), _("kernel"), _("products"), _("output so far"))
        )
    )
    for term in step.terms:
        source = ex.padded[term.channel]
        grid.add_row(
            matrix_text(source, _window(step.rows, step.cols), ex.pads if any(ex.pads) else None),
            matrix_text(term.weights),
            matrix_text(term.products),
            so_far if term.channel == 0 else Text(""),
        )
    out.append(grid)
    if len(step.terms) == 1:
        out.append(_line(step.terms[0].text))
    else:
        out += [
            _line(_("channel {n}: {sum}").format(n=t.channel + 1, sum=t.text)) for t in step.terms
        ]
        out.append(_line(_("sum over channels: {sum}").format(sum=step.text)))
    return out


def _conv_result(ex: ConvExplanation) -> list[RenderableType]:
    out: list[RenderableType] = [_line("")]
    oh, ow = ex.out_size
    if len(ex.inputs) > 1:
        captions = [_("channel {n}").format(n=c + 1) for c in range(len(ex.inputs))]
        captions.append(_("sum = output"))
        blocks = [matrix_text(m) for m in ex.channel_outputs] + [matrix_text(ex.output)]
        out.append(side_by_side(captions, blocks))
        out.append(
            _line(
                _(
                    "each channel is convolved with its own kernel slice; "
                    "the channel maps are added into one output map (one filter, no bias)"
                )
            )
        )
    else:
        caption = _("output ({size})").format(size=f"{oh}x{ow}")
        out.append(side_by_side([caption], [matrix_text(ex.output)]))
    out.append(_line(_("output: {matrix}").format(matrix=matrix_literal(ex.output)), "bold"))
    return out


# Whole captions, not "{mode} pooling": a translation names the mode in its own words (최대
# 풀링), where "{mode} 풀링" left "max 풀링". The English is what "{mode} pooling" gave.
POOL_CAPTIONS = {"max": N_("max pooling"), "min": N_("min pooling"), "avg": N_("avg pooling")}
SO_FAR_CAPTIONS = {"max": N_("max so far"), "min": N_("min so far"), "avg": N_("avg so far")}


def render_pool(
    ex: PoolExplanation, brief: bool = False, max_steps: int | None = DEFAULT_MAX_STEPS
) -> list[RenderableType]:
    """Pooling as terminal output: formula, each window with every mode's result, the outputs."""
    h, w = len(ex.inputs[0]), len(ex.inputs[0][0])
    out: list[RenderableType] = [
        _line(
            _(
                "pooling ({modes}): {channels} channel(s) of {size}, window {window}, "
                "stride {stride}, padding {padding}, dilation {dilation}"
            ).format(
                modes=", ".join(ex.modes),
                channels=len(ex.inputs),
                size=f"{h}x{w}",
                window=_pair_text(ex.kernel),
                stride=_pair_text(ex.stride),
                padding=_pair_text(ex.padding),
                dilation=_pair_text(ex.dilation),
            ),
            "bold",
        ),
        _line(_("each window shrinks to one number; channels are pooled separately (no weights)")),
    ]
    out += [_line(_("output size: {formula}").format(formula=f)) for f in ex.formulas]
    if any(ex.padding):
        out.append(
            _line(
                _(
                    "padding ('.'): -inf for max and +inf for min (it never wins), "
                    "0 for avg (counted in the mean, as torch's count_include_pad)"
                )
            )
        )
    if not brief:
        out += _steps(ex, _pool_step, max_steps)
    out.append(_line(""))
    for c in range(len(ex.inputs)):
        name = _("channel {n}: ").format(n=c + 1) if len(ex.inputs) > 1 else ""
        captions = [f"{name}{_('input')}"]
        captions += [_(POOL_CAPTIONS[mode]) for mode in ex.modes]
        blocks = [matrix_text(ex.inputs[c])] + [matrix_text(ex.outputs[m][c]) for m in ex.modes]
        out.append(side_by_side(captions, blocks))
        out += [
            _line(f"{name}{mode}: {matrix_literal(ex.outputs[mode][c])}", "bold")
            for mode in ex.modes
        ]
    return out


def _pool_step(ex: PoolExplanation, step: PoolStep) -> list[RenderableType]:
    p_h, p_w = ex.padding
    pads = (p_h, p_h, p_w, p_w)
    padded = pad_matrix(ex.inputs[step.channel], pads, "zeros", fill=None)
    per_channel = ex.out_size[0] * ex.out_size[1]
    first = step.channel * per_channel
    name = _("channel {n}, ").format(n=step.channel + 1) if len(ex.inputs) > 1 else ""
    captions = [_("input (window in [ ])")]
    captions += [_(SO_FAR_CAPTIONS[mode]) for mode in ex.modes]
    blocks: list[RenderableType] = [
        matrix_text(padded, _window(step.rows, step.cols), pads if any(pads) else None)
    ]
    for mode in ex.modes:
        filled = [(s.row, s.col, s.results[mode].value) for s in ex.steps[first : step.index]]
        blocks.append(matrix_text(partial_output(ex.out_size, filled), {(step.row, step.col)}))
    return [
        _line(""),
        _line(
            _(
                "step {index}/{count}: {channel}output[{row}][{col}], "
                "window on rows {rows}, columns {cols}"
            ).format(
                index=step.index,
                count=len(ex.steps),
                channel=name,
                row=step.row,
                col=step.col,
                rows=_span(step.rows),
                cols=_span(step.cols),
            ),
            "bold",
        ),
        side_by_side(captions, blocks),
        *(_line(f"{mode}: {step.results[mode].text}") for mode in ex.modes),
    ]


def render_padding(ex: PaddingExplanation, brief: bool = False) -> list[RenderableType]:
    """The input padded in every mode, side by side, and what a kernel outputs on it."""
    h, w = len(ex.input), len(ex.input[0])
    padding = ex.padding if isinstance(ex.padding, str) else _pair_text(ex.padding)
    title = _("padding {padding} around a {size} input: {pads} pixel(s)").format(
        padding=padding, size=f"{h}x{w}", pads=_pads_text(ex.pads)
    )
    out: list[RenderableType] = [
        _line(title, "bold"),
        _line(
            _(
                "zeros: 0s; reflect: mirror without repeating the edge; replicate: repeat the edge; "
                "circular: wrap around to the other side"
            )
        ),
    ]
    out += [_line(_("padding: {note}").format(note=note)) for note in ex.notes]
    kernel = "x".join(str(k) for k in ex.kernel)
    then = _("a {kernel} kernel then outputs: {formula}")
    out += [_line(then.format(kernel=kernel, formula=f)) for f in ex.formulas]
    oh, ow = ex.out_size
    keeps = (
        _("the input's size")
        if (oh, ow) == (h, w)
        else _("{out} from {size}").format(out=f"{oh}x{ow}", size=f"{h}x{w}")
    )
    out.append(_line(_("output {size}: {keeps}").format(size=f"{oh}x{ow}", keeps=keeps)))
    out.append(_line(""))
    blocks: list[RenderableType] = [matrix_text(ex.input)]
    captions = [_("input")]
    for view in ex.views:
        captions.append(view.mode)
        if view.matrix is None:
            blocks.append(Text(_("impossible:") + f"\n{view.error}"))
        else:
            blocks.append(matrix_text(view.matrix, pads=ex.pads))
    out.append(side_by_side(captions, blocks))
    if not brief:
        out += [
            _line(f"{view.mode}: {matrix_literal(view.matrix)}")
            for view in ex.views
            if view.matrix is not None
        ]
    return out


def render_stride(ex: StrideExplanation, brief: bool = False) -> list[RenderableType]:
    """Each stride's window positions and output, on the same input and kernel."""
    first = ex.runs[0]
    h, w = len(first.inputs[0]), len(first.inputs[0][0])
    kh, kw = len(first.kernels[0]), len(first.kernels[0][0])
    out: list[RenderableType] = [
        _line(
            _("stride: the same {size} input and {kernel} kernel at stride {strides}").format(
                size=f"{h}x{w}",
                kernel=f"{kh}x{kw}",
                strides=", ".join(str(s) for s in ex.strides),
            ),
            "bold",
        ),
        _line(
            _(
                "the stride is how far the kernel jumps between windows; larger strides give "
                "smaller outputs"
            )
        ),
    ]
    for stride, run in zip(ex.strides, ex.runs, strict=True):
        out.append(_line(""))
        out.append(_line(_("stride {stride}").format(stride=stride), "bold"))
        out += [_line(_("padding: {note}").format(note=note)) for note in run.notes]
        out += [_line(_("output size: {formula}").format(formula=f)) for f in run.formulas]
        starts = {(s.rows[0], s.cols[0]) for s in run.steps}
        source = run.padded[0]
        blocks: list[RenderableType] = [
            matrix_text(source, starts, run.pads if any(run.pads) else None),
            matrix_text(run.output),
        ]
        oh, ow = run.out_size
        captions = [
            _("window top-left corners in [ ]"),
            _("output ({size})").format(size=f"{oh}x{ow}"),
        ]
        out.append(side_by_side(captions, blocks))
        if not brief:
            window = _("rows {rows} cols {cols}")
            windows = ", ".join(
                window.format(rows=_span(s.rows), cols=_span(s.cols)) for s in run.steps
            )
            count = _("{count} windows: {windows}").format(count=len(run.steps), windows=windows)
            out.append(_line(count))
        out.append(_line(_("output: {matrix}").format(matrix=matrix_literal(run.output)), "bold"))
    return out


# --- one cell of a trained model (explain/cell.py) -------------------------------------


def _cell_name(ex: CellExplanation) -> str:
    """'conv1[2][5][7]' for a map cell, 'fc1[3]' for a vector's value."""
    if len(ex.shape) == 1:
        return f"{ex.name}[{ex.cell.channel}]"
    return f"{ex.name}[{ex.cell.channel}][{ex.cell.y}][{ex.cell.x}]"


def render_cell(ex: CellExplanation, brief: bool = False) -> list[RenderableType]:
    """One cell's arithmetic: what it reads one layer down, each step, the total against torch.

    brief: a conv's windows as one line each (channel, where, sum), without the matrices.
    """
    shape = "x".join(str(n) for n in ex.shape)
    out: list[RenderableType] = [
        _line(
            _("{cell} = {value}: layer {index} {spec}, output {shape}").format(
                cell=_cell_name(ex), value=fmt(ex.model_value), index=ex.cell.layer,
                spec=ex.spec, shape=shape,
            ),
            "bold",
        )
    ]  # fmt: skip
    if ex.below is not None:
        out.append(_reads_line(ex))
    for step in ex.steps:
        if brief and step.kind == "window":
            out += [_line(_window_heading(ex, step) + ": " + fmt(step.value))]
            continue
        out += [_line(""), *_cell_step(ex, step)]
    out.append(_line(""))
    verdict = _("agrees with torch") if ex.matches else _("DIFFERS from torch")
    out.append(
        _line(
            _("total: {total}; torch's output at this cell: {value} ({verdict})").format(
                total=fmt(ex.total), value=fmt(ex.model_value), verdict=verdict
            ),
            "bold" if ex.matches else "bold red",
        )
    )
    return out


def _reads_line(ex: CellExplanation) -> Text:
    """'it reads relu1 (layer 4, 32x14x14)', naming the cell when the layer reads only one."""
    below = "x".join(str(n) for n in ex.below["shape"])
    sources = ex.steps[0].sources
    name = _layer_word(ex.below["name"])
    if len(ex.steps) == 1 and sources and len(sources) == 1 and len(sources[0]) == 1:
        source = sources[0][0]  # a value-by-value layer (batchnorm, relu, ...) reads one cell
        vector = len(ex.below["shape"]) == 1
        at = [source.channel] if vector else [source.channel, source.y, source.x]
        name += "".join(f"[{n}]" for n in at)
    return _line(
        _("it reads {name} (layer {index}, {shape}), one layer down").format(
            name=name, index=ex.below["index"], shape=below
        )
    )


def _layer_word(name: str) -> str:
    """A layer's name in a sentence: 'input' (layer 0) in the reader's language, others as named."""
    return _("input") if name == "input" else name


def _taps_text(cells: list[int]) -> str:
    """[-1, 0, 1] -> '-1..1'; dilated [0, 2, 4] -> '0,2,4' (negative: padding above/left)."""
    if len(cells) > 1 and cells[-1] - cells[0] == len(cells) - 1:
        return f"{cells[0]}..{cells[-1]}"
    return ",".join(str(c) for c in cells)


def _window_heading(ex: CellExplanation, step: CellStep) -> str:
    """'channel 2 of maxpool1: rows 3-5, columns 0-2' (negative rows and columns: padding)."""
    rows, cols = step.params.get("rows"), step.params.get("cols")
    where = _("rows {rows}, columns {cols}").format(rows=_taps_text(rows), cols=_taps_text(cols))
    channel = ex.cell.channel if step.channel is None else step.channel
    name = _layer_word(ex.below["name"] if ex.below else "input")
    return _("channel {n} of {below}: {where}").format(n=channel, below=name, where=where)


def _cell_step(ex: CellExplanation, step: CellStep) -> list[RenderableType]:
    """One step: its heading, its matrices side by side (when it has some), its arithmetic."""
    heading, captions, blocks = _STEP_TEXT[step.kind](ex, step)
    out: list[RenderableType] = [_line(heading, "bold")]
    if blocks:
        out.append(side_by_side(captions, blocks))
    out.append(_line(step.text))
    return out


Parts = tuple[str, list[str], list[RenderableType]]


def _window_parts(ex: CellExplanation, step: CellStep) -> Parts:
    captions = [_("window (padding dimmed)"), _("kernel"), _("products")]
    window = matrix_text(step.window, dimmed=step.padding)
    blocks = [window, matrix_text(step.weights), matrix_text(step.products)]
    return _window_heading(ex, step), captions, blocks


# Whole names, not "{mode} pooling": a translation names the kind in its own words (최대 풀링).
POOL_NAMES = {"max": N_("max pooling"), "min": N_("min pooling"), "avg": N_("average pooling")}
GLOBAL_POOL_HEADINGS = {
    "avg": N_("global average pooling: the whole map of channel {n}"),
    "max": N_("global max pooling: the whole map of channel {n}"),
}


def _pool_parts(ex: CellExplanation, step: CellStep) -> Parts:
    mode = step.params["mode"]
    marked = {tuple(step.chosen)} if step.chosen else set()
    if step.kind == "global_pool":
        heading = _(GLOBAL_POOL_HEADINGS[mode]).format(n=ex.cell.channel)
        small = len(step.window) * len(step.window[0]) <= 64
        return heading, [_("map")], [matrix_text(step.window, marked)] if small else []
    heading = _window_heading(ex, step) + "; " + _(POOL_NAMES[mode])
    caption = _("window ('.': padding, never chosen)") if mode != "avg" else _("window")
    return heading, [caption], [matrix_text(step.window, marked, dimmed=step.padding)]


def _dot_parts(ex: CellExplanation, step: CellStep) -> Parts:
    heading = _("the {shown} largest of {count} products input x weight").format(
        shown=len(step.window), count=step.params["count"]
    )
    indices = [[i] for i in step.params["indices"]]
    captions = [_("index"), _("input"), _("weight"), _("product")]
    blocks = [matrix_text(indices), matrix_text(step.window)]
    blocks += [matrix_text(step.weights), matrix_text(step.products)]
    return heading, captions, blocks


def _plain(heading: Callable[[CellExplanation, CellStep], str]) -> Callable[..., Parts]:
    return lambda ex, step: (heading(ex, step), [], [])


def _pass_heading(ex: CellExplanation, step: CellStep) -> str:
    if step.params.get("layer") == "dropout":
        return _("dropout is off when predicting: the value passes unchanged")
    return _("flatten: value {i} is cell [{c}][{y}][{x}] of the maps (c x H*W + y x W + x)").format(
        i=ex.cell.channel, c=step.params["index"][0], y=step.params["index"][1],
        x=step.params["index"][2],
    )  # fmt: skip


_STEP_TEXT: dict[str, Callable[[CellExplanation, CellStep], Parts]] = {
    "window": _window_parts,
    "pool": _pool_parts,
    "global_pool": _pool_parts,
    "dot": _dot_parts,
    "sum": _plain(
        lambda ex, step: _("sum over channels") if ex.kind == "conv" else _("sum of the products")
    ),
    "bias": _plain(lambda ex, step: _("plus the bias")),
    "rest": _plain(
        lambda ex, step: _("the other {count} products, added up").format(
            count=step.params["count"]
        )
    ),
    "batchnorm": _plain(
        lambda ex, step: _(
            "batchnorm with the running statistics (eval mode): "
            "(x - mean)/sqrt(var + eps) x gamma + beta"
        )
    ),
    "activation": _plain(
        lambda ex, step: _("activation {function}").format(function=step.params["function"])
    ),
    "softmax": _plain(
        lambda ex, step: _(
            "softmax: exp of this value over the sum of the exps of all {count}"
        ).format(count=step.params["count"])
    ),
    "pass": _plain(_pass_heading),
    "residual": _plain(
        lambda ex, step: (
            _("the block's layers' output plus its shortcut's output")
            if step.params["shortcut"]
            else _("the block's layers' output plus its input")
        )
    ),
    "input": _plain(lambda ex, step: _("the input pixel, normalised as in training")),
}
