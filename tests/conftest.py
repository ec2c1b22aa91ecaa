"""Shared test helpers: run the CLI in-process and capture what it prints."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from cnnlab.cli import main

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True)
def english_unless_asked(monkeypatch):
    """The suite reads English output: a tester's LANG=ko_KR must not turn it Korean.

    Tests of the Korean output set --lang or LANG themselves (tests/test_i18n.py).
    """
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)


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


def in_ci() -> bool:
    """Whether this runs in CI (CI=true), where a missing system part is a failure, not a skip."""
    return os.environ.get("CI", "").lower() == "true"


def require_system_part(available: bool, what: str, how: str) -> None:
    """Skip when a system part is missing, except in CI (CI=true) where that is a failure."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{what} is missing in CI: {how}")
    pytest.skip(f"{what} is not installed here ({how})")


# How to install a data set's files, where a system package provides them.
DATA_PACKAGES = {"fashion-mnist": "apt-get install dataset-fashion-mnist"}


def missing_data_sets(argv: list[str]) -> list[str]:
    """The registered data sets a command line names (--data NAME, data=NAME) not on this machine.

    Looked up as the loaders look (--data-dir, $CNNLAB_DATA, the cache, /usr/share/datasets),
    never downloaded: tests have no network. Generated data sets and folders are always here.
    """
    from cnnlab.data.registry import get_entry
    from cnnlab.errors import CnnlabError

    names, data_dir = [], None
    for i, arg in enumerate(argv):
        following = argv[i + 1] if i + 1 < len(argv) else ""
        if arg == "--data":
            names.append(following)
        elif arg.startswith(("--data=", "data=")):
            names.append(arg.split("=", 1)[1])
        elif arg == "--data-dir":
            data_dir = following
        elif arg.startswith(("--data-dir=", "data_dir=")):
            data_dir = arg.split("=", 1)[1]
    missing = []
    for name in names:
        try:
            entry = get_entry(name)
        except CnnlabError:  # folder:PATH or a folder: the command reports it itself
            continue
        if entry.locate(data_dir) is None:
            missing.append(entry.name)
    return missing


def require_data_sets(names: list[str], needed_by: str) -> None:
    """Skip (fail in CI) when a data set in `names` is missing; `needed_by` says what needs it."""
    for name in names:
        how = DATA_PACKAGES.get(name, f"cnnlab datasets fetch {name}")
        require_system_part(False, f"the {name} data set (for {needed_by})", how)
