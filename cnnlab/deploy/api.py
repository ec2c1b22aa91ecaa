"""A trained run for Python code: `cnnlab.load(run).predict(images)`.

import cnnlab
model = cnnlab.load("latest")              # a run folder, a name under runs/, or 'latest'
model.predict("cat.png", top_k=3)          # [{"class": "cat", "index": 3, "probability": 0.97}, ...]
model.probabilities([pil_image, array])    # (2, classes) numpy float32

Every input takes the path of `cnnlab predict`: files are read by `prepare_image`; PIL
images and uint8 arrays are first written losslessly as PNG bytes (a PIL image's mode made L
or RGB by the decoder's `normalise_mode`, as a file of that mode would be), so an array read
from a file gives exactly that file's answer. Inference runs under `torch.inference_mode`. A run
trained with tta = true answers with the mean logits of each image and its mirror, as
`cnnlab eval` scores it (`Predictor.logits`).
"""

from __future__ import annotations

import io
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlab.data.images import normalise_mode
from cnnlab.deploy.predict import Predictor, Preprocess
from cnnlab.errors import ConfigError, DataError
from cnnlab.i18n import _
from cnnlab.run.folder import Run

ARRAY_MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # channels of an (H, W, C) array -> PIL mode


def _require_pixels(width: int, height: int, what: str) -> None:
    """DataError for an image or array with no pixels (PNG cannot hold one: Pillow's ValueError)."""
    if width == 0 or height == 0:
        raise DataError(
            _(
                "{what} has no pixels (width {width}, height {height}); "
                "pass an image of at least 1x1 pixels"
            ).format(what=what, width=width, height=height)
        )


def _png_bytes(image: Image.Image) -> bytes:
    """A PIL image of any mode as PNG bytes, its mode made L or RGB first as a file's would be."""
    _require_pixels(*image.size, "the PIL image")
    buffer = io.BytesIO()
    # PNG cannot store CMYK, YCbCr, LAB, HSV, I, F, PA, RGBX, RGBa, La: the decoder's own
    # conversion (the one a file of that mode gets) turns every mode into one it can, losslessly.
    normalise_mode(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _array_to_png(array: np.ndarray) -> bytes:
    """A uint8 (H, W) or (H, W, C) array (C 1, 3 or 4) as PNG bytes."""
    if array.dtype != np.uint8:
        raise DataError(
            _(
                "an image array must be uint8 (0..255), not {dtype}; "
                "convert it with array.clip(0, 255).astype(numpy.uint8)"
            ).format(dtype=array.dtype)
        )
    if array.ndim in (2, 3):
        _require_pixels(array.shape[1], array.shape[0], f"an image array of shape {array.shape}")
    if array.ndim == 3 and array.shape[2] in ARRAY_MODES:
        mode = ARRAY_MODES[array.shape[2]]
        array = array[:, :, 0] if array.shape[2] == 1 else array
    elif array.ndim == 2:
        mode = "L"
    else:
        raise DataError(
            _(
                "an image array has shape {shape}; use (H, W) for grayscale or (H, W, C) with "
                "C 1, 3 or 4; for several images pass a list"
            ).format(shape=array.shape)
        )
    return _png_bytes(Image.fromarray(np.ascontiguousarray(array), mode=mode))


def _as_source(item: Any) -> str | Path | bytes:
    """What `prepare_image` reads: a path as given, PIL images and arrays as PNG bytes."""
    if isinstance(item, str | Path):
        return item
    if isinstance(item, Image.Image):
        return _png_bytes(item)
    if isinstance(item, np.ndarray):
        return _array_to_png(item)
    raise DataError(
        _(
            "cannot predict a {type}: pass a file path, a PIL image, a uint8 numpy "
            "array (H, W) or (H, W, C), or a list of them"
        ).format(type=type(item).__name__)
    )


def _check_top_k(top_k: Any) -> None:
    """ConfigError unless top_k is a whole number (Python or numpy) of at least 1; bool is not."""
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ConfigError(
            _(
                "top_k must be a whole number of at least 1 (how many classes to return), not "
                "{value}; e.g. predict(image, top_k=3)"
            ).format(value=repr(top_k))
        )


class LoadedRun:
    """A run's model with its classes and the preprocessing of `cnnlab predict`."""

    def __init__(self, run: Run, engine: str = "auto", invert: str = "no", center: bool = False):
        self.run = run
        self.options = Preprocess(invert=invert, center=center)
        self.predictor = Predictor(run, engine)

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of the probabilities' columns."""
        return list(self.run.classes)

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.run.input_shape))
        return f"LoadedRun({str(self.run.path)!r}, {len(self.classes)} classes, input {shape})"

    def _batch(self, inputs: Any) -> torch.Tensor:
        """uint8 (N, C, H, W): each input prepared exactly as `cnnlab predict` prepares a file."""
        items = list(inputs) if isinstance(inputs, list | tuple) else [inputs]
        if not items:
            raise DataError(_("no images given: pass a file path, an image, an array or a list"))
        prepared = []
        for i, item in enumerate(items):
            name = str(item) if isinstance(item, str | Path) else f"input {i}"
            prepared.append(self.predictor.prepare(_as_source(item), self.options, name=name))
        return torch.stack(prepared)

    def probabilities(self, inputs: Any) -> np.ndarray:
        """(N, classes) float32 softmax probabilities; N = 1 for a single input."""
        batch = self._batch(inputs)
        with torch.inference_mode():
            return self.predictor.probabilities(batch).numpy()

    def predict(self, inputs: Any, top_k: int = 3) -> list[dict[str, Any]] | list[list[dict]]:
        """The top_k classes (class, index, probability), best first: a list for one input, a
        list of such lists for a list of inputs."""
        _check_top_k(top_k)
        probabilities = torch.from_numpy(self.probabilities(inputs))
        answers = [self.predictor.top_k(row, int(top_k)) for row in probabilities]
        return answers if isinstance(inputs, list | tuple) else answers[0]


def load(
    run: str | Path = "latest", engine: str = "auto", invert: str = "no", center: bool = False
) -> LoadedRun:
    """A trained run (a path, a name under runs/, or 'latest') ready to predict from Python."""
    if not isinstance(run, str | Path):
        raise ConfigError(
            _(
                "run must be a run folder path, a run name under runs/ or 'latest', not "
                "{type}; e.g. cnnlab.load('latest')"
            ).format(type=type(run).__name__)
        )
    return LoadedRun(Run.open(run), engine, invert, center)
