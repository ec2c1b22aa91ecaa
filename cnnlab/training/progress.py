"""Training progress: a live bar on a terminal, plain lines in logs, nothing with --quiet.

Every line also goes to the run's human log (train.log).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainingProgress:
    """Reports epochs and steps; `live` shows a bar (terminals), otherwise one line per epoch."""

    def __init__(
        self,
        log_path: Path | None,
        quiet: bool = False,
        live: bool | None = None,
        stream: TextIO | None = None,
    ):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.live = (not quiet) and (self.stream.isatty() if live is None else live)
        self.log_path = log_path
        self._progress: Progress | None = None
        self._task = None

    def say(self, line: str, always: bool = False) -> None:
        """A line for the user (unless quiet, or `always`) and for the log."""
        if always or not self.quiet:
            if self._progress is not None:
                self._progress.console.print(line, highlight=False, markup=False)
            else:
                print(line, file=self.stream, flush=True)
        self.log(line)

    def log(self, line: str) -> None:
        """A line for train.log only."""
        if self.log_path is not None:
            with self.log_path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int = 0) -> None:
        """Begin the bar of one epoch (1-based), `done` steps already behind it when resuming."""
        if not self.live:
            return
        self._progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, completed=done, status="")

    def step(self, done: int, loss: float, accuracy: float, images_per_s: float) -> None:
        """Update the bar after `done` steps of the epoch."""
        if self._progress is not None:
            status = f"loss {loss:.4f}  acc {accuracy:.2%}  {images_per_s:,.0f} img/s"
            self._progress.update(self._task, completed=done, status=status)

    def end_epoch(self, line: str) -> None:
        """Close the bar and print the epoch's summary line."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.say(line)
