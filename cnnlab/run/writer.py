"""The one writer of a run folder: config.toml, train.log, metrics.csv, the resume state, the model.

Training decides what to write and when; this module decides how. Every file
but the append-only train.log is replaced atomically (fileio), so a run killed
at any moment keeps its previous checkpoint whole.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cnnlab.errors import ConfigError, OutputError
from cnnlab.fileio import atomic_write_json, atomic_write_text
from cnnlab.i18n import _
from cnnlab.run.checkpoint import read_metadata, save_tensors
from cnnlab.run.files import (
    CONFIG_FILE,
    LOCK_FILE,
    LOG_FILE,
    METRIC_COLUMNS,
    METRICS_FILE,
    MODEL_FILE,
    MODEL_META,
    RECORD_FILE,
    RESUME_FILE,
)

if TYPE_CHECKING:
    from cnnlab.model.cnn import CnnModel
    from cnnlab.run.record import RunRecord


# --- claiming the folder -------------------------------------------------------------


@dataclass
class FolderLock:
    """The lock file of a run folder, held (open and flock'ed) while this process writes it."""

    path: Path
    fd: int | None

    def release(self) -> None:
        """Remove the lock file, then let go of it (safe to call twice)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still holding it: a waiting process then sees a new file
        os.close(self.fd)  # closing drops the flock too
        self.fd = None


def lock_folder(folder: Path) -> FolderLock:
    """Take the folder's lock file (O_EXCL, with this pid), taking over one left by a dead process.

    The pid is for people; the flock on the open file is what proves the holder alive:
    the kernel drops it when a process dies, however it dies, so pid reuse cannot fool it.
    """
    path = folder / LOCK_FILE
    for _attempt in range(5):  # each retry follows a stale lock removed or a holder just finished
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _stale_or_holder(path)
            if holder is None:
                continue
            raise ConfigError(
                _(
                    "{folder} is being written by another cnnlab process ({holder}); two runs in "
                    "one folder would mix their files: wait for it to finish, or choose another "
                    "--out. If no such process runs, delete {path}"
                ).format(folder=folder, holder=holder, path=path)
            ) from None
        except OSError as error:
            raise _write_error(folder, path, error) from None
        # Ours (O_EXCL); another process may hold it for an instant to look at it: wait for that.
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()} {os.uname().nodename}\n".encode())
        return FolderLock(path, fd)
    raise ConfigError(
        _("{folder}: could not take {path}; try again, or choose another --out").format(
            folder=folder, path=path
        )
    )


def _stale_or_holder(path: Path) -> str | None:
    """None after removing a lock nobody holds; else who holds it ('pid 123 on host')."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None  # released meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(fd) or "a process that is starting"
        text = os.pread(fd, 200, 0).split()
        if not text:  # created but not yet locked by a starting process: leave it to it
            return "a process that is starting"
        with contextlib.suppress(OSError):  # nobody holds it: its process died; take it over
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                path.unlink()
        return None
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    """'pid 123 on host' from a held lock file; its holder writes it just after locking, so wait
    a moment for it (bounded: a holder that never writes leaves the answer empty)."""
    for _attempt in range(40):
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
        if text:
            return f"pid {text[0]}" + (f" on {text[1]}" if len(text) > 1 else "")
        time.sleep(0.025)
    return ""


def remove_stale_temporaries(folder: Path) -> int:
    """Delete `.NAME.*.tmp` files of interrupted atomic writes; call only while holding the lock."""
    removed = 0
    for tmp in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed


def claim_folder(folder: Path) -> FolderLock:
    """Create and lock the folder of a new run, refusing to train over another run."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _write_error(folder, folder, error) from None
    lock = lock_folder(folder)
    if (folder / RESUME_FILE).exists() or (folder / MODEL_META).exists():
        lock.release()
        raise ConfigError(
            _(
                "{folder} already holds a run: continue it with --resume {folder}, or choose "
                "another --out"
            ).format(folder=folder)
        )
    remove_stale_temporaries(folder)
    return lock


# --- writing ----------------------------------------------------------------------------


@contextlib.contextmanager
def _writing(folder: Path, path: Path) -> Iterator[None]:
    """Turn an OSError while writing `path` into an OutputError that says what is still intact."""
    try:
        yield
    except OSError as error:
        raise _write_error(folder, path, error) from None


def _write_error(folder: Path, path: Path, error: OSError) -> OutputError:
    """The disk is full (or read-only, ...) at `path`: what happened, what is intact, what to do."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        problem = _("the disk holding {folder} is full: cannot write {path}").format(
            folder=folder, path=path
        )
        fix = _("free space there")
    else:
        problem = _("cannot write {path} ({error})").format(
            path=path, error=error.strerror or error
        )
        fix = _("fix that")
    info = read_metadata(folder / RESUME_FILE)
    if not isinstance(info, dict):
        return OutputError(
            _(
                "{problem}; no checkpoint was written yet: {fix} and train again "
                "(or train into another --out)"
            ).format(problem=problem, fix=fix)
        )
    epoch = info.get("progress", {}).get("epoch", "?")
    return OutputError(
        _(
            "{problem}; the last complete checkpoint ({checkpoint}, epoch {epoch}) is "
            "intact: {fix} and continue with: cnnlab train --resume {folder}"
        ).format(
            problem=problem, checkpoint=folder / RESUME_FILE, epoch=epoch, fix=fix, folder=folder
        )
    )


def write_config(folder: Path, toml_text: str) -> None:
    """config.toml: the settings the run trains with."""
    with _writing(folder, folder / CONFIG_FILE):
        atomic_write_text(folder / CONFIG_FILE, toml_text)


def write_record(folder: Path, record: RunRecord) -> None:
    """record.json: the run record, what every stage after training reads."""
    with _writing(folder, folder / RECORD_FILE):
        atomic_write_json(folder / RECORD_FILE, record.to_json())


def append_log(folder: Path, line: str) -> None:
    """One line at the end of train.log."""
    with _writing(folder, folder / LOG_FILE), (folder / LOG_FILE).open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def write_metrics(folder: Path, rows: Iterable[dict[str, float]]) -> None:
    """metrics.csv: one row per epoch, 6 significant digits, NaN (no validation set) as empty."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if math.isnan(row[c]) else f"{row[c]:.6g}" for c in METRIC_COLUMNS})
    with _writing(folder, folder / METRICS_FILE):
        atomic_write_text(folder / METRICS_FILE, text.getvalue())


def write_resume(folder: Path, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """resume.safetensors: the whole training state, tensors and JSON, in one atomic file."""
    with _writing(folder, folder / RESUME_FILE):
        save_tensors(folder / RESUME_FILE, tensors, info)


def write_model(folder: Path, model: CnnModel, meta: dict[str, Any]) -> None:
    """model.safetensors then model.json (files.model_meta), each atomically."""
    with _writing(folder, folder / MODEL_FILE):
        save_tensors(folder / MODEL_FILE, model.state_dict())
    with _writing(folder, folder / MODEL_META):
        atomic_write_json(folder / MODEL_META, meta)
