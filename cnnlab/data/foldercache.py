"""The folder cache file: a folder's decoded images as one uint8 (N, C, H, W) array on disk,
memory-mapped when read, so a folder larger than memory still trains (batches are copied out).

Layout: the images' bytes from offset 0 (the train rows, then the test rows), then a UTF-8
JSON header (labels, file paths, class names, channel statistics, ...), then 16 bytes: the
header's length (8 bytes, little-endian) and MAGIC. The images come first so that the map
starts at offset 0 (page aligned) and a writer can stream rows in before it knows the header
(which files were bad, how many channels the folder has). A reader checks the magic, the
version and that the file is exactly as long as its header says; anything else is a damaged
cache, and the caller decodes again.

The map is the kernel's: `mmap` of the very file descriptor that was checked, private
(ACCESS_COPY: an in-place write to a batch would never reach the file). Pages come in when a
batch reads them and, being clean file pages, the kernel drops them again under pressure.
cnnlab never changes a cache file in place (a new one is renamed over it, and a process that
maps the old one keeps reading it); cutting a mapped file short from outside would make the
mapped pages past its new end fault (SIGBUS), as with any memory-mapped file.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.fileio import fsync_dir, open_regular_file

MAGIC = b"CNNLABU8"
TRAILER = 16  # header length (8 bytes) + MAGIC
READ_BYTES = 1 << 20  # copied at a time when gathering or reading back: bounded memory


def free_bytes(folder: Path) -> int | None:
    """Bytes free for this user in `folder` (which exists); None when the system does not say."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


class Staging:
    """A temporary file in `folder`, written row by row (each `row_bytes` long) at any row.

    Written with pwrite, not through a map: the rows go to the page cache and disk without
    ever being mapped into this process, so decoding a huge folder does not grow its memory.
    """

    def __init__(self, folder: Path, name: str, row_bytes: int):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        self.fd: int | None = fd
        self.path = Path(tmp)
        self.row_bytes = row_bytes

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while len(view):
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written

    def write_row(self, row: int, image: torch.Tensor) -> None:
        """Image (C, H, W) uint8 into row `row`."""
        data = image.contiguous().numpy().tobytes()
        assert len(data) == self.row_bytes, (len(data), self.row_bytes)
        self.write_at(row * self.row_bytes, data)

    def read_rows(self, start: int, count: int) -> bytes:
        """Rows start..start+count-1 as bytes."""
        size = count * self.row_bytes
        data = os.pread(self.fd, size, start * self.row_bytes)
        assert len(data) == size, (len(data), size)
        return data

    def finish(self, rows: int, header: dict[str, Any]) -> None:
        """Write the header after the first `rows` rows, cut the file there, and fsync it."""
        blob = json.dumps(header, separators=(",", ":")).encode()
        end = rows * self.row_bytes
        self.write_at(end, blob + len(blob).to_bytes(8, "little") + MAGIC)
        os.ftruncate(self.fd, end + len(blob) + TRAILER)
        os.fsync(self.fd)

    def publish(self, path: Path) -> None:
        """Rename the finished file over `path` (a link there is replaced, never written through)."""
        self.close()
        os.replace(self.path, path)
        fsync_dir(path.parent)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def gather(source: Staging, rows: list[int], target: Staging) -> None:
    """Copy `source`'s rows, in the order given, into rows 0, 1, ... of `target`."""
    step = max(1, READ_BYTES // source.row_bytes)
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        data = b"".join(source.read_rows(row, 1) for row in chunk)
        target.write_at(start * target.row_bytes, data)


def row_chunks(staging: Staging, shape: tuple[int, int, int], rows: int):
    """Rows 0..rows-1 of `staging` as uint8 tensors (n, C, H, W) of <= READ_BYTES, read (not
    mapped) into one reused buffer: each chunk is valid until the next is read."""
    step = max(1, READ_BYTES // staging.row_bytes)
    buffer = bytearray(step * staging.row_bytes)
    for start in range(0, rows, step):
        count = min(step, rows - start)
        view, offset = memoryview(buffer)[: count * staging.row_bytes], start * staging.row_bytes
        while len(view):
            got = os.preadv(staging.fd, [view], offset)
            assert got > 0, (offset, staging.path)  # the rows were written: never past the end
            view, offset = view[got:], offset + got
        yield torch.frombuffer(buffer, dtype=torch.uint8, count=count * staging.row_bytes).view(
            count, *shape
        )


def map_cache(path: Path, version: int) -> tuple[dict[str, Any], torch.Tensor] | None:
    """(header, images (N, C, H, W) uint8 mapped from the file) of a whole cache file of
    `version`; None when there is none, or it is a link, not a regular file, short or damaged."""
    if path.is_symlink():
        return None  # never read (or later replace-write) through a link
    try:
        with open_regular_file(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size < TRAILER:
                return None
            f.seek(size - TRAILER)
            trailer = f.read(TRAILER)
            length = int.from_bytes(trailer[:8], "little")
            if trailer[8:] != MAGIC or length > size - TRAILER:
                return None
            data_bytes = size - TRAILER - length
            f.seek(data_bytes)
            header = json.loads(f.read(length))
            shape = _checked_header(header, version, data_bytes)
            if shape is None:
                return None
            mapped = mmap.mmap(f.fileno(), data_bytes, access=mmap.ACCESS_COPY)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    with contextlib.suppress(AttributeError, OSError):  # batches are read in random order
        mapped.madvise(mmap.MADV_RANDOM)
    array = np.frombuffer(mapped, dtype=np.uint8)  # keeps the map alive as long as the tensor
    return header, torch.from_numpy(array).view(-1, *shape)


def _checked_header(header: Any, version: int, data_bytes: int) -> tuple[int, int, int] | None:
    """The image shape (C, H, W) when the header is this version's and fits `data_bytes`."""
    if not isinstance(header, dict) or header.get("version") != version:
        return None
    shape, train, test = header.get("shape"), header.get("train"), header.get("test")
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(type(v) is int and v > 0 for v in shape)
        and shape[0] in (1, 3)
        and type(train) is int
        and type(test) is int
        and train > 0
        and test >= 0
    ):
        return None
    if (train + test) * shape[0] * shape[1] * shape[2] != data_bytes:
        return None  # short, or grown: a damaged cache
    return shape[0], shape[1], shape[2]
