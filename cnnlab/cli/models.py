"""`cnnlab summary`, `cnnlab models`, `cnnlab spec`: define a model and see every shape and why."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.text import Text

from cnnlab.cli.common import MODEL_HELP, console, print_json, titled_table
from cnnlab.i18n import _
from cnnlab.model.presets import PRESETS, Preset, preset_spec, resolve_model
from cnnlab.spec.analysis import analyze, describe_shape
from cnnlab.spec.language import parse_shape
from cnnlab.spec.summary import explain_lines, summary_json, summary_table, totals_lines
from cnnlab.spec.toml import spec_to_toml


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `summary`, `models` and `spec`."""
    p = subparsers.add_parser(
        "summary",
        help=_("per-layer shapes, formulas, parameters, FLOPs and receptive field"),
        description=_(
            "Show each layer's output shape with the formula that gives it, its parameters, "
            "FLOPs and receptive field, and the totals."
        ),
    )
    p.add_argument("model", help=_(MODEL_HELP))
    p.add_argument(
        "--input", type=parse_shape, metavar="CxHxW", help=_("input shape, e.g. 1x28x28")
    )
    p.add_argument("--json", action="store_true", help=_("print JSON instead of a table"))
    p.add_argument("--explain", action="store_true", help=_("a worked paragraph per layer"))
    p.set_defaults(handler=run_summary)

    p = subparsers.add_parser(
        "models", help=_("list the preset models"), description=_("List the preset models.")
    )
    p.add_argument("--json", action="store_true", help=_("print JSON"))
    p.set_defaults(handler=run_models)

    p = subparsers.add_parser(
        "spec",
        help=_("print a model's canonical one-line spec, or its TOML"),
        description=_(
            "Print the canonical one-line spec (or TOML with --toml) of a preset, file or spec."
        ),
    )
    p.add_argument("model", help=_(MODEL_HELP))
    p.add_argument(
        "--input", type=parse_shape, metavar="CxHxW", help=_("input shape, e.g. 1x28x28")
    )
    p.add_argument("--toml", action="store_true", help=_("print the TOML form"))
    p.set_defaults(handler=run_spec)


def _print_wrapped(out: Console, line: str) -> None:
    """A line of `explain_lines` (a paragraph is one line), wrapped to the console's width in
    terminal cells (Korean letters take two), each piece with the line's indent."""
    text = line.lstrip(" ")
    indent = " " * (len(line) - len(text))
    for piece in Text(text).wrap(out, max(out.width - len(indent), 20)) or [Text("")]:
        out.print(indent + piece.plain.rstrip(), highlight=False, markup=False)


def run_summary(args: argparse.Namespace) -> int:
    """`cnnlab summary`: the per-layer table and totals, a worked paragraph per layer, or JSON."""
    report = analyze(resolve_model(args.model, args.input))
    if args.json:
        print_json(summary_json(report))
        return 0
    out = console()
    if args.explain:
        for line in explain_lines(report):
            _print_wrapped(out, line)
        return 0
    out.print(summary_table(report))
    out.print("\n".join(totals_lines(report)), highlight=False, markup=False)
    return 0


def _preset_row(preset: Preset) -> dict:
    """One preset's name, input, parameters, FLOPs, spec and description."""
    report = analyze(preset_spec(preset.name))
    return {
        "name": preset.name,
        "input": describe_shape(report.input_shape),
        "params": report.total_params,
        "flops": report.total_flops,
        "spec": report.spec.text(with_input=False),
        "description": preset.description,
    }


def run_models(args: argparse.Namespace) -> int:
    """`cnnlab models`: the preset models as a table or JSON."""
    rows = [_preset_row(preset) for preset in PRESETS.values()]
    if args.json:
        print_json(rows)
        return 0
    numbers = [_("params"), "FLOPs"]
    table = titled_table(
        _("preset models (use the name as MODEL)"),
        [_("name"), _("input"), *numbers, _("description")],
        set(numbers),
    )
    for row in rows:  # the JSON keeps the English description; the table shows it translated
        table.add_row(
            row["name"],
            row["input"],
            f"{row['params']:,}",
            f"{row['flops']:,}",
            _(row["description"]),
        )
    console().print(table)
    return 0


def run_spec(args: argparse.Namespace) -> int:
    """`cnnlab spec`: the canonical one-line spec, or the TOML form."""
    spec = resolve_model(args.model, args.input)
    print(spec_to_toml(spec) if args.toml else spec.text())
    return 0
