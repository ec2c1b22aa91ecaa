"""The wrongly classified images of an evaluation, sorted into `<true>__as__<predicted>/` folders.

Folder data: a symlink to each original file (a copy where links cannot be made), so the
user opens, fixes or deletes the real file. Built-in data sets have no files: each image is
written as a PNG named by its index in the split. Every file is created exclusively under a
name still free, so nothing already there (the user's files, behind a link) is written through.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image

from cnnlab.errors import OutputError
from cnnlab.i18n import _

SEPARATOR = "__as__"  # <true>__as__<predicted>
_KEPT = re.compile(r"[\w.+-]")  # kept as they are in folder names; every other character as %XX


def safe_folder_name(name: str) -> str:
    """A class name as one path component, one name to one folder: 'a b' -> 'a%20b', 'a-b' stays.

    Other characters, '%' itself, a leading dot and runs of '_' become %XX (UTF-8), so two
    classes never share a folder and no name holds the separator '__as__'.
    """
    cleaned = "".join(ch if _KEPT.match(ch) else _percent(ch) for ch in name)
    cleaned = re.sub(r"__+", lambda run: "%5F" * len(run.group()), cleaned)
    if cleaned.startswith("."):
        cleaned = "%2E" + cleaned[1:]
    return cleaned or "%"  # '%' alone is no other name's encoding


def _percent(ch: str) -> str:
    return "".join(f"%{byte:02X}" for byte in ch.encode("utf-8", "surrogatepass"))


def pair_folder(true: str, predicted: str) -> str:
    """'cat__as__dog': the folder of images of `true` taken for `predicted`."""
    return f"{safe_folder_name(true)}{SEPARATOR}{safe_folder_name(predicted)}"


def _link_or_copy(source: Path, target: Path) -> None:
    """A symlink to `source` (absolute); a copy where the file system refuses links.

    Both create `target` exclusively: FileExistsError when the name is taken (by a file or a
    link), never a write through it into what it points at.
    """
    try:
        os.symlink(source.resolve(), target)
    except FileExistsError:
        raise
    except (OSError, NotImplementedError):
        with open(source, "rb") as src, _created(target) as dst:
            shutil.copyfileobj(src, dst)
        shutil.copystat(source, target, follow_symlinks=False)


@contextlib.contextmanager
def _created(target: Path) -> Iterator[BinaryIO]:
    """`target` opened as a new file ('x': FileExistsError if taken); removed again on failure."""
    with open(target, "xb") as f:
        try:
            yield f
        except BaseException:
            target.unlink(missing_ok=True)
            raise


def _write_png(image: torch.Tensor, target: Path) -> None:
    """A (C, H, W) uint8 image as a new PNG (gray for one channel, RGB for three)."""
    pixels = image.cpu().numpy()
    array = pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0))
    with _created(target) as f:
        Image.fromarray(array, mode="L" if array.ndim == 2 else "RGB").save(f, format="PNG")


def _names(item: dict[str, Any]) -> Iterator[str]:
    """File names to try in turn: the original name, INDEX_name, INDEX_2_name, ...; or INDEX.png, ..."""
    index = item["index"]
    if "file" in item:
        name = Path(item["file"]).name
        yield name  # two files of one name in different sub-folders of a class take the next
        yield f"{index}_{name}"
        yield from (f"{index}_{n}_{name}" for n in itertools.count(2))
    else:
        yield f"{index}.png"
        yield from (f"{index}_{n}.png" for n in itertools.count(2))


def _place(item: dict[str, Any], images: torch.Tensor, folder: Path) -> Path:
    """Write `item` into `folder` under the first free name of `_names` (created exclusively)."""
    for name in _names(item):
        target = folder / name
        try:
            if "file" in item:
                _link_or_copy(Path(item["file"]), target)
            else:
                _write_png(images[item["index"]], target)
            return target
        except FileExistsError:
            continue  # taken, by this run's earlier file or by anything else: never overwritten
    raise AssertionError("unreachable: _names never ends")


def require_new_folder(out: Path) -> None:
    """OutputError unless `out` is missing or an empty folder (checked before evaluating too)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(
            _(
                "{out} already exists and is not an empty folder; "
                "name a new folder for --misclassified, or remove this one"
            ).format(out=out)
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
    try:
        out.mkdir(parents=True, exist_ok=True)
        for item in items:
            name = pair_folder(item["true"], item["predicted"])
            folder = out / name
            folder.mkdir(parents=True, exist_ok=True)
            _place(item, images, folder)
            counts[name] = counts.get(name, 0) + 1  # only files really written are counted
    except OSError as error:
        raise OutputError(
            _("cannot write {out}: {error}; choose a writable folder").format(
                out=out, error=error.strerror or error
            )
        ) from None
    return counts
