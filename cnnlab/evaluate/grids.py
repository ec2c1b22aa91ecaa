"""Feature maps and filters as uint8 image grids: numpy only, no matplotlib.

The CLI's figures (`figures/filters.py`, `figures/maps.py`) and the server's PNGs
(`server/maps.py`) both draw these arrays, so a layer is tiled and scaled the
same everywhere. A grid is tiles laid out row by
row with `pad` pixels of `fill` between them; the last row may be short (its
empty cells are filled too).

Scaling:
- feature maps: each channel min-max to 0..255 on its own (a channel that is
  one value everywhere, e.g. dead after ReLU, is all 0), so every map shows
  its own pattern whatever its range;
- filters: one symmetric scale for the whole layer, 128 = weight 0,
  255 = +max|w|, 0 = -max|w|, so filters of a layer compare and signs show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cnnlab.evaluate.featuremaps import FeatureMap

FILL = 255  # separator pixels: white
ZERO_WEIGHT = 128  # the grey of a 0 weight in filter grids


@dataclass(frozen=True)
class Grid:
    """Tiles laid out row by row: `pixels` is (H, W) gray or (H, W, 3) RGB, uint8."""

    pixels: np.ndarray
    count: int  # tiles drawn
    rows: int
    columns: int
    tile_shape: tuple[int, int]  # (h, w) of one tile, after zoom
    pad: int

    def tile(self, index: int) -> np.ndarray:
        """The pixels of tile `index` (row-major), without padding."""
        if not 0 <= index < self.count:
            raise IndexError(f"tile {index} of {self.count}")
        h, w = self.tile_shape
        r, c = divmod(index, self.columns)
        top, left = r * (h + self.pad), c * (w + self.pad)
        return self.pixels[top : top + h, left : left + w]

    def separators(self) -> np.ndarray:
        """(H, W) bool: True on padding and on the empty cells after the last tile."""
        mask = np.ones(self.pixels.shape[:2], dtype=bool)
        h, w = self.tile_shape
        for index in range(self.count):
            r, c = divmod(index, self.columns)
            top, left = r * (h + self.pad), c * (w + self.pad)
            mask[top : top + h, left : left + w] = False
        return mask


def default_columns(count: int) -> int:
    """A power of two near sqrt(count): 32 tiles -> 8 columns (4 rows), 64 -> 8, 128 -> 16."""
    if count <= 1:
        return 1
    return min(count, 2 ** math.ceil(math.log2(math.sqrt(count))))


def tile_images(
    tiles: np.ndarray, columns: int | None = None, pad: int = 1, fill: int = FILL, zoom: int = 1
) -> Grid:
    """(N, h, w) or (N, h, w, 3) uint8 tiles -> a Grid, `columns` per row, each pixel zoom x zoom."""
    if tiles.dtype != np.uint8 or tiles.ndim not in (3, 4) or len(tiles) == 0:
        raise ValueError(f"tiles must be (N, h, w[, 3]) uint8 with N >= 1, got {tiles.shape}")
    if zoom < 1 or pad < 0:
        raise ValueError(f"zoom must be >= 1 and pad >= 0, got {zoom}, {pad}")
    if zoom > 1:
        tiles = tiles.repeat(zoom, axis=1).repeat(zoom, axis=2)
    count, h, w = tiles.shape[:3]
    columns = min(columns or default_columns(count), count)
    rows = math.ceil(count / columns)
    shape = (rows * (h + pad) - pad, columns * (w + pad) - pad, *tiles.shape[3:])
    pixels = np.full(shape, fill, dtype=np.uint8)
    for index in range(count):
        r, c = divmod(index, columns)
        top, left = r * (h + pad), c * (w + pad)
        pixels[top : top + h, left : left + w] = tiles[index]
    return Grid(pixels, count, rows, columns, (h, w), pad)


def minmax_uint8(values: torch.Tensor) -> np.ndarray:
    """(C, H, W) float -> (C, H, W) uint8, each channel min-max scaled to 0..255 (flat -> 0)."""
    x = values.detach().float().cpu()
    low = x.amin(dim=(1, 2), keepdim=True)
    span = x.amax(dim=(1, 2), keepdim=True) - low
    scaled = torch.where(span > 0, (x - low) / span.clamp_min(1e-12), torch.zeros_like(x))
    # round half up: 0.5 -> 128, so a map's middle value is mid-grey
    return (scaled * 255 + 0.5).floor().clamp(0, 255).to(torch.uint8).numpy()


def vector_as_map(values: torch.Tensor) -> torch.Tensor:
    """(F,) -> (1, rows, cols) near-square map, row-major, the unused end cells at the minimum."""
    flat = values.detach().float().cpu().flatten()
    cols = math.ceil(math.sqrt(len(flat)))
    rows = math.ceil(len(flat) / cols)
    out = torch.full((rows * cols,), flat.min().item() if len(flat) else 0.0)
    out[: len(flat)] = flat
    return out.view(1, rows, cols)


def feature_map_grid(
    fm: FeatureMap, columns: int | None = None, pad: int = 1, zoom: int = 1, fill: int = FILL
) -> Grid:
    """One layer's output as a gray grid: one tile per channel, each min-max scaled on its own.

    A (C, H, W) map gives C tiles of H x W; a flat (F,) output gives one
    near-square tile (values row-major). The CLI's figures and the server's page
    both lay out a layer with this; only the separators' gray `fill` may differ.
    """
    values = fm.values if fm.is_image else vector_as_map(fm.values)
    return tile_images(minmax_uint8(values), columns, pad, fill, zoom)


def filter_grid(
    weight: torch.Tensor, rgb: bool = False, columns: int | None = None, pad: int = 1, zoom: int = 1
) -> Grid:
    """A conv weight (O, I, kh, kw) as a grid: O rows x I columns of kh x kw tiles (O*I tiles).

    With one input channel (I = 1) the O tiles wrap into a near-square grid.
    `rgb` (needs I = 3): one colour tile per filter, its 3 input channels as R, G, B.
    One symmetric scale for the layer: 128 = 0, 255 = +max|w|, 0 = -max|w|.
    """
    w = weight.detach().float().cpu()
    if w.ndim != 4:
        raise ValueError(f"a conv weight is (O, I, kh, kw), got {tuple(w.shape)}")
    out_c, in_c, kh, kw = w.shape
    top = w.abs().max().item() or 1.0
    scaled = (ZERO_WEIGHT + w / top * 127).round().clamp(0, 255).to(torch.uint8)
    if rgb:
        if in_c != 3:
            raise ValueError(f"rgb filters need 3 input channels, this layer has {in_c}")
        return tile_images(scaled.permute(0, 2, 3, 1).numpy(), columns, pad, FILL, zoom)
    tiles = scaled.reshape(out_c * in_c, kh, kw).numpy()  # filter o, input channel i at o*I + i
    return tile_images(tiles, columns or (in_c if in_c > 1 else None), pad, FILL, zoom)
