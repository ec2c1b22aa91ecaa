"""What every CLI command shares: the console, JSON output, help strings, output-file options,
the percent formatter and table helpers."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cnnlab.errors import ConfigError

RUN_HELP = "a run folder, a run name under runs/, or 'latest'"

MODEL_HELP = "a preset name (see `cnnlab models`), a TOML file, or a one-line spec in quotes"

ENGINE_HELP = (
    "eager (torch), onnx or pt2 (the export beside the run, see `cnnlab export`), or auto: "
    "the fastest of eager and the valid exports present, measured at start (default: auto)"
)


def console() -> Console:
    """A console on stdout; when stdout is not a terminal, wide enough that tables do not wrap."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=max(shutil.get_terminal_size((200, 24)).columns, 200), no_color=True)


def print_json(data: Any) -> None:
    """JSON for machines, on stdout."""
    print(json.dumps(data, indent=2))


def say(text: str) -> None:
    """One plain line: no markup, no highlighting, never wrapped."""
    console().print(text, highlight=False, markup=False, soft_wrap=True)


def print_written(paths: list[Path], what: str = "") -> None:
    """A 'wrote FILE (what)' line per file written."""
    for path in paths:
        say(f"wrote {path}{f' ({what})' if what else ''}")


def percent(value: float | None, places: int = 2) -> str:
    """0.9731 -> '97.31%' (places decimals); '' for a missing or NaN value."""
    return "" if value is None or math.isnan(value) else f"{value:.{places}%}"


def titled_table(title: str, columns: list[str], right: set[str]) -> Table:
    """A table with a left-aligned title; the columns named in `right` are right-aligned."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    return table


def image_outputs(p: argparse.ArgumentParser, default: str) -> None:
    """Add --out FILE (repeatable: .png and/or .svg) and --format; `default` names the file."""
    p.add_argument(
        "--out",
        action="append",
        metavar="FILE",
        help=f"image to write, .png or .svg; repeat for both (default {default})",
    )
    p.add_argument(
        "--format", choices=("png", "svg"), help="image format when FILE has no extension"
    )


def output_files(args: argparse.Namespace, default: Path) -> list[Path]:
    """--out files (format by extension or --format), else `default` with --format's suffix."""
    from cnnlab.figures.canvas import output_paths

    return output_paths(args.out, args.format, str(default.with_suffix("")))


def split_names(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated names as one list: ['a,b', 'c'] -> ['a', 'b', 'c']."""
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def choose_layers(
    available: list[str], wanted: list[str], model_layers: list[str], kind: str = ""
) -> list[str]:
    """The wanted layer names, checked against `available` (the `kind` layers of the model)."""
    listed = f"its {kind} layers" if kind else "its layers"
    for name in wanted:
        if name in available:
            continue
        if name in model_layers:
            raise ConfigError(f"{name} is not a {kind} layer; choose among {', '.join(available)}")
        raise ConfigError(f"the model has no layer {name}; {listed}: {', '.join(available)}")
    return wanted
