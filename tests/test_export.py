"""Export: BatchNorm folding, every layer kind in ONNX and pt2, parity on real test images, engines.

The eager model is the reference throughout: folding must not change its outputs, exports
must reproduce its logits (max |difference| < 1e-4, same classes) on the run's own test
split, and a stale, changed or pickled export must be refused.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image
from serve_support import trained_run

import cnnlab
from cnnlab.deploy.engines import (
    PARITY_TOLERANCE,
    OnnxEngine,
    Pt2Engine,
    read_export,
    refuse_pickled_payloads,
    sidecar_path,
)
from cnnlab.deploy.export import (
    ExportError,
    Parity,
    check_parity,
    engine_logits,
    export_run,
    onnx_bytes,
    pt2_bytes,
)
from cnnlab.deploy.predict import Predictor
from cnnlab.errors import CheckpointError, SpecError
from cnnlab.evaluate.scores import split_images
from cnnlab.model.cnn import build_model
from cnnlab.model.fold import fold_batchnorm, foldable_pairs
from cnnlab.model.inference import logits_in_batches
from cnnlab.model.presets import PRESETS
from cnnlab.run.folder import Run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(run_dir) -> Path:
    """The module's run with both exports written beside it."""
    run = Run.open(run_dir)
    export_run(run, "onnx")
    export_run(run, "pt2")
    return run_dir


def _randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm statistics and affine values far from the identity."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator))
            module.running_var.copy_(torch.rand(n, generator=generator) * 3 + 0.1)
            module.weight.data.copy_(torch.randn(n, generator=generator))
            module.bias.data.copy_(torch.randn(n, generator=generator))


# --- folding -------------------------------------------------------------------------------

FOLD_SPECS = [
    # conv without bias, strided 'same' (SameConv2d) with reflect padding and groups, fc + BN1d,
    # and a BatchNorm after a pool that cannot be folded
    "input(3x20x20) conv(8,3,padding=same,bias=false) batchnorm relu "
    "conv(8,3,stride=2,padding=same,padding_mode=reflect,groups=2) batchnorm maxpool(2) batchnorm "
    "flatten fc(16) batchnorm relu fc(10)",
    "default",
    "input(1x28x28) conv(4,5,dilation=2,padding_mode=circular,padding=2) batchnorm gap batchnorm fc(3)",
    # BatchNorms inside res blocks (body and shortcut) fold into their convs; the add stays
    "input(3x12x12) conv(8,3,padding=same) batchnorm relu res(conv(8,3,padding=same) batchnorm "
    "relu conv(8,3,padding=same) batchnorm) relu res(conv(16,3,stride=2,padding=same) batchnorm, "
    "shortcut=conv(16,1,stride=2) batchnorm) batchnorm gap fc(3)",
]


@pytest.mark.parametrize("spec", FOLD_SPECS)
def test_folded_model_equals_the_model_in_eval_mode(spec):
    torch.manual_seed(0)
    model = build_model(spec).eval()
    _randomize_batchnorm(model)
    folded = fold_batchnorm(model)
    x = torch.randn(6, *model.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)
    pairs = foldable_pairs(model)
    assert pairs, "each spec has at least one foldable pair"
    for _, bn in pairs:  # names such as batchnorm2, or res1.body.batchnorm1 inside a block
        assert isinstance(folded.get_submodule(bn), torch.nn.Identity)
        assert isinstance(model.get_submodule(bn), torch.nn.BatchNorm1d | torch.nn.BatchNorm2d)
    kept = sum(isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d) for m in folded.modules())
    total = sum(isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d) for m in model.modules())
    assert kept == total - len(pairs)
    assert [n for n, _ in folded.named_children()] == [n for n, _ in model.named_children()]


@pytest.mark.parametrize(
    "pools", ["maxpool(2)", "minpool(2,padding=1)", "maxpool(2) maxpool(3,stride=1)", "gmp"]
)
def test_batchnorm_after_max_or_min_pools_folds_when_no_scale_is_negative(pools):
    flatten = "" if pools == "gmp" else "flatten"
    model = build_model(f"input(2x12x12) conv(4,3) {pools} batchnorm {flatten} fc(3)").eval()
    _randomize_batchnorm(model)
    bn = next(
        m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d)
    )
    bn.weight.data.abs_()  # every scale >= 0: pooling and normalising commute
    bn.weight.data[0] = 0.0  # a zero scale too: the channel is constant either way
    x = torch.randn(5, 2, 12, 12)
    assert foldable_pairs(model) == [("conv1", bn_name := _name_of(model, bn))]
    folded = fold_batchnorm(model)
    assert isinstance(getattr(folded, bn_name), torch.nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)
    bn.weight.data[1] = -0.5  # one negative scale turns that channel's max into a min
    assert foldable_pairs(model) == []


def test_batchnorm_after_an_average_pool_is_left_alone():
    model = build_model("input(1x8x8) conv(2,3) avgpool(2) batchnorm flatten fc(2)")
    assert foldable_pairs(model) == []


def _name_of(model: torch.nn.Module, child: torch.nn.Module) -> str:
    return next(name for name, module in model.named_children() if module is child)


# --- every layer kind exports ----------------------------------------------------------------

LAYER_SPECS = {
    "minpool + strided same + reflect": "input(1x28x28) conv(8,3,stride=2,padding=same,"
    "padding_mode=reflect) minpool(2) flatten fc(5)",
    "circular + replicate + ceil avgpool + gap": "input(3x21x21) conv(6,3,padding=1,"
    "padding_mode=circular) avgpool(2,ceil_mode=true) conv(6,3,padding=1,padding_mode=replicate) "
    "relu gap fc(4)",
    "gmp + activations + dropout + softmax": "input(1x16x16) conv(8,3,padding=same) leakyrelu(0.1) "
    "gelu maxpool(3,stride=2,padding=1,ceil_mode=true) sigmoid gmp batchnorm tanh dropout fc(10) softmax",
    "dilation + groups + avgpool without pad counting": "input(2x24x24) conv(8,3,dilation=2,"
    "groups=2) conv(8,3,groups=4,padding=same) maxpool(2,dilation=2) "
    "avgpool(2,padding=1,count_include_pad=false) flatten fc(7)",
    "even kernel same + minpool padding": "input(1x15x15) conv(4,4,padding=same) "
    "minpool(3,stride=2,padding=1) flatten fc(3)",
    "res identity + projection, mbconv, relu6": "input(3x15x15) conv(8,3,stride=2,padding=same) "
    "batchnorm(eps=0.001) relu6 res(conv(16,1,bias=false) batchnorm relu6 "
    "conv(16,5,padding=same,groups=16,bias=false) batchnorm relu6 conv(8,1,bias=false) batchnorm) "
    "res(conv(12,3,stride=2,padding=same) batchnorm relu, shortcut=conv(12,1,stride=2) batchnorm) "
    "relu gap fc(4)",
}


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
@pytest.mark.parametrize("spec", LAYER_SPECS.values(), ids=LAYER_SPECS.keys())
def test_every_layer_kind_exports_and_runs_in_its_runtime(spec, fmt):
    torch.manual_seed(1)
    model = build_model(spec).eval()
    _randomize_batchnorm(model)
    folded = fold_batchnorm(model)
    engine = OnnxEngine(onnx_bytes(folded)) if fmt == "onnx" else Pt2Engine(pt2_bytes(folded))
    for batch in (1, 5):  # the batch dimension is dynamic
        x = torch.randn(batch, *model.input_shape)
        with torch.no_grad():
            reference = model(x)  # logits: a final softmax layer is not applied by forward
        logits = engine.logits(x)
        assert logits.shape == reference.shape
        assert (logits - reference).abs().max().item() < 1e-4


# --- exporting a run -------------------------------------------------------------------------


def test_export_writes_file_and_sidecar_and_prints_parity(run_dir, tmp_path, cli):
    out = tmp_path / "deploy" / "digits.onnx"
    result = cli("export", str(run_dir), "--out", str(out))
    assert result.code == 0, result.err
    assert "parity ok" in result.out
    # the default model's last conv is followed straight by batchnorm: that one folds
    last_conv = [r.name for r in Run.open(run_dir).load_model().report.layers
                 if r.layer.kind == "conv"][-1]  # fmt: skip
    assert f"into {last_conv}" in result.out and "folded BatchNorm: batchnorm" in result.out
    assert "400 images (shapes test split)" in result.out
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["kind"] == "onnx" and meta["output"].startswith("logits")
    assert meta["parity"]["images"] == 400 and meta["parity"]["mismatches"] == 0
    assert meta["parity"]["max_abs_diff"] < 1e-4
    run = Run.open(run_dir)
    assert meta["classes"] == run.classes and meta["mean"] == list(run.mean)
    # other runtimes find the preprocessing inside the ONNX file itself
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["std"]) == list(run.std)
    assert json.loads(props["input_shape"]) == list(run.input_shape)
    assert not list(tmp_path.rglob("*.tmp"))


def test_onnx_predictions_equal_the_eager_models_on_the_whole_test_set(exported):
    run = Run.open(exported)
    images, labels, _ = split_images(run)
    eager = logits_in_batches(run.load_model(), images, run.mean, run.std)
    for fmt in ("onnx", "pt2"):
        kind, data, _ = read_export(exported / f"model.{fmt}", run)
        engine = OnnxEngine(data) if kind == "onnx" else Pt2Engine(data)
        logits = engine_logits(engine, images, run, batch_size=137)  # uneven batches
        assert torch.equal(logits.argmax(1), eager.argmax(1)), fmt
        assert (logits - eager).abs().max().item() < 1e-4, fmt
    assert len(labels) == 400


def test_failed_parity_leaves_no_file(run_dir, tmp_path):
    out = tmp_path / "strict.onnx"
    # A limit of 0 cannot be met (differences are >= 0): the real failure path, nothing written.
    with pytest.raises(ExportError, match="nothing was written"):
        export_run(Run.open(run_dir), "onnx", out=out, tolerance=0.0)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_wrong_suffix(run_dir, cli):
    result = cli("export", str(run_dir), "--format", "pt2", "--out", "model.onnx")
    assert result.code == 2
    assert "does not end in .pt2" in result.err


def test_export_without_the_runs_data_checks_random_images(tmp_path):
    # A run whose config.toml is gone cannot rebuild its data: parity falls back to random images.
    torch.manual_seed(0)
    model = build_model("input(1x12x12) conv(4,3) batchnorm relu gap fc(3)").eval()
    from cnnlab.run.files import model_meta
    from cnnlab.run.writer import write_model

    write_model(tmp_path, model, model_meta(model, ["a", "b", "c"], (0.5,), (0.25,), "none", {}))
    result = export_run(Run.open(tmp_path), "onnx")
    assert result.parity.ok
    assert result.parity.images == 256
    assert "not available" in result.parity.source


# --- every preset ------------------------------------------------------------------------------

TRAINABLE_ON_SHAPES = [name for name in PRESETS if name != "color-cnn"]


@pytest.mark.slow  # the default preset's exports are also checked, quicker, by `exported`
@pytest.mark.parametrize("preset", TRAINABLE_ON_SHAPES)
def test_export_parity_for_every_preset_trained_on_shapes(preset, tmp_path_factory):
    run = Run.open(trained_run(tmp_path_factory, preset, train_size=600, test_size=300))
    for fmt in ("onnx", "pt2"):
        result = export_run(run, fmt)
        assert result.parity.ok, result.parity.line()
        assert result.parity.images >= 300 and "test split" in result.parity.source
        predictor = Predictor(run, fmt)
        assert predictor.engine.name == fmt


def test_color_cnn_cannot_run_on_shapes_28x28(tmp_path):
    # color-cnn's fc(10, in=32768) fixes its input to 3x256x256; adapting it to shapes' 1x28x28
    # is refused by the validator before any training, with the reason and the fix.
    with pytest.raises(SpecError) as caught:
        cnnlab.train(model="color-cnn", data="shapes", train_size=100, test_size=50, epochs=1,
                     quiet=True, out=str(tmp_path / "run"))  # fmt: skip
    message = str(caught.value)
    assert "in=32768" in message and "on a 1x28x28 input" in message
    assert "needs a 1x256x256 input" in message  # the validator's fix for one channel
    assert not (tmp_path / "run" / "model.json").exists()


@pytest.mark.slow
def test_color_cnn_exports_at_its_own_3x256x256_input(tmp_path):
    # A tiny colour image folder at 256x256 lets color-cnn train and export as the seed wrote it.
    generator = torch.Generator().manual_seed(0)
    for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        folder = tmp_path / "colours" / label
        folder.mkdir(parents=True)
        for i in range(12):
            noise = torch.randint(0, 50, (256, 256, 3), generator=generator)
            pixels = (torch.tensor(colour) + noise).clamp(0, 255).to(torch.uint8).numpy()
            Image.fromarray(pixels, "RGB").save(folder / f"{i}.png")
    run = cnnlab.train(model="color-cnn", data=f"folder:{tmp_path / 'colours'}", image_size=256,
                       channels=3, epochs=1, batch_size=8, optimizer="adam", quiet=True,
                       out=str(tmp_path / "run"))  # fmt: skip
    assert run.input_shape == (3, 256, 256)
    result = export_run(run, "onnx")
    assert result.parity.ok, result.parity.line()


# --- engines refuse what they should ---------------------------------------------------------


def test_engines_agree_with_eager_through_predict(exported, cli):
    folder = exported.parent / "pngs"
    run = Run.open(exported)
    images, _, _ = split_images(run)
    folder.mkdir(exist_ok=True)
    for i in range(40):
        Image.fromarray(images[i, 0].numpy()).save(folder / f"{i:03d}.png")
    outputs = {}
    for engine in ("eager", "onnx", "pt2", "auto"):
        result = cli(
            "predict", str(exported), str(folder), "--engine", engine, "--json", "--top-k", "10"
        )
        assert result.code == 0, result.err
        data = json.loads(result.out)
        outputs[engine] = data
    eager = outputs["eager"]["results"]
    for engine in ("onnx", "pt2", "auto"):
        other = outputs[engine]["results"]
        assert [r["class"] for r in other] == [r["class"] for r in eager]
        for a, b in zip(eager, other, strict=True):
            pa = {c["class"]: c["probability"] for c in a["top_k"]}
            pb = {c["class"]: c["probability"] for c in b["top_k"]}
            assert max(abs(pa[k] - pb[k]) for k in pa) < 1e-5
    assert outputs["auto"]["engine"] in ("eager", "onnx", "pt2")


def test_auto_picks_the_fastest_measured_valid_engine(exported):
    predictor = Predictor(Run.open(exported), "auto")
    timings = predictor.choice.latency_us
    assert set(timings) == {"eager", "onnx", "pt2"}
    assert predictor.choice.name == min(timings, key=timings.get)
    assert predictor.engine.name == predictor.choice.name


def test_stale_or_changed_exports_are_refused(exported, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(exported, copy)
    run = Run.open(copy)
    # new weights: the exports no longer belong to this run
    model = run.load_model()
    with torch.no_grad():
        model.fc1.bias.add_(1.0)
    from cnnlab.run.checkpoint import save_tensors

    save_tensors(copy / "model.safetensors", model.state_dict())
    with pytest.raises(CheckpointError, match="exported from other weights"):
        Predictor(run, "onnx")
    auto = Predictor(run, "auto")
    assert auto.choice.name == "eager" and len(auto.choice.latency_us) == 1
    assert any("skipped model.onnx" in note for note in auto.choice.notes)
    # a changed file
    data = bytearray((exported / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="changed after cnnlab wrote it"):
        read_export(copy / "model.onnx", Run.open(exported))


def test_a_pt2_holding_pickles_is_refused_unread():
    model = build_model("input(1x8x8) conv(2,3) relu flatten fc(2)").eval()
    program = torch.export.export(model, (torch.zeros(1, 1, 8, 8),))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)  # keeps its example inputs: a pickle inside the archive
    with pytest.raises(CheckpointError, match="never unpickles"):
        refuse_pickled_payloads(buffer.getvalue())
    # and a zip with an unexpected member (code or a pickle could hide anywhere)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x04N.")
    with pytest.raises(CheckpointError, match="data.pkl"):
        Pt2Engine(buffer.getvalue())
    # cnnlab's own pt2 passes
    refuse_pickled_payloads(pt2_bytes(model))


def test_one_parity_tolerance_for_writing_and_using_an_export():
    # export (Parity, check_parity, export_run) and predict (the engine probe) share one limit.
    reference = torch.zeros(2, 3)
    assert check_parity(reference, reference + 0.99 * PARITY_TOLERANCE, "t").ok
    assert not check_parity(reference, reference + 1.01 * PARITY_TOLERANCE, "t").ok
    assert Parity(1, "t", 0.0, 0).tolerance == PARITY_TOLERANCE == 1e-4


def test_predict_reads_exports_without_the_exporter():
    # Reading an export (sidecar checks, engines) lives in engines.py: predict and serve
    # never import the export code (onnx, torch.export tracing).
    code = "import sys, cnnlab.deploy.predict; print('cnnlab.deploy.export' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
