"""Helpers shared by the serving benchmarks: a run to measure, its exports, percentiles, a server."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
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


class Served:
    """A real `cnnlab serve RUN --port 0 ...` process on loopback, its log in a file."""

    def __init__(self, run_path: Path, log: Path, *extra: str):
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 (the server writes here while it runs)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cnnlab", "serve", str(run_path), "--port", "0", *extra],
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = re.search(r"http://(127\.0\.0\.1):(\d+)/", log.read_text())
            if found and "engine:" in log.read_text():
                self.host, self.port = found.group(1), int(found.group(2))
                self.url = f"http://{self.host}:{self.port}"
                return
            if self.process.poll() is not None:
                raise RuntimeError(log.read_text())
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start:\n{log.read_text()}")

    def proc_status(self) -> dict[str, int]:
        """The server's resident memory (kB) and thread count, from /proc/PID/status."""
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {"rss_kb": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"])}

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()
