"""Helpers shared by the data benchmarks: the reference model, timing, results folder."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

RESULTS = Path(__file__).parent / "results"


def reference_model(in_channels: int = 1, num_classes: int = 10, size: int = 28) -> nn.Module:
    """The seed tutorial CNN: conv32-relu-pool, conv64-relu-pool, flatten, dropout 0.5, fc."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(64 * (size // 4) ** 2, num_classes),
    )


def median_time(fn: Callable[[], object], repeats: int = 5) -> tuple[float, list[float]]:
    """Median wall time of `fn()` over `repeats` runs, in seconds, and all the runs."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs


def write_results(name: str, payload: dict) -> Path:
    """Write `payload` plus machine facts as JSON to bench/results/NAME.json."""
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            # Other work on the machine skews every timing: keep the load beside the numbers.
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        },
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
