"""Torch modules for each layer kind of the spec language, and the way back from a module to its spec.

torch lacks min pooling, 'same' padding with a stride above 1, global
pooling that yields a vector and a residual block; those are defined here. `build_layer` turns a
`LayerSpec` (with the input shape `analysis.py` worked out for it) into an
`nn.Module`; `layer_from_module` maps a built module back to its `LayerSpec`.
Both tables are checked against `spec/kinds.py` at import; a kind without
parameters needs only its builder (the way back is the class the builder makes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.spec import shapes
from cnnlab.spec.analysis import analyze
from cnnlab.spec.kinds import LAYER_KINDS, require_every_kind
from cnnlab.spec.language import LayerSpec, ModelSpec, make_layer


class MinPool2d(nn.MaxPool2d):
    """Min pooling: the smallest value of each window, computed as -maxpool(-x).

    The padding of max pooling is -inf, so here it acts as +inf and never wins
    a minimum; gradients flow to the argmin of each window, as they should.
    Input (N, C, H, W) -> (N, C, H_out, W_out), H_out as for max pooling.
    Example: MinPool2d(2)([[4, 2], [1, 3]]) -> [[1]].
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -super().forward(-x)


class SameConv2d(nn.Conv2d):
    """Convolution with Keras-style 'same' padding for strides above 1, which torch refuses.

    The output is ceil(L/s) long; the padding (odd pixel at the bottom/right,
    from `shapes.same_padding`) is applied explicitly with the padding mode.
    Weights and names are those of nn.Conv2d.
    """

    def __init__(self, *args, same_pads: tuple[int, int, int, int], **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        self.same_pads = same_pads  # (left, right, top, bottom), the order F.pad wants

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        x = F.pad(x, self.same_pads, mode=mode)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", same_pads={self.same_pads}"


class Residual(nn.Module):
    """A residual block: body(x) + shortcut(x), where an empty shortcut is the input itself.

    Input (N, C, H, W) (or (N, F) for a block of fc layers) -> the body's output shape, which
    the shortcut's equals (analysis.py checks before anything is built). The two children are
    nn.Sequentials named as the top level is (conv1, batchnorm1, relu1, ...), so the weights
    read res1.body.conv1.weight and res1.shortcut.conv1.weight.
    Example: Residual(Sequential(conv 16->16, bn), Sequential())(x) = bn(conv(x)) + x.
    """

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential):
        super().__init__()
        self.body = body
        self.shortcut = shortcut  # empty: the identity (returns its input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class GlobalAvgPool2d(nn.Module):
    """Mean of each channel: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class GlobalMaxPool2d(nn.Module):
    """Largest value of each channel: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))


# --- spec -> module -------------------------------------------------------------

InputShape = tuple[int, ...]  # (C, H, W) or (F,) per image


def _build_conv(p: dict, in_shape: InputShape) -> nn.Module:
    common = dict(
        in_channels=in_shape[0],
        out_channels=p["out"],
        kernel_size=p["kernel"],
        stride=p["stride"],
        dilation=p["dilation"],
        groups=p["groups"],
        bias=p["bias"],
        padding_mode=p["padding_mode"],
    )
    if p["padding"] == "same" and p["stride"] != (1, 1):
        top, bottom = shapes.same_padding(
            in_shape[1], p["kernel"][0], p["stride"][0], p["dilation"][0]
        )
        left, right = shapes.same_padding(
            in_shape[2], p["kernel"][1], p["stride"][1], p["dilation"][1]
        )
        return SameConv2d(**common, same_pads=(left, right, top, bottom))
    return nn.Conv2d(**common, padding=p["padding"])


def _build_pool(cls: type[nn.Module]) -> Callable[[dict, InputShape], nn.Module]:
    def build(p: dict, in_shape: InputShape) -> nn.Module:
        kwargs = dict(
            kernel_size=p["kernel"],
            stride=p["stride"],
            padding=p["padding"],
            ceil_mode=p["ceil_mode"],
        )
        if cls is nn.AvgPool2d:
            kwargs["count_include_pad"] = p["count_include_pad"]
        else:
            kwargs["dilation"] = p["dilation"]
        return cls(**kwargs)

    return build


def _build_batchnorm(p: dict, in_shape: InputShape) -> nn.Module:
    cls = nn.BatchNorm2d if len(in_shape) == 3 else nn.BatchNorm1d
    return cls(in_shape[0], eps=p["eps"], momentum=p["momentum"])


def build_sequence(layers: tuple[LayerSpec, ...], in_shape: InputShape) -> nn.Sequential:
    """The layers as an nn.Sequential of children named conv1, relu1, ... (empty for no layers)."""
    reports = analyze(ModelSpec(layers, tuple(in_shape))).layers if layers else []
    return nn.Sequential(OrderedDict((r.name, build_layer(r.layer, r.in_shape)) for r in reports))


def _build_res(p: dict, in_shape: InputShape) -> nn.Module:
    return Residual(build_sequence(p["body"], in_shape), build_sequence(p["shortcut"], in_shape))


_BUILDERS: dict[str, Callable[[dict, InputShape], nn.Module]] = {
    "conv": _build_conv,
    "maxpool": _build_pool(nn.MaxPool2d),
    "minpool": _build_pool(MinPool2d),
    "avgpool": _build_pool(nn.AvgPool2d),
    "gap": lambda p, s: GlobalAvgPool2d(),
    "gmp": lambda p, s: GlobalMaxPool2d(),
    "batchnorm": _build_batchnorm,
    "relu": lambda p, s: nn.ReLU(),
    "relu6": lambda p, s: nn.ReLU6(),
    "leakyrelu": lambda p, s: nn.LeakyReLU(p["slope"]),
    "sigmoid": lambda p, s: nn.Sigmoid(),
    "tanh": lambda p, s: nn.Tanh(),
    "gelu": lambda p, s: nn.GELU(),
    "dropout": lambda p, s: nn.Dropout(p["p"]),
    "flatten": lambda p, s: nn.Flatten(start_dim=1),
    "fc": lambda p, s: nn.Linear(s[0], p["out"], bias=p["bias"]),
    "res": _build_res,
    "softmax": lambda p, s: nn.Softmax(dim=1),
}
require_every_kind(_BUILDERS, "model.layers._BUILDERS")


def build_layer(layer: LayerSpec, in_shape: InputShape) -> nn.Module:
    """The torch module for one layer, given the per-image input shape it receives."""
    return _BUILDERS[layer.kind](layer.params, in_shape)


# --- module -> spec -------------------------------------------------------------


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


Arguments = tuple[list, dict]  # make_layer's positional and named raw values


def _conv_args(m: nn.Conv2d) -> Arguments:
    padding = m.padding if isinstance(m.padding, str) else _pair(m.padding)
    if isinstance(m, SameConv2d):
        padding = "same"
    named = dict(
        stride=_pair(m.stride),
        padding=padding,
        dilation=_pair(m.dilation),
        groups=m.groups,
        bias=m.bias is not None,
        padding_mode=m.padding_mode,
    )
    return [m.out_channels, _pair(m.kernel_size)], named


def _pool_args(m: nn.Module) -> Arguments:
    named = dict(stride=_pair(m.stride), padding=_pair(m.padding), ceil_mode=bool(m.ceil_mode))
    if isinstance(m, nn.AvgPool2d):
        named["count_include_pad"] = bool(m.count_include_pad)
    else:
        named["dilation"] = _pair(m.dilation)
    return [_pair(m.kernel_size)], named


def _no_args(m: nn.Module) -> Arguments:
    return [], {}


def _batchnorm_args(m: nn.Module) -> Arguments:
    return [], dict(eps=m.eps, momentum=m.momentum)


def _res_args(m: Residual) -> Arguments:
    body = tuple(layer_from_module(child) for child in m.body)
    return [body], {"shortcut": tuple(layer_from_module(child) for child in m.shortcut)}


def _parameterless() -> list[tuple[type[nn.Module], str, Callable[[nn.Module], Arguments]]]:
    """The way back for every kind without parameters: the class its builder makes."""
    kinds = [kind for kind in LAYER_KINDS.values() if not kind.params]
    return [(type(_BUILDERS[kind.name]({}, (1, 1, 1))), kind.name, _no_args) for kind in kinds]


# (module class, kind, its arguments); order matters: subclasses before their torch parents.
_REVERSE: list[tuple[type[nn.Module], str, Callable[[nn.Module], Arguments]]] = [
    (nn.Conv2d, "conv", _conv_args),
    (MinPool2d, "minpool", _pool_args),
    (nn.MaxPool2d, "maxpool", _pool_args),
    (nn.AvgPool2d, "avgpool", _pool_args),
    (nn.BatchNorm2d, "batchnorm", _batchnorm_args),
    (nn.BatchNorm1d, "batchnorm", _batchnorm_args),
    (nn.LeakyReLU, "leakyrelu", lambda m: ([m.negative_slope], {})),
    (nn.Dropout, "dropout", lambda m: ([m.p], {})),
    # fc's input size is left to be inferred, as in a spec that does not declare it.
    (nn.Linear, "fc", lambda m: ([m.out_features], {"bias": m.bias is not None})),
    (Residual, "res", _res_args),
    *_parameterless(),  # relu, relu6, sigmoid, tanh, gelu, flatten, softmax, gap, gmp
]
require_every_kind({kind for _, kind, _ in _REVERSE}, "model.layers._REVERSE")


def layer_from_module(module: nn.Module) -> LayerSpec:
    """The spec of a built layer; a TypeError for modules cnnlab does not describe."""
    for cls, kind, arguments in _REVERSE:
        if isinstance(module, cls):
            return make_layer(kind, *arguments(module))
    raise TypeError(f"cnnlab has no spec for {type(module).__name__}")
