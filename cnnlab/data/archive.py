"""Safe tar extraction: every member is checked before anything is written.

Refused: absolute paths, `..` components, symbolic and hard links, devices, FIFOs,
and anything that would land outside the target folder. Only regular files and
folders are written, by our own code (no tarfile.extractall).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from cnnlab.errors import DataError


def _check_member(archive: Path, member: tarfile.TarInfo, target: Path) -> None:
    """Raise DataError when `member` is not a plain file or folder safely inside `target`."""
    name = member.name
    where = f"{archive}: member {name!r}"
    if member.issym() or member.islnk():
        raise DataError(
            f"{where} is a link (to {member.linkname!r}); refused: links can point outside the folder"
        )
    if not (member.isfile() or member.isdir()):
        raise DataError(f"{where} is a device, FIFO or other special file; refused")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataError(
            f"{where} has an absolute path; refused: it would write outside the target folder"
        )
    if ".." in path.parts or "\\" in name:
        raise DataError(
            f"{where} climbs out with '..'; refused: it would write outside the target folder"
        )
    resolved = (target / path).resolve()
    if not resolved.is_relative_to(target.resolve()):
        raise DataError(f"{where} resolves outside {target}; refused")


def safe_extract(
    archive: str | Path, target: str | Path, only: set[str] | None = None
) -> list[Path]:
    """Extract tar `archive` (any compression) into `target`; returns the files written.

    With `only`, extract just members whose names are in it. Extraction goes to a
    temporary folder beside `target` first and is moved into place at the end, so a
    refused or damaged archive leaves nothing behind.
    """
    archive, target = Path(archive), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:  # check all before writing any
                _check_member(archive, member, target)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            try:
                written = []
                for member in members:
                    if only is not None and member.name not in only:
                        continue
                    out = staging / member.name
                    if member.isdir():
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    assert source is not None  # regular files always have data
                    with source, open(out, "wb") as handle:
                        shutil.copyfileobj(source, handle)
                    written.append(PurePosixPath(member.name))
                target.mkdir(parents=True, exist_ok=True)
                for rel in written:
                    final = target / rel
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staging / rel, final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(
            f"{archive}: damaged or not a tar archive ({error}); delete it and download it again"
        ) from None
    return [target / rel for rel in written]
