"""Convolution, pooling, padding and stride worked out step by step on small matrices.

The arithmetic is pure Python (no torch): each `explain_*` function returns the structured steps
(every window position, the window's values, the products, the sum) and the
result, which tests compare with torch. Sizes, padding and the formula text
come from `shapes.py` through `analysis.analyze` (a one-layer model), so the
explainer validates and words them exactly as `cnnlab summary` does.
`render_*` turns an explanation into rich renderables for the terminal.

Matrices are lists of rows (row-major, row 0 at the top); positions are
(row, column), 0-based, in the padded input unless said otherwise.
A CNN's "convolution" is cross-correlation (the kernel is not flipped), as in torch.
"""

from __future__ import annotations

import ast
import math
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from cnnlab.errors import ConfigError, SpecError
from cnnlab.spec import shapes
from cnnlab.spec.analysis import LayerReport, analyze
from cnnlab.spec.language import PADDING_MODES, ModelSpec, make_layer

Number = int | float
Matrix = list[list[Number]]
Pair = tuple[int, int]
Pads = tuple[int, int, int, int]  # (top, bottom, left, right)

# Seed 001's worked example: this 5x5 image and 3x3 kernel give [[4,3,4],[2,4,3],[2,3,4]].
SEED_INPUT: Matrix = [
    [1, 1, 1, 0, 0],
    [0, 1, 1, 1, 0],
    [0, 0, 1, 1, 1],
    [0, 0, 1, 1, 0],
    [0, 1, 1, 0, 0],
]
SEED_KERNEL: Matrix = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
# A 4x4 input for 2x2 pooling with stride 2, in the seeds' style: four windows whose
# max, min and mean all differ.
POOL_INPUT: Matrix = [[1, 3, 2, 1], [4, 2, 1, 5], [3, 1, 1, 0], [1, 2, 3, 4]]
PADDING_INPUT: Matrix = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
POOL_MODES = ("max", "min", "avg")
CROSS_CORRELATION_NOTE = (
    "note: a CNN's 'convolution' is cross-correlation: the kernel slides as it is, "
    "without the flip of the mathematical convolution (torch's conv2d does the same)"
)
RANDOM_INPUT_RANGE = (0, 9)  # random inputs: whole numbers, easy to multiply by hand
RANDOM_KERNEL_RANGE = (-1, 1)


# --- reading matrices -----------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_matrix(value: Any, what: str) -> Matrix:
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{what} must be a non-empty list of rows, e.g. [[1,0],[0,1]]")
    rows = [list(row) if isinstance(row, list | tuple) else None for row in value]
    if any(row is None or not row for row in rows):
        raise ConfigError(f"{what} must be a list of rows, each a non-empty list of numbers")
    if any(not _is_number(v) for row in rows for v in row):
        raise ConfigError(f"{what} must hold numbers only")
    if len({len(row) for row in rows}) != 1:
        lengths = ", ".join(str(len(row)) for row in rows)
        raise ConfigError(f"{what} has rows of different lengths ({lengths}): make it rectangular")
    return rows


def parse_matrices(text: str, what: str = "matrix") -> list[Matrix]:
    """'[[1,0],[0,1]]' or '1 0; 0 1' -> one matrix; '[[[..]],[[..]]]' -> one matrix per channel."""
    text = text.strip()
    if "[" not in text and "(" not in text:
        # MATLAB-style rows: '1 0 1; 0 1 0; 1 0 1'
        try:
            rows = [
                [_number(v) for v in re.split(r"[,\s]+", row.strip())] for row in text.split(";")
            ]
        except ValueError:
            rows = None
        if rows is None:
            raise ConfigError(
                f"{what} '{text}' is not a matrix: write [[1,0,1],[0,1,0]] or '1 0 1; 0 1 0'"
            )
        return [_check_matrix(rows, what)]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(
            f"{what} '{text}' is not a matrix literal: write e.g. [[1,0,1],[0,1,0],[1,0,1]]"
        ) from None
    if isinstance(value, list | tuple) and value and isinstance(value[0], list | tuple):
        if value[0] and isinstance(value[0][0], list | tuple):
            return [_check_matrix(m, f"{what} channel {i + 1}") for i, m in enumerate(value)]
        return [_check_matrix(value, what)]
    raise ConfigError(f"{what} '{text}' must be a list of rows, e.g. [[1,0],[0,1]]")


def _number(token: str) -> Number:
    return float(token) if any(c in token for c in ".eE") else int(token)


def _int_pair(text: str) -> tuple[int, int] | None:
    """'5' -> (5, 5); '4x6', '4,6' or '(4,6)' -> (4, 6); anything else -> None."""
    parts = re.split(r"[x,X]", text.strip().strip("()"))
    try:
        values = [int(p) for p in parts]
    except ValueError:
        return None
    if len(values) == 1:
        values *= 2
    return (values[0], values[1]) if len(values) == 2 else None


def parse_size(text: str, what: str) -> Pair:
    """'5' -> (5, 5); '4x6' or '4,6' -> (4, 6)."""
    values = _int_pair(text)
    if values is None or min(values) < 1:
        raise ConfigError(
            f"{what} '{text}' must be N or HxW with positive whole numbers, e.g. 3 or 2x3"
        )
    return values


def random_matrices(
    height: int, width: int, channels: int, seed: int, low: int, high: int
) -> list[Matrix]:
    """`channels` matrices of whole numbers in [low, high], the same for the same seed."""
    rng = random.Random(seed)
    return [
        [[rng.randint(low, high) for _ in range(width)] for _ in range(height)]
        for _ in range(channels)
    ]


def read_input(text: str | None, channels: int | None, seed: int, default: Matrix) -> list[Matrix]:
    """The input channels from --input (literal, 'random:HxW' or None -> the default) and --channels."""
    if text is None:
        if channels and channels > 1:
            h, w = len(default), len(default[0])
            return random_matrices(h, w, channels, seed, *RANDOM_INPUT_RANGE)
        return [default]
    if text.lower().startswith("random"):
        h, w = parse_size(text.partition(":")[2] or f"{len(default)}x{len(default[0])}", "--input")
        return random_matrices(h, w, channels or 1, seed, *RANDOM_INPUT_RANGE)
    matrices = parse_matrices(text, "--input")
    if channels and len(matrices) != channels:
        raise ConfigError(
            f"--channels {channels} but --input holds {len(matrices)} matrix(es): "
            f"give {channels} matrices [[[...]], [[...]], ...] or --input random:HxW"
        )
    return matrices


def read_kernel(text: str | None, channels: int, seed: int) -> list[Matrix]:
    """Per-channel kernels from --kernel: a literal, a named kernel, 'random:KxK' or None (seed 001's)."""
    if text is None:
        return [SEED_KERNEL] * channels
    from cnnlab.explain.kernels import get_kernel, is_kernel_name

    if is_kernel_name(text):
        return [get_kernel(text).matrix] * channels
    if text.lower().startswith("random"):
        h, w = parse_size(text.partition(":")[2] or "3", "--kernel")
        return random_matrices(h, w, channels, seed + 1, *RANDOM_KERNEL_RANGE)
    if re.fullmatch(r"[A-Za-z][\w-]*", text.strip()):
        get_kernel(text)  # raises with the list of names and near matches
    matrices = parse_matrices(text, "--kernel")
    if len(matrices) == 1:
        return matrices * channels
    if len(matrices) != channels:
        raise ConfigError(
            f"--kernel holds {len(matrices)} matrices but the input has {channels} channel(s): "
            "give one matrix (used for every channel) or one per channel"
        )
    return matrices


def parse_padding(text: str | None) -> Pair | str:
    """'1' -> (1, 1); '1x2' -> (1, 2); 'same' -> 'same'; 'valid' -> (0, 0)."""
    if text is None:
        return (0, 0)
    word = text.strip().lower()
    if word in ("same", "valid"):
        return "same" if word == "same" else (0, 0)
    values = _int_pair(word)
    if values is None or min(values) < 0:
        raise ConfigError(f"--padding '{text}' must be a number >= 0, PxQ, same or valid")
    return values


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


def _factor(x: Number) -> str:
    """A factor in a product: negative numbers in parentheses, '2x(-1)'."""
    return f"({fmt(x)})" if x < 0 else fmt(x)


def matrix_literal(matrix: list[list[Number | None]]) -> str:
    """[[4, 3], [2, 4]] -> '[[4,3],[2,4]]': the form --input accepts."""
    return "[" + ",".join("[" + ",".join(fmt(v) for v in row) + "]" for row in matrix) + "]"


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


def _check_same_shapes(matrices: list[Matrix], what: str) -> Pair:
    sizes = {(len(m), len(m[0])) for m in matrices}
    if len(sizes) != 1:
        listed = ", ".join(f"{h}x{w}" for h, w in sorted(sizes))
        raise ConfigError(f"the {what} channels differ in size ({listed}): give them one size")
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
        raise ConfigError(f"{len(inputs)} input channel(s) but {len(kernels)} kernel(s)")
    if padding_mode not in PADDING_MODES:
        raise ConfigError(f"padding mode '{padding_mode}' is not one of {', '.join(PADDING_MODES)}")
    h, w = _check_same_shapes(inputs, "input")
    kernel = _check_same_shapes(kernels, "kernel")
    report = _one_layer_report(
        "conv",
        [1, kernel],
        dict(stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode),
        (len(inputs), h, w),
    )
    out_h, out_w = report.out_shape[1:]
    pads = _pads(padding, (h, w), kernel, stride, dilation)
    padded = [pad_matrix(m, pads, padding_mode) for m in inputs]
    steps = []
    for i in range(out_h):
        for j in range(out_w):
            rows = _taps(i * stride[0], kernel[0], dilation[0])
            cols = _taps(j * stride[1], kernel[1], dilation[1])
            terms = [_conv_term(c, padded[c], kernels[c], rows, cols) for c in range(len(inputs))]
            value = sum(t.total for t in terms)
            text = terms[0].text
            if len(terms) > 1:
                text = f"{' + '.join(_factor(t.total) for t in terms)} = {fmt(value)}"
            steps.append(ConvStep(len(steps) + 1, i, j, rows, cols, terms, value, text))
    channel_outputs = [
        [[s.terms[c].total for s in steps[i * out_w : (i + 1) * out_w]] for i in range(out_h)]
        for c in range(len(inputs))
    ]
    output = [[s.value for s in steps[i * out_w : (i + 1) * out_w]] for i in range(out_h)]
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
        (out_h, out_w),
        steps,
        channel_outputs,
        output,
    )


def _conv_term(
    channel: int, padded: Matrix, kernel: Matrix, rows: list[int], cols: list[int]
) -> ConvTerm:
    window = [[padded[r][c] for c in cols] for r in rows]
    products = [
        [v * k for v, k in zip(wr, kr, strict=True)] for wr, kr in zip(window, kernel, strict=True)
    ]
    total = sum(sum(row) for row in products)
    pieces = [
        f"{_factor(v)}x{_factor(k)}"
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


def parse_modes(text: str | None) -> list[str]:
    """'max,min,avg' -> ['max', 'min', 'avg']; None -> all three."""
    if not text:
        return list(POOL_MODES)
    modes = [m.strip().lower().removesuffix("pool") for m in text.split(",") if m.strip()]
    modes = ["avg" if m in ("mean", "average") else m for m in modes]
    bad = [m for m in modes if m not in POOL_MODES]
    if bad or not modes:
        raise ConfigError(
            f"--mode '{text}': choose among {', '.join(POOL_MODES)}, e.g. max,min,avg"
        )
    return list(dict.fromkeys(modes))


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
    h, w = _check_same_shapes(inputs, "input")
    if "avg" in modes and dilation != (1, 1):
        raise ConfigError(
            "average pooling has no dilation (torch's AvgPool2d has none): use --dilation 1"
        )
    reports = [
        _one_layer_report(
            f"{mode}pool",
            [kernel],
            dict(
                stride=stride, padding=padding, **({} if mode == "avg" else {"dilation": dilation})
            ),
            (len(inputs), h, w),
        )
        for mode in modes
    ]
    out_h, out_w = reports[0].out_shape[1:]
    pads = (padding[0], padding[0], padding[1], padding[1])
    # None marks padding; each mode then reads it as its own neutral value.
    padded = [pad_matrix(m, pads, "zeros", fill=None) for m in inputs]
    steps = []
    for c, matrix in enumerate(padded):
        for i in range(out_h):
            for j in range(out_w):
                rows = _taps(i * stride[0], kernel[0], dilation[0])
                cols = _taps(j * stride[1], kernel[1], dilation[1])
                window = [[matrix[r][col] for col in cols] for r in rows]
                results = {mode: _pool_result(mode, window) for mode in modes}
                steps.append(PoolStep(len(steps) + 1, c, i, j, rows, cols, window, results))
    per_channel = out_h * out_w
    outputs = {
        mode: [
            [
                [steps[c * per_channel + i * out_w + j].results[mode].value for j in range(out_w)]
                for i in range(out_h)
            ]
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
        (out_h, out_w),
        steps,
        outputs,
    )


def _pool_result(mode: str, window: list[list[Number | None]]) -> PoolResult:
    cells = [v for row in window for v in row]
    if mode == "avg":
        values = [0 if v is None else v for v in cells]  # padding counts as 0 in the mean
        total = sum(values)
        value = total / len(values)
        terms = " + ".join(_factor(v) for v in values)
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


def partial_output(shape: Pair, filled: list[tuple[int, int, Number]]) -> list[list[Number | None]]:
    """The output map with the values computed so far; None ('.') for the rest."""
    out: list[list[Number | None]] = [[None] * shape[1] for _ in range(shape[0])]
    for i, j, value in filled:
        out[i][j] = value
    return out


# --- rendering ------------------------------------------------------------------

WINDOW_STYLE = "bold yellow"
PAD_STYLE = "dim"
DEFAULT_MAX_STEPS = 25


def matrix_text(
    matrix: list[list[Number | None]],
    marked: set[tuple[int, int]] | frozenset = frozenset(),
    pads: Pads | None = None,
) -> Text:
    """A matrix as aligned text; `marked` cells in [brackets] (and colour), padding dimmed."""
    cells = [[fmt(v) for v in row] for row in matrix]
    width = max(len(cell) for row in cells for cell in row)
    h, w = len(matrix), len(matrix[0])
    text = Text()
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            on_pad = pads is not None and (
                r < pads[0] or r >= h - pads[1] or c < pads[2] or c >= w - pads[3]
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
    for _ in blocks:
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
    return f"top {top}, bottom {bottom}, left {left}, right {right}"


def _span(cells: list[int]) -> str:
    """[0, 1, 2] -> '0-2'; dilated taps [0, 2, 4] -> '0,2,4'."""
    if len(cells) == 1:
        return str(cells[0])
    if cells[-1] - cells[0] == len(cells) - 1:
        return f"{cells[0]}-{cells[-1]}"
    return ",".join(str(c) for c in cells)


def _window(rows: list[int], cols: list[int]) -> set[tuple[int, int]]:
    return {(r, c) for r in rows for c in cols}


def _limit(total: int, max_steps: int | None) -> int:
    return total if not max_steps else min(total, max_steps)


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
            f"convolution: {channels} channel(s) of {h}x{w}, kernel {kh}x{kw}, stride "
            f"{_pair_text(ex.stride)}, padding {padding} ({ex.padding_mode}), dilation "
            f"{_pair_text(ex.dilation)}",
            "bold",
        ),
        _line(CROSS_CORRELATION_NOTE),
    ]
    out += [_line(f"padding: {note}") for note in ex.notes]
    out += [_line(f"output size: {formula}") for formula in ex.formulas]
    if not brief:
        out += _conv_setup(ex)
        shown = _limit(len(ex.steps), max_steps)
        for step in ex.steps[:shown]:
            out += _conv_step(ex, step)
        if shown < len(ex.steps):
            out.append(
                _line(f"... {len(ex.steps) - shown} more steps (--max-steps 0 shows them all)")
            )
    out += _conv_result(ex)
    return out


def _conv_setup(ex: ConvExplanation) -> list[RenderableType]:
    out: list[RenderableType] = [_line("")]
    kernels_differ = any(k != ex.kernels[0] for k in ex.kernels)
    for c, (matrix, kernel) in enumerate(zip(ex.inputs, ex.kernels, strict=True)):
        name = f"channel {c + 1} " if len(ex.inputs) > 1 else ""
        captions, blocks = [f"{name}input"], [matrix_text(matrix)]
        if c == 0 or kernels_differ:
            captions.append(f"kernel {c + 1}" if kernels_differ else "kernel")
            blocks.append(matrix_text(kernel))
        if any(ex.pads):
            captions.append(f"padded ({_pads_text(ex.pads)}, {ex.padding_mode})")
            blocks.append(matrix_text(ex.padded[c], pads=ex.pads))
        out.append(side_by_side(captions, blocks))
    if len(ex.inputs) > 1 and not kernels_differ:
        out.append(_line("the same kernel slides over every channel"))
    return out


def _conv_step(ex: ConvExplanation, step: ConvStep) -> list[RenderableType]:
    filled = [(s.row, s.col, s.value) for s in ex.steps[: step.index]]
    so_far = matrix_text(partial_output(ex.out_size, filled), {(step.row, step.col)})
    out: list[RenderableType] = [
        _line(""),
        _line(
            f"step {step.index}/{len(ex.steps)}: output[{step.row}][{step.col}], "
            f"kernel on rows {_span(step.rows)}, columns {_span(step.cols)}",
            "bold",
        ),
    ]
    grid = Table.grid(padding=(0, 4))
    for _ in range(4):
        grid.add_column()
    grid.add_row(
        *(Text(c, "bold") for c in ("input (window in [ ])", "kernel", "products", "output so far"))
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
        out += [_line(f"channel {t.channel + 1}: {t.text}") for t in step.terms]
        out.append(_line(f"sum over channels: {step.text}"))
    return out


def _conv_result(ex: ConvExplanation) -> list[RenderableType]:
    out: list[RenderableType] = [_line("")]
    oh, ow = ex.out_size
    if len(ex.inputs) > 1:
        captions = [f"channel {c + 1}" for c in range(len(ex.inputs))] + ["sum = output"]
        blocks = [matrix_text(m) for m in ex.channel_outputs] + [matrix_text(ex.output)]
        out.append(side_by_side(captions, blocks))
        out.append(
            _line(
                "each channel is convolved with its own kernel slice; "
                "the channel maps are added into one output map (one filter, no bias)"
            )
        )
    else:
        out.append(side_by_side([f"output ({oh}x{ow})"], [matrix_text(ex.output)]))
    out.append(_line(f"output: {matrix_literal(ex.output)}", "bold"))
    return out


def render_pool(
    ex: PoolExplanation, brief: bool = False, max_steps: int | None = DEFAULT_MAX_STEPS
) -> list[RenderableType]:
    """Pooling as terminal output: formula, each window with every mode's result, the outputs."""
    h, w = len(ex.inputs[0]), len(ex.inputs[0][0])
    out: list[RenderableType] = [
        _line(
            f"pooling ({', '.join(ex.modes)}): {len(ex.inputs)} channel(s) of {h}x{w}, window "
            f"{_pair_text(ex.kernel)}, stride {_pair_text(ex.stride)}, padding "
            f"{_pair_text(ex.padding)}, dilation {_pair_text(ex.dilation)}",
            "bold",
        ),
        _line("each window shrinks to one number; channels are pooled separately (no weights)"),
    ]
    out += [_line(f"output size: {formula}") for formula in ex.formulas]
    if any(ex.padding):
        out.append(
            _line(
                "padding ('.'): -inf for max and +inf for min (it never wins), "
                "0 for avg (counted in the mean, as torch's count_include_pad)"
            )
        )
    if not brief:
        shown = _limit(len(ex.steps), max_steps)
        for step in ex.steps[:shown]:
            out += _pool_step(ex, step)
        if shown < len(ex.steps):
            out.append(
                _line(f"... {len(ex.steps) - shown} more steps (--max-steps 0 shows them all)")
            )
    out.append(_line(""))
    for c in range(len(ex.inputs)):
        name = f"channel {c + 1}: " if len(ex.inputs) > 1 else ""
        captions = [f"{name}input"] + [f"{mode} pooling" for mode in ex.modes]
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
    name = f"channel {step.channel + 1}, " if len(ex.inputs) > 1 else ""
    captions = ["input (window in [ ])"] + [f"{mode} so far" for mode in ex.modes]
    blocks: list[RenderableType] = [
        matrix_text(padded, _window(step.rows, step.cols), pads if any(pads) else None)
    ]
    for mode in ex.modes:
        filled = [(s.row, s.col, s.results[mode].value) for s in ex.steps[first : step.index]]
        blocks.append(matrix_text(partial_output(ex.out_size, filled), {(step.row, step.col)}))
    return [
        _line(""),
        _line(
            f"step {step.index}/{len(ex.steps)}: {name}output[{step.row}][{step.col}], "
            f"window on rows {_span(step.rows)}, columns {_span(step.cols)}",
            "bold",
        ),
        side_by_side(captions, blocks),
        *(_line(f"{mode}: {step.results[mode].text}") for mode in ex.modes),
    ]


def render_padding(ex: PaddingExplanation, brief: bool = False) -> list[RenderableType]:
    """The input padded in every mode, side by side, and what a kernel outputs on it."""
    h, w = len(ex.input), len(ex.input[0])
    padding = ex.padding if isinstance(ex.padding, str) else _pair_text(ex.padding)
    out: list[RenderableType] = [
        _line(f"padding {padding} around a {h}x{w} input: {_pads_text(ex.pads)} pixel(s)", "bold"),
        _line(
            "zeros: 0s; reflect: mirror without repeating the edge; replicate: repeat the edge; "
            "circular: wrap around to the other side"
        ),
    ]
    out += [_line(f"padding: {note}") for note in ex.notes]
    kh, kw = ex.kernel
    out += [_line(f"a {kh}x{kw} kernel then outputs: {formula}") for formula in ex.formulas]
    oh, ow = ex.out_size
    keeps = "the input's size" if (oh, ow) == (h, w) else f"{oh}x{ow} from {h}x{w}"
    out.append(_line(f"output {oh}x{ow}: {keeps}"))
    out.append(_line(""))
    blocks: list[RenderableType] = [matrix_text(ex.input)]
    captions = ["input"]
    for view in ex.views:
        captions.append(view.mode)
        if view.matrix is None:
            blocks.append(Text(f"impossible:\n{view.error}"))
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
            f"stride: the same {h}x{w} input and {kh}x{kw} kernel at stride "
            f"{', '.join(str(s) for s in ex.strides)}",
            "bold",
        ),
        _line(
            "the stride is how far the kernel jumps between windows; larger strides give "
            "smaller outputs"
        ),
    ]
    for stride, run in zip(ex.strides, ex.runs, strict=True):
        out.append(_line(""))
        out.append(_line(f"stride {stride}", "bold"))
        out += [_line(f"padding: {note}") for note in run.notes]
        out += [_line(f"output size: {formula}") for formula in run.formulas]
        starts = {(s.rows[0], s.cols[0]) for s in run.steps}
        source = run.padded[0]
        blocks: list[RenderableType] = [
            matrix_text(source, starts, run.pads if any(run.pads) else None),
            matrix_text(run.output),
        ]
        oh, ow = run.out_size
        out.append(side_by_side(["window top-left corners in [ ]", f"output ({oh}x{ow})"], blocks))
        if not brief:
            windows = ", ".join(f"rows {_span(s.rows)} cols {_span(s.cols)}" for s in run.steps)
            out.append(_line(f"{len(run.steps)} windows: {windows}"))
        out.append(_line(f"output: {matrix_literal(run.output)}", "bold"))
    return out
