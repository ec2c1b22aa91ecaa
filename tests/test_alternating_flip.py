"""altflip (airbench's alternating flip): each image mirrored in every other epoch, a seeded half first."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.data.augment import alternating_flip, augment_batch, parse_policy
from cnnlab.errors import ConfigError


def _images(n: int = 400) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 6, 6), generator=torch.Generator().manual_seed(3)).to(
        torch.uint8
    )


def _mirrored(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which images came out as their mirror (the test images are never symmetric)."""
    assert not (before == before.flip(3)).flatten(1).all(1).any()
    same = (after == before).flatten(1).all(1)
    flipped = (after == before.flip(3)).flatten(1).all(1)
    assert (same ^ flipped).all()  # each image is either itself or its mirror
    return flipped


def test_each_image_is_mirrored_in_exactly_one_of_two_epochs_in_a_row():
    x = _images()
    indices = torch.arange(len(x))
    by_epoch = [_mirrored(x, alternating_flip(x, indices, epoch, seed=0)) for epoch in range(4)]
    assert (by_epoch[0] ^ by_epoch[1]).all()
    assert torch.equal(by_epoch[0], by_epoch[2]) and torch.equal(by_epoch[1], by_epoch[3])
    assert 0.4 < by_epoch[0].float().mean() < 0.6  # about half of them in the first epoch


def test_the_mirror_follows_the_image_index_not_its_place_in_the_batch():
    x = _images()
    indices = torch.arange(len(x))
    whole = alternating_flip(x, indices, 0, seed=5)
    shuffled = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    part = alternating_flip(x[shuffled[:50]], shuffled[:50], 0, seed=5)
    assert torch.equal(part, whole[shuffled[:50]])


def test_the_half_depends_on_the_seed():
    x = _images()
    indices = torch.arange(len(x))
    first = _mirrored(x, alternating_flip(x, indices, 0, seed=0))
    other = _mirrored(x, alternating_flip(x, indices, 0, seed=1))
    assert 0.3 < (first == other).float().mean() < 0.7


def test_altflip_is_parsed_left_to_the_loop_and_refused_where_mirrors_change_labels():
    policy = parse_policy("altflip", flip_ok=True)
    assert policy.altflip and not policy.flip and str(policy) == "altflip"
    x = _images(8)
    assert torch.equal(augment_batch(x, policy, torch.Generator().manual_seed(0)), x)
    with pytest.raises(ConfigError, match="changes labels"):
        parse_policy("altflip", flip_ok=False)
    with pytest.raises(ConfigError, match="keep one of them"):
        parse_policy("flip,altflip", flip_ok=True)


@pytest.mark.slow
def test_a_run_with_altflip_trains_and_records_it(tmp_path):
    common = dict(
        model="conv(4,3,padding=same) relu maxpool(2) flatten fc(8)",
        data="shapes",
        train_size=256,
        test_size=64,
        batch_size=64,
        epochs=2,
        flip_ok=True,
        quiet=True,
    )
    run = cnnlab.train(**common, augment="altflip", out=str(tmp_path / "alt"))
    plain = cnnlab.train(**common, augment="none", out=str(tmp_path / "plain"))
    assert run.metrics["augment"] == "altflip"
    assert run.epoch_metrics()[-1]["train_loss"] != plain.epoch_metrics()[-1]["train_loss"]
