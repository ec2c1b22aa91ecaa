"""Architecture diagrams: every layer's shape, as analyze() and torch give it, in the picture."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.artist import Artist
from PIL import Image

from cnnlab.errors import CnnlabError, OutputError
from cnnlab.figures.canvas import new_figure, save_figure
from cnnlab.figures.diagram import diagram_blocks, diagram_figure, shape_label
from cnnlab.model.cnn import build_model
from cnnlab.model.presets import PRESETS, resolve_model
from cnnlab.spec.analysis import analyze


def svg_texts(path) -> list[str]:
    """The content of every <text> element (matplotlib writes text as text: svg.fonttype none)."""
    return ["".join(el.itertext()) for el in ET.parse(path).iter() if el.tag.endswith("}text")]


def torch_shapes(model_name: str) -> list[tuple[int, ...]]:
    """Each layer's output shape per image, from a real forward pass."""
    model = build_model(model_name).eval()
    shapes = []
    with torch.no_grad():
        x = torch.zeros(1, *model.input_shape)
        for module in model.children():  # every layer, the final softmax too
            x = module(x)
            shapes.append(tuple(x.shape[1:]))
    return shapes


@pytest.mark.parametrize("name", list(PRESETS))
def test_svg_labels_every_layer_with_its_shape_from_analyze_and_torch(name, tmp_path):
    report = analyze(resolve_model(name))
    path = save_figure(diagram_figure(report), tmp_path / f"{name}.svg")
    texts = svg_texts(path)
    assert shape_label(report.input_shape) in texts
    for layer, shape in zip(report.layers, torch_shapes(name), strict=True):
        assert layer.out_shape == shape
        assert shape_label(shape) in texts, layer.name
        if layer.inner:  # a res block: its add, then each of its own layers
            skip = "shortcut" if any(".shortcut." in i.name for i in layer.inner) else "input"
            assert f"{layer.name}: layers + {skip}" in texts
            assert all(any(inner.layer.text() in t for t in texts) for inner in layer.inner)
        else:
            assert f"{layer.name}: {layer.layer.text()}" in texts


def test_blocks_group_shape_keeping_layers():
    # conv-BN-ReLU-pool blocks, spelled out (the default preset pools before BatchNorm now)
    report = analyze(
        resolve_model(
            "input(1x28x28) conv(32,3,padding=same) batchnorm relu maxpool(2) "
            "conv(64,3,padding=same) batchnorm relu maxpool(2) "
            "conv(128,3,padding=same) batchnorm relu maxpool(2) flatten fc(10)"
        )
    )
    blocks = diagram_blocks(report)
    assert [b.kind for b in blocks] == [
        "input",
        "conv",
        "maxpool",
        "conv",
        "maxpool",
        "conv",
        "maxpool",
        "flatten",
        "fc",
    ]
    assert [r.name for r in blocks[1].layers] == ["conv1", "batchnorm1", "relu1"]
    assert blocks[1].shape == (32, 28, 28) and blocks[-2].shape == (1152,)
    every = diagram_blocks(report, every_layer=True)
    assert len(every) == len(report.layers) + 1
    assert [b.shape for b in every[1:]] == [r.out_shape for r in report.layers]


def test_boxes_grow_with_height_and_channels():
    figure = diagram_figure(resolve_model("tutorial"))
    ax = figure.axes[0]
    fronts = [p for p in ax.patches if type(p).__name__ == "Rectangle"]
    # input 1x28x28, conv 32x28x28, pool 32x14x14, conv 64x14x14, pool 64x7x7, flatten, fc
    heights = [p.get_height() for p in fronts]
    widths = [p.get_width() for p in fronts]
    assert heights[1] == heights[0] and widths[1] > widths[0]  # more channels: thicker
    assert heights[2] < heights[1]  # pooling halves H: lower
    assert widths[3] > widths[2]  # 64 channels thicker than 32


def test_png_is_a_real_drawing(tmp_path):
    path = save_figure(diagram_figure(resolve_model("lenet5")), tmp_path / "lenet5.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.shape[1] > 2 * pixels.shape[0]  # a left-to-right flow
    assert (pixels < 128).mean() > 0.005 and (pixels > 250).mean() > 0.5
    assert len(np.unique(pixels)) > 20


def test_cli_writes_png_and_svg_for_a_spec(cli, tmp_path):
    png, svg = tmp_path / "m.png", tmp_path / "m.svg"
    spec = "conv(8,3,stride=2) relu maxpool(2) flatten fc(10)"
    result = cli("diagram", spec, "--input", "3x32x32", "--out", str(png), "--out", str(svg))
    assert result.code == 0, result.err
    with Image.open(png) as image:
        assert image.format == "PNG"
    texts = svg_texts(svg)
    for shape in ("3 x 32 x 32", "8 x 15 x 15", "8 x 7 x 7", "392", "10"):
        assert shape in texts
        assert shape in result.out
    assert f"wrote {png}" in result.out and f"wrote {svg}" in result.out


def test_cli_format_option_and_default_name(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("diagram", "keras-mnist", "--format", "svg")
    assert result.code == 0, result.err
    assert "64 x 11 x 11" in svg_texts(tmp_path / "model.svg")
    result = cli("diagram", "keras-mnist", "--out", "plain", "--format", "png")
    assert result.code == 0 and (tmp_path / "plain.png").is_file()


def test_cli_refuses_impossible_models_without_drawing(cli, tmp_path):
    out = tmp_path / "x.png"
    result = cli("diagram", "color-cnn", "--input", "3x32x32", "--out", str(out))
    assert result.code == 2 and "in=32768" in result.err
    assert not out.exists()


def test_cli_unwritable_out_is_an_error_not_a_traceback(cli):
    result = cli("diagram", "lenet5", "--out", "/proc/nope/x.png")
    assert result.code == 2
    assert "error:" in result.err and "/proc/nope/x.png" in result.err
    assert "Traceback" not in result.err


def test_save_figure_names_the_path_and_the_reason(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match=r"cannot write .*file/x\.svg: .*") as info:
        save_figure(diagram_figure(analyze(resolve_model("lenet5"))), blocker / "x.svg")
    assert isinstance(info.value, CnnlabError)


# --- a figure is written whole or not at all -----------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KiB tmpfs: a disk that fills up (needs root, or a user mount namespace)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small disk to fill")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (not root?): {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _fill(disk: Path) -> None:
    """Fill `disk` to the last byte."""
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0")
        except OSError:
            pass


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_a_full_disk_keeps_the_old_figure_and_leaves_no_partial_file(small_disk, cli):
    keep = save_figure(new_figure(1, 1), small_disk / "keep.png")
    before = _md5(keep)
    _fill(small_disk)
    with pytest.raises(OutputError, match="keep.png"):
        save_figure(diagram_figure(analyze(resolve_model("lenet5"))), keep)
    assert _md5(keep) == before
    with Image.open(keep) as image:
        image.verify()  # still the whole PNG
    for argv in (
        ("diagram", "lenet5", "--out", str(small_disk / "new.png")),
        ("datasets", "show", "shapes", "--per-class", "2", "--out", str(small_disk / "s.png")),
    ):
        result = cli(*argv)
        assert result.code == 2 and "Traceback" not in result.err, result.err
    # no 0-byte figure, no temporary file left behind
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "keep.png"]


class _FailsWhileWritten(Artist):
    """An artist that draws for the size measurement, then fails once the file is being written."""

    def __init__(self) -> None:
        super().__init__()
        self.draws = 0

    def draw(self, renderer) -> None:
        self.draws += 1  # 1: bbox_inches='tight' measures; 2: the real drawing into the file
        if self.draws > 1:
            raise RuntimeError("drawing failed")


@pytest.mark.parametrize("suffix", ["svg", "png"])
def test_an_error_while_saving_keeps_the_old_figure_and_leaves_no_temp_file(tmp_path, suffix):
    keep = save_figure(diagram_figure(analyze(resolve_model("lenet5"))), tmp_path / f"k.{suffix}")
    before = _md5(keep)
    figure = new_figure(2, 2)
    figure.add_artist(_FailsWhileWritten())
    with pytest.raises(RuntimeError, match="drawing failed"):
        save_figure(figure, keep)
    assert _md5(keep) == before
    assert [p.name for p in tmp_path.iterdir()] == [keep.name]
