"""Residual blocks (`res`) and relu6: the spec language, the analyzer against torch, the summary,
the built model's names, folding and training, as tables with torch as the reference.

ResNet's basic block and EfficientNet-Lite's MBConv block are the two shapes the pretrained
networks need; both are spelled here as specs and trained one step.
"""

from __future__ import annotations

import tomllib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.errors import SpecError
from cnnlab.model.cnn import CnnModel, build_model
from cnnlab.model.layers import Residual
from cnnlab.run.checkpoint import spec_tensor_shapes
from cnnlab.spec.analysis import analyze
from cnnlab.spec.language import parse_spec
from cnnlab.spec.summary import explain_lines, summary_json, summary_rows
from cnnlab.spec.toml import spec_from_toml_dict, spec_to_toml

BASIC = "conv(16,3,padding=same) batchnorm relu conv(16,3,padding=same) batchnorm"
DOWN = (
    "res(conv(32,3,stride=2,padding=same) batchnorm relu conv(32,3,padding=same) batchnorm, "
    "shortcut=conv(32,1,stride=2) batchnorm)"
)
RESNET = f"input(3x32x32) conv(16,3,padding=same) batchnorm relu res({BASIC}) relu {DOWN} relu gap fc(10)"
# EfficientNet-Lite0's MBConv: expand 1x1, depthwise 5x5 stride 2 (Keras 'same'), project 1x1;
# then a stride-1 block whose channels match, so its skip is the identity.
MBCONV = (
    "input(3x32x32) conv(16,3,stride=2,padding=same,bias=false) batchnorm(eps=0.001) relu6 "
    "conv(96,1,bias=false) batchnorm(eps=0.001) relu6 "
    "conv(96,5,stride=2,padding=same,groups=96,bias=false) batchnorm(eps=0.001) relu6 "
    "conv(24,1,bias=false) batchnorm(eps=0.001) "
    "res(conv(144,1,bias=false) batchnorm(eps=0.001) relu6 "
    "conv(144,5,padding=same,groups=144,bias=false) batchnorm(eps=0.001) relu6 "
    "conv(24,1,bias=false) batchnorm(eps=0.001)) "
    "conv(1280,1,bias=false) batchnorm(eps=0.001) relu6 gap dropout(0.2) fc(10)"
)

# Blocks that must agree with torch: identity and projection, stride 1 and 2, depthwise
# groups, dilation, padding modes, even kernels, blocks of fc layers on vectors.
SPECS = {
    "identity": f"input(16x9x9) res({BASIC})",
    "projection stride 2": f"input(16x9x9) {DOWN}",
    "projection channels only": "input(8x7x7) res(conv(12,3,padding=same), shortcut=conv(12,1))",
    "depthwise 5x5 stride 2 same": "input(8x11x11) res(conv(8,5,stride=2,padding=same,groups=8) "
    "conv(16,1), shortcut=conv(16,1,stride=2))",
    "dilation": "input(4x12x12) res(conv(4,3,dilation=2,padding=2) relu6 conv(4,3,padding=(1,1)))",
    "padding modes": "input(4x10x10) res(conv(4,3,padding=1,padding_mode=reflect) "
    "conv(4,3,padding=1,padding_mode=circular) conv(4,3,padding=1,padding_mode=replicate))",
    "even kernel same": "input(3x10x10) res(conv(3,4,padding=same) relu)",
    "pooled shortcut": "input(6x8x8) res(conv(6,3,stride=2,padding=1), shortcut=avgpool(2))",
    "fc on vectors": "input(2x4x4) flatten res(fc(32) relu fc(32)) res(fc(8), shortcut=fc(8))",
    "two blocks": RESNET,
    "mbconv": MBCONV,
}


def _torch_outputs(model: CnnModel, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Every named module's output shape per image, blocks' inner layers included."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        module.register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))
        )
        for name, module in model.named_modules()
        if name
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return shapes


def _torch_macs(model: CnnModel, x: torch.Tensor) -> int:
    """Multiply-adds per image counted from torch's own outputs: conv and linear layers."""
    macs = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k_h, k_w = module.kernel_size
            macs.append(output[0].numel() * k_h * k_w * module.in_channels // module.groups)
        elif isinstance(module, torch.nn.Linear):
            macs.append(module.in_features * module.out_features)

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(x[:1])
    for hook in hooks:
        hook.remove()
    return sum(macs)


# --- the analyzer against torch ----------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_every_layer_in_and_out_of_blocks_has_torchs_shape(spec):
    model = build_model(spec).eval()
    outputs = _torch_outputs(model, torch.randn(2, *model.input_shape))
    for r in model.report.every_layer():  # report names are the module paths: res1.body.conv1
        assert outputs[r.name] == r.out_shape, r.name


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_params_and_flops_include_both_branches_and_the_add(spec):
    model = build_model(spec).eval()
    report = model.report
    assert report.total_params == sum(p.numel() for p in model.parameters())
    assert report.total_macs == _torch_macs(model, torch.randn(1, *model.input_shape))
    for r in report.layers:
        if r.layer.kind == "res":
            assert r.add_flops == torch.Size(r.out_shape).numel()  # one addition per element
            assert r.params == sum(p.numel() for p in model.get_submodule(r.name).parameters())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    channels=st.integers(1, 4),
    side=st.integers(3, 13),
    kernel=st.integers(1, 5),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    depthwise=st.booleans(),
)
def test_same_padding_blocks_with_a_strided_projection_match_torch(
    channels, side, kernel, stride, dilation, depthwise
):
    # 'same' gives ceil(L/s) and so does a 1x1 conv of stride s: the two branches always agree
    groups = channels if depthwise else 1
    spec = parse_spec(
        f"input({channels}x{side}x{side + 1}) res(conv({channels},{kernel},stride={stride},"
        f"padding=same,dilation={dilation},groups={groups}), shortcut=conv({channels},1,stride={stride}))"
    )
    model = CnnModel(spec).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *spec.input_shape))
    assert tuple(out.shape[1:]) == model.report.output_shape


def test_receptive_field_through_a_block_is_the_larger_branchs():
    report = analyze(parse_spec(f"input(16x9x9) res({BASIC}) {DOWN}"))
    res1, res2 = report.layers
    assert res1.rf == (5, 5) and res1.jump == (1, 1)  # two 3x3 convs; the identity sees 1x1
    assert "max(layers 5x5, input 1x1) = 5x5" in res1.rf_formula
    assert res2.rf == (5 + 2 + 2 * 2, 11) and res2.jump == (2, 2)
    assert "shortcut 5x5" in res2.rf_formula  # a 1x1 conv adds nothing to what its input saw


# --- errors ---------------------------------------------------------------------------------


SHAPE_ERRORS = [
    (
        "input(16x14x14) conv(16,3,padding=same) relu res(conv(24,3,padding=same))",
        [
            "res block 1 (layer 3) gets 16x14x14",
            "its layers turn 16x14x14 into 24x14x14",
            "the sum needs both the same shape",
            "end the block with conv(16, ...)",
            "add shortcut=conv(24, 1) batchnorm",
        ],
    ),
    (
        "input(16x14x14) res(relu) res(conv(16,3,stride=2,padding=same))",
        ["res block 2 (layer 2)", "into 16x7x7", "add shortcut=conv(16, 1, stride=2)"],
    ),
    (
        "input(16x14x14) res(conv(24,3,stride=2,padding=same), shortcut=conv(24,1))",
        ["its layers give 24x7x7 and its shortcut 24x14x14", "use shortcut=conv(24, 1, stride=2)"],
    ),
    ("input(16x14x14) res(conv(16,3))", ["into 16x12x12", "keep 14x14 inside the block"]),
    ("input(2x4x4) flatten res(fc(10))", ["turn 32 into 10", "end the block with fc(32)"]),
    ("input(2x4x4) res(flatten fc(10))", ["keep flatten and gap out of the block"]),
    (  # a shape error inside a block names the block and the inner layer
        "input(4x4x4) res(conv(4,3) conv(4,3) conv(4,3))",
        ["res block 1 (layer 1), body layer 2 conv(4, 3) gets 4x2x2", "would be 0x0 pixels"],
    ),
    (
        "input(4x8x8) res(relu, shortcut=conv(4,3) conv(4,9))",
        ["res block 1 (layer 1), shortcut layer 2 conv(4, 9) gets 4x6x6", "would be -2x-2"],
    ),
]


@pytest.mark.parametrize("spec, parts", SHAPE_ERRORS)
def test_shape_errors_name_the_block_both_shapes_and_a_fix(spec, parts):
    with pytest.raises(SpecError) as error:
        analyze(parse_spec(spec))
    for part in parts:
        assert part in str(error.value)
    assert "\n  fix: " in str(error.value)


PARSE_ERRORS = [
    ("res()", "expected layers inside res(...)"),
    ("res(relu, relu)", "has one list of layers without a name"),
    ("res(res(relu))", "res blocks do not nest"),
    ("res(relu", "is a ')' missing to close 'res(' from column 14?"),
    ("res(relu, shortcut=)", "expected layers inside res(...)"),
    ("res(relu, shortcut=relu, shortcut=relu)", "'shortcut' is given twice"),
    ("res(relu, skip=relu)", "res has no parameter 'skip'"),
    ("res(input(1x2x2))", "input(...) comes first"),
    ("res", "res needs body"),
]


@pytest.mark.parametrize("text, message", PARSE_ERRORS)
def test_parse_errors_point_at_the_block(text, message):
    with pytest.raises(SpecError, match="spec error at column") as error:
        parse_spec(f"input(1x8x8) {text}")
    assert message in str(error.value)


# --- text and TOML ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_text_toml_and_built_model_read_back_equal(spec):
    parsed = parse_spec(spec)
    assert parse_spec(parsed.text()) == parsed
    assert parse_spec(parsed.text()).text() == parsed.text()
    assert spec_from_toml_dict(tomllib.loads(spec_to_toml(parsed))) == parsed
    assert build_model(parsed).to_spec() == parsed


def test_canonical_text_and_aliases():
    spec = parse_spec(
        "input(1x8x8) residual( conv(4,3,padding=same)  relu , projection=conv(4,1) )"
    )
    assert spec.text() == "input(1x8x8) res(conv(4, 3, padding=same) relu, shortcut=conv(4, 1))"
    assert parse_spec("input(1x8x8) res(body=relu)") == parse_spec("input(1x8x8) res(relu)")


def test_toml_spelling_of_a_block():
    toml = """
input = [16, 8, 8]
[[layers]]
type = "res"
[[layers.body]]
type = "conv"
out = 32
kernel = 3
stride = 2
padding = "same"
[[layers.shortcut]]
type = "conv"
out = 32
kernel = 1
stride = 2
"""
    spec = spec_from_toml_dict(tomllib.loads(toml))
    assert spec == parse_spec(
        "input(16x8x8) res(conv(32,3,stride=2,padding=same), shortcut=conv(32,1,stride=2))"
    )
    nested = '[[layers]]\ntype = "res"\n[[layers.body]]\ntype = "res"\nbody = [{type = "relu"}]\n'
    with pytest.raises(SpecError, match="res blocks do not nest"):
        spec_from_toml_dict(tomllib.loads(nested))
    with pytest.raises(SpecError, match="layer 1, body layer 1: conv: out=0"):
        spec_from_toml_dict(
            tomllib.loads('[[layers]]\ntype = "res"\nbody = [{type = "conv", out = 0, kernel = 3}]')
        )


# --- the built model --------------------------------------------------------------------------


def test_state_dict_names_are_stable_and_readable():
    model = build_model(RESNET)
    names = list(model.state_dict())
    assert "res1.body.conv1.weight" in names
    assert "res1.body.batchnorm2.running_var" in names
    assert "res2.shortcut.conv1.weight" in names
    assert "res2.shortcut.batchnorm1.bias" in names
    assert isinstance(model.res1, Residual) and len(model.res1.shortcut) == 0  # the identity
    # the checkpoint's shape check knows the same names and shapes from the spec alone
    assert spec_tensor_shapes(model.report) == {
        k: tuple(v.shape) for k, v in model.state_dict().items()
    }


def test_relu6_clips_at_six_and_names_its_layers_relu6_1():
    model = build_model("input(1x1x4) relu6 res(relu6)")
    assert [name for name, _ in model.named_modules()][1:4] == ["relu6_1", "res1", "res1.body"]
    x = torch.tensor([[[[-1.0, 3.0, 6.0, 9.0]]]])
    assert model(x).flatten().tolist() == [0.0, 6.0, 12.0, 12.0]  # relu6(x) + relu6(relu6(x))


@pytest.mark.parametrize("spec", [RESNET, MBCONV], ids=["resnet", "mbconv"])
def test_resnet_and_mbconv_specs_train_one_step(spec):
    torch.manual_seed(0)
    model = build_model(spec).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, *model.input_shape), torch.tensor([0, 1, 2, 3])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer.step()
    moved = [
        k
        for k, v in model.state_dict().items()
        if k.endswith("weight") and not torch.equal(v, before[k])
    ]
    assert any(".body." in k for k in moved)  # the block's own weights learn too


# --- the summary --------------------------------------------------------------------------------


def test_summary_rows_show_the_blocks_layers_then_its_add():
    report = analyze(parse_spec(f"input(16x9x9) {DOWN} gap fc(3)"))
    rows = summary_rows(report)
    numbers = [row[0] for row in rows]
    assert numbers == ["", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "1", "2", "3"]
    assert "res1.shortcut.conv1" in rows[6][1]
    add = rows[8]
    assert "add: layers + shortcut" in add[1] and add[2] == "32x5x5"
    assert "layers 32x5x5 + shortcut 32x5x5 = 32x5x5" in add[3]
    assert add[5] == f"{32 * 5 * 5:,}"  # the add's own FLOPs: one per element
    # the rows add up to the totals: the block's layers are counted once
    assert sum(int(row[4].replace(",", "") or 0) for row in rows) == report.total_params
    assert sum(int(row[5].replace(",", "") or 0) for row in rows) == report.total_flops


def test_json_nests_the_blocks_layers_and_explain_says_what_is_added():
    report = analyze(parse_spec(f"input(16x9x9) res({BASIC}) gap fc(3)"))
    block = summary_json(report)["layers"][0]
    assert block["kind"] == "res" and block["add_flops"] == 16 * 9 * 9
    assert [inner["name"] for inner in block["layers"]][:2] == [
        "res1.body.conv1",
        "res1.body.batchnorm1",
    ]
    assert {inner["branch"] for inner in block["layers"]} == {"body"}
    text = "\n".join(explain_lines(report))
    assert "1.1. res1.body.conv1: conv(16, 3, padding=same)" in text
    assert (
        "adds, value by value, the output of its layers (1.1-1.5 above) and the block's input"
        in text
    )
    assert "must have one shape" in text


# --- the stages that read a model: feature maps, diagram, Grad-CAM, top patches ----------------


def test_feature_maps_diagram_cam_and_patches_take_a_block_as_one_layer(tmp_path):
    from cnnlab.evaluate import cam, patches
    from cnnlab.evaluate.featuremaps import feature_maps
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.diagram import diagram_blocks, diagram_figure

    model = build_model(f"input(16x9x9) res({BASIC}) relu {DOWN} relu gap fc(3)").eval()
    maps = feature_maps(model, torch.randn(1, 16, 9, 9))
    assert [m.name for m in maps][:3] == ["res1", "relu1", "res2"]  # the block's output, once
    # a block's output is a map Grad-CAM can read; relu2's cells see more than half of the 9x9
    # image, so the default is the last map whose cells see at most half (evaluate/cam.py)
    assert cam.default_layer(model) == "relu1"
    # cell 0 of res1 reads from 2 pixels before the image: two 3x3 convs with padding 1 each
    assert patches.layer_geometry(model.report, "res1").start == (-2, -2)
    assert patches.layer_geometry(model.report, "res1").size == (5, 5)
    blocks = diagram_blocks(model.report)
    assert blocks[1].lines()[:2] == [
        "res1: layers + input",
        "  body.conv1: conv(16, 3, padding=same)",
    ]
    assert blocks[2].lines()[0] == "res2: layers + shortcut"
    svg = save_figure(diagram_figure(model.report), tmp_path / "res.svg").read_text()
    assert "+ input" in svg and "+ shortcut" in svg  # the skips are drawn and labelled
