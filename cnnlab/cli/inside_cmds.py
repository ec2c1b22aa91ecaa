"""`cnnlab eval`, `plot`, `filters`, `featuremaps`: look inside a trained run.

Parse, call `evaluate.py`, `featuremaps.py`, `samples.py` and `visualize.py`,
print and save. Nothing is computed here.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

from rich.table import Table

from cnnlab.cli.common import console, print_json
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.evaluate.scores import SPLITS

RUN_HELP = "a run folder, a run name under runs/, or 'latest'"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the eval, plot, filters and featuremaps commands."""
    _register_eval(subparsers)
    _register_plot(subparsers)
    _register_filters(subparsers)
    _register_featuremaps(subparsers)


def _image_outputs(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--out",
        action="append",
        metavar="FILE",
        help=f"image to write, .png or .svg; repeat for both (default {default})",
    )
    p.add_argument(
        "--format", choices=("png", "svg"), help="image format when FILE has no extension"
    )


def _paths(args: argparse.Namespace, default: Path) -> list[Path]:
    """--out files (format by extension or --format), else `default` with --format's suffix."""
    from cnnlab.figures.canvas import output_paths

    return output_paths(args.out, args.format, str(default.with_suffix("")))


def _percent(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.2%}"


def _say(text: str) -> None:
    """One plain line: no markup, no highlighting, never wrapped."""
    console().print(text, highlight=False, markup=False, soft_wrap=True)


def _print_written(paths: list[Path], what: str = "") -> None:
    for path in paths:
        _say(f"wrote {path}{f' ({what})' if what else ''}")


def _table(title: str, columns: list[str], right: set[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    return table


# --- eval -----------------------------------------------------------------------------------


def _register_eval(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score a trained run: accuracy, per-class precision/recall/F1, confusion, top losses",
        description="Score a run's model on a split of its data (or another data set with the "
        "same classes and image shape): accuracy, per-class precision, recall and F1, the most "
        "confused pairs; write the confusion matrix (image and JSON) and a gallery of the "
        "images with the highest loss.",
        epilog="examples: cnnlab eval runs/tut | cnnlab eval latest --split val --json | "
        "cnnlab eval runs/tut --out report --format svg --top 32",
    )
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--data", help="another data set with the run's classes (default: the run's)")
    p.add_argument("--split", choices=SPLITS, default="test", help="which split (default test)")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="folder for confusion.png, evaluation.json, top_losses.png (default RUN/eval/)",
    )
    p.add_argument("--format", choices=("png", "svg"), default="png", help="image format (png)")
    p.add_argument(
        "--top",
        type=int,
        default=16,
        metavar="N",
        help="images in the top-loss gallery (16; 0: none)",
    )
    p.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    p.set_defaults(handler=run_eval)


def eval_folder(run_path: Path, data: str | None, split: str) -> Path:
    """RUN/eval for the run's test split; RUN/eval-val, RUN/eval-mnist-train, ... otherwise."""
    parts = ["eval"]
    if data:
        parts.append(re.sub(r"[^A-Za-z0-9_-]+", "-", Path(data.removeprefix("folder:")).name))
    if split != "test":
        parts.append(split)
    return run_path / "-".join(parts)


def run_eval(args: argparse.Namespace) -> int:
    """`cnnlab eval`: scores, tables, confusion image and JSON, top-loss gallery."""
    from cnnlab.evaluate.scores import evaluate_run
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.visualize import confusion_figure, gallery_figure
    from cnnlab.run.checkpoint import atomic_write_json
    from cnnlab.run.folder import Run

    if args.top < 0:
        raise ConfigError(f"--top {args.top} must be 0 (no gallery) or more")
    run = Run.open(args.run)
    folder = Path(args.out) if args.out else eval_folder(run.path, args.data, args.split)
    evaluation, images = evaluate_run(run, args.data, args.split)
    if evaluation.size == 0:
        raise ConfigError(f"the {args.split} split of {evaluation.data} is empty: nothing to score")
    result = evaluation.to_json(top=args.top)
    heading = f"{run.name} on {evaluation.data} {args.split}"
    accuracy_line = (
        f"accuracy {evaluation.accuracy:.2%} "
        f"({int(evaluation.confusion.diag().sum())}/{evaluation.size})"
    )

    written = {"json": folder / "evaluation.json"}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(written["json"], result)
    written["confusion"] = save_figure(
        confusion_figure(evaluation.confusion, evaluation.classes, f"{heading}: {accuracy_line}"),
        folder / f"confusion.{args.format}",
    )
    if args.top:
        written["top_losses"] = save_figure(
            gallery_figure(
                images,
                result["top_losses"],
                f"{heading}: the {len(result['top_losses'])} images with the highest loss",
            ),
            folder / f"top_losses.{args.format}",
        )

    if args.json:
        print_json(
            {**result, "run": str(run.path), "written": {k: str(v) for k, v in written.items()}}
        )
        return 0
    _print_evaluation(heading, accuracy_line, evaluation, result)
    _print_written([written["confusion"]], f"{len(evaluation.classes)}x{len(evaluation.classes)}")
    _print_written([written["json"]])
    if "top_losses" in written:
        _print_written([written["top_losses"]], f"{len(result['top_losses'])} images")
    return 0


def _print_evaluation(heading: str, accuracy_line: str, evaluation, result: dict) -> None:
    out = console()
    _say(f"{heading}: {evaluation.size} images")
    _say(f"{accuracy_line}, loss {evaluation.loss:.4f}")
    table = _table(
        "per class",
        ["class", "precision", "recall", "F1", "support"],
        {"precision", "recall", "F1", "support"},
    )
    for row in result["per_class"]:
        table.add_row(
            row["class"],
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    out.print(table)
    if result["most_confused"]:
        supports = {row["class"]: row["support"] for row in result["per_class"]}
        table = _table(
            "most confused (true class taken for another)",
            ["true", "predicted", "count", "of the true class"],
            {"count", "of the true class"},
        )
        for pair in result["most_confused"]:
            table.add_row(
                pair["true"],
                pair["predicted"],
                str(pair["count"]),
                _percent(pair["count"] / supports[pair["true"]]),
            )
        out.print(table)
    else:
        _say("no confusions: every image was classified correctly")
    if result["top_losses"]:
        table = _table(
            "highest losses",
            ["index", "true", "predicted", "p(predicted)", "p(true)", "loss"],
            {"index", "p(predicted)", "p(true)", "loss"},
        )
        for item in result["top_losses"][:5]:
            table.add_row(
                str(item["index"]),
                item["true"],
                item["predicted"],
                f"{item['probability']:.3f}",
                f"{item['true_probability']:.3f}",
                f"{item['loss']:.3f}",
            )
        out.print(table)


# --- plot -----------------------------------------------------------------------------------


def _register_plot(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plot",
        help="training curves of a run: loss, accuracy and learning rate per epoch",
        description="Draw a run's training curves from its metrics.csv: loss and accuracy "
        "(train, and validation where the run held some out) and the learning rate, per epoch.",
        epilog="examples: cnnlab plot runs/tut | cnnlab plot latest --out curves.svg",
    )
    p.add_argument("run", help=RUN_HELP)
    _image_outputs(p, "RUN/curves.png")
    p.add_argument("--json", action="store_true", help="print the epochs as JSON")
    p.set_defaults(handler=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    """`cnnlab plot`: the curves image and a table of the epochs."""
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.visualize import curves_figure
    from cnnlab.run.folder import METRICS_FILE, Run

    run = Run.open(args.run)
    paths = _paths(args, run.path / "curves.png")
    rows = run.epoch_metrics()
    if not rows:
        raise CheckpointError(
            f"{run.path / METRICS_FILE} has no epochs yet: train the run for at least one epoch"
        )
    test_accuracy = run.metrics.get("test_accuracy")
    figure = curves_figure(rows, f"{run.name}: {run.spec.text(with_input=False)}", test_accuracy)
    for path in paths:
        save_figure(figure, path)
    if args.json:
        clean = [{k: (None if math.isnan(v) else v) for k, v in row.items()} for row in rows]
        print_json({"run": str(run.path), "epochs": clean, "written": [str(p) for p in paths]})
        return 0
    table = _table(
        f"{run.name}: {len(rows)} epoch(s)",
        ["epoch", "train loss", "train acc", "val loss", "val acc", "lr"],
        {"epoch", "train loss", "train acc", "val loss", "val acc", "lr"},
    )
    for row in rows:
        table.add_row(
            str(int(row["epoch"])),
            f"{row['train_loss']:.4f}",
            _percent(row["train_accuracy"]),
            "" if math.isnan(row.get("val_loss", math.nan)) else f"{row['val_loss']:.4f}",
            _percent(row.get("val_accuracy", math.nan)),
            f"{row['lr']:.3g}",
        )
    out = console()
    out.print(table)
    if test_accuracy is not None:
        _say(f"test accuracy {_percent(test_accuracy)}")
    _print_written(paths, f"{len(rows)} point(s) per line")
    return 0


# --- filters --------------------------------------------------------------------------------


def _register_filters(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "filters",
        help="the learned kernels of each conv layer as image grids",
        description="Draw the learned kernels (filters) of a run's conv layers: one section per "
        "layer, a row per filter and a column per input channel (first layers of colour "
        "models: one RGB tile per filter). Blue is negative, white 0, red positive.",
        epilog="examples: cnnlab filters runs/tut | cnnlab filters runs/tut --layer conv1 "
        "--out conv1.png | cnnlab filters latest --per-channel",
    )
    p.add_argument("run", help=RUN_HELP)
    p.add_argument(
        "--layer",
        action="append",
        metavar="NAME",
        help="only these conv layers (repeat or comma-separate: conv1,conv2; default all)",
    )
    p.add_argument(
        "--per-channel",
        action="store_true",
        help="colour models: a tile per input channel instead of one RGB tile per filter",
    )
    _image_outputs(p, "RUN/filters.png")
    p.add_argument("--json", action="store_true", help="print the layers as JSON")
    p.set_defaults(handler=run_filters)


def _names(values: list[str] | None) -> list[str]:
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def _choose_layers(
    available: list[str], wanted: list[str], model_layers: list[str], kind: str = ""
) -> list[str]:
    """The wanted layer names, checked against `available` (the `kind` layers of the model)."""
    listed = f"its {kind} layers" if kind else "its layers"
    for name in wanted:
        if name in available:
            continue
        if name in model_layers:
            raise ConfigError(f"{name} is not a {kind} layer; choose among {', '.join(available)}")
        raise ConfigError(f"the model has no layer {name}; {listed}: {', '.join(available)}")
    return wanted


def run_filters(args: argparse.Namespace) -> int:
    """`cnnlab filters`: one grid per conv layer."""
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.visualize import conv_filters, filters_figure
    from cnnlab.run.folder import Run

    run = Run.open(args.run)
    paths = _paths(args, run.path / "filters.png")
    model = run.load_model()
    layers = conv_filters(model)
    if not layers:
        raise ConfigError(
            f"the model of {run.path} has no conv layer: there are no filters to draw"
        )
    wanted = _names(args.layer)
    if wanted:
        all_names = [name for name, _ in model.named_children()]
        chosen = _choose_layers([f.name for f in layers], wanted, all_names, "conv")
        layers = [f for f in layers if f.name in chosen]
    figure = filters_figure(layers, rgb=not args.per_channel, title=f"{run.name}: learned filters")
    for path in paths:
        save_figure(figure, path)
    rows = [
        {
            "layer": f.name,
            "spec": f.layer,
            "weight_shape": list(f.weight.shape),
            "tiles": f.weight.shape[0]
            if (f.can_be_rgb() and not args.per_channel)
            else f.weight.shape[0] * f.weight.shape[1],
            "min": f.weight.min().item(),
            "max": f.weight.max().item(),
            "std": f.weight.std().item(),
        }
        for f in layers
    ]
    if args.json:
        print_json({"run": str(run.path), "layers": rows, "written": [str(p) for p in paths]})
        return 0
    table = _table(
        f"{run.name}: learned filters",
        ["layer", "spec", "weights (O x I x kh x kw)", "tiles", "min", "max", "std"],
        {"tiles", "min", "max", "std"},
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
    console().print(table)
    _print_written(paths, f"{len(rows)} layer(s)")
    return 0


# --- featuremaps ----------------------------------------------------------------------------


def _register_featuremaps(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "featuremaps",
        help="the activation maps of every conv, activation and pooling layer for one image",
        description="Run one image through a run's model and draw what every conv, activation "
        "and pooling layer outputs: a grid per layer, a tile per channel, each scaled to its own "
        "range (dark = the channel's lowest value, yellow = its highest). Also prints the top "
        "predictions.",
        epilog="examples: cnnlab featuremaps runs/tut test:0 | cnnlab featuremaps runs/tut "
        "photo.png --layers conv1,relu1 | cnnlab featuremaps latest test:7 --layers all --json",
    )
    p.add_argument("run", help=RUN_HELP)
    p.add_argument(
        "image", help="an image file (PNG, JPEG, ...) or SPLIT:INDEX of the run's data, e.g. test:0"
    )
    p.add_argument(
        "--layers",
        action="append",
        metavar="NAMES",
        help="e.g. conv1,relu1; 'all' for every layer (default: conv, activation, pooling)",
    )
    p.add_argument("--top", type=int, default=3, metavar="K", help="top-K predictions (3)")
    _image_outputs(p, "RUN/featuremaps/IMAGE.png")
    p.add_argument("--json", action="store_true", help="print layers and predictions as JSON")
    p.set_defaults(handler=run_featuremaps)


def _map_row(fm: Any) -> dict[str, Any]:
    values = fm.values
    return {
        "layer": fm.name,
        "spec": fm.layer,
        "kind": fm.kind,
        "shape": list(values.shape),
        "min": values.min().item(),
        "max": values.max().item(),
        "mean": values.mean().item(),
        "zeros": (values == 0).float().mean().item(),
    }


def run_featuremaps(args: argparse.Namespace) -> int:
    """`cnnlab featuremaps`: a grid per layer for one image, and its top predictions."""
    import torch

    from cnnlab.evaluate.featuremaps import feature_maps
    from cnnlab.evaluate.samples import load_sample
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.visualize import default_map_layers, featuremaps_figure, output_layers
    from cnnlab.run.folder import Run

    run = Run.open(args.run)
    if args.top < 1:
        raise ConfigError(f"--top {args.top} must be at least 1")
    sample = load_sample(run, args.image)
    paths = _paths(args, run.path / "featuremaps" / f"{sample.stem}.png")
    model = run.load_model()
    x = sample.model_input(run)
    maps = feature_maps(model, x)
    wanted = _names(args.layers)
    if wanted == ["all"]:
        shown = maps
    elif wanted:
        names = [m.name for m in maps]
        chosen = _choose_layers(names, wanted, names)
        shown = [m for m in maps if m.name in chosen]
    else:
        shown = default_map_layers(maps)
    with torch.inference_mode():
        probabilities = torch.softmax(model(x), dim=1)[0]
    top = probabilities.topk(min(args.top, len(run.classes)))
    predictions = [
        {"class": run.classes[i], "probability": p}
        for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]
    described = sample.source + (f" (true class {sample.label})" if sample.label else "")
    title = (
        f"{run.name}: feature maps of {described}; predicted "
        f"{predictions[0]['class']} {predictions[0]['probability']:.1%}"
    )
    labels = {name: run.classes for name in output_layers(maps)}
    figure = featuremaps_figure(sample.image, shown, title, labels)
    for path in paths:
        save_figure(figure, path)
    rows = [_map_row(fm) for fm in shown]
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
    out = console()
    c, h, w = sample.image.shape
    _say(f"{sample.source}: {c}x{h}x{w}" + (f", true class {sample.label}" if sample.label else ""))
    table = _table(
        "feature maps",
        ["layer", "spec", "output", "min", "max", "mean", "zeros"],
        {"output", "min", "max", "mean", "zeros"},
    )
    for row in rows:
        table.add_row(
            row["layer"],
            row["spec"],
            "x".join(map(str, row["shape"])),
            f"{row['min']:.3f}",
            f"{row['max']:.3f}",
            f"{row['mean']:.3f}",
            f"{row['zeros']:.0%}",
        )
    out.print(table)
    table = _table(f"top {len(predictions)}", ["#", "class", "probability"], {"#", "probability"})
    for rank, prediction in enumerate(predictions, 1):
        table.add_row(str(rank), prediction["class"], f"{prediction['probability']:.2%}")
    out.print(table)
    _print_written(paths, f"{len(shown)} layer(s) and the input")
    return 0
