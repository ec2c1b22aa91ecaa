"""The conv filters of a trained model: each conv layer's weights with its name and spec text.

`cnnlab filters` draws these (figures/filters.py); nothing here draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnlab.model.cnn import CnnModel


@dataclass
class ConvFilters:
    """The weights of one conv layer."""

    name: str  # conv1
    layer: str  # conv(32, 3, padding=same)
    weight: torch.Tensor  # (O, I/groups, kh, kw)
    groups: int

    @property
    def shape_text(self) -> str:
        """'32x3x3x3': the weight's shape, O x I/groups x kh x kw."""
        return "x".join(str(n) for n in self.weight.shape)

    def can_be_rgb(self) -> bool:
        """True when every filter sees exactly the three channels of an RGB image."""
        return self.weight.shape[1] == 3 and self.groups == 1


def conv_filters(model: CnnModel) -> list[ConvFilters]:
    """Every conv layer's weights, in order."""
    out = []
    for (name, module), layer in zip(model.named_children(), model.spec.layers, strict=True):
        if layer.kind == "conv":
            out.append(ConvFilters(name, layer.text(), module.weight.detach().cpu(), module.groups))
    return out
