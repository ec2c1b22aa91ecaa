"""The robustness bench's parts: the colour folder generator and the plain-PyTorch reference.

Not the matrix itself (that is `make bench-robust`, minutes to tens of minutes): here only that
the generated folder is what cnnlab's folder loader reads, with the asked class counts, and that
the reference recipe learns on a tiny folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab.data import load_dataset

# bench/ is a folder of the repository, not an installed package: import it from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.colour_folder import CLASSES, SIZE, class_counts, write_folder  # noqa: E402
from bench.robustness import (  # noqa: E402
    Cell,
    cnnlab_command,
    constant_baselines,
    reference_net,
    reference_train,
    shift_and_flip,
    summarise,
)


def test_class_counts_follow_the_weights_and_add_up():
    assert class_counts(300, (4, 2, 1, 1)) == [150, 75, 38, 37]
    for total in (7, 300, 1201):
        counts = class_counts(total, (4, 2, 1, 1))
        assert sum(counts) == total
        assert counts == sorted(counts, reverse=True)
    assert class_counts(1200) == [300] * 4


@pytest.mark.parametrize("weights", [(1, 1, 1, 1), (4, 2, 1, 1)])
def test_generated_folder_is_read_by_cnnlab_with_the_asked_counts(tmp_path: Path, weights):
    root = write_folder(tmp_path / "colour", 40, test_per_class=5, weights=weights, seed=3)
    files = sorted((root / "train").rglob("*.jpg"))
    assert len(files) == 40
    with Image.open(files[0]) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (SIZE, SIZE))
    ds = load_dataset(f"folder:{root}", image_size=SIZE, channels=3)
    assert sorted(ds.classes) == sorted(CLASSES)  # cnnlab orders the class folders by name
    assert ds.image_shape == (3, SIZE, SIZE)
    counts = torch.bincount(ds.train_labels, minlength=len(CLASSES)).tolist()
    asked = dict(zip(CLASSES, class_counts(40, weights), strict=True))
    assert dict(zip(ds.classes, counts, strict=True)) == asked
    assert torch.bincount(ds.test_labels).tolist() == [5] * len(CLASSES)
    baselines = constant_baselines(ds)
    assert baselines["chance"] == baselines["majority_share"] == 0.25  # the test part is balanced


def test_the_folder_declares_mirrors_safe_in_its_cnnlab_toml_and_cnnlab_reads_it(tmp_path: Path):
    """The bench's colour folder says flip_ok = true as a user would (its objects are symmetric);
    flip_ok=False writes no cnnlab.toml, and the loader then allows no mirrors."""
    declared = write_folder(tmp_path / "a", 8, test_per_class=2)
    assert (declared / "cnnlab.toml").read_text().strip() == "flip_ok = true"
    assert load_dataset(f"folder:{declared}", image_size=16, channels=3).flip_ok
    silent = write_folder(tmp_path / "b", 8, test_per_class=2, flip_ok=False)
    assert not (silent / "cnnlab.toml").exists()
    assert not load_dataset(f"folder:{silent}", image_size=16, channels=3).flip_ok


def test_the_test_folder_is_the_same_for_every_training_size(tmp_path: Path):
    small = write_folder(tmp_path / "a", 8, test_per_class=2, weights=(4, 2, 1, 1))
    large = write_folder(tmp_path / "b", 40, test_per_class=2)
    for name in CLASSES:
        a = sorted((small / "test" / name).iterdir())
        b = sorted((large / "test" / name).iterdir())
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    # and the training images are not among them
    train = {p.read_bytes() for p in (large / "train").rglob("*.jpg")}
    assert not train & {p.read_bytes() for p in (large / "test").rglob("*.jpg")}


def test_shift_and_flip_moves_pixels_without_changing_them():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    out = shift_and_flip(x, 2, flip=False, g=g)
    assert out.shape == x.shape
    for i in range(2):  # each image is a window of its zero-padded self
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        assert any(
            torch.equal(out[i], padded[:, dy : dy + 6, dx : dx + 6])
            for dy in range(5)
            for dx in range(5)
        )


def test_reference_net_ends_in_global_pooling_for_any_size():
    for channels, side in ((1, 28), (3, 64), (3, 48)):
        net = reference_net(channels, 4, side)
        assert net(torch.zeros(2, channels, side, side)).shape == (2, 4)
        assert isinstance(net[-3], torch.nn.AdaptiveAvgPool2d)
    # no flatten head: the same weights take any input size
    assert reference_net(3, 4, 64)(torch.zeros(1, 3, 96, 80)).shape == (1, 4)


@pytest.mark.slow
def test_reference_recipe_learns_on_a_tiny_colour_folder(tmp_path: Path):
    # plain backgrounds, 100 images a class at 32 px, 200 steps: a few seconds on a quiet machine
    root = write_folder(tmp_path / "colour", 400, test_per_class=50, seed=1, clutter=False)
    ds = load_dataset(f"folder:{root}", image_size=32, channels=3)
    result = reference_train(ds, seed=0, flip=True, steps=200, max_seconds=1e9)
    assert not result["capped"] and result["steps"] == result["planned_steps"]
    # 4 balanced classes, 200 test images: chance is 25% (+-3 points); it learns far above that
    assert result["test_accuracy"] >= 0.60


def _entry(cnnlab: list[float | None], reference: list[float], chance=0.1, majority=0.1) -> dict:
    runs = [
        {
            "cnnlab": {"test_accuracy": a, "wall_s": 1.0},
            "reference": {"test_accuracy": r, "wall_s": 1.0},
        }
        for a, r in zip(cnnlab, reference, strict=True)
    ]
    return {"chance": chance, "majority_share": majority, "runs": runs}


def test_goal_is_within_one_point_of_the_reference_and_far_from_chance():
    assert summarise(_entry([0.90, 0.91, 0.92], [0.915, 0.92, 0.93]))["met"]  # -1.0 point
    assert not summarise(_entry([0.90, 0.90, 0.90], [0.92, 0.92, 0.92]))["met"]  # -2 points
    assert summarise(_entry([0.95, 0.96, 0.97], [0.5, 0.5, 0.5]))["met"]  # above is fine
    # one seed near chance fails the cell even with a good median
    assert not summarise(_entry([0.15, 0.96, 0.97], [0.9, 0.9, 0.9]))["met"]
    # near the majority share fails too, when it is above chance
    assert not summarise(_entry([0.55] * 3, [0.5] * 3, chance=0.25, majority=0.5))["met"]
    failed = summarise(_entry([None, 0.97, 0.97], [0.9, 0.9, 0.9]))
    assert not failed["met"] and failed["cnnlab_failed_runs"] == 1


def test_cnnlab_runs_with_no_flags_but_data_size_seed_and_out(tmp_path: Path):
    command = cnnlab_command(Cell("shapes-500", "shapes", 500, True), "shapes", 2, tmp_path)
    assert command[command.index("train") :] == [
        "train",
        "--data",
        "shapes",
        "--seed",
        "2",
        "train_size=500",
        "--out",
        str(tmp_path),
    ]
    folder = cnnlab_command(Cell("c", "colour", 300, True), "folder:/x", 0, tmp_path)
    assert not any(part.startswith("train_size") for part in folder)
