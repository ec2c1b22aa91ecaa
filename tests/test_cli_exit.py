"""The `cnnlab` command ends its process right after the command (cli.entry): nothing it said or
wrote is lost, and the exit status is the command's.

Real processes, stdout and stderr to pipes (block-buffered, so an unflushed line would be lost).
"""

from __future__ import annotations

import os
import subprocess
import sys

from cnnlab.cli import main


def _cnnlab(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        # os.environ, as the in-process run sees it: readline (imported by pytest) puts COLUMNS=80
        # into the C environment that a child would otherwise inherit, and tables follow COLUMNS
        env=dict(os.environ),
    )


def test_everything_printed_arrives_and_the_status_is_the_commands(capsys):
    done = _cnnlab("summary", "default")
    main(["summary", "default"])  # in-process: the same text, the usual exit
    assert done.returncode == 0
    assert done.stdout == capsys.readouterr().out and done.stdout.count("\n") > 10


def test_errors_and_usage_keep_their_statuses():
    bad_spec = _cnnlab("summary", "conv(8,3")
    assert bad_spec.returncode == 2 and bad_spec.stderr.startswith("error:")
    usage = _cnnlab("no-such-command")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
    helped = _cnnlab("train", "--help")
    assert helped.returncode == 0 and "--budget" in helped.stdout


def test_a_training_run_writes_its_files_before_the_process_ends(tmp_path):
    done = _cnnlab(
        "train",
        "--model",
        "tutorial",
        "--data",
        "shapes",
        "epochs=1",
        "train_size=256",
        "--out",
        str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test accuracy:" in done.stdout
    for name in ("model.safetensors", "model.json", "metrics.csv", "config.toml"):
        assert (tmp_path / "run" / name).stat().st_size > 0, name
