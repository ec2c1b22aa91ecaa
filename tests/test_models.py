"""Presets and built models: every layer's real torch shape and parameter count equal the analysis."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cnnlab.errors import SpecError
from cnnlab.model.cnn import CnnModel, build_model
from cnnlab.model.presets import PRESETS, preset_spec
from cnnlab.spec.analysis import analyze
from cnnlab.spec.language import ModelSpec, make_layer


def _check_against_torch(model: CnnModel) -> None:
    """Run a batch of 2 through each child and compare with the report, layer by layer."""
    x = torch.randn(2, *model.input_shape)
    model.eval()
    with torch.no_grad():
        for module, report in zip(model.children(), model.report.layers, strict=True):
            x = module(x)
            assert tuple(x.shape) == (2, *report.out_shape), report.label
            assert sum(p.numel() for p in module.parameters()) == report.params, report.label
    assert sum(p.numel() for p in model.parameters()) == model.report.total_params


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_match_their_analysis(name):
    _check_against_torch(build_model(name))


def test_tutorial_preset_has_the_seed_shapes():
    report = analyze(preset_spec("tutorial"))
    shapes = [r.out_shape for r in report.layers]
    for expected in [(32, 28, 28), (32, 14, 14), (64, 14, 14), (64, 7, 7), (3136,), (10,)]:
        assert expected in shapes
    assert report.total_params == 50_186  # conv 320 + conv 18,496 + fc 31,370


def test_children_are_named_after_the_spec():
    model = build_model("tutorial")
    assert [name for name, _ in model.named_children()][:4] == [
        "conv1",
        "relu1",
        "maxpool1",
        "conv2",
    ]
    assert "fc1.weight" in model.state_dict()


def test_forward_gives_logits_and_probabilities_apply_the_final_softmax():
    model = build_model("keras-mnist").eval()
    x = torch.randn(3, 1, 28, 28)
    logits = model(x)
    probabilities = model.probabilities(x)
    assert torch.allclose(probabilities, torch.softmax(logits, dim=1))
    assert torch.allclose(probabilities.sum(1), torch.ones(3))
    assert not torch.allclose(logits.sum(1), torch.ones(3))  # the softmax is not part of forward


def test_same_padding_with_stride_two_builds_keras_style():
    model = build_model("input(3x15x15) conv(8, 4, stride=2, padding=same, padding_mode=replicate)")
    assert model(torch.randn(1, 3, 15, 15)).shape == (1, 8, 8, 8)  # ceil(15/2) = 8
    assert any("applied explicitly" in note for note in model.report.layers[0].notes)


def test_a_model_with_an_impossible_layer_is_refused_before_building():
    with pytest.raises(SpecError, match="layer 2"):
        build_model("input(1x4x4) maxpool(2) conv(4, 3)")


# Generated models: a random stack of image layers, then flatten/gap and fc.
image_layer = st.one_of(
    st.builds(
        lambda out, k, s, p, d, g, mode: (
            "conv",
            [out * g, k],
            dict(stride=s, padding=p, dilation=d, groups=g, padding_mode=mode),
        ),
        st.integers(1, 4),
        st.tuples(st.integers(1, 3), st.integers(1, 3)),
        st.tuples(st.integers(1, 2), st.integers(1, 2)),
        st.one_of(st.just("same"), st.tuples(st.integers(0, 2), st.integers(0, 2))),
        st.tuples(st.integers(1, 2), st.integers(1, 2)),
        st.sampled_from([1, 2]),
        st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    ),
    st.builds(
        lambda kind, k, p, ceil: (kind, [k], dict(padding=p, ceil_mode=ceil)),
        st.sampled_from(["maxpool", "minpool", "avgpool"]),
        st.integers(1, 3),
        st.integers(0, 1),
        st.booleans(),
    ),
    st.sampled_from(["relu", "leakyrelu", "sigmoid", "tanh", "gelu", "batchnorm", "dropout"]).map(
        lambda k: (k, [], {})
    ),
)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    layers=st.lists(image_layer, min_size=1, max_size=6),
    head=st.sampled_from(["flatten", "gap", "gmp"]),
    size=st.integers(6, 20),
    channels=st.sampled_from([2, 4]),
)
def test_generated_models_match_torch_layer_by_layer(layers, head, size, channels):
    built = [make_layer(kind, positional, named) for kind, positional, named in layers]
    spec = ModelSpec(
        (*built, make_layer(head), make_layer("fc", [5]), make_layer("softmax")),
        (channels, size, size),
    )
    try:
        model = CnnModel(spec)
    except SpecError:
        event("refused")
        return  # impossible models are covered by the validator tests
    event("built")
    _check_against_torch(model)
