"""Small colour data trains with colour jitter added to the standard augmentation
(plan.SMALL_COLOUR_AUGMENT); grey data, large data and a chosen augmentation keep theirs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.augment import parse_policy, standard_policy
from cnnlab.training.config import resolve_config
from cnnlab.training.plan import SMALL_COLOUR_AUGMENT, SMALL_DATA, fit_to_data, plan
from cnnlab.training.setup import load_data


def test_small_colour_data_gets_colour_jitter_on_top_of_the_standard_augmentation():
    fitted, _ = fit_to_data(resolve_config({}), 300, mirrors=True, flip_ok=True, colour=True)
    assert fitted.augment == SMALL_COLOUR_AUGMENT
    policy = parse_policy(fitted.augment, flip_ok=True, image_size=32)
    standard = standard_policy(32, flip_ok=True)
    assert (policy.translate, policy.flip) == (standard.translate, standard.flip)
    assert policy.brightness == policy.contrast == policy.saturation > 0
    assert policy.hue == 0  # the hue can be what tells classes apart
    assert fitted.tta  # the other small-data rules still apply
    assert fit_to_data(resolve_config({}), SMALL_DATA - 1, colour=True)[0].augment == (
        SMALL_COLOUR_AUGMENT
    )


@pytest.mark.parametrize(
    ("settings", "images", "colour"),
    [
        ({}, 300, False),  # grey data (shapes-500, fashion-mnist-1000): unchanged
        ({}, SMALL_DATA, True),  # enough colour images
        ({}, 60_000, True),
        ({"augment": "translate=2"}, 300, True),  # the user chose the augmentation
        ({"augment": "none"}, 300, True),
        ({"epochs": 50}, 300, True),  # the user sized the run: fit_to_data is off
        ({"data": "fashion-mnist"}, 1000, False),  # its recipe's augment_when_stretched
    ],
)
def test_the_rule_leaves_other_data_and_given_choices_alone(settings, images, colour):
    config = resolve_config(settings)
    fitted, _ = fit_to_data(config, images, colour=colour)
    assert fitted.augment != SMALL_COLOUR_AUGMENT
    assert fitted.augment == fit_to_data(config, images, colour=False)[0].augment


def _folder(root, mode: str, per_class: int = 6):
    """Two classes of 40x40 images, in colour (RGB) or grey (L)."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (40, 40, 3) if mode == "RGB" else (40, 40)
            pixels = rng.integers(60 * label, 60 * label + 120, shape).astype(np.uint8)
            Image.fromarray(pixels, mode).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_new_run_on_a_small_folder_says_why_it_jitters_colours(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = _folder(tmp_path / mode, mode)
    config = resolve_config({"model": "default", "data": f"folder:{root}", "flip_ok": True})
    data = load_data(config, torch.device("cpu"))
    planned = plan(config, data)
    chosen, policy, lines = planned.config, planned.policy, planned.lines
    colour = mode == "RGB"
    assert data.image_shape[0] == (3 if colour else 1)
    assert (chosen.augment == SMALL_COLOUR_AUGMENT) is colour
    assert (policy.brightness > 0) is colour and policy.flip  # what training draws
    assert ("colour jitter: small colour data" in lines[-1]) is colour
    assert "brightness=0.2" in lines[-1] if colour else "brightness" not in lines[-1]
