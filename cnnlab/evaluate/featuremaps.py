"""The activation (feature) maps of every layer for one image: what each filter found.

Used by `cnnlab featuremaps` and by the server's page; both show exactly these.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnlab.model.cnn import CnnModel


@dataclass
class FeatureMap:
    """One layer's output for one image."""

    name: str  # the module name: conv1, relu1, ...
    layer: str  # its spec text: conv(32, 3, padding=same)
    kind: str  # conv, relu, maxpool, ...
    values: torch.Tensor  # (C, H, W) for image layers, (F,) after flatten/gap/fc

    @property
    def is_image(self) -> bool:
        return self.values.ndim == 3


@torch.inference_mode()
def feature_maps(model: CnnModel, x: torch.Tensor) -> list[FeatureMap]:
    """Every layer's output for one normalised image x of shape (1, C, H, W), in order."""
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"feature_maps takes one image as (1, C, H, W), got {tuple(x.shape)}")
    was_training = model.training
    model.eval()
    maps = []
    for (name, module), layer in zip(model.named_children(), model.spec.layers, strict=True):
        x = module(x)
        maps.append(
            FeatureMap(name, layer.text(), layer.kind, x[0].detach().float().cpu().contiguous())
        )
    model.train(was_training)
    return maps
