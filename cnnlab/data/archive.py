"""Safe tar extraction: the standard library's 'data' filter, stricter on links and absolute paths.

`tarfile`'s `filter="data"` (PEP 706) refuses members that would land outside
the target folder, devices and FIFOs, and drops set-uid bits and owners. Two
rules are stricter here: every link is refused (the filter allows links that
stay inside), and absolute paths are refused (the filter would strip the
leading '/'). Every member is checked before anything is written; extraction
goes to a staging folder beside the target, moved into place at the end.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath

from cnnlab.errors import DataError
from cnnlab.i18n import _


def _where(archive: Path, member: tarfile.TarInfo) -> str:
    return _("{archive}: member {name}").format(archive=archive, name=repr(member.name))


def _refuse_ours(archive: Path, member: tarfile.TarInfo) -> None:
    """The rules stricter than the 'data' filter: no links at all, no absolute paths."""
    name = member.name
    if member.issym() or member.islnk():
        raise DataError(
            _(
                "{where} is a link (to {target}); refused: links can point outside the folder"
            ).format(where=_where(archive, member), target=repr(member.linkname))
        )
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        raise DataError(
            _(
                "{where} has an absolute path; refused: it would write outside the target folder"
            ).format(where=_where(archive, member))
        )


def _filter_error(archive: Path, member: tarfile.TarInfo, error: tarfile.FilterError) -> DataError:
    """The 'data' filter's refusal as a DataError naming the archive and the member."""
    where = _where(archive, member)
    if isinstance(error, tarfile.SpecialFileError):
        return DataError(
            _("{where} is a device, FIFO or other special file; refused").format(where=where)
        )
    if isinstance(error, tarfile.OutsideDestinationError):
        if ".." in PurePosixPath(member.name).parts:
            return DataError(
                _(
                    "{where} climbs out with '..'; refused: it would write outside the target "
                    "folder"
                ).format(where=where)
            )
        return DataError(
            _("{where} resolves outside the target folder; refused").format(where=where)
        )
    return DataError(
        _("{where} refused by the tar 'data' filter ({error})").format(where=where, error=error)
    )


def _checker(archive: Path) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo]:
    """A tarfile extraction filter: our rules, then the standard 'data' filter."""

    def check(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        _refuse_ours(archive, member)
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.FilterError as error:
            raise _filter_error(archive, member, error) from None

    return check


def _extract_staged(
    tar: tarfile.TarFile, archive: Path, target: Path, only: set[str] | None
) -> list[PurePosixPath]:
    """Check every member, extract the wanted ones into a staging folder, move files to `target`."""
    check = _checker(archive)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        members = tar.getmembers()
        for member in members:  # check all before writing any
            check(member, str(staging))
        chosen = [m for m in members if only is None or m.name in only]
        tar.extractall(staging, members=chosen, filter=check)
        written = [PurePosixPath(m.name) for m in chosen if m.isfile()]
        target.mkdir(parents=True, exist_ok=True)
        for rel in written:
            final = target / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, final)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def safe_extract(
    archive: str | Path, target: str | Path, only: set[str] | None = None
) -> list[Path]:
    """Extract tar `archive` (any compression) into `target`; returns the files written.

    With `only`, extract just members whose names are in it. A refused or damaged
    archive leaves nothing behind.
    """
    archive, target = Path(archive), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            written = _extract_staged(tar, archive, target, only)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(
            _(
                "{archive}: damaged or not a tar archive ({error}); delete it and download it again"
            ).format(archive=archive, error=error)
        ) from None
    return [target / rel for rel in written]
