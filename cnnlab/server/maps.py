"""Feature maps made small for the page: each layer as one PNG grid (or a list of numbers), with its shape.

Each channel is scaled to 0..255 on its own (its min -> black, its max -> white), so a
faint filter response is as visible as a strong one; the min and max are sent beside
it. Maps stay at their true size (28x28 is 28x28 pixels); the page enlarges them.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlab.evaluate.featuremaps import FeatureMap

GAP = 1  # pixels between tiles
GAP_LEVEL = 64  # their gray level: visible against black and white tiles
MAX_CHANNELS = 64  # channels drawn per layer (the first ones)
MAX_VALUES = 4096  # numbers sent per vector layer (flatten, fc)


def png_data_url(array: np.ndarray) -> str:
    """A (H, W) or (H, W, 3) uint8 array as a data:image/png;base64 URL."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def scale_channels(values: torch.Tensor) -> np.ndarray:
    """(C, H, W) float -> (C, H, W) uint8, each channel's min..max stretched to 0..255."""
    flat = values.reshape(values.shape[0], -1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1) - low).clamp_min(1e-12)
    return ((values - low) / span * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def tile_grid(channels: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(C, H, W) uint8 -> one (rows*(H+gap)-gap, cols*(W+gap)-gap) image, near-square; rows, cols."""
    count, height, width = channels.shape
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    grid = np.full(
        (rows * (height + GAP) - GAP, cols * (width + GAP) - GAP), GAP_LEVEL, dtype=np.uint8
    )
    for i in range(count):
        r, c = divmod(i, cols)
        grid[
            r * (height + GAP) : r * (height + GAP) + height,
            c * (width + GAP) : c * (width + GAP) + width,
        ] = channels[i]
    return grid, rows, cols


def layer_json(index: int, fmap: FeatureMap, max_channels: int = MAX_CHANNELS) -> dict[str, Any]:
    """One layer for the page: name, spec text, shape, and a PNG grid or the numbers."""
    values = torch.nan_to_num(fmap.values)  # JSON has no NaN or infinity
    entry: dict[str, Any] = {
        "index": index,
        "name": fmap.name,
        "layer": fmap.layer,
        "kind": fmap.kind,
        "shape": list(values.shape),
        "min": float(values.min()) if values.numel() else 0.0,
        "max": float(values.max()) if values.numel() else 0.0,
    }
    if fmap.is_image:
        shown = values[:max_channels]
        grid, rows, cols = tile_grid(scale_channels(shown))
        entry.update(
            channels_shown=int(shown.shape[0]), rows=rows, cols=cols, png=png_data_url(grid)
        )
    else:
        shown = values[:MAX_VALUES]
        entry.update(values_shown=int(shown.numel()), values=[round(v, 5) for v in shown.tolist()])
    return entry


def input_json(image: torch.Tensor) -> dict[str, Any]:
    """The model's input (C, H, W) uint8 as the page shows it: what the network sees."""
    array = image.numpy()
    picture = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    return {"shape": list(image.shape), "png": png_data_url(np.ascontiguousarray(picture))}
