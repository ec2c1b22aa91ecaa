"""The table of layer kinds: every kind has a parser entry, an analyzer, a torch builder, a way back
from its module, and traits that the diagram, the feature-map figure and the model obey.

Each test runs over the whole table, so a kind added to `kinds.py` without its analyzer, builder,
reverse mapping or a true trait fails here (and at import), not silently in a picture.
"""

from __future__ import annotations

import re

import pytest
import torch

from cnnlab.errors import SpecError
from cnnlab.evaluate.featuremaps import feature_maps
from cnnlab.evaluate.maplayers import default_map_layers
from cnnlab.figures.diagram import diagram_blocks
from cnnlab.model import layers
from cnnlab.model.cnn import CnnModel, adapt_to_data
from cnnlab.spec import analysis
from cnnlab.spec.analysis import LayerReport, analyze
from cnnlab.spec.kinds import LAYER_KINDS, LayerKind, require_every_kind, resolve_kind
from cnnlab.spec.language import ModelSpec, make_layer, parse_spec

IMAGE = (2, 8, 8)  # (C, H, W): small enough for any example kernel
KINDS = sorted(LAYER_KINDS)


def _example_report(kind: LayerKind) -> tuple[ModelSpec, LayerReport]:
    """The kind's example on an image, or after flatten when it needs a vector: (spec, its report)."""
    layer = parse_spec(kind.example_text()).layers[0]
    try:
        spec = ModelSpec((layer,), IMAGE)
        return spec, analyze(spec).layers[-1]
    except SpecError:
        spec = ModelSpec((make_layer("flatten"), layer), IMAGE)
        return spec, analyze(spec).layers[-1]


@pytest.mark.parametrize("name", KINDS)
def test_the_example_and_every_alias_parse_to_the_kind(name):
    kind = LAYER_KINDS[name]
    layer = parse_spec(kind.example_text()).layers[0]
    assert layer.kind == name
    assert parse_spec(layer.text()).layers[0] == layer
    for alias in (name, *kind.aliases):
        assert resolve_kind(alias.upper()) is kind


def test_aliases_belong_to_one_kind_each():
    names = [alias for kind in LAYER_KINDS.values() for alias in (kind.name, *kind.aliases)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", KINDS)
def test_the_kind_has_an_analyzer_builder_and_reverse_mapping(name):
    assert name in analysis._ANALYZERS
    assert name in layers._BUILDERS
    assert name in {kind for _, kind, _ in layers._REVERSE}


@pytest.mark.parametrize("name", KINDS)
def test_built_module_matches_the_analysis_and_reads_back_to_the_same_spec(name):
    spec, report = _example_report(LAYER_KINDS[name])
    model = CnnModel(spec).eval()
    module = list(model.children())[-1]
    x = torch.randn(3, *IMAGE)
    with torch.no_grad():
        for child in model.children():
            x = child(x)
    assert tuple(x.shape[1:]) == report.out_shape
    assert layers.layer_from_module(module) == report.layer


@pytest.mark.parametrize("name", KINDS)
def test_shape_keeping_kinds_keep_the_shape_and_join_the_box_before(name):
    kind = LAYER_KINDS[name]
    spec, report = _example_report(kind)
    assert kind.shape_keeping == (report.out_shape == report.in_shape)
    blocks = diagram_blocks(analyze(spec))  # the input's box, flatten's if any, and the kind's own
    assert len(blocks) == len(spec.layers) + 1 - kind.shape_keeping
    assert blocks[-1].layers[-1] == report
    assert re.fullmatch(r"#[0-9a-f]{6}", kind.colour)


@pytest.mark.parametrize("name", KINDS)
def test_kinds_that_show_a_map_are_the_default_feature_map_layers(name):
    kind = LAYER_KINDS[name]
    spec, report = _example_report(kind)
    if kind.shows_map:
        assert len(report.in_shape) == len(report.out_shape) == 3  # an image in, an image out
    maps = feature_maps(CnnModel(spec), torch.randn(1, *IMAGE))
    shown = {m.kind for m in default_map_layers(maps)}
    assert (name in shown) == (kind.shows_map and len(report.out_shape) == 3)


@pytest.mark.parametrize("name", sorted(set(KINDS) - {"fc"}))
def test_only_kinds_that_keep_the_layout_may_follow_the_last_fc(name):
    kind = LAYER_KINDS[name]
    spec = parse_spec(f"input(2x8x8) flatten fc(10) {kind.example_text()}")
    if kind.changes_layout:
        with pytest.raises(SpecError, match="the last fc must be the model's output layer"):
            adapt_to_data(spec, IMAGE, 3)
    else:
        adapted, _ = adapt_to_data(spec, IMAGE, 3)
        assert adapted.layers[1].params["out"] == 3


@pytest.mark.parametrize("name", KINDS)
def test_window_pooling_strides_default_to_the_kernel(name):
    kind = LAYER_KINDS[name]
    if kind.window_pooling:
        assert make_layer(name, [3]).params["stride"] == (3, 3)
    else:
        assert kind.param("stride") is None or kind.param("stride").default is not None


def test_a_table_missing_a_kind_fails_loudly():
    require_every_kind(LAYER_KINDS, "the table itself")
    with pytest.raises(AssertionError, match=r"missing kinds \['relu'\]"):
        require_every_kind(set(LAYER_KINDS) - {"relu"}, "a table")
    with pytest.raises(AssertionError, match=r"not in LAYER_KINDS \['nosuchkind'\]"):
        require_every_kind({*LAYER_KINDS, "nosuchkind"}, "a table")
