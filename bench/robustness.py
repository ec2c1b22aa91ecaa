"""`make bench-robust`: cnnlab with no flags next to a plain-PyTorch reference, on small and own data.

Run: .venv/bin/python -m bench.robustness [--quick] [--seeds 3] [--cells NAME,NAME]
     (make bench-robust / make bench-robust-quick)

The matrix (each cell 3 seeds; --quick: 1 seed, the small cells marked below):
- `shapes` (cnnlab's generated data) at 500*, 2,000* and 24,000 training images (4,000 test);
- Fashion-MNIST at 1,000*, 6,000 and 60,000 training images (class-balanced subsets, as
  cnnlab's `train_size` takes them), always the full 10,000 test images;
- a generated colour folder (bench/colour_folder.py: 64x64 JPEG objects on cluttered
  backgrounds, 4 classes) at 300* training images with classes 4:2:1:1, and 1,200 balanced,
  both tested on the same balanced held-out folder of 400 images. The folder carries a
  cnnlab.toml with `flip_ok = true`, as a user whose classes are mirror-safe writes it (the
  README's way): both cnnlab and the reference may mirror its images.

Each cell and seed runs, one after the other (so that other work on the machine hits both):
- cnnlab: `cnnlab train --data D [train_size=N] --seed S --out DIR` as its own process, no other
  flag: whatever the default recipe does today. The test accuracy comes from the run folder
  (cnnlab.run.Run), with what it chose (config.toml, input shape) and what it printed;
- the reference (`reference_train`, below): a plain-PyTorch loop, written the way a careful user
  writes one, on the same images loaded by `cnnlab.data.load_dataset` with the arguments
  `cnnlab train` passes it (folders: at their native 64 px, in colour).

Writes bench/results/robustness[-quick].json and .md after every cell (a stopped run keeps what
it measured) and prints the markdown table. The goal on every cell: cnnlab's median within 1
point of the reference's median or above it, and every cnnlab seed at least 10 points above the
best constant answer (chance, or the test share of the biggest training class if higher).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.colour_folder import write_folder
from bench.common import RESULTS, write_results
from cnnlab.data import Dataset, load_dataset
from cnnlab.run.folder import Run

GOAL_GAP = 1.0  # points cnnlab may lie below the reference
GOAL_ABOVE_CHANCE = 10.0  # points every cnnlab seed must lie above the best constant answer
REFERENCE_STEPS = 1000  # optimizer steps of the reference (the epochs follow from the data size)
REFERENCE_SECONDS = 120.0  # the reference's training time cap (a safety net on a busy machine)


@dataclass(frozen=True)
class Cell:
    """One data set at one size: what `cnnlab train` is given, and how to load it alike."""

    name: str
    data: str  # --data: a registered name, or "colour" (a folder the bench writes)
    train_size: int | None  # train_size=N for cnnlab; None: the data set's own size
    quick: bool  # part of --quick
    weights: tuple[float, ...] = (1, 1, 1, 1)  # colour folders: class proportions of train/


CELLS = (
    Cell("shapes-500", "shapes", 500, True),
    Cell("shapes-2000", "shapes", 2000, True),
    Cell("shapes-24000", "shapes", None, False),
    Cell("fashion-mnist-1000", "fashion-mnist", 1000, True),
    Cell("fashion-mnist-6000", "fashion-mnist", 6000, False),
    Cell("fashion-mnist-60000", "fashion-mnist", None, False),
    Cell("colour-300-imbalanced", "colour", 300, True, (4, 2, 1, 1)),
    Cell("colour-1200", "colour", 1200, False),
)
COLOUR_SIZE = 64  # the generated folder's native side; the reference trains at it


def load() -> float:
    """The 1-minute load average: above about 0.5 other work shares the cores."""
    return round(os.getloadavg()[0], 2)


def cpu_model() -> str:
    """The CPU's model name as lscpu prints it (platform.processor() is often empty on Linux)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return next(
        (
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        ),
        "unknown",
    )


# --- the data of a cell ----------------------------------------------------------------


def data_argument(cell: Cell, folders: Path) -> str:
    """What `--data` gets: the registered name, or folder:PATH of the colour folder (written once)."""
    if cell.data != "colour":
        return cell.data
    root = folders / cell.name
    if not root.exists():
        # seed 0 for every size: the held-out test/ folder is the same for all colour cells
        write_folder(root, cell.train_size, test_per_class=100, weights=cell.weights, seed=0)
    return f"folder:{root}"


def reference_data(cell: Cell, data: str) -> Dataset:
    """The cell's images through cnnlab's loader, with the arguments `cnnlab train` passes it.

    cnnlab's training (data/source.load_source) passes no seed, so the subsets and
    the generated shapes are the same for every seed, here and there. A folder is loaded at its
    native size in colour: a plain-PyTorch user feeds the 64 px images as they are.
    """
    if cell.data == "colour":
        return load_dataset(data, image_size=COLOUR_SIZE, channels=3, train_size=None)
    return load_dataset(data, train_size=cell.train_size)


def constant_baselines(data: Dataset) -> dict:
    """Chance (1/K) and the test share of the biggest training class (always answering it)."""
    biggest = int(torch.bincount(data.train_labels, minlength=data.num_classes).argmax())
    return {
        "classes": data.num_classes,
        "train_images": len(data.train_labels),
        "test_images": len(data.test_labels),
        "chance": 1 / data.num_classes,
        "majority_share": float((data.test_labels == biggest).float().mean()),
    }


# --- the reference recipe ----------------------------------------------------------------


def reference_net(channels: int, classes: int, side: int) -> nn.Module:
    """Conv-BN-ReLU stages with 2x2 max pools between, until the side is 4 or less, then GAP, fc.

    28 px: 32-64-128-256 channels at 28, 14, 7, 3 px; 64 px: 16-32-64-128-256 at 64 ... 4 px.
    The last stage sees the whole image (stopping at 8 px instead gave shapes-500 72.5%, not 91%).
    """
    width, layers = (32 if side <= 32 else 16), []
    while True:
        layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)]
        layers.append(nn.ReLU(inplace=True))
        channels = width
        if side <= 4:
            break
        layers.append(nn.MaxPool2d(2))
        side, width = side // 2, width * 2
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)
    )


def shift_and_flip(x: torch.Tensor, pad: int, flip: bool, g: torch.Generator) -> torch.Tensor:
    """Random shifts of up to `pad` pixels (zero padding, then a crop) and, if `flip`, mirrors."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (n,), generator=g) for _ in range(2))
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (N, 1, 1, W)
    out = padded[
        torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols
    ]
    if flip:
        mirror = torch.rand(n, generator=g) < 0.5
        out = torch.where(mirror[:, None, None, None], out.flip(3), out)
    return out


def one_cycle(progress: float, peak: float) -> float:
    """One-cycle lr: linear warm-up from peak/25 over the first 25%, then cosine to ~0."""
    if progress < 0.25:
        return peak * (0.04 + 0.96 * progress / 0.25)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - 0.25) / 0.75)))


def reference_train(
    data: Dataset,
    seed: int,
    flip: bool,
    steps: int = REFERENCE_STEPS,
    max_seconds: float = REFERENCE_SECONDS,
) -> dict:
    """The plain-PyTorch reference: GAP net, AdamW 3e-3 (wd 0.05), one-cycle, shifts (+ flips).

    Batch 32 under 1,500 images, 64 under 8,000, else 128; whole epochs adding up to about
    `steps` steps. The schedule runs on whichever is further along, steps or `max_seconds`, so
    a busy machine shortens training instead of stretching it (`capped` says so).
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x = (data.train_images.float() / 255 - mean) / std
    y, n = data.train_labels, len(data.train_labels)
    batch = 32 if n < 1500 else 64 if n < 8000 else 128
    epochs = max(1, round(steps / math.ceil(n / batch)))
    total = epochs * math.ceil(n / batch)
    c, side = data.image_shape[0], data.image_shape[1]
    model = reference_net(c, data.num_classes, side)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    started, step, progress = time.perf_counter(), 0, 0.0
    model.train()
    while progress < 1:
        for idx in torch.randperm(n, generator=g).split(batch):
            progress = max(step / total, (time.perf_counter() - started) / max_seconds)
            if progress >= 1:
                break
            for group in opt.param_groups:
                group["lr"] = one_cycle(progress, 3e-3)
            xb = shift_and_flip(x[idx], max(2, side // 8), flip, g)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    train_s = time.perf_counter() - started
    accuracy = reference_accuracy(model, data, mean, std)
    return {
        "test_accuracy": accuracy,
        "train_s": round(train_s, 1),
        "batch_size": batch,
        "planned_steps": total,
        "steps": step,
        "epochs": round(step * batch / n, 1),
        "capped": step < total,
    }


def reference_accuracy(model: nn.Module, data: Dataset, mean, std) -> float:
    """Test accuracy of the reference model, in eval mode."""
    model.eval()
    correct = 0
    with torch.inference_mode():
        for xb, yb in zip(data.test_images.split(1000), data.test_labels.split(1000), strict=True):
            correct += int((model((xb.float() / 255 - mean) / std).argmax(1) == yb).sum())
    return correct / len(data.test_labels)


# --- cnnlab as a user runs it ----------------------------------------------------------------


def cnnlab_command(cell: Cell, data: str, seed: int, out: Path) -> list[str]:
    """`cnnlab train --data D [train_size=N] --seed S --out DIR`: nothing else."""
    command = [sys.executable, "-m", "cnnlab", "train", "--data", data, "--seed", str(seed)]
    if cell.train_size is not None and cell.data != "colour":
        command.append(f"train_size={cell.train_size}")
    return [*command, "--out", str(out)]


CHOSEN = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "augment")


def run_cnnlab(cell: Cell, data: str, seed: int) -> dict:
    """One cnnlab run as its own process: test accuracy (from the run folder), wall, choices."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = cnnlab_command(cell, data, seed, out)
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        printed = (done.stdout + done.stderr).splitlines()
        result = {
            "command": " ".join(["cnnlab", *command[3:-2]]),
            "wall_s": round(wall, 1),
            "returncode": done.returncode,
            # what it said besides the epoch lines: what it chose, warnings, the result
            "said": [line for line in printed if not line.startswith("epoch ")][-25:],
        }
        if done.returncode != 0:
            return {**result, "test_accuracy": None}
        run = Run.open(out)
        values = run.config_values()
        values = values.get("train", values)
        metrics = run.metrics
    return {
        **result,
        "test_accuracy": metrics["test_accuracy"],
        "test_images": metrics.get("test_images"),
        "train_s": metrics.get("train_seconds"),
        "input_shape": list(run.input_shape),
        "mean": list(run.mean),  # of its training images: a check that both saw the same ones
        "chosen": {key: values.get(key) for key in CHOSEN},
        "spec": run.meta["spec"],
    }


# --- the matrix ---------------------------------------------------------------------


def bench_cell(cell: Cell, seeds: int, folders: Path, args) -> dict:
    """cnnlab and the reference, seed by seed, on one cell."""
    data_arg = data_argument(cell, folders)
    data = reference_data(cell, data_arg)
    # shapes and Fashion-MNIST know; the colour folder says so in its cnnlab.toml (flip_ok = true:
    # its objects are all mirror-symmetric), which cnnlab reads as well
    flip = data.flip_ok
    entry = {"cell": cell.name, **constant_baselines(data), "reference_flips": flip, "runs": []}
    for seed in range(seeds):
        before = load()
        mine = run_cnnlab(cell, data_arg, seed)
        if "mean" in mine and cell.data != "colour":  # a folder: cnnlab picks its own size
            mine["same_images_as_reference"] = all(
                abs(a - b) < 1e-4 for a, b in zip(mine["mean"], data.mean, strict=True)
            )
        ref_started = time.perf_counter()
        ref = reference_train(data, seed, flip, args.ref_steps, args.ref_seconds)
        ref["wall_s"] = round(time.perf_counter() - ref_started, 1)
        entry["runs"].append(
            {
                "seed": seed,
                "load_before": before,
                "load_after": load(),
                "cnnlab": mine,
                "reference": ref,
            }
        )
        print(
            f"{cell.name} seed {seed}: cnnlab {_pct(mine['test_accuracy'])} in {mine['wall_s']}s, "
            f"reference {_pct(ref['test_accuracy'])} in {ref['wall_s']}s "
            f"({ref['steps']} steps{', capped' if ref['capped'] else ''}), load {load()}",
            flush=True,
        )
        if mine["test_accuracy"] is None:
            print("\n".join(mine["said"][-5:]), flush=True)
        if mine.get("same_images_as_reference") is False:
            print(
                f"note: {cell.name}: cnnlab's training images differ from the reference's",
                flush=True,
            )
    entry["summary"] = summarise(entry)
    return entry


def _pct(value: float | None) -> str:
    return "failed" if value is None else f"{value:.2%}"


def summarise(entry: dict) -> dict:
    """Medians, ranges, the gap in points and the goal, for one cell."""
    mine = [r["cnnlab"]["test_accuracy"] for r in entry["runs"]]
    ref = [r["reference"]["test_accuracy"] for r in entry["runs"]]
    floor = max(entry["chance"], entry["majority_share"])
    ok = [a for a in mine if a is not None]
    summary = {
        "reference_median": statistics.median(ref),
        "reference_range": [min(ref), max(ref)],
        "reference_wall_s": statistics.median(r["reference"]["wall_s"] for r in entry["runs"]),
        "cnnlab_wall_s": statistics.median(r["cnnlab"]["wall_s"] for r in entry["runs"]),
        "cnnlab_failed_runs": len(mine) - len(ok),
    }
    if not ok:
        return {**summary, "cnnlab_median": None, "gap_points": None, "met": False}
    # in points, to 0.01: finer is float noise (a 10,000-image test set counts 0.01 points)
    gap = round(100 * (statistics.median(ok) - summary["reference_median"]), 2)
    return {
        **summary,
        "cnnlab_median": statistics.median(ok),
        "cnnlab_range": [min(ok), max(ok)],
        "gap_points": gap,
        "met": len(ok) == len(mine)
        and gap >= -GOAL_GAP
        and min(ok) >= floor + GOAL_ABOVE_CHANCE / 100,
    }


def markdown(results: dict) -> str:
    """The side-by-side table, as markdown."""
    lines = [
        f"# cnnlab (no flags) vs a plain-PyTorch reference, small and own data ({results['mode']})",
        "",
        f"{results['seeds']} seed(s) per cell; CPU: {results['cpu']} (cnnlab on its default threads, "
        f"the reference on {results['threads']}); "
        f"load average (1 min) {results['load_at_start']} at start, {results.get('load_at_end', '-')} at end "
        "(above ~0.5 other work shared the cores, and the seconds are noisy). "
        "Accuracy: median of the seeds (min-max). Gap: cnnlab minus reference, points. "
        f"Goal: gap >= -{GOAL_GAP:g} and every cnnlab seed >= {GOAL_ABOVE_CHANCE:g} points above the best "
        "constant answer (chance, or the majority share: the test share of the biggest training class). "
        "Seconds: median wall per run (cnnlab: the whole process; reference: training and test); "
        "(capped N): N reference seeds hit the time cap, so their schedule ended early. "
        "The colour folders carry a cnnlab.toml saying flip_ok = true (their objects are "
        "mirror-symmetric; a user declares this once for their data): both sides mirror them.",
        "",
        "| cell | train / test | chance / majority | cnnlab | reference | gap | cnnlab s | ref s | cnnlab chose | goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in results["cells"]:
        s = e["summary"]
        mine = (
            "failed"
            if s["cnnlab_median"] is None
            else _cell_range(s["cnnlab_median"], s["cnnlab_range"])
        )
        gap = "-" if s["gap_points"] is None else f"{s['gap_points']:+.1f}"
        lines.append(
            f"| {e['cell']} | {e['train_images']:,} / {e['test_images']:,} "
            f"| {e['chance']:.0%} / {e['majority_share']:.0%} | {mine} "
            f"| {_cell_range(s['reference_median'], s['reference_range'])}{_capped(e)} | {gap} "
            f"| {s['cnnlab_wall_s']:.0f} | {s['reference_wall_s']:.0f} | {_chosen(e)} "
            f"| {'met' if s['met'] else 'NOT met'} |"
        )
    met = sum(e["summary"]["met"] for e in results["cells"])
    lines += [
        "",
        f"Goal met on {met} of {len(results['cells'])} cells; total {results.get('total_s', 0):.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def _capped(entry: dict) -> str:
    """ " (capped N)" when N seeds of the reference hit the time cap before their last step."""
    count = sum(r["reference"]["capped"] for r in entry["runs"])
    return f" (capped {count})" if count else ""


def _cell_range(median: float, bounds: list[float]) -> str:
    return f"{median:.2%} ({bounds[0]:.1%}-{bounds[1]:.1%})"


def _chosen(entry: dict) -> str:
    """What cnnlab chose in its first run: input shape, optimizer, lr, batch, epochs."""
    run = entry["runs"][0]["cnnlab"]
    if "chosen" not in run:
        return "-"
    c = run["chosen"]
    shape = "x".join(str(v) for v in run["input_shape"])
    lr = f"{c['lr']:.3g}" if isinstance(c["lr"], int | float) else c["lr"]
    return f"{shape}, {c['optimizer']} lr {lr}, batch {c['batch_size']}, {c['epochs']} ep"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, the small cells only")
    parser.add_argument("--seeds", type=int, default=0, help="seeds per cell (default 3, quick 1)")
    parser.add_argument("--cells", default="", help="comma-separated cell names (default: all)")
    parser.add_argument("--ref-steps", type=int, default=REFERENCE_STEPS, help="reference steps")
    parser.add_argument(
        "--ref-seconds", type=float, default=REFERENCE_SECONDS, help="reference time cap per run"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="reference CPU threads (default: all usable cores)"
    )
    args = parser.parse_args()
    # all usable cores, as cnnlab's default (cnnlab itself always runs with no flags)
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    cells = [c for c in CELLS if c.quick or not args.quick]
    if args.cells:
        wanted = set(args.cells.split(","))
        unknown = wanted - {c.name for c in CELLS}
        if unknown:
            parser.error(
                f"unknown cell(s) {', '.join(sorted(unknown))}; known: {', '.join(c.name for c in CELLS)}"
            )
        cells = [c for c in CELLS if c.name in wanted]
    seeds = args.seeds or (1 if args.quick else 3)
    name = "robustness-quick" if args.quick else "robustness"
    if load() > 0.5:
        print(f"note: load average {load()} at start; other work skews these timings", flush=True)
    results = {
        "mode": "quick" if args.quick else "full",
        "seeds": seeds,
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "load_at_start": load(),
        "reference": {"steps": args.ref_steps, "max_seconds": args.ref_seconds},
        "cells": [],
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folders:
        for cell in cells:
            results["cells"].append(bench_cell(cell, seeds, Path(folders), args))
            results["load_at_end"], results["total_s"] = (
                load(),
                round(time.perf_counter() - started),
            )
            text = markdown(results)
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"{name}.md").write_text(text)
            path = write_results(name, results)
    print("\n" + text)
    print(f"written {path} and {RESULTS / (name + '.md')}")


if __name__ == "__main__":
    main()
