"""`cnnlab featuremaps`: every layer's output for one image, as grids or numbers."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cnnlab.cli.common import (
    RUN_HELP,
    choose_layers,
    console,
    examples,
    image_outputs,
    output_files,
    percent,
    print_json,
    print_written,
    say,
    split_names,
    titled_table,
)
from cnnlab.errors import ConfigError
from cnnlab.i18n import _

if TYPE_CHECKING:
    from cnnlab.evaluate.featuremaps import FeatureMap
    from cnnlab.evaluate.samples import Sample


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the featuremaps command."""
    p = subparsers.add_parser(
        "featuremaps",
        help=_("the activation maps of every conv, activation and pooling layer for one image"),
        description=_(
            "Run one image through a run's model and draw what every conv, activation "
            "and pooling layer outputs: a grid per layer, a tile per channel, each scaled to its own "
            "range (dark = the channel's lowest value, yellow = its highest). Also prints the top "
            "predictions."
        ),
        epilog=examples(
            "cnnlab featuremaps runs/tut test:0",
            "cnnlab featuremaps runs/tut photo.png --layers conv1,relu1",
            "cnnlab featuremaps latest test:7 --layers all --json",
        ),
    )
    p.add_argument("run", help=_(RUN_HELP))
    p.add_argument(
        "image",
        help=_("an image file (PNG, JPEG, ...) or SPLIT:INDEX of the run's data, e.g. test:0"),
    )
    p.add_argument(
        "--layers",
        action="append",
        metavar="NAMES",
        help=_("e.g. conv1,relu1; 'all' for every layer (default: conv, activation, pooling)"),
    )
    p.add_argument(
        "--top", type=int, default=3, metavar="K", help=_("top-K predictions (%(default)s)")
    )
    image_outputs(p, "RUN/featuremaps/IMAGE.png")
    p.add_argument("--json", action="store_true", help=_("print layers and predictions as JSON"))
    p.set_defaults(handler=run_featuremaps)


def run_featuremaps(args: argparse.Namespace) -> int:
    """`cnnlab featuremaps`: a grid per layer for one image, and its top predictions."""
    from cnnlab.evaluate.featuremaps import feature_maps, top_classes
    from cnnlab.evaluate.maplayers import output_layers
    from cnnlab.evaluate.samples import load_sample
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.maps import featuremaps_figure
    from cnnlab.run.folder import Run

    run = Run.open(args.run)
    if args.top < 1:
        raise ConfigError(_("--top {top} must be at least 1").format(top=args.top))
    sample = load_sample(run, args.image)
    paths = output_files(args, run.path / "featuremaps" / f"{sample.stem}.png")
    model = run.load_model()
    x = sample.model_input(run)  # (1, C, H, W)
    maps = feature_maps(model, x)
    shown = _shown_maps(maps, split_names(args.layers))
    predictions = top_classes(model, x, run.classes, args.top)
    best = predictions[0]
    title = _("{run}: feature maps of {image}; predicted {best} {probability}").format(
        run=run.name,
        image=_described(sample),
        best=best["class"],
        probability=percent(best["probability"], 1),
    )
    labels = {name: run.classes for name in output_layers(maps)}
    figure = featuremaps_figure(sample.image, shown, title, labels)
    for path in paths:
        save_figure(figure, path)
    rows = [fm.stats() for fm in shown]
    if args.json:
        print_json(
            {
                "run": str(run.path),
                "image": sample.source,
                "true": sample.label,
                "layers": rows,
                "top": predictions,
                "written": [str(p) for p in paths],
            }
        )
        return 0
    _print_maps(sample, rows, predictions)
    print_written(paths, _("{count} layer(s) and the input").format(count=len(shown)))
    return 0


def _shown_maps(maps: list[FeatureMap], wanted: list[str]) -> list[FeatureMap]:
    """The maps of the --layers asked for: every one for 'all', else the named ones, else the
    conv, activation and pooling maps."""
    from cnnlab.evaluate.maplayers import default_map_layers

    if wanted == ["all"]:
        return maps
    if not wanted:
        return default_map_layers(maps)
    names = [m.name for m in maps]
    chosen = choose_layers(names, wanted, names)
    return [m for m in maps if m.name in chosen]


def _described(sample: Sample) -> str:
    """'test:0 (true class circle)', or the file name alone when the class is unknown."""
    true = _(" (true class {label})").format(label=sample.label) if sample.label else ""
    return sample.source + true


def _print_maps(sample: Sample, rows: list[dict[str, Any]], predictions: list[dict]) -> None:
    """The image line, a table of the layers' values and a table of the top predictions."""
    out = console()
    c, h, w = sample.image.shape
    true = _(", true class {label}").format(label=sample.label) if sample.label else ""
    say(f"{sample.source}: {c}x{h}x{w}" + true)
    numbers = [_("output"), _("min"), _("max"), _("mean"), _("zeros")]
    table = titled_table(_("feature maps"), [_("layer"), _("spec"), *numbers], set(numbers))
    for row in rows:
        table.add_row(
            row["layer"],
            row["spec"],
            "x".join(map(str, row["shape"])),
            f"{row['min']:.3f}",
            f"{row['max']:.3f}",
            f"{row['mean']:.3f}",
            percent(row["zeros"], 0),
        )
    out.print(table)
    probability = _("probability")
    table = titled_table(
        _("top {count}").format(count=len(predictions)),
        ["#", _("class"), probability],
        {"#", probability},
    )
    for rank, prediction in enumerate(predictions, 1):
        table.add_row(str(rank), prediction["class"], percent(prediction["probability"]))
    out.print(table)
