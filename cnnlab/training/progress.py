"""Reporting training: a live bar on a terminal, plain lines in logs, nothing with --quiet.

Every line also goes to the run's human log (train.log, through the `log` callable
that run/writer.append_log provides).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as ProgressBar

from cnnlab.i18n import _
from cnnlab.text import korean_particles, printable


class TrainingReporter:
    """Reports epochs and steps; `live` shows a bar (terminals), otherwise one line per epoch."""

    def __init__(
        self,
        log: Callable[[str], None] | None,
        quiet: bool = False,
        live: bool | None = None,
        stream: TextIO | None = None,
    ):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.live = (not quiet) and (self.stream.isatty() if live is None else live)
        self._log = log
        self._bar: ProgressBar | None = None
        self._task = None

    def say(self, line: str, always: bool = False) -> None:
        """A line for the user (unless quiet, or `always`) and for the log."""
        line = korean_particles(
            printable(line)
        )  # folders and data paths are the user's: no escape sequences
        if always or not self.quiet:
            if self._bar is not None:
                self._bar.console.print(line, highlight=False, markup=False)
            else:
                print(line, file=self.stream, flush=True)
        self.log(line)

    def log(self, line: str) -> None:
        """A line for train.log only."""
        if self._log is not None:
            self._log(line)

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int = 0) -> None:
        """Begin the bar of one epoch (1-based), `done` steps already behind it when resuming."""
        if not self.live:
            return
        self._bar = ProgressBar(
            TextColumn(_("epoch {epoch}/{epochs}").format(epoch=epoch, epochs=epochs)),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=steps, completed=done, status="")

    def step(self, done: int, loss: float, accuracy: float, images_per_s: float) -> None:
        """Update the bar after `done` steps of the epoch."""
        if self._bar is not None:
            status = _("loss {loss}  acc {accuracy}  {rate} img/s").format(
                loss=f"{loss:.4f}", accuracy=f"{accuracy:.2%}", rate=f"{images_per_s:,.0f}"
            )
            self._bar.update(self._task, completed=done, status=status)

    def stop_bar(self) -> None:
        """Close the epoch's bar, if one is showing."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def end_epoch(self, line: str) -> None:
        """Close the bar and print the epoch's summary line."""
        self.stop_bar()
        self.say(line)
