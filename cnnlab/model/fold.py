"""BatchNorm folded into the conv or fc before it: the same function in eval mode, one layer fewer.

In eval mode BatchNorm is an affine map per channel, y = (x - mean) * s + beta with
s = gamma / sqrt(var + eps). After a conv or fc, y = W'x + b' with W' = W * s (per output
channel) and b' = (b - mean) * s + beta: exact for any stride, padding (mode), dilation
or groups, since it only rescales each output channel. Exports use the folded copy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from cnnlab.model.cnn import CnnModel

_FOLDABLE = (nn.Conv2d, nn.Linear)  # SameConv2d is an nn.Conv2d
_BATCHNORMS = (nn.BatchNorm2d, nn.BatchNorm1d)


def foldable_pairs(model: CnnModel) -> list[tuple[str, str]]:
    """(conv or fc name, batchnorm name) for each BatchNorm that directly follows a conv or fc."""
    children = list(model.named_children())
    return [
        (name, next_name)
        for (name, module), (next_name, next_module) in zip(children, children[1:], strict=False)
        if isinstance(module, _FOLDABLE) and isinstance(next_module, _BATCHNORMS)
    ]


@torch.no_grad()
def fold_batchnorm(model: CnnModel) -> CnnModel:
    """An eval-mode copy of `model` with every foldable BatchNorm merged in and replaced by Identity.

    The copy keeps its children's names and count (conv1, batchnorm2 -> Identity, ...),
    so it runs exactly as the original does in eval mode. BatchNorms that follow
    something else (a pool, an activation) stay as they are. The original is untouched.
    """
    folded = copy.deepcopy(model).eval()
    for layer_name, bn_name in foldable_pairs(folded):
        layer = getattr(folded, layer_name)
        bn = getattr(folded, bn_name)
        _fold_into(layer, bn)
        setattr(folded, bn_name, nn.Identity())
    return folded


def _fold_into(layer: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> None:
    """Rescale `layer`'s output channels and shift its bias so that it computes bn(layer(x))."""
    # Fold in float64 so the merged weights are the exact product rounded once to float32.
    dtype = layer.weight.dtype
    var = bn.running_var.double()
    mean = bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)  # (out_channels,)
    weight = layer.weight.double() * scale.view(-1, *([1] * (layer.weight.ndim - 1)))
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(mean)
    layer.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
    layer.bias = nn.Parameter(((bias - mean) * scale + beta).to(dtype), requires_grad=False)
