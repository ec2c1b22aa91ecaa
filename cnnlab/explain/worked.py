"""Convolution, pooling, padding and stride worked out step by step on small matrices.

This module owns the arithmetic, pure Python (no torch, no rich): each `explain_*`
function returns the structured steps (every window position, the window's
values, the products, the sum) and the result, which tests compare with torch.
Sizes, padding and the formula text come from `shapes.py` through
`analysis.analyze` (a one-layer model), so the explainer validates and words them
exactly as `cnnlab summary` does. `inputs.py` reads the user's matrices and
options; `render.py` turns an explanation into terminal output.

Matrices are lists of rows (row-major, row 0 at the top); positions are
(row, column), 0-based, in the padded input unless said otherwise.
A CNN's "convolution" is cross-correlation (the kernel is not flipped), as in torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cnnlab.errors import ConfigError, SpecError
from cnnlab.i18n import N_, _
from cnnlab.spec import shapes
from cnnlab.spec.analysis import LayerReport, analyze
from cnnlab.spec.kinds import PADDING_MODES
from cnnlab.spec.language import ModelSpec, make_layer

Number = int | float
Matrix = list[list[Number]]
Pair = tuple[int, int]
Pads = tuple[int, int, int, int]  # (top, bottom, left, right)

POOL_MODES = ("max", "min", "avg")


# --- padding --------------------------------------------------------------------


def source_index(i: int, n: int, mode: str) -> int | None:
    """Which of n input pixels position i (maybe outside 0..n-1) copies; None for zero padding.

    reflect mirrors without repeating the edge (-1 -> 1), replicate repeats the
    edge (-1 -> 0), circular wraps around (-1 -> n-1), as torch's F.pad does.
    """
    if 0 <= i < n:
        return i
    if mode == "zeros":
        return None
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    if mode == "reflect":
        return -i if i < 0 else 2 * (n - 1) - i
    if mode == "circular":
        return i % n
    raise AssertionError(f"unknown padding mode {mode}")


def pad_matrix(matrix: Matrix, pads: Pads, mode: str = "zeros", fill: Number = 0) -> Matrix:
    """The matrix with `pads` = (top, bottom, left, right) rows/columns added; `fill` for zeros."""
    top, bottom, left, right = pads
    h, w = len(matrix), len(matrix[0])
    out = []
    for i in range(-top, h + bottom):
        r = source_index(i, h, mode)
        row = []
        for j in range(-left, w + right):
            c = source_index(j, w, mode)
            row.append(fill if r is None or c is None else matrix[r][c])
        out.append(row)
    return out


def _pads(padding: Pair | str, size: Pair, kernel: Pair, stride: Pair, dilation: Pair) -> Pads:
    if padding == "same":
        top, bottom = shapes.same_padding(size[0], kernel[0], stride[0], dilation[0])
        left, right = shapes.same_padding(size[1], kernel[1], stride[1], dilation[1])
        return top, bottom, left, right
    return padding[0], padding[0], padding[1], padding[1]


# --- numbers as text ------------------------------------------------------------


def fmt(x: Number | None) -> str:
    """4 -> '4'; 2.0 -> '2'; 0.111111 -> '0.1111'; inf -> 'inf'; None -> '.' (not computed yet)."""
    if x is None:
        return "."
    if isinstance(x, int):
        return str(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}"


def factor(x: Number) -> str:
    """A factor in a product: negative numbers in parentheses, '2x(-1)'."""
    return f"({fmt(x)})" if x < 0 else fmt(x)


# --- convolution ----------------------------------------------------------------


@dataclass
class ConvTerm:
    """One channel's share of one window: values under the kernel, products and their sum."""

    channel: int  # 0-based
    window: Matrix  # k_h x k_w input values under the kernel taps
    weights: Matrix  # the kernel of this channel
    products: Matrix
    total: Number
    text: str  # '1x1 + 1x0 + ... = 4'


@dataclass
class ConvStep:
    """One output value: where the kernel sits and the arithmetic."""

    index: int  # 1-based, in the order the kernel slides (left to right, top to bottom)
    row: int  # output position
    col: int
    rows: list[int]  # padded-input rows under the kernel taps (spaced by the dilation)
    cols: list[int]
    terms: list[ConvTerm]
    value: Number
    text: str  # the sum over channels, or the single channel's text


@dataclass
class ConvExplanation:
    """A convolution worked out: the inputs, the padding, every step and the output."""

    inputs: list[Matrix]  # one per channel
    kernels: list[Matrix]  # one per channel
    stride: Pair
    padding: Pair | str  # as asked: (p_h, p_w) or 'same'
    pads: Pads  # (top, bottom, left, right) applied
    dilation: Pair
    padding_mode: str
    padded: list[Matrix]
    formulas: list[str]  # output-size arithmetic from shapes.py
    notes: list[str]  # how 'same' padding was worked out
    out_size: Pair
    steps: list[ConvStep]
    channel_outputs: list[Matrix]  # each channel's map before the sum
    output: Matrix

    def to_json(self) -> dict[str, Any]:
        """Everything, for machines (and tests)."""
        data = asdict(self)
        data["kind"] = "conv"
        data["padding"] = self.padding if isinstance(self.padding, str) else list(self.padding)
        return data


def _one_layer_report(layer_kind: str, positional: list, named: dict, shape: tuple) -> LayerReport:
    """Analyse a one-layer model: validation, output size and formula text from shapes.py."""
    layer = make_layer(layer_kind, positional, named)
    return analyze(ModelSpec((layer,), shape)).layers[0]


INPUT_SIZES_DIFFER = N_("the input channels differ in size ({sizes}): give them one size")


def _check_same_shapes(matrices: list[Matrix], what: str) -> Pair:
    """The one (height, width) of `matrices`; else a ConfigError of `what` (N_-marked, {sizes})."""
    sizes = {(len(m), len(m[0])) for m in matrices}
    if len(sizes) != 1:
        listed = ", ".join(f"{h}x{w}" for h, w in sorted(sizes))
        raise ConfigError(_(what).format(sizes=listed))
    return sizes.pop()


def _taps(start: int, k: int, d: int) -> list[int]:
    return [start + a * d for a in range(k)]


def explain_conv(
    inputs: list[Matrix],
    kernels: list[Matrix],
    stride: Pair = (1, 1),
    padding: Pair | str = (0, 0),
    dilation: Pair = (1, 1),
    padding_mode: str = "zeros",
) -> ConvExplanation:
    """Slide the kernels over the (padded) input channels; one step per output value.

    Each channel's window is multiplied element-wise by that channel's kernel
    and summed; the channel sums add up to the output value (one filter, no bias).
    """
    if len(inputs) != len(kernels):
        raise ConfigError(
            _("{inputs} input channel(s) but {kernels} kernel(s)").format(
                inputs=len(inputs), kernels=len(kernels)
            )
        )
    if padding_mode not in PADDING_MODES:
        raise ConfigError(
            _("padding mode '{mode}' is not one of {modes}").format(
                mode=padding_mode, modes=", ".join(PADDING_MODES)
            )
        )
    h, w = _check_same_shapes(inputs, INPUT_SIZES_DIFFER)
    kernel = _check_same_shapes(
        kernels, N_("the kernel channels differ in size ({sizes}): give them one size")
    )
    report = _one_layer_report(
        "conv",
        [1, kernel],
        dict(stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode),
        (len(inputs), h, w),
    )
    out_size: Pair = tuple(report.out_shape[1:])
    pads = _pads(padding, (h, w), kernel, stride, dilation)
    padded = [pad_matrix(m, pads, padding_mode) for m in inputs]
    steps = _conv_steps(padded, kernels, out_size, stride, dilation)
    channel_outputs = [
        _as_map([s.terms[c].total for s in steps], out_size) for c in range(len(inputs))
    ]
    return ConvExplanation(
        inputs,
        kernels,
        stride,
        padding,
        pads,
        dilation,
        padding_mode,
        padded,
        report.formulas,
        report.notes,
        out_size,
        steps,
        channel_outputs,
        _as_map([s.value for s in steps], out_size),
    )


def _as_map(values: list[Number], size: Pair) -> Matrix:
    """Row-major values -> size[0] rows of size[1]."""
    return [values[i * size[1] : (i + 1) * size[1]] for i in range(size[0])]


def _conv_steps(
    padded: list[Matrix], kernels: list[Matrix], out_size: Pair, stride: Pair, dilation: Pair
) -> list[ConvStep]:
    """One step per output value, in the order the kernel slides (rows, then columns)."""
    k_h, k_w = len(kernels[0]), len(kernels[0][0])
    steps = []
    for i in range(out_size[0]):
        for j in range(out_size[1]):
            rows = _taps(i * stride[0], k_h, dilation[0])
            cols = _taps(j * stride[1], k_w, dilation[1])
            terms = [_conv_term(c, padded[c], kernels[c], rows, cols) for c in range(len(padded))]
            value = sum(t.total for t in terms)
            text = terms[0].text
            if len(terms) > 1:
                text = f"{' + '.join(factor(t.total) for t in terms)} = {fmt(value)}"
            steps.append(ConvStep(len(steps) + 1, i, j, rows, cols, terms, value, text))
    return steps


def _conv_term(
    channel: int, padded: Matrix, kernel: Matrix, rows: list[int], cols: list[int]
) -> ConvTerm:
    return conv_term(channel, [[padded[r][c] for c in cols] for r in rows], kernel)


def conv_term(channel: int, window: Matrix, kernel: Matrix) -> ConvTerm:
    """One channel's window times its kernel, element-wise, and the sum, with its text."""
    products = [
        [v * k for v, k in zip(wr, kr, strict=True)] for wr, kr in zip(window, kernel, strict=True)
    ]
    total = sum(sum(row) for row in products)
    pieces = [
        f"{factor(v)}x{factor(k)}"
        for wr, kr in zip(window, kernel, strict=True)
        for v, k in zip(wr, kr, strict=True)
    ]
    return ConvTerm(
        channel, window, kernel, products, total, f"{' + '.join(pieces)} = {fmt(total)}"
    )


# --- pooling --------------------------------------------------------------------


@dataclass
class PoolResult:
    """One mode's value for one window, with its arithmetic."""

    value: Number
    text: str  # 'max(1, 3, 4, 2) = 4', '(1 + 3 + 4 + 2)/4 = 2.5'


@dataclass
class PoolStep:
    """One window of one channel, and each mode's result."""

    index: int
    channel: int
    row: int
    col: int
    rows: list[int]  # padded-input rows of the window taps
    cols: list[int]
    window: list[list[Number | None]]  # input values; None where the window lies on padding
    results: dict[str, PoolResult]


@dataclass
class PoolExplanation:
    """Pooling worked out for several modes on the same windows."""

    inputs: list[Matrix]
    modes: list[str]
    kernel: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    formulas: list[str]
    out_size: Pair
    steps: list[PoolStep]
    outputs: dict[str, list[Matrix]]  # mode -> one map per channel

    def to_json(self) -> dict[str, Any]:
        """Everything, for machines (and tests)."""
        data = asdict(self)
        data["kind"] = "pool"
        return data


def explain_pool(
    inputs: list[Matrix],
    modes: Sequence[str] = POOL_MODES,
    kernel: Pair = (2, 2),
    stride: Pair | None = None,
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
) -> PoolExplanation:
    """Max, min and/or average of each window, per channel (pooling never mixes channels).

    As torch: max pooling pads with -inf and min pooling with +inf, so padding
    never wins; average pooling pads with 0 and divides by the whole window
    (count_include_pad=True).
    """
    modes = list(modes)
    stride = stride or kernel
    h, w = _check_same_shapes(inputs, INPUT_SIZES_DIFFER)
    if "avg" in modes and dilation != (1, 1):
        raise ConfigError(
            _("average pooling has no dilation (torch's AvgPool2d has none): use --dilation 1")
        )
    reports = [
        _pool_report(mode, kernel, stride, padding, dilation, (len(inputs), h, w)) for mode in modes
    ]
    out_size: Pair = tuple(reports[0].out_shape[1:])
    pads = (padding[0], padding[0], padding[1], padding[1])
    # None marks padding; each mode then reads it as its own neutral value.
    padded = [pad_matrix(m, pads, "zeros", fill=None) for m in inputs]
    steps = _pool_steps(padded, modes, out_size, kernel, stride, dilation)
    per_channel = out_size[0] * out_size[1]
    outputs = {
        mode: [
            _as_map(
                [s.results[mode].value for s in steps[c * per_channel : (c + 1) * per_channel]],
                out_size,
            )
            for c in range(len(inputs))
        ]
        for mode in modes
    }
    return PoolExplanation(
        inputs,
        modes,
        kernel,
        stride,
        padding,
        dilation,
        reports[0].formulas,
        out_size,
        steps,
        outputs,
    )


def _pool_report(
    mode: str, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, shape: tuple
) -> LayerReport:
    """One pooling layer checked by the analyser (avg pooling takes no dilation)."""
    named: dict[str, Any] = dict(stride=stride, padding=padding)
    if mode != "avg":
        named["dilation"] = dilation
    return _one_layer_report(f"{mode}pool", [kernel], named, shape)


def _pool_steps(
    padded: list[list[list[Number | None]]],
    modes: list[str],
    out_size: Pair,
    kernel: Pair,
    stride: Pair,
    dilation: Pair,
) -> list[PoolStep]:
    """One step per window of each channel: channel by channel, rows, then columns."""
    steps = []
    for c, matrix in enumerate(padded):
        for i in range(out_size[0]):
            for j in range(out_size[1]):
                rows = _taps(i * stride[0], kernel[0], dilation[0])
                cols = _taps(j * stride[1], kernel[1], dilation[1])
                window = [[matrix[r][col] for col in cols] for r in rows]
                results = {mode: pool_result(mode, window) for mode in modes}
                steps.append(PoolStep(len(steps) + 1, c, i, j, rows, cols, window, results))
    return steps


def pool_result(mode: str, window: list[list[Number | None]]) -> PoolResult:
    """max/min (None never wins) or avg (None counts as 0) of one window, with its text."""
    cells = [v for row in window for v in row]
    if mode == "avg":
        values = [0 if v is None else v for v in cells]  # padding counts as 0 in the mean
        total = sum(values)
        value = total / len(values)
        terms = " + ".join(factor(v) for v in values)
        return PoolResult(
            value, f"({terms})/{len(values)} = {fmt(total)}/{len(values)} = {fmt(value)}"
        )
    neutral = -math.inf if mode == "max" else math.inf
    values = [neutral if v is None else v for v in cells]
    value = max(values) if mode == "max" else min(values)
    return PoolResult(value, f"{mode}({', '.join(fmt(v) for v in values)}) = {fmt(value)}")


# --- padding and stride side by side --------------------------------------------


@dataclass
class PaddedView:
    """The input padded in one mode, or why that mode cannot pad it."""

    mode: str
    matrix: Matrix | None
    error: str = ""


@dataclass
class PaddingExplanation:
    """One input padded with zeros, reflect, replicate and circular, side by side."""

    input: Matrix
    padding: Pair | str
    pads: Pads
    kernel: Pair  # the kernel the 'same'/size note is worked out for
    formulas: list[str]  # the output size of that kernel on the padded input, from shapes.py
    notes: list[str]
    out_size: Pair
    views: list[PaddedView] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Everything, for machines (and tests)."""
        data = asdict(self)
        data["kind"] = "padding"
        return data


def explain_padding(
    matrix: Matrix,
    padding: Pair | str = (1, 1),
    modes: Sequence[str] = PADDING_MODES,
    kernel: Pair = (3, 3),
) -> PaddingExplanation:
    """Pad `matrix` in each mode (pure Python, as torch's F.pad) and say what a kernel then outputs."""
    h, w = len(matrix), len(matrix[0])
    pads = _pads(padding, (h, w), kernel, (1, 1), (1, 1))
    report = _one_layer_report("conv", [1, kernel], dict(padding=padding), (1, h, w))
    views = []
    for mode in modes:
        try:
            _one_layer_report(
                "conv", [1, kernel], dict(padding=padding, padding_mode=mode), (1, h, w)
            )
        except SpecError as error:
            reason = str(error).split(": ", 1)[-1].split("\n")[0]
            views.append(PaddedView(mode, None, reason))
            continue
        views.append(PaddedView(mode, pad_matrix(matrix, pads, mode)))
    return PaddingExplanation(
        matrix,
        padding,
        pads,
        kernel,
        report.formulas,
        report.notes,
        tuple(report.out_shape[1:]),
        views,
    )


@dataclass
class StrideExplanation:
    """The same input and kernel at several strides: window positions and output sizes."""

    strides: list[int]
    runs: list[ConvExplanation]

    def to_json(self) -> dict[str, Any]:
        """Everything, for machines (and tests)."""
        return {
            "kind": "stride",
            "strides": self.strides,
            "runs": [
                {
                    "stride": s,
                    "formulas": run.formulas,
                    "out_size": list(run.out_size),
                    "windows": [[step.rows[0], step.cols[0]] for step in run.steps],
                    "output": run.output,
                }
                for s, run in zip(self.strides, self.runs, strict=True)
            ],
        }


def explain_stride(
    inputs: list[Matrix],
    kernels: list[Matrix],
    strides: Sequence[int] = (1, 2),
    padding: Pair | str = (0, 0),
    dilation: Pair = (1, 1),
    padding_mode: str = "zeros",
) -> StrideExplanation:
    """One convolution per stride on the same input: where the windows start, what comes out."""
    runs = [explain_conv(inputs, kernels, (s, s), padding, dilation, padding_mode) for s in strides]
    return StrideExplanation(list(strides), runs)
