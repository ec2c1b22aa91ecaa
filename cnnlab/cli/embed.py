"""`cnnlab embed`: the learned features of the test set in 2-D (PCA or t-SNE), by class."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cnnlab.cli.common import (
    RUN_HELP,
    console,
    examples,
    image_outputs,
    output_files,
    percent,
    print_json,
    say,
    titled_table,
    warn_if_weights_not_finite,
)
from cnnlab.errors import ConfigError
from cnnlab.i18n import _, shown, using_language

if TYPE_CHECKING:
    from cnnlab.evaluate.embed import Embedding

METHOD_CHOICES = ("pca", "tsne")  # evaluate.embed.METHODS, kept here so --help needs no torch


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the embed command."""
    p = subparsers.add_parser(
        "embed",
        help=_("a projector: the test images' learned features in 2-D, coloured by class"),
        description=_(
            "Place every test image at its penultimate features (the input of the "
            "last fc layer, what the classifier decides from) projected to 2-D: PCA (the two "
            "directions of largest variance; every image) or t-SNE (neighbours kept close; a "
            "seeded sample of at most 2,000 images). Dots are coloured by true class; the "
            "misclassified ones have a black edge."
        ),
        epilog=examples(
            "cnnlab embed runs/tut",
            "cnnlab embed runs/tut --method tsne",
            "cnnlab embed latest --json > points.json",
        ),
    )
    p.add_argument("run", help=_(RUN_HELP))
    p.add_argument(
        "--method", choices=METHOD_CHOICES, default="pca", help=_("projection (%(default)s)")
    )
    p.add_argument(
        "--max-points",
        type=int,
        metavar="N",
        help=_("embed a seeded random sample of N images (default: all for pca, 2000 for tsne)"),
    )
    p.add_argument("--seed", type=int, default=0, help=_("for the sample and t-SNE (%(default)s)"))
    image_outputs(p, "RUN/embed/METHOD.png")
    p.add_argument(
        "--json",
        action="store_true",
        help=_("print the points (x, y, index, file, true and predicted class) as JSON"),
    )
    p.set_defaults(handler=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    """`cnnlab embed`: the scatter of the penultimate features, and a line per class."""
    from cnnlab.evaluate.embed import embed_features
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.embed import embed_figure, embed_title
    from cnnlab.run.folder import Run

    if args.max_points is not None and args.max_points < 1:
        raise ConfigError(
            _("{option} {value} must be at least 1").format(
                option="--max-points", value=args.max_points
            )
        )
    run = Run.open(args.run)
    paths = output_files(args, run.path / "embed" / f"{args.method}.png")
    embedding = embed_features(run, None, args.method, max_points=args.max_points, seed=args.seed)
    warn_if_weights_not_finite(run)
    with using_language("en"):  # the figure's font has no Hangul: its titles stay English
        figure = embed_figure(embedding, embed_title(run.name, embedding))
    for path in paths:
        save_figure(figure, path)
    if args.json:
        print_json(
            {"run": str(run.path), **embedding.to_json(), "written": [str(p) for p in paths]}
        )
        return 0
    _print_embedding(embedding)
    what = _("{count} points").format(count=len(embedding.points))
    for path in paths:
        say(_("wrote {path} ({what})").format(path=path, what=what))
    return 0


def _print_embedding(embedding: Embedding) -> None:
    """What was embedded, notes, the axes, and per class: images and misclassified ones."""
    method = "PCA" if embedding.method == "pca" else "t-SNE"
    say(
        _("{method} of the {features} features entering {layer} for {count} {data} images").format(
            method=method,
            features=embedding.features,
            layer=embedding.layer,
            count=len(embedding.points),
            data=shown(embedding.data),
        )
    )
    for note in embedding.notes:
        say(note)
    if embedding.method == "pca" and embedding.explained:  # none when no image has a point
        x, y = embedding.explained
        say(
            _("the two axes hold {first} and {second} of the features' variance").format(
                first=percent(x, 1), second=percent(y, 1)
            )
        )
    numbers = [_("images"), _("misclassified")]
    table = titled_table(_("per class"), [_("class"), *numbers], set(numbers))
    for k, name in enumerate(embedding.classes):
        mine = embedding.labels == k
        table.add_row(name, str(int(mine.sum())), str(int((mine & embedding.wrong).sum())))
    console().print(table)
