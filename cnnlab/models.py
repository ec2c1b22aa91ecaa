"""Preset models by name, the resolution of a MODEL argument, and the built torch model.

A MODEL argument is a preset name (`cnnlab models` lists them), a TOML file,
or a one-line spec. `build_model` validates the spec (analysis.py) before
creating any tensor, then builds an `nn.Sequential` whose children are named
conv1, relu1, maxpool1, ... so weights and feature maps read as the spec does.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.analysis import ModelReport, analyze, layer_names
from cnnlab.errors import SpecError
from cnnlab.layers import build_layer, layer_from_module
from cnnlab.spec import (
    LAYER_KINDS,
    LayerSpec,
    ModelSpec,
    format_shape,
    load_spec_toml,
    parse_spec,
    resolve_kind,
)


@dataclass(frozen=True)
class Preset:
    """A named model: its spec (with input shape), where it comes from, and its training recipe.

    `recipe` holds the training settings the model is meant to be trained with (TrainConfig keys),
    `data_recipes` further settings for particular data sets (by registry name); they replace the
    defaults when the preset is chosen, and any setting given explicitly wins.
    """

    name: str
    text: str
    description: str
    recipe: dict[str, Any] = field(default_factory=dict)
    data_recipes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def recipe_for(self, data: str) -> dict[str, Any]:
        """The recipe's settings for training on `data` (a registry name)."""
        return {**self.recipe, **self.data_recipes.get(data, {})}


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "default",
            # Pooling straight after each conv: BatchNorm and ReLU then work on a quarter of the
            # pixels (max pool commutes with ReLU); no pool after the last conv (docs/performance.md).
            "input(1x28x28) conv(32,3,padding=same) maxpool(2) batchnorm relu "
            "conv(64,3,padding=same) maxpool(2) batchnorm relu "
            "conv(128,3,padding=same) batchnorm relu flatten fc(10)",
            "cnnlab's fast, accurate model for 28x28 images (three conv blocks, BatchNorm); "
            "recipe on fashion-mnist: 4 epochs, light augmentation (mirror only)",
            data_recipes={"fashion-mnist": {"epochs": 4, "augment": "light"}},
        ),
        Preset(
            "best",
            "input(1x28x28) conv(32,3,padding=same) maxpool(2) batchnorm relu "
            "conv(64,3,padding=same) batchnorm relu conv(64,3,padding=same) maxpool(2) batchnorm relu "
            "conv(128,3,padding=same) batchnorm relu conv(128,3,padding=same) batchnorm relu "
            "flatten fc(10)",
            "cnnlab's most accurate 28x28 model within minutes on a CPU (five conv layers, BatchNorm); "
            "recipe: 20 epochs, standard augmentation, mirror test-time augmentation",
            recipe={"epochs": 20, "augment": "standard"},
            # Mirror TTA only where a mirror keeps labels (a recipe must not ask for what fails).
            data_recipes={name: {"tta": True} for name in ("fashion-mnist", "shapes", "cifar10")},
        ),
        Preset(
            "tutorial",
            "input(1x28x28) conv(32,3,padding=same) relu maxpool(2) conv(64,3,padding=same) relu "
            "maxpool(2) flatten dropout(0.5) fc(10)",
            "seed 000's PyTorch model: two same-padded 3x3 convs, dropout, fc 3136 -> 10",
        ),
        Preset(
            "keras-mnist",
            "input(1x28x28) conv(32,3) relu maxpool(2) conv(64,3) relu maxpool(2) flatten fc(128) relu "
            "fc(10) softmax",
            "seed 003's Keras model: two valid 3x3 convs, Dense 128, softmax output",
        ),
        Preset(
            "color-cnn",
            "input(3x256x256) conv(16,3,stride=2,padding=1) relu maxpool(2) conv(32,3,padding=1) relu "
            "maxpool(2) flatten fc(10,in=32768)",
            "seed 004's colour model at the 3x256x256 input its fc(32*32*32) implies; "
            "its torch.flatten(x) (which merged the batch) is a batch-keeping flatten here",
        ),
        Preset(
            "lenet5",
            "input(1x28x28) conv(6,5,padding=2) tanh avgpool(2) conv(16,5) tanh avgpool(2) flatten "
            "fc(120) tanh fc(84) tanh fc(10)",
            "LeCun et al. 1998 LeNet-5 for 28x28 (first conv padded to act as on 32x32)",
        ),
    )
}


def preset_spec(name: str) -> ModelSpec:
    """The spec of a preset model."""
    return parse_spec(PRESETS[name].text)


def resolve_model(
    model: str | ModelSpec, input_shape: tuple[int, int, int] | None = None
) -> ModelSpec:
    """A preset name, a TOML file path, a one-line spec, or a ModelSpec -> ModelSpec.

    `input_shape` (when given) replaces the spec's own input shape.
    """
    if isinstance(model, ModelSpec):
        spec = model
    elif model in PRESETS:
        spec = preset_spec(model)
    elif model.endswith(".toml") or _is_file(model):
        if not _is_file(model):
            raise SpecError(f"model file {model} does not exist")
        spec = load_spec_toml(model)
    else:
        _refuse_unknown_word(model)
        spec = parse_spec(model)
    return spec.with_input(input_shape) if input_shape else spec


def _is_file(text: str) -> bool:
    """Whether `text` names an existing file; a long spec is no file name (and must not crash)."""
    try:
        return Path(text).is_file()
    except OSError:  # e.g. ENAMETOOLONG for a one-line spec of over 255 characters
        return False


def _refuse_unknown_word(model: str) -> None:
    """A single word that is neither a preset nor a layer is probably a mistyped preset."""
    word = model.strip()
    if not re.fullmatch(r"[A-Za-z][\w-]*", word):
        return
    try:
        resolve_kind(word)
        return
    except SpecError:
        pass
    close = difflib.get_close_matches(word, [*PRESETS, *LAYER_KINDS], n=3)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise SpecError(
        f"'{word}' is not a preset, a model file or a spec.{hint} "
        f"Presets: {', '.join(PRESETS)} (see `cnnlab models`); "
        "a spec looks like 'conv(32,3) relu maxpool(2) flatten fc(10)'"
    )


class CnnModel(nn.Sequential):
    """A model built from a validated spec; input (N, C, H, W) float -> logits (N, classes).

    `forward` stops before a final softmax so training can use the stable
    cross-entropy on logits; `probabilities` applies it. Every layer, softmax
    included, stays a named child for feature maps.
    """

    def __init__(self, spec: ModelSpec, input_shape: tuple[int, int, int] | None = None):
        report = analyze(spec, input_shape)
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
        """Softmax of the logits: (N, classes), each row sums to 1."""
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
            f"input {format_shape(spec.input_shape)} -> {format_shape(input_shape)} (the data's images)"
        )
    layers = list(spec.layers)
    fc_indices = [i for i, layer in enumerate(layers) if layer.kind == "fc"]
    if not fc_indices:
        raise SpecError(
            f"the model must end in fc(N) to classify {num_classes} classes; add e.g. 'flatten fc({num_classes})'"
        )
    last = fc_indices[-1]
    if any(layer.kind in ("conv", "flatten", "gap", "gmp") for layer in layers[last + 1 :]):
        raise SpecError(
            "the last fc must be the model's output layer (only activations, dropout or softmax after it)"
        )
    if layers[last].params["out"] != num_classes:
        params = dict(layers[last].params, out=num_classes)
        notes.append(
            f"{layers[last].text()} -> {LayerSpec('fc', params).text()} for the data's {num_classes} classes"
        )
        layers[last] = LayerSpec("fc", params)
    return ModelSpec(tuple(layers), tuple(input_shape)), notes


def build_model(
    model: str | ModelSpec, input_shape: tuple[int, int, int] | None = None
) -> CnnModel:
    """Validate and build: a preset name, TOML path, one-line spec or ModelSpec -> CnnModel."""
    return CnnModel(resolve_model(model, input_shape))
