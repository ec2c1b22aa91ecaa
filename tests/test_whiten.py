"""The opt-in initialisations (training/init.py) and the BatchNorm learning-rate group."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import cnnlab
from cnnlab.errors import ConfigError
from cnnlab.model.cnn import CnnModel
from cnnlab.model.inference import normalize
from cnnlab.spec.language import parse_spec
from cnnlab.training.config import config_of, resolve_config
from cnnlab.training.init import WHITEN_EPS, dirac_init, patch_columns, whiten_first_conv
from cnnlab.training.schedule import make_optimizer, set_lr
from cnnlab.training.setup import build_learner, load_data

SPEC = (
    "input(3x16x16) conv(64,3,padding=same) maxpool(2) batchnorm relu "
    "conv(64,3,padding=same) batchnorm relu conv(96,3,padding=same) relu flatten fc(4)"
)


def _correlated_images(count: int = 300, seed: int = 0) -> torch.Tensor:
    """(count, 3, 16, 16) uint8 whose neighbouring pixels and channels are strongly correlated
    (blurred noise mixed across channels), so a 3x3 patch is far from white."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(count, 3, 20, 20, generator=g)
    blurred = F.avg_pool2d(noise, 5, stride=1)  # (count, 3, 16, 16)
    mixed = torch.einsum(
        "ij,njhw->nihw", torch.tensor([[1.0, 0.5, 0], [0.5, 1, 0.5], [0, 0.5, 1]]), blurred
    )
    return (mixed / mixed.max() * 255).round().to(torch.uint8)


def _whitened_outputs(model: CnnModel, images: torch.Tensor, mean, std) -> torch.Tensor:
    """The first conv's outputs over every valid patch: (channels, positions)."""
    conv = model.conv1
    x = normalize(images, mean, std)
    y = F.conv2d(x, conv.weight, conv.bias)  # no padding: the patches the statistics used
    return y.transpose(0, 1).reshape(conv.out_channels, -1)


def test_patch_columns_are_unfolds_patches_in_its_order():
    x = torch.randn(5, 3, 9, 11)
    for kernel in ((3, 3), (5, 3), (1, 2)):
        assert torch.equal(patch_columns(x, kernel), F.unfold(x, kernel))


def test_whitened_patches_have_identity_covariance_and_come_in_pairs():
    images = _correlated_images()
    mean, std = (0.5, 0.5, 0.5), (0.2, 0.25, 0.3)
    torch.manual_seed(0)
    model = CnnModel(parse_spec(SPEC))
    before = model.conv1.weight.detach().clone()
    raw = normalize(images, mean, std)
    raw_corr = torch.corrcoef(patch_columns(raw, (3, 3)).transpose(0, 1).reshape(27, -1))
    assert (raw_corr - torch.eye(27)).abs().max() > 0.5  # far from white to start with

    count = whiten_first_conv(model, images, mean, std, frozen=False)
    assert count == 54  # 27 patch dimensions, each direction with both signs; 10 filters left
    outputs = _whitened_outputs(model, images, mean, std).double()
    white = outputs[:27]
    # decorrelated, each direction at variance lambda / (lambda + eps): ~1 unless lambda ~ eps
    covariance = torch.cov(white.detach())
    raw_cov = torch.cov(patch_columns(raw, (3, 3)).transpose(0, 1).reshape(27, -1).double())
    eigenvalues = torch.linalg.eigvalsh(raw_cov).flip(0)
    expected = eigenvalues / (eigenvalues + WHITEN_EPS)
    assert torch.allclose(covariance, torch.diag(expected), atol=0.01)
    assert (expected[:10] > 0.95).all()  # the main directions are far above eps: unit variance
    assert white.mean(1).abs().max() < 1e-3  # the bias centres them
    assert torch.allclose(outputs[27:54], -white, atol=1e-4)
    assert torch.equal(model.conv1.weight[54:], before[54:])  # the rest keep their init
    assert model.conv1.weight.requires_grad


def test_frozen_whitening_leaves_the_first_conv_out_of_the_optimizer():
    images = _correlated_images(60)
    model = CnnModel(parse_spec(SPEC))
    whiten_first_conv(model, images, (0.5,) * 3, (0.25,) * 3, frozen=True)
    optimized = {
        id(p) for g in make_optimizer(model, resolve_config({})).param_groups for p in g["params"]
    }
    assert id(model.conv1.weight) not in optimized and id(model.conv1.bias) not in optimized
    assert id(model.conv2.weight) in optimized


def test_whiten_needs_a_convolution_first():
    model = CnnModel(parse_spec("input(1x8x8) flatten fc(10) relu fc(3)"))
    with pytest.raises(ConfigError, match="no convolution"):
        whiten_first_conv(
            model, torch.zeros(4, 1, 8, 8, dtype=torch.uint8), (0.5,), (0.2,), frozen=True
        )
    with pytest.raises(ConfigError, match="whiten must be one of"):
        resolve_config({"whiten": "yes"})
    with pytest.raises(ConfigError, match="bn_lr_scale must be above 0"):
        resolve_config({"bn_lr_scale": 0})


def test_dirac_convs_pass_their_input_channels_through():
    torch.manual_seed(0)
    model = CnnModel(parse_spec(SPEC))
    first = model.conv1.weight.detach().clone()
    assert dirac_init(model) == 2  # conv2 (64 -> 64) and conv3 (64 -> 96); conv1 is left alone
    assert torch.equal(model.conv1.weight, first)
    x = torch.randn(2, 64, 8, 8)
    for conv, passed in ((model.conv2, 64), (model.conv3, 64)):
        y = conv(x) - conv.bias.view(1, -1, 1, 1)
        assert torch.allclose(y[:, :passed], x, atol=1e-6)
        if conv.out_channels > passed:  # the filters beyond the identity keep a random init
            assert y[:, passed:].abs().mean() > 0.05


def test_batchnorm_group_trains_at_a_multiple_of_the_learning_rate():
    model = CnnModel(parse_spec(SPEC))
    plain = make_optimizer(model, resolve_config({}))
    assert len(plain.param_groups) == 2  # unchanged without bn_lr_scale
    optimizer = make_optimizer(model, resolve_config({"bn_lr_scale": 8}))
    batchnorm = {id(p) for m in (model.batchnorm1, model.batchnorm2) for p in m.parameters()}
    set_lr(optimizer, 0.05)
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        if ids & batchnorm:
            assert ids == batchnorm and group["lr"] == pytest.approx(0.4)
            assert group["weight_decay"] == 0.0
        else:
            assert group["lr"] == pytest.approx(0.05)
    assert len(optimizer.param_groups) == 3


@pytest.mark.slow
def test_resumed_run_with_every_option_is_identical_and_frozen_filters_stay(tmp_path):
    settings = dict(
        model="conv(16,3,padding=same) maxpool(2) batchnorm relu conv(16,3,padding=same) "
        "batchnorm relu flatten fc(10)",
        data="shapes",
        train_size=600,
        test_size=200,
        batch_size=64,
        epochs=2,
        whiten="frozen",
        dirac=True,
        bn_lr_scale=4.0,
        quiet=True,
    )
    straight = cnnlab.train(**settings, out=str(tmp_path / "straight"))
    cnnlab.train(**settings, out=str(tmp_path / "paused"), stop_after=1)
    resumed = cnnlab.train(resume=tmp_path / "paused", quiet=True)
    a = load_file(straight.path / "model.safetensors")
    b = load_file(resumed.path / "model.safetensors")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # frozen: the first conv is still the whitening of the training images a fresh start computes
    config = config_of(straight)
    learner, _, _ = build_learner(
        config, load_data(config, torch.device("cpu")), torch.device("cpu")
    )
    assert torch.equal(a["conv1.weight"], learner.model.conv1.weight.detach().contiguous())
    assert torch.equal(a["conv1.bias"], learner.model.conv1.bias.detach())
    assert not torch.equal(a["conv2.weight"], learner.model.conv2.weight.detach().contiguous())
