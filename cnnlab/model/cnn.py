"""The built torch model: `CnnModel` (an nn.Sequential named as the spec reads), `build_model`,
`adapt_to_data` and `model_for_data` (the spec training builds for a data set).

`build_model` validates the spec (analysis.py) before creating any tensor, then builds an
`nn.Sequential` whose children are named conv1, relu1, maxpool1, ... so weights and feature
maps read as the spec does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnlab.errors import SpecError
from cnnlab.i18n import _
from cnnlab.model.layers import build_layer, layer_from_module
from cnnlab.model.presets import PRESETS, preset_spec, resolve_model
from cnnlab.spec.analysis import ModelReport, analyze, describe_shape, layer_names
from cnnlab.spec.kinds import LAYER_KINDS
from cnnlab.spec.language import LayerSpec, ModelSpec, format_shape

# The most weights a model, and the most values one image's output of a layer, may hold: 2**31 - 1,
# torch's int32 index limit (8.6 GB of float32 each, before gradients and optimizer state). The
# spec's numbers go up to 1e9 each, so conv(1000000000, 3) would ask torch for 36 GB at once.
MAX_VALUES = 2**31 - 1


def check_size(report: ModelReport) -> None:
    """Refuse, before any tensor exists, a model whose weights or one layer's output are too large
    to build or run, naming the layer and its count."""
    if report.total_params > MAX_VALUES:
        # the layers over the bound by themselves (or the largest): where the weights are
        large = [r for r in report.layers if r.params > MAX_VALUES]
        large = large or [max(report.layers, key=lambda r: r.params)]
        named = "; ".join(
            _("{layer} has {count} ({formula})").format(
                layer=r.label, count=r.params, formula=r.params_formula
            )
            for r in large
        )
        raise SpecError(
            _(
                "the model has {count} parameters, at most {most} are allowed "
                "(8.6 GB of float32 weights); {named}: give it fewer channels or outputs"
            ).format(count=report.total_params, most=MAX_VALUES, named=named)
        )
    for layer in report.layers:
        values = math.prod(layer.out_shape)
        if values > MAX_VALUES:
            raise SpecError(
                _(
                    "{layer} outputs {shape} = {values} values for each image, at most {most} "
                    "are allowed (8.6 GB of float32 an image): give it fewer channels, or shrink "
                    "the input first (a stride or a pool)"
                ).format(
                    layer=layer.label,
                    shape=describe_shape(layer.out_shape),
                    values=values,
                    most=MAX_VALUES,
                )
            )


class CnnModel(nn.Sequential):
    """A model built from a validated spec; input (N, C, H, W) float -> logits (N, classes).

    `forward` stops before a final softmax so training can use the stable
    cross-entropy on logits; `probabilities` applies it. Every layer, softmax
    included, stays a named child for feature maps.
    """

    def __init__(self, spec: ModelSpec, input_shape: tuple[int, int, int] | None = None):
        report = analyze(spec, input_shape)
        check_size(report)  # before build_layer allocates any weight
        names = layer_names(report.spec)
        super().__init__()
        for name, layer_report in zip(names, report.layers, strict=True):
            self.add_module(name, build_layer(layer_report.layer, layer_report.in_shape))
        self.spec: ModelSpec = report.spec
        self.report: ModelReport = report
        last = report.spec.layers[-1].kind
        self.logit_layers = len(report.spec.layers) - (1 if last == "softmax" else 0)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.spec.input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in list(self.children())[: self.logit_layers]:
            x = module(x)
        return x

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax of the logits, (N, classes), each row sums to 1; for use, so no gradients.

        Under `torch.no_grad`: the result tracks no graph (no memory held for a backward that
        never comes). To train, or for gradients with respect to the input, use `forward`
        (logits) and softmax or cross-entropy on them.
        """
        with torch.no_grad():
            return torch.softmax(self.forward(x), dim=1)

    def to_spec(self) -> ModelSpec:
        """The spec read back from the built modules themselves."""
        return ModelSpec(tuple(layer_from_module(m) for m in self.children()), self.input_shape)


def adapt_to_data(
    spec: ModelSpec, input_shape: tuple[int, int, int], num_classes: int
) -> tuple[ModelSpec, list[str]]:
    """The spec on the data's input shape with its last fc giving one output per class.

    Presets end in fc(10); a data set of 8 classes needs fc(8). Returns the new
    spec and notes saying what changed.
    """
    notes = []
    if spec.input_shape and tuple(spec.input_shape) != tuple(input_shape):
        notes.append(
            _("input {before} -> {after} (the data's images)").format(
                before=format_shape(spec.input_shape), after=format_shape(input_shape)
            )
        )
    layers = list(spec.layers)
    fc_indices = [i for i, layer in enumerate(layers) if layer.kind == "fc"]
    if not fc_indices:
        raise SpecError(
            _(
                "the model must end in fc(N) to classify {count} classes; add e.g. '{layers}'"
            ).format(count=num_classes, layers=f"flatten fc({num_classes})")
        )
    last = fc_indices[-1]
    if any(LAYER_KINDS[layer.kind].changes_layout for layer in layers[last + 1 :]):
        raise SpecError(
            _(
                "the last fc must be the model's output layer "
                "(only activations, dropout or softmax after it)"
            )
        )
    if layers[last].params["out"] != num_classes:
        params = dict(layers[last].params, out=num_classes)
        notes.append(
            _("{before} -> {after} for the data's {count} classes").format(
                before=layers[last].text(), after=LayerSpec("fc", params).text(), count=num_classes
            )
        )
        layers[last] = LayerSpec("fc", params)
    return ModelSpec(tuple(layers), tuple(input_shape)), notes


def model_for_data(
    model: str | ModelSpec,
    input_shape: tuple[int, int, int],
    num_classes: int,
    images: int | None = None,
) -> tuple[ModelSpec, list[str]]:
    """The spec training builds for `images` training images of (C, H, W) `input_shape` and
    `num_classes` classes.

    A preset takes its variant for the data (`preset_spec`: `default` ends in global average
    pooling on colour inputs, sides over 32 px or under 5,000 images), then `adapt_to_data`.
    Returns the spec and notes saying what changed.
    """
    spec = resolve_model(model)
    notes = []
    if isinstance(model, str) and model in PRESETS:
        fitted = preset_spec(model, input_shape, images)
        if fitted.layers != spec.layers:
            notes.append(
                _(
                    "{model} on {shape} inputs, {images} images: its variant for colour, larger "
                    "images or small data, ending in global average pooling (the same parameters "
                    "at any size; where an object sits matters less)"
                ).format(model=model, shape=format_shape(input_shape), images=images or "?")
            )
            spec = fitted
    more, extra = adapt_to_data(spec, input_shape, num_classes)
    return more, notes + extra


def build_model(
    model: str | ModelSpec, input_shape: tuple[int, int, int] | None = None
) -> CnnModel:
    """Validate and build: a preset name, TOML path, one-line spec or ModelSpec -> CnnModel."""
    return CnnModel(resolve_model(model, input_shape))
