"""Training: run folders, exact resume, kills, Ctrl-C, NaN, refused checkpoints, distributed runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.run.checkpoint import load_tensors
from cnnlab.run.files import RESUME_FILE
from cnnlab.run.folder import Run
from cnnlab.training.config import FIELD_TYPES, TrainConfig, load_config
from cnnlab.training.loop import TrainingDiverged

# Small and quick: a few thousand generated shapes, a small model with every kind of randomness
# (dropout, augmentation, batchnorm statistics).
SMALL = dict(
    model="conv(8,3,padding=same) batchnorm relu maxpool(2) conv(16,3,padding=same) relu maxpool(2) "
    "flatten dropout(0.3) fc(10)",
    data="shapes",
    train_size=1200,
    test_size=400,
    batch_size=64,
    quiet=True,
)


def _weights(folder: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_file(folder / name)


def _python_cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "cnnlab", *argv]


def test_train_writes_a_complete_run_folder(tmp_path, cli):
    out = tmp_path / "runs" / "first"
    result = cli("train", "--model", SMALL["model"], "--epochs", "2", "--out", str(out), "--batch-size", "64",
                 "--val-split", "0.1", "train_size=1200", "test_size=400")  # fmt: skip
    assert result.code == 0, result.err
    assert "test accuracy:" in result.out
    assert " after 2 epochs, " in result.out and "2 epochs = " in result.out
    for name in (
        "config.toml",
        "model.safetensors",
        "model.json",
        RESUME_FILE,
        "metrics.csv",
        "train.log",
    ):
        assert (out / name).is_file(), name
    meta = json.loads((out / "model.json").read_text())
    assert meta["input_shape"] == [1, 28, 28]
    assert len(meta["classes"]) >= 8 and meta["spec"].endswith(f"fc({len(meta['classes'])})")
    assert 0.0 <= meta["metrics"]["test_accuracy"] <= 1.0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[:5] == [
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
    ]
    assert len(rows) == 3 and rows[2].startswith("2,")
    assert load_config(out / "config.toml").epochs == 2
    listing = cli("runs", str(tmp_path / "runs"))
    assert "first" in listing.out and f"{meta['metrics']['test_accuracy']:.2%}" in listing.out


def test_the_python_api_returns_the_run(tmp_path):
    run = cnnlab.train(**SMALL, epochs=1, out=str(tmp_path / "api"))
    assert isinstance(run, Run) and run.path == tmp_path / "api"
    model = run.load_model()
    x = torch.zeros(2, *run.input_shape)
    assert model(x).shape == (2, len(run.classes))


@pytest.mark.slow
def test_resumed_training_is_bitwise_identical_to_an_unbroken_run(tmp_path):
    straight = cnnlab.train(**SMALL, epochs=3, out=str(tmp_path / "straight"), val_split=0.1)
    paused = cnnlab.train(
        **SMALL, epochs=3, out=str(tmp_path / "paused"), val_split=0.1, stop_after=1
    )
    assert paused.metrics["stopped"] == "paused" and paused.metrics["epochs"] == 1
    resumed = cnnlab.train(resume=tmp_path / "paused", quiet=True)
    assert resumed.metrics["epochs"] == 3
    a = _weights(straight.path)
    b = _weights(resumed.path)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert straight.metrics["test_accuracy"] == resumed.metrics["test_accuracy"]
    assert straight.epoch_metrics()[-1]["train_loss"] == resumed.epoch_metrics()[-1]["train_loss"]


def test_resume_refuses_changes_that_would_make_another_run(tmp_path):
    cnnlab.train(**SMALL, epochs=2, out=str(tmp_path / "r"), stop_after=1)
    with pytest.raises(ConfigError, match="lr cannot change when resuming"):
        cnnlab.train(resume=tmp_path / "r", lr=0.5)
    with pytest.raises(ConfigError, match="already holds a run"):
        cnnlab.train(**SMALL, epochs=1, out=str(tmp_path / "r"))


def test_nan_stops_training_and_no_nan_weights_are_written(tmp_path):
    from cnnlab.training.plan import steps_per_epoch as steps_of

    steps_per_epoch = steps_of(SMALL["train_size"], SMALL["batch_size"])  # 19: the last 48 kept

    def poison(model, global_step):
        if global_step == steps_per_epoch + 3:  # in the second epoch
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match="epoch 2, step 5") as caught:
        cnnlab.train(**SMALL, epochs=3, out=str(tmp_path / "nan"), on_step_end=poison)
    assert "the checkpoint of epoch 1 is kept" in str(caught.value)
    for name in ("model.safetensors", RESUME_FILE):
        for tensor in _weights(tmp_path / "nan", name).values():
            if tensor.is_floating_point():
                assert torch.isfinite(tensor).all()
    tensors, info = load_tensors(tmp_path / "nan" / RESUME_FILE)
    assert info["progress"]["epoch"] == 1


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    a = cnnlab.train(**SMALL, epochs=1, out=str(tmp_path / "a"))
    b = cnnlab.train(**{**SMALL, "model": "tutorial"}, epochs=1, out=str(tmp_path / "b"))
    (b.path / "model.safetensors").write_bytes((a.path / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not fit this model") as caught:
        Run.open(b.path).load_model()
    assert "conv1.weight: file 8x1x3x3, model 32x1x3x3" in str(caught.value)


def test_a_checkpoint_for_another_class_count_is_refused_with_the_counts(tmp_path):
    a = cnnlab.train(**SMALL, epochs=1, out=str(tmp_path / "a"))
    meta = json.loads((a.path / "model.json").read_text())
    classes = len(meta["classes"])
    meta["classes"] = meta["classes"][:3]
    meta["spec"] = meta["spec"].replace(f"fc({classes})", "fc(3)")
    (a.path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=rf"class count \({classes} in the file, 3 here\)"):
        Run.open(a.path).load_model()


class _Payload:
    """Unpickling this would create a file: the proof that nothing ran is that the file is absent."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("victim", ["model.safetensors", RESUME_FILE])
def test_a_pickle_payload_is_refused_without_running_it(tmp_path, victim):
    run = cnnlab.train(**SMALL, epochs=1, out=str(tmp_path / "p"))
    marker = tmp_path / "payload-ran"
    torch.save({"weights": _Payload(marker)}, run.path / victim)
    with pytest.raises(CheckpointError, match="cnnlab never unpickles"):
        if victim == RESUME_FILE:
            cnnlab.train(resume=run.path, epochs=2, quiet=True)
        else:
            Run.open(run.path).load_model()
    assert not marker.exists()


def test_config_file_flags_and_overrides_apply_in_order(tmp_path, cli):
    path = tmp_path / "train.toml"
    path.write_text('epochs = 5\nlr = 0.2\noptimizer = "adam"\n')
    from cnnlab.cli import build_parser
    from cnnlab.cli.train import config_from_args

    args = build_parser().parse_args(["train", "--config", str(path), "--lr", "0.3", "epochs=7"])
    config = config_from_args(args)
    assert (config.epochs, config.lr, config.optimizer) == (7, 0.3, "adam")
    bad = cli("train", "epoch=3")
    assert bad.code == 2 and "unknown setting 'epoch'. Did you mean epochs" in bad.err
    bad = cli("train", "--optimizer", "rmsprop")
    assert bad.code == 2 and "optimizer must be one of sgd, adam, adamw" in bad.err
    # every setting; only lr's default (the stand-in 0) is left out, as a user asks for it
    assert TrainConfig(lr=0.1).to_toml().count("\n") == len(FIELD_TYPES)
    assert TrainConfig().to_toml().count("\n") == len(FIELD_TYPES) - 1


def _wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.05)


def _train_process(out: Path, epochs: int, train_size: int) -> subprocess.Popen:
    return subprocess.Popen(
        _python_cli("train", "--model", SMALL["model"], "--out", str(out), "--epochs", str(epochs),
                    "--batch-size", "64", f"train_size={train_size}", "test_size=400", "--threads", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_sigkill_mid_epoch_leaves_the_last_checkpoint_loadable_and_resumable(tmp_path):
    out = tmp_path / "killed"
    proc = _train_process(out, epochs=4, train_size=6000)
    _wait_for(out / "metrics.csv")  # written after the resume checkpoint of epoch 1
    time.sleep(0.3)  # well inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    tensors, info = load_tensors(out / RESUME_FILE)
    assert info["progress"]["epoch"] == 1 and info["progress"]["step"] == 0
    assert Run.open(out).load_model()(torch.zeros(1, 1, 28, 28)).shape[1] >= 8
    resumed = subprocess.run(
        _python_cli("train", "--resume", str(out), "--quiet"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert Run.open(out).metrics["epochs"] == 4 and "test accuracy" in resumed.stdout


@pytest.mark.slow
def test_ctrl_c_finishes_the_step_saves_and_says_how_to_resume(tmp_path):
    out = tmp_path / "interrupted"
    proc = _train_process(out, epochs=3, train_size=6000)
    _wait_for(out / "metrics.csv")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert f"cnnlab train --resume {out}" in stdout
    assert "Traceback" not in stderr
    tensors, info = load_tensors(out / RESUME_FILE)
    assert info["progress"]["epoch"] == 1 and info["progress"]["step"] > 0  # mid-epoch
    finished = cnnlab.train(resume=out, quiet=True)
    assert finished.metrics["epochs"] == 3 and "test_accuracy" in finished.metrics


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_total_batch(tmp_path):
    # Enough data and epochs that both runs converge (about 94% here), so seed noise stays below a point.
    # The model is spelled out (conv-BN-ReLU-pool blocks) so a change of the default preset does
    # not move this statistical comparison.
    model = (
        "conv(32,3,padding=same) batchnorm relu maxpool(2) conv(64,3,padding=same) batchnorm relu "
        "maxpool(2) conv(128,3,padding=same) batchnorm relu maxpool(2) flatten fc(10)"
    )
    common = dict(SMALL, train_size=8000, test_size=4000, epochs=5, batch_size=128, model=model)
    single = cnnlab.train(**common, out=str(tmp_path / "one"))
    env_before = dict(os.environ)
    double = cnnlab.train(**common, nproc=2, out=str(tmp_path / "two"))
    assert dict(os.environ) == env_before
    assert double.metrics["epochs"] == 5 and double.metrics["processes"] == 2
    assert abs(double.metrics["test_accuracy"] - single.metrics["test_accuracy"]) <= 0.01
    assert double.metrics["ranks_identical"] is True  # every rank's weights hashed and compared


# --- the run folder's one writer and the one atomic write ----------------------------------


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    from cnnlab import fileio

    path = tmp_path / "model.json"
    fileio.atomic_write_text(path, "old\n")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        fileio.atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]  # the temporary is gone


def test_sha256_file_is_hashlibs_digest_of_the_bytes(tmp_path):
    import hashlib

    from cnnlab.fileio import sha256_file

    data = os.urandom(3 << 20)  # over one read chunk
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


def test_metrics_csv_has_one_row_per_epoch_and_empty_cells_for_nan(tmp_path):
    from cnnlab.run.writer import write_metrics

    row = dict(epoch=1, train_loss=0.123456789, train_accuracy=0.5, val_loss=float("nan"),
               val_accuracy=float("nan"), lr=0.1, seconds=2.0, images_per_s=1234.5)  # fmt: skip
    write_metrics(tmp_path, [row, {**row, "epoch": 2}])
    assert (tmp_path / "metrics.csv").read_text() == (
        "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds,images_per_s\n"
        "1,0.123457,0.5,,,0.1,2,1234.5\n"
        "2,0.123457,0.5,,,0.1,2,1234.5\n"
    )
    rows = Run(tmp_path, {}).epoch_metrics()
    assert rows[1]["epoch"] == 2.0 and str(rows[0]["val_loss"]) == "nan"


def test_config_of_a_run_is_the_config_it_was_trained_with(tmp_path):
    from cnnlab.run.writer import write_config
    from cnnlab.training.config import config_of, resolve_config

    config = resolve_config({"data": "fashion-mnist", "epochs": 3, "tta": True})
    write_config(tmp_path, config.to_toml())
    run = Run(tmp_path, {})
    assert run.config_values()["epochs"] == 3  # the run layer reads plain values
    assert config_of(run) == config
    (tmp_path / "config.toml").unlink()
    with pytest.raises(CheckpointError, match="config.toml is missing"):
        config_of(run)


# --- small data: the recipe fitted to the number of images ---------------------------------


def test_fit_to_data_gives_small_data_enough_steps_and_leaves_large_data_alone():
    from cnnlab.training.config import resolve_config
    from cnnlab.training.plan import MIN_STEPS, fit_to_data, steps_per_epoch

    config = resolve_config({})
    fitted, note = fit_to_data(config, 500)
    # 16 steps an epoch (the last batch of 20 is kept), 1,008 in all
    assert (fitted.batch_size, fitted.epochs) == (32, 63)
    assert steps_per_epoch(500, fitted.batch_size) * fitted.epochs >= MIN_STEPS
    assert "batch 32 (not 128), 63 epochs (not 8)" in note
    assert fit_to_data(config, 24_000) == (config, None)  # 187 steps x 8 epochs already
    assert fit_to_data(config, 20)[0].batch_size == 16  # never below the smallest batch
    pinned = resolve_config({"epochs": 3})
    assert not pinned.fit_to_data and fit_to_data(pinned, 500) == (pinned, None)
    assert resolve_config({"epochs": 3, "fit_to_data": True}).fit_to_data


def test_small_data_gets_sgd_a_stronger_default_weight_decay_and_large_data_keeps_its_own():
    from cnnlab.training.config import resolve_config
    from cnnlab.training.plan import (
        SMALL_DATA,
        SMALL_DATA_WEIGHT_DECAY,
        fit_to_data,
        weight_decay,
    )

    config = resolve_config({})
    assert weight_decay(fit_to_data(config, 500)[0]) == SMALL_DATA_WEIGHT_DECAY
    assert fit_to_data(config, SMALL_DATA - 1)[0].weight_decay == SMALL_DATA_WEIGHT_DECAY
    assert weight_decay(fit_to_data(config, SMALL_DATA)[0]) == 5e-4
    assert weight_decay(fit_to_data(config, 60_000)[0]) == 5e-4
    given = resolve_config({"weight_decay": 1e-4})
    assert fit_to_data(given, 500)[0].weight_decay == 1e-4  # a given one wins
    adamw = resolve_config({"optimizer": "adamw"})
    assert weight_decay(fit_to_data(adamw, 500)[0]) == 0.05  # sgd's rule only


@pytest.mark.slow
def test_500_images_with_the_defaults_learn_far_above_chance(tmp_path, cli):
    """Was 10.10% (chance for 10 classes): 4 steps an epoch at batch 128 never got going."""
    out = tmp_path / "small"
    result = cli("train", "train_size=500", "test_size=1000", "--out", str(out))
    assert result.code == 0, result.err
    assert "recipe: 500 images, 10 classes: batch 32, 63 epochs = 1008 steps" in result.out
    assert Run.open(out).metrics["test_accuracy"] > 0.6
    recorded = tomllib.loads((out / "config.toml").read_text())
    assert (recorded["batch_size"], recorded["epochs"]) == (32, 63)  # the values actually used


def test_a_short_recipe_stretched_over_small_data_gets_its_stretched_augmentation_back():
    """Fashion-MNIST's recipe trains 4 epochs without augmentation; over 1,000 images
    fit_to_data makes that 63 epochs, which want the mirror (and, under SMALL_DATA, mirror TTA)."""
    from cnnlab.training.config import resolve_config
    from cnnlab.training.plan import fit_to_data

    config = resolve_config({"data": "fashion-mnist"})
    assert (config.augment, config.augment_when_stretched, config.whiten) == (
        "none",
        "light",
        "frozen",
    )
    full, _ = fit_to_data(config, 60_000, mirrors=False, flip_ok=True)
    assert (full.augment, full.epochs, full.tta) == ("none", 4, False)  # not stretched
    small, _ = fit_to_data(config, 1000, mirrors=False, flip_ok=True)
    assert (small.augment, small.epochs, small.tta) == ("light", 63, True)
    no_mirror, _ = fit_to_data(config, 1000, mirrors=False, flip_ok=False)
    assert (no_mirror.augment, no_mirror.tta) == ("light", False)  # light mirrors only if allowed
    given = resolve_config({"data": "fashion-mnist"}, {"augment": "none"})
    assert given.augment_when_stretched == ""  # the user's augmentation is kept
    assert fit_to_data(given, 1000, flip_ok=True)[0].augment == "none"
