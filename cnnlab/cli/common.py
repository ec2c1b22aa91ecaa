"""Shared output helpers for CLI commands: a rich console that does not wrap tables in logs."""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any

from rich.console import Console


def console() -> Console:
    """A console on stdout; when stdout is not a terminal, wide enough that tables do not wrap."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=max(shutil.get_terminal_size((200, 24)).columns, 200), no_color=True)


def print_json(data: Any) -> None:
    """JSON for machines, on stdout."""
    print(json.dumps(data, indent=2))
