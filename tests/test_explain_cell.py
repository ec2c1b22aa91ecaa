"""`explain_cell`: every total is torch's own output at that cell, over a table of layer kinds."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.explain.cell import TOLERANCE, Cell, Pixels, explain_cell, layer_index
from cnnlab.model.cnn import build_model

# (spec, input shape): each layer's every cell (up to MAX_CHANNELS channels) is checked.
CASES = [
    ("conv(3, 3, padding=1)", (2, 6, 6)),
    ("conv(3, 3, padding=2, dilation=2, padding_mode=reflect)", (2, 7, 7)),
    ("conv(3, (3,2), stride=2, padding=1, padding_mode=replicate)", (2, 7, 8)),
    ("conv(2, 3, padding=(1,2), padding_mode=circular)", (1, 5, 6)),
    ("conv(3, 4, padding=same)", (2, 6, 7)),  # even kernel: the odd pixel bottom/right
    ("conv(3, 3, stride=2, padding=same, padding_mode=reflect)", (2, 7, 7)),  # Keras-style
    ("conv(2, 4, stride=3, padding=same, dilation=1, padding_mode=circular)", (1, 8, 7)),
    ("conv(4, 3, groups=4, padding=1)", (4, 5, 5)),  # depthwise
    ("conv(6, 3, groups=2, padding=1, bias=false)", (4, 5, 5)),
    ("conv(3, 3) batchnorm relu", (2, 6, 6)),
    ("conv(3, 3) leakyrelu(0.1) sigmoid tanh gelu", (1, 6, 6)),
    ("maxpool(3, stride=2, padding=1, ceil_mode=true)", (2, 7, 7)),
    ("maxpool(2, dilation=2)", (2, 7, 7)),
    ("minpool(3, stride=2, padding=1, ceil_mode=true)", (2, 6, 6)),
    ("avgpool(3, stride=2, padding=1, ceil_mode=true)", (2, 6, 6)),
    ("avgpool(3, stride=2, padding=1, count_include_pad=false, ceil_mode=true)", (2, 6, 6)),
    ("avgpool(2) gap", (2, 6, 6)),
    ("gap", (3, 10, 10)),  # 100 values: the sum is named, not written out
    ("gmp", (3, 10, 10)),
    ("gmp fc(4) batchnorm softmax", (3, 5, 5)),
    ("conv(4, 3) relu dropout(0.3) flatten fc(30) relu fc(12) softmax", (1, 6, 6)),
    ("conv(3, 3, padding=1) softmax", (1, 4, 4)),  # softmax over the channels of each cell
    # residual blocks: the identity (the layer below's value) and a projection shortcut; relu6
    ("conv(3, 3, padding=1) res(conv(3, 3, padding=same) batchnorm relu6) relu6", (2, 6, 6)),
    ("res(conv(4, 3, stride=2, padding=same) batchnorm, shortcut=conv(4, 1, stride=2))", (2, 7, 7)),
]
MAX_CHANNELS = 3


def randomised(spec: str, shape: tuple[int, int, int]) -> nn.Module:
    """The model with batchnorm statistics that are not the identity (eval mode uses them)."""
    torch.manual_seed(0)
    model = build_model(spec, shape)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.3, 3)
            nn.init.uniform_(module.weight, -2, 2)
            nn.init.uniform_(module.bias, -1, 1)
    return model


def cells(shape: list[int]):
    """Every (channel, (y, x)) of a layer's output, channels cut to MAX_CHANNELS."""
    for c in range(min(shape[0], MAX_CHANNELS)):
        if len(shape) == 1:
            yield c, (0, 0)
            continue
        for y in range(shape[1]):
            for x in range(shape[2]):
                yield c, (y, x)


def outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's output run independently of the explainer: the reference."""
    out = []
    with torch.no_grad():
        for module in model.children():
            x = module(x)
            out.append(x[0])
    return out


@pytest.mark.parametrize("spec, shape", CASES, ids=[spec for spec, _shape in CASES])
def test_every_cell_total_is_torchs_value(spec, shape):
    model = randomised(spec, shape)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(1))
    reference = outputs(model.eval(), x)
    for index, expected in enumerate(reference, start=1):
        for channel, at in cells(list(expected.shape)):
            ex = explain_cell(model, x, index, channel, at)
            want = float(
                expected[channel, at[0], at[1]] if expected.ndim == 3 else expected[channel]
            )
            assert ex.matches, (spec, ex.name, channel, at, ex.total, ex.model_value)
            assert ex.model_value == pytest.approx(want, rel=1e-6, abs=1e-7)
            assert abs(ex.total - want) <= TOLERANCE * max(abs(want), ex.scale, 1e-30)
            json.dumps(ex.to_json(), allow_nan=False)  # what the server sends: no NaN, no inf


@pytest.mark.parametrize("spec, shape", CASES, ids=[spec for spec, _shape in CASES])
def test_every_source_cell_holds_the_value_the_step_reads(spec, shape):
    """A window cell links one layer down to the cell whose value it shows."""
    model = randomised(spec, shape)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(2))
    below = [x[0], *outputs(model.eval(), x)]
    for index in range(1, len(below)):
        out = below[index]
        at = (out.shape[1] - 1, out.shape[2] - 1) if out.ndim == 3 else (0, 0)  # a corner
        ex = explain_cell(model, x, index, 0, at)
        for step in ex.steps:
            for row, values in zip(step.sources or [], step.window or [], strict=True):
                for source, value in zip(row, values, strict=True):
                    if source is None:
                        assert value in (0.0, None)  # zero padding (conv) or pool padding
                        continue
                    assert source.layer == index - 1
                    held = below[index - 1]
                    cell = (
                        held[source.channel, source.y, source.x]
                        if held.ndim == 3
                        else held[source.channel]
                    )
                    assert float(cell) == pytest.approx(value, rel=1e-6)


def test_conv_window_shows_the_padding_as_the_padded_values():
    model = randomised("conv(1, 3, padding=1, padding_mode=reflect)", (1, 4, 4))
    image = torch.arange(16.0).view(1, 1, 4, 4)
    step = explain_cell(model, image, "conv1", 0, (0, 0)).steps[0]
    assert step.window == [[5, 4, 5], [1, 0, 1], [5, 4, 5]]  # reflect: mirrors, edge not repeated
    assert step.padding[0] == [True, True, True] and step.padding[1] == [True, False, False]
    assert step.sources[0][0] == Cell(0, 0, 1, 1)  # the padded value is a copy of input (1, 1)
    zeros = randomised("conv(1, 3, padding=1)", (1, 4, 4))
    step = explain_cell(zeros, image, "conv1", 0, (0, 0)).steps[0]
    assert step.window[0] == [0, 0, 0] and step.sources[0] == [None, None, None]


def test_depthwise_conv_reads_only_its_own_channel():
    model = randomised("conv(4, 3, groups=4, padding=1)", (4, 5, 5))
    ex = explain_cell(model, torch.randn(1, 4, 5, 5), 1, 2, (2, 2))
    assert [s.channel for s in ex.steps if s.kind == "window"] == [2]
    grouped = randomised("conv(6, 3, groups=2)", (4, 5, 5))
    ex = explain_cell(grouped, torch.randn(1, 4, 5, 5), 1, 4, (1, 1))
    assert [s.channel for s in ex.steps if s.kind == "window"] == [2, 3]
    assert [s.kind for s in ex.steps] == ["window", "window", "sum", "bias"]


def test_max_pool_marks_the_chosen_cell_and_fc_shows_its_largest_products():
    model = randomised("maxpool(2) flatten fc(3)", (1, 4, 4))
    image = torch.tensor([[[[1.0, 9, 0, 0], [2, 3, 0, 7], [0, 0, 0, 0], [0, 0, 0, 0]]]])
    pool = explain_cell(model, image, "maxpool1", 0, (0, 0)).steps[0]
    assert pool.chosen == (0, 1) and pool.value == 9 and pool.text == "max(1, 9, 2, 3) = 9"
    fc = explain_cell(model, image, "fc1", 1)
    assert [s.kind for s in fc.steps] == ["dot", "bias"]  # 4 inputs: no rest
    sizes = [abs(p[0]) for p in fc.steps[0].products]
    assert sizes == sorted(sizes, reverse=True)


def test_the_input_layer_is_the_normalised_pixel():
    model = randomised("conv(1, 3)", (1, 4, 4))
    image = torch.full((1, 4, 4), 51, dtype=torch.uint8)
    x = (image[None].float() / 255 - 0.5) / 0.25
    ex = explain_cell(model, x, "input", 0, (1, 2), Pixels(image, (0.5,), (0.25,)))
    assert ex.steps[0].text == "(51/255 - 0.5)/0.25 = -1.2" and ex.matches


@pytest.mark.parametrize(
    "layer, channel, at, message",
    [
        ("conv9", 0, (0, 0), "no layer 'conv9' in this model: give input \\(0\\), a number 1 to 4"),
        ("conv1", 5, (0, 0), "channel 5 is out of range: conv1 has 2 channels; use 0 to 1"),
        ("conv1", 0, (4, 0), "y=4 is out of range: conv1's maps are 4x4; use y from 0 to 3"),
        ("relu1", 0, (0, -1), "x=-1 is out of range"),
        ("fc1", 3, (0, 0), "channel 3 is out of range: fc1 has 3 values"),
        ("fc1", 0, (1, 0), "fc1 is a vector of 3: its cells are at y=0, x=0"),
    ],
)
def test_a_cell_outside_the_layer_names_the_allowed_range(layer, channel, at, message):
    model = randomised("conv(2, 3) relu flatten fc(3)", (1, 6, 6))
    with pytest.raises(ConfigError, match=message):
        explain_cell(model, torch.zeros(1, 1, 6, 6), layer, channel, at)


def test_layers_by_name_or_number():
    model = randomised("conv(2, 3) relu", (1, 6, 6))
    assert [layer_index(model, n) for n in ("input", "0", "conv1", "2", "relu1")] == [0, 0, 1, 2, 2]


# --- `cnnlab explain cell` on a trained run ---------------------------------------------


@pytest.fixture(scope="module")
def cell_run(tmp_path_factory):
    """A tiny trained run with batchnorm, padding and an fc: one epoch on 200 shapes."""
    import cnnlab

    return cnnlab.train(
        model="conv(4, 3, padding=1) batchnorm relu maxpool(2) flatten fc(10)",
        data="shapes",
        train_size=200,
        test_size=60,
        epochs=1,
        quiet=True,
        out=str(tmp_path_factory.mktemp("cell") / "run"),
    )


def test_cli_prints_the_window_kernel_products_and_the_total_against_torch(cli, cell_run):
    result = cli("explain", "cell", str(cell_run.path), "test:0", "--layer", "conv1", "--at", "0,3")
    assert result.code == 0, result.err
    out = result.out
    assert out.startswith("conv1[0][0][3] = ") and "it reads input (layer 0, 1x28x28)" in out
    assert "channel 0 of input: rows -1..1, columns 2..4" in out
    for caption in ("window (padding dimmed)", "kernel", "products", "plus the bias"):
        assert caption in out
    assert "(agrees with torch)" in out


def test_cli_json_is_the_library_answer_and_links_one_layer_down(cli, cell_run):
    argv = ("explain", "cell", str(cell_run.path), "test:1", "--layer", "relu1", "--channel", "2")
    data = json.loads(cli(*argv, "--at", "5,6", "--json").out)
    assert data["layer"] == {"index": 3, "name": "relu1", "kind": "relu"} and data["matches"]
    assert data["image"] == "test:1" and data["true"]
    step = data["steps"][0]
    assert step["kind"] == "activation" and step["sources"] == [
        [{"layer": 2, "channel": 2, "y": 5, "x": 6}]
    ]
    fc = json.loads(cli("explain", "cell", str(cell_run.path), "test:1", "--layer", "fc1",
                        "--channel", "4", "--json").out)  # fmt: skip
    assert [s["kind"] for s in fc["steps"]] == ["dot", "rest", "sum", "bias"]
    assert len(fc["steps"][0]["window"]) == 10 and fc["steps"][1]["params"]["count"] == 784 - 10


def test_cli_in_korean(cli, cell_run):
    argv = ("explain", "cell", str(cell_run.path), "test:0", "--layer", "maxpool1", "--lang", "ko")
    result = cli(*argv)
    assert result.code == 0, result.err
    assert "한 층 아래 relu1" in result.out and "torch와 일치" in result.out


@pytest.mark.parametrize(
    "argv, message",
    [
        (("--layer", "conv7"), "no layer 'conv7' in this model"),
        (("--layer", "conv1", "--channel", "4"), "use 0 to 3"),
        (("--layer", "conv1", "--at", "28,0"), "use y from 0 to 27"),
        (("--layer", "conv1", "--at", "a,b"), "--at 'a,b' must be the row and column as Y,X"),
    ],
)
def test_cli_errors_name_the_allowed_range(cli, cell_run, argv, message):
    result = cli("explain", "cell", str(cell_run.path), "test:0", *argv)
    assert result.code == 2 and message in result.err


# --- POST /api/explain/cell: the JSON twin of the page's panel ----------------------------


@pytest.fixture(scope="module")
def cell_server(cell_run):
    from test_server import ThreadServer

    from cnnlab.deploy.predict import Predictor
    from cnnlab.server.app import create_app

    srv = ThreadServer(create_app(Predictor(cell_run, "eager")))
    yield srv
    srv.stop()


def _png(seed: int = 0) -> bytes:
    import numpy as np
    from serve_support import png_bytes

    return png_bytes(np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8))


def test_api_answers_what_the_cli_prints_for_the_same_image(cli, cell_run, cell_server, tmp_path):
    import httpx

    image = tmp_path / "noise.png"
    image.write_bytes(_png())
    params = {"layer": "conv1", "channel": 1, "y": 0, "x": 27}
    answer = httpx.post(
        f"{cell_server.url}/api/explain/cell",
        params=params,
        files={"file": ("noise.png", image.read_bytes(), "image/png")},
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    argv = ("explain", "cell", str(cell_run.path), str(image), "--layer", "conv1", "--channel", "1")
    printed = json.loads(cli(*argv, "--at", "0,27", "--json").out)
    assert data["total"] == printed["total"] and data["matches"]
    assert data["steps"] == printed["steps"]
    window = data["steps"][0]
    assert window["params"]["cols"] == [26, 27, 28] and window["sources"][0] == [None] * 3


@pytest.mark.parametrize(
    "params, status, message",
    [
        ({"layer": "conv1", "channel": 9}, 422, "channel 9 is out of range: conv1 has 4 channels; use 0 to 3"),
        ({"layer": "conv1", "y": 30}, 422, "y=30 is out of range: conv1's maps are 28x28; use y from 0 to 27"),
        ({"layer": "fc1", "channel": 0, "x": 1}, 422, "fc1 is a vector of 10: its cells are at y=0, x=0"),
        ({"layer": "/etc/passwd"}, 422, "no layer 'passwd' in this model"),
        ({"layer": "conv1", "channel": "two"}, 422, "channel"),
        ({"channel": 0}, 422, "layer"),
    ],
)  # fmt: skip
def test_api_refuses_a_cell_outside_the_model_naming_the_range(
    cell_server, params, status, message
):
    import httpx

    answer = httpx.post(
        f"{cell_server.url}/api/explain/cell",
        params=params,
        files={"file": ("d.png", _png(), "image/png")},
    )
    assert answer.status_code == status
    body = answer.json()
    assert message in body["error"] and "Traceback" not in answer.text and "/etc" not in answer.text
