"""The feature-map figure: the input image, then every layer's output as tiles or bars.

The maps come from `evaluate/featuremaps.py`, their captions from
`evaluate/maplayers.map_title`, their pixels from `evaluate/grids.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from cnnlab.evaluate.featuremaps import FeatureMap
from cnnlab.evaluate.grids import feature_map_grid, tile_images
from cnnlab.evaluate.maplayers import map_title
from cnnlab.figures.layout import Section, stacked_figure
from cnnlab.spec.analysis import describe_shape

MAX_BARS = 64  # flat outputs up to this size are drawn as bars, larger ones as a tile


def _input_section(image: torch.Tensor) -> Section:
    """The (C, H, W) input as one tile: gray for one channel, RGB for three."""
    pixels = image.detach().cpu().numpy()
    tiles = pixels[None, 0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)[None]
    return Section(
        f"input: {describe_shape(tuple(image.shape))} (as the model sees it, before normalize)",
        tile_images(np.ascontiguousarray(tiles)),
        "gray" if pixels.shape[0] == 1 else None,
        max_height=2.0,
    )


def _vector_section(fm: FeatureMap, labels: Sequence[str] | None) -> Section:
    """Small flat outputs as bars; large ones as one near-square tile, its unused end left white."""
    values = fm.values.flatten()
    if len(values) <= MAX_BARS:
        fitting = labels if labels is not None and len(labels) == len(values) else None
        return Section(map_title(fm), bars=values.tolist(), labels=fitting)
    grid = feature_map_grid(fm)
    mask = grid.separators()
    h, w = grid.tile_shape
    unused = np.arange(h * w).reshape(h, w) >= len(values)  # the row-major cells after the last
    mask[:h, :w] |= unused
    return Section(map_title(fm), grid, mask=mask)


def featuremaps_figure(
    image: torch.Tensor,
    maps: list[FeatureMap],
    title: str = "",
    labels: dict[str, Sequence[str]] | None = None,
) -> Figure:
    """The input image, then one section per layer: a grid of a tile per channel, each scaled to
    its own range; flat outputs as bars (`labels[name]` names them, e.g. the classes)."""
    sections = [_input_section(image)]
    for fm in maps:
        if fm.is_image:
            sections.append(Section(map_title(fm), feature_map_grid(fm)))
        else:
            sections.append(_vector_section(fm, (labels or {}).get(fm.name)))
    return stacked_figure(sections, title)
