"""Batched augmentation: shapes and dtypes kept, deterministic, flips only where allowed, shifts bounded."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data import load_dataset
from cnnlab.data.augment import AugmentPolicy, augment_batch, parse_policy
from cnnlab.errors import ConfigError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(dtype=torch.uint8, n=64, c=1, size=28) -> torch.Tensor:
    x = torch.randint(0, 256, (n, c, size, size), generator=gen(123)).to(dtype)
    return x if dtype == torch.uint8 else x / 255


POLICIES = [
    "none",
    "translate=2",
    "flip",
    "cutout=8",
    "affine=10",
    "affine=15,scale=0.1",
    "translate=3,flip,cutout=6,affine=10",
]


@pytest.mark.parametrize("text", POLICIES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_kept_and_deterministic(text, dtype, channels):
    x = batch(dtype, c=channels)
    policy = parse_policy(text)
    a = augment_batch(x, policy, gen(5))
    b = augment_batch(x, policy, gen(5))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    if text == "none":
        assert a is x
    else:
        assert not torch.equal(a, x)
        assert not torch.equal(a, augment_batch(x, policy, gen(6)))


def test_single_bright_pixel_moves_at_most_t():
    t = 3
    x = torch.zeros(500, 1, 28, 28, dtype=torch.uint8)
    x[:, 0, 10, 17] = 255
    out = augment_batch(x, AugmentPolicy(translate=t), gen(0))
    assert out.flatten(1).sum(1).eq(255).all()  # nothing lost far from the border
    pos = out.flatten(1).argmax(1)
    dy, dx = pos // 28 - 10, pos % 28 - 17
    assert dy.abs().max() == t and dx.abs().max() == t  # the whole range is used...
    assert set(dy.tolist()) == set(range(-t, t + 1))  # ...and every shift occurs


def test_flip_mirrors_about_half_and_only_horizontally():
    x = torch.zeros(400, 1, 8, 8, dtype=torch.uint8)
    x[:, 0, 2, 1] = 255
    out = augment_batch(x, AugmentPolicy(flip=True), gen(1))
    flipped = out[:, 0, 2, 6] == 255
    kept = out[:, 0, 2, 1] == 255
    assert torch.all(flipped ^ kept)
    assert 150 < int(flipped.sum()) < 250


def test_cutout_zeroes_a_square_at_most_size_squared():
    x = torch.full((200, 1, 28, 28), 255, dtype=torch.uint8)
    out = augment_batch(x, AugmentPolicy(cutout=8), gen(2))
    zeros = out.eq(0).flatten(1).sum(1)
    assert zeros.max() == 64 and zeros.min() > 0  # full squares inside, clipped at edges


def test_affine_rotation_keeps_centre_and_moves_corners():
    x = torch.zeros(100, 1, 28, 28)
    x[:, :, 12:16, 12:16] = 1.0  # centre block survives any rotation
    x[:, :, 0:2, 0:2] = 1.0
    out = augment_batch(x, AugmentPolicy(affine=30), gen(3))
    assert out[:, :, 13:15, 13:15].min() > 0.9
    assert out[:, :, 0:2, 0:2].mean() < 0.9


def test_policy_parser():
    assert parse_policy("none").is_identity
    assert parse_policy("translate=2,flip,cutout=8,affine=10") == AugmentPolicy(2, True, 8, 10.0)
    assert str(parse_policy("crop=4,hflip")) == "translate=4,flip"
    assert parse_policy("standard", flip_ok=True, image_size=28) == AugmentPolicy(
        translate=2, flip=True
    )
    assert parse_policy("standard,cutout=8", flip_ok=False, image_size=32) == AugmentPolicy(
        translate=4, cutout=8
    )
    with pytest.raises(
        ConfigError, match="augmentation 'blur' is unknown; known: none, standard, light, translate"
    ):
        parse_policy("blur=2")
    with pytest.raises(ConfigError, match="needs a value"):
        parse_policy("translate")
    with pytest.raises(ConfigError, match="is not an integer"):
        parse_policy("cutout=big")
    with pytest.raises(ConfigError, match="between 0 and 180"):
        parse_policy("affine=500")


def test_flip_follows_the_data_set():
    mnist_like = load_dataset("shapes", train_size=20, test_size=10)
    assert parse_policy("standard", mnist_like).flip  # every shape class is mirror-symmetric
    mnist_like.flip_ok = False  # as for mnist and kmnist: a mirrored digit is another glyph
    assert not parse_policy("standard", mnist_like).flip
    with pytest.raises(ConfigError, match="shapes: horizontal flip changes labels"):
        parse_policy("translate=2,flip", mnist_like)
