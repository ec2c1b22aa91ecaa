"""Image folders as data sets: one sub-folder per class, or train/ and test/ each holding class folders.

Every image goes through `images.load_image`'s checks. A bad file stops loading with
one error that lists every bad file and the fix; `skip_bad=True` leaves them out
instead and records them in `Dataset.skipped`. Hidden files (names starting with a
dot) are ignored, and so are files lying directly in the root, which have no class.
Decoded folders are cached in the user cache (cache_dir()/folders), keyed by a hash of the
file list (paths, sizes, modification times) and the options, so a changed file means a fresh
decode. The cache is one uint8 (N, C, H, W) array on disk (foldercache.py) that the data set's
image tensors are memory-mapped from: training copies out only the batches it indexes, so a
folder larger than memory trains (100,000 colour images at 128 px are 4.9 GB). Decoding
streams the images into that file CHUNK_FILES at a time, each straight to its row, so it never
holds the whole folder either; what it needs is room on the cache's disk, checked first.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from cnnlab.data import foldercache
from cnnlab.data.dataset import (
    Dataset,
    channel_histograms,
    stats_from_histograms,
    validation_indices,
)
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
from cnnlab.i18n import N_, _, carrying_language, current_language

CACHE_VERSION = 4  # bump when decoding or the cache file changes, so old caches are not reused
CACHE_SUFFIX = ".u8map"  # the folder cache file (foldercache.py), in cache_dir()/folders
GRAY_SIZE, RGB_SIZE = 28, 32  # default sizes: MNIST-like for grayscale, CIFAR-like for colour
# Colour folders of at least SMALL_FOLDER training images keep their images' median side up
# to RGB_MAX_DEFAULT; smaller ones, and smaller images, take RGB_SIZE. Measured on generated
# 64x64 colour JPEG folders (bench/colour_folder.py, 4 classes, default model, 2 seeds):
# 1,200 images: 32 px 72.5/73.8, 48 px 79.0/72.8, 64 px 77.0/68.5% test accuracy; 300 images
# (all overfit): 32 px 46.0/44.3, 48 px 38.5/36.3, 64 px 34.3% (one seed).
RGB_MAX_DEFAULT = 48
SMALL_FOLDER = 1000
LARGE_FACTOR = 2  # a note when the images' median side is over this times the size chosen
# `looks_colour` opens at most this many files, spread over the folder: a photo folder answers
# at its first file, and a large grey folder is not decoded twice before training.
PEEK_FILES = 200

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


def looks_colour(path: str | Path) -> bool:
    """Whether a folder's images are colour as `load_folder` decides it (any image not grey),
    from at most PEEK_FILES of its files; False where it cannot tell (loading says why)."""
    try:
        _classes, train, test = scan(Path(path).expanduser().resolve())
    except (DataError, OSError, ValueError):
        return False
    files = train + (test or [])
    step = max(1, len(files) // PEEK_FILES)
    for file, _label in files[::step][:PEEK_FILES]:
        try:
            image = normalise_mode(open_image(file))
        except (DataError, OSError):  # a bad file: the loader names it, or skips it
            continue
        if not looks_grayscale(image):
            return True
    return False


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


CHUNK_FILES = 256  # files decoded at a time: the most decoded images ever held in memory
Files = list[tuple[Path, int]]


def _shape(channels: int, size: Size) -> tuple[int, int, int]:
    """(C, H, W) of an image decoded at `size` (N: square; (H, W))."""
    height, width = (size, size) if isinstance(size, int) else size
    return channels, height, width


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


def _cache_order(
    kept_train: list[int], kept_test: list[int] | None, labels: list[int], options: FolderOptions
) -> tuple[list[int], list[int]]:
    """(train, test) file indices in cache order: the usable files in file order, and without a
    test/ folder `test_fraction` of each class held out by `seed` (`validation_indices`)."""
    if kept_test is not None:
        return kept_train, kept_test
    kept_labels = torch.tensor([labels[i] for i in kept_train], dtype=torch.int64)
    train_idx, test_idx = validation_indices(kept_labels, options.test_fraction, options.seed)
    return [kept_train[j] for j in train_idx.tolist()], [kept_train[j] for j in test_idx.tolist()]


def _decode_into(
    files: Files, options: FolderOptions, sizes: tuple[Size, Size], rows: list[int], sinks: dict
) -> list[str | None]:
    """Decode every file, CHUNK_FILES at a time, into row rows[i] of the staging file of each
    channel count in `sinks` (1, 3 or both); return each file's error (None for a good one).
    Undecided channels: the gray staging file is dropped at the first image that is not gray."""

    def work(item: tuple[Path, int]):
        try:
            return _decode(item[0], options, sizes), None
        except DataError as error:
            return None, str(error)

    errors: list[str | None] = []
    # Pillow releases the GIL while decoding, so threads use both cores.
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        for start in range(0, len(files), CHUNK_FILES):
            # each file's error in the command's language (a pool thread has no --lang)
            results = pool.map(carrying_language(work), files[start : start + CHUNK_FILES])
            for i, (pair, error) in enumerate(results, start):
                errors.append(error)
                if pair is None:
                    continue
                gray, colour = pair
                if 1 in sinks and gray is None:  # colour seen: the folder is not grayscale
                    sinks.pop(1).remove()
                elif 1 in sinks:
                    sinks[1].write_row(rows[i], gray)
                if 3 in sinks:
                    sinks[3].write_row(rows[i], colour)
    return errors


def _check_disk(root: Path, folder: Path, files: Files, shapes: list[tuple[int, int, int]]) -> None:
    """Refuse, before decoding, a folder whose decoded images cannot fit on the cache's disk."""
    images = len(files) * sum(c * h * w for c, h, w in shapes)
    header = sum(len(os.fsencode(path)) + 32 for path, _ in files) + 65536  # paths, labels
    need, free = images + header, foldercache.free_bytes(folder)
    if free is None or need <= free:
        return
    shown = " and ".join(f"{c}x{h}x{w}" for c, h, w in shapes)
    both = _(" (gray and colour until the images say which)") if len(shapes) > 1 else ""
    raise DataError(
        _(
            "{root}: {count} images decoded at {shown}{both} take {need} GB in the folder cache "
            "in {folder}, but only {free} GB are free on that disk (training reads the cache "
            "through a memory map, so memory is not the limit): free some space, set "
            "XDG_CACHE_HOME to a folder on a larger disk, or use a smaller --image-size"
        ).format(
            root=root,
            count=len(files),
            shown=shown,
            both=both,
            need=f"{need / 1e9:.2f}",
            folder=folder,
            free=f"{free / 1e9:.2f}",
        )
    )


def _planned_rows(
    n_train: int, test_idx: list[int] | None, labels: list[int], options: FolderOptions
) -> list[int]:
    """The cache row of each file if every file is usable (`_cache_order` of all of them)."""
    train, test = _cache_order(list(range(n_train)), test_idx, labels, options)
    rows = [0] * len(labels)
    for row, i in enumerate(train + test):
        rows[i] = row
    return rows


def _usable_order(
    root: Path,
    classes: list[str],
    errors: list[str | None],
    split: tuple[int, list[int] | None],
    labels: list[int],
    options: FolderOptions,
) -> tuple[list[int], list[int]]:
    """`_cache_order` of the files that decoded; refused when a split or class is left empty."""
    n_train, test_idx = split
    kept_train = [i for i in range(n_train) if errors[i] is None]
    kept_test = None if test_idx is None else [i for i in test_idx if errors[i] is None]
    if not kept_train or (kept_test is not None and not kept_test):
        raise DataError(
            _("{where}: no usable images left after leaving out the bad files").format(where=root)
        )
    train, test = _cache_order(kept_train, kept_test, labels, options)
    present = {labels[i] for i in train}
    empty = [classes[c] for c in range(len(classes)) if c not in present]
    if empty:
        raise DataError(
            _("{root}: no usable training images left for class(es) {names}").format(
                root=root, names=", ".join(empty)
            )
        )
    return train, test


def _finish(
    staging: foldercache.Staging,
    shape: tuple[int, int, int],
    order: tuple[list[int], list[int]],
    files: Files,
    about: dict,
) -> None:
    """Write the header (labels, paths, the train images' mean and std, and `about`)."""
    train, test = order
    hist = torch.zeros(shape[0], 256, dtype=torch.int64)
    for chunk in foldercache.row_chunks(staging, shape, len(train)):
        hist += channel_histograms(chunk)
    mean, std = stats_from_histograms(hist, len(train) * shape[1] * shape[2])
    header = {
        "version": CACHE_VERSION,
        "shape": list(shape),
        "train": len(train),
        "test": len(test),
        "train_labels": [files[i][1] for i in train],
        "test_labels": [files[i][1] for i in test],
        "train_paths": [str(files[i][0]) for i in train],
        "test_paths": [str(files[i][0]) for i in test],
        "mean": list(mean),
        "std": list(std),
        **about,
    }
    staging.finish(len(train) + len(test), header)


def _disk_full(root: Path, folder: Path) -> DataError:
    return DataError(
        _(
            "{root}: the disk holding the folder cache ({folder}) filled up while the decoded "
            "images were written: free some space, set XDG_CACHE_HOME to a folder on a larger "
            "disk, or use a smaller --image-size"
        ).format(root=root, folder=folder)
    )


def _build_cache(
    root: Path,
    classes: list[str],
    files: tuple[Files, Files | None],
    options: FolderOptions,
    folder: Path,
    name: str,
) -> foldercache.Staging:
    """Decode every file into a finished (not yet published) cache file in `folder`.

    The rows are planned before decoding (every file usable, the hold-out drawn from the
    labels), so each image goes straight to its row; only when bad files are left out does a
    second pass gather the rows into their final order.
    """
    train_files, test_files = files
    all_files = train_files + (test_files or [])
    side = median_side(all_files)
    sizes = _sizes(options, side, len(train_files))
    labels = [label for _, label in all_files]
    split = (
        len(train_files),
        list(range(len(train_files), len(all_files))) if test_files else None,
    )
    rows = _planned_rows(*split, labels, options)
    shapes = {1: _shape(1, sizes[0]), 3: _shape(3, sizes[1])}
    wanted = [options.channels] if options.channels else [1, 3]
    _check_disk(root, folder, all_files, [shapes[c] for c in wanted])
    made: list[foldercache.Staging] = []
    try:
        made += [foldercache.Staging(folder, name, math.prod(shapes[c])) for c in wanted]
        sinks = dict(zip(wanted, made, strict=True))
        errors = _decode_into(all_files, options, sizes, rows, sinks)
        bad = [e for e in errors if e is not None]
        if bad and not options.skip_bad:
            raise _bad_files_error(root, bad)
        channels = options.channels or (1 if 1 in sinks else 3)  # every image gray: 1 channel
        staging = sinks[channels]
        train, test = _usable_order(root, classes, errors, split, labels, options)
        order = [rows[i] for i in train + test]
        if order != list(range(len(order))):  # bad files left out: gather into a new file
            made.append(foldercache.Staging(folder, name, staging.row_bytes))
            foldercache.gather(staging, order, made[-1])
            staging = made[-1]
        about = {"classes": classes, "name": f"folder:{root}", "source": str(root)}
        # the bad files' reasons are in the language of this decoding (translated when raised)
        about |= {"skipped": bad, "language": current_language(), "median_side": side}
        _finish(staging, shapes[channels], (train, test), all_files, about)
    except BaseException as error:
        for done in made:
            done.remove()
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise _disk_full(root, folder) from None
        raise
    for done in made:
        if done is not staging:
            done.remove()
    return staging


def _dataset(mapped: tuple[dict, torch.Tensor] | None) -> FolderDataset | None:
    """The data set of a mapped cache file (`foldercache.map_cache`); None when its header is
    not one this version wrote (a damaged cache: decoded again)."""
    if mapped is None:
        return None
    header, images = mapped
    if header.get("skipped") and header.get("language", "en") != current_language():
        return None  # the bad files' reasons were written in another language: decode again
    try:
        n_train, classes = header["train"], [str(c) for c in header["classes"]]
        train_y = torch.tensor(header["train_labels"], dtype=torch.int64)
        test_y = torch.tensor(header["test_labels"], dtype=torch.int64)
        labels = torch.cat([train_y, test_y])
        channels = images.shape[1]
        if (
            train_y.shape != (n_train,)
            or labels.shape != (len(images),)
            or int(labels.min()) < 0
            or int(labels.max()) >= len(classes)
            or len(header["train_paths"]) != n_train
            or len(header["test_paths"]) != len(test_y)
            or len(header["mean"]) != channels
            or len(header["std"]) != channels
        ):
            return None
        return FolderDataset(
            name=str(header["name"]),
            classes=classes,
            train_images=images[:n_train],
            train_labels=train_y,
            test_images=images[n_train:],
            test_labels=test_y,
            mean=tuple(float(v) for v in header["mean"]),
            std=tuple(float(v) for v in header["std"]),
            source=str(header["source"]),
            skipped=[str(s) for s in header["skipped"]],
            train_paths=[str(p) for p in header["train_paths"]],
            test_paths=[str(p) for p in header["test_paths"]],
            median_side=int(header["median_side"]),
        )
    except (KeyError, TypeError, ValueError, RuntimeError):
        return None


def _cache_folder(use_cache: bool) -> tuple[Path, bool]:
    """(where the decoded images are written, whether the file stays there as the cache): the
    user cache's folders/, else (unwritable) the temporary folder; use_cache=False or a
    temporary folder: the file is unlinked once mapped (the map keeps it until it is freed)."""
    folder = cache_dir() / "folders"
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
    if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
        return folder, use_cache
    return Path(tempfile.gettempdir()), False


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
    """An image folder as a Dataset (decoded once, then memory-mapped from the folder cache).

    image_size: N (square) or (H, W); None: 28x28 for grayscale; colour: 32x32, or from
    SMALL_FOLDER training images on, the images' median side within 32..48. keep_aspect:
    stretch, pad or crop (images.fit_image). The returned data set's `notes` say when the
    images are much larger than the size they are resized to. use_cache=False decodes afresh
    into a file that is unlinked once mapped (nothing kept).
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
    key = cache_key(all_files, root, options)
    folder, keep = _cache_folder(use_cache)
    path = folder / f"{key}{CACHE_SUFFIX}"
    ds = _dataset(foldercache.map_cache(path, CACHE_VERSION)) if keep else None
    if ds is None:  # none yet, or damaged: decode (again)
        staging = _build_cache(root, classes, (train_files, test_files), options, folder, key)
        if keep:
            try:
                staging.publish(path)  # atomic: readers see the old file or the whole new one
            except OSError:
                keep = False  # not kept: only costs a decode next time
        if not keep:
            path = staging.path
        try:
            ds = _dataset(foldercache.map_cache(path, CACHE_VERSION))
        finally:
            if not keep:
                staging.remove()  # the map keeps the file's pages until the data set is freed
        assert ds is not None, path  # the file was just written whole
    ds.flip_ok = flip_ok
    note = size_note(ds.median_side, ds.image_shape, given=size is not None)
    ds.notes = [note] if note else []
    return ds
