"""The cnnlab command line: parse arguments, call the library, print. Nothing else lives here.

Each command group is one module with `register(subparsers)`; a command sets
`handler=function(args) -> int` on its parser.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cnnlab import __version__
from cnnlab.errors import CnnlabError

# One module per command (or family: models = summary, models, spec; train = train, runs),
# named after it; each adds its subcommands (in this order in --help).
COMMAND_MODULES: list[str] = [
    "models",
    "datasets",
    "train",
    "eval",
    "plot",
    "filters",
    "featuremaps",
    "explain",
    "kernels",
    "diagram",
    "predict",
    "export",
    "serve",
]


def build_parser() -> argparse.ArgumentParser:
    """The full `cnnlab` parser with every registered command."""
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Convolutional neural networks for image classification: "
        "define, inspect, train, look inside, and use.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"cnnlab.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one cnnlab command; returns the process exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # argument types may raise CnnlabError too
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return 0
        return handler(args) or 0
    except CnnlabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
