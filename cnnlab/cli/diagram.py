"""`cnnlab diagram`: a picture of a model's layers and shapes (a preset, a spec or a run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.cli.common import (
    MODEL_HELP,
    console,
)
from cnnlab.errors import ConfigError
from cnnlab.spec.language import parse_shape


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the diagram command."""
    _register_diagram(subparsers)


def _add_image_outputs(p: argparse.ArgumentParser, default_stem: str) -> None:
    p.add_argument(
        "--out",
        action="append",
        metavar="FILE",
        help=f"image to write, .png or .svg; repeat for both (default {default_stem}.png)",
    )
    p.add_argument(
        "--format", choices=("png", "svg"), help="image format when FILE has no extension"
    )


def _register_diagram(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "diagram",
        help="draw a model's (or a trained run's) architecture: a box per feature map",
        description="Draw the architecture: one box per feature map (height ~ H, thickness ~ "
        "channels), labelled with its layers and output shape C x H x W, arrows between. "
        "MODEL may also be a run folder (or 'latest'): its title then names the run and its "
        "test accuracy, and the image goes to RUN/diagram.png unless --out says otherwise.",
        epilog="examples: cnnlab diagram lenet5 --out lenet5.svg | cnnlab diagram "
        '"conv(8,3) relu maxpool(2) flatten fc(10)" --input 1x28x28 --out m.png --out m.svg | '
        "cnnlab diagram runs/tut",
    )
    p.add_argument("model", help=f"{MODEL_HELP}, or a run folder")
    p.add_argument("--input", type=parse_shape, metavar="CxHxW", help="input shape, e.g. 1x28x28")
    p.add_argument(
        "--every-layer",
        action="store_true",
        help="one box per layer (default: batchnorm, activations and dropout join the box before)",
    )
    _add_image_outputs(p, "model")
    p.set_defaults(handler=run_diagram)


def _as_run(model: str):
    """The Run when MODEL names a run folder (a path or a name under runs/ with model.json, or
    'latest'); None for presets, specs and TOML files."""
    from pathlib import Path

    from cnnlab.model.presets import PRESETS
    from cnnlab.run.checkpoint import MODEL_META
    from cnnlab.run.folder import RUNS_DIR, Run

    def holds_run(folder: Path) -> bool:
        try:
            return (folder / MODEL_META).is_file()
        except OSError:  # e.g. a spec longer than a file name may be
            return False

    if model in PRESETS:
        return None
    if model == "latest" or holds_run(Path(model)) or holds_run(RUNS_DIR / model):
        return Run.open(model)
    return None


def run_diagram(args: argparse.Namespace) -> int:
    """`cnnlab diagram`: draw a model's architecture (a preset, spec, TOML file or run folder)."""
    from cnnlab.figures.canvas import output_paths, save_figure
    from cnnlab.figures.diagram import diagram_blocks, diagram_figure, shape_label
    from cnnlab.model.presets import resolve_model
    from cnnlab.spec.analysis import analyze

    run = _as_run(args.model)
    title = None
    if run is not None:
        if args.input:
            raise ConfigError(
                f"{run.path} was trained on {'x'.join(map(str, run.input_shape))} images; "
                "its input cannot change: drop --input"
            )
        report = analyze(run.spec)
        accuracy = run.metrics.get("test_accuracy")
        score = f"test accuracy {accuracy:.2%}" if accuracy is not None else "not tested yet"
        title = f"run {run.name} ({run.meta.get('data', '?')}, {score}): {run.spec.text()}"
        paths = output_paths(args.out, args.format, str(run.path / "diagram"))
    else:
        report = analyze(resolve_model(args.model, args.input))
        paths = output_paths(args.out, args.format, "model")
    figure = diagram_figure(report, every_layer=args.every_layer, title=title)
    for path in paths:
        save_figure(figure, path)
    out = console()
    if title:
        out.print(title, highlight=False, markup=False, soft_wrap=True)
    for block in diagram_blocks(report, args.every_layer):
        out.print(
            f"{shape_label(block.shape):>16}  {' | '.join(block.lines())}",
            highlight=False,
            markup=False,
        )
    for path in paths:
        out.print(f"wrote {path}", highlight=False)
    return 0
