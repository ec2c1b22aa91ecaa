"""`cnnlab patches`: what each filter of a layer responds to, as the test images' top patches."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cnnlab.cli.common import (
    RUN_HELP,
    console,
    examples,
    image_outputs,
    output_files,
    print_json,
    say,
    titled_table,
)
from cnnlab.errors import ConfigError
from cnnlab.evaluate import MAX_PATCH_CHANNELS, MAX_PATCH_TOP
from cnnlab.i18n import _, data_split, shown, using_language

if TYPE_CHECKING:
    from cnnlab.evaluate.patches import TopPatches
    from cnnlab.model.cnn import CnnModel


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the patches command."""
    p = subparsers.add_parser(
        "patches",
        help=_("what each filter responds to: the test images where a channel fires most"),
        description=_(
            "For each channel of a layer, find the test images whose activation (the "
            "largest over the map's positions) is highest, and crop each to the exact receptive "
            "field of that position: the input pixels the value was computed from. Drawn as a "
            "grid, a row per channel and a column per image, titled with the activation. Windows "
            "that reach past the image border show the padding as grey."
        ),
        epilog=examples(
            "cnnlab patches runs/tut --layer conv2",
            "cnnlab patches runs/tut --layer relu1 --top 6 --channels 8 --out relu1.png",
            "cnnlab patches latest --json",
        ),
    )
    p.add_argument("run", help=_(RUN_HELP))
    p.add_argument(
        "--layer",
        metavar="NAME",
        help=_(
            "a layer with feature maps, named as in `cnnlab featuremaps` (conv1, relu1, "
            "maxpool1, ...; default: the last conv layer)"
        ),
    )
    p.add_argument(
        "--top",
        type=int,
        default=9,
        metavar="K",
        help=_("images per channel (%(default)s; at most {most})").format(most=MAX_PATCH_TOP),
    )
    p.add_argument(
        "--channels",
        type=int,
        default=16,
        metavar="N",
        help=_(
            "the first N channels of the layer (%(default)s; fewer if it has fewer; at most {most})"
        ).format(most=MAX_PATCH_CHANNELS),
    )
    image_outputs(p, "RUN/patches/LAYER.png")
    p.add_argument(
        "--json", action="store_true", help=_("print the windows and activations as JSON")
    )
    p.set_defaults(handler=run_patches)


def default_layer(model: CnnModel) -> str:
    """The last conv layer whose output is still a map (`evaluate.patches.default_layer`)."""
    from cnnlab.evaluate.patches import default_layer as last_conv_with_a_map
    from cnnlab.evaluate.patches import map_layers

    layer = last_conv_with_a_map(model.report)
    if layer is None:
        names = map_layers(model.report)
        raise ConfigError(
            _(
                "the model has no conv layer with a feature map: name one with --layer ({names})"
            ).format(names=", ".join(names) or _("it has no layer with feature maps"))
        )
    return layer


def run_patches(args: argparse.Namespace) -> int:
    """`cnnlab patches`: the top test images of each channel, cropped to the receptive field."""
    from cnnlab.evaluate.patches import check_counts, layer_geometry, top_patches
    from cnnlab.evaluate.scores import split_with_files
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.patches import patches_figure, patches_title
    from cnnlab.run.folder import Run

    check_counts(args.top, args.channels)  # before the model and data are loaded
    run = Run.open(args.run)
    model = run.load_model()
    layer = args.layer or default_layer(model)
    layer_geometry(model.report, layer)  # a wrong name fails before the data is loaded
    paths = output_files(args, run.path / "patches" / f"{layer}.png")
    images, labels, data, files = split_with_files(run, None, "test")
    result = top_patches(
        model,
        images,
        labels,
        run.classes,
        (run.mean, run.std),
        layer,
        args.top,
        args.channels,
        files,
    )
    result.data = data_split(data, "test")
    with using_language("en"):  # the figure's font has no Hangul: its titles stay English
        figure = patches_figure(result, patches_title(run.name, result))
    for path in paths:
        save_figure(figure, path)
    if args.json:
        print_json({"run": str(run.path), **result.to_json(), "written": [str(p) for p in paths]})
        return 0
    _print_patches(result)
    what = _("{channels} channel(s) x top {top}").format(
        channels=len(result.channels), top=args.top
    )
    for path in paths:
        say(_("wrote {path} ({what})").format(path=path, what=what))
    return 0


def _print_patches(result: TopPatches) -> None:
    """The layer's window line, notes, and a row per channel: its best activations and images."""
    from cnnlab.spec.analysis import seen_text

    g = result.geometry
    c, h, w = g.out_shape
    say(
        _(
            "{layer}: {spec} -> {shape}; each cell sees {field} of the input, cells {jump} px "
            "apart, cell (0, 0) from pixel ({row}, {column})"
        ).format(
            layer=g.name,
            spec=g.spec,
            shape=f"{c}x{h}x{w}",
            field=seen_text(g.size, result.image_shape[1:]),
            jump=f"{g.jump[0]}x{g.jump[1]}",
            row=g.start[0],
            column=g.start[1],
        )
    )
    say(
        _("searched {count} {data} images").format(
            count=f"{result.images:,}", data=shown(result.data)
        )
    )
    for note in result.notes:
        say(note)
    if result.clipped:
        say(
            _(
                "{clipped} of {count} crops reach past the image border (clipped; the padding "
                "is drawn grey)"
            ).format(clipped=result.clipped, count=sum(len(r) for r in result.patches))
        )
    numbers = [_("channel"), _("best")]
    table = titled_table(
        _("top images per channel of {layer}").format(layer=g.name),
        [*numbers, _("images (activation)")],
        set(numbers),
    )
    for channel, row in zip(result.channels, result.patches, strict=True):
        listed = ", ".join(f"#{p.index} {p.label} ({p.activation:.3g})" for p in row[:4])
        more = _(", ... {count} more").format(count=len(row) - 4) if len(row) > 4 else ""
        table.add_row(str(channel), f"{row[0].activation:.3g}", listed + more)
    console().print(table)
