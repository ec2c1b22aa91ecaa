"""Where a run's data came from, as its run record keeps it, and its splits rebuilt from that.

A `DataSource` names the data set (a registered name or `folder:PATH`), every option it was
loaded with, and the rule that split its training images (the validation fraction and the
seed). Training loads through `load_source` and splits through `split_source`; evaluation,
figures, export and the server rebuild the same splits from the run record with the same two
functions, so the test images a run is scored on are the ones it was tested on.

Torch-free at import (the registry is imported inside the functions that load).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from cnnlab.errors import ConfigError, DataError
from cnnlab.i18n import N_, _
from cnnlab.text import clipped

if TYPE_CHECKING:
    import torch

    from cnnlab.data.dataset import Dataset

KEEP_ASPECTS = (
    "stretch",
    "pad",
    "crop",
)  # as data/images.py's KEEP_ASPECT (a test keeps them equal)
SPLITS = ("test", "val", "train")
MAX_IMAGE_SIZE = 1024  # pixels a side, as the folder loader allows
MAX_DIGITS = 20  # of a side given as text; int() of 5,000 digits is slow

# (images (N, C, H, W) uint8, labels (N,) int64, the file of each image or None)
Split = tuple["torch.Tensor", "torch.Tensor", "list[str] | None"]


def parse_image_size(text: str) -> int | tuple[int, int] | None:
    """image_size as loaders take it: "0" -> None (the data set's size), "N" -> N, "HxW" -> (H, W)."""
    parts = str(text).strip().lower().split("x")
    if len(parts) > 2 or not all(p.isdigit() and len(p) <= MAX_DIGITS for p in parts):
        raise ConfigError(
            _(
                "image_size must be N or HxW (height x width, e.g. 64 or 48x64), each side 1 to "
                "{most}, or 0 for the data set's size; not {value}"
            ).format(most=MAX_IMAGE_SIZE, value=clipped(repr(text)))
        )
    sides = [int(p) for p in parts]
    if sides == [0]:
        return None
    if not all(1 <= side <= MAX_IMAGE_SIZE for side in sides):
        raise ConfigError(
            _(
                "image_size must be 0 (the data set's size) or 1 to {most} pixels a side, "
                "not {value}"
            ).format(most=MAX_IMAGE_SIZE, value=clipped(repr(text)))
        )
    return sides[0] if len(set(sides)) == 1 else (sides[0], sides[1])


@dataclass(frozen=True)
class DataSource:
    """A data set as a run loaded it, and how its training images were split."""

    name: str  # a registered data set ("shapes"), or "folder:PATH"
    data_dir: str = ""  # where its files were looked for first ("" = the usual places)
    image_size: str = "0"  # as loaded: "0" (the data set's own), "N" or "HxW" (folders)
    channels: int = 0  # converted to 1 or 3 (0 = the data set's own)
    keep_aspect: str = "stretch"  # folders: how images met image_size (stretch, pad, crop)
    train_size: int = 0  # a class-balanced subset, or `shapes` generated (0 = the default)
    test_size: int = 0
    skip_bad: bool = False  # folders: unusable files were left out
    val_split: float = 0.0  # the share of each class held out for validation (0 = none)
    split_seed: int = 0  # the seed of that split (the run's seed)

    def with_name(self, name: str | None) -> DataSource:
        """The same options on another data set (`cnnlab eval RUN --data NAME`); None: this one."""
        return self if name is None or name == self.name else replace(self, name=name)


def load_source(source: DataSource) -> Dataset:
    """The data set of `source`, loaded with its options (decoded, converted, subset)."""
    from cnnlab.data.registry import is_folder, load_dataset

    folder = is_folder(source.name)
    return load_dataset(
        source.name,
        data_dir=source.data_dir or None,
        image_size=parse_image_size(source.image_size),
        channels=source.channels or None,
        train_size=source.train_size or None,
        test_size=source.test_size or None,
        # folders only: a registered data set refuses the options
        **({"skip_bad": True} if source.skip_bad and folder else {}),
        **({"keep_aspect": source.keep_aspect} if source.keep_aspect != "stretch" else {}),
    )


def training_splits(dataset: Dataset, source: DataSource) -> tuple[Split, Split | None]:
    """The training split and, with `val_split`, the validation split, as the run split them
    (`val_split` of each class by `split_seed`: the same images, labels and files every time)."""
    from cnnlab.data.dataset import pick_paths, validation_indices

    images, labels, paths = dataset.train_images, dataset.train_labels, dataset.train_paths
    if source.val_split <= 0:
        return (images, labels, paths), None
    train_idx, val_idx = validation_indices(labels, source.val_split, source.split_seed)
    train = images[train_idx], labels[train_idx], pick_paths(paths, train_idx)
    return train, (images[val_idx], labels[val_idx], pick_paths(paths, val_idx))


# A split's count as check_splits says it ('200 training'), N_-marked: translated where shown.
SPLIT_COUNTS = {
    "training": N_("{count} training"),
    "test": N_("{count} test"),
    "validation": N_("{count} validation"),
}


def check_splits(dataset: Dataset, source: DataSource, train: Split, val: Split | None) -> None:
    """Refuse, before any training, splits a run cannot train on, validate on or be scored on.

    An image folder without test/ holds out a share of each class that has 2 images or more, so
    one image per class leaves no test image: the run would train, then fail at its test."""
    counts = {"training": len(train[1]), "test": len(dataset.test_labels)}
    if val is not None:
        counts["validation"] = len(val[1])
    classes = len(dataset.classes)
    numbers = _("{counts} images in {classes} classes").format(
        counts=", ".join(_(SPLIT_COUNTS[split]).format(count=n) for split, n in counts.items()),
        classes=classes,
    )
    folder = dataset.name.startswith("folder:")
    if counts["training"] == 0:
        fix = _("add images to the class folders") if folder else _("use a larger train_size")
        raise DataError(
            _("{data}: {numbers}: nothing to train on; {fix}").format(
                data=dataset.name, numbers=numbers, fix=fix
            )
        )
    if counts["test"] == 0:
        fix = (
            _(
                "put a test/ folder beside train/ (test/<class>/<images>), or give each class at "
                "least 2 images (a share of each class, at least one image, is held out for the "
                "test)"
            )
            if folder
            else _("use a larger test_size")
        )
        raise DataError(
            _("{data}: {numbers}: a run could not be scored; {fix}").format(
                data=dataset.name, numbers=numbers, fix=fix
            )
        )
    if counts.get("validation") == 0:
        raise DataError(
            _(
                "{data}: val_split={fraction} holds out no images ({numbers}): "
                "give each class at least 2 training images, or drop val_split"
            ).format(data=dataset.name, fraction=f"{source.val_split:g}", numbers=numbers)
        )


def split_source(dataset: Dataset, source: DataSource, split: str) -> Split:
    """One split of `dataset` as the run split it: test as loaded, train and val by the run's
    rule (`training_splits`)."""
    if split not in SPLITS:
        raise DataError(
            _("split '{split}' is not one of {splits}").format(
                split=split, splits=", ".join(SPLITS)
            )
        )
    if split == "test":
        return dataset.test_images, dataset.test_labels, dataset.test_paths
    train, val = training_splits(dataset, source)
    if split == "train":
        return train
    if val is None:
        raise DataError(
            _("the run was trained without a validation split (val_split=0): use --split test")
        )
    return val
