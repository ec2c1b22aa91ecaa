"""What the CLI prints and writes when the other end is unusual: a pipe closed early, an --out
that cannot be written, names holding terminal escapes or rich markup."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ESC = "\x1b"
TINY = "conv(4,3,padding=same) relu maxpool(2) flatten fc(10)"


def cnnlab_process(*argv: str, cwd: Path | None = None, **options) -> subprocess.Popen:
    """A real `cnnlab` process, as installed (python -m puts `cwd` first on its path)."""
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *argv], cwd=cwd, **options)


# --- item 10: a reader that closes the pipe after one line ---------------------------------


def read_one_line_then_close(cwd: Path, *argv: str) -> tuple[int, bytes, str]:
    """Run cnnlab into a pipe of 4096 bytes (the smallest Linux allows), read one line, close it.

    Output larger than the pipe cannot all be written before the close, so the writer meets the
    closed pipe every time; output that fits may be written in full first, as with `| head -1`.
    """
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    proc = cnnlab_process(*argv, cwd=cwd, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(read_end, 1)
        assert byte, "cnnlab printed no line"
        line += byte
    os.close(read_end)
    _, err = proc.communicate(timeout=120)  # a guard against a hang, not a timed assertion
    return proc.returncode, line, err.decode()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "first", "always_closed"),
    [
        (["summary", "best", "--json"], b"{\n", True),  # 11 KB through print()
        (["summary", "best"], b"input(", True),  # 6 KB through rich
        (["models", "--json"], b"[\n", False),  # 2.3 KB: may all be in the pipe before the close
    ],
)
def test_a_reader_that_leaves_early_ends_cnnlab_quietly(argv, first, always_closed, tmp_path):
    code, line, err = read_one_line_then_close(tmp_path, *argv)
    assert line.startswith(first)
    assert err == "", err  # no traceback, no "Exception ignored" at exit
    # 141 = 128 + SIGPIPE, what the shell shows for Unix tools a closed pipe ends
    assert code == 141 if always_closed else code in (0, 141)


def test_a_closed_pipe_in_process_returns_141(monkeypatch, capsys):
    """main() itself, with a stdout whose reader is gone (and no file descriptor to redirect)."""
    from cnnlab.cli import main

    class Gone:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

        def isatty(self) -> bool:
            return False

        def fileno(self) -> int:
            raise OSError("no descriptor")

    monkeypatch.setattr(sys, "stdout", Gone())
    assert main(["models", "--json"]) == 141
    assert main(["models"]) == 141  # rich's own broken-pipe exit (status 1) is not used
    assert capsys.readouterr().err == ""


# --- item 11: every command that writes a file, with an --out that cannot be written -------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run of a tiny model on a little of `shapes`, trained for real (about a second)."""
    from cnnlab.cli import main

    run = tmp_path_factory.mktemp("out") / "run"
    argv = ["train", "--model", TINY, "--epochs", "1", "--out", str(run), "--quiet"]
    assert main([*argv, "train_size=200", "test_size=60", "batch_size=20"]) == 0
    return run


WRITERS = {
    "eval": lambda run, out: ["eval", str(run), "--out", out, "--top", "4"],
    "plot": lambda run, out: ["plot", str(run), "--out", f"{out}/curves.png"],
    "filters": lambda run, out: ["filters", str(run), "--out", f"{out}/f.png"],
    "featuremaps": lambda run, out: ["featuremaps", str(run), "test:0", "--out", f"{out}/m.png"],
    "kernels": lambda run, out: ["kernels", "demo", "--out", f"{out}/k.png"],
    "diagram": lambda run, out: ["diagram", "lenet5", "--out", f"{out}/d.png"],
    "datasets show": lambda run, out: ["datasets", "show", "shapes", "--out", f"{out}/s.png"],
    "export": lambda run, out: ["export", str(run), "--out", f"{out}/model.onnx"],
    "train": lambda run, out: ["train", "--model", TINY, "--epochs", "1", "--out", f"{out}/r"],
    "patches": lambda run, out: ["patches", str(run), "--out", f"{out}/p.png"],
    "embed": lambda run, out: ["embed", str(run), "--out", f"{out}/e.png"],
    "cam": lambda run, out: ["cam", str(run), "test:0", "--out", f"{out}/c.png"],
    "lr-find": lambda run, out: [
        "lr-find",
        "--model",
        TINY,
        "--out",
        f"{out}/l.png",
        "train_size=200",
        "test_size=60",
        "batch_size=20",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("unwritable", ["missing-folder", "file-as-folder"])
@pytest.mark.parametrize("command", WRITERS)
def test_an_unwritable_out_is_an_error_line(command, unwritable, tiny_run, tmp_path, cli):
    if unwritable == "missing-folder":
        out = "/proc/cnnlab-nope"  # even root cannot create a folder in /proc
    else:
        (tmp_path / "a-file").write_text("a file where the folder should be")
        out = str(tmp_path / "a-file")
    result = cli(*WRITERS[command](tiny_run, out))
    assert result.code == 2, result.err
    assert result.err.startswith("error: ") and out in result.err, result.err
    assert "Traceback" not in result.err, result.err
    if command != "train":  # train's message (run/writer.py) says "fix it and train again"
        assert "--out" in result.err, result.err


# --- item 19: names with terminal escapes and rich markup -----------------------------------


def test_printable_escapes_control_characters_only():
    from cnnlab.cli.common import printable

    assert printable(f"esc{ESC}[31mred.png") == "esc\\x1b[31mred.png"
    assert printable("tab\there\nnew\x7f\x9b") == "tab\\x09here\\x0anew\\x7f\\x9b"
    assert printable("a\nb", keep="\n") == "a\nb"
    assert printable("evil\u202egnp.exe") == "evil\\u202egnp.exe"  # right-to-left override
    assert printable("[red]옷 T-shirt/top é") == "[red]옷 T-shirt/top é"  # text is left alone
    assert printable(Path("x") / "y") == "x/y"


@pytest.fixture(scope="module")
def named_badly(tmp_path_factory) -> Path:
    """A folder data set whose path and class names hold ESC and rich markup, a run on it,
    and two images named the same way; returns the folder holding them."""
    from cnnlab.cli import main

    root = tmp_path_factory.mktemp("names")
    data = root / f"data{ESC}[7m"
    for k, name in enumerate([f"esc{ESC}[31mred", "[red]plain"]):
        (data / name).mkdir(parents=True)
        for i in range(10):
            Image.new("L", (28, 28), 40 + 150 * k + i).save(data / name / f"{i}.png")
    Image.new("L", (28, 28), 30).save(root / f"esc{ESC}[31mred.png")
    Image.new("L", (28, 28), 200).save(root / "[red]x.png")
    argv = ["train", "--data", f"folder:{data}", "--model", TINY, "--epochs", "1"]
    assert main([*argv, "--batch-size", "4", "--out", str(root / "runs" / "plain"), "--quiet"]) == 0
    return root


def assert_shown_escaped(text: str, *names: str) -> None:
    assert ESC not in text and "\x9b" not in text, repr(text)
    for name in names:
        assert name in text, f"{name!r} not in {text!r}"


@pytest.mark.slow
def test_predict_prints_file_and_class_names_escaped(named_badly, cli, monkeypatch):
    monkeypatch.chdir(named_badly)
    result = cli("predict", "runs/plain", f"esc{ESC}[31mred.png", "[red]x.png", f"no{ESC}[5m.png")
    assert result.code == 1  # the missing file failed, the others were predicted
    assert_shown_escaped(result.out, "esc\\x1b[31mred.png: ", "[red]x.png: ", "[red]plain")
    assert_shown_escaped(result.err, "error: no\\x1b[5m.png")


@pytest.mark.slow
def test_eval_runs_featuremaps_and_datasets_show_escape_names(named_badly, cli, monkeypatch):
    monkeypatch.chdir(named_badly)
    result = cli("eval", "runs/plain", "--out", f"eval{ESC}[2m")
    assert result.code == 0, result.err
    # class names in the tables; rich markup stays text ('[red]' is not a colour)
    assert_shown_escaped(result.out, "esc\\x1b[31mred", "[red]plain", "wrote eval\\x1b[2m/")
    assert_shown_escaped(result.err)  # matplotlib's missing-glyph warnings quote the names
    result = cli("featuremaps", "runs/plain", f"esc{ESC}[31mred.png", "--out", "m.png")
    assert result.code == 0, result.err
    assert_shown_escaped(result.out, "esc\\x1b[31mred.png: 1x28x28", "[red]plain")
    result = cli("datasets", "show", f"folder:data{ESC}[7m", "--out", f"g{ESC}.png")
    assert result.code == 0, result.err
    assert_shown_escaped(result.out, "data\\x1b[7m", "wrote g\\x1b.png")
    bad_run = f"runs/r{ESC}]0;title{chr(7)}"  # a run named with a window-title escape
    assert cli("train", "--model", TINY, "--epochs", "1", "--out", bad_run, "--quiet").code == 0
    result = cli("runs", "runs")
    assert result.code == 0, result.err
    assert_shown_escaped(result.out, "plain", "r\\x1b]0;title\\x07")


def test_error_messages_escape_names_and_keep_their_lines(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no mnist files anywhere
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    result = cli("eval", f"runs/nope{ESC}[31m")
    assert result.code == 2
    assert_shown_escaped(result.err, "error: run folder runs/nope\\x1b[31m does not exist")
    result = cli(
        "datasets", "show", "mnist", "--no-download", "--data-dir", f"d{ESC}", "--out", "x.png"
    )
    assert result.code == 2
    assert_shown_escaped(result.err, "d\\x1b")
    assert len(result.err.splitlines()) > 2  # the folders searched, a line each


def test_rich_markup_in_a_name_is_printed_as_is(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("L", (20, 20), 99).save(tmp_path / "[bold red]k.png")
    result = cli("kernels", "[bold red]k.png", "--out", "[link=x]k.png", "--kernel", "edge")
    assert result.code == 0, result.err
    assert "[bold red]k.png: 20x20" in result.out and "wrote [link=x]k.png" in result.out


def test_a_config_naming_control_characters_is_valid_toml():
    """config.toml keeps a run whose --out or data folder holds ESC, a newline or DEL readable."""
    import tomllib

    from cnnlab.training.config import TrainConfig

    for value in (f"runs/r{ESC}[1m", 'q"b\\c', "n\nl\tt\x7f\x9b", "옷 é"):
        assert tomllib.loads(TrainConfig(out=value).to_toml())["out"] == value


def test_training_prints_the_run_folder_escaped(cli, tmp_path, monkeypatch):
    """Training's own lines (run folder, data path) reach the terminal and train.log escaped too."""
    monkeypatch.chdir(tmp_path)
    out = f"runs/r{ESC}[31m"
    result = cli(
        "train", "--model", "conv(4,3) relu flatten fc(10)", "--epochs", "1", "--out", out,
        "--batch-size", "64", "train_size=128", "test_size=64",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert_shown_escaped(result.out, "run folder: runs/r\\x1b[31m")
    log = (tmp_path / out / "train.log").read_text()
    assert ESC not in log and "runs/r\\x1b[31m" in log


# --- widths: the tables fit the terminal width that COLUMNS states ----------------------------


@pytest.mark.parametrize("columns", [80, 60])
@pytest.mark.parametrize("command", ["runs", "models"])
def test_tables_fit_the_width_in_columns(command, columns, tiny_run, tmp_path, cli, monkeypatch):
    import shutil

    shutil.copytree(tiny_run, tmp_path / "fashion-small-adam")
    monkeypatch.setenv("COLUMNS", str(columns))
    result = cli(*(["runs", str(tmp_path)] if command == "runs" else ["models"]))
    assert result.code == 0, result.err
    assert max(len(line) for line in result.out.splitlines()) <= columns, result.out
    # wrapped, not cut: every run and preset is still named whole, on its row's first line
    names = ["fashion-small-adam"] if command == "runs" else ["default", "keras-mnist", "lenet5"]
    firsts = [line.split()[0] for line in result.out.splitlines() if line.strip()]
    assert all(name in firsts for name in names), result.out


def test_without_columns_a_pipe_gets_the_rows_unwrapped(cli, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    result = cli("models")
    assert result.code == 0, result.err
    assert max(len(line) for line in result.out.splitlines()) > 100  # as wide as the rows need
