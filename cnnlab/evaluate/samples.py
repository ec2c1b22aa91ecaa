"""One image for a run, as its model takes it: an image file, or SPLIT:INDEX of the run's own data.

`test:12` is image 12 of the run's test split (as `evaluate.scores.split_images`
gives it), so feature maps can be shown without any file. A file is decoded by the
checked `data.images.load_image` at the run's channels, size and keep-aspect; `normalize`
(model/inference.py) then turns either into model input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.data.images import load_image
from cnnlab.errors import DataError
from cnnlab.evaluate.scores import SPLITS, split_images
from cnnlab.i18n import _
from cnnlab.model.inference import normalize
from cnnlab.run.files import run_keep_aspect
from cnnlab.run.folder import Run

_SPLIT_INDEX = re.compile(rf"^({'|'.join(SPLITS)}):(-?\d+)$")


@dataclass
class Sample:
    """A uint8 image (C, H, W) at the run's input shape, and its true class when known."""

    image: torch.Tensor
    source: str  # the file, or 'test:12'
    label: str | None = None  # the true class of a data set image

    @property
    def stem(self) -> str:
        """A file-name-safe name: 'photo' for photo.png, 'test-12' for test:12."""
        if _SPLIT_INDEX.match(self.source):
            return self.source.replace(":", "-")
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(self.source).stem) or "image"

    def model_input(self, run: Run) -> torch.Tensor:
        """(1, C, H, W) float, normalised with the run's mean and std."""
        return normalize(self.image[None], run.mean, run.std)


def check_index(source: str, split: str, count: int, index: int) -> None:
    """A DataError unless `index` names one of the `count` images of `split` (which may be empty)."""
    if count == 0:
        raise DataError(
            _("{source}: {split} is empty: give an image file, or a split with images").format(
                source=source, split=split
            )
        )
    if not 0 <= index < count:
        raise DataError(
            _("{source}: {split} has {count} images; use an index from 0 to {last}").format(
                source=source, split=split, count=count, last=count - 1
            )
        )


def _what_it_is(path: Path) -> str:
    """Why `path` cannot be read as an image: 'is a folder', 'is not a regular file', ..."""
    if path.is_dir():
        return _("image {source} is a folder, not an image file")
    if path.exists():
        return _("image {source} is not a regular file (a device, FIFO or socket)")
    return _("image {source} does not exist")


def load_sample(run: Run, source: str) -> Sample:
    """An image file (checked decoder, resized to the run's input) or SPLIT:INDEX of the run's data."""
    channels, height, width = run.input_shape
    match = _SPLIT_INDEX.match(source)
    if match and not Path(source).is_file():
        split, index = match.group(1), int(match.group(2))
        images, labels, name = split_images(run, None, split)
        where = _("the {split} split of {data}").format(split=split, data=name)
        check_index(source, where, len(images), index)
        return Sample(images[index], source, run.classes[int(labels[index])])
    if not Path(source).is_file():
        raise DataError(
            _what_it_is(Path(source)).format(source=source)
            + _(
                ": give an image file (PNG, JPEG, ...) or SPLIT:INDEX of the run's data, e.g. test:0"
            )
        )
    keep_aspect = run_keep_aspect(run)  # fitted as training fitted its images, as predict does
    image = load_image(source, channels=channels, size=(height, width), keep_aspect=keep_aspect)
    return Sample(image, source)
