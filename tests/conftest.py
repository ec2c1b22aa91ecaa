"""Shared test helpers: run the CLI in-process and capture what it prints."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from cnnlab.cli import main

IN_CI = os.environ.get("CI", "").lower() == "true"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """cli('summary', 'tutorial') -> CliResult(code, stdout, stderr), run in this process."""

    def run(*argv: str) -> CliResult:
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse errors and --help
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def require_system_part(available: bool, what: str, how: str) -> None:
    """Skip when a system part is missing, except in CI (CI=true) where that is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing in CI: {how}")
    pytest.skip(f"{what} is not installed here ({how})")
