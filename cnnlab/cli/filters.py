"""`cnnlab filters`: the learned convolution filters of a run as image grids."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from rich.table import Table

from cnnlab.cli.common import (
    RUN_HELP,
    choose_layers,
    console,
    examples,
    image_outputs,
    output_files,
    print_json,
    print_written,
    split_names,
    titled_table,
)
from cnnlab.errors import ConfigError
from cnnlab.i18n import _

if TYPE_CHECKING:
    pass


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the filters command."""
    p = subparsers.add_parser(
        "filters",
        help=_("the learned kernels of each conv layer as image grids"),
        description=_(
            "Draw the learned kernels (filters) of a run's conv layers: one section per "
            "layer, a row per filter and a column per input channel (first layers of colour "
            "models: one RGB tile per filter). Blue is negative, white 0, red positive."
        ),
        epilog=examples(
            "cnnlab filters runs/tut",
            "cnnlab filters runs/tut --layer conv1 --out conv1.png",
            "cnnlab filters latest --per-channel",
        ),
    )
    p.add_argument("run", help=_(RUN_HELP))
    p.add_argument(
        "--layer",
        action="append",
        metavar="NAME",
        help=_("only these conv layers (repeat or comma-separate: conv1,conv2; default all)"),
    )
    p.add_argument(
        "--per-channel",
        action="store_true",
        help=_("colour models: a tile per input channel instead of one RGB tile per filter"),
    )
    image_outputs(p, "RUN/filters.png")
    p.add_argument("--json", action="store_true", help=_("print the layers as JSON"))
    p.set_defaults(handler=run_filters)


def run_filters(args: argparse.Namespace) -> int:
    """`cnnlab filters`: one grid per conv layer."""
    from cnnlab.evaluate.filters import conv_filters
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.filters import filters_figure
    from cnnlab.run.folder import Run

    run = Run.open(args.run)
    paths = output_files(args, run.path / "filters.png")
    model = run.load_model()
    layers = conv_filters(model)
    if not layers:
        raise ConfigError(
            _("the model of {run} has no conv layer: there are no filters to draw").format(
                run=run.path
            )
        )
    wanted = split_names(args.layer)
    if wanted:
        all_names = [name for name, _ in model.named_children()]
        chosen = choose_layers([f.name for f in layers], wanted, all_names, "conv")
        layers = [f for f in layers if f.name in chosen]
    title = _("{run}: learned filters").format(run=run.name)
    figure = filters_figure(layers, rgb=not args.per_channel, title=title)
    for path in paths:
        save_figure(figure, path)
    rows = [f.stats(rgb=not args.per_channel) for f in layers]
    if args.json:
        print_json({"run": str(run.path), "layers": rows, "written": [str(p) for p in paths]})
        return 0
    console().print(_filters_table(title, rows))
    print_written(paths, _("{count} layer(s)").format(count=len(rows)))
    return 0


def _filters_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """A line per conv layer: spec, weight shape, tiles and weight range."""
    numbers = [_("tiles"), _("min"), _("max"), _("std")]
    table = titled_table(
        title,
        [_("layer"), _("spec"), _("weights (O x I x kh x kw)"), *numbers],
        set(numbers),
    )
    for row in rows:
        table.add_row(
            row["layer"],
            row["spec"],
            " x ".join(map(str, row["weight_shape"])),
            str(row["tiles"]),
            f"{row['min']:.3f}",
            f"{row['max']:.3f}",
            f"{row['std']:.3f}",
        )
    return table
