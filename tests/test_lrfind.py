"""The learning-rate range test: `cnnlab lr-find` draws and suggests, `--lr auto` trains at it."""

from __future__ import annotations

import math
import re
import tomllib

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.training.config import LR_AUTO, TrainConfig, resolve_config
from cnnlab.training.lrfind import SKIP_START, _suggest

TINY = "conv(8,3,padding=same) batchnorm relu maxpool(2) conv(16,3,padding=same) relu maxpool(2) flatten fc(10)"
SMALL_DATA = ["--model", TINY, "train_size=300", "test_size=100"]


def test_the_suggestion_is_the_lowest_loss_after_the_noisy_start():
    lrs = [10 ** (-6 + i / 5) for i in range(40)]  # 1e-6 .. ~6e1
    # flat, a fall to a minimum at i = 25, a blow-up, and a "recovery" that falls faster still
    losses = [2.0] * 10 + [2.0 - 0.1 * i for i in range(16)] + [2.0, 4.0, 8.0, 7.0, 3.0]
    lrs = lrs[: len(losses)]
    test = _suggest(lrs, losses, "ran to the end")
    assert test.minimum == lrs[25] and test.suggestion == pytest.approx(lrs[25], rel=0.05)
    noisy = _suggest(lrs, [0.5, *losses[1:]], "ran to the end")  # a first point below it all
    assert noisy.minimum == lrs[25] and SKIP_START > 0
    assert f"suggestion {test.suggestion:.2g} (lowest loss)" in test.summary()


def _curve(start_noise: list[float], fall: float) -> tuple[list[float], list[float]]:
    """A range test's smoothed curve, 100 lrs from 1e-7 to 10: a noisy start, a plateau at 2.0,
    a fall of `fall` between 1e-2 and 3e-1, then a blow-up."""
    lrs = [1e-7 * 1e8 ** (i / 99) for i in range(100)]
    losses = []
    for i, lr in enumerate(lrs):
        if i < len(start_noise):
            losses.append(start_noise[i])
        elif lr < 1e-2:
            losses.append(2.0)
        elif lr <= 3e-1:
            losses.append(2.0 - fall * math.log10(lr / 1e-2) / math.log10(30))
        else:
            losses.append(2.0 - fall + 20 * (lr - 3e-1))
    return lrs, losses


def test_no_steepest_descent_is_read_off_the_noisy_start():
    # the bias-corrected average's first points jump (the range test's first batches): a drop of
    # 0.15 between two neighbours (0.08 decade apart) is a steeper slope than the real fall, and
    # was reported as "steepest descent at 3.1e-07"; the line and the figure give none now
    from cnnlab.figures.lrfind import lrfind_figure

    noisy = [2.3, 2.2, 2.25, 2.1, 2.2, 2.2, 2.2, 2.05, 2.1, 2.0, 2.02]
    test = _suggest(*_curve(noisy, fall=0.8), "ran to the end")
    assert 1e-2 < test.minimum <= 3e-1  # the lowest loss is where the real fall ends
    assert "steepest" not in test.summary() and "(minimum/10)" in test.summary()
    legend = lrfind_figure(test).axes[0].get_legend()
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels[1:] == [
        f"suggestion {test.suggestion:.2g} (lowest loss)",
        f"cautious {test.minimum / 10:.2g} (minimum/10)",
    ]


@pytest.mark.slow
def test_lr_find_and_lr_auto_suggest_the_same_stable_lr_on_one_folder(tmp_path, cli, monkeypatch):
    import numpy as np
    from PIL import Image

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for k, name in enumerate(("dark", "light")):  # small colour data: the plan fits the run to it
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(40):
            pixels = rng.integers(60 * k, 60 * k + 150, (32, 32, 3)).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(tmp_path / "data" / name / f"{i}.png")
    # the same options to both (--epochs 1 sizes the run: the plan keeps its batch of 128)
    folder = ["--model", TINY, "--data", f"folder:{tmp_path / 'data'}", "--epochs", "1"]
    found = []
    for i in range(2):  # twice: the test is seeded, so it is stable
        done = cli("lr-find", *folder, "--out", str(tmp_path / f"find{i}.png"))
        assert done.code == 0, done.err
        found.append(re.search(r"suggestion (\S+) \(lowest loss\)", done.out).group(1))
    auto = cli("train", *folder, "--lr", "auto", "--out", str(tmp_path / "run"))
    assert auto.code == 0, auto.err
    assert found == [re.search(r"suggestion (\S+) \(lowest loss\)", auto.out).group(1)] * 2


def test_lr_auto_is_a_setting_in_files_flags_and_overrides():
    assert resolve_config({"lr": "auto"}).lr == LR_AUTO
    assert resolve_config({"lr": "AUTO"}).to_toml().count('lr = "auto"') == 1
    assert resolve_config(tomllib.loads(TrainConfig(lr=LR_AUTO).to_toml())).lr == LR_AUTO
    from cnnlab.cli import build_parser
    from cnnlab.cli.train import config_from_args

    args = build_parser().parse_args(["train", "--lr", "auto"])
    assert config_from_args(args).lr == LR_AUTO


@pytest.mark.slow
def test_lr_find_writes_its_plot_and_prints_a_suggestion(tmp_path, cli):
    plot = tmp_path / "find.png"
    result = cli("lr-find", *SMALL_DATA, "--out", str(plot))
    assert result.code == 0, result.err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {plot}" in result.out
    found = re.search(r"suggested learning rate: (\S+); train with --lr \1", result.out)
    assert found and 1e-7 < float(found.group(1)) < 10
    assert "(lowest loss)" in result.out


@pytest.mark.slow
def test_train_lr_auto_trains_at_the_found_rate_on_untouched_weights(tmp_path, cli):
    auto = cli("train", *SMALL_DATA, "--epochs", "2", "--lr", "auto", "--out", str(tmp_path / "a"))
    assert auto.code == 0, auto.err
    found = re.search(r"suggestion (\S+) \(lowest loss\)", auto.out).group(1)
    recorded = tomllib.loads((tmp_path / "a" / "config.toml").read_text())["lr"]
    assert recorded == float(found) and "from the range test" in auto.out
    # the range test trained a copy: the run equals one started with that lr given
    given = cli("train", *SMALL_DATA, "--epochs", "2", "--lr", found, "--out", str(tmp_path / "g"))
    assert given.code == 0, given.err
    a, b = (
        load_file(tmp_path / "a" / "model.safetensors"),
        load_file(tmp_path / "g" / "model.safetensors"),
    )
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not math.isnan(recorded)
