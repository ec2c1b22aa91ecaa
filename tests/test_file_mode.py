"""Files cnnlab writes get the mode the user's umask gives (as open() would), not mkstemp's 0600."""

from __future__ import annotations

import os
import subprocess
import sys

from cnnlab.fileio import atomic_write_bytes


def test_a_written_file_has_the_umask_mode(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_bytes(path, b"{}")
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    reference = tmp_path / "plain"
    reference.write_bytes(b"")  # what open() gives under the same umask
    assert path.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777


def test_a_strict_umask_is_kept(tmp_path):
    path = tmp_path / "private.json"
    code = f"from cnnlab.fileio import atomic_write_bytes; atomic_write_bytes({str(path)!r}, b'1')"
    subprocess.run(
        [sys.executable, "-c", f"import os; os.umask(0o077); exec({code!r})"], check=True
    )
    assert path.stat().st_mode & 0o777 == 0o600
