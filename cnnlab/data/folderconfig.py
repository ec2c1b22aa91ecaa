"""What an image folder says about itself: its optional `cnnlab.toml` (e.g. `flip_ok = true`).

A user who knows that a mirror keeps every label of their photos writes it once beside the
class folders instead of passing --flip-ok on every run. Unknown keys and wrong types are
errors naming the file and the fix, as in a training config.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from cnnlab.errors import DataError
from cnnlab.fileio import NotToml, read_toml
from cnnlab.i18n import _
from cnnlab.text import clipped

FOLDER_CONFIG = "cnnlab.toml"  # in the folder's root, beside the class folders (or train/, test/)
MAX_BYTES = 64 * 1024  # a few lines; refuse anything larger


@dataclass(frozen=True)
class FolderConfig:
    """The settings a folder's cnnlab.toml may hold; the defaults when it has none."""

    flip_ok: bool = False  # a horizontal (and vertical) mirror keeps every label


def _parse(path: Path) -> dict:
    """The TOML table in `path`, or a DataError naming the file."""
    try:
        return read_toml(path, MAX_BYTES)
    except OSError as error:  # a FIFO or folder (never waited on), too large, unreadable
        raise DataError(
            _("{path} cannot be read: {error}").format(path=path, error=error)
        ) from None
    except NotToml as error:
        raise DataError(
            _("{path}: {error}; write settings such as flip_ok = true").format(
                path=path, error=error
            )
        ) from None


def read_folder_config(root: str | Path) -> FolderConfig:
    """The settings in ROOT/cnnlab.toml (defaults without one); DataError for unknown keys or types."""
    path = Path(root) / FOLDER_CONFIG
    if not path.exists():
        return FolderConfig()
    values = _parse(path)
    known = {f.name: type(f.default) for f in fields(FolderConfig)}
    for key, value in values.items():
        if key not in known:
            raise DataError(
                _(
                    "{path}: unknown setting {key}; a folder's {file} may set: {known} "
                    "(e.g. flip_ok = true)"
                ).format(
                    path=path, key=clipped(repr(key)), file=FOLDER_CONFIG, known=", ".join(known)
                )
            )
        if type(value) is not known[key]:
            example = _("true or false") if known[key] is bool else known[key].__name__
            raise DataError(
                _("{path}: {key} must be {example}, not {value}").format(
                    path=path, key=key, example=example, value=clipped(repr(value))
                )
            )
    return FolderConfig(**values)
