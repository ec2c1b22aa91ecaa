"""The filters figure: a section per conv layer, its weights as a grid of kernels.

The weights come from `evaluate/filters.py`, their pixels from `evaluate/grids.filter_grid`.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from cnnlab.evaluate.filters import ConvFilters
from cnnlab.evaluate.grids import filter_grid
from cnnlab.figures.layout import Section, stacked_figure

FILTER_CMAP = "RdBu_r"  # filters: blue negative, white 0, red positive


def _filter_section(f: ConvFilters, rgb: bool) -> Section:
    """One conv layer: rows = filters, columns = input channels (or one RGB tile per filter)."""
    as_rgb = rgb and f.can_be_rgb()
    grid = filter_grid(f.weight, rgb=as_rgb)
    out_c, in_c, kh, kw = f.weight.shape
    what = (
        f"{out_c} filters in RGB"
        if as_rgb
        else f"{out_c} filters"
        if in_c == 1
        else f"rows: {out_c} filters, columns: {in_c} input channels"
    )
    top = f.weight.abs().max().item()
    return Section(
        f"{f.name}: {f.layer}  weights {f.shape_text}\n{what}, {kh}x{kw} each; "
        f"colour scale +-{top:.3g}",
        grid,
        None if as_rgb else FILTER_CMAP,
        max_height=9.0,
    )


def filters_figure(layers: list[ConvFilters], rgb: bool = True, title: str = "") -> Figure:
    """A section per conv layer: rows = filters, columns = input channels (RGB tiles where asked)."""
    return stacked_figure([_filter_section(f, rgb) for f in layers], title)
