"""`cnnlab summary`, `models` and `spec`, driven in-process and once as a real process."""

from __future__ import annotations

import json
import re
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


def _explained_layers(out: str) -> list[tuple[str, str, str]]:
    """(heading, what the kind does, the paragraph rejoined where the console wrapped it)."""
    blocks = [b for b in out.split("\n\n") if re.match(r"\d+\. ", b)]
    return [
        (b.splitlines()[0], b.splitlines()[1].strip(), " ".join(b.splitlines()[2:])) for b in blocks
    ]


def test_summary_explain_works_every_number(cli):
    result = cli("summary", "keras-mnist", "--explain")
    assert result.code == 0
    out = " ".join(result.out.split())  # as one text: paragraphs wrap at the console's width
    assert "(3*3*1/1 + 1)*32 = 320 parameters" in out
    assert "floor((28 + 2*0 - 1*(3-1) - 1)/1) + 1 = 26" in out
    assert "(1600 + 1)*128 = 204928 parameters" in out
    assert "r = 1 + 1*(3-1)*1 = 3" in out


def test_summary_explain_is_a_worked_paragraph_per_layer(cli):
    """README: `summary MODEL --explain` gives a worked paragraph per layer: in sentences, with
    the layer's own numbers, how its output shape, parameters and receptive field come about."""
    result = cli("summary", "tutorial", "--explain")
    layers = _explained_layers(result.out)
    assert [heading.split(":")[0] for heading, _, _ in layers] == [
        f"{i}. {name}"
        for i, name in enumerate(
            [
                "conv1",
                "relu1",
                "maxpool1",
                "conv2",
                "relu2",
                "maxpool2",
                "flatten1",
                "dropout1",
                "fc1",
            ],
            1,
        )
    ]
    for heading, _, paragraph in layers:
        # sentences, not a list of 'size: ...', 'parameters: ...' lines
        assert paragraph.startswith("   ") and paragraph.rstrip().endswith("."), heading
        assert not re.search(r"(^|\s)(size|parameters|FLOPs|receptive field|padding): ", paragraph)
    conv1, relu1, maxpool1, conv2, _, _, flatten1, _, fc1 = (p for _, _, p in layers)
    for worked in (
        "1x28x28",  # its input ...
        "32x28x28",  # ... and output shape
        "'same' pads 1*(3-1) = 2: 1 before, 1 after",  # how the padding comes about
        "floor((28 + 2*1 - 1*(3-1) - 1)/1) + 1 = 28",  # each side's size
        "(3*3*1/1 + 1)*32 = 320 parameters",
        "3x3 input pixels",  # the receptive field and its arithmetic
        "r = 1 + 1*(3-1)*1 = 3, j = 1*1 = 1",
        "2 x 225,792 multiply-adds = 451,584 FLOPs",
    ):
        assert worked in " ".join(conv1.split()), worked
    assert "no weights" in relu1 and "32x28x28" in relu1 and "3x3" in relu1  # keeps shape, RF
    assert "floor((28 + 2*0 - 1*(2-1) - 1)/2) + 1 = 14" in maxpool1 and "no weights" in maxpool1
    assert "4x4 input pixels" in maxpool1 and "r = 3 + 1*(2-1)*1 = 4" in maxpool1
    assert "(3*3*32/1 + 1)*64 = 18496 parameters" in conv2 and "8x8 input pixels" in conv2
    assert "64*7*7 = 3136" in flatten1
    assert "(3136 + 1)*10 = 31370 parameters" in fc1 and "whole input" in fc1


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
