"""shapes.py and the validator against real torch layers, on worked examples and generated configurations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

from cnnlab.errors import SpecError
from cnnlab.model.layers import MinPool2d, SameConv2d, build_layer
from cnnlab.spec import shapes
from cnnlab.spec.analysis import analyze
from cnnlab.spec.language import ModelSpec, make_layer, parse_spec

MANY = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the seeds' worked examples -------------------------------------------------------


def test_seed_002_example_L6_k3_gives_4():
    assert shapes.conv_output_size(6, kernel=3, stride=1, padding=0, dilation=1) == 4
    worked = shapes.conv_output_size_worked(6, 3, 1, 0, 1)
    assert worked.text == "floor((6 + 2*0 - 1*(3-1) - 1)/1) + 1 = 4"


def test_seed_001_example_mnist_conv64_k4_s2_p1_gives_64x14x14():
    report = analyze(parse_spec("input(1x28x28) conv(64, 4, stride=2, padding=1)"))
    assert report.output_shape == (64, 14, 14)
    assert torch.nn.Conv2d(1, 64, 4, stride=2, padding=1)(torch.zeros(1, 1, 28, 28)).shape == (
        1,
        64,
        14,
        14,
    )


def test_parameter_formula_matches_torch():
    conv = nn.Conv2d(6, 12, (3, 5), groups=3)
    assert shapes.conv_params(6, 12, 3, 5, groups=3) == sum(p.numel() for p in conv.parameters())
    assert shapes.conv_params_worked(1, 32, 3, 3).text == "(3*3*1/1 + 1)*32 = 320"
    assert shapes.fc_params(3136, 10) == sum(p.numel() for p in nn.Linear(3136, 10).parameters())


def test_receptive_field_of_two_3x3_convs_and_a_pool():
    rf, jump = shapes.receptive_field(1, 1, 3, 1)
    assert (rf, jump) == (3, 1)
    rf, jump = shapes.receptive_field(rf, jump, 2, 2)
    assert (rf, jump) == (4, 2)
    rf, jump = shapes.receptive_field(rf, jump, 3, 1)
    assert (rf, jump) == (8, 2)


def test_receptive_field_by_gradient():
    """The receptive field is the set of input pixels with a non-zero gradient for one output pixel."""
    spec = parse_spec("input(1x32x32) conv(1,3,dilation=2) maxpool(2) conv(1,(3,5),stride=2)")
    report = analyze(spec)
    layers = nn.Sequential(*(build_layer(r.layer, r.in_shape) for r in report.layers))
    with torch.no_grad():
        for m in layers:
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0)
    x = torch.rand(1, 1, 32, 32, requires_grad=True)
    out = layers(x)
    out[0, 0, 1, 1].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    cols = x.grad[0, 0].abs().sum(0).nonzero()
    rf_h, rf_w = report.layers[-1].rf
    # Max pooling routes the gradient to one pixel per window, so the gradient's
    # extent is at most the receptive field; average over windows would fill it.
    assert rows.max() - rows.min() + 1 <= rf_h
    assert cols.max() - cols.min() + 1 <= rf_w
    avg_spec = parse_spec("input(1x32x32) conv(1,3,dilation=2) avgpool(2) conv(1,(3,5),stride=2)")
    avg_report = analyze(avg_spec)
    avg_layers = nn.Sequential(*(build_layer(r.layer, r.in_shape) for r in avg_report.layers))
    with torch.no_grad():
        for m in avg_layers:
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0)
    x = torch.rand(1, 1, 32, 32, requires_grad=True)
    avg_layers(x)[0, 0, 1, 1].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    cols = x.grad[0, 0].abs().sum(0).nonzero()
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == avg_report.layers[-1].rf


# --- generated configurations against torch -------------------------------------------

pairs = st.tuples(st.integers(1, 4), st.integers(1, 4))


def _torch_shape(module: nn.Module, c: int, h: int, w: int):
    """The per-image output shape from torch, or None if torch refuses."""
    try:
        with torch.no_grad():
            return tuple(module(torch.randn(1, c, h, w)).shape[1:])
    except RuntimeError:
        return None


def _cnnlab_shape(spec_layer, c: int, h: int, w: int):
    try:
        return analyze(ModelSpec((spec_layer,), (c, h, w))).output_shape
    except SpecError:
        return None


@MANY
@given(
    c_groups=st.integers(1, 3),
    groups=st.integers(1, 3),
    out_mult=st.integers(1, 3),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    kernel=pairs,
    stride=pairs,
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.one_of(st.tuples(st.integers(0, 4), st.integers(0, 4)), st.just("same")),
    mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    bias=st.booleans(),
)
def test_conv_shapes_and_validity_match_torch(
    c_groups, groups, out_mult, h, w, kernel, stride, dilation, padding, mode, bias
):
    c_in, c_out = c_groups * groups, out_mult * groups
    layer = make_layer(
        "conv",
        [c_out, kernel],
        dict(
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=mode,
        ),
    )
    ours = _cnnlab_shape(layer, c_in, h, w)
    event("accepted" if ours else "refused")
    if padding == "same" and stride != (1, 1):
        # torch refuses; cnnlab does what Keras does: ceil(L/s), explicit padding.
        if ours is not None:
            module = build_layer(layer, (c_in, h, w))
            assert isinstance(module, SameConv2d)
            assert _torch_shape(module, c_in, h, w) == ours
            assert ours[1:] == (math.ceil(h / stride[0]), math.ceil(w / stride[1]))
        return
    module = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias, mode)
    expected = _torch_shape(module, c_in, h, w)
    assert ours == expected
    if ours is not None:
        built = build_layer(layer, (c_in, h, w))
        assert _torch_shape(built, c_in, h, w) == ours
        assert analyze(ModelSpec((layer,), (c_in, h, w))).layers[0].params == sum(
            p.numel() for p in module.parameters()
        )


def _pool_module(kind, kernel, stride, padding, dilation, ceil_mode, count_include_pad):
    if kind == "avgpool":
        return nn.AvgPool2d(kernel, stride, padding, ceil_mode, count_include_pad)
    cls = nn.MaxPool2d if kind == "maxpool" else MinPool2d
    return cls(kernel, stride, padding, dilation, ceil_mode=ceil_mode)


@MANY
@given(
    kind=st.sampled_from(["maxpool", "avgpool", "minpool"]),
    h=st.integers(1, 16),
    w=st.integers(1, 16),
    kernel=pairs,
    stride=pairs,
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    ceil_mode=st.booleans(),
    count_include_pad=st.booleans(),
)
def test_pool_shapes_and_validity_match_torch(
    kind, h, w, kernel, stride, padding, dilation, ceil_mode, count_include_pad
):
    if kind == "avgpool":
        dilation = (1, 1)
        named = dict(
            stride=stride, padding=padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad
        )
    else:
        named = dict(stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    layer = make_layer(kind, [kernel], named)
    ours = _cnnlab_shape(layer, 2, h, w)
    event("accepted" if ours else "refused")
    try:
        module = _pool_module(kind, kernel, stride, padding, dilation, ceil_mode, count_include_pad)
        expected = _torch_shape(module, 2, h, w)
    except (RuntimeError, ValueError):
        expected = None
    assert ours == expected


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 40), kernel=st.integers(1, 7), dilation=st.integers(1, 3))
def test_same_padding_stride_1_is_torchs(length, kernel, dilation):
    before, after = shapes.same_padding(length, kernel, 1, dilation)
    assert before + after == dilation * (kernel - 1)
    assert after - before in (0, 1)  # the odd pixel at the bottom/right
    x = torch.randn(1, 1, length, 3)
    conv = nn.Conv2d(1, 1, (kernel, 1), padding="same", dilation=(dilation, 1), bias=False)
    explicit = F.conv2d(F.pad(x, (0, 0, before, after)), conv.weight, dilation=(dilation, 1))
    assert torch.allclose(conv(x), explicit, atol=1e-6)


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(2, 4))
def test_same_padding_with_stride_is_keras(length, kernel, stride):
    before, after = shapes.same_padding(length, kernel, stride)
    out = shapes.conv_output_size(length, kernel, stride, before, 1, after)
    assert out == math.ceil(length / stride)
    assert after - before in (0, 1)


@settings(max_examples=500, deadline=None)
@given(
    length=st.integers(1, 64),
    kernel=st.integers(1, 6),
    stride=st.integers(1, 4),
    padding=st.integers(0, 3),
    dilation=st.integers(1, 3),
)
def test_worked_text_evaluates_to_its_value(length, kernel, stride, padding, dilation):
    worked = shapes.conv_output_size_worked(length, kernel, stride, padding, dilation)
    expression, value = worked.text.rsplit(" = ", 1)
    python = expression.replace("floor(", "(").replace("/", "//")
    assert eval(python) == int(value) == worked.value  # noqa: S307 - our own arithmetic text


# --- min pooling ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    h=st.integers(2, 9),
    w=st.integers(2, 9),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.integers(0, 1),
    ceil_mode=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_minpool_is_negated_maxpool_of_negated_values_and_gradients(
    h, w, kernel, stride, padding, ceil_mode, seed
):
    if (
        padding > kernel // 2
        or shapes.pool_output_size(min(h, w), kernel, stride, padding, 1, ceil_mode) < 1
    ):
        return
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    ours = MinPool2d(kernel, stride, padding, ceil_mode=ceil_mode)(a)
    reference = -F.max_pool2d(-b, kernel, stride, padding, ceil_mode=ceil_mode)
    assert torch.equal(ours, reference)
    weights = torch.randn_like(ours)
    (ours * weights).sum().backward()
    (reference * weights).sum().backward()
    assert torch.equal(a.grad, b.grad)


def test_minpool_on_the_seed_window():
    x = torch.tensor([[[[4.0, 2.0], [1.0, 3.0]]]])
    assert MinPool2d(2)(x).item() == 1.0
    assert nn.MaxPool2d(2)(x).item() == 4.0
    assert nn.AvgPool2d(2)(x).item() == 2.5


def test_minpool_gradient_checks_numerically():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(MinPool2d(2, 1, 1), (x,))


def test_output_size_below_one_is_refused_with_the_formula():
    assert shapes.conv_output_size(2, 5) < 1
    with pytest.raises(SpecError) as caught:
        analyze(parse_spec("input(1x2x2) conv(4, 5)"))
    message = str(caught.value)
    assert "layer 1 conv(4, 5) gets 1x2x2" in message
    assert "floor((2 + 2*0 - 1*(5-1) - 1)/1) + 1 = -2" in message
    assert "fix:" in message
