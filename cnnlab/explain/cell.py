"""The arithmetic behind one number of a trained model's feature maps, with the real numbers.

`explain_cell(model, x, layer, channel, (y, x))` runs the model on one normalised image,
catches the layer's input and output with a forward hook, and works out how the output
at (channel, y, x) came about: a conv's receptive window per input channel of its group
(padding as the padded values), the kernel, the element-wise products, each channel's
sum, the bias; batchnorm's mean, var, gamma, beta and eps; an activation's formula; a
pooling window and the value it keeps (or the mean); an fc's largest products. The text of
each step is `worked.py`'s (`fmt`, `conv_term`, `pool_result`), so `cnnlab explain conv`
and this read alike; every step names the cells of the layer below that it reads
(`Cell`), so a front end can go one layer down. The last step's value is checked against
the hook's output (`CellExplanation.matches`).

A vector layer's (F,) output is addressed as channel = feature index, y = x = 0.
Layer 0 is the model's input (the normalised pixels).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.explain.worked import (
    Matrix,
    conv_term,
    factor,
    fmt,
    pool_result,
    source_index,
)
from cnnlab.i18n import _
from cnnlab.model.cnn import CnnModel
from cnnlab.model.layers import SameConv2d
from cnnlab.spec import shapes
from cnnlab.spec.kinds import require_every_kind

TOLERANCE = 1e-4  # relative, of the larger of the total and the sum of |terms| (float32 rounding)
TOP_TERMS = 10  # an fc's largest products shown; the rest are summed in one step
FULL_TEXT = 49  # a global pool's whole sum written out up to 7x7 values, else summed


@dataclass(frozen=True)
class Cell:
    """One number of a layer's output: layer 0 is the input, 1.. as `cnnlab featuremaps` counts."""

    layer: int
    channel: int  # the feature index of a vector (F,) output
    y: int = 0
    x: int = 0


@dataclass
class CellStep:
    """One step of the arithmetic: its kind, the numbers it reads and the value it gives.

    kinds: window (one input channel under the kernel), sum, bias, dot (an fc's largest
    products), rest (the other products, summed), batchnorm, activation, pool,
    global_pool, softmax, pass (flatten, dropout), input (pixels normalised), residual (a res
    block's layers' output plus its input or shortcut's output).
    Matrices are rows of numbers; `sources` is parallel to `window`: the cell of the layer
    below each value comes from (None: zero padding, outside every map).
    """

    kind: str
    text: str  # the arithmetic as `cnnlab explain` writes it: '0.5x(-1) + 2x0.25 = 0'
    value: float
    channel: int | None = None  # the input channel of a window step
    window: list[list[float | None]] | None = None  # None: pooling padding (never chosen)
    weights: Matrix | None = None
    products: Matrix | None = None
    sources: list[list[Cell | None]] | None = None
    padding: list[list[bool]] | None = None  # True where the window lies outside the map
    chosen: tuple[int, int] | None = None  # (row, col) in the window of a max/min pool's value
    params: dict[str, Any] = field(default_factory=dict)  # bias, eps, slope, count, ...

    def to_json(self) -> dict[str, Any]:
        """The step with its unset fields left out (JSON has no infinity: padding is null)."""
        data = {k: v for k, v in asdict(self).items() if v is not None and v != {}}
        if self.window is not None:
            data["window"] = [[_finite(v) for v in row] for row in self.window]
        return data


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


@dataclass
class CellExplanation:
    """How one output number came about: the steps, their total and torch's own value."""

    cell: Cell
    name: str  # conv1, relu1, ... ('input' for layer 0)
    kind: str
    spec: str  # the layer's spec text
    shape: list[int]  # the layer's output, (C, H, W) or (F,)
    below: dict[str, Any] | None  # the layer read: index, name, kind, shape (None for the input)
    steps: list[CellStep]
    model_value: float  # torch's output at the cell (forward hook)
    scale: float  # the sum of |terms| added: float32's rounding grows with it

    @property
    def total(self) -> float:
        """What the steps work out: the last step's value."""
        return self.steps[-1].value

    @property
    def matches(self) -> bool:
        """True when the total is torch's value to TOLERANCE (relative)."""
        size = max(abs(self.model_value), self.scale)
        return abs(self.total - self.model_value) <= TOLERANCE * size

    def to_json(self) -> dict[str, Any]:
        """Everything, for machines, the page and tests."""
        return {
            "layer": {"index": self.cell.layer, "name": self.name, "kind": self.kind},
            "spec": self.spec,
            "shape": self.shape,
            "cell": asdict(self.cell),
            "below": self.below,
            "steps": [step.to_json() for step in self.steps],
            "total": self.total,
            "model_value": self.model_value,
            "matches": self.matches,
            "tolerance": TOLERANCE,
        }


# --- which cell -----------------------------------------------------------------------


def layer_index(model: CnnModel, layer: str | int) -> int:
    """0 for 'input'; 1.. for a layer's name (conv1) or number, as `cnnlab featuremaps` shows."""
    names = [name for name, _module in model.named_children()]
    text = str(layer).strip()
    if text in ("input", "0"):
        return 0
    if text in names:
        return names.index(text) + 1
    if text.isdigit() and 1 <= int(text) <= len(names):
        return int(text)
    listed = ", ".join(names)
    raise ConfigError(
        _(
            "no layer '{text}' in this model: give input (0), a number 1 to {count}, "
            "or a name: {listed}"
        ).format(text=text, count=len(names), listed=listed)
    )


def check_cell(name: str, shape: list[int], channel: int, y: int, x: int) -> None:
    """A ConfigError naming the allowed range unless (channel, y, x) is a cell of `shape`."""
    if not 0 <= channel < shape[0]:
        what = _("channels") if len(shape) == 3 else _("values (the channel is the index)")
        raise ConfigError(
            _(
                "channel {channel} is out of range: {name} has {count} {what}; use 0 to {last}"
            ).format(channel=channel, name=name, count=shape[0], what=what, last=shape[0] - 1)
        )
    if len(shape) == 1:
        if (y, x) != (0, 0):
            raise ConfigError(
                _("{name} is a vector of {count}: its cells are at y=0, x=0").format(
                    name=name, count=shape[0]
                )
            )
        return
    for axis, value, size in (("y", y, shape[1]), ("x", x, shape[2])):
        if not 0 <= value < size:
            raise ConfigError(
                _(
                    "{axis}={value} is out of range: {name}'s maps are {size}; "
                    "use {axis} from 0 to {last}"
                ).format(
                    axis=axis, value=value, name=name, size=f"{shape[1]}x{shape[2]}", last=size - 1
                )
            )


@dataclass(frozen=True)
class Pixels:
    """The uint8 image (C, H, W) behind the input, and its normalisation (0..1 units)."""

    image: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]


@torch.no_grad()
def explain_cell(
    model: CnnModel,
    x: torch.Tensor,
    layer: str | int,
    channel: int,
    at: tuple[int, int] = (0, 0),
    pixels: Pixels | None = None,
) -> CellExplanation:
    """How layer `layer`'s output at (channel, y, x) came about for one input x (1, C, H, W)."""
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"explain_cell takes one image as (1, C, H, W), got {tuple(x.shape)}")
    index = layer_index(model, layer)
    if index == 0:
        return _explain_input(x[0], Cell(0, channel, *at), pixels)
    name, module = list(model.named_children())[index - 1]
    inp, out = _hooked(model, module, x)
    check_cell(name, list(out.shape), channel, *at)
    cell = Cell(index, channel, *at)
    spec = model.spec.layers[index - 1]
    steps, scale = _EXPLAINERS[spec.kind](module, inp, cell)
    below_name = "input" if index == 1 else list(model.named_children())[index - 2][0]
    below_kind = "input" if index == 1 else model.spec.layers[index - 2].kind
    below = {"index": index - 1, "name": below_name, "kind": below_kind, "shape": list(inp.shape)}
    value = out[channel, at[0], at[1]] if out.ndim == 3 else out[channel]
    return CellExplanation(
        cell, name, spec.kind, spec.text(), list(out.shape), below, steps, float(value), scale
    )


@torch.inference_mode()
def _hooked(model: CnnModel, module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(input, output) of `module` for image x, per image, caught by a forward hook (eval mode)."""
    caught: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = module.register_forward_hook(lambda m, i, o: caught.append((i[0][0], o[0])))
    was_training = model.training
    model.eval()
    try:
        for child in model.children():  # softmax too, which forward() leaves to probabilities()
            x = child(x)
    finally:
        handle.remove()
        model.train(was_training)
    inp, out = caught[0]
    return inp.detach().float().cpu(), out.detach().float().cpu()


def _explain_input(x: torch.Tensor, cell: Cell, pixels: Pixels | None) -> CellExplanation:
    """Layer 0: a pixel of the model's input, normalised as in training."""
    shape = list(x.shape)
    check_cell("input", shape, cell.channel, cell.y, cell.x)
    value = float(x[cell.channel, cell.y, cell.x])
    text, params = fmt(value), {}
    if pixels is not None:
        raw = int(pixels.image[cell.channel, cell.y, cell.x])
        mean, std = pixels.mean[cell.channel], pixels.std[cell.channel]
        text = f"({raw}/255 - {fmt(mean)})/{fmt(std)} = {fmt(value)}"
        params = {"pixel": raw, "mean": mean, "std": std}
    step = CellStep("input", text, (raw / 255 - mean) / std if pixels else value, params=params)
    return CellExplanation(cell, "input", "input", "input", shape, None, [step], value, 0.0)


# --- conv -----------------------------------------------------------------------------


def conv_pads(module: nn.Conv2d, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding the conv applies to an input of `size` (H, W)."""
    if isinstance(module, SameConv2d):
        left, right, top, bottom = module.same_pads
        return top, bottom, left, right
    if module.padding == "valid":
        return 0, 0, 0, 0
    if module.padding == "same":  # stride 1: torch's split, as shapes.same_padding says
        (k_h, k_w), (d_h, d_w) = module.kernel_size, module.dilation
        top, bottom = shapes.same_padding(size[0], k_h, 1, d_h)
        left, right = shapes.same_padding(size[1], k_w, 1, d_w)
        return top, bottom, left, right
    p_h, p_w = module.padding
    return p_h, p_h, p_w, p_w


def window_of(
    plane: list[list[float]], rows: list[int], cols: list[int], mode: str
) -> tuple[Matrix, list[list[tuple[int, int] | None]], list[list[bool]]]:
    """Values at map positions rows x cols (maybe outside), padded as `mode` pads them.

    Returns the window, the (y, x) each value copies (None: zero padding) and where it
    lies outside the map.
    """
    h, w = len(plane), len(plane[0])
    window, sources, outside = [], [], []
    for r in rows:
        sr = source_index(r, h, mode)
        values, cells, flags = [], [], []
        for c in cols:
            sc = source_index(c, w, mode)
            inside = sr is not None and sc is not None
            values.append(plane[sr][sc] if inside else 0.0)
            cells.append((sr, sc) if inside else None)
            flags.append(not (0 <= r < h and 0 <= c < w))
        window.append(values)
        sources.append(cells)
        outside.append(flags)
    return window, sources, outside


def _taps(start: int, k: int, d: int) -> list[int]:
    return [start + a * d for a in range(k)]


def _conv(module: nn.Conv2d, inp: torch.Tensor, cell: Cell) -> tuple[list[CellStep], float]:
    """One window step per input channel of the filter's group, their sum, the bias."""
    top, _bottom, left, _right = conv_pads(module, (inp.shape[1], inp.shape[2]))
    (k_h, k_w), (s_h, s_w), (d_h, d_w) = module.kernel_size, module.stride, module.dilation
    rows = _taps(cell.y * s_h - top, k_h, d_h)  # map rows under the taps (negative: padding)
    cols = _taps(cell.x * s_w - left, k_w, d_w)
    per_group = module.in_channels // module.groups  # weight: (C_out, C_in/groups, k_h, k_w)
    first = cell.channel // (module.out_channels // module.groups) * per_group
    steps = []
    mode = module.padding_mode
    for k in range(per_group):
        channel = first + k
        window, where, outside = window_of(inp[channel].tolist(), rows, cols, mode)
        term = conv_term(channel, window, module.weight[cell.channel, k].tolist())
        sources = [[_below(cell, channel, p) for p in row] for row in where]
        step = CellStep("window", term.text, term.total, channel, window, term.weights)
        step.products, step.sources, step.padding = term.products, sources, outside
        step.params = {"rows": rows, "cols": cols, "padding_mode": mode}
        steps.append(step)
    scale = sum(abs(p) for step in steps for row in step.products for p in row)
    bias = None if module.bias is None else float(module.bias[cell.channel])
    return _sum_and_bias(steps, bias), scale + abs(bias or 0.0)


def _below(cell: Cell, channel: int, where: tuple[int, int] | None) -> Cell | None:
    return None if where is None else Cell(cell.layer - 1, channel, *where)


def _sum_and_bias(steps: list[CellStep], bias: float | None) -> list[CellStep]:
    """The parts added up (when more than one), then the bias added (when the layer has one)."""
    total = sum(step.value for step in steps)
    if len(steps) > 1:
        parts = " + ".join(factor(step.value) for step in steps)
        steps.append(CellStep("sum", f"{parts} = {fmt(total)}", total))
    if bias is not None:
        text = f"{fmt(total)} + {factor(bias)} = {fmt(total + bias)}"
        steps.append(CellStep("bias", text, total + bias, params={"bias": bias}))
    return steps


# --- pooling --------------------------------------------------------------------------


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _pool(mode: str) -> Callable[[nn.Module, torch.Tensor, Cell], tuple[list[CellStep], float]]:
    def explain(module: nn.Module, inp: torch.Tensor, cell: Cell) -> tuple[list[CellStep], float]:
        """The window (None on padding and past the edge); max/min's pick or avg's mean."""
        (k_h, k_w), (s_h, s_w) = _pair(module.kernel_size), _pair(module.stride)
        (p_h, p_w), (d_h, d_w) = _pair(module.padding), _pair(getattr(module, "dilation", 1))
        rows = _taps(cell.y * s_h - p_h, k_h, d_h)
        cols = _taps(cell.x * s_w - p_w, k_w, d_w)
        plane = inp[cell.channel].tolist()
        h, w = len(plane), len(plane[0])
        window = [[plane[r][c] if 0 <= r < h and 0 <= c < w else None for c in cols] for r in rows]
        sources = [
            [None if v is None else Cell(cell.layer - 1, cell.channel, r, c)
             for v, c in zip(values, cols, strict=True)]
            for values, r in zip(window, rows, strict=True)
        ]  # fmt: skip
        outside = [[v is None for v in row] for row in window]
        if mode == "avg":
            step = _avg_step(module, window, rows, cols, (h, w), (p_h, p_w))
        else:
            result = pool_result(mode, window)
            step = CellStep("pool", result.text, result.value, chosen=_chosen(window, result.value))
        step.window, step.sources, step.padding = window, sources, outside
        step.params.update(mode=mode, rows=rows, cols=cols)
        scale = sum(abs(v) for row in window for v in row if v is not None)
        return [step], scale

    return explain


def _chosen(window: list[list[float | None]], value: float) -> tuple[int, int] | None:
    """Where in the window the kept value lies (the first, on ties)."""
    for i, row in enumerate(window):
        for j, v in enumerate(row):
            if v == value:
                return (i, j)
    return None


def _avg_step(
    module: nn.Module,
    window: list[list[float | None]],
    rows: list[int],
    cols: list[int],
    size: tuple[int, int],
    pads: tuple[int, int],
) -> CellStep:
    """The mean as torch takes it: count_include_pad counts the padding (as 0) but never the
    cells past it that ceil_mode's last window may reach; otherwise only the map's cells."""
    include = bool(module.count_include_pad)
    counted = [
        v
        for i, r in enumerate(rows)
        for j, c in enumerate(cols)
        if (v := window[i][j]) is not None
        or (include and -pads[0] <= r < size[0] + pads[0] and -pads[1] <= c < size[1] + pads[1])
    ]
    result = pool_result("avg", [counted])
    return CellStep(
        "pool",
        result.text,
        result.value,
        params={"count_include_pad": include, "count": len(counted)},
    )


def _global(mode: str) -> Callable[[nn.Module, torch.Tensor, Cell], tuple[list[CellStep], float]]:
    def explain(module: nn.Module, inp: torch.Tensor, cell: Cell) -> tuple[list[CellStep], float]:
        """The whole map of the channel: its mean (gap) or its largest value (gmp)."""
        plane = inp[cell.channel].tolist()
        values = [v for row in plane for v in row]
        if len(values) <= FULL_TEXT:
            result = pool_result("avg" if mode == "avg" else "max", plane)
            text, value = result.text, result.value
        else:  # too many to write out: the sum (or max) named by its first and last cells
            value = sum(values) / len(values) if mode == "avg" else max(values)
            span = f"x[0][0] + ... + x[{len(plane) - 1}][{len(plane[0]) - 1}]"
            text = (
                f"({span})/{len(values)} = {fmt(sum(values))}/{len(values)} = {fmt(value)}"
                if mode == "avg"
                else f"max({span.replace(' + ', ', ')}) = {fmt(value)}"
            )
        sources = [[Cell(cell.layer - 1, cell.channel, r, c) for c in range(len(plane[0]))]
                   for r in range(len(plane))]  # fmt: skip
        chosen = _chosen(plane, value) if mode == "max" else None
        step = CellStep("global_pool", text, value, window=plane, sources=sources, chosen=chosen)
        step.params["mode"] = mode
        return [step], sum(abs(v) for v in values)

    return explain


# --- per-value layers ------------------------------------------------------------------


def _value_at(inp: torch.Tensor, cell: Cell) -> tuple[float, Cell]:
    """The input value this cell transforms and where it lies: the same channel, y, x."""
    if inp.ndim == 3:
        return float(inp[cell.channel, cell.y, cell.x]), Cell(cell.layer - 1, *_at(cell))
    return float(inp[cell.channel]), Cell(cell.layer - 1, cell.channel)


def _at(cell: Cell) -> tuple[int, int, int]:
    return cell.channel, cell.y, cell.x


def _one(
    kind: str, text: str, value: float, source: tuple[float, Cell], **params: Any
) -> list[CellStep]:
    """A step that reads one value of the layer below: source = (that value, its cell)."""
    return [CellStep(kind, text, value, window=[[source[0]]], sources=[[source[1]]], params=params)]


def _batchnorm(module: nn.Module, inp: torch.Tensor, cell: Cell) -> tuple[list[CellStep], float]:
    """(x - mean)/sqrt(var + eps) x gamma + beta, with the running statistics (eval mode)."""
    x, source = _value_at(inp, cell)
    c = cell.channel
    mean, var = float(module.running_mean[c]), float(module.running_var[c])
    gamma = 1.0 if module.weight is None else float(module.weight[c])
    beta = 0.0 if module.bias is None else float(module.bias[c])
    eps = module.eps
    value = (x - mean) / math.sqrt(var + eps) * gamma + beta
    text = (
        f"({fmt(x)} - {factor(mean)})/sqrt({fmt(var)} + {fmt(eps)}) x {factor(gamma)} "
        f"+ {factor(beta)} = {fmt(value)}"
    )
    params = dict(input=x, mean=mean, var=var, gamma=gamma, beta=beta, eps=eps)
    return _one("batchnorm", text, value, (x, source), **params), abs(x) + abs(mean) + abs(beta)


def _gelu(x: float) -> tuple[float, str]:
    value = 0.5 * x * (1 + math.erf(x / math.sqrt(2)))
    return value, f"0.5 x {factor(x)} x (1 + erf({factor(x)}/1.414)) = {fmt(value)}"


def _sigmoid(x: float) -> tuple[float, str]:
    value = 1 / (1 + math.exp(-x)) if x > -700 else 0.0  # exp(700+) overflows a float
    return value, f"1/(1 + exp({factor(-x)})) = {fmt(value)}"


def _relu6(x: float) -> tuple[float, str]:
    value = min(max(0.0, x), 6.0)
    return value, f"min(max(0, {fmt(x)}), 6) = {fmt(value)}"


def _leaky(slope: float, x: float) -> tuple[float, str]:
    if x >= 0:
        return x, f"{fmt(x)} >= 0: {fmt(x)}"
    return slope * x, f"{fmt(x)} < 0: {fmt(slope)}x{factor(x)} = {fmt(slope * x)}"


# name -> (module -> x -> (value, text)); the formulas as torch defines them
_FUNCTIONS: dict[str, Callable[[nn.Module], Callable[[float], tuple[float, str]]]] = {
    "relu": lambda m: lambda x: (max(0.0, x), f"max(0, {fmt(x)}) = {fmt(max(0.0, x))}"),
    "relu6": lambda m: lambda x: _relu6(x),
    "leakyrelu": lambda m: lambda x: _leaky(m.negative_slope, x),
    "sigmoid": lambda m: _sigmoid,
    "tanh": lambda m: lambda x: (math.tanh(x), f"tanh({fmt(x)}) = {fmt(math.tanh(x))}"),
    "gelu": lambda m: _gelu,
}


def _activation(
    kind: str,
) -> Callable[[nn.Module, torch.Tensor, Cell], tuple[list[CellStep], float]]:
    def explain(module: nn.Module, inp: torch.Tensor, cell: Cell) -> tuple[list[CellStep], float]:
        """The function applied to the one value below."""
        x, source = _value_at(inp, cell)
        value, text = _FUNCTIONS[kind](module)(x)
        params: dict[str, Any] = {"function": kind, "input": x}
        if kind == "leakyrelu":
            params["slope"] = module.negative_slope
        return _one("activation", text, value, (x, source), **params), abs(x)

    return explain


@torch.inference_mode()
def _residual(module: nn.Module, inp: torch.Tensor, cell: Cell) -> tuple[list[CellStep], float]:
    """A res block's cell: its layers' output there plus the input's (or the shortcut's) value
    at the same channel and place; the identity's value comes from the layer below."""
    body = module.body(inp[None])[0].float()  # (C, H, W): the block's own layers
    identity = len(module.shortcut) == 0
    skip = inp if identity else module.shortcut(inp[None])[0].float()
    at = _at(cell) if body.ndim == 3 else (cell.channel,)
    layers, added = float(body[at]), float(skip[at])
    text = f"{fmt(layers)} + {factor(added)} = {fmt(layers + added)}"
    params = {"layers": layers, "added": added, "shortcut": not identity}
    # the identity's value links one layer down; the layers' (and a shortcut's) lie inside it
    link = {"window": [[added]], "sources": [[Cell(cell.layer - 1, *at)]]} if identity else {}
    step = CellStep("residual", text, layers + added, params=params, **link)
    return [step], abs(layers) + abs(added)


def _dropout(module: nn.Module, inp: torch.Tensor, cell: Cell) -> tuple[list[CellStep], float]:
    """Off when predicting: the value passes unchanged."""
    x, source = _value_at(inp, cell)
    return _one("pass", fmt(x), x, (x, source), p=module.p, layer="dropout"), abs(x)


def _flatten(module: nn.Module, inp: torch.Tensor, cell: Cell) -> tuple[list[CellStep], float]:
    """Value i of the vector is map cell (c, y, x) with i = c*H*W + y*W + x."""
    if inp.ndim == 1:
        return _dropout(module, inp, cell)
    _c, h, w = inp.shape
    c, rest = divmod(cell.channel, h * w)
    y, x = divmod(rest, w)
    value = float(inp[c, y, x])
    text = f"{c}x{h * w} + {y}x{w} + {x} = {cell.channel}: {fmt(value)}"
    source = Cell(cell.layer - 1, c, y, x)
    return _one("pass", text, value, (value, source), layer="flatten", index=[c, y, x]), abs(value)


# --- fc and softmax --------------------------------------------------------------------


def _fc(module: nn.Linear, inp: torch.Tensor, cell: Cell) -> tuple[list[CellStep], float]:
    """The dot product of the input and the unit's weights: the largest products, the rest
    summed, the bias. A 1000-term sum written out would be unreadable."""
    x = inp.double()
    weights = module.weight[cell.channel].double()
    products = x * weights  # (F,)
    top = products.abs().argsort(descending=True)[:TOP_TERMS].tolist()
    col = lambda values: [[float(v)] for v in values]  # noqa: E731  (a column matrix)
    term = conv_term(cell.channel, col(x[top]), col(weights[top]))
    step = CellStep(
        "dot", term.text, term.total, window=term.window, weights=term.weights,
        products=term.products, sources=[[Cell(cell.layer - 1, i)] for i in top],
        params={"indices": top, "count": len(x)},
    )  # fmt: skip
    steps = [step]
    rest_count = len(x) - len(top)
    if rest_count:
        rest = float(products.sum()) - term.total
        text = f"\u03a3 {rest_count} = {fmt(rest)}"
        steps.append(CellStep("rest", text, rest, params={"count": rest_count}))
    bias = None if module.bias is None else float(module.bias[cell.channel])
    return _sum_and_bias(steps, bias), float(products.abs().sum()) + abs(bias or 0.0)


def _softmax(module: nn.Module, inp: torch.Tensor, cell: Cell) -> tuple[list[CellStep], float]:
    """exp(z_i - max)/sum_j exp(z_j - max) over the vector (channels at (y, x) for maps)."""
    z = (inp[:, cell.y, cell.x] if inp.ndim == 3 else inp).double()
    shifted = (z - z.max()).exp()  # shifting by the max changes nothing but avoids overflow
    value = float(shifted[cell.channel] / shifted.sum())
    order = z.argsort(descending=True).tolist()
    shown = [cell.channel] + [i for i in order if i != cell.channel][: TOP_TERMS - 1]
    exps = " + ".join(f"exp({fmt(float(z[i]))})" for i in shown)
    more = " + ..." if len(z) > len(shown) else ""
    text = f"exp({fmt(float(z[cell.channel]))})/({exps}{more}) = {fmt(value)}"
    where = (cell.y, cell.x) if inp.ndim == 3 else (0, 0)
    step = CellStep(
        "softmax", text, value, window=[[float(z[i])] for i in shown],
        products=[[float(shifted[i])] for i in shown],
        sources=[[Cell(cell.layer - 1, i, *where)] for i in shown],
        params={"max": float(z.max()), "denominator": float(shifted.sum()), "count": len(z)},
    )  # fmt: skip
    return [step], 1.0


Explainer = Callable[[nn.Module, torch.Tensor, Cell], tuple[list[CellStep], float]]
_EXPLAINERS: dict[str, Explainer] = {
    "conv": _conv,
    "maxpool": _pool("max"),
    "minpool": _pool("min"),
    "avgpool": _pool("avg"),
    "gap": _global("avg"),
    "gmp": _global("max"),
    "batchnorm": _batchnorm,
    "relu": _activation("relu"),
    "relu6": _activation("relu6"),
    "res": _residual,
    "leakyrelu": _activation("leakyrelu"),
    "sigmoid": _activation("sigmoid"),
    "tanh": _activation("tanh"),
    "gelu": _activation("gelu"),
    "dropout": _dropout,
    "flatten": _flatten,
    "fc": _fc,
    "softmax": _softmax,
}
require_every_kind(_EXPLAINERS, "explain.cell._EXPLAINERS")
