"""Helpers shared by the serving benchmarks: a run to measure, its exports, and percentiles."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import cnnlab
from cnnlab.deploy.export import export_run
from cnnlab.run.folder import Run


def bench_run(run: str | None, model: str = "default") -> Run:
    """The run given, or `model` trained briefly (latency does not depend on how well it learned)."""
    if run:
        return Run.open(run)
    out = Path(tempfile.mkdtemp(prefix="cnnlab-bench-")) / "run"
    return cnnlab.train(
        model=model,
        data="shapes",
        train_size=2000,
        test_size=500,
        epochs=1,
        optimizer="adam",
        quiet=True,
        out=str(out),
    )


def with_exports(run: Run) -> Run:
    """A copy of the run with fresh ONNX and pt2 exports beside it (the original is untouched)."""
    copy = Path(tempfile.mkdtemp(prefix="cnnlab-bench-")) / run.path.name
    shutil.copytree(run.path, copy, ignore=shutil.ignore_patterns("model.onnx*", "model.pt2*"))
    copied = Run.open(copy)
    for fmt in ("onnx", "pt2"):
        export_run(copied, fmt, parity_limit=300)
    return copied


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
