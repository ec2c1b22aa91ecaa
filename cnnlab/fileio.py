"""Files on disk, the bottom layer: THE atomic write, file hashes and safe reads (regular files,
TOML), shared by spec, data, run, training and deploy.

An atomic write goes to a temporary file in the same folder, is fsynced, renamed
over the old name and the folder fsynced: a process killed at any moment leaves
readers either the old file or the whole new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import tempfile
import tomllib
from pathlib import Path
from typing import Any, BinaryIO


class RefusedFile(OSError):
    """A file a reader refuses to read; an OSError whose strerror is the whole message."""

    def __init__(self, message: str):
        super().__init__(message)
        self.strerror = message  # readers that print error.strerror show the reason too


class NotRegularFile(RefusedFile):
    """A path that is a FIFO, device, socket or folder where a regular file was expected."""


class FileTooLarge(RefusedFile):
    """A file larger than its reader allows."""


def open_regular_file(path: str | Path) -> BinaryIO:
    """A regular file opened for reading in binary; a FIFO, device or folder raises NotRegularFile.

    O_NONBLOCK makes opening a FIFO return at once (instead of waiting for a writer);
    fstat of the opened descriptor then says what it really is, with no race.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(f"{path} is not a regular file (a FIFO, device or folder)")
        os.set_blocking(fd, True)  # regular files never block; plain reads from here
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_bytes(path: str | Path, max_bytes: int | None = None) -> bytes:
    """A regular file's bytes (see open_regular_file); FileTooLarge above max_bytes."""
    with open_regular_file(path) as f:
        if max_bytes is None:
            return f.read()
        size = os.fstat(f.fileno()).st_size
        data = f.read(max_bytes + 1)  # +1: a file that grew while being read is caught too
        if size > max_bytes or len(data) > max_bytes:
            raise FileTooLarge(f"{path} is larger than {max_bytes:,} bytes ({size:,})")
        return data


class NotToml(ValueError):
    """A file that is not TOML cnnlab can use; the message says why (its readers add the file)."""


def read_toml(path: str | Path, max_bytes: int) -> dict[str, Any]:
    """The table in a regular TOML file; OSError when it cannot be read, NotToml when it is not TOML.

    tomllib fails in three ways besides its own TOMLDecodeError: bytes that are not UTF-8, a
    number of over 4,300 digits (ValueError) and arrays nested thousands deep (RecursionError).
    """
    text = read_regular_bytes(path, max_bytes)
    try:
        return tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise NotToml(f"not valid TOML ({error})") from None
    except (ValueError, RecursionError):
        raise NotToml("a number too long or arrays nested too deep") from None


def require_regular_file(path: str | Path) -> None:
    """Raise NotRegularFile (an OSError) unless `path` is a regular file; for readers that open by path."""
    open_regular_file(path).close()


def _read_umask() -> int:
    """The process's umask (os.umask can only be read by setting it: done once, at import)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# A new file's mode as open() would give it (0o644 under the usual umask): mkstemp's 0o600 would
# keep a run folder, a figure or a script from everyone else on the machine.
NEW_FILE_MODE = 0o666 & ~_read_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, NEW_FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """atomic_write_bytes for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null (in dicts, lists and tuples too)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def json_text(data: Any, indent: int | None = 2) -> str:
    """Strict JSON (NaN and infinity as null: Python's bare NaN is refused by other parsers)."""
    return json.dumps(finite(data), indent=indent, allow_nan=False)


def atomic_write_json(path: str | Path, data: Any) -> None:
    """atomic_write_bytes for strict JSON (indented, with a final newline)."""
    atomic_write_text(path, json_text(data) + "\n")


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in `directory` durable (POSIX); a no-op where folders cannot be fsynced."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: str | Path, algorithm: str) -> str:
    """Hex digest of a file's bytes (md5, sha256, ...), read in chunks by hashlib itself."""
    require_regular_file(path)
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return file_digest(path, "sha256")
