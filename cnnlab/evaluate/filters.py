"""The conv filters of a trained model: each conv layer's weights with its name and spec text.

`cnnlab filters` draws these (figures/filters.py); nothing here draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

    def stats(self, rgb: bool = True) -> dict[str, Any]:
        """Weight shape, tiles drawn (a tile per filter in RGB, else per channel) and weight range."""
        out_channels, in_channels = self.weight.shape[:2]
        return {
            "layer": self.name,
            "spec": self.layer,
            "weight_shape": list(self.weight.shape),
            "tiles": out_channels if (self.can_be_rgb() and rgb) else out_channels * in_channels,
            "min": self.weight.min().item(),
            "max": self.weight.max().item(),
            "std": self.weight.std().item(),
        }


def conv_filters(model: CnnModel) -> list[ConvFilters]:
    """Every conv layer's weights, in order."""
    out = []
    for (name, module), layer in zip(model.named_children(), model.spec.layers, strict=True):
        if layer.kind == "conv":
            out.append(ConvFilters(name, layer.text(), module.weight.detach().cpu(), module.groups))
    return out
