"""The divergence guard: an exploding warm-up restarts lower, diverging or stuck runs are named with
what to try, and a test accuracy no better than the biggest class says so."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.training.balance import loss_weights
from cnnlab.training.config import load_config
from cnnlab.training.guard import DivergenceGuard, accuracy_note, advice, chance_loss

TINY = "conv(8,3,padding=same) batchnorm relu maxpool(2) conv(16,3,padding=same) relu maxpool(2) flatten fc(10)"


def _guard(**changes) -> DivergenceGuard:
    values = dict(classes=4, majority_share=0.4, warmup_steps=30, steps_per_epoch=10, lr=0.1,
                  optimizer="sgd", cuts_left=2)  # fmt: skip
    return DivergenceGuard(**{**values, **changes})


def _row(epoch: int, loss: float, accuracy: float) -> dict[str, float]:
    return {"epoch": epoch, "train_loss": loss, "train_accuracy": accuracy}


def test_an_early_explosion_in_the_warm_up_asks_for_a_lower_lr_and_only_there():
    guard = _guard()
    assert not guard.exploded(0, 1.4)  # the first step's loss is where it starts
    assert not guard.exploded(1, 9.0)  # a spike below 10x: runs recover from those
    assert guard.exploded(2, 15.0) and guard.exploded(3, math.nan)
    assert not guard.exploded(10, 100.0)  # past the first epoch: a checkpoint may exist
    guard.restart(0.01)
    assert (guard.lr, guard.cuts_left, guard.first_step_loss) == (0.01, 1, None)
    resumed = _guard(cuts_left=0)  # a resumed run never restarts
    resumed.exploded(0, 1.4)
    assert not resumed.exploded(1, 100.0)


def test_a_rising_loss_and_a_loss_stuck_at_chance_are_each_said_once_with_advice():
    guard = _guard()
    history = [_row(1, 1.2, 0.30)]
    assert guard.after_epoch(history) is None
    history.append(_row(2, 4.0, 0.30))  # > 3 x 1.2
    line = guard.after_epoch(history)
    assert line.startswith("warning: the training loss rose to 4 in epoch 2")
    assert "--optimizer adamw" in line and "--lr auto" in line and "0.01" in line
    assert guard.after_epoch([*history, _row(3, 5.0, 0.3)]) is None  # said once
    stuck = _guard()
    early = [_row(epoch, math.log(4), 0.41) for epoch in range(1, 6)]
    assert stuck.after_epoch(early) is None  # within twice the warm-up (60 steps = 6 epochs)
    history = [*early, _row(6, 1.38, 0.42)]
    line = stuck.after_epoch(history)
    assert "chance level (ln 4 = 1.39)" in line and "not learning" in line
    assert len(stuck.summary(history)) == 1 and stuck.summary(history)[0].startswith("warning:")
    assert stuck.summary([*history, _row(7, 0.5, 0.9)]) == []  # it learned after all
    learning = _guard()
    assert learning.after_epoch([*early, _row(6, 1.36, 0.60)]) is None  # above the majority
    assert "adamw" not in advice(1e-3, "adam")


def test_a_class_weighted_loss_is_judged_against_its_own_chance_level():
    # --balance weight with the default label smoothing 0.1: torch weights the smoothing term by
    # every class's weight, so uniform predictions score ln K (1 - e + e * mean weight), not ln K
    counts = [320, 48, 48]
    labels = torch.tensor([0] * 320 + [1] * 48 + [2] * 48)
    weight = loss_weights(counts, "weight")
    level = chance_loss(labels, 3, weight, 0.1)
    assert level == pytest.approx(math.log(3) * (0.9 + 0.1 * weight.mean().item()), rel=1e-5)
    assert level == pytest.approx(1.216, abs=1e-3)
    assert chance_loss(labels, 3, None, 0.1) == pytest.approx(math.log(3), rel=1e-6)
    assert chance_loss(labels, 3, weight, 0.0) == pytest.approx(math.log(3), rel=1e-6)
    # A real run on these counts (default, balance=weight, 30 epochs, 99.8% training accuracy in
    # the end) began at 1.219 and was at 1.06 in epoch 3: above 0.95 ln 3 = 1.04 while learning,
    # with a plain accuracy (46.6%) below the biggest class's share (76.9%).
    learning = _guard(classes=3, majority_share=320 / 416, chance_loss=level)
    assert learning.after_epoch([_row(epoch, 1.10, 0.47) for epoch in range(1, 8)]) is None
    stuck = _guard(classes=3, majority_share=320 / 416, chance_loss=level)
    line = stuck.after_epoch([_row(epoch, 1.216, 0.47) for epoch in range(1, 8)])
    assert "chance level (1.22 for this class-weighted loss" in line and "not learning" in line


def test_an_accuracy_no_better_than_the_biggest_class_is_said_plainly():
    labels = torch.tensor([0] * 43 + [1] * 33 + [2] * 24)
    note = accuracy_note(0.43, labels, ["cat", "dog", "fox"])
    assert "no better than always answering 'cat' (43.00% of the test images)" in note
    assert accuracy_note(torch.tensor(0.3).item(), labels, ["cat", "dog", "fox"])
    assert accuracy_note(0.44, labels, ["cat", "dog", "fox"]) == ""


@pytest.mark.slow
def test_an_lr_that_diverges_is_lowered_said_and_recorded(tmp_path, cli):
    out = tmp_path / "too-high"
    # 10, the highest lr a user may give (training/config.py), explodes this model at once
    result = cli("train", "--model", TINY, "--optimizer", "sgd", "--lr", "10", "--epochs", "6",
                 "--batch-size", "32", "train_size=320", "test_size=100", "--out", str(out))  # fmt: skip
    assert result.code == 0, result.err
    said = result.out
    assert "the learning rate 10 is too high; starting again at 1" in said
    recorded = load_config(out / "config.toml")
    assert recorded.lr == 1  # a resumed run trains on at the lowered rate
    # 1 still does not learn here: the guard says so, with what to try, and the end repeats it
    assert said.count("warning: the training loss") >= 2
    assert "try a lower --lr (e.g. 0.1), --optimizer adamw, --lr auto" in said
    assert "no better than always answering" in said
