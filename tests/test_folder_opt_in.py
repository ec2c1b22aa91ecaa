"""Own image folders: opting into mirrors (--flip-ok, cnnlab.toml), class counts and imbalance,
--balance weight|sample, and eval's majority baseline and balanced accuracy."""

# Fixtures are imported from test_data_support (kept out of the shared conftest.py).
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from test_data_support import isolated_cache  # noqa: F401

import cnnlab
from cnnlab.data import load_dataset
from cnnlab.errors import DataError
from cnnlab.evaluate.scores import Evaluation
from cnnlab.training.balance import epoch_order, imbalance_warning, loss_weights
from cnnlab.training.config import resolve_config
from cnnlab.training.plan import plan
from cnnlab.training.setup import load_data

pytestmark = pytest.mark.usefixtures("isolated_cache")

COLOURS = {"blue": (20, 40, 200), "green": (30, 180, 40), "red": (200, 30, 30)}
TINY = "conv(4,3,padding=same) relu gap fc(3)"  # trains in a blink at 8x8


def colour_folder(root: Path, train: dict[str, int], test: dict[str, int]) -> Path:
    """root/train/<class>/ and root/test/<class>/ with `n` noisy 8x8 images of each class's colour."""
    g = torch.Generator().manual_seed(0)
    for split, counts in (("train", train), ("test", test)):
        for name, n in counts.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                noise = torch.randint(-30, 31, (8, 8, 3), generator=g)
                pixels = (torch.tensor(COLOURS[name]) + noise).clamp(0, 255).to(torch.uint8)
                Image.fromarray(pixels.numpy(), "RGB").save(root / split / name / f"{i}.png")
    return root


@pytest.fixture
def even(tmp_path) -> Path:
    return colour_folder(
        tmp_path / "even", dict.fromkeys(COLOURS, 12), {"blue": 8, "green": 4, "red": 4}
    )


def train_cli(cli, folder: Path, out: Path, *more: str):
    return cli(
        "train",
        "--data",
        str(folder),
        "--model",
        TINY,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--out",
        str(out),
        *more,
    )


# --- mirrors a folder opts into ----------------------------------------------------------


def test_flip_is_refused_on_a_folder_unless_flip_ok_is_given(cli, even, tmp_path):
    refused = train_cli(cli, even, tmp_path / "no", "--augment", "translate=1,flip")
    assert refused.code == 2
    assert "horizontal flip changes labels" in refused.err and "--flip-ok" in refused.err
    ok = train_cli(cli, even, tmp_path / "yes", "--augment", "translate=1,flip", "--flip-ok")
    assert ok.code == 0, ok.err
    assert "flip_ok = true" in (tmp_path / "yes" / "config.toml").read_text()
    config = resolve_config(
        {"model": TINY, "data": str(even), "augment": "standard", "flip_ok": True}
    )
    assert plan(config, load_data(config, torch.device("cpu"))).policy.flip  # standard: mirrors
    plain = resolve_config({"model": "default", "data": str(even), "augment": "standard"})
    assert not plan(plain, load_data(plain, torch.device("cpu"))).policy.flip


def test_tta_is_allowed_on_a_folder_with_flip_ok(cli, even, tmp_path):
    assert train_cli(cli, even, tmp_path / "a", "tta=true").code == 2
    result = train_cli(cli, even, tmp_path / "b", "tta=true", "--flip-ok")
    assert result.code == 0, result.err


def test_cnnlab_toml_in_the_folder_declares_flip_ok(cli, even, tmp_path):
    assert not load_dataset(even).flip_ok
    (even / "cnnlab.toml").write_text("flip_ok = true\n")
    assert load_dataset(even).flip_ok
    result = train_cli(cli, even, tmp_path / "run", "--augment", "flip,vflip,rot90")
    assert result.code == 0, result.err
    (even / "cnnlab.toml").write_text("flip_ok = false\n")
    assert train_cli(cli, even, tmp_path / "no", "--augment", "flip").code == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("flip = true\n", "unknown setting 'flip'.*flip_ok"),
        ('flip_ok = "yes"\n', "flip_ok must be true or false"),
        ("flip_ok = \n", "not valid TOML"),
    ],
)
def test_a_wrong_cnnlab_toml_is_a_clear_error(even, text, message):
    (even / "cnnlab.toml").write_text(text)
    with pytest.raises(DataError, match=message):
        load_dataset(even)


# --- class counts and imbalance -------------------------------------------------------------


@pytest.mark.parametrize(("small", "warned"), [(10, True), (14, False)])
def test_counts_are_printed_and_imbalance_warned_above_three(cli, tmp_path, small, warned):
    # 40 blue against `small` red: a ratio of 4 warns, about 2.9 does not
    folder = colour_folder(
        tmp_path / "pets", {"blue": 40, "green": 20, "red": small}, dict.fromkeys(COLOURS, 2)
    )
    result = train_cli(cli, folder, tmp_path / "run")
    assert result.code == 0, result.err
    assert f"classes: blue 40, green 20, red {small}" in result.out
    assert ("warning: classes are imbalanced" in result.out) is warned
    if warned:
        assert "blue has 4.0x as many training images as red (40 vs 10)" in result.out
        assert "--balance weight" in result.out and "--balance sample" in result.out


def test_imbalance_warning_boundary_and_note():
    assert imbalance_warning(["a", "b"], [30, 10], "none") is None  # exactly 3: no warning
    assert imbalance_warning(["a", "b"], [31, 10], "none").startswith("warning")
    assert imbalance_warning(["a", "b"], [31, 10], "weight").startswith("note")


def test_loss_weights_are_inverse_to_class_frequency():
    weights = loss_weights([30, 10], "weight")
    assert torch.allclose(weights, torch.tensor([40 / 60, 40 / 20]))
    assert loss_weights([30, 10], "none") is None and loss_weights([30, 10], "sample") is None


def test_sampled_epochs_give_every_class_an_equal_share_and_repeat_with_the_seed():
    labels = torch.tensor([0] * 900 + [1] * 80 + [2] * 20)
    order = epoch_order(labels, [900, 80, 20], "sample", torch.Generator().manual_seed(4))
    shares = torch.bincount(labels[order], minlength=3) / len(order)
    assert ((shares - 1 / 3).abs() < 0.05).all(), shares
    assert set(order[labels[order] == 2].tolist()) == set(range(980, 1000))  # each rare image
    again = epoch_order(labels, [900, 80, 20], "sample", torch.Generator().manual_seed(4))
    assert torch.equal(order, again)
    plain = epoch_order(labels, [900, 80, 20], "none", torch.Generator().manual_seed(4))
    assert torch.equal(plain, torch.randperm(1000, generator=torch.Generator().manual_seed(4)))


def test_balance_weight_and_sample_train_and_change_the_weights(cli, tmp_path):
    folder = colour_folder(
        tmp_path / "pets", {"blue": 40, "green": 12, "red": 8}, dict.fromkeys(COLOURS, 2)
    )
    weights = {}
    for balance in ("none", "weight", "sample"):
        result = train_cli(cli, folder, tmp_path / balance, "--balance", balance)
        assert result.code == 0, result.err
        weights[balance] = load_file(tmp_path / balance / "model.safetensors")
    assert "note: classes are imbalanced" in result.out  # with a remedy on: a note, no warning
    for balance in ("weight", "sample"):
        assert any(
            not torch.equal(weights["none"][k], weights[balance][k]) for k in weights["none"]
        )
    assert train_cli(cli, folder, tmp_path / "bad", "--balance", "oversample").code == 2


def test_a_sampled_run_resumes_bitwise(tmp_path):
    folder = colour_folder(
        tmp_path / "pets", {"blue": 30, "green": 10, "red": 8}, dict.fromkeys(COLOURS, 2)
    )
    common = dict(data=str(folder), model=TINY, batch_size=8, balance="sample", quiet=True)
    straight = cnnlab.train(**common, epochs=2, out=str(tmp_path / "straight"))
    cnnlab.train(**common, epochs=2, out=str(tmp_path / "paused"), stop_after=1)
    resumed = cnnlab.train(resume=tmp_path / "paused", quiet=True)
    a, b = (
        load_file(straight.path / "model.safetensors"),
        load_file(resumed.path / "model.safetensors"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- eval: majority baseline and balanced accuracy -----------------------------------------


def test_balanced_accuracy_and_baseline_by_hand():
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    predicted = torch.tensor([0, 0, 1, 1, 0, 2])
    evaluation = Evaluation(["a", "b", "c"], labels, torch.eye(3)[predicted])
    assert evaluation.accuracy == pytest.approx(4 / 6)
    assert evaluation.balanced_accuracy == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    assert evaluation.majority_baseline() == {"class": "a", "accuracy": pytest.approx(0.5)}


def test_eval_shows_the_baseline_and_balanced_accuracy(cli, tmp_path):
    folder = colour_folder(
        tmp_path / "pets", {"blue": 20, "green": 10, "red": 10}, {"blue": 5, "green": 2, "red": 3}
    )
    assert train_cli(cli, folder, tmp_path / "run").code == 0
    result = cli("eval", str(tmp_path / "run"), "--top", "0")
    assert result.code == 0, result.err
    assert "always answering blue: 50.00%" in result.out
    saved = json.loads((tmp_path / "run" / "eval" / "evaluation.json").read_text())
    confusion = torch.tensor(saved["confusion"], dtype=torch.float64)
    recall = confusion.diag() / confusion.sum(1)
    assert saved["balanced_accuracy"] == pytest.approx(recall.mean().item())
    assert f"balanced accuracy {saved['balanced_accuracy']:.2%}" in result.out
    assert saved["majority_baseline"] == {"class": "blue", "accuracy": 0.5}
