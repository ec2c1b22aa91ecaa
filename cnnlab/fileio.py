"""Files on disk, the bottom layer: THE atomic write and file hashes, shared by data, run and deploy.

An atomic write goes to a temporary file in the same folder, is fsynced, renamed
over the old name and the folder fsynced: a process killed at any moment leaves
readers either the old file or the whole new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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


def atomic_write_json(path: str | Path, data: Any) -> None:
    """atomic_write_bytes for JSON (indented, with a final newline)."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


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
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return file_digest(path, "sha256")
