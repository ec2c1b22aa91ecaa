"""Runs that cannot work are refused before training, with the numbers and the fix; never a
traceback, never a run folder left behind that the server answers with 500."""

# Fixtures are imported from test_data_support (kept out of the shared conftest.py),
# so pytest's fixture arguments shadow the imports by design.
# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from test_data_support import isolated_cache  # noqa: F401

from cnnlab.data.dataset import Dataset
from cnnlab.data.source import DataSource
from cnnlab.errors import DataError

TINY = ["--model", "tutorial", "--epochs", "1", "--quiet"]


def _refused(result, *words: str) -> None:
    """Exit 2 with one `error:` line naming `words`, and no traceback."""
    assert result.code == 2, (result.out, result.err)
    assert result.err.startswith("error: "), result.err
    assert "Traceback" not in result.err + result.out
    for word in words:
        assert word in result.err, result.err


def _folder(root: Path, per_class: int, classes: str = "abc") -> Path:
    """root/<class>/<i>.png: `per_class` small grey images in each class."""
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("L", (8, 8), ord(c) + 10 * i).save(root / c / f"{i}.png")
    return root


# --- item 1: a run that cannot be scored ------------------------------------------------------


@pytest.mark.usefixtures("isolated_cache")
def test_one_image_per_class_is_refused_before_the_run_folder(cli, tmp_path):
    root = _folder(tmp_path / "one", per_class=1)
    out = tmp_path / "run"
    result = cli("train", "--data", str(root), *TINY, "--out", str(out))
    # the numbers (3 training images, 0 test, 3 classes) and both fixes
    _refused(result, "3 training", "0 test", "3 classes", "test/", "at least 2 images")
    assert not out.exists()


@pytest.mark.usefixtures("isolated_cache")
def test_an_empty_validation_split_is_refused(cli, tmp_path):
    root = tmp_path / "tv"
    _folder(root / "train", per_class=1)
    _folder(root / "test", per_class=1)
    out = tmp_path / "run"
    result = cli("train", "--data", str(root), *TINY, "--val-split", "0.2", "--out", str(out))
    _refused(result, "val_split", "0 validation", "3 classes")
    assert not out.exists()
    assert cli("train", "--data", str(root), *TINY, "--out", str(out)).code == 0


def _dataset(train: int, test: int) -> Dataset:
    """A real two-class Dataset with `train` and `test` images of 4x4 grey."""

    def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros((n, 1, 4, 4), dtype=torch.uint8), torch.arange(n) % 2

    return Dataset("shapes", ["a", "b"], *images(train), *images(test))


def test_an_empty_training_split_is_refused():
    from cnnlab.data.source import check_splits

    dataset = _dataset(0, 4)
    train = (dataset.train_images, dataset.train_labels, None)
    with pytest.raises(
        DataError, match="0 training, 4 test images in 2 classes: nothing to train on"
    ):
        check_splits(dataset, DataSource("shapes"), train, None)
    scorable = _dataset(4, 2)
    check_splits(
        scorable, DataSource("shapes"), (scorable.train_images, scorable.train_labels, None), None
    )


@pytest.mark.usefixtures("isolated_cache")
def test_a_run_whose_test_split_became_empty_is_a_4xx_on_the_report(cli, tmp_path):
    """A run folder trained before the check (or whose folder lost images since) answers the
    report's scoring panels with a clear 4xx, not 500."""
    from fastapi.testclient import TestClient

    from cnnlab.deploy.predict import Predictor
    from cnnlab.run.folder import Run
    from cnnlab.server.app import create_app

    root = _folder(tmp_path / "two", per_class=2)
    out = tmp_path / "run"
    assert cli("train", "--data", str(root), *TINY, "--out", str(out)).code == 0
    for c in "abc":
        (root / c / "1.png").unlink()  # one image per class left: no test image held out
    with TestClient(create_app(Predictor(Run.open(out), "eager"))) as client:
        for path in ("/api/run/confusion", "/api/run/scores", "/api/run/confusion/0/0"):
            answer = client.get(path)
            assert 400 <= answer.status_code < 500, (path, answer.text)
            assert "test" in answer.json()["error"] and "empty" in answer.json()["error"]


# --- item 2: the memory pre-check counts what generating `shapes` allocates ----------------------


def _images_filling(share: float) -> int:
    """How many 28x28 `shapes` images take `share` of the memory available now, as uint8."""
    from cnnlab.data.registry import _available_memory

    available = _available_memory()
    if available is None:
        pytest.skip("this system does not say how much memory is available")
    return int(share * available / (28 * 28))


def test_generating_shapes_is_counted_in_the_memory_it_renders_in(cli, tmp_path):
    # the uint8 images fit in 60% of the memory; rendering them (a shuffled copy, floats) does not
    test_size = _images_filling(0.6)
    out = tmp_path / "run"
    result = cli(
        "train",
        "--model",
        "tutorial",
        "--out",
        str(out),
        "train_size=500",
        f"test_size={test_size}",
    )
    _refused(result, "memory", "test_size", "GB")
    assert not out.exists()


def test_shapes_generated_as_before(monkeypatch):
    """Rendering in chunks to uint8 gives the very images rendering all at once gives: the
    same pixels for any chunk size (no golden hash: float rendering differs between CPUs)."""
    from cnnlab.data import synthetic

    images, labels = synthetic.generate_shapes(4100, seed=7, split=1)  # two chunks of 4096
    assert images.shape == (4100, 1, 28, 28) and images.dtype == torch.uint8
    for chunk in (4100, 1000):  # all at once, and five chunks
        monkeypatch.setattr(synthetic, "CHUNK", chunk)
        again, again_labels = synthetic.generate_shapes(4100, seed=7, split=1)
        assert torch.equal(again, images) and torch.equal(again_labels, labels), chunk


def test_a_run_record_asking_for_too_many_images_is_a_4xx_on_the_report(cli, tmp_path):
    """record.json's test_size within its range (2**31 - 1) but beyond memory: a clear 400 that
    names memory, not a 500 from an allocator."""
    import json

    from fastapi.testclient import TestClient

    from cnnlab.deploy.predict import Predictor
    from cnnlab.run.folder import Run
    from cnnlab.server.app import create_app

    out = tmp_path / "run"
    argv = ["train", *TINY, "--out", str(out), "train_size=200", "test_size=50"]
    assert cli(*argv).code == 0
    record = json.loads((out / "record.json").read_text())
    record["source"]["test_size"] = _images_filling(0.6)
    (out / "record.json").write_text(json.dumps(record))
    paths = ["/api/run/confusion", "/api/run/scores", "/api/run/confusion/0/0"]
    paths += ["/api/run/image/0", "/api/run/patches", "/api/run/embedding"]
    with TestClient(create_app(Predictor(Run.open(out), "eager"))) as client:
        for path in paths:
            answer = client.get(path)
            assert 400 <= answer.status_code < 500, (path, answer.text)
            assert "memory" in answer.json()["error"], (path, answer.text)


# --- item 3: out of range is an error, never a stand-in for "decide for me" --------------------


SIZES = ["train_size=200", "test_size=50"]


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        (["--lr", "-1"], ["lr", "above 0", "auto"]),
        (["--lr", "0"], ["lr", "above 0", "leave it out"]),
        (["lr=0"], ["lr", "above 0"]),
        (["lr=-0.5"], ["lr", "above 0"]),
        (["weight_decay=-1"], ["weight_decay", "0 (no decay) or more", "auto"]),
        (["--weight-decay", "-0.5"], ["weight_decay", "0 (no decay) or more"]),
        (["warmup_steps=-1"], ["warmup_steps", "0 (no warm-up)", "auto"]),
        (["--warmup-steps", "-1"], ["warmup_steps", "0 (no warm-up)"]),
        (["warmup_epochs=-1"], ["warmup_epochs", "0 (no warm-up)", "auto"]),
        (["--warmup-epochs", "-2.5"], ["warmup_epochs", "0 (no warm-up)"]),
        (["momentum=2"], ["momentum", "below 1", "0.9"]),
        (["momentum=1"], ["momentum", "below 1"]),
        (["momentum=-0.1"], ["momentum", "at least 0"]),
        # item 4: an lr that overflows
        (["--lr", "1e308"], ["lr", "at most 10"]),
        (["lr=1e999"], ["lr", "at most 10"]),
    ],
)
def test_values_out_of_range_are_refused_not_replaced(cli, tmp_path, setting, words):
    out = tmp_path / "run"
    _refused(cli("train", *TINY, "--out", str(out), *SIZES, *setting), *words)
    assert not out.exists()


@pytest.mark.parametrize(
    "text",
    ["lr = 0\n", "lr = -1\n", "lr = -1.0\n", "weight_decay = -1.0\n", "warmup_steps = -1\n",
     "warmup_epochs = -1.0\n", "momentum = 1.5\n", "lr = 1e308\n"],
)  # fmt: skip
def test_a_config_file_cannot_spell_the_stand_ins(cli, tmp_path, text):
    from cnnlab.errors import ConfigError
    from cnnlab.training.config import read_config_file

    path = tmp_path / "c.toml"
    path.write_text(text)
    key = text.split(" ")[0]
    with pytest.raises(ConfigError, match=key):
        read_config_file(path)
    _refused(cli("train", "--config", str(path), "--out", str(tmp_path / "r")), key)
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match=key):
        __import__("cnnlab").train(**{key: __import__("tomllib").loads(text)[key]}, quiet=True)


def test_the_ways_to_ask_for_a_default_or_auto_still_work(cli, tmp_path):
    from cnnlab.cli import build_parser
    from cnnlab.cli.train import config_from_args
    from cnnlab.training.config import LR_AUTO, TrainConfig, read_config_file, resolve_config

    path = tmp_path / "c.toml"
    path.write_text('lr = "auto"\nweight_decay = "auto"\nwarmup_steps = "auto"\nmomentum = 0\n')
    asked = resolve_config(read_config_file(path))
    assert (asked.lr, asked.weight_decay, asked.warmup_steps, asked.momentum) == (
        LR_AUTO, TrainConfig.weight_decay, TrainConfig.warmup_steps, 0.0)  # fmt: skip
    path.write_text("lr = 0.05\nweight_decay = 0\nwarmup_steps = 0\nwarmup_epochs = 0\n")
    asked = resolve_config(read_config_file(path))
    assert (asked.lr, asked.weight_decay, asked.warmup_steps, asked.warmup_epochs) == (
        0.05, 0.0, 0, 0.0)  # fmt: skip
    args = build_parser().parse_args(["train", "--lr", "auto", "--warmup-epochs", "auto"])
    flags = config_from_args(args)
    assert (flags.lr, flags.warmup_epochs) == (LR_AUTO, TrainConfig.warmup_epochs)
    assert config_from_args(build_parser().parse_args(["train", "--lr", "10"])).lr == 10.0
    # what `cnnlab train --nproc N` hands its ranks: the asked config, stand-ins and all
    for config in (TrainConfig(), TrainConfig(lr=LR_AUTO), TrainConfig(lr=0.2, weight_decay=0.0)):
        path.write_text(config.to_toml())
        assert resolve_config(read_config_file(path)) == config


def test_a_run_folder_config_reads_back_with_no_decay_and_no_warm_up(cli, tmp_path):
    from cnnlab.run.folder import Run
    from cnnlab.training.config import config_of

    out = tmp_path / "run"
    argv = ["train", *TINY, "--out", str(out), *SIZES, "weight_decay=0", "warmup_steps=0"]
    assert cli(*argv).code == 0
    config = config_of(Run.open(out))
    assert (config.weight_decay, config.warmup_steps) == (0.0, 0)
    assert config.lr > 0 and config.warmup_epochs == 0.0


# --- item 4: a model too large to build ------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("conv(1000000000,3) gap fc(10)", ["layer 1 conv(1000000000, 3) has 10000000000",
                                           "(3*3*1/1 + 1)*1000000000", "at most 2147483647"]),
        ("flatten fc(1000000000) fc(10)", ["layer 2 fc(1000000000) has 785000000000"]),
        # 1e9 weights, but one image's output of this layer alone is 6.8e10 values (270 GB)
        ("conv(100000000,3) gap fc(10)", ["layer 1 conv(100000000, 3)", "67600000000 values"]),
    ],
)  # fmt: skip
def test_a_model_too_large_to_build_is_refused_before_allocating(cli, tmp_path, model, words):
    out = tmp_path / "run"
    _refused(cli("train", "--model", model, *TINY[2:], "--out", str(out), *SIZES), *words)
    assert not out.exists()
