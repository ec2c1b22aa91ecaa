"""Bad input to the spec parser and the training config: a clear `error:` line, never a traceback."""

# Fixtures are imported from test_data_support (kept out of the shared conftest.py),
# so pytest's fixture arguments shadow the imports by design.
# ruff: noqa: F811

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_data_support import isolated_cache  # noqa: F401

import cnnlab
from cnnlab.cli import build_parser
from cnnlab.data import load_dataset
from cnnlab.errors import ConfigError, DataError, SpecError
from cnnlab.spec.language import parse_spec
from cnnlab.training.config import read_config_file, resolve_config

TINY = ["--epochs", "1", "--batch-size", "64", "--quiet"]
SIZES = ["train_size=256", "test_size=64"]


def _refused(result, *words: str) -> None:
    """Exit 2 with one `error:` line naming `words`, and no traceback."""
    assert result.code == 2, (result.out, result.err)
    assert result.err.startswith("error: "), result.err
    assert "Traceback" not in result.err + result.out
    for word in words:
        assert word in result.err, result.err


# --- item 2 and 3: the spec parser ----------------------------------------------------------


def test_deeply_nested_parentheses_are_a_spec_error(cli):
    spec = "conv(" + "(" * 2000 + "3" + ")" * 2000 + ")"
    _refused(cli("summary", spec), "nest")


@pytest.mark.parametrize(
    "spec",
    [
        "flatten fc(" + "*".join(["999999999"] * 600) + ")",
        "flatten fc(" + "9" * 5000 + ")",
        "input(1x" + "9" * 5000 + "x28) flatten fc(10)",
        "input(1x28x28) conv(" + "*".join(["99999"] * 3) + ", 3) flatten fc(10)",
        "flatten fc(in=" + "*".join(["999"] * 700) + ", out=10)",
    ],
)
def test_huge_numbers_in_a_spec_are_refused_with_the_maximum(cli, spec):
    result = cli("summary", spec)
    _refused(result, "at most 1000000000")
    assert len(result.err) < 2 * len(spec) + 2000  # the number is not spelt out in full


def test_numbers_up_to_the_maximum_still_parse():
    spec = parse_spec("flatten fc(1000000000) fc(in=10*10*10, out=10)")
    assert spec.layers[1].params["out"] == 1_000_000_000
    assert spec.layers[2].params["in"] == 1000
    with pytest.raises(SpecError, match="at most"):
        parse_spec("flatten fc(1000000001)")
    with pytest.raises(SpecError, match="finite"):
        parse_spec("batchnorm(eps=1e999)")


@pytest.mark.parametrize(
    "value",
    ["[" * 2000 + "3" + "]" * 2000, "9" * 5000, "999999999999"],
    ids=["deep", "long", "big"],
)
def test_a_model_file_with_huge_or_deep_values_is_a_spec_error(cli, tmp_path, value):
    path = tmp_path / "m.toml"
    path.write_text(f'[[layers]]\ntype = "flatten"\n[[layers]]\ntype = "fc"\nout = {value}\n')
    _refused(cli("summary", str(path)), "1000000000")


def test_a_config_file_nested_thousands_deep_is_a_config_error(cli, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("epochs = " + "[" * 2000 + "3" + "]" * 2000 + "\n")
    _refused(cli("train", "--config", str(path)), str(path), "nested")


# --- item 4, 5, 16: ranges in TrainConfig ---------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("image_size=-5", ["image_size", "1 to 1024"]),
        ("image_size=100000", ["image_size", "1 to 1024"]),
        ("seed=9223372036854775808", ["seed", "4294967295"]),
        ("seed=-1", ["seed", "4294967295"]),
        ("warmup_epochs=inf", ["warmup_epochs", "finite"]),
        ("lr=nan", ["lr"]),
        ("gamma=inf", ["gamma", "finite"]),
        ("epochs=99999999999999999999", ["epochs", "1 to"]),
        ("train_size=-3", ["train_size"]),
        ("test_size=1000000000000", ["test_size", "2147483647"]),
        ("threads=-1", ["threads"]),
        ("nproc=1000000", ["nproc", "--force-nproc"]),
        ("channels=2", ["channels"]),
    ],
)
def test_out_of_range_settings_are_refused_before_any_folder(tmp_path, cli, setting, words):
    out = tmp_path / "run"
    _refused(cli("train", *TINY, "--out", str(out), *SIZES, setting), *words)
    assert not out.exists()


def test_a_data_set_larger_than_memory_is_refused_before_allocating(cli, tmp_path):
    _refused(
        cli("train", *TINY, "--out", str(tmp_path / "r"), "test_size=1000000000"),
        "memory",
        "test_size",
    )
    with pytest.raises(DataError, match="memory"):
        load_dataset("shapes", train_size=10**11, test_size=10)


def test_more_processes_than_cores_need_force_nproc(tmp_path):
    cores = len(os.sched_getaffinity(0))
    with pytest.raises(ConfigError, match="--force-nproc"):
        resolve_config({"nproc": cores + 1, "batch_size": 64 * (cores + 1)})
    forced = {"nproc": cores + 1, "batch_size": 64 * (cores + 1), "force_nproc": True}
    assert resolve_config(forced).nproc == cores + 1
    config = tmp_path / "c.toml"
    config.write_text("nproc = 1000000\nbatch_size = 1000000\n")
    with pytest.raises(ConfigError, match="more training processes than"):
        resolve_config(read_config_file(config))


@pytest.mark.slow
def test_more_threads_than_cores_are_capped_with_a_note(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "cnnlab", "train", *TINY, "--out", str(out), "--model"]
    argv += ["tutorial", "--threads", "100000", *SIZES]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "threads" in result.stdout + result.stderr and "cores" in result.stdout + result.stderr
    assert (out / "model.json").is_file()


# --- item 18: TOML config files -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("train_size = 256\n[train]\nepochs = 1\n", ["train_size", "[train]"]),
        ("[train]\nepochs = 1\n[other]\nlr = 0.1\n", ["other"]),
        ("[training]\nepochs = 1\n", ["training"]),
        ("model = { a = 1 }\n", ["model"]),
        ("train = 5\n", ["train"]),
    ],
)
def test_config_file_keys_that_would_be_ignored_are_errors(tmp_path, cli, text, words):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    for word in words:
        assert word in str(info.value)
    _refused(cli("train", "--config", str(path), "--out", str(tmp_path / "r")), str(path))


def test_a_train_table_alone_still_works(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nepochs = 1\ntrain_size = 256\n")
    assert read_config_file(path) == {"epochs": 1, "train_size": 256}


# --- item 21: skip_bad, and every --flag an error names exists ------------------------------


@pytest.mark.usefixtures("isolated_cache")
@pytest.mark.parametrize("how", [["--skip-bad"], ["skip_bad=true"]])
def test_train_skips_bad_images_when_asked(tmp_path, cli, how):
    root = tmp_path / "pics"
    for name, value in (("dark", 20), ("light", 230)):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (12, 12), value + i).save(root / name / f"{i}.png")
    (root / "dark" / "broken.png").write_bytes(b"not a png")
    argv = ["train", "--data", str(root), "--model", "tutorial", "--epochs", "1", "--quiet"]
    argv += ["--batch-size", "4"]
    _refused(cli(*argv, "--out", str(tmp_path / "a")), "--skip-bad")
    result = cli(*argv, "--out", str(tmp_path / "b"), *how)
    assert result.code == 0, result.err
    assert "broken.png" in result.out + result.err
    assert (tmp_path / "b" / "model.json").is_file()


def _flags_named_in_errors() -> dict[str, str]:
    """--flag -> file, for every --flag in the literal text of a `...Error(...)` made in cnnlab/."""
    found = {}
    for path in Path(cnnlab.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
            if not name.endswith("Error"):
                continue
            for part in ast.walk(node):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", part.value):
                        found[flag] = str(path)
    return found


def _parser_flags() -> set[str]:
    flags, parsers = set(), [build_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            flags.update(action.option_strings)
            if action.choices and isinstance(action.choices, dict):
                parsers.extend(p for p in action.choices.values() if hasattr(p, "_actions"))
    return flags


def test_every_flag_an_error_message_names_exists():
    named = _flags_named_in_errors()
    assert "--skip-bad" in named and "--force-nproc" in named  # the scan sees f-strings too
    missing = {flag: where for flag, where in named.items() if flag not in _parser_flags()}
    assert not missing, missing


# --- item 22: datasets show -----------------------------------------------------------------


def test_datasets_show_shapes_says_how_many_it_generated_and_the_full_size(cli, tmp_path):
    result = cli("datasets", "show", "shapes", "--out", str(tmp_path / "g.png"), "--per-class", "5")
    assert result.code == 0, result.err
    assert "train=" not in result.out
    assert "generated" in result.out and "24000" in result.out and "4000" in result.out
