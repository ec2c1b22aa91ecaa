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


def test_the_suggestion_is_the_lowest_loss_and_the_steepest_lies_before_it():
    lrs = [10 ** (-6 + i / 5) for i in range(40)]  # 1e-6 .. ~6e1
    # flat, a fall to a minimum at i = 25, a blow-up, and a "recovery" that falls faster still
    losses = [2.0] * 10 + [2.0 - 0.1 * i for i in range(16)] + [2.0, 4.0, 8.0, 7.0, 3.0]
    lrs = lrs[: len(losses)]
    test = _suggest(lrs, losses, "ran to the end")
    assert test.minimum == lrs[25] and test.suggestion == pytest.approx(lrs[25], rel=0.05)
    assert SKIP_START <= lrs.index(test.steepest) < 25
    assert f"suggestion {test.suggestion:.2g} (lowest loss)" in test.summary()


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
