"""`cnnlab lr-find`: the learning-rate range test on what `cnnlab train` would train; a plot and a suggestion."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.cli.common import image_outputs, output_files, say
from cnnlab.cli.train import add_training_options, config_from_args
from cnnlab.i18n import _

# train's options that mean nothing here (--out names the plot instead of a run folder)
NOT_HERE = (
    "--out", "--stop-after", "--nproc", "--force-nproc", "--early-stop", "--val-split",
    "--lr", "--schedule", "--warmup-steps", "--warmup-epochs",
)  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `lr-find`."""
    p = subparsers.add_parser(
        "lr-find",
        help=_("find a learning rate: a short range test, a plot and a suggestion"),
        description=_(
            "The learning-rate range test (as fastai's lr_find): about 100 training steps "
            "on a fresh copy of the model, the learning rate rising exponentially from 1e-7 to 10, "
            "until the smoothed loss passes 4x its lowest. Draws the loss against the learning rate "
            "and prints the suggestion (the lr of the lowest smoothed loss, the peak of a one-cycle run). "
            "Takes train's options; "
            "`cnnlab train --lr auto` runs the same test and trains at its suggestion."
        ),
    )
    add_training_options(p, leave_out=NOT_HERE)
    image_outputs(p, "lr-find.png")
    p.set_defaults(handler=run_lrfind)


def run_lrfind(args: argparse.Namespace) -> int:
    """Run the range test, draw it, say the suggestion."""
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.lrfind import lrfind_figure
    from cnnlab.training.lrfind import find_lr

    config = config_from_args(args)
    paths = output_files(args, Path("lr-find.png"))  # refuse a bad --out before training
    test, used = find_lr(config)
    say(test.summary())
    title = f"{used.model} on {used.data}: {used.optimizer}, batch {used.batch_size}"
    figure = lrfind_figure(test, title)
    for path in paths:
        save_figure(figure, path)
    what = _("loss against learning rate")
    for path in paths:
        say(_("wrote {path} ({what})").format(path=path, what=what))
    say(
        _("suggested learning rate: {lr}; train with --lr {lr}").format(lr=f"{test.suggestion:.2g}")
    )
    return 0
