"""Pictures of a trained run: grids, curves, filters, feature maps, run diagrams, checked by content."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.evaluate.featuremaps import FeatureMap, feature_maps
from cnnlab.evaluate.filters import conv_filters
from cnnlab.evaluate.grids import (
    ZERO_WEIGHT,
    default_columns,
    feature_map_grid,
    filter_grid,
    tile_images,
)
from cnnlab.evaluate.maplayers import default_map_layers, output_layers
from cnnlab.evaluate.samples import load_sample
from cnnlab.figures.curves import curves_figure
from cnnlab.figures.filters import filters_figure
from cnnlab.figures.maps import featuremaps_figure
from cnnlab.run.folder import Run
from cnnlab.spec.kinds import LAYER_KINDS

# Every kind of map layer, two conv layers with more than one input channel, a 3-channel input
# would need colour data: the colour path is tested on a hand-made weight below.
MODEL = (
    "conv(6,3,padding=same) batchnorm relu maxpool(2) conv(10,3) leakyrelu avgpool(2) "
    "conv(12,2) tanh flatten dropout(0.2) fc(10)"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    """Two quick epochs with a validation split: every curve has two points."""
    out = tmp_path_factory.mktemp("vis") / "run"
    return cnnlab.train(
        model=MODEL,
        data="shapes",
        train_size=1200,
        test_size=400,
        val_split=0.2,
        epochs=2,
        batch_size=64,
        quiet=True,
        out=str(out),
    )


def png_pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def assert_not_blank(path, min_side: int = 100) -> np.ndarray:
    """A real picture: big enough, many distinct colours, not one colour everywhere."""
    pixels = png_pixels(path)
    assert min(pixels.shape[:2]) >= min_side
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20
    assert (pixels != pixels[0, 0]).any(axis=2).mean() > 0.05
    return pixels


def svg_texts(path) -> list[str]:
    return ["".join(el.itertext()) for el in ET.parse(path).iter() if el.tag.endswith("}text")]


# --- grids (numpy only) ---------------------------------------------------------------------


def test_tile_images_places_every_tile_and_masks_only_the_gaps():
    tiles = np.arange(5 * 2 * 3, dtype=np.uint8).reshape(5, 2, 3)
    grid = tile_images(tiles, columns=2, pad=1, fill=255)
    assert (grid.rows, grid.columns, grid.count) == (3, 2, 5)
    assert grid.pixels.shape == (3 * 3 - 1, 2 * 4 - 1)
    for i in range(5):
        np.testing.assert_array_equal(grid.tile(i), tiles[i])
    mask = grid.separators()
    assert (~mask).sum() == 5 * 2 * 3  # exactly the tiles' pixels are unmasked
    assert (grid.pixels[mask] == 255).all()
    with pytest.raises(IndexError):
        grid.tile(5)


def test_zoom_repeats_pixels():
    tiles = np.array([[[1, 2], [3, 4]]], dtype=np.uint8)
    grid = tile_images(tiles, zoom=3)
    assert grid.tile_shape == (6, 6)
    np.testing.assert_array_equal(grid.pixels[:3, :3], 1)
    np.testing.assert_array_equal(grid.pixels[3:, 3:], 4)


@pytest.mark.parametrize("count, columns", [(1, 1), (6, 4), (10, 4), (16, 4), (32, 8), (128, 16)])
def test_default_columns(count, columns):
    assert default_columns(count) == columns


def test_feature_map_grid_has_one_tile_per_channel_each_min_max_scaled():
    values = torch.randn(5, 7, 9)
    values[3] = 2.5  # a flat channel (e.g. dead after ReLU) is all 0, not a division by zero
    grid = feature_map_grid(FeatureMap("conv1", "conv(5, 3)", "conv", values))
    assert grid.count == 5 and grid.tile_shape == (7, 9)
    assert grid.pixels.dtype == np.uint8 and grid.pixels.ndim == 2
    for c in range(5):
        tile = grid.tile(c).astype(np.int64)
        if c == 3:
            assert (tile == 0).all()
            continue
        assert tile.min() == 0 and tile.max() == 255
        v = values[c].numpy()
        expected = np.floor((v - v.min()) / (v.max() - v.min()) * 255 + 0.5)
        np.testing.assert_array_equal(tile, expected)


def test_a_flat_output_is_one_near_square_tile():
    grid = feature_map_grid(FeatureMap("fc1", "fc(10)", "fc", torch.arange(10.0)))
    assert grid.count == 1 and grid.tile_shape == (3, 4)
    tile = grid.tile(0)
    assert tile[0, 0] == 0 and tile[2, 1] == 255  # the 10th value is the largest


@pytest.mark.parametrize("out_c, in_c", [(4, 1), (3, 5), (8, 2)])
def test_filter_grid_has_out_times_in_tiles_on_one_symmetric_scale(out_c, in_c):
    torch.manual_seed(out_c * in_c)
    weight = torch.randn(out_c, in_c, 3, 2)
    grid = filter_grid(weight)
    assert grid.count == out_c * in_c and grid.tile_shape == (3, 2)
    if in_c > 1:  # a row per filter, a column per input channel
        assert (grid.rows, grid.columns) == (out_c, in_c)
    top = weight.abs().max()
    for o in range(out_c):
        for i in range(in_c):
            expected = (ZERO_WEIGHT + weight[o, i] / top * 127).round().numpy()
            np.testing.assert_array_equal(grid.tile(o * in_c + i), expected)
    tiles = np.stack([grid.tile(k) for k in range(grid.count)])
    assert {0, 1}.intersection(tiles.flatten()) or 255 in tiles  # the largest |w| hits an end


def test_rgb_filter_grid_is_one_colour_tile_per_filter():
    weight = torch.zeros(4, 3, 3, 3)
    weight[1, 0] = 1.0  # filter 1 looks only at red
    weight[2, 2] = -1.0  # filter 2 is negative on blue
    grid = filter_grid(weight, rgb=True)
    assert grid.count == 4 and grid.pixels.shape[2] == 3
    np.testing.assert_array_equal(grid.tile(1)[1, 1], [255, ZERO_WEIGHT, ZERO_WEIGHT])
    np.testing.assert_array_equal(grid.tile(2)[0, 0], [ZERO_WEIGHT, ZERO_WEIGHT, 1])
    with pytest.raises(ValueError):
        filter_grid(torch.zeros(4, 2, 3, 3), rgb=True)


def test_grids_need_no_matplotlib():
    """The server draws PNGs from grids.py alone."""
    code = "import sys, cnnlab.evaluate.grids; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- figures of a real run ------------------------------------------------------------------


def test_curves_have_one_point_per_epoch_in_each_line(run):
    rows = run.epoch_metrics()
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    figure = curves_figure(rows, "t", run.metrics["test_accuracy"])
    loss, accuracy, lr = figure.axes
    assert [line.get_label() for line in loss.lines] == ["train", "validation"]
    assert [line.get_label() for line in accuracy.lines] == ["train", "validation"]
    assert [line.get_label() for line in lr.lines] == ["lr"]
    columns = {
        (0, "train"): "train_loss",
        (0, "validation"): "val_loss",
        (1, "train"): "train_accuracy",
        (1, "validation"): "val_accuracy",
        (2, "lr"): "lr",
    }
    for (panel, label), column in columns.items():
        (line,) = [ln for ln in figure.axes[panel].lines if ln.get_label() == label]
        np.testing.assert_array_equal(line.get_xdata(), [1, 2])
        np.testing.assert_allclose(line.get_ydata(), [r[column] for r in rows])
    assert f"{run.metrics['test_accuracy']:.2%}" in accuracy.get_title()


def test_curves_without_validation_have_no_validation_line():
    rows = [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "train_accuracy": 0.2 * e,
            "lr": 0.1,
            "val_loss": np.nan,
        }
        for e in (1, 2, 3)
    ]
    loss, accuracy, _ = curves_figure(rows).axes
    assert [ln.get_label() for ln in loss.lines] == ["train"]
    assert len(loss.lines[0].get_xdata()) == 3 and accuracy.lines[0].get_label() == "train"


def test_featuremaps_figure_has_a_grid_per_layer_and_a_tile_per_channel(run):
    model = run.load_model()
    sample = load_sample(run, "test:3")
    maps = feature_maps(model, sample.model_input(run))
    shown = default_map_layers(maps)
    assert [m.kind for m in shown] == [
        "conv", "relu", "maxpool", "conv", "leakyrelu", "avgpool", "conv", "tanh",
    ]  # fmt: skip
    assert all(LAYER_KINDS[m.kind].shows_map for m in shown)
    figure = featuremaps_figure(sample.image, shown, "title")
    assert len(figure.axes) == 1 + len(shown)  # the input, then one section per layer
    np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), sample.image[0].numpy())
    for ax, fm in zip(figure.axes[1:], shown, strict=True):
        grid = feature_map_grid(fm)
        c, h, w = fm.values.shape
        assert grid.count == c and grid.tile_shape == (h, w)
        drawn = ax.images[0].get_array()
        np.testing.assert_array_equal(drawn.data, grid.pixels)
        np.testing.assert_array_equal(np.ma.getmaskarray(drawn), grid.separators())
        # the number of panels drawn: unmasked pixels are exactly C tiles of H x W
        assert (~np.ma.getmaskarray(drawn)).sum() == c * h * w
        title = ax.get_title()
        assert fm.name in title and fm.layer in title and f"{c} x {h} x {w}" in title


def test_flat_outputs_are_a_tile_of_their_values_or_bars_per_class(run):
    model = run.load_model()
    maps = feature_maps(model, load_sample(run, "test:1").model_input(run))
    assert output_layers(maps) == ["fc1"]
    flat = [m for m in maps if m.name in ("flatten1", "fc1")]
    assert [m.values.shape for m in flat] == [(300,), (10,)]
    figure = featuremaps_figure(load_sample(run, "test:1").image, flat, "", {"fc1": run.classes})
    tile_ax, bars_ax = figure.axes[1:]
    # flatten: one 18x17 tile, exactly its 300 values drawn (the unused end left white)
    assert (~np.ma.getmaskarray(tile_ax.images[0].get_array())).sum() == 300
    # fc: one bar per class, at the logit's height, named by the class
    heights = [patch.get_height() for patch in bars_ax.patches]
    np.testing.assert_allclose(heights, flat[1].values.numpy(), rtol=1e-6)
    assert [t.get_text() for t in bars_ax.get_xticklabels()] == run.classes


def test_filters_figure_draws_out_times_in_tiles_per_conv_layer(run):
    layers = conv_filters(run.load_model())
    assert [f.name for f in layers] == ["conv1", "conv2", "conv3"]
    assert [tuple(f.weight.shape) for f in layers] == [(6, 1, 3, 3), (10, 6, 3, 3), (12, 10, 2, 2)]
    figure = filters_figure(layers)
    assert len(figure.axes) == 3
    for ax, f in zip(figure.axes, layers, strict=True):
        out_c, in_c = f.weight.shape[:2]
        grid = filter_grid(f.weight)
        assert grid.count == out_c * in_c
        drawn = ax.images[0].get_array()
        np.testing.assert_array_equal(drawn.data, grid.pixels)
        assert (~np.ma.getmaskarray(drawn)).sum() == out_c * in_c * f.weight[0, 0].numel()
        assert f.name in ax.get_title() and f.shape_text in ax.get_title()


# --- the commands ---------------------------------------------------------------------------


def test_plot_writes_curves_into_the_run(run, cli):
    result = cli("plot", str(run.path))
    assert result.code == 0, result.err
    assert_not_blank(run.path / "curves.png")
    assert f"wrote {run.path / 'curves.png'}" in result.out
    assert "2 epoch(s)" in result.out and f"{run.metrics['test_accuracy']:.2%}" in result.out


def test_plot_svg_and_json(run, cli, tmp_path):
    out = tmp_path / "c.svg"
    result = cli("plot", str(run.path), "--out", str(out), "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert [e["epoch"] for e in data["epochs"]] == [1, 2] and data["written"] == [str(out)]
    assert "validation" in svg_texts(out)


def test_filters_command_defaults_to_every_conv_layer(run, cli):
    result = cli("filters", str(run.path), "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert [(r["layer"], r["tiles"]) for r in data["layers"]] == [
        ("conv1", 6),
        ("conv2", 60),
        ("conv3", 120),
    ]
    assert_not_blank(run.path / "filters.png")


def test_filters_command_one_layer_and_bad_names(run, cli, tmp_path):
    out = tmp_path / "conv2.png"
    result = cli("filters", str(run.path), "--layer", "conv2", "--out", str(out))
    assert result.code == 0, result.err
    assert "10 x 6 x 3 x 3" in result.out and "conv1" not in result.out
    assert_not_blank(out)
    result = cli("filters", str(run.path), "--layer", "relu1")
    assert result.code == 2 and "relu1 is not a conv layer" in result.err and "conv3" in result.err
    result = cli("filters", str(run.path), "--layer", "conv9")
    assert result.code == 2 and "no layer conv9" in result.err


def test_featuremaps_command_from_the_test_split(run, cli):
    result = cli("featuremaps", str(run.path), "test:3", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    sample = load_sample(run, "test:3")
    assert data["true"] == sample.label
    model = run.load_model()
    with torch.no_grad():
        probabilities = model.probabilities(sample.model_input(run))[0]
    expected = probabilities.topk(3)
    assert [p["class"] for p in data["top"]] == [run.classes[i] for i in expected.indices]
    np.testing.assert_allclose([p["probability"] for p in data["top"]], expected.values, rtol=1e-5)
    assert [r["layer"] for r in data["layers"]][:3] == ["conv1", "relu1", "maxpool1"]
    relu = data["layers"][1]
    assert relu["min"] >= 0 and relu["shape"] == [6, 28, 28]
    path = run.path / "featuremaps" / "test-3.png"
    assert data["written"] == [str(path)]
    assert_not_blank(path)


def test_featuremaps_of_an_image_file_match_the_same_test_image(run, cli, tmp_path):
    sample = load_sample(run, "test:5")
    photo = tmp_path / "shape.png"
    Image.fromarray(sample.image[0].numpy()).save(photo)
    from_file = json.loads(cli("featuremaps", str(run.path), str(photo), "--json").out)
    from_split = json.loads(cli("featuremaps", str(run.path), "test:5", "--json").out)
    assert from_file["true"] is None and from_file["top"] == from_split["top"]
    assert from_file["written"] == [str(run.path / "featuremaps" / "shape.png")]


def test_featuremaps_layers_option_and_text_output(run, cli, tmp_path):
    out = tmp_path / "maps.svg"
    result = cli(
        "featuremaps", str(run.path), "test:0", "--layers", "conv1,relu1", "--out", str(out)
    )
    assert result.code == 0, result.err
    assert "true class" in result.out and "top 3" in result.out
    texts = svg_texts(out)
    assert any(t.startswith("conv1: conv(6, 3, padding=same) -> 6 x 28 x 28") for t in texts)
    assert any(t.startswith("relu1: relu -> 6 x 28 x 28") for t in texts)
    assert not any(t.startswith("maxpool1") for t in texts)
    every = json.loads(cli("featuremaps", str(run.path), "test:0", "--layers", "all", "--json").out)
    assert [r["layer"] for r in every["layers"]][-2:] == ["dropout1", "fc1"]
    assert every["layers"][-1]["shape"] == [10]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["test:400"], "has 400 images; use an index from 0 to 399"),
        (["val:99999"], "val split"),
        (["nothing.png"], "does not exist"),
        (["test:0", "--layers", "conv7"], "no layer conv7"),
        (["test:0", "--top", "0"], "--top 0"),
    ],
)
def test_featuremaps_refuses_bad_input(run, cli, argv, message):
    result = cli("featuremaps", str(run.path), *argv)
    assert result.code == 2 and message in result.err, result.err


def test_featuremaps_refuses_a_file_that_is_not_an_image(run, cli, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    result = cli("featuremaps", str(run.path), str(bad))
    assert result.code == 2 and "error:" in result.err and "Traceback" not in result.err


def test_diagram_of_a_run_names_it_and_its_test_accuracy(run, cli):
    result = cli("diagram", str(run.path), "--format", "svg")
    assert result.code == 0, result.err
    path = run.path / "diagram.svg"
    texts = " ".join(svg_texts(path))
    assert (
        f"run {run.name}" in texts and f"test accuracy {run.metrics['test_accuracy']:.2%}" in texts
    )
    assert "6 x 28 x 28" in texts and "10" in texts
    refused = cli("diagram", str(run.path), "--input", "1x32x32")
    assert refused.code == 2 and "drop --input" in refused.err


def test_commands_on_a_missing_run_say_so(cli, tmp_path):
    for command in (["plot"], ["filters"], ["featuremaps", "x", "test:0"]):
        argv = [command[0], str(tmp_path / "nope"), *command[2:]]
        result = cli(*argv)
        assert result.code == 2 and "does not exist" in result.err
