"""`cnnlab plot`: the training curves of a run."""

from __future__ import annotations

import argparse
import math

from rich.table import Table

from cnnlab.cli.common import (
    RUN_HELP,
    console,
    examples,
    image_outputs,
    output_files,
    percent,
    print_json,
    print_written,
    say,
    titled_table,
)
from cnnlab.errors import CheckpointError
from cnnlab.i18n import _


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the plot command."""
    p = subparsers.add_parser(
        "plot",
        help=_("training curves of a run: loss, accuracy and learning rate per epoch"),
        description=_(
            "Draw a run's training curves from its metrics.csv: loss and accuracy "
            "(train, and validation where the run held some out) and the learning rate, per epoch."
        ),
        epilog=examples("cnnlab plot runs/tut", "cnnlab plot latest --out curves.svg"),
    )
    p.add_argument("run", help=_(RUN_HELP))
    image_outputs(p, "RUN/curves.png")
    p.add_argument("--json", action="store_true", help=_("print the epochs as JSON"))
    p.set_defaults(handler=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    """`cnnlab plot`: the curves image and a table of the epochs."""
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.curves import curves_figure
    from cnnlab.run.files import METRICS_FILE, epoch_rows
    from cnnlab.run.folder import Run

    run = Run.open(args.run)
    paths = output_files(args, run.path / "curves.png")
    rows = epoch_rows(run, ("epoch", "train_loss", "train_accuracy", "lr"))  # what is drawn
    if not rows:
        raise CheckpointError(
            _("{path} has no epochs yet: train the run for at least one epoch").format(
                path=run.path / METRICS_FILE
            )
        )
    test_accuracy = run.metrics.get("test_accuracy")
    figure = curves_figure(rows, f"{run.name}: {run.spec.text(with_input=False)}", test_accuracy)
    for path in paths:
        save_figure(figure, path)
    if args.json:
        clean = [{k: (None if math.isnan(v) else v) for k, v in row.items()} for row in rows]
        print_json({"run": str(run.path), "epochs": clean, "written": [str(p) for p in paths]})
        return 0
    epochs = _("{count} epoch(s)").format(count=len(rows))
    console().print(_epochs_table(f"{run.name}: {epochs}", rows))
    if test_accuracy is not None:
        say(_("test accuracy {accuracy}").format(accuracy=percent(test_accuracy)))
    print_written(paths, _("{count} point(s) per line").format(count=len(rows)))
    return 0


def _epochs_table(title: str, rows: list[dict[str, float]]) -> Table:
    """Loss, accuracy (train, and validation where held out) and learning rate per epoch."""
    columns = [_("epoch"), _("train loss"), _("train acc"), _("val loss"), _("val acc"), _("lr")]
    table = titled_table(title, columns, set(columns))
    for row in rows:
        table.add_row(
            str(int(row["epoch"])),
            f"{row['train_loss']:.4f}",
            percent(row["train_accuracy"]),
            "" if math.isnan(row.get("val_loss", math.nan)) else f"{row['val_loss']:.4f}",
            percent(row.get("val_accuracy", math.nan)),
            f"{row['lr']:.3g}",
        )
    return table
