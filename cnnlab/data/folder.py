"""Image folders as data sets: one sub-folder per class, or train/ and test/ each holding class folders.

Every image goes through `images.load_image`'s checks. A bad file stops loading with
one error that lists every bad file and the fix; `skip_bad=True` leaves them out
instead and records them in `Dataset.skipped`. Hidden files (names starting with a
dot) are ignored, and so are files lying directly in the root, which have no class.
Decoded folders are cached as safetensors, keyed by a hash of the file list (paths,
sizes, modification times) and the options, so a changed file means a fresh decode.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from cnnlab.data.dataset import Dataset, pick_paths, validation_indices
from cnnlab.data.images import (
    KEEP_ASPECT,
    MAX_SIDE,
    channels_error,
    header_size,
    keep_aspect_error,
    looks_grayscale,
    normalise_mode,
    open_image,
    to_tensor,
)
from cnnlab.data.paths import cache_dir
from cnnlab.errors import DataError
from cnnlab.fileio import atomic_write_bytes, require_regular_file
from cnnlab.i18n import N_, _, current_language

CACHE_VERSION = 3  # bump when decoding changes, so old caches are not reused
GRAY_SIZE, RGB_SIZE = 28, 32  # default sizes: MNIST-like for grayscale, CIFAR-like for colour
# Colour folders of at least SMALL_FOLDER training images keep their images' median side up
# to RGB_MAX_DEFAULT; smaller ones, and smaller images, take RGB_SIZE. Measured on generated
# 64x64 colour JPEG folders (bench/colour_folder.py, 4 classes, default model, 2 seeds):
# 1,200 images: 32 px 72.5/73.8, 48 px 79.0/72.8, 64 px 77.0/68.5% test accuracy; 300 images
# (all overfit): 32 px 46.0/44.3, 48 px 38.5/36.3, 64 px 34.3% (one seed).
RGB_MAX_DEFAULT = 48
SMALL_FOLDER = 1000
LARGE_FACTOR = 2  # a note when the images' median side is over this times the size chosen

Size = int | tuple[int, int]  # a square side, or (height, width)
MAX_LISTED = 20  # bad files named in one error


@dataclass(frozen=True)
class FolderOptions:
    """Everything that changes the decoded tensors (and so the cache key)."""

    image_size: Size | None = None  # None: GRAY_SIZE, or the colour default (default_rgb_size)
    channels: int | None = None  # None: 1 if every image looks grayscale, else 3
    test_fraction: float = 0.2  # held out when there is no test/ folder
    seed: int = 0
    skip_bad: bool = False
    background: int = 255  # gray level that transparent pixels are composited onto
    keep_aspect: str = "stretch"  # stretch, pad or crop to a size of another aspect (fit_image)


@dataclass(repr=False)  # Dataset's one-line repr: the generated one printed every tensor and path
class FolderDataset(Dataset):
    """A Dataset read from an image folder, with what its files' own sizes say."""

    median_side: int = 0  # median over the files of each image's shorter side, in pixels
    notes: list[str] = field(default_factory=list)  # e.g. "images much larger than the size"


def folder_notes(ds: Dataset) -> list[str]:
    """What loading a folder has to say (nothing for other data sets)."""
    return list(ds.notes) if isinstance(ds, FolderDataset) else []


def default_rgb_size(median_side: int, images: int) -> int:
    """The colour size when none is given: RGB_SIZE below SMALL_FOLDER training images (a
    larger input overfits them more), else the images' median side within RGB_SIZE..RGB_MAX_DEFAULT."""
    if images < SMALL_FOLDER:
        return RGB_SIZE
    return max(RGB_SIZE, min(RGB_MAX_DEFAULT, median_side))


def _sizes(options: FolderOptions, median_side: int, images: int) -> tuple[Size, Size]:
    """(grayscale size, colour size) the images are decoded at."""
    if options.image_size is not None:
        return options.image_size, options.image_size
    return GRAY_SIZE, default_rgb_size(median_side, images)


def median_side(files: list[tuple[Path, int]]) -> int:
    """Median of the files' shorter sides, from their headers only (unreadable files skipped)."""
    sides = []
    for path, _label in files:
        with contextlib.suppress(DataError, OSError, ValueError):
            sides.append(min(header_size(path)))
    return round(statistics.median(sides)) if sides else 0


def size_note(side: int, shape: tuple[int, int, int], given: bool) -> str | None:
    """A note when the images (median shorter side `side`) are far larger than (C, H, W) `shape`."""
    _channels, height, width = shape
    if side <= LARGE_FACTOR * max(height, width):
        return None
    note = (
        N_(
            "the images are much larger (median shorter side {side} px) than the {size} they are "
            "resized to as asked: fine detail is lost; --image-size {larger} keeps more of it, at "
            "more compute per image"
        )
        if given
        else N_(
            "the images are much larger (median shorter side {side} px) than the {size} they are "
            "resized to by default: fine detail is lost; --image-size {larger} keeps more of it, "
            "at more compute per image"
        )
    )
    larger = min(side, 4 * max(height, width))
    return _(note).format(side=side, size=f"{height}x{width}", larger=larger)


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not _is_hidden(p, folder))


def scan(root: Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]] | None]:
    """(classes, train files with labels, test files with labels or None) for a folder layout."""
    if not root.is_dir():
        raise DataError(
            _("{root}: not a folder; expected {root}/<class>/<image files>").format(root=root)
        )
    train_root = root / "train" if (root / "train").is_dir() else root
    test_root = (
        next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
        if train_root != root
        else None
    )
    classes = [p.name for p in _class_folders(train_root)]
    if len(classes) < 2:
        raise DataError(
            _(
                "{root}: found {count} class folder(s); expected one sub-folder per class "
                "(at least 2), e.g. {root}/cat/1.png and {root}/dog/2.jpg"
            ).format(root=train_root, count=len(classes))
        )
    train = _labelled_files(train_root, classes)
    test = None
    if test_root is not None:
        extra = [p.name for p in _class_folders(test_root) if p.name not in classes]
        if extra:
            raise DataError(
                _(
                    "{test_root}: class folder(s) {names} have no match in {train_root}; "
                    "the test classes must be among the train classes"
                ).format(test_root=test_root, names=", ".join(extra), train_root=train_root)
            )
        test = _labelled_files(test_root, classes, allow_empty=True)
    return classes, train, test


def _labelled_files(
    root: Path, classes: list[str], allow_empty: bool = False
) -> list[tuple[Path, int]]:
    out = []
    for label, name in enumerate(classes):
        folder = root / name
        files = _files(folder) if folder.is_dir() else []
        if not files and not allow_empty:
            raise DataError(
                _("{folder}: class folder has no files; add images or remove the folder").format(
                    folder=folder
                )
            )
        out += [(f, label) for f in files]
    return out


def cache_key(files: list[tuple[Path, int]], root: Path, options: FolderOptions) -> str:
    """Hash of the root, relative paths, labels, sizes, mtimes and options."""
    entries = []
    for path, label in files:
        st = path.stat()
        entries.append([str(path.relative_to(root)), label, st.st_size, st.st_mtime_ns])
    blob = json.dumps(
        {"v": CACHE_VERSION, "root": str(root), "files": entries, "options": asdict(options)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


def _decode(
    path: Path, options: FolderOptions, sizes: tuple[Size, Size]
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(grayscale version or None, colour version or None) of one image, at the final size."""
    image = normalise_mode(open_image(path), background=options.background)
    (size_l, size_rgb), aspect = sizes, options.keep_aspect
    if options.channels == 1:
        return to_tensor(image, 1, size_l, aspect), None
    if options.channels == 3:
        return None, to_tensor(image, 3, size_rgb, aspect)
    # Undecided: keep the colour version, plus a gray one if this image looks gray.
    gray = to_tensor(image, 1, size_l, aspect) if looks_grayscale(image) else None
    return gray, to_tensor(image, 3, size_rgb, aspect)


def _decode_all(
    files: list[tuple[Path, int]], options: FolderOptions, sizes: tuple[Size, Size]
) -> tuple[list, list[str]]:
    """Decoded pairs per file (None for a bad file) and the error messages for bad files."""

    def work(item: tuple[Path, int]):
        try:
            return _decode(item[0], options, sizes), None
        except DataError as error:
            return None, str(error)

    # Pillow releases the GIL while decoding, so threads use both cores.
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        results = list(pool.map(work, files))
    return [r for r, _ in results], [e for _, e in results if e is not None]


def _stack(
    decoded: list, files: list[tuple[Path, int]], channels: int, where: Path
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    keep = [
        (pair, label, str(path))
        for pair, (path, label) in zip(decoded, files, strict=True)
        if pair is not None
    ]
    if not keep:
        raise DataError(
            _("{where}: no usable images left after leaving out the bad files").format(where=where)
        )
    pick = 0 if channels == 1 else 1
    images = torch.stack([pair[pick] for pair, _, _ in keep])  # (N, C, H, W) uint8
    labels = torch.tensor([label for _, label, _ in keep], dtype=torch.int64)
    return images, labels, [path for _, _, path in keep]


Stacked = tuple[torch.Tensor, torch.Tensor, list[str]]  # images, labels, file paths


def _hold_out(train: Stacked, fraction: float, seed: int) -> tuple[Stacked, Stacked]:
    """(train, test) with `fraction` of each class held out as test, files kept with images."""
    images, labels, paths = train
    train_idx, test_idx = validation_indices(labels, fraction, seed)
    return (
        (images[train_idx], labels[train_idx], pick_paths(paths, train_idx)),
        (images[test_idx], labels[test_idx], pick_paths(paths, test_idx)),
    )


def _bad_files_error(root: Path, errors: list[str]) -> DataError:
    listed = "\n".join(f"  {e}" for e in errors[:MAX_LISTED])
    more = (
        "\n  " + _("... and {count} more").format(count=len(errors) - MAX_LISTED)
        if len(errors) > MAX_LISTED
        else ""
    )
    return DataError(
        _("{root}: {count} file(s) cannot be used as images:").format(root=root, count=len(errors))
        + f"\n{listed}{more}\n"
        + _("Fix or remove them, or load with skip_bad=True (CLI: --skip-bad) to leave them out.")
    )


def _read_cache(path: Path) -> FolderDataset | None:
    try:
        require_regular_file(path)  # load_file opens by path: a FIFO there would block it
        tensors = load_file(path)
        with safe_open(path, framework="pt") as handle:
            meta = handle.metadata() or {}
        skipped = json.loads(meta["skipped"])
        if skipped and meta.get("language", "en") != current_language():
            return None  # the bad files' reasons were written in another language: decode again
        return FolderDataset(
            name=meta["name"],
            classes=json.loads(meta["classes"]),
            train_images=tensors["train_images"],
            train_labels=tensors["train_labels"],
            test_images=tensors["test_images"],
            test_labels=tensors["test_labels"],
            flip_ok=meta["flip_ok"] == "1",
            source=meta["source"],
            skipped=skipped,
            train_paths=json.loads(meta["train_paths"]),
            test_paths=json.loads(meta["test_paths"]),
            median_side=int(meta["median_side"]),
        )
    except (OSError, SafetensorError, KeyError, ValueError):
        return None  # a missing or damaged cache just means decoding again


def _write_cache(path: Path, ds: FolderDataset) -> None:
    tensors = {
        "train_images": ds.train_images,
        "train_labels": ds.train_labels,
        "test_images": ds.test_images,
        "test_labels": ds.test_labels,
    }
    meta = {
        "name": ds.name,
        "classes": json.dumps(ds.classes),
        "flip_ok": "1" if ds.flip_ok else "0",
        "source": ds.source,
        "skipped": json.dumps(ds.skipped),
        "language": current_language(),  # of the skipped files' reasons (translated when raised)
        "train_paths": json.dumps(ds.train_paths),
        "test_paths": json.dumps(ds.test_paths),
        "median_side": str(ds.median_side),
    }
    # Atomic: readers see the old cache or the whole new one. An unwritable cache only costs
    # a decode next time.
    with contextlib.suppress(OSError):
        atomic_write_bytes(path, save(tensors, metadata=meta))


def _checked_size(image_size: Size | None) -> Size | None:
    """A size as given (int: square; (H, W)) after checking it; (N, N) becomes N."""
    if image_size is None:
        return None
    sides = (image_size,) if isinstance(image_size, int) else tuple(image_size)
    if len(sides) not in (1, 2) or not all(type(v) is int and 1 <= v <= MAX_SIDE for v in sides):
        raise DataError(
            _(
                "image size {size} must be N or (height, width), each side 1 to {most} pixels"
            ).format(size=image_size, most=MAX_SIDE)
        )
    return sides[0] if len(set(sides)) == 1 else (sides[0], sides[1])


def _decode_folder(
    root: Path,
    classes: list[str],
    files: tuple[list[tuple[Path, int]], list[tuple[Path, int]] | None],
    options: FolderOptions,
) -> FolderDataset:
    """Every file decoded at the sizes the options (or the images' median side) ask for."""
    train_files, test_files = files
    side = median_side(train_files + (test_files or []))
    sizes = _sizes(options, side, len(train_files))
    decoded, errors = _decode_all(train_files + (test_files or []), options, sizes)
    if errors and not options.skip_bad:
        raise _bad_files_error(root, errors)
    channels = options.channels
    if channels is None:  # decided by the data: all grayscale-looking -> 1 channel
        channels = 1 if all(p[0] is not None for p in decoded if p is not None) else 3
    n_train = len(train_files)
    train = _stack(decoded[:n_train], train_files, channels, root)
    if test_files:
        test = _stack(decoded[n_train:], test_files, channels, root)
    else:
        train, test = _hold_out(train, options.test_fraction, options.seed)
    (train_x, train_y, train_p), (test_x, test_y, test_p) = train, test
    empty = [classes[c] for c in range(len(classes)) if not (train_y == c).any()]
    if empty:
        raise DataError(
            _("{root}: no usable training images left for class(es) {names}").format(
                root=root, names=", ".join(empty)
            )
        )
    return FolderDataset(
        f"folder:{root}",
        classes,
        train_x,
        train_y,
        test_x,
        test_y,
        source=str(root),
        skipped=errors,
        train_paths=train_p,
        test_paths=test_p,
        median_side=side,
    )


def load_folder(
    path: str | Path,
    image_size: Size | None = None,
    channels: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
    flip_ok: bool = False,
    background: int = 255,
    use_cache: bool = True,
    keep_aspect: str = "stretch",
) -> FolderDataset:
    """An image folder as a Dataset (decoded once, then read from the safetensors cache).

    image_size: N (square) or (H, W); None: 28x28 for grayscale; colour: 32x32, or from
    SMALL_FOLDER training images on, the images' median side within 32..48. keep_aspect:
    stretch, pad or crop (images.fit_image). The returned data set's `notes` say when the
    images are much larger than the size they are resized to.
    """
    root = Path(path).expanduser().resolve()
    if channels not in (None, 1, 3):
        raise DataError(channels_error(channels))
    if keep_aspect not in KEEP_ASPECT:
        raise DataError(keep_aspect_error(keep_aspect))
    size = _checked_size(image_size)
    options = FolderOptions(size, channels, test_fraction, seed, skip_bad, background, keep_aspect)
    classes, train_files, test_files = scan(root)
    all_files = train_files + (test_files or [])
    cache_path = cache_dir() / "folders" / f"{cache_key(all_files, root, options)}.safetensors"
    ds = _read_cache(cache_path) if use_cache and cache_path.is_file() else None
    if ds is None:
        ds = _decode_folder(root, classes, (train_files, test_files), options)
        if use_cache:
            _write_cache(cache_path, ds)
    ds.flip_ok = flip_ok
    note = size_note(ds.median_side, ds.image_shape, given=size is not None)
    ds.notes = [note] if note else []
    return ds
