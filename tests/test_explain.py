"""The explainer's arithmetic against the seeds' worked example, shapes.py and torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnlab.errors import CnnlabError, ConfigError, SpecError
from cnnlab.explain.inputs import (
    POOL_INPUT,
    SEED_INPUT,
    SEED_KERNEL,
    parse_matrices,
    parse_padding,
    parse_padding_modes,
    parse_size,
    parse_strides,
    read_input,
    read_kernel,
)
from cnnlab.explain.kernels import KERNELS
from cnnlab.explain.worked import explain_conv, explain_padding, explain_pool, pad_matrix
from cnnlab.model.layers import MinPool2d, build_layer
from cnnlab.spec import shapes
from cnnlab.spec.kinds import PADDING_MODES
from cnnlab.spec.language import make_layer

MANY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SEED_OUTPUT = [[4, 3, 4], [2, 4, 3], [2, 3, 4]]
SEED_FIRST_WINDOW = "1x1 + 1x0 + 1x1 + 0x0 + 1x1 + 1x0 + 0x1 + 0x0 + 1x1 = 4"


def as_tensor(matrices: list) -> torch.Tensor:
    """Per-channel matrices -> (1, C, H, W) float64 (exact for the small whole numbers used)."""
    return torch.tensor(matrices, dtype=torch.float64)[None]


def assert_same(values: list, reference: torch.Tensor) -> None:
    """Nested lists equal to a float64 tensor up to rounding (divisions by 9, 16, window sizes)."""
    torch.testing.assert_close(
        torch.tensor(values, dtype=torch.float64), reference, rtol=0, atol=1e-12
    )


# --- the seeds' example ---------------------------------------------------------------


def test_explain_conv_with_no_arguments_is_seed_001s_example(cli):
    result = cli("explain", "conv")
    assert result.code == 0, result.err
    assert SEED_FIRST_WINDOW in result.out
    assert "output: [[4,3,4],[2,4,3],[2,3,4]]" in result.out
    assert "output size: H, W: floor((5 + 2*0 - 1*(3-1) - 1)/1) + 1 = 3" in result.out
    assert "cross-correlation" in result.out
    # all nine windows, each with its sum, and the map filling in: after step 2, '4 [3] .'
    assert "step 9/9: output[2][2]" in result.out
    assert "4 [3] ." in result.out
    assert "1x1 + 1x0 + 0x1 + 1x0 + 1x1 + 1x0 + 0x1 + 1x0 + 1x1 = 3" in result.out


def test_explain_conv_json_holds_the_steps_and_agrees_with_torch(cli):
    data = json.loads(cli("explain", "conv", "--json").out)
    assert data["output"] == SEED_OUTPUT
    first = data["steps"][0]
    assert first["terms"][0]["window"] == [[1, 1, 1], [0, 1, 1], [0, 0, 1]]
    assert first["terms"][0]["products"] == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]
    assert first["terms"][0]["text"] == SEED_FIRST_WINDOW
    assert [s["value"] for s in data["steps"]] == [v for row in SEED_OUTPUT for v in row]
    torch_out = F.conv2d(as_tensor([SEED_INPUT]), as_tensor([SEED_KERNEL]))
    assert torch_out[0, 0].tolist() == SEED_OUTPUT


def test_brief_shows_only_the_formula_and_the_final_map(cli):
    result = cli("explain", "conv", "--brief")
    assert "output: [[4,3,4],[2,4,3],[2,3,4]]" in result.out
    assert "floor((5 + 2*0 - 1*(3-1) - 1)/1) + 1 = 3" in result.out
    assert "step 1" not in result.out and SEED_FIRST_WINDOW not in result.out


def test_max_steps_cuts_the_walkthrough_but_not_the_result(cli):
    result = cli("explain", "conv", "--max-steps", "2")
    assert "step 2/9" in result.out and "step 3/9" not in result.out
    assert "7 more steps" in result.out
    assert "output: [[4,3,4],[2,4,3],[2,3,4]]" in result.out


# --- pooling --------------------------------------------------------------------------


def test_explain_pool_defaults_show_max_min_avg_and_agree_with_torch(cli):
    result = cli("explain", "pool")
    assert result.code == 0, result.err
    x = as_tensor([POOL_INPUT])
    expected = {
        "max": F.max_pool2d(x, 2),
        "min": MinPool2d(2)(x),
        "avg": F.avg_pool2d(x, 2),
    }
    data = json.loads(cli("explain", "pool", "--json").out)
    assert data["modes"] == ["max", "min", "avg"]
    for mode, reference in expected.items():
        assert data["outputs"][mode][0] == reference[0, 0].tolist()
    assert "max: [[4,5],[3,4]]" in result.out
    assert "min: [[1,1],[1,0]]" in result.out
    assert "avg: [[2.5,2.25],[1.75,2]]" in result.out
    assert "max(1, 3, 4, 2) = 4" in result.out
    assert "min(1, 3, 4, 2) = 1" in result.out
    assert "(1 + 3 + 4 + 2)/4 = 10/4 = 2.5" in result.out
    assert "output size: H, W: floor((4 + 2*0 - 1*(2-1) - 1)/2) + 1 = 2" in result.out


def test_pool_mode_list_and_padding(cli):
    data = json.loads(cli("explain", "pool", "--mode", "max,avg", "--padding", "1", "--json").out)
    assert list(data["outputs"]) == ["max", "avg"]
    x = as_tensor([POOL_INPUT])
    assert data["outputs"]["max"][0] == F.max_pool2d(x, 2, padding=1)[0, 0].tolist()
    assert data["outputs"]["avg"][0] == F.avg_pool2d(x, 2, padding=1)[0, 0].tolist()


@st.composite
def pool_cases(draw):
    channels = draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    inputs = [
        [[draw(st.integers(-5, 9)) for _ in range(w)] for _ in range(h)] for _ in range(channels)
    ]
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    # mostly within torch's limit of half the window, sometimes one pixel over
    padding = (draw(st.integers(0, kernel[0] // 2 + 1)), draw(st.integers(0, kernel[1] // 2 + 1)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    return inputs, kernel, stride, padding, dilation


def _torch_pool(mode, x, kernel, stride, padding, dilation):
    if mode == "avg":
        return F.avg_pool2d(x, kernel, stride, padding)
    if mode == "min":
        return MinPool2d(kernel, stride, padding, dilation)(x)
    return F.max_pool2d(x, kernel, stride, padding, dilation)


@MANY
@given(case=pool_cases(), mode=st.sampled_from(["max", "min", "avg"]))
def test_pooling_agrees_with_torch_and_shapes(case, mode):
    inputs, kernel, stride, padding, dilation = case
    if mode == "avg":
        dilation = (1, 1)
    x = as_tensor(inputs)
    try:
        ex = explain_pool(inputs, [mode], kernel, stride, padding, dilation)
    except SpecError:
        # the explainer refuses exactly what torch refuses
        with pytest.raises(RuntimeError):
            _torch_pool(mode, x, kernel, stride, padding, dilation)
        return
    reference = _torch_pool(mode, x, kernel, stride, padding, dilation)
    assert_same(ex.outputs[mode], reference[0])
    h, w = len(inputs[0]), len(inputs[0][0])
    assert ex.out_size == (
        shapes.pool_output_size(h, kernel[0], stride[0], padding[0], dilation[0]),
        shapes.pool_output_size(w, kernel[1], stride[1], padding[1], dilation[1]),
    )


def test_pooling_keeps_channels_apart(cli):
    data = json.loads(
        cli(
            "explain", "pool", "--channels", "2", "--input", "random:4x6", "--seed", "5", "--json"
        ).out
    )
    x = as_tensor(data["inputs"])
    assert len(data["inputs"]) == 2
    assert data["outputs"]["max"] == F.max_pool2d(x, 2)[0].tolist()
    assert data["outputs"]["min"] == MinPool2d(2)(x)[0].tolist()
    assert data["outputs"]["avg"] == F.avg_pool2d(x, 2)[0].tolist()
    assert [s["channel"] for s in data["steps"]] == [0] * 6 + [1] * 6


def test_avg_pool_with_dilation_is_refused(cli):
    result = cli("explain", "pool", "--dilation", "2")
    assert result.code == 2 and "dilation" in result.err


# --- convolution against torch, generated ---------------------------------------------


@st.composite
def conv_cases(draw):
    channels = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    inputs = [
        [[draw(st.integers(-3, 9)) for _ in range(w)] for _ in range(h)] for _ in range(channels)
    ]
    kernels = [
        [[draw(st.integers(-2, 2)) for _ in range(kw)] for _ in range(kh)] for _ in range(channels)
    ]
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.just("same"), st.tuples(st.integers(0, 3), st.integers(0, 3))))
    return inputs, kernels, stride, padding, dilation


def _torch_conv(inputs, kernels, stride, padding, dilation, mode) -> torch.Tensor:
    """cnnlab's own torch layer (nn.Conv2d, or SameConv2d for strided 'same'), weights set."""
    layer = make_layer(
        "conv",
        [1, (len(kernels[0]), len(kernels[0][0]))],
        dict(stride=stride, padding=padding, dilation=dilation, padding_mode=mode, bias=False),
    )
    module = build_layer(layer, (len(inputs), len(inputs[0]), len(inputs[0][0]))).double()
    with torch.no_grad():
        module.weight.copy_(as_tensor(kernels))
        return module(as_tensor(inputs))


@pytest.mark.parametrize("mode", PADDING_MODES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conv_cases())
def test_conv_agrees_with_torch_and_shapes(mode, case):
    inputs, kernels, stride, padding, dilation = case
    try:
        ex = explain_conv(inputs, kernels, stride, padding, dilation, mode)
    except SpecError:
        # refused (too small, or too much reflect/circular padding): torch refuses too
        with pytest.raises((RuntimeError, ValueError)):
            _torch_conv(inputs, kernels, stride, padding, dilation, mode)
        return
    reference = _torch_conv(inputs, kernels, stride, padding, dilation, mode)
    assert ex.output == reference[0, 0].tolist()
    # every printed size is shapes.py's
    h, w = len(inputs[0]), len(inputs[0][0])
    (kh, kw), (top, bottom, left, right) = (len(kernels[0]), len(kernels[0][0])), ex.pads
    worked_h = shapes.conv_output_size_worked(h, kh, stride[0], top, dilation[0], bottom)
    worked_w = shapes.conv_output_size_worked(w, kw, stride[1], left, dilation[1], right)
    assert ex.out_size == (worked_h.value, worked_w.value)
    assert any(worked_h.text in formula for formula in ex.formulas)
    assert any(worked_w.text in formula for formula in ex.formulas)
    if padding == "same":
        assert (top, bottom) == shapes.same_padding(h, kh, stride[0], dilation[0])
        assert (left, right) == shapes.same_padding(w, kw, stride[1], dilation[1])
    # each channel's map is that channel's convolution; their sum is the output
    for c, channel_map in enumerate(ex.channel_outputs):
        alone = explain_conv([inputs[c]], [kernels[c]], stride, padding, dilation, mode)
        assert channel_map == alone.output
    # each step's text ends with its value, and its products are window x kernel
    step = ex.steps[-1]
    assert step.text.endswith(f"= {step.value}")
    term = step.terms[0]
    assert term.products == [
        [v * k for v, k in zip(wr, kr, strict=True)]
        for wr, kr in zip(term.window, term.weights, strict=True)
    ]


@MANY
@given(
    matrix=st.integers(1, 5).flatmap(
        lambda w: st.lists(
            st.lists(st.integers(-9, 9), min_size=w, max_size=w), min_size=1, max_size=5
        )
    ),
    pads=st.tuples(*(st.integers(0, 4) for _ in range(4))),
    mode=st.sampled_from(PADDING_MODES),
)
def test_pad_matrix_is_torchs_pad(matrix, pads, mode):
    h, w = len(matrix), len(matrix[0])
    top, bottom, left, right = pads
    if mode == "reflect":
        assume(max(top, bottom) < h and max(left, right) < w)
    if mode == "circular":
        assume(max(top, bottom) <= h and max(left, right) <= w)
    torch_mode = "constant" if mode == "zeros" else mode
    reference = F.pad(as_tensor([matrix]), (left, right, top, bottom), mode=torch_mode)
    assert pad_matrix(matrix, pads, mode) == reference[0, 0].tolist()


# --- channels, named and random kernels -----------------------------------------------


def test_channels_are_summed_as_the_seeds_describe_for_rgb(cli):
    data = json.loads(
        cli(
            "explain",
            "conv",
            "--channels",
            "3",
            "--input",
            "random:4x5",
            "--seed",
            "7",
            "--kernel",
            "random:3x3",
            "--json",
        ).out
    )
    assert len(data["inputs"]) == 3 and len(data["kernels"]) == 3
    summed = [[sum(m[i][j] for m in data["channel_outputs"]) for j in range(3)] for i in range(2)]
    assert data["output"] == summed
    reference = F.conv2d(as_tensor(data["inputs"]), as_tensor(data["kernels"]))
    assert data["output"] == reference[0, 0].tolist()
    text = cli("explain", "conv", "--channels", "3", "--seed", "7", "--max-steps", "1").out
    assert "channel 3: " in text and "sum over channels: " in text
    assert "sum = output" in text


def test_channels_from_a_list_of_matrices(cli):
    two = "[[[1,2],[3,4]],[[0,1],[1,0]]]"
    data = json.loads(cli("explain", "conv", "--input", two, "--kernel", "[[1]]", "--json").out)
    assert data["output"] == [[1, 3], [4, 4]]
    result = cli("explain", "conv", "--input", two, "--channels", "3")
    assert result.code == 2 and "--channels 3" in result.err


def test_random_inputs_follow_the_seed():
    a = read_input("random:5x5", 2, seed=3, default=SEED_INPUT)
    assert a == read_input("random:5x5", 2, seed=3, default=SEED_INPUT)
    assert a != read_input("random:5x5", 2, seed=4, default=SEED_INPUT)
    assert len(a) == 2 and all(len(m) == 5 and len(m[0]) == 5 for m in a)


@pytest.mark.parametrize("name", list(KERNELS))
def test_named_kernels_come_from_the_kernel_registry(name):
    kernel = KERNELS[name]
    ex = explain_conv(
        [SEED_INPUT], read_kernel(name, 1, 0), padding="same", padding_mode="replicate"
    )
    reference = F.conv2d(
        F.pad(as_tensor([SEED_INPUT]), (1, 1, 1, 1), mode="replicate"),
        torch.tensor(kernel.weights, dtype=torch.float64)[None, None] / kernel.divisor,
    )
    assert_same(ex.output, reference[0, 0])


def test_named_kernel_and_same_padding_on_the_command_line(cli):
    result = cli(
        "explain",
        "conv",
        "--input",
        "random:6x6",
        "--kernel",
        "sobel-x",
        "--padding",
        "same",
        "--padding-mode",
        "reflect",
        "--max-steps",
        "1",
    )
    assert result.code == 0, result.err
    assert "padding: H, W: 'same' pads 1*(3-1) = 2: 1 before, 1 after" in result.out
    assert "padded (1, reflect)" in result.out
    assert "output size: H, W: floor((6 + 2*1 - 1*(3-1) - 1)/1) + 1 = 6" in result.out


# --- padding and stride views ---------------------------------------------------------


def test_explain_padding_shows_all_four_modes_as_torch_pads(cli):
    result = cli("explain", "padding")
    assert result.code == 0, result.err
    for mode in PADDING_MODES:
        assert mode in result.out
    data = json.loads(cli("explain", "padding", "--json").out)
    x = as_tensor([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    for view in data["views"]:
        torch_mode = "constant" if view["mode"] == "zeros" else view["mode"]
        assert view["matrix"] == F.pad(x, (1, 1, 1, 1), mode=torch_mode)[0, 0].tolist()
    assert "reflect: [[5,4,5,6,5],[2,1,2,3,2],[5,4,5,6,5],[8,7,8,9,8],[5,4,5,6,5]]" in result.out
    assert "a 3x3 kernel then outputs: H, W: floor((3 + 2*1 - 1*(3-1) - 1)/1) + 1 = 3" in result.out


def test_padding_too_large_for_reflect_is_shown_as_impossible():
    ex = explain_padding([[1, 2], [3, 4]], (2, 2))
    views = {v.mode: v for v in ex.views}
    assert views["reflect"].matrix is None and "reflect padding" in views["reflect"].error
    assert views["replicate"].matrix[0] == [1, 1, 1, 2, 2, 2]
    assert views["circular"].matrix is not None  # circular may wrap once (pad <= size)


def test_explain_stride_compares_window_positions_and_sizes(cli):
    result = cli("explain", "stride")
    assert result.code == 0, result.err
    assert "output size: H, W: floor((5 + 2*0 - 1*(3-1) - 1)/1) + 1 = 3" in result.out
    assert "output size: H, W: floor((5 + 2*0 - 1*(3-1) - 1)/2) + 1 = 2" in result.out
    data = json.loads(
        cli("explain", "stride", "--stride", "1,2,3", "--input", "random:7x7", "--json").out
    )
    inputs = read_input("random:7x7", None, 0, SEED_INPUT)
    for run in data["runs"]:
        s = run["stride"]
        size = shapes.conv_output_size(7, 3, s)
        assert run["out_size"] == [size, size]
        assert run["windows"][:2] == [[0, 0], [0, s]]
        reference = F.conv2d(as_tensor(inputs), as_tensor([SEED_KERNEL]), stride=s)
        assert run["output"] == reference[0, 0].tolist()


# --- user errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["conv", "--input", "[[1,2],[3]]"], "rows of different lengths"),
        (["conv", "--input", "[[1,2],[3,'a']]"], "numbers only"),
        (["conv", "--kernel", "sobelz"], "Did you mean"),
        (["conv", "--input", "[[1,2],[3,4]]"], "the output would be 0x0"),
        (["conv", "--padding", "-1"], "--padding"),
        (["conv", "--stride", "0"], "--stride"),
        (["pool", "--mode", "median"], "--mode"),
        (["pool", "--padding", "2"], "half the kernel"),
        (["stride", "--stride", "a"], "--stride"),
        (["conv", "--max-steps", "-1"], "--max-steps"),
        (["conv", "--channels", "0"], "--channels"),
    ],
)
def test_user_errors_name_the_problem(cli, argv, message):
    result = cli("explain", *argv)
    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err


def test_matrix_literal_forms():
    assert parse_matrices("1 0 1; 0 1 0") == [[[1, 0, 1], [0, 1, 0]]]
    assert parse_matrices("[[0.5, 1], [2, 3]]") == [[[0.5, 1], [2, 3]]]
    with pytest.raises(CnnlabError):
        parse_matrices("[1, 2, 3]")


# --- options read with the spec's own parameter rules ------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3", (3, 3)), ("2x3", (2, 3)), ("2X3", (2, 3)), ("2,3", (2, 3)), ("(2,3)", (2, 3))],
)
def test_sizes_read_as_a_layer_spec_reads_them(text, expected):
    assert parse_size(text, "--stride") == expected
    assert make_layer("maxpool", [expected]).params["kernel"] == expected


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "1x2x3", "a", "", "2x0"])
def test_bad_sizes_name_the_option(text):
    with pytest.raises(ConfigError, match=f"--dilation '{text}' must be N or HxW"):
        parse_size(text, "--dilation")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, (0, 0)),
        ("0", (0, 0)),
        ("1", (1, 1)),
        ("1x2", (1, 2)),
        ("same", "same"),
        (" SAME ", "same"),
        ("valid", (0, 0)),
    ],
)
def test_padding_means_what_conv_padding_means(text, expected):
    assert parse_padding(text) == expected
    if text is not None:
        spec = make_layer("conv", [1, 3], {"padding": expected}).params["padding"]
        assert spec == expected


@pytest.mark.parametrize("text", ["-1", "1.5", "foo", "1x2x3"])
def test_bad_padding_names_the_option(text):
    with pytest.raises(ConfigError, match=f"--padding '{text}' must be a number >= 0"):
        parse_padding(text)


def test_mode_and_stride_lists():
    assert parse_padding_modes(None) == list(PADDING_MODES)
    assert parse_padding_modes("Zeros, circular") == ["zeros", "circular"]
    with pytest.raises(ConfigError, match="--padding-mode 'foo'"):
        parse_padding_modes("foo")
    assert parse_strides("1,2,3") == [1, 2, 3]
    for bad in ("0,1", "a", ""):
        with pytest.raises(ConfigError, match="--stride"):
            parse_strides(bad)


def test_the_arithmetic_loads_neither_torch_nor_matplotlib():
    """`cnnlab explain` works out its steps in pure Python; only named kernels bring in torch."""
    code = (
        "import sys, cnnlab.explain.worked, cnnlab.explain.inputs, cnnlab.explain.render; "
        "print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
