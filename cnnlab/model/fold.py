"""BatchNorm folded into the conv or fc before it: the same function in eval mode, one layer fewer.

In eval mode BatchNorm is an affine map per channel, y = (x - mean) * s + beta with
s = gamma / sqrt(var + eps). After a conv or fc, y = W'x + b' with W' = W * s (per output
channel) and b' = (b - mean) * s + beta: exact for any stride, padding (mode), dilation
or groups, since it only rescales each output channel. Exports and the eager engine use
the folded copy.

A BatchNorm after a max pool (conv -> maxpool -> batchnorm, the `default` preset's order)
folds too when every s >= 0: a per-channel map x -> x * s + c with s >= 0 never changes
which value of a window is largest (or smallest: min pooling), so pooling then normalising
equals normalising then pooling. A negative s turns the max into a min; such a BatchNorm
stays as it is.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from cnnlab.model.cnn import CnnModel
from cnnlab.model.layers import GlobalMaxPool2d, Residual

_FOLDABLE = (nn.Conv2d, nn.Linear)  # SameConv2d is an nn.Conv2d
_BATCHNORMS = (nn.BatchNorm2d, nn.BatchNorm1d)
_ORDER_KEEPING_POOLS = (nn.MaxPool2d, GlobalMaxPool2d)  # MinPool2d is an nn.MaxPool2d


def foldable_pairs(model: CnnModel) -> list[tuple[str, str]]:
    """(conv or fc name, batchnorm name) for each BatchNorm that can merge into a conv or fc.

    The BatchNorm follows the conv or fc directly, or through max/min pools only when none of
    its channel scales is negative (the module docstring says why). Inside a res block the
    pairs of its body and shortcut fold alike (names 'res1.body.conv1'); the add after them
    is untouched, since folding only changes how each branch computes its own output.
    """
    pairs = _pairs_in(model, "")
    for name, module in model.named_children():
        if isinstance(module, Residual):
            pairs += _pairs_in(module.body, f"{name}.body.")
            pairs += _pairs_in(module.shortcut, f"{name}.shortcut.")
    return pairs


def _pairs_in(sequence: nn.Module, prefix: str) -> list[tuple[str, str]]:
    """foldable_pairs among one sequence's children, their names after `prefix`."""
    children = [(prefix + name, module) for name, module in sequence.named_children()]
    pairs = []
    for i, (name, module) in enumerate(children):
        if not isinstance(module, _FOLDABLE):
            continue
        j = i + 1
        while j < len(children) and isinstance(children[j][1], _ORDER_KEEPING_POOLS):
            j += 1
        if j < len(children) and isinstance(children[j][1], _BATCHNORMS):
            bn_name, bn = children[j]
            if j == i + 1 or bool((_scale(bn) >= 0).all()):
                pairs.append((name, bn_name))
    return pairs


def _scale(bn: nn.BatchNorm2d | nn.BatchNorm1d) -> torch.Tensor:
    """s = gamma / sqrt(var + eps) per channel, in float64: the factor BatchNorm multiplies by."""
    var = bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    return gamma / torch.sqrt(var + bn.eps)


@torch.no_grad()
def fold_batchnorm(model: CnnModel) -> CnnModel:
    """An eval-mode copy of `model` with every foldable BatchNorm merged in and replaced by Identity.

    The copy keeps its children's names and count (conv1, batchnorm2 -> Identity, ...),
    so it runs as the original does in eval mode. BatchNorms that follow something
    else (an activation, an average pool) stay as they are. The original is untouched.
    """
    folded = copy.deepcopy(model).eval()
    for layer_name, bn_name in foldable_pairs(folded):
        bn = folded.get_submodule(bn_name)
        _fold_into(folded.get_submodule(layer_name), bn)
        parent, _, leaf = bn_name.rpartition(".")  # 'res1.body', 'batchnorm1'; '' is the model
        setattr(folded.get_submodule(parent), leaf, nn.Identity())
    return folded


def _fold_into(layer: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> None:
    """Rescale `layer`'s output channels and shift its bias so that it computes bn(layer(x))."""
    # Fold in float64 so the merged weights are the exact product rounded once to float32.
    dtype = layer.weight.dtype
    mean = bn.running_mean.double()
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    scale = _scale(bn)  # (out_channels,)
    weight = layer.weight.double() * scale.view(-1, *([1] * (layer.weight.ndim - 1)))
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(mean)
    layer.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
    layer.bias = nn.Parameter(((bias - mean) * scale + beta).to(dtype), requires_grad=False)
