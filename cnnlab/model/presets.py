"""Preset models by name (each with its training recipe) and the resolution of a MODEL argument.

A MODEL argument is a preset name (`cnnlab models` lists them), a TOML file,
or a one-line spec. Pure: no torch (model/cnn.py builds the modules).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import SpecError
from cnnlab.i18n import N_, _
from cnnlab.spec.kinds import LAYER_KINDS, resolve_kind
from cnnlab.spec.language import ModelSpec, parse_spec
from cnnlab.spec.toml import load_spec_toml
from cnnlab.text import clipped


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
    # The spec for inputs in colour, over GAP_ABOVE pixels a side, or trained on fewer than
    # GAP_BELOW_IMAGES images (see `fits_gap`), ending in global average pooling so its
    # parameters do not grow with the input; "" = `text` always.
    gap_text: str = ""

    def recipe_for(self, data: str) -> dict[str, Any]:
        """The recipe's settings for training on `data` (a registry name)."""
        return {**self.recipe, **self.data_recipes.get(data, {})}


PRESET_FILES = Path(__file__).parent / "presets"  # presets too long for one line, as TOML specs


def _toml_text(name: str) -> str:
    """The one-line text of a preset kept as a TOML spec in PRESET_FILES."""
    return load_spec_toml(PRESET_FILES / name).text()


GAP_ABOVE = 32  # inputs with a side over this many pixels, or in colour, take a preset's gap_text
# Small grayscale data takes it too: its fourth block sees the whole 28x28 image and its
# pooled head does not care where a shape sits, which a few hundred images cannot teach the
# flatten head. `default` on 500 `shapes` (sgd, 512 steps, seeds 0/1; docs/performance.md,
# "Small-data recipe"): flatten 80.9/81.0%, gap 89.3/89.3%. From this many images on (full
# `shapes`, Fashion-MNIST) the flatten head stays: their runs are unchanged.
GAP_BELOW_IMAGES = 5000


def fits_gap(input_shape: tuple[int, int, int], images: int | None = None) -> bool:
    """Whether a (C, H, W) input, trained on `images` images (None: unknown), takes a preset's
    global-average-pooling variant."""
    channels, height, width = input_shape
    small = images is not None and images < GAP_BELOW_IMAGES
    return channels != 1 or max(height, width) > GAP_ABOVE or small


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
            N_(
                "cnnlab's fast, accurate model for 28x28 images (three conv blocks, BatchNorm); "
                "for colour or larger inputs a fourth block and global average pooling (the same "
                "parameters at any size); recipe on fashion-mnist: 4 epochs, no augmentation, "
                "a frozen patch-whitening first convolution, Nesterov momentum 0.95"
            ),
            # Fashion-MNIST, 4 epochs, seeds 0/1 (docs/performance.md, "Time to accuracy: what
            # was tried"): light 92.71/92.79%; + whiten frozen and no augmentation 93.14/93.06%,
            # the frozen conv also ~15% less CPU per step. Stretched over a subset (train_size,
            # fit_to_data's epochs), the mirror comes back: many epochs overfit without it.
            # Nesterov momentum 0.95 instead of 0.9 (--threads 1, seeds 0/1): 4 epochs 93.07/93.13
            # -> 93.54/93.40%; 900 steps (a 1.25E budget) 92.28 -> 92.60% (mean of seeds 0-3);
            # train_size=6000 88.61/88.36 -> 88.92/88.98%, 1000 84.67/84.90 -> 84.74/85.23%.
            data_recipes={
                "fashion-mnist": {
                    "epochs": 4,
                    "augment": "none",
                    "augment_when_stretched": "light",
                    "whiten": "frozen",
                    "momentum": 0.95,
                }
            },
            # One more pooled block than at 28x28, then the mean of each channel instead of
            # flatten's fc (1.4M weights at 128x128). Test accuracy on a generated colour folder
            # (bench/colour_folder.py: 1,200 64x64 JPEGs, 4 classes; adamw, 500 steps, seed 0):
            # flatten head at 32 px 56.5%, this at 32 px 72.5% (seed 1: 73.8%), at 48 px 79.0%,
            # at 64 px 77.0%; three blocks and gap at 64 px 43.8% (its 16x16 last maps see too
            # little of the image).
            gap_text="input(3x64x64) conv(32,3,padding=same) maxpool(2) batchnorm relu "
            "conv(64,3,padding=same) maxpool(2) batchnorm relu "
            "conv(128,3,padding=same) maxpool(2) batchnorm relu "
            "conv(256,3,padding=same) batchnorm relu gap fc(10)",
        ),
        Preset(
            "best",
            "input(1x28x28) conv(32,3,padding=same) maxpool(2) batchnorm relu "
            "conv(64,3,padding=same) batchnorm relu conv(64,3,padding=same) maxpool(2) batchnorm relu "
            "conv(128,3,padding=same) batchnorm relu conv(128,3,padding=same) batchnorm relu "
            "flatten fc(10)",
            N_(
                "cnnlab's most accurate 28x28 model within minutes on a CPU (five conv layers, BatchNorm); "
                "recipe: 20 epochs, standard augmentation, mirror test-time augmentation; on "
                "fashion-mnist 24 epochs and a frozen patch-whitening first convolution"
            ),
            recipe={"epochs": 20, "augment": "standard"},
            # Mirror TTA only where a mirror keeps labels (a recipe must not ask for what fails).
            # Fashion-MNIST (--threads 1, seed 0; docs/performance.md, "`best`"): whiten=frozen
            # makes an epoch ~12% cheaper and buys 4 more: 24 epochs 94.64%, 27 94.76% (2-thread
            # wall estimated 495 / 560 s: 24 keeps a margin under 10 minutes), against 94.32% in
            # 454 s before; cutout 8, altflip, label smoothing 0.05, momentum 0.95, weight decay
            # 2.5e-4..2.5e-3, batch 64, lr 0.2, identity skips around conv pairs, a later first pool
            # no better (seed 1: 94.57%).
            data_recipes={
                **{name: {"tta": True} for name in ("shapes", "cifar10")},
                "fashion-mnist": {"tta": True, "whiten": "frozen", "epochs": 24},
            },
        ),
        Preset(
            "tutorial",
            "input(1x28x28) conv(32,3,padding=same) relu maxpool(2) conv(64,3,padding=same) relu "
            "maxpool(2) flatten dropout(0.5) fc(10)",
            N_("seed 000's PyTorch model: two same-padded 3x3 convs, dropout, fc 3136 -> 10"),
        ),
        Preset(
            "keras-mnist",
            "input(1x28x28) conv(32,3) relu maxpool(2) conv(64,3) relu maxpool(2) flatten fc(128) relu "
            "fc(10) softmax",
            N_("seed 003's Keras model: two valid 3x3 convs, Dense 128, softmax output"),
        ),
        Preset(
            "color-cnn",
            "input(3x256x256) conv(16,3,stride=2,padding=1) relu maxpool(2) conv(32,3,padding=1) relu "
            "maxpool(2) flatten fc(10,in=32768)",
            N_(
                "seed 004's colour model at the 3x256x256 input its fc(32*32*32) implies; "
                "its torch.flatten(x) (which merged the batch) is a batch-keeping flatten here"
            ),
        ),
        Preset(
            "lite0",
            _toml_text("lite0.toml"),
            N_(
                "EfficientNet-Lite0, an ImageNet network (16 MBConv blocks, 4.65M parameters) for "
                "colour photos; recipe: fine-tunes its ImageNet weights (weights = imagenet) at "
                "128x128: the stem and first two stages frozen, the fc first alone for 10 epochs, "
                "then 5 epochs of adamw at batch 16, fp32"
            ),
            # Fine-tuning, not training from scratch: a few hundred photos cannot teach 4.65M
            # weights, but they can adapt ImageNet's (issue 25: a plain fine-tune reached 98.8%
            # where cnnlab's scratch default reached 85.4% on a 4-class 320-image folder).
            # 8 epochs at batch 16 as the plain fine-tune (AdamW, one-cycle, 128 px):
            # a pretrained network needs adapting, not the 1,000 steps a fresh one needs.
            # fp32, not bf16 autocast: its depthwise convolutions run slower in bf16 (AMD EPYC
            # with AVX512-BF16, 2 threads, batch 16 at 128 px, `python -m bench.lite0_step`:
            # fp32 channels_last 142-185 ms a step, bf16 1.24-1.26x that, fp32 contiguous 1.4x).
            # lr 1e-3, weight decay 0.01, no label smoothing, 8-pixel shifts and (in the spec)
            # BatchNorm momentum 0.01: the plain fine-tune of `make bench-transfer`'s reference,
            # which beat the first recipe (adamw's 7.1e-4 at batch 16, decay 0.05, smoothing
            # 0.1, 16-pixel shifts, momentum 0.1) by 4 points on its colour-200/300 cells;
            # with these, cnnlab is within noise of it (docs/performance.md).
            # Then, for half the wall time (docs/performance.md, "lite0's recipe: faster"):
            # freeze = 13 (the stem and stages 1-2: their weights and BatchNorm statistics stay
            # ImageNet's, and backward stops above them: 109 instead of 175 ms a step) and the fc
            # first alone on cached features (head_epochs = 10, a second), after which 5 epochs
            # do what 8 did: medians of 3 seeds 84.5% / 88.0% on colour-200 / colour-300
            # against 81.0% / 87.5% before, in 17 / 23 s instead of 29 / 45 s.
            recipe={
                "precision": "fp32",
                "weights": "imagenet",
                "image_size": "128",
                "optimizer": "adamw",
                "lr": 1e-3,
                "weight_decay": 0.01,
                "label_smoothing": 0.0,
                "augment": "standard,translate=8",
                "epochs": 5,
                "batch_size": 16,
                "freeze": 13,
                "head_epochs": 10,
                "fit_to_data": False,
            },
        ),
        Preset(
            "lenet5",
            "input(1x28x28) conv(6,5,padding=2) tanh avgpool(2) conv(16,5) tanh avgpool(2) flatten "
            "fc(120) tanh fc(84) tanh fc(10)",
            N_("LeCun et al. 1998 LeNet-5 for 28x28 (first conv padded to act as on 32x32)"),
        ),
    )
}


def preset_spec(
    name: str, input_shape: tuple[int, int, int] | None = None, images: int | None = None
) -> ModelSpec:
    """The spec of a preset model; on `input_shape` (C, H, W) when given, in its variant for it.

    A preset with a `gap_text` takes it for colour inputs, sides over GAP_ABOVE pixels, or
    training on fewer than GAP_BELOW_IMAGES images (`images`, when known).
    """
    preset = PRESETS[name]
    use_gap = bool(preset.gap_text) and input_shape is not None and fits_gap(input_shape, images)
    spec = parse_spec(preset.gap_text if use_gap else preset.text)
    return spec.with_input(input_shape) if input_shape else spec


def resolve_model(
    model: str | ModelSpec, input_shape: tuple[int, int, int] | None = None
) -> ModelSpec:
    """A preset name, a TOML file path, a one-line spec, or a ModelSpec -> ModelSpec.

    `input_shape` (when given) replaces the spec's own input shape; a preset takes its variant
    for that input (`preset_spec`: `default` ends in global average pooling on colour or
    larger inputs).
    """
    if isinstance(model, ModelSpec):
        spec = model
    elif model in PRESETS:
        spec = preset_spec(model, input_shape)
    elif model.endswith(".toml") or _is_file(model):
        if not _is_file(model):
            raise SpecError(_why_not_a_file(model).format(path=clipped(model)))
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


def _why_not_a_file(text: str) -> str:
    """'model file {path} does not exist', or what it is instead (a FIFO or folder is never
    opened), in the current language: a template of {path}."""
    missing = _("model file {path} does not exist")
    try:
        return _("model file {path} is not a regular file") if Path(text).exists() else missing
    except OSError:  # ENAMETOOLONG: no such file can exist
        return missing


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
    hint = _(" Did you mean {names}?").format(names=_(" or ").join(close)) if close else ""
    raise SpecError(
        _(
            "'{word}' is not a preset, a model file or a spec.{hint} Presets: {presets} "
            "(see `cnnlab models`); a spec looks like 'conv(32,3) relu maxpool(2) flatten fc(10)'"
        ).format(word=word, hint=hint, presets=", ".join(PRESETS))
    )
