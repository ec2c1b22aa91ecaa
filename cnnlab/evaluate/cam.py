"""Class activation maps: where in the input a model found its evidence for one class.

One function, `class_activation_map(model, image, method=..., layer=None, target=None)`, and one
result, `CamResult`: an (H, W) heatmap over the input, the class explained, its probability, the
layer used with its map size and receptive field, and optionally a sanity check. Methods:

  gradcam    Selvaraju et al. 2017: each channel of the layer's map weighted by the mean gradient
             of the class's logit over that channel; ReLU of the weighted sum; bilinear upsampling
  hirescam   Draelos & Carin 2020: gradient x activation per cell, summed over channels; ReLU
  cam        Zhou et al. 2016: the class's fc weights times the maps that feed global average
             pooling; only for a `gap` + `fc` head (Grad-CAM equals it there, divided by h*w)
  occlusion  a patch of the data's mean (0 after normalize) slid over the image, all windows in
             batched forward passes; a pixel gets the drop of the class's probability averaged
             over every window that covers it (can be negative: covering it helped the class)
  saliency   |d logit / d input|, the largest over the channels

Gradients are always of the logit (CnnModel.forward stops before softmax), never of a
probability: softmax would mix in every other class. The layer's output is kept by a forward
hook that hands the next layer a copy, so an in-place layer after it (ReLU(inplace=True))
changes the copy and never the kept activation autograd differentiates against.

Layers are named as `cnnlab featuremaps` names them (conv1, relu1, ...); sizes and receptive
fields come from the spec's analysis (spec/analysis.py, formulas in spec/shapes.py). The image
is model input, already normalised (1, C, H, W): the caller decodes and preprocesses it (the CLI
as `cnnlab predict` does), so this module needs nothing above evaluate/.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError, DataError
from cnnlab.i18n import _
from cnnlab.model.cnn import CnnModel
from cnnlab.spec.analysis import LayerReport, seen_text, seen_window
from cnnlab.spec.kinds import LAYER_KINDS

METHODS = ("gradcam", "hirescam", "cam", "occlusion", "saliency")
LAYER_METHODS = ("gradcam", "hirescam", "cam")  # the methods that read a layer's map
MIN_CELLS = 4  # the default layer's map is at least 4x4: coarser maps say little about where
# ... and one cell of it sees at most half the image's area (sides ~0.7 of the image's). A cell
# that sees all of it (default's conv4 at 32x32: 4x4 cells of 38x38 px) can put the evidence
# anywhere: its map lit up the background, gradcam = hirescam there (see README, cam), and the
# object showed only a layer earlier (conv3: 8x8 cells of 18x18 px).
MAX_FIELD_SHARE = 0.5
OCCLUSION_BATCH = 256  # occluded copies per forward pass
SANITY_WARNING = 0.5  # a rank correlation at or above this with a randomised model is suspect
HEAD_KINDS = ("flatten", "dropout")  # what may sit between gap and the last fc for `cam`


@dataclass(frozen=True)
class CamLayer:
    """The layer whose map is weighed: where it is, its map size and what one cell sees."""

    name: str  # conv3, relu3, ...: the module name, as `cnnlab featuremaps` shows it
    spec: str  # its spec text: relu, conv(16, 3, padding=same)
    conv: str  # the conv whose output this is (itself, or before its relu/batchnorm); "" if none
    map_size: tuple[int, int]  # (h, w) cells; (1, 1) for a flat output
    receptive_field: tuple[int, int]  # input pixels one cell sees (h, w): analysis.seen_window
    flat: bool  # a vector (after flatten or global pooling): no positions in the image
    after_flatten: bool  # flatten is this layer or comes before it
    image_size: tuple[int, int]  # (H, W) of the input

    def describe(self) -> str:
        """'relu3 (conv3 after relu): 8x8 map, each cell sees 18x18 px'."""
        h, w = self.map_size
        name = self.name
        if self.conv and self.conv != self.name:
            name += " (" + _("{conv} after {spec}").format(conv=self.conv, spec=self.spec) + ")"
        return _("{layer}: {height}x{width} map, each cell sees {field}").format(
            layer=name, height=h, width=w, field=seen_text(self.receptive_field, self.image_size)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec,
            "conv": self.conv or None,
            "map_size": list(self.map_size),
            "receptive_field": list(self.receptive_field),
            "flat": self.flat,
        }


@dataclass
class CamResult:
    """One explained prediction: an (H, W) heatmap over the input and what it was made from."""

    method: str
    heatmap: np.ndarray  # (H, W) float32 at the input's size; larger = more evidence for the class
    target: int  # the class explained (index into the logits)
    probabilities: list[float]  # softmax of the logits of the image, one per class
    classes: list[str] | None = None
    layer: CamLayer | None = None  # gradcam, hirescam, cam
    cells: np.ndarray | None = None  # (h, w) the map at the layer's resolution, before upsampling
    window: tuple[tuple[int, int], tuple[int, int]] | None = None  # occlusion: patch, stride (h, w)
    # (H, W) the map before the ReLU of gradcam/hirescam/cam (the heatmap itself for the others):
    # what the sanity check ranks, so a map that ReLU makes all zero still has an order
    signed: np.ndarray | None = None
    sanity: float | None = None  # Spearman rank correlation with the map of a randomised model
    randomized: np.ndarray | None = None  # (H, W) that randomised model's map
    warnings: list[str] = field(default_factory=list)

    @property
    def class_name(self) -> str:
        """The explained class's name ('3' when the classes are not known)."""
        return self.classes[self.target] if self.classes else str(self.target)

    @property
    def probability(self) -> float:
        return self.probabilities[self.target]

    @property
    def predicted(self) -> int:
        """The most likely class."""
        return int(np.argmax(self.probabilities))

    def receptive_field(self) -> tuple[int, int]:
        """Input pixels one map cell stands for: the layer's receptive field, the occlusion
        patch, or one pixel for saliency."""
        if self.layer is not None:
            return self.layer.receptive_field
        return self.window[0] if self.window else (1, 1)

    def map_size(self) -> tuple[int, int]:
        """(h, w) of the map before upsampling: the layer's map, else the input's size."""
        return self.layer.map_size if self.layer is not None else tuple(self.heatmap.shape)

    def sanity_line(self) -> str:
        """What the sanity check says, in one line ('' when it was not run)."""
        return (
            sanity_text(self.sanity)
            if self.sanity is not None or self.randomized is not None
            else ""
        )

    def to_json(self, digits: int = 4) -> dict[str, Any]:
        """The numbers, JSON-ready: maps rounded to `digits` significant digits."""
        names = self.classes or [str(i) for i in range(len(self.probabilities))]
        return {
            "method": self.method,
            "class": self.class_name,
            "class_index": self.target,
            "predicted": names[self.predicted],
            "probability": self.probability,
            "probabilities": dict(zip(names, self.probabilities, strict=True)),
            "layer": self.layer.to_json() if self.layer else None,
            "map_size": list(self.map_size()),
            "receptive_field": list(self.receptive_field()),
            "occlusion": {"patch": list(self.window[0]), "stride": list(self.window[1])}
            if self.window
            else None,
            "map": _rounded(self.heatmap, digits),
            "cells": _rounded(self.cells, digits) if self.cells is not None else None,
            "sanity": None
            if self.randomized is None
            else {"rank_correlation": self.sanity, "verdict": self.sanity_line()},
            "warnings": self.warnings,
        }

    def _repr_html_(self) -> str:
        """A notebook cell's view: what was explained, and the heatmap as a picture."""
        from cnnlab.spec.summary import html_table

        rows = [
            ["method", self.method],
            ["class", f"{self.class_name} ({self.probability:.1%})"],
            ["map", f"{self.map_size()[0]}x{self.map_size()[1]}, each cell sees "
                    f"{self.receptive_field()[0]}x{self.receptive_field()[1]} px"],
        ]  # fmt: skip
        if self.layer is not None:
            rows.append(["layer", self.layer.name])
        if self.sanity_line():
            rows.append(["sanity", self.sanity_line()])
        rows += [["warning", warning] for warning in self.warnings]
        picture = heatmap_png_base64(self.heatmap)
        return (
            html_table("class activation map", ["", ""], rows)
            + f'<img alt="heatmap" style="image-rendering: pixelated; width: 224px" '
            f'src="data:image/png;base64,{picture}">'
        )


def heatmap_png_base64(heatmap: np.ndarray) -> str:
    """(H, W) heatmap -> base64 PNG: black (none) through red to yellow (most), scaled to its max."""
    import base64
    import io

    from PIL import Image

    peak = float(np.max(heatmap)) if np.size(heatmap) else 0.0
    level = np.clip(np.asarray(heatmap, dtype=np.float32) / peak, 0, 1) if peak > 0 else 0 * heatmap
    rgb = np.stack([np.clip(2 * level, 0, 1), np.clip(2 * level - 1, 0, 1), 0 * level], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _rounded(values: np.ndarray, digits: int) -> list:
    """Nested lists of floats with `digits` significant digits."""
    return [[float(f"{v:.{digits}g}") for v in row] for row in np.asarray(values).tolist()]


def sanity_text(correlation: float | None) -> str:
    """The sanity verdict: a low rank correlation with a randomised model means the map depends
    on the learned weights; a high one means it would look the same without them."""
    if correlation is None:
        return _(
            "rank correlation with a randomised model: undefined (one of the maps is flat) "
            "- the map depends on the learned weights"
        )
    if correlation >= SANITY_WARNING:
        return _(
            "warning: rank correlation with a randomised model: {correlation} - the map "
            "looks much the same without the learned weights; it may show the image more than "
            "what the model learned"
        ).format(correlation=f"{correlation:.2f}")
    return _(
        "rank correlation with a randomised model: {correlation} - the map depends on the "
        "learned weights"
    ).format(correlation=f"{correlation:.2f}")


# --- the layer -------------------------------------------------------------------------


def _logit_reports(model: CnnModel) -> list[LayerReport]:
    """The layers forward() runs (a final softmax is left out: gradients come from logits)."""
    return model.report.layers[: model.logit_layers]


def _no_conv_error(method: str) -> ConfigError:
    return ConfigError(
        _(
            "the model has no conv layer, so {method} has no map to weigh; use --method occlusion "
            "or --method saliency, which need only the input"
        ).format(method=method)
    )


def default_layer(model: CnnModel, method: str = "gradcam") -> str:
    """The last conv whose map is at least MIN_CELLS x MIN_CELLS and whose cell sees at most
    MAX_FIELD_SHARE of the image (else the last conv of at least MIN_CELLS x MIN_CELLS, else
    the last conv), taken after the layers that keep its shape (batchnorm, activation,
    dropout): what the next layer reads. For `cam`, the layer that feeds global average pooling."""
    reports = _logit_reports(model)
    if method == "cam":
        return reports[_gap_index(model) - 1].name
    # a res block's output is a conv map too (the sum of its convs' and its input's)
    convs = [
        i
        for i, r in enumerate(reports)
        if r.layer.kind in ("conv", "res") and len(r.out_shape) == 3
    ]
    if not convs:
        raise _no_conv_error(method)
    large = [i for i in convs if min(reports[i].out_shape[1:]) >= MIN_CELLS]
    _, height, width = model.input_shape
    local = [
        i for i in large
        if math.prod(seen_window(reports[i], model.input_shape)) <= MAX_FIELD_SHARE * height * width
    ]  # fmt: skip
    i = (local or large or convs)[-1]
    while i + 1 < len(reports) and LAYER_KINDS[reports[i + 1].layer.kind].shape_keeping:
        i += 1
    return reports[i].name


def describe_layer(model: CnnModel, name: str) -> CamLayer:
    """The CamLayer for a layer name, checked; a ConfigError lists the names that work."""
    reports = _logit_reports(model)
    names = [r.name for r in reports]
    if name not in names:
        every = [r.name for r in model.report.layers]
        why = (
            _("{name} is the final softmax; maps come from logits; choose among {names}")
            if name in every
            else _("{name} is not a layer; choose among {names}")
        )
        raise ConfigError(why.format(name=name, names=", ".join(names)))
    i = names.index(name)
    report, height, width = reports[i], *model.input_shape[1:]
    flat = len(report.out_shape) != 3
    size = (1, 1) if flat else tuple(report.out_shape[1:])
    # a flat vector mixes every position (fc): the whole input, as after global pooling
    rf = (height, width) if flat else seen_window(report, model.input_shape)
    conv = ""
    for j in range(i, -1, -1):  # back over the shape-keeping layers to the conv that made the map
        if reports[j].layer.kind == "conv":
            conv = reports[j].name
            break
        if not LAYER_KINDS[reports[j].layer.kind].shape_keeping:
            break
    after_flatten = any(r.layer.kind == "flatten" for r in reports[: i + 1])  # itself included
    return CamLayer(
        name, report.layer.text(), conv, size, rf, flat, after_flatten, (height, width)
    )  # fmt: skip


def layer_warnings(layer: CamLayer) -> list[str]:
    """Why a map from this layer says little about where: 1x1, or after flatten."""
    if layer.after_flatten:
        return [
            _(
                "{layer} is at or after flatten: its values have no position in the image, so "
                "the map is one value everywhere; choose a conv layer (see `cnnlab summary`)"
            ).format(layer=layer.name)
        ]
    if layer.map_size == (1, 1):
        return [
            _(
                "{layer} has a 1x1 map: one cell for the whole image, so the map cannot say "
                "where; choose an earlier conv layer"
            ).format(layer=layer.name)
        ]
    return []


def _gap_index(model: CnnModel) -> int:
    """The position of the gap whose output reaches the last fc through flatten/dropout only;
    a ConfigError saying which methods work for any other head."""
    kinds = [r.layer.kind for r in _logit_reports(model)]
    i = len(kinds) - 1
    if kinds[i] == "fc":
        i -= 1
        while i >= 0 and kinds[i] in HEAD_KINDS:
            i -= 1
    if i < 1 or kinds[-1] != "fc" or kinds[i] != "gap":
        head = " ".join(kinds[-4:])
        raise ConfigError(
            _(
                "cam (Zhou et al.) needs a head of global average pooling then one fc, e.g. "
                "'... relu gap fc(10)'; this model ends in '{head}'. Use --method gradcam, "
                "hirescam, occlusion or saliency: they work for any model"
            ).format(head=head)
        )
    return i


# --- computing maps --------------------------------------------------------------------


@contextlib.contextmanager
def _explaining(model: CnnModel) -> Iterator[None]:
    """Eval mode and gradients on (also inside a caller's inference_mode); mode restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        model.train(was_training)


def _forward_keeping(
    model: CnnModel, x: torch.Tensor, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (1, classes) and the output of layer `name` (1, C, h, w) or (1, F), in the graph."""
    kept: list[torch.Tensor] = []

    def keep(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        kept.append(output)
        # The next layer gets a copy: an in-place op there changes the copy, not `kept`.
        return output.clone()

    handle = getattr(model, name).register_forward_hook(keep)
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits, kept[0]


def _as_map(values: torch.Tensor) -> torch.Tensor:
    """A layer's output (1, C, h, w) or (1, F) as (C, h, w); a vector is F channels of 1x1."""
    return values[0] if values.ndim == 4 else values.reshape(-1, 1, 1)


def _upsampled(cells: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(h, w) -> (H, W), bilinear (half-pixel centres, as Grad-CAM does); 1x1 exactly flat."""
    if cells.shape == (1, 1):
        return cells.expand(size).clone()
    return F.interpolate(cells[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def _layer_cells(
    model: CnnModel, x: torch.Tensor, method: str, name: str, target: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (classes,), cells (h, w) before ReLU) for gradcam, hirescam or cam at `name`."""
    logits, kept = _forward_keeping(model, x, name)
    target = int(logits[0].argmax()) if target is None else target
    activation = _as_map(kept)  # (C, h, w)
    if method == "cam":
        fc = getattr(model, model.report.layers[model.logit_layers - 1].name)
        # the class's weights over the pooled channels (C,), laid on the maps instead
        cells = torch.einsum("c,chw->hw", fc.weight[target], activation)
    else:
        (grad,) = torch.autograd.grad(logits[0, target], kept)
        grad = _as_map(grad)
        if method == "gradcam":
            cells = torch.einsum("c,chw->hw", grad.mean(dim=(1, 2)), activation)
        else:  # hirescam: no averaging, so a cell's score is its own evidence
            cells = (grad * activation).sum(dim=0)
    return logits[0].detach(), cells.detach()  # signed: ReLU comes after, in _compute


def _saliency(model: CnnModel, x: torch.Tensor, target: int | None) -> tuple[torch.Tensor, ...]:
    """(logits, (H, W) |d logit / d input| max over channels)."""
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    target = int(logits[0].argmax()) if target is None else target
    (grad,) = torch.autograd.grad(logits[0, target], x)
    return logits[0].detach(), grad[0].abs().amax(dim=0)


def occlusion_windows(size: int) -> tuple[int, int, list[int]]:
    """(patch, stride, starts) along one side: patch ~ a quarter of it, stride half the patch,
    windows from 0 and one ending exactly at the edge, so every pixel is covered."""
    patch = max(1, round(size / 4))
    stride = max(1, patch // 2)
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return patch, stride, starts


@torch.no_grad()
def occlusion_map(
    model: CnnModel, x: torch.Tensor, target: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, tuple[tuple[int, int], tuple[int, int]]]:
    """(logits, (H, W) mean drop of the class's probability over the windows covering each pixel,
    (patch, stride)); the patch holds 0 = the data's mean after normalize."""
    height, width = x.shape[2:]
    (ph, sh, rows), (pw, sw, cols) = occlusion_windows(height), occlusion_windows(width)
    windows = [(r, c) for r in rows for c in cols]
    logits = model(x)[0]
    target = int(logits.argmax()) if target is None else target
    base = torch.softmax(logits, dim=0)[target]
    drops, counts = torch.zeros(height, width), torch.zeros(height, width)
    for start in range(0, len(windows), OCCLUSION_BATCH):
        chunk = windows[start : start + OCCLUSION_BATCH]
        batch = x.repeat(len(chunk), 1, 1, 1)  # (n, C, H, W)
        for k, (r, c) in enumerate(chunk):
            batch[k, :, r : r + ph, c : c + pw] = 0
        probabilities = torch.softmax(model(batch).float(), dim=1)[:, target]  # (n,)
        for k, (r, c) in enumerate(chunk):
            drops[r : r + ph, c : c + pw] += base - probabilities[k]
            counts[r : r + ph, c : c + pw] += 1
    return logits, drops / counts, ((ph, pw), (sh, sw))


# --- the public function ---------------------------------------------------------------


def _checked_input(model: CnnModel, image: torch.Tensor) -> torch.Tensor:
    """The image as (1, C, H, W) float at the model's input shape; a DataError otherwise."""
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        raise DataError(
            _(
                "explain a normalised float image tensor (1, C, H, W); decode files with "
                "evaluate.samples.load_sample or deploy.predict.prepare_image, then "
                "model.inference.normalize"
            )
        )
    x = image[None] if image.ndim == 3 else image
    expected = tuple(model.input_shape)
    if x.ndim != 4 or x.shape[0] != 1 or tuple(x.shape[1:]) != expected:
        shape = "x".join(str(n) for n in image.shape)
        raise DataError(
            _(
                "the image is {shape}, the model takes {expected} (one image, channels first); "
                "resize it to the model's input or use a matching model"
            ).format(shape=shape, expected="x".join(map(str, expected)))
        )
    return x.detach().float()


def _target_index(target: int | str | None, classes: Sequence[str] | None, n: int) -> int | None:
    """A class index from an index or a class name; None = the predicted class."""
    if target is None:
        return None
    if isinstance(target, str) and not (classes and target in classes) and target.isdigit():
        target = int(target)
    if isinstance(target, str):
        if not classes or target not in classes:
            known = ", ".join(classes) if classes else f"0 to {n - 1}"
            raise ConfigError(
                _("no class {target}; the classes are: {known}").format(
                    target=repr(target), known=known
                )
            )
        return list(classes).index(target)
    if not 0 <= target < n:
        raise ConfigError(
            _("class {target} does not exist; the model has classes 0 to {last}").format(
                target=target, last=n - 1
            )
        )
    return int(target)


@dataclass
class _Maps:
    logits: torch.Tensor  # (classes,)
    heatmap: torch.Tensor  # (H, W) as shown
    signed: torch.Tensor  # (H, W) before the ReLU of the layer methods (the heatmap for others)
    cells: torch.Tensor | None = None  # (h, w) layer methods, after ReLU
    window: tuple[tuple[int, int], tuple[int, int]] | None = None  # occlusion


def _compute(
    model: CnnModel, x: torch.Tensor, method: str, layer: str | None, target: int | None
) -> _Maps:
    """The maps of one method for one image (1, C, H, W)."""
    with _explaining(model):
        x = x.clone()  # a normal tensor even when the caller made x under inference_mode
        if method == "occlusion":
            logits, heatmap, window = occlusion_map(model, x, target)
            return _Maps(logits, heatmap, heatmap, window=window)
        if method == "saliency":
            logits, heatmap = _saliency(model, x, target)
            return _Maps(logits, heatmap, heatmap)
        logits, cells = _layer_cells(model, x, method, layer, target)
        size = tuple(x.shape[2:])
        # ReLU: only evidence for the class is shown (as Grad-CAM does), then upsampled
        positive = cells.clamp(min=0)
        return _Maps(logits, _upsampled(positive, size), _upsampled(cells, size), positive)


def _layer_for(model: CnnModel, method: str, layer: str | None) -> CamLayer | None:
    """The checked layer of a layer method (None for occlusion and saliency)."""
    if method not in LAYER_METHODS:
        if layer is not None:
            raise ConfigError(
                _("{method} works on the input, not a layer: drop --layer").format(method=method)
            )
        return None
    if not any(r.layer.kind == "conv" for r in _logit_reports(model)):
        raise _no_conv_error(method)
    chosen = describe_layer(model, layer or default_layer(model, method))
    if method == "cam" and chosen.name != default_layer(model, "cam"):
        raise ConfigError(
            _(
                "cam uses the maps that feed global average pooling ({layer}), not {chosen}: "
                "drop --layer, or use --method gradcam for another layer"
            ).format(layer=default_layer(model, "cam"), chosen=chosen.name)
        )
    return chosen


def class_activation_map(
    model: CnnModel,
    image: torch.Tensor,
    method: str = "gradcam",
    layer: str | None = None,
    target: int | str | None = None,
    classes: Sequence[str] | None = None,
    sanity: bool = False,
    seed: int = 0,
) -> CamResult:
    """Explain one normalised image (1, C, H, W) or (C, H, W): a heatmap for class `target`
    (an index or a name in `classes`; None = the predicted class) by `method` (see METHODS),
    at `layer` (None = `default_layer`). `sanity`: also the same map from a copy with
    re-initialised weights (`seed`) and the rank correlation between the two."""
    if method not in METHODS:
        raise ConfigError(
            _("unknown method {method}; choose one of {methods}").format(
                method=repr(method), methods=", ".join(METHODS)
            )
        )
    x = _checked_input(model, image)
    chosen = _layer_for(model, method, layer)
    n_classes = model.report.layers[model.logit_layers - 1].out_shape[0]
    index = _target_index(target, classes, n_classes)
    name = chosen.name if chosen else None
    maps = _compute(model, x, method, name, index)
    index = int(maps.logits.argmax()) if index is None else index
    result = CamResult(
        method=method,
        heatmap=maps.heatmap.float().numpy(),
        target=index,
        probabilities=torch.softmax(maps.logits.float(), dim=0).tolist(),
        classes=list(classes) if classes else None,
        layer=chosen,
        cells=None if maps.cells is None else maps.cells.float().numpy(),
        window=maps.window,
        signed=maps.signed.float().numpy(),
        warnings=layer_warnings(chosen) if chosen else [],
    )
    if sanity:
        other = _compute(randomized_copy(model, seed), x, method, name, index)
        result.randomized = other.heatmap.float().numpy()
        result.sanity = rank_correlation(result.signed, other.signed.float().numpy())
    return result


# --- the sanity check ------------------------------------------------------------------


def randomized_copy(model: CnnModel, seed: int = 0) -> CnnModel:
    """A copy of `model` with every layer re-initialised as when it was built (torch's default
    initialisation, from `seed`; BatchNorm statistics reset too); the original is untouched."""
    clone = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in clone.modules():
            if module is not clone and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return clone


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array, ties sharing the mean of their ranks ([5, 1, 5] -> [2.5, 1, 2.5])."""
    order = np.argsort(values, kind="mergesort")
    position = np.empty(len(values), dtype=np.int64)
    position[order] = np.arange(len(values))
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]  # where each run of equal values begins
    group = np.cumsum(starts)[position]  # 1-based group of each value
    bounds = np.r_[np.flatnonzero(starts), len(values)]  # each group's first rank - 1, then n
    return 0.5 * (bounds[group] + bounds[group - 1] + 1)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation of two maps (Pearson's of their average ranks), -1..1;
    None when either map is constant (no ranking to compare)."""
    ra = average_ranks(np.asarray(a, dtype=np.float64).ravel())
    rb = average_ranks(np.asarray(b, dtype=np.float64).ravel())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    scale = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return None if scale == 0 else float((ra * rb).sum() / scale)
