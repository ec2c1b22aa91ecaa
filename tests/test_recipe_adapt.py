"""The recipe adapts to the data: warm-up in steps, lr scaled with the batch, partial batches
kept where dropping them wastes data, real values in config.toml, one line saying what was chosen."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest
import torch

from cnnlab.run.folder import Run
from cnnlab.training.config import REFERENCE_BATCH, load_config, resolve_config, scaled_lr
from cnnlab.training.plan import (
    MAX_DROPPED_SHARE,
    peak_lr,
    plan,
    steps_per_epoch,
    warmup_steps,
)
from cnnlab.training.schedule import lr_factor
from cnnlab.training.setup import TrainingData, resumed_config

TINY = "conv(8,3,padding=same) batchnorm relu maxpool(2) conv(16,3,padding=same) relu maxpool(2) flatten fc(10)"


def test_warm_up_is_counted_in_optimizer_steps():
    config = resolve_config({"warmup_steps": 10, "epochs": 3})
    for per_epoch in (4, 50):  # the same ten steps whatever an epoch holds
        factors = [lr_factor(config, step, per_epoch) for step in range(12)]
        assert factors[9] == 1.0 and all(
            a < b for a, b in zip(factors[:9], factors[1:10], strict=True)
        )
        assert factors[10] == 1.0 > factors[11]  # the decay starts after the tenth step
    # the default, a fifth of the run's steps, is the warm-up of every run before (in epochs)
    default = resolve_config({})
    assert warmup_steps(default, 187) == round(default.epochs / 5 * 187) == 299
    assert warmup_steps(resolve_config({"warmup_epochs": 1.5}), 10) == 15


@pytest.mark.parametrize(
    ("images", "batch", "steps"),
    [
        (500, 32, 16),  # 20 left over = 4% of the data: kept as a 16th, smaller batch
        (24_000, 128, 187),  # 64 left over = 0.27%: dropped (each epoch's shuffle differs)
        (60_000, 128, 468),  # Fashion-MNIST: 96 = 0.16%, dropped as before
        (224, 128, 2),  # the small folder: half its images were never seen
        (512, 32, 16),  # nothing left over
        (17, 16, 1),  # 1 left over: BatchNorm cannot train on a batch of one
    ],
)
def test_a_partial_batch_is_kept_when_dropping_it_wastes_more_than_a_few_percent(
    images, batch, steps
):
    assert steps_per_epoch(images, batch) == steps
    dropped = images - min(images, steps * batch)
    assert dropped <= max(1, MAX_DROPPED_SHARE * images)


def test_the_default_lr_scales_with_the_batch_and_a_given_one_does_not():
    assert peak_lr(resolve_config({})) == 0.1  # the reference batch: unchanged
    assert peak_lr(resolve_config({"batch_size": 32})) == pytest.approx(0.05)
    assert peak_lr(resolve_config({"batch_size": 512})) == pytest.approx(0.2)
    assert peak_lr(resolve_config({"batch_size": 32, "lr": 0.3})) == 0.3
    assert scaled_lr(2e-3, REFERENCE_BATCH) == 2e-3


def _grey_images(count: int) -> TrainingData:
    """`count` blank 28x28 grey training images of 10 classes: all a plan looks at."""
    images, labels = torch.zeros((count, 1, 28, 28), dtype=torch.uint8), torch.arange(count) % 10
    return TrainingData(
        "blank", [str(k) for k in range(10)], (1, 28, 28), (0.5,), (0.25,),
        (images, labels), None, (images[:10], labels[:10]),
    )  # fmt: skip


def test_config_toml_holds_the_values_used_and_reads_back_the_same():
    used = plan(resolve_config({}), _grey_images(500)).config
    text = used.to_toml()
    for placeholder in ("lr = 0.0\n", "weight_decay = -1.0", "warmup_epochs = -1.0", "warmup_steps = -1"):  # fmt: skip
        assert placeholder not in text
    # 63 epochs of 16 steps (MIN_STEPS 1,000); a fifth of them warm up: 12.6 x 16 = 201.6 steps
    assert (used.lr, used.weight_decay, used.warmup_steps) == (pytest.approx(0.05), 5e-3, 202)
    assert plan(used, _grey_images(500)).config == used  # planning real values changes nothing
    assert resolve_config(tomllib.loads(text)) == used


@pytest.mark.slow
def test_a_small_run_prints_its_recipe_records_real_values_and_resumes_with_them(tmp_path, cli):
    """400 images: batch 32, a kept last batch of 16, epochs raised; a resume reads it all back.
    (That a resumed run is bitwise the unbroken one, with such a config and a kept partial batch,
    is test_training's test_resumed_training_is_bitwise_identical_to_an_unbroken_run.)"""
    out = tmp_path / "paused"
    result = cli("train", "--model", TINY, "train_size=400", "test_size=100", "--quiet",
                 "--out", str(out), "--stop-after", "1")  # fmt: skip
    assert result.code == 0, result.err
    log = (out / "train.log").read_text()
    assert "recipe: 400 images, 10 classes: batch 32, 77 epochs = 1001 steps" in log
    assert "last batch of 16 kept" in log and "x sqrt(32/128)" in log
    recorded = load_config(out / "config.toml")
    assert (recorded.lr, recorded.warmup_steps) == (pytest.approx(0.05), 200)  # 77 / 5 x 13
    assert (recorded.batch_size, recorded.epochs, recorded.weight_decay) == (32, 77, 5e-3)
    resumed = resumed_config(out, resolve_config({"model": TINY}))
    assert dataclasses.replace(resumed, stop_after=0, quiet=False) == dataclasses.replace(
        recorded, stop_after=0, quiet=False
    )
    assert Run.open(out).metrics["epochs"] == 1


def test_a_batch_larger_than_the_data_is_one_batch_of_all_of_it(tmp_path, cli):
    """Its default lr is then scaled to the images there are (x sqrt(100000/128) diverged)."""
    out = tmp_path / "big-batch"
    result = cli("train", "--model", TINY, "--batch-size", "100000", "--epochs", "1",
                 "train_size=256", "test_size=64", "--out", str(out))  # fmt: skip
    assert result.code == 0, result.err
    assert "batch 100000 is more than the 256 training images: batch 256" in result.out
    recorded = load_config(out / "config.toml")
    assert recorded.batch_size == 256 and recorded.lr == pytest.approx(scaled_lr(0.1, 256))
