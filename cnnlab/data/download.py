"""Downloads done right: resumable (HTTP Range on a .part file), checksummed, atomic, with timeouts.

Nothing unverified ever sits under the final name: bytes go to NAME.part, the
checksum is checked, then the file is fsynced and renamed. A wrong checksum
deletes the .part; an interrupted transfer keeps it so the next try resumes.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from cnnlab.errors import DataError
from cnnlab.fileio import file_digest, fsync_dir
from cnnlab.i18n import _

CHUNK = 1 << 16  # bytes per read


class DownloadError(DataError):
    """A download that failed for network reasons (offline, timeout, HTTP error, cut short)."""


def _checksum_kind(checksum: str) -> str:
    """'md5' for 32 hex digits, 'sha256' for 64."""
    kinds = {32: "md5", 64: "sha256"}
    if len(checksum) not in kinds:
        raise ValueError(f"checksum {checksum!r} is neither md5 (32 hex) nor sha256 (64 hex)")
    return kinds[len(checksum)]


def verify(path: str | Path, checksum: str) -> bool:
    """Does the file's md5 or sha256 (chosen by the checksum's length) match?"""
    return file_digest(path, _checksum_kind(checksum)) == checksum.lower()


def _remove_if_empty(folder: Path) -> None:
    """Leave no empty cache folder behind after a failed download."""
    with contextlib.suppress(OSError):
        folder.rmdir()  # fails (and is ignored) unless empty


def _progress_callback(
    label: str, enabled: bool | None
) -> tuple[Callable[[int, int | None], None], Callable[[], None]]:
    """(update(done, total), close()) showing a rich bar on a terminal, or doing nothing."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return (lambda done, total: None), (lambda: None)
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
    )
    progress.start()
    task = progress.add_task(label, total=None)

    def update(done: int, total: int | None) -> None:
        progress.update(task, completed=done, total=total)

    return update, progress.stop


def _open(url: str, start: int, timeout: float) -> http.client.HTTPResponse:
    """Open `url`, asking for bytes from `start` on when resuming."""
    headers = {"User-Agent": "cnnlab"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https only, checked)


def _transfer(url: str, part: Path, timeout: float, progress: bool | None) -> None:
    """Fetch `url` into `part`, resuming from its current length; raises DownloadError if cut short."""
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # range past the end: the .part is already whole
            return
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{url}: cannot connect ({reason})") from None
    with response:
        resumed = start > 0 and response.status == 206
        if not resumed:
            start = 0  # the server sent the whole file: start over
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        update, close = _progress_callback(part.name.removesuffix(".part"), progress)
        done = start
        try:
            with open(part, "ab" if resumed else "wb") as out:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (TimeoutError, OSError, http.client.HTTPException) as error:
                        raise DownloadError(
                            f"{url}: transfer cut off after {done:,} bytes ({error}); run again to resume"
                        ) from None
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    update(done, total)
                out.flush()
                os.fsync(out.fileno())
        finally:
            close()
    if total is not None and done < total:
        raise DownloadError(
            f"{url}: connection closed after {done:,} of {total:,} bytes; run again to resume"
        )


def download(
    url: str,
    dest: str | Path,
    checksum: str | None = None,
    *,
    timeout: float = 30.0,
    retries: int = 2,
    progress: bool | None = None,
) -> Path:
    """Download `url` to `dest` (resuming a .part, verifying md5/sha256 `checksum`); returns `dest`."""
    dest = Path(dest)
    if not url.startswith(("http://", "https://")):
        raise DataError(
            _("{url}: only http:// and https:// downloads are supported").format(url=url)
        )
    if dest.exists() and (checksum is None or verify(dest, checksum)):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, timeout, progress)
            break
        except DownloadError:
            if attempt == retries:
                _remove_if_empty(dest.parent)
                raise  # a .part stays: the next call resumes it
    if checksum is not None and not verify(part, checksum):
        got = file_digest(part, _checksum_kind(checksum))
        part.unlink(missing_ok=True)
        _remove_if_empty(dest.parent)
        raise DataError(
            _(
                "{url}: checksum mismatch ({kind} {got}, expected {expected}); the download was "
                "deleted. Try again later or another mirror; if it keeps failing the file on the "
                "server has changed"
            ).format(url=url, kind=_checksum_kind(checksum), got=got, expected=checksum)
        )
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return dest
