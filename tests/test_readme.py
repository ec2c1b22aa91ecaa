"""The README's commands run: its first lines give the two commands, and every ```sh block works."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import missing_data_sets, require_data_sets
from test_data_support import FASHION_FILES

from cnnlab.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent


def shell_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(heading, command lines) of every ```sh block, in order; comments and blank lines dropped."""
    blocks = []
    heading = "top"
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.strip() == "```sh":
            body = []
            i += 1
            while lines[i].strip() != "```":
                command = " ".join(shlex.split(lines[i], comments=True))
                if command:
                    body.append(lines[i])
                i += 1
            blocks.append((heading, body))
        i += 1
    return blocks


def uses_shell(line: str) -> bool:
    """Whether a line has shell operators outside quotes (redirection, pipes, &&)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return any(token and set(token) <= set("|;&<>") for token in lexer)


def run_command(line: str, cwd: Path) -> tuple[int, str]:
    """Plain `cnnlab ...` lines in this process (fast); the rest through bash with the venv on PATH."""
    argv = shlex.split(line, comments=True)
    if argv[0] == "cnnlab" and not uses_shell(line.split(" #")[0]):
        old = Path.cwd()
        os.chdir(cwd)
        try:
            return main(argv[1:]), ""
        finally:
            os.chdir(old)
    # The README's commands run as from a checkout: `python -m bench.colour_folder` finds the
    # repository's bench/ although the blocks run in a temporary folder.
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(
        os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=pythonpath
    )
    proc = subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_readme_opens_with_exactly_the_two_commands():
    first_block = re.search(r"```\n(.*?)```", README.read_text(), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: setup\n\t\$\(VENV\)/bin/cnnlab train\n", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


BLOCKS = shell_blocks(README.read_text())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder for every block, so later blocks see the runs earlier blocks trained."""
    return tmp_path_factory.mktemp("readme")


@pytest.mark.slow
@pytest.mark.parametrize(
    "heading, commands", BLOCKS, ids=[f"{i}-{h[:30]}" for i, (h, _) in enumerate(BLOCKS)]
)
def test_readme_shell_block_runs(heading, commands, workdir, capsys):
    left_out = []  # (line, data sets it needs that this machine lacks)
    for line in commands:
        missing = missing_data_sets(shlex.split(line, comments=True))
        if missing:  # the rest of the block still runs; the test skips (fails in CI) at the end
            left_out.append((line, missing))
            continue
        code, output = run_command(line, workdir)
        captured = capsys.readouterr()
        assert code == 0, f"{line!r} exited {code}:\n{output}{captured.out}{captured.err}"
    for line, missing in left_out:
        require_data_sets(missing, f"`{line.split(' #')[0].strip()}`")


def test_a_line_needing_absent_data_skips_here_and_fails_in_ci(tmp_path, monkeypatch):
    """The decision itself, with every folder the loaders search made empty."""
    from cnnlab.data import paths

    monkeypatch.setattr(paths, "SYSTEM_ROOT", tmp_path / "system")  # no Debian data sets
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    line = "cnnlab train --model tutorial --data fashion-mnist --epochs 1 --out runs/fashion"
    argv = shlex.split(line)
    assert missing_data_sets(argv) == ["fashion-mnist"]
    assert missing_data_sets(["cnnlab", "train", "data=Fashion_MNIST"]) == ["fashion-mnist"]
    assert missing_data_sets(["cnnlab", "train", "--epochs", "2"]) == []  # shapes: generated
    assert missing_data_sets(["cnnlab", "train", "--data", "folder:photos"]) == []
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install dataset-fashion-mnist"):
        require_data_sets(missing_data_sets(argv), line)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="fashion-mnist data set .* missing in CI"):
        require_data_sets(missing_data_sets(argv), line)
    # The files where $CNNLAB_DATA or --data-dir points count, as they do for the loaders.
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    for name in FASHION_FILES:
        (folder / name).write_bytes(b"")
    assert missing_data_sets([*argv, "--data-dir", str(folder)]) == []
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "data"))
    assert missing_data_sets(argv) == []
    require_data_sets(missing_data_sets(argv), line)  # nothing missing: neither skip nor fail


def test_every_cli_command_appears_in_the_readme():
    from cnnlab.cli import build_parser

    text = README.read_text()
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    for name in commands:
        assert f"cnnlab {name}" in text, f"`cnnlab {name}` is not documented in the README"


def test_every_preset_and_dataset_appears_in_the_readme():
    from cnnlab.data import list_datasets
    from cnnlab.model.presets import PRESETS

    text = README.read_text()
    for name in PRESETS:
        assert f"`{name}`" in text, name
    for info in list_datasets():
        assert f"`{info.name}`" in text, info.name


@pytest.mark.slow
def test_make_demo_trains_the_default_model_above_95_percent():
    """The README's main job, as a fresh machine runs it (the venv already exists here)."""
    proc = subprocess.run(["make", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = re.search(r"test accuracy: ([\d.]+)%", proc.stdout)
    assert found, proc.stdout
    assert float(found.group(1)) > 95.0
