"""Where data files live: the user cache and the ordered list of folders searched for a data set."""

from __future__ import annotations

import os
from pathlib import Path

# Debian's dataset-* packages install under this root, one folder per data set
# (dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist/*.gz).
SYSTEM_ROOT = Path("/usr/share/datasets")


def cache_dir() -> Path:
    """The user cache for downloads and decoded folders: $XDG_CACHE_HOME/cnnlab or ~/.cache/cnnlab."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnnlab"


def search_dirs(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for data set `name`, in order: --data-dir, $CNNLAB_DATA, the cache, the system."""
    dirs: list[Path] = []
    if data_dir is not None:
        # Both DIR/NAME and DIR itself, so `--data-dir /usr/share/datasets/fashion-mnist` works too.
        dirs += [Path(data_dir) / name, Path(data_dir)]
    env = os.environ.get("CNNLAB_DATA")
    if env:
        dirs.append(Path(env) / name)
    dirs.append(cache_dir() / name)
    dirs.append(SYSTEM_ROOT / name)
    return dirs


def download_dir(name: str) -> Path:
    """Where downloads of data set `name` are written (inside the user cache)."""
    return cache_dir() / name
