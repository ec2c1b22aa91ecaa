"""Feature maps made small for the page: each layer as one PNG grid (or a list of numbers), with its shape.

The grid is `evaluate/grids.py`'s `feature_map_grid`, the one `cnnlab featuremaps` draws:
the same columns, tile size and per-channel scaling (each channel's min -> black, its
max -> white, so a faint filter response is as visible as a strong one); the min and
max are sent beside it. Maps stay at their true size (28x28 is 28x28 pixels); the page
enlarges them.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlab.evaluate.featuremaps import FeatureMap
from cnnlab.evaluate.grids import Grid, feature_map_grid

GAP_LEVEL = 64  # the separators' gray level: visible against black and white tiles
MAX_CHANNELS = 64  # channels drawn per layer (the first ones)
MAX_VALUES = 4096  # numbers sent per vector layer (flatten, fc)


def png_bytes(array: np.ndarray) -> bytes:
    """(H, W) or (H, W, 3) uint8 as PNG bytes (fast compression: these are small and many)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def png_data_url(array: np.ndarray) -> str:
    """A (H, W) or (H, W, 3) uint8 array as a data:image/png;base64 URL."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(array)).decode("ascii")


def layer_grid(fmap: FeatureMap, max_channels: int = MAX_CHANNELS) -> Grid:
    """An image layer's (C, H, W) output as the page draws it: its first `max_channels` channels."""
    shown = torch.nan_to_num(fmap.values[:max_channels])  # JSON and PNG have no NaN
    return feature_map_grid(dataclasses.replace(fmap, values=shown), fill=GAP_LEVEL)


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
        grid = layer_grid(fmap, max_channels)
        entry.update(
            channels_shown=grid.count,
            rows=grid.rows,
            cols=grid.columns,
            png=png_data_url(grid.pixels),
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
