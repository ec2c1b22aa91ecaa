"""`cnnlab patches`: receptive-field windows checked against torch gradients, top images checked
against a direct computation, the crops against the image, and the command's files and errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from PIL import Image

import cnnlab
from cnnlab.deploy.predict import Predictor
from cnnlab.errors import ConfigError
from cnnlab.evaluate.patches import (
    PAD_VALUE,
    Window,
    crop_window,
    layer_geometry,
    map_layers,
    top_patches,
)
from cnnlab.evaluate.scores import split_images
from cnnlab.model.cnn import CnnModel
from cnnlab.model.inference import normalize
from cnnlab.run.folder import Run
from cnnlab.server.app import create_app
from cnnlab.spec.language import parse_spec

# Models whose receptive fields have no holes: every input pixel of a window reaches the cell.
DENSE_MODELS = [
    # stride, Keras-style 'same' with an even kernel and stride 2, padded max pooling
    "input(1x15x13) conv(2,4,stride=2,padding=same) relu maxpool(3,2,padding=1) "
    "conv(2,(2,3),padding=same) avgpool(2,1)",
    # dilation in conv and in pooling, on top of windows wide enough to leave no gaps
    "input(1x16x14) conv(2,3,padding=1) conv(2,3,dilation=2,padding=same) "
    "maxpool(2,dilation=2) conv(2,3,stride=2) relu",
    # asymmetric padding, ceil-mode pooling, a rectangular kernel and stride
    "input(1x12x17) conv(2,(3,5),stride=(1,2),padding=(2,1)) maxpool(2,ceil_mode=true) "
    "conv(2,(1,3))",
]
# Dilation on a 1-pixel field: the window has holes (only every third pixel reaches the cell).
HOLED_MODEL = "input(1x12x12) conv(1,3,dilation=3)"

MODEL = "conv(4,3,padding=same) relu maxpool(2) conv(6,3,stride=2,padding=1) relu flatten fc(10)"
TEST_SIZE = 120


def positive_model(text: str) -> CnnModel:
    """The spec's model in float64 with every weight and bias positive (no cancellations)."""
    model = CnnModel(parse_spec(text)).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.abs() + 0.1)
    return model


def gradient_support(model: CnnModel, layer: str, cell: tuple[int, int]) -> torch.Tensor:
    """(H, W) bool: the input pixels with a non-zero gradient of channel 0 at `cell` of `layer`.

    One image per pixel, that pixel raised far above the others: max pooling then passes the
    gradient to it whenever it lies in the cell's window (a plain image would reach only the
    window's argmax), and convolution and average pooling always do.
    """
    names = [name for name, _ in model.named_children()]
    modules = list(model.children())[: names.index(layer) + 1]
    c, h, w = model.input_shape
    pixel = torch.arange(h * w)
    x = torch.ones(h * w, c, h, w, dtype=torch.float64)
    x[pixel, :, pixel // w, pixel % w] += 1000.0
    x.requires_grad_(True)
    out = x
    for module in modules:
        out = module(out)
    out[:, 0, cell[0], cell[1]].sum().backward()  # image b's output depends only on image b
    return (x.grad[pixel, :, pixel // w, pixel % w].abs().sum(1) > 0).view(h, w)


def window_mask(window: Window, h: int, w: int) -> torch.Tensor:
    mask = torch.zeros(h, w, dtype=torch.bool)
    part = window.clipped(h, w)
    mask[part.top : part.bottom, part.left : part.right] = True
    return mask


def corner_and_middle_cells(height: int, width: int) -> set[tuple[int, int]]:
    return {(0, 0), (height - 1, width - 1), (0, width - 1), (height // 2, width // 2)}


@pytest.mark.parametrize("text", DENSE_MODELS)
def test_every_window_is_exactly_the_input_pixels_with_a_gradient(text):
    model = positive_model(text)
    _, h, w = model.input_shape
    for layer in map_layers(model.report):
        geometry = layer_geometry(model.report, layer)
        _, out_h, out_w = geometry.out_shape
        for cell in corner_and_middle_cells(out_h, out_w):
            support = gradient_support(model, layer, cell)
            expected = window_mask(geometry.window(*cell), h, w)
            assert torch.equal(support, expected), (layer, cell, geometry)


def test_a_dilated_window_with_holes_bounds_the_gradient_pixels():
    model = positive_model(HOLED_MODEL)
    geometry = layer_geometry(model.report, "conv1")
    assert geometry.size == (7, 7) and geometry.start == (0, 0)
    support = gradient_support(model, "conv1", (2, 3))
    window = geometry.window(2, 3)
    rows, cols = support.any(1).nonzero().flatten(), support.any(0).nonzero().flatten()
    # the taps are the window's corners and every third pixel between: the bounding box is it
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (
        window.top,
        window.bottom,
        window.left,
        window.right,
    )
    assert int(support.sum()) == 9


def test_the_geometry_matches_the_map_sizes_torch_computes():
    """The last cell's window starts inside the image, and the map has the analysed shape."""
    for text in DENSE_MODELS:
        model = positive_model(text)
        x = torch.zeros(1, *model.input_shape, dtype=torch.float64)
        _, h, w = model.input_shape
        for name, module in model.named_children():
            x = module(x)
            if name in map_layers(model.report):
                geometry = layer_geometry(model.report, name)
                assert tuple(x.shape[1:]) == geometry.out_shape
                last = geometry.window(x.shape[2] - 1, x.shape[3] - 1)
                assert last.clipped(h, w).height > 0 and last.clipped(h, w).width > 0


def test_a_layer_without_maps_or_a_missing_one_names_the_valid_layers():
    model = positive_model("input(1x8x8) conv(2,3) relu flatten fc(3)")
    for wrong, said in (("fc1", "fc1 gives a flat vector"), ("conv9", "has no layer conv9")):
        with pytest.raises(ConfigError) as caught:
            layer_geometry(model.report, wrong)
        assert said in str(caught.value)
        assert "conv1, relu1" in str(caught.value)


def test_a_crop_copies_the_window_and_greys_what_lies_outside():
    image = torch.arange(2 * 5 * 6, dtype=torch.uint8).view(2, 5, 6)
    window = Window(-2, 3, 4, 5)  # rows -2..1, columns 3..7 of a 5x6 image
    crop = crop_window(image, window)
    padded = F.pad(image, (4, 4, 4, 4), value=PAD_VALUE)  # a frame wider than the window's overhang
    assert torch.equal(crop, padded[:, 2:6, 7:12])
    assert (crop[:, :2] == PAD_VALUE).all() and (crop[:, :, 3:] == PAD_VALUE).all()
    assert not window.inside(5, 6) and Window(1, 1, 3, 3).inside(5, 6)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("patches") / "run"
    return cnnlab.train(
        model=MODEL,
        data="shapes",
        train_size=400,
        test_size=TEST_SIZE,
        epochs=1,
        batch_size=64,
        quiet=True,
        out=str(out),
    )


@pytest.mark.parametrize("layer", ["relu1", "conv2"])
def test_the_top_images_are_the_largest_activations(run, layer):
    model = run.load_model().eval()
    images, labels, _ = split_images(run)
    captured = {}
    hook = model.get_submodule(layer).register_forward_hook(
        lambda module, inputs, output: captured.update(maps=output.detach().clone())
    )
    with torch.no_grad():
        model(normalize(images, run.mean, run.std))
    hook.remove()
    maps = captured["maps"]  # (N, K, H, W), the whole test set at once
    per_image = maps.flatten(2).amax(2)  # (N, K)
    result = top_patches(model, images, labels, run.classes, (run.mean, run.std), layer, 5, 3)
    assert result.channels == [0, 1, 2] and result.images == TEST_SIZE
    geometry = result.geometry
    for channel, row in zip(result.channels, result.patches, strict=True):
        direct = per_image[:, channel].sort(descending=True).values[:5]
        assert torch.allclose(torch.tensor([p.activation for p in row]), direct, atol=1e-5)
        for patch in row:
            y, x = patch.position
            assert maps[patch.index, channel, y, x].item() == pytest.approx(
                patch.activation, abs=1e-5
            )
            assert patch.window == geometry.window(y, x)
            assert torch.equal(patch.crop, crop_window(images[patch.index], patch.window))
            assert patch.label == run.classes[int(labels[patch.index])]


def test_the_command_draws_the_grid_and_prints_json(run, cli, tmp_path):
    out = tmp_path / "grid.png"
    result = cli(
        "patches",
        str(run.path),
        "--layer",
        "conv2",
        "--top",
        "4",
        "--channels",
        "3",
        "--out",
        str(out),
        "--json",
    )
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["layer"] == "conv2" and data["written"] == [str(out)]
    assert [c["channel"] for c in data["channels"]] == [0, 1, 2]
    assert all(len(c["top"]) == 4 for c in data["channels"])
    geometry = layer_geometry(run.load_model().report, "conv2")
    assert data["receptive_field"] == list(geometry.size) and data["start"] == list(geometry.start)
    first = data["channels"][0]["top"][0]
    assert first["window"]["bottom"] - first["window"]["top"] == geometry.size[0]
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_the_command_defaults_to_the_last_conv_and_explains_in_text(run, cli):
    result = cli("patches", str(run.path), "--top", "2", "--channels", "2")
    assert result.code == 0, result.err
    assert "conv2: conv(6, 3, stride=2, padding=1)" in result.out
    assert "each cell sees 8x8 px" in result.out
    assert (run.path / "patches" / "conv2.png").is_file()


def test_the_command_refuses_a_wrong_layer_with_the_valid_names(run, cli):
    result = cli("patches", str(run.path), "--layer", "fc1")
    assert result.code == 2 and "Traceback" not in result.err
    assert "error: fc1 gives a flat vector" in result.err
    assert "conv1, relu1, maxpool1, conv2, relu2" in result.err
    result = cli("patches", str(run.path), "--top", "0")
    assert result.code == 2 and "--top 0" in result.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--top", "17"], "--top 17 is out of range: give 1 to 16"),
        (["--channels", "65"], "--channels 65 is out of range: give 1 to 64"),
    ],
)
def test_the_command_and_the_server_share_one_limit(run, cli, argv, message):
    # 200 x 64 patches ran for minutes and gigabytes and wrote nothing: the CLI caps as /run does
    result = cli("patches", str(run.path), *argv)
    assert result.code == 2 and message in result.err, result.err
    assert "Traceback" not in result.err
    app = create_app(Predictor(run, "eager"))
    with TestClient(app) as client:
        answer = client.get("/api/run/patches", params={argv[0].removeprefix("--"): argv[1]})
        assert answer.status_code == 422, answer.text
