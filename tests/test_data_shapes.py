"""The built-in `shapes` generator: deterministic, balanced, in range, and each class its own picture."""

from __future__ import annotations

import torch

from cnnlab.data import load_dataset
from cnnlab.data.synthetic import CLASSES, generate_shapes


def test_deterministic_for_a_seed_and_different_across_seeds():
    x1, y1 = generate_shapes(500, seed=3)
    x2, y2 = generate_shapes(500, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = generate_shapes(500, seed=4)
    assert not torch.equal(x1, x3)
    test_x, _ = generate_shapes(500, seed=3, split=1)
    assert not torch.equal(x1, test_x)  # train and test are separate streams


def test_balanced_classes_dtype_and_range():
    x, y = generate_shapes(1003, seed=0)
    assert x.shape == (1003, 1, 28, 28) and x.dtype == torch.uint8 and x.is_contiguous()
    assert y.dtype == torch.int64
    counts = torch.bincount(y, minlength=len(CLASSES))
    assert (
        len(CLASSES) >= 8 and counts.min() == 100 and counts.max() == 101 and counts.sum() == 1003
    )
    assert not torch.equal(y[:20], torch.sort(y[:20]).values)  # shuffled, not grouped by class
    assert int(x.max()) >= 200  # strokes reach near white


def test_every_image_has_a_stroke_and_a_dark_background():
    x, _ = generate_shapes(400, seed=1)
    bright = (x > 100).flatten(1).sum(1)  # ink pixels per image (ink is at least 0.65 * 255)
    assert bright.min() >= 10, "a blank image"
    assert (
        x.float().median(dim=3).values.median(dim=2).values < 60
    ).all()  # white on black, like MNIST


def test_classes_differ_on_average():
    x, y = generate_shapes(2000, seed=0)
    means = torch.stack([x[y == c].float().mean(0) for c in range(len(CLASSES))]).flatten(1)
    # The mean image of a line is a thin disc, of a square a fat ring...: all pairs differ.
    dist = torch.cdist(means, means)
    assert dist[~torch.eye(len(CLASSES), dtype=torch.bool)].min() > 20


def test_test_set_does_not_depend_on_train_size():
    a = load_dataset("shapes", train_size=100, test_size=50, seed=7)
    b = load_dataset("shapes", train_size=300, test_size=50, seed=7)
    assert torch.equal(a.test_images, b.test_images)
    assert a.flip_ok and a.classes == CLASSES and a.image_shape == (1, 28, 28)
    assert 0 < a.mean[0] < 0.5 and 0 < a.std[0] < 0.5
