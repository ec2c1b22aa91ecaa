"""What a filter responds to: for each channel of a layer, the images whose activation is
largest, and the exact input window (receptive field) behind that activation.

The window of an output cell comes from the spec alone: its size and jump from
`spec/analysis.py` (which takes them from `shapes.receptive_field`), and where the first
window starts from each sliding layer's padding (`shapes.same_padding` for 'same'). A window
may reach past the image border into padding; crops mark that part. Used by
`cnnlab patches` and its figure (figures/patches.py); nothing here draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from cnnlab.errors import ConfigError
from cnnlab.evaluate import MAX_PATCH_CHANNELS, MAX_PATCH_TOP
from cnnlab.i18n import _
from cnnlab.model.cnn import CnnModel
from cnnlab.model.inference import normalize
from cnnlab.spec import shapes
from cnnlab.spec.analysis import LayerReport, ModelReport, branch_reports
from cnnlab.spec.kinds import LAYER_KINDS

PAD_VALUE = 128  # uint8 grey for the part of a window outside the image


@dataclass(frozen=True)
class Window:
    """A rectangle of input pixels, in image coordinates; may reach outside the image."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        """One past the last row."""
        return self.top + self.height

    @property
    def right(self) -> int:
        """One past the last column."""
        return self.left + self.width

    def clipped(self, height: int, width: int) -> Window:
        """The part inside a height x width image (may be empty: height or width 0)."""
        top, left = max(self.top, 0), max(self.left, 0)
        bottom, right = min(self.bottom, height), min(self.right, width)
        return Window(top, left, max(bottom - top, 0), max(right - left, 0))

    def inside(self, height: int, width: int) -> bool:
        """True when the whole window lies in the image (no padding in it)."""
        return self.clipped(height, width) == self


@dataclass(frozen=True)
class LayerGeometry:
    """Where each output cell of a layer looks in the input, per axis (height, width).

    Cell (y, x) sees rows start[0] + y*jump[0] ... + size[0] - 1, likewise for columns.
    """

    name: str
    spec: str  # the layer's spec text
    out_shape: tuple[int, int, int]  # (C, H, W)
    size: tuple[int, int]  # receptive field in input pixels
    jump: tuple[int, int]  # input pixels between neighbouring cells
    start: tuple[int, int]  # top-left of cell (0, 0)'s window; negative = in the padding

    def window(self, y: int, x: int) -> Window:
        """The input window of output cell (y, x)."""
        return Window(
            self.start[0] + y * self.jump[0],
            self.start[1] + x * self.jump[1],
            self.size[0],
            self.size[1],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.name,
            "spec": self.spec,
            "shape": list(self.out_shape),
            "receptive_field": list(self.size),
            "jump": list(self.jump),
            "start": list(self.start),
        }


def _is_sliding(kind: str) -> bool:
    """Layers whose output cell reads a window of its input (conv and window pooling)."""
    return kind == "conv" or LAYER_KINDS[kind].window_pooling


def _pad_before(r: LayerReport) -> tuple[int, int]:
    """The padding a sliding layer puts before its input (top, left), as the model applies it."""
    p = r.layer.params
    if p["padding"] == "same":  # only conv has 'same'; the odd pixel goes after
        (kh, kw), (sh, sw), (dh, dw) = p["kernel"], p["stride"], p["dilation"]
        _, h, w = r.in_shape
        return shapes.same_padding(h, kh, sh, dh)[0], shapes.same_padding(w, kw, sw, dw)[0]
    return tuple(p["padding"])  # type: ignore[return-value]


def map_layers(report: ModelReport) -> list[str]:
    """The layers whose output is still an image with a receptive field (what patches can show)."""
    return [r.name for r in report.layers if len(r.out_shape) == 3 and r.rf is not None]


def default_layer(report: ModelReport) -> str | None:
    """The layer patches shows unless told: the last conv layer whose output is still a map."""
    names = map_layers(report)
    convs = [r.name for r in report.layers if r.layer.kind == "conv" and r.name in names]
    return convs[-1] if convs else None


def layer_geometry(report: ModelReport, name: str) -> LayerGeometry:
    """The receptive-field geometry of layer `name`; a ConfigError naming the valid ones if not."""
    valid = map_layers(report)
    if name not in valid:
        names = [r.name for r in report.layers]
        why = (
            _("the model has no layer {name}").format(name=name)
            if name not in names
            else _("{name} gives a flat vector, not feature maps").format(name=name)
        )
        raise ConfigError(
            _("{why}; choose a layer with feature maps: {layers}").format(
                why=why, layers=", ".join(valid) or _("(none)")
            )
        )
    start, jump = (0, 0), (1, 1)  # jump of the input to the current layer
    for r in report.layers:
        start = _start_after(r, start, jump)
        jump = r.jump or jump
        if r.name == name:
            return LayerGeometry(name, r.layer.text(), r.out_shape, r.rf, r.jump, start)
    raise AssertionError(f"{name} is in map_layers but not in the report")


def _start_after(r: LayerReport, start: tuple[int, int], jump: tuple[int, int]) -> tuple[int, int]:
    """Where output cell 0's window starts in the input after layer `r`, given its input's."""
    if r.inner:  # a res block: the union of its branches' windows starts at the earlier one
        starts = [] if branch_reports(r, "shortcut") else [start]  # the identity: as it was
        for branch in ("body", "shortcut"):
            inner_start, inner_jump = start, jump
            for inner in branch_reports(r, branch):
                inner_start = _start_after(inner, inner_start, inner_jump)
                inner_jump = inner.jump or inner_jump
            starts += [inner_start] if branch_reports(r, branch) else []
        return min(s[0] for s in starts), min(s[1] for s in starts)
    if not _is_sliding(r.layer.kind):
        return start
    pad = _pad_before(r)
    # cell 0 reads input cells from -pad, each of which starts `jump` pixels apart
    return start[0] - pad[0] * jump[0], start[1] - pad[1] * jump[1]


def crop_window(image: torch.Tensor, window: Window) -> torch.Tensor:
    """The window's pixels of a (C, H, W) uint8 image as (C, height, width); outside = PAD_VALUE."""
    c, h, w = image.shape
    crop = torch.full((c, window.height, window.width), PAD_VALUE, dtype=image.dtype)
    part = window.clipped(h, w)
    if part.height and part.width:
        crop[
            :,
            part.top - window.top : part.bottom - window.top,
            part.left - window.left : part.right - window.left,
        ] = image[:, part.top : part.bottom, part.left : part.right]
    return crop


@torch.inference_mode()
def channel_maxima(
    model: CnnModel,
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    layer: str,
    batch_size: int = 500,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's largest activation per channel of `layer` and where it is.

    images: (N, C, H, W) uint8. Returns values (N, K) float32 and positions (N, K, 2) int64
    (row, column in the layer's map; the first maximum in row-major order on ties).
    """
    names = [name for name, _ in model.named_children()]
    modules = list(model.children())[: names.index(layer) + 1]
    was_training = model.training
    model.eval()
    values, positions = [], []
    for begin in range(0, len(images), batch_size):
        x = normalize(images[begin : begin + batch_size], mean, std)
        for module in modules:
            x = module(x)
        flat = x.float().flatten(2)  # (B, K, H*W)
        best, where = flat.max(dim=2)
        values.append(best)
        positions.append(torch.stack((where // x.shape[3], where % x.shape[3]), dim=2))
    model.train(was_training)
    if not values:
        return torch.empty(0, 0), torch.empty(0, 0, 2, dtype=torch.long)
    return torch.cat(values), torch.cat(positions)


@dataclass
class Patch:
    """One of a channel's top images: its activation, where, and the window it saw."""

    index: int  # in the split
    label: str  # its true class
    activation: float
    position: tuple[int, int]  # (row, column) in the layer's map
    window: Window  # in image pixels; may reach into padding
    crop: torch.Tensor  # (C, window.height, window.width) uint8, PAD_VALUE outside the image
    file: str | None = None

    def to_json(self, height: int, width: int) -> dict[str, Any]:
        w = self.window
        row = {
            "index": self.index,
            "label": self.label,
            "activation": self.activation,
            "position": list(self.position),
            # rows top..bottom-1, columns left..right-1 of the image; beyond it: padding
            "window": {"top": w.top, "left": w.left, "bottom": w.bottom, "right": w.right},
            "clipped": not w.inside(height, width),
        }
        if self.file is not None:
            row["file"] = self.file
        return row


@dataclass
class TopPatches:
    """The top images of each of the first channels of one layer."""

    geometry: LayerGeometry
    image_shape: tuple[int, int, int]  # (C, H, W) of the input images
    channels: list[int]
    patches: list[list[Patch]]  # per channel, best first
    images: int  # how many images were searched
    data: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def clipped(self) -> int:
        """How many crops reach past the image border."""
        _, h, w = self.image_shape
        return sum(not p.window.inside(h, w) for row in self.patches for p in row)

    def to_json(self) -> dict[str, Any]:
        _, h, w = self.image_shape
        return {
            **self.geometry.to_json(),
            "data": self.data,
            "images": self.images,
            "image_shape": list(self.image_shape),
            "clipped": self.clipped,
            "pad_value": PAD_VALUE,
            "channels": [
                {"channel": c, "top": [p.to_json(h, w) for p in row]}
                for c, row in zip(self.channels, self.patches, strict=True)
            ],
        }


def check_counts(top: int, channels: int) -> None:
    """A ConfigError unless 1 <= top <= MAX_PATCH_TOP and 1 <= channels <= MAX_PATCH_CHANNELS."""
    for option, value, limit in (
        ("--top", top, MAX_PATCH_TOP),
        ("--channels", channels, MAX_PATCH_CHANNELS),
    ):
        if not 1 <= value <= limit:
            raise ConfigError(
                _(
                    "{option} {value} is out of range: give 1 to {limit} (the limit keeps the "
                    "search and the figure to seconds)"
                ).format(option=option, value=value, limit=limit)
            )


def top_patches(
    model: CnnModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    norm: tuple[tuple[float, ...], tuple[float, ...]],
    layer: str,
    top: int = 9,
    channels: int = 16,
    files: list[str] | None = None,
) -> TopPatches:
    """For the first `channels` channels of `layer`: the `top` images of largest activation
    (max over positions), each cropped to the receptive field of that position.

    images: (N, C, H, W) uint8; norm: the run's (mean, std).
    """
    check_counts(top, channels)
    geometry = layer_geometry(model.report, layer)
    if len(images) == 0:
        raise ConfigError(_("there are no images to search: the split is empty"))
    values, positions = channel_maxima(model, images, *norm, layer)
    shown = list(range(min(channels, geometry.out_shape[0])))
    best = values[:, shown].topk(min(top, len(images)), dim=0)  # (top, channels)
    rows = []
    for k, channel in enumerate(shown):
        row = []
        for value, i in zip(best.values[:, k].tolist(), best.indices[:, k].tolist(), strict=True):
            y, x = positions[i, channel].tolist()
            window = geometry.window(y, x)
            file = files[i] if files is not None else None
            crop = crop_window(images[i], window)
            label = classes[int(labels[i])]
            row.append(Patch(i, label, value, (y, x), window, crop, file))
        rows.append(row)
    result = TopPatches(geometry, tuple(images.shape[1:]), shown, rows, len(images))
    if len(shown) < channels:
        result.notes.append(
            _("{layer} has {count} channels; all are shown").format(layer=layer, count=len(shown))
        )
    return result
