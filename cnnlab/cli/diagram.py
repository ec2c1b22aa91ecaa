"""`cnnlab diagram`: a picture of a model's layers and shapes (a preset, a spec or a run)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.cli.common import (
    MODEL_HELP,
    examples,
    image_outputs,
    output_files,
    percent,
    print_written,
    say,
)
from cnnlab.errors import ConfigError
from cnnlab.i18n import _
from cnnlab.spec.language import parse_shape

if TYPE_CHECKING:
    from cnnlab.run.folder import Run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the diagram command."""
    p = subparsers.add_parser(
        "diagram",
        help=_("draw a model's (or a trained run's) architecture: a box per feature map"),
        description=_(
            "Draw the architecture: one box per feature map (height ~ H, thickness ~ "
            "channels), labelled with its layers and output shape C x H x W, arrows between. "
            "MODEL may also be a run folder (or 'latest'): its title then names the run and its "
            "test accuracy, and the image goes to RUN/diagram.png unless --out says otherwise."
        ),
        epilog=examples(
            "cnnlab diagram lenet5 --out lenet5.svg",
            'cnnlab diagram "conv(8,3) relu maxpool(2) flatten fc(10)" --input 1x28x28 --out m.png --out m.svg',
            "cnnlab diagram runs/tut",
        ),
    )
    p.add_argument(
        "model", help=_("{model_help}, or a run folder").format(model_help=_(MODEL_HELP))
    )
    p.add_argument(
        "--input", type=parse_shape, metavar="CxHxW", help=_("input shape, e.g. 1x28x28")
    )
    p.add_argument(
        "--every-layer",
        action="store_true",
        help=_(
            "one box per layer (default: batchnorm, activations and dropout join the box before)"
        ),
    )
    image_outputs(p, "model.png")
    p.set_defaults(handler=run_diagram)


def _as_run(model: str) -> Run | None:
    """The Run when MODEL names a run folder (a path or a name under runs/ with model.json, or
    'latest'); None for presets, specs and TOML files."""
    from cnnlab.model.presets import PRESETS
    from cnnlab.run import RUNS_DIR
    from cnnlab.run.files import MODEL_META
    from cnnlab.run.folder import Run

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


def _run_title(run: Run) -> str:
    """'run NAME (DATA, test accuracy 97.31%): SPEC'."""
    accuracy = run.metrics.get("test_accuracy")
    score = f"test accuracy {percent(accuracy)}" if accuracy is not None else "not tested yet"
    return f"run {run.name} ({run.meta.get('data', '?')}, {score}): {run.spec.text()}"


def run_diagram(args: argparse.Namespace) -> int:
    """`cnnlab diagram`: draw a model's architecture (a preset, spec, TOML file or run folder)."""
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.diagram import diagram_blocks, diagram_figure, shape_label
    from cnnlab.model.presets import resolve_model
    from cnnlab.spec.analysis import analyze

    run = _as_run(args.model)
    title = None
    if run is None:
        report = analyze(resolve_model(args.model, args.input))
        paths = output_files(args, Path("model.png"))
    else:
        if args.input:
            raise ConfigError(
                _(
                    "{run} was trained on {shape} images; its input cannot change: drop --input"
                ).format(run=run.path, shape="x".join(map(str, run.input_shape)))
            )
        report = analyze(run.spec)
        title = _run_title(run)
        paths = output_files(args, run.path / "diagram.png")
    figure = diagram_figure(report, every_layer=args.every_layer, title=title)
    for path in paths:
        save_figure(figure, path)
    if title:
        say(title)
    for block in diagram_blocks(report, args.every_layer):
        say(f"{shape_label(block.shape):>16}  {' | '.join(block.lines())}")
    print_written(paths)
    return 0
