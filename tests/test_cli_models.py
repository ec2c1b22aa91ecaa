"""`cnnlab summary`, `models` and `spec`, driven in-process and once as a real process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnlab.model.cnn import build_model
from cnnlab.model.presets import PRESETS


def test_summary_tutorial_shows_the_seed_shapes_and_torchs_parameter_count(cli):
    result = cli("summary", "tutorial")
    assert result.code == 0, result.err
    for shape in ("32x28x28", "32x14x14", "64x14x14", "64x7x7", "3136", "10"):
        assert shape in result.out
    torch_count = sum(p.numel() for p in build_model("tutorial").parameters())
    assert f"parameters: {torch_count:,}" in result.out
    assert "floor((28 + 2*1 - 1*(3-1) - 1)/1) + 1 = 28" in result.out
    assert "64*7*7 = 3136" in result.out


def test_summary_json_totals_equal_torch(cli):
    result = cli("summary", "conv(8,3,stride=2) relu gap fc(4)", "--input", "3x17x17", "--json")
    data = json.loads(result.out)
    model = build_model("conv(8,3,stride=2) relu gap fc(4)", (3, 17, 17))
    assert data["total_params"] == sum(p.numel() for p in model.parameters())
    assert data["layers"][0]["out_shape"] == [8, 8, 8]
    assert data["layers"][0]["receptive_field"] == [3, 3]
    assert data["layers"][-1]["receptive_field"] is None


def test_summary_explain_works_every_number(cli):
    result = cli("summary", "keras-mnist", "--explain")
    assert result.code == 0
    assert "parameters: (3*3*1/1 + 1)*32 = 320" in result.out
    assert "size: H, W: floor((28 + 2*0 - 1*(3-1) - 1)/1) + 1 = 26" in result.out
    assert "parameters: (1600 + 1)*128 = 204928" in result.out
    assert "receptive field: H, W: r = 1 + 1*(3-1)*1 = 3" in result.out


def test_summary_of_a_toml_file(cli, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(cli("spec", "lenet5", "--toml").out)
    result = cli("summary", str(path))
    assert result.code == 0 and "16x5x5" in result.out


def test_models_lists_every_preset(cli):
    result = cli("models", "--json")
    names = [row["name"] for row in json.loads(result.out)]
    assert names == list(PRESETS)
    table = cli("models").out
    for name in PRESETS:
        assert name in table


@pytest.mark.parametrize(
    "argv, words",
    [
        (["summary", "conv(32,3,padding=same relu", "--input", "1x28x28"], "column 24"),
        (["summary", "color-cnn", "--input", "3x32x32"], "32768 needs a 3x256x256 input"),
        (["summary", "conv(8,3)"], "no input shape"),
        (["summary", "tutorial", "--input", "28x28"], "CxHxW"),
        (["summary", "nosuchmodel"], "not a preset"),
    ],
)
def test_bad_models_exit_nonzero_with_the_explained_message(cli, argv, words):
    result = cli(*argv)
    assert result.code != 0
    assert words in result.err
    assert "Traceback" not in result.err + result.out


def test_a_real_process_prints_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", "summary", "input(1x4x4) conv(8, 5)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: layer 1 conv(8, 5) gets 1x4x4")
    assert "Traceback" not in proc.stderr
