"""Impossible models fail before any tensor exists, naming the layer, its input, the formula and a fix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.errors import SpecError
from cnnlab.model.cnn import build_model
from cnnlab.spec.analysis import analyze
from cnnlab.spec.language import parse_spec

SEED_004 = (
    "input(3x32x32) conv(16,3,stride=2,padding=1) relu maxpool(2,2) conv(32,3,stride=1,padding=1) relu "
    "maxpool(2,2) flatten fc(10, in=32*32*32)"
)


def _message(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        analyze(parse_spec(text))
    return str(caught.value)


def test_seed_004_fc_declared_for_another_input():
    message = _message(SEED_004)
    assert "layer 8 fc(10, in=32768)" in message
    assert "gets 512 = 32x4x4" in message
    assert "32768 needs a 3x256x256 input" in message
    assert "fix:" in message and "in=512" in message


def test_seed_004_runs_at_the_input_it_implies_and_torch_agrees():
    model = build_model(SEED_004.replace("input(3x32x32)", "input(3x256x256)"))
    assert model(torch.zeros(2, 3, 256, 256)).shape == (2, 10)
    # The seed's own code flattens the batch too (torch.flatten(x)); with a
    # batch of 2 its Linear(32768, 10) then fails, which is the bug cnnlab fixes.
    seed_like = nn.Sequential(*list(model.children())[:6])
    flat = torch.flatten(seed_like(torch.zeros(2, 3, 256, 256)))
    assert flat.shape == (65536,)


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "input(1x4x4) conv(8, 5)",
            ["layer 1 conv(8, 5) gets 1x4x4", "floor((4 + 2*0 - 1*(5-1) - 1)/1) + 1 = 0", "fix:"],
        ),
        (
            "input(1x28x28) maxpool(2) maxpool(2) maxpool(2) maxpool(2) maxpool(2)",
            ["layer 5 maxpool(2) gets 1x1x1", "output would be 0x0"],
        ),
        (
            "input(3x8x8) conv(8, 3, groups=2)",
            [
                "groups=2 must divide both the 3 input channels and the 8 output channels",
                "choose groups among 1",
            ],
        ),
        ("input(4x8x8) conv(6, 3, groups=4)", ["groups=4 must divide", "choose groups among 1, 2"]),
        (
            "input(1x8x8) maxpool(3, padding=2)",
            ["padding 2x2 is larger than half the kernel", "at most 1x1"],
        ),
        ("input(1x8x8) avgpool(2, padding=(0,2))", ["padding 0x2 is larger than half the kernel"]),
        (
            "input(1x28x28) conv(8,3) fc(10)",
            ["fc needs a flat vector", "add flatten before it", "8*26*26 = 5408"],
        ),
        (
            "input(1x28x28) flatten conv(8,3)",
            ["layer 2 conv(8, 3) gets 784", "move conv before flatten"],
        ),
        (
            "input(1x3x3) conv(4, 3, padding=3, padding_mode=reflect)",
            ["reflect padding of 3x3 must be smaller than the 3x3 input"],
        ),
        (
            "input(1x2x2) conv(4, 3, padding=3, padding_mode=circular)",
            ["circular padding of 3x3 would wrap around"],
        ),
        ("conv(8,3)", ["no input shape", "--input 1x28x28"]),
    ],
)
def test_invalid_models_are_explained(text, expected):
    message = _message(text)
    for words in expected:
        assert words in message


@pytest.mark.parametrize(
    "text",
    [
        "input(1x4x4) conv(8, 5)",
        "input(3x8x8) conv(8, 3, groups=2)",
        "input(1x8x8) maxpool(3, padding=2)",
        "input(1x3x3) conv(4, 3, padding=3, padding_mode=reflect)",
    ],
)
def test_torch_refuses_what_the_validator_refuses(text):
    """The validator is not stricter than torch: each of these fails in torch too (at run time)."""
    from cnnlab.model.layers import build_layer

    spec = parse_spec(text)
    c, h, w = spec.input_shape
    with pytest.raises((RuntimeError, ValueError)):
        build_layer(spec.layers[0], (c, h, w))(torch.zeros(1, c, h, w))


def test_fc_declared_correctly_is_checked_and_accepted():
    report = analyze(parse_spec("input(1x28x28) conv(4,3) flatten fc(10, in=2704)"))
    assert report.layers[-1].formulas == ["in = 2704 (declared and checked)"]
