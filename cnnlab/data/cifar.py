"""CIFAR-10 from its binary version: records of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32).

Torch-free at import: `cnnlab datasets` lists CIFAR-10 (classes, where its files are) through
this module; numpy and torch are imported by the readers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.data.archive import safe_extract
from cnnlab.data.download import verify
from cnnlab.data.paths import download_dir, search_dirs
from cnnlab.data.remote import CIFAR10, RemoteFiles
from cnnlab.errors import DataError
from cnnlab.fileio import read_regular_bytes
from cnnlab.i18n import _

if TYPE_CHECKING:
    import torch

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
RECORD = 1 + 3 * 32 * 32  # bytes per image
PER_FILE = 10000


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One .bin file -> images (10000, 3, 32, 32) uint8 and labels (10000,) int64, strictly checked."""
    import numpy as np
    import torch

    try:
        data = np.frombuffer(read_regular_bytes(path), dtype=np.uint8)
    except OSError as error:
        raise DataError(_("{path}: cannot read ({error})").format(path=path, error=error)) from None
    if data.size != RECORD * PER_FILE:
        raise DataError(
            _(
                "{path}: {size} bytes, a CIFAR-10 batch has {expected} ({records} records of "
                "{record}); the file is truncated or not a CIFAR-10 binary batch"
            ).format(
                path=path,
                size=f"{data.size:,}",
                expected=f"{RECORD * PER_FILE:,}",
                records=PER_FILE,
                record=RECORD,
            )
        )
    records = data.reshape(PER_FILE, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CLASSES):
        i = int(np.argmax(labels >= len(CLASSES)))
        raise DataError(
            _(
                "{path}: label {label} in record {index} is outside 0..9; the file is damaged"
            ).format(path=path, label=labels[i], index=i)
        )
    images = records[:, 1:].reshape(PER_FILE, 3, 32, 32)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


def find_batches(data_dir: str | Path | None = None) -> Path | None:
    """A folder holding all six extracted .bin files, if any search folder has one."""
    for folder in search_dirs(CIFAR10.name, data_dir):
        for candidate in (folder / FOLDER, folder):
            if all((candidate / f).is_file() for f in TRAIN_FILES + TEST_FILES):
                return candidate
    return None


def fetch_batches(
    data_dir: str | Path | None = None,
    allow_download: bool = True,
    progress: bool | None = None,
    remote: RemoteFiles = CIFAR10,
) -> Path:
    """The folder of extracted .bin files: found, or extracted from a found or downloaded archive."""
    found = find_batches(data_dir)
    if found is not None:
        return found
    archive = remote.fetch(data_dir, allow_download, progress)["cifar-10-binary.tar.gz"]
    md5 = remote.files[0][1]
    if not verify(archive, md5):
        raise DataError(
            _(
                "{archive}: md5 differs from the published {md5}; this is not the official "
                "cifar-10-binary.tar.gz: delete it and download it again"
            ).format(archive=archive, md5=md5)
        )
    target = download_dir(remote.name)
    wanted = {f"{FOLDER}/{f}" for f in TRAIN_FILES + TEST_FILES + ["batches.meta.txt"]}
    safe_extract(archive, target, only=wanted)
    return target / FOLDER


def load_cifar10(
    data_dir: str | Path | None = None,
    allow_download: bool = True,
    progress: bool | None = None,
    remote: RemoteFiles = CIFAR10,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """(train_x, train_y, test_x, test_y, where) for CIFAR-10; images (N, 3, 32, 32) uint8."""
    import torch

    folder = fetch_batches(data_dir, allow_download, progress, remote)
    train = [read_batch(folder / f) for f in TRAIN_FILES]
    test = [read_batch(folder / f) for f in TEST_FILES]
    return (
        torch.cat([x for x, _ in train]),
        torch.cat([y for _, y in train]),
        torch.cat([x for x, _ in test]),
        torch.cat([y for _, y in test]),
        str(folder),
    )
