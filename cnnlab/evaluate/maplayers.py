"""Which feature maps to show and how to caption them: choices over `featuremaps.FeatureMap`s.

Used by `cnnlab featuremaps` and its figure (figures/maps.py); nothing here draws.
"""

from __future__ import annotations

from cnnlab.evaluate.featuremaps import FeatureMap
from cnnlab.spec.kinds import LAYER_KINDS


def default_map_layers(maps: list[FeatureMap]) -> list[FeatureMap]:
    """The conv, activation and pooling outputs that are still images."""
    return [m for m in maps if LAYER_KINDS[m.kind].shows_map and m.is_image]


def output_layers(maps: list[FeatureMap]) -> list[str]:
    """The layers whose values are one per class: the last fc and the layers after it."""
    fcs = [i for i, m in enumerate(maps) if m.kind == "fc"]
    return [m.name for m in maps[fcs[-1] :]] if fcs else []


def map_title(fm: FeatureMap) -> str:
    """'conv1: conv(32, 3, padding=same) -> 32 x 28 x 28 (32 maps), values -1.2 .. 3.4'."""
    shape = " x ".join(str(n) for n in fm.values.shape)
    low, high = fm.values.min().item(), fm.values.max().item()
    tiles = f"{fm.values.shape[0]} maps" if fm.is_image else "a vector"
    return f"{fm.name}: {fm.layer} -> {shape} ({tiles}), values {low:.3g} .. {high:.3g}"
