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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from cnnlab.data.dataset import Dataset, pick_paths, validation_indices
from cnnlab.data.images import looks_grayscale, normalise_mode, open_image, to_tensor
from cnnlab.data.paths import cache_dir
from cnnlab.errors import DataError
from cnnlab.fileio import atomic_write_bytes, require_regular_file

CACHE_VERSION = 2  # bump when decoding changes, so old caches are not reused
GRAY_SIZE, RGB_SIZE = 28, 32  # default sizes: MNIST-like for grayscale, CIFAR-like for colour
MAX_LISTED = 20  # bad files named in one error


@dataclass(frozen=True)
class FolderOptions:
    """Everything that changes the decoded tensors (and so the cache key)."""

    image_size: int | None = None
    channels: int | None = None  # None: 1 if every image looks grayscale, else 3
    test_fraction: float = 0.2  # held out when there is no test/ folder
    seed: int = 0
    skip_bad: bool = False
    background: int = 255  # gray level that transparent pixels are composited onto


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not _is_hidden(p, folder))


def scan(root: Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]] | None]:
    """(classes, train files with labels, test files with labels or None) for a folder layout."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; expected {root}/<class>/<image files>")
    train_root = root / "train" if (root / "train").is_dir() else root
    test_root = (
        next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
        if train_root != root
        else None
    )
    classes = [p.name for p in _class_folders(train_root)]
    if len(classes) < 2:
        raise DataError(
            f"{train_root}: found {len(classes)} class folder(s); expected one sub-folder per class "
            f"(at least 2), e.g. {train_root}/cat/1.png and {train_root}/dog/2.jpg"
        )
    train = _labelled_files(train_root, classes)
    test = None
    if test_root is not None:
        extra = [p.name for p in _class_folders(test_root) if p.name not in classes]
        if extra:
            raise DataError(
                f"{test_root}: class folder(s) {', '.join(extra)} have no match in {train_root}; "
                "the test classes must be among the train classes"
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
            raise DataError(f"{folder}: class folder has no files; add images or remove the folder")
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


def _decode(path: Path, options: FolderOptions) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(grayscale version or None, colour version or None) of one image, at the final size."""
    image = normalise_mode(open_image(path), background=options.background)
    size_l, size_rgb = options.image_size or GRAY_SIZE, options.image_size or RGB_SIZE
    if options.channels == 1:
        return to_tensor(image, 1, size_l), None
    if options.channels == 3:
        return None, to_tensor(image, 3, size_rgb)
    # Undecided: keep the colour version, plus a gray one if this image looks gray.
    gray = to_tensor(image, 1, size_l) if looks_grayscale(image) else None
    return gray, to_tensor(image, 3, size_rgb)


def _decode_all(files: list[tuple[Path, int]], options: FolderOptions) -> tuple[list, list[str]]:
    """Decoded pairs per file (None for a bad file) and the error messages for bad files."""

    def work(item: tuple[Path, int]):
        try:
            return _decode(item[0], options), None
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
        raise DataError(f"{where}: no usable images left after leaving out the bad files")
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
    more = f"\n  ... and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
    return DataError(
        f"{root}: {len(errors)} file(s) cannot be used as images:\n{listed}{more}\n"
        "Fix or remove them, or load with skip_bad=True (CLI: --skip-bad) to leave them out."
    )


def _read_cache(path: Path) -> Dataset | None:
    try:
        require_regular_file(path)  # load_file opens by path: a FIFO there would block it
        tensors = load_file(path)
        with safe_open(path, framework="pt") as handle:
            meta = handle.metadata() or {}
        return Dataset(
            name=meta["name"],
            classes=json.loads(meta["classes"]),
            train_images=tensors["train_images"],
            train_labels=tensors["train_labels"],
            test_images=tensors["test_images"],
            test_labels=tensors["test_labels"],
            flip_ok=meta["flip_ok"] == "1",
            source=meta["source"],
            skipped=json.loads(meta["skipped"]),
            train_paths=json.loads(meta["train_paths"]),
            test_paths=json.loads(meta["test_paths"]),
        )
    except (OSError, SafetensorError, KeyError, ValueError):
        return None  # a missing or damaged cache just means decoding again


def _write_cache(path: Path, ds: Dataset) -> None:
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
        "train_paths": json.dumps(ds.train_paths),
        "test_paths": json.dumps(ds.test_paths),
    }
    # Atomic: readers see the old cache or the whole new one. An unwritable cache only costs
    # a decode next time.
    with contextlib.suppress(OSError):
        atomic_write_bytes(path, save(tensors, metadata=meta))


def load_folder(
    path: str | Path,
    image_size: int | None = None,
    channels: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
    flip_ok: bool = False,
    background: int = 255,
    use_cache: bool = True,
) -> Dataset:
    """An image folder as a Dataset (decoded once, then read from the safetensors cache)."""
    root = Path(path).expanduser().resolve()
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), not {channels}")
    if image_size is not None and not 1 <= image_size <= 1024:
        raise DataError(f"image size {image_size} must lie between 1 and 1024 pixels")
    options = FolderOptions(image_size, channels, test_fraction, seed, skip_bad, background)
    classes, train_files, test_files = scan(root)
    all_files = train_files + (test_files or [])
    cache_path = cache_dir() / "folders" / f"{cache_key(all_files, root, options)}.safetensors"
    if use_cache and cache_path.is_file():
        cached = _read_cache(cache_path)
        if cached is not None:
            cached.flip_ok = flip_ok
            return cached
    decoded, errors = _decode_all(all_files, options)
    if errors and not skip_bad:
        raise _bad_files_error(root, errors)
    if channels is None:  # decided by the data: all grayscale-looking -> 1 channel
        channels = 1 if all(p[0] is not None for p in decoded if p is not None) else 3
    n_train = len(train_files)
    train = _stack(decoded[:n_train], train_files, channels, root)
    if test_files:
        test = _stack(decoded[n_train:], test_files, channels, root)
    else:
        train, test = _hold_out(train, test_fraction, seed)
    (train_x, train_y, train_p), (test_x, test_y, test_p) = train, test
    empty = [classes[c] for c in range(len(classes)) if not (train_y == c).any()]
    if empty:
        raise DataError(f"{root}: no usable training images left for class(es) {', '.join(empty)}")
    ds = Dataset(
        f"folder:{root}",
        classes,
        train_x,
        train_y,
        test_x,
        test_y,
        flip_ok=flip_ok,
        source=str(root),
        skipped=errors,
        train_paths=train_p,
        test_paths=test_p,
    )
    if use_cache:
        _write_cache(cache_path, ds)
    return ds
