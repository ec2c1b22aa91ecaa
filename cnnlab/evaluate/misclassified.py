"""The wrongly classified images of an evaluation, sorted into `<true>__as__<predicted>/` folders.

Folder data: a symlink to each original file (a copy where links cannot be made), so the
user opens, fixes or deletes the real file. Built-in data sets have no files: each image is
written as a PNG named by its index in the split.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlab.errors import OutputError

SEPARATOR = "__as__"  # <true>__as__<predicted>


def safe_folder_name(name: str) -> str:
    """A class name as one path component: '/', spaces and odd characters -> '-', no leading dot."""
    cleaned = re.sub(r"[^\w.+-]+", "-", name).lstrip(".")
    return cleaned or "class"


def pair_folder(true: str, predicted: str) -> str:
    """'cat__as__dog': the folder of images of `true` taken for `predicted`."""
    return f"{safe_folder_name(true)}{SEPARATOR}{safe_folder_name(predicted)}"


def _link_or_copy(source: Path, target: Path) -> None:
    """A symlink to `source` (absolute); a copy where the file system refuses links."""
    try:
        os.symlink(source.resolve(), target)
    except (OSError, NotImplementedError):
        shutil.copy2(source, target)


def _write_png(image: torch.Tensor, target: Path) -> None:
    """A (C, H, W) uint8 image as a PNG (gray for one channel, RGB for three)."""
    pixels = image.cpu().numpy()
    array = pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0))
    Image.fromarray(array, mode="L" if array.ndim == 2 else "RGB").save(target, format="PNG")


def _target_name(item: dict[str, Any], taken: set[Path], folder: Path) -> Path:
    """The file name in its pair folder: the original name (index-prefixed if taken), or INDEX.png."""
    if "file" not in item:
        return folder / f"{item['index']}.png"
    target = folder / Path(item["file"]).name
    if target in taken:  # two files of one name in different sub-folders of a class
        target = folder / f"{item['index']}_{Path(item['file']).name}"
    return target


def require_new_folder(out: Path) -> None:
    """OutputError unless `out` is missing or an empty folder (checked before evaluating too)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(
            f"{out} already exists and is not an empty folder; "
            "name a new folder for --misclassified, or remove this one"
        )


def write_misclassified(
    out: Path, items: list[dict[str, Any]], images: torch.Tensor
) -> dict[str, int]:
    """Each of `items` (Evaluation.misclassified rows) into out/<true>__as__<predicted>/.

    Returns the count per pair folder. `out` must be new or empty, so no earlier run's
    images mix with these.
    """
    require_new_folder(out)
    counts: dict[str, int] = {}
    taken: set[Path] = set()
    try:
        out.mkdir(parents=True, exist_ok=True)
        for item in items:
            name = pair_folder(item["true"], item["predicted"])
            folder = out / name
            folder.mkdir(parents=True, exist_ok=True)
            target = _target_name(item, taken, folder)
            taken.add(target)
            if "file" in item:
                _link_or_copy(Path(item["file"]), target)
            else:
                _write_png(images[item["index"]], target)
            counts[name] = counts.get(name, 0) + 1
    except OSError as error:
        raise OutputError(
            f"cannot write {out}: {error.strerror or error}; choose a writable folder"
        ) from None
    return counts
