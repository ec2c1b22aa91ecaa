"""`cnnlab train` and `cnnlab runs`: train a model into a run folder, and list run folders."""

from __future__ import annotations

import argparse

from rich.table import Table

from cnnlab.cli.common import console, percent, print_json
from cnnlab.run.folder import RUNS_DIR, list_runs
from cnnlab.training.config import TrainConfig, from_layers, parse_overrides, read_config_file

# flag -> config key; flags default to None so only what the user typed overrides the config file.
FLAGS = {
    "--model": ("model", str, "preset, TOML file or one-line spec (default: default)"),
    "--data": ("data", str, "data set name, folder:PATH or a folder (default: shapes)"),
    "--data-dir": ("data_dir", str, "where to look for data set files first"),
    "--epochs": ("epochs", int, "epochs to train (default: 8, or the preset's recipe)"),
    "--batch-size": ("batch_size", int, "images per step over all processes (default: 128)"),
    "--lr": ("lr", float, "peak learning rate (default: sgd 0.1, adam 1e-3, adamw 2e-3)"),
    "--optimizer": ("optimizer", str, "sgd (Nesterov), adam or adamw (default: sgd)"),
    "--schedule": (
        "schedule",
        str,
        "onecycle, cosine, step or constant, with warm-up (default: onecycle)",
    ),
    "--warmup-epochs": ("warmup_epochs", float, "warm-up length in epochs"),
    "--weight-decay": ("weight_decay", float, "weight decay on conv/fc weights"),
    "--label-smoothing": ("label_smoothing", float, "label smoothing (default: 0.1)"),
    "--augment": (
        "augment",
        str,
        "none, standard, light (mirror only), or e.g. translate=2,cutout=8 (default: standard)",
    ),
    "--val-split": ("val_split", float, "fraction of the training set held out for validation"),
    "--early-stop": ("early_stop", int, "stop after N epochs without better validation accuracy"),
    "--seed": ("seed", int, "random seed (default: 0)"),
    "--device": ("device", str, "auto, cpu, cuda or mps (default: auto)"),
    "--threads": ("threads", int, "CPU threads per process (default: all cores)"),
    "--nproc": ("nproc", int, "processes for distributed data-parallel training (default: 1)"),
    "--out": ("out", str, "run folder (default: runs/<model>-<data>-<time>)"),
    "--stop-after": ("stop_after", int, "pause after this epoch; continue later with --resume"),
    "--train-size": ("train_size", int, "shapes: number of generated training images"),
    "--test-size": ("test_size", int, "shapes: number of generated test images"),
    "--image-size": ("image_size", int, "folders: resize images to this square size"),
    "--channels": ("channels", int, "folders: 1 (grayscale) or 3 (RGB)"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model into a run folder",
        description="Train a model. With no arguments: the default model on the built-in shapes data set. "
        "Settings come from the defaults, then the chosen preset's recipe for the data set, then "
        "--config FILE.toml, then flags, then key=value overrides.",
    )
    for flag, (key, kind, text) in FLAGS.items():
        p.add_argument(flag, dest=key, type=kind, default=None, help=text)
    p.add_argument("--config", metavar="FILE.toml", help="a TOML file of settings")
    p.add_argument("--resume", metavar="RUN", help="continue a run folder where it stopped")
    p.add_argument("--quiet", action="store_true", default=None, help="print only the result")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="any setting, e.g. lr=0.05 epochs=3"
    )
    p.set_defaults(handler=run_train)

    p = subparsers.add_parser(
        "runs", help="list run folders with their key figures", description="List runs."
    )
    p.add_argument(
        "root", nargs="?", default=str(RUNS_DIR), help="folder holding runs (default: runs)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_runs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the model preset's recipe, then --config, then flags, then key=value."""
    file_values = read_config_file(args.config) if args.config else {}
    flags = {
        key: getattr(args, key) for key, _, _ in FLAGS.values() if getattr(args, key) is not None
    }
    if args.quiet:
        flags["quiet"] = True
    return from_layers(file_values, flags, parse_overrides(args.overrides))


def run_train(args: argparse.Namespace) -> int:
    from cnnlab.training.loop import train

    run = train(config_from_args(args), resume=args.resume)
    if run is not None and run.metrics.get("stopped") == "interrupted":
        return 130  # as a shell reports a command stopped by Ctrl-C
    return 0


def run_runs(args: argparse.Namespace) -> int:
    rows = []
    for run in list_runs(args.root):
        m = run.metrics
        rows.append(
            {
                "run": run.name,
                "path": str(run.path),
                "model": run.spec.text(with_input=False),
                "data": run.meta.get("data", ""),
                "epochs": m.get("epochs"),
                "test_accuracy": m.get("test_accuracy"),
                "train_seconds": m.get("train_seconds"),
                "stopped": m.get("stopped", ""),
                "saved": run.meta.get("saved", ""),
            }
        )
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(f"no runs under {args.root}/ yet: train one with `cnnlab train`")
        return 0
    table = Table(title=f"runs in {args.root}", title_justify="left")
    for column in ("run", "data", "epochs", "test acc", "train s", "stopped", "saved", "model"):
        table.add_column(
            column, justify="right" if column in ("epochs", "test acc", "train s") else "left"
        )
    for r in rows:
        table.add_row(
            r["run"],
            r["data"],
            str(r["epochs"]),
            percent(r["test_accuracy"]),
            f"{r['train_seconds']:.1f}" if r["train_seconds"] is not None else "",
            r["stopped"],
            r["saved"],
            r["model"],
        )
    console().print(table)
    return 0
