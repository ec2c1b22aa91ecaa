"""The CLI's shape: commands in order, help defaults read from TrainConfig, and the library
functions the handlers call instead of computing (top classes, map statistics, folder accuracy)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cnnlab.cli import COMMAND_MODULES, build_parser
from cnnlab.cli.train import FLAGS
from cnnlab.deploy.predict import FileResult, folder_accuracy
from cnnlab.evaluate.featuremaps import feature_maps, top_classes
from cnnlab.model.cnn import build_model
from cnnlab.training.config import OPTIMIZERS, TrainConfig
from cnnlab.training.plan import SMALL_DATA, SMALL_DATA_WEIGHT_DECAY, peak_lr, weight_decay

COMMANDS = [
    "summary", "models", "spec", "datasets", "train", "runs", "lr-find", "eval", "plot", "filters",
    "featuremaps", "cam", "patches", "embed", "explain", "kernels", "diagram", "predict", "export", "code", "serve",
]  # fmt: skip


def _subcommands(parser) -> dict:
    return next(a for a in parser._actions if a.dest == "command").choices


def test_help_lists_the_commands_in_order():
    assert list(_subcommands(build_parser())) == COMMANDS
    assert len(COMMAND_MODULES) == len(set(COMMAND_MODULES))


def test_train_help_shows_the_config_defaults():
    """Every '(default: X)' that names a value is TrainConfig's, so the help cannot drift."""
    train = _subcommands(build_parser())["train"]
    helps = {a.dest: a.help for a in train._actions}
    defaults = TrainConfig()
    for _, (key, text) in FLAGS.items():
        if "{default}" in text:
            assert f"(default: {getattr(defaults, key)}" in helps[key]
        assert "{" not in helps[key]
    for name in OPTIMIZERS:
        lr = peak_lr(dataclasses.replace(defaults, optimizer=name))  # at the reference batch
        shown = helps["lr"].split(f"{name} ", 1)[1].split(",")[0].rstrip(")")
        assert float(shown) == lr
        decay = weight_decay(dataclasses.replace(defaults, optimizer=name))
        shown = helps["weight_decay"].split(f"{name} ", 1)[1].split(",")[0].split(";")[0]
        assert float(shown.rstrip(")")) == decay
    small = helps["weight_decay"].split("sgd ", 1)[1].split(";")[0]
    assert f"{SMALL_DATA_WEIGHT_DECAY:.0e}".replace("e-03", "e-3") in small
    assert f"{SMALL_DATA:,}" in small


@pytest.mark.parametrize("k", [1, 3, 10])
def test_top_classes_match_torch(k):
    torch.manual_seed(0)
    model = build_model("conv(4,3) relu maxpool(2) flatten fc(5)", (1, 8, 8)).eval()
    x = torch.randn(1, 1, 8, 8)
    classes = list("abcde")
    top = top_classes(model, x, classes, k)
    reference = torch.softmax(model(x).detach(), dim=1)[0].sort(descending=True)
    assert len(top) == min(k, 5)
    assert [t["class"] for t in top] == [classes[i] for i in reference.indices[: len(top)]]
    assert [t["probability"] for t in top] == pytest.approx(reference.values[: len(top)].tolist())


def test_feature_map_stats():
    torch.manual_seed(0)
    model = build_model("conv(4,3) relu maxpool(2) flatten fc(5)", (1, 8, 8)).eval()
    for fm in feature_maps(model, torch.randn(1, 1, 8, 8)):
        stats = fm.stats()
        assert stats["layer"] == fm.name and stats["kind"] == fm.kind
        assert stats["shape"] == list(fm.values.shape)
        assert stats["min"] == fm.values.min().item() and stats["max"] == fm.values.max().item()
        assert stats["zeros"] == pytest.approx((fm.values == 0).sum().item() / fm.values.numel())


def _result(path: str, predicted: str | None) -> FileResult:
    if predicted is None:
        return FileResult(path, error=f"{path}: not an image")
    return FileResult(path, top_k=[{"class": predicted, "index": 0, "probability": 0.9}])


def test_folder_accuracy():
    classes = ["cat", "dog"]
    results = [
        _result("d/cat/1.png", "cat"),
        _result("d/cat/2.png", "dog"),
        _result("d/dog/3.png", "dog"),
        _result("d/dog/4.png", None),  # failed files do not count
    ]
    scores = folder_accuracy(results, classes)
    assert {k: scores[k] for k in ("images", "correct", "accuracy")} == {
        "images": 3,
        "correct": 2,
        "accuracy": 2 / 3,
    }
    assert scores["confusion"] == [[1, 1], [0, 1]]
    assert [(c["class"], c["correct"], c["images"]) for c in scores["per_class"]] == [
        ("cat", 1, 2),
        ("dog", 1, 1),
    ]
    # a file outside a class folder, or nothing predicted: no folder accuracy
    assert folder_accuracy([*results, _result("d/other/5.png", "cat")], classes) is None
    assert folder_accuracy([_result("d/cat/1.png", None)], classes) is None


def test_key_value_settings_may_come_anywhere_on_the_line(cli, tmp_path):
    """`train --data shapes epochs=1 --out X train_size=500` was 'unrecognized arguments'."""
    from cnnlab.cli import _parse
    from cnnlab.cli.train import config_from_args

    line = ["train", "--data", "shapes", "epochs=1", "--out", "X", "train_size=500", "--quiet"]
    config = config_from_args(_parse(build_parser(), line))
    assert (config.epochs, config.train_size, config.out, config.quiet) == (1, 500, "X", True)
    bogus = cli("train", "--out", str(tmp_path / "r"), "train_size=5", "--no-such-flag")
    assert bogus.code == 2 and "unrecognized arguments: --no-such-flag" in bogus.err
    assert not (tmp_path / "r").exists()
    stray = cli("summary", "default", "notakey")  # a command without settings takes none
    assert stray.code == 2 and "unrecognized arguments: notakey" in stray.err
