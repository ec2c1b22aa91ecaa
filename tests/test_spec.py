"""The spec language: one-line and TOML spellings, canonical text, round trips and parse errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.errors import SpecError
from cnnlab.model.cnn import build_model
from cnnlab.model.presets import PRESETS, preset_spec, resolve_model
from cnnlab.spec.kinds import LAYER_KINDS
from cnnlab.spec.language import ModelSpec, make_layer, parse_shape, parse_spec
from cnnlab.spec.toml import load_spec_toml, spec_to_toml

ISSUE_EXAMPLE = "conv(32,3,padding=same) relu maxpool(2) conv(64,3,padding=same) relu maxpool(2) flatten dropout(0.5) fc(10)"


def test_issue_example_parses_with_every_parameter_normalised():
    spec = parse_spec(ISSUE_EXAMPLE)
    assert [layer.kind for layer in spec.layers] == [
        "conv", "relu", "maxpool", "conv", "relu", "maxpool", "flatten", "dropout", "fc",
    ]  # fmt: skip
    conv = spec.layers[0].params
    assert conv["out"] == 32 and conv["kernel"] == (3, 3) and conv["padding"] == "same"
    assert conv["stride"] == (1, 1) and conv["dilation"] == (1, 1) and conv["groups"] == 1
    assert spec.layers[2].params["stride"] == (2, 2)  # pooling stride defaults to the kernel
    assert spec.input_shape is None


def test_input_inside_the_spec_or_given_separately_are_the_same():
    inline = parse_spec("input(1x28x28) " + ISSUE_EXAMPLE)
    separate = resolve_model(ISSUE_EXAMPLE, input_shape=(1, 28, 28))
    assert inline == separate
    assert parse_spec("input(1,28,28) relu") == parse_spec("input(1x28x28) relu")


def test_toml_and_one_line_parse_to_the_same_spec(tmp_path):
    path = tmp_path / "model.toml"
    path.write_text(
        """
input = [1, 28, 28]

[[layers]]
type = "conv"
out = 32
kernel = [3, 3]
padding = "same"

[[layers]]
type = "relu"

[[layers]]
type = "maxpool"
kernel = 2

[[layers]]
type = "conv"
out_channels = 64
kernel_size = 3
padding = "same"

[[layers]]
type = "ReLU"

[[layers]]
type = "MaxPool2d"
kernel = 2
stride = 2

[[layers]]
type = "flatten"

[[layers]]
type = "dropout"
p = 0.5

[[layers]]
type = "dense"
units = 10
"""
    )
    assert load_spec_toml(path) == parse_spec("input(1x28x28) " + ISSUE_EXAMPLE)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_text_toml_and_the_built_model(name, tmp_path):
    spec = preset_spec(name)
    assert parse_spec(spec.text()) == spec
    path = tmp_path / f"{name}.toml"
    path.write_text(spec_to_toml(spec))
    assert load_spec_toml(path) == spec
    model = build_model(spec)
    from_modules = model.to_spec()
    assert from_modules.text() == _without_declared_fc_inputs(spec).text()


def _without_declared_fc_inputs(spec: ModelSpec) -> ModelSpec:
    """A built Linear knows its input size; the spec read back from it leaves `in` to be inferred."""
    layers = tuple(
        make_layer("fc", [layer.params["out"]], {"bias": layer.params["bias"]})
        if layer.kind == "fc"
        else layer
        for layer in spec.layers
    )
    return ModelSpec(layers, spec.input_shape)


def test_canonical_text_keeps_non_defaults_and_drops_defaults():
    spec = parse_spec(
        "conv(8, (3,5), stride=(2,1), padding=(1,2), dilation=2, groups=2, bias=false, padding_mode=reflect) "
        "avgpool(3, 2, 1, ceil_mode=true, count_include_pad=false) minpool(2) leakyrelu(0.2) batchnorm(eps=0.001) "
        "gap fc(10, in=8) softmax"
    )
    assert spec.text() == (
        "conv(8, (3,5), stride=(2,1), padding=(1,2), dilation=2, groups=2, bias=false, padding_mode=reflect) "
        "avgpool(3, stride=2, padding=1, count_include_pad=false, ceil_mode=true) minpool(2) leakyrelu(0.2) "
        "batchnorm(eps=0.001) gap fc(10, in=8) softmax"
    )


def test_aliases_products_and_valid_padding():
    a = parse_spec(
        "Conv2d(out_channels=16, kernel_size=3, padding=valid) BN ReLU Linear(10, in_features=16*3*3)"
    )
    b = parse_spec("conv(16, 3) batchnorm relu fc(10, in=144)")
    assert a == b


layer_names = st.sampled_from(sorted(LAYER_KINDS))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(
                lambda out, k, s, p, mode: make_layer(
                    "conv", [out, k], dict(stride=s, padding=p, padding_mode=mode)
                ),
                st.integers(1, 64),
                st.tuples(st.integers(1, 7), st.integers(1, 7)),
                st.tuples(st.integers(1, 3), st.integers(1, 3)),
                st.one_of(st.just("same"), st.tuples(st.integers(0, 3), st.integers(0, 3))),
                st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
            ),
            st.builds(
                lambda kind, k, p, ceil: make_layer(kind, [k], dict(padding=p, ceil_mode=ceil)),
                st.sampled_from(["maxpool", "minpool", "avgpool"]),
                st.integers(1, 4),
                st.integers(0, 2),
                st.booleans(),
            ),
            st.builds(lambda p: make_layer("dropout", [p]), st.floats(0, 0.99, allow_nan=False)),
            st.builds(lambda s: make_layer("leakyrelu", [s]), st.floats(-1, 1, allow_nan=False)),
            st.builds(lambda n: make_layer("fc", [n]), st.integers(1, 100)),
            st.sampled_from(
                ["relu", "sigmoid", "tanh", "gelu", "flatten", "softmax", "gap", "gmp", "batchnorm"]
            ).map(make_layer),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_any_spec_text_parses_back_to_itself(layers):
    spec = ModelSpec(tuple(layers), (3, 32, 32))
    assert parse_spec(spec.text()) == spec


@pytest.mark.parametrize(
    "text, column, words",
    [
        ("conv(32,3,padding=same relu", 24, "')' missing to close 'conv('"),
        ("conv(32,3) relu fc(10", 22, "')' missing"),
        ("conv(32,3) rleu", 12, "unknown layer 'rleu'. Did you mean relu"),
        ("conv(32, 3, paddin=1)", 1, "conv has no parameter 'paddin'"),
        ("conv(32) relu", 1, "conv needs kernel"),
        (
            "conv(32, 3, padding=half)",
            1,
            "padding='half' must be a number, (p_h,p_w), same or valid",
        ),
        ("dropout(1.5)", 1, "must be at least 0 and below 1"),
        ("conv(0, 3)", 1, "out=0 must be a positive whole number"),
        (
            "conv(32, 3, padding_mode=mirror)",
            1,
            "must be one of: zeros, reflect, replicate, circular",
        ),
        ("relu input(1x28x28)", 6, "input(...) must come first"),
        ("conv(32,3) , relu", 12, "expected a layer name"),
        ("conv(3x, 3)", 6, "'3x' is not a number"),
        ("", 1, "the spec has no layers"),
        ("maxpool(2, 2, 0, 1)", 1, "takes at most 3 parameters without names"),
        ("conv(stride=2, 32, 3)", 16, "a value without a name after named ones"),
    ],
)
def test_malformed_specs_name_the_column_and_the_problem(text, column, words):
    with pytest.raises(SpecError) as caught:
        parse_spec(text)
    message = str(caught.value)
    assert f"column {column}:" in message
    assert words in message
    caret_line = message.splitlines()[-1]
    assert caret_line.index("^") - 2 == column - 1


def test_toml_errors_name_the_file_and_layer(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('input = [1, 28, 28]\n[[layers]]\ntype = "conv"\nout = 8\n')
    with pytest.raises(SpecError, match=r"bad.toml: layer 1: conv needs kernel"):
        load_spec_toml(path)
    path.write_text("layers = [")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec_toml(path)
    path.write_text('inputs = [1, 28, 28]\n[[layers]]\ntype = "relu"\n')
    with pytest.raises(SpecError, match="unknown key"):
        load_spec_toml(path)
    path.write_text("[[layers]]\nout = 3\n")
    with pytest.raises(SpecError, match=r"layer 1 has no type"):
        load_spec_toml(path)


@pytest.mark.parametrize("text", ["28x28", "1x28x", "0x28x28", "a,b,c", "1x28x28x3"])
def test_bad_input_shapes_are_refused(text):
    with pytest.raises(SpecError, match="CxHxW"):
        parse_shape(text)


def test_unknown_preset_suggests_the_near_name():
    with pytest.raises(SpecError, match="Did you mean tutorial"):
        resolve_model("tutorail")
    with pytest.raises(SpecError, match="does not exist"):
        resolve_model("missing-model.toml")


def test_a_spec_longer_than_a_file_name_is_still_a_spec():
    long_spec = (
        "input(1x28x28) " + " ".join(["conv(4,3,padding=same) relu"] * 20) + " flatten fc(10)"
    )
    assert len(long_spec) > 300
    assert len(resolve_model(long_spec).layers) == 42
