"""The activation (feature) maps of every layer for one image (what each filter found), their
summary figures, and the image's most likely classes.

Used by `cnnlab featuremaps` and by the server's page; both show exactly these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        """True for (C, H, W) maps, False for flat vectors."""
        return self.values.ndim == 3

    def stats(self) -> dict[str, Any]:
        """Name, spec, kind, shape, value range, mean and share of exact zeros (0..1)."""
        values = self.values
        return {
            "layer": self.name,
            "spec": self.layer,
            "kind": self.kind,
            "shape": list(values.shape),
            "min": values.min().item(),
            "max": values.max().item(),
            "mean": values.mean().item(),
            "zeros": (values == 0).float().mean().item(),
        }


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


@torch.inference_mode()
def top_classes(
    model: CnnModel, x: torch.Tensor, classes: list[str], k: int
) -> list[dict[str, Any]]:
    """The k most likely classes of one normalised image x (1, C, H, W), best first:
    [{"class": name, "probability": softmax probability}, ...] (at most len(classes))."""
    probabilities = torch.softmax(model(x), dim=1)[0]  # (classes,)
    top = probabilities.topk(min(k, len(classes)))
    return [
        {"class": classes[i], "probability": p}
        for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]
