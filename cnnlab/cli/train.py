"""`cnnlab train` and `cnnlab runs`: train a model into a run folder, and list run folders."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from cnnlab.cli.common import console, percent, print_json, titled_table
from cnnlab.i18n import N_, _
from cnnlab.run import RUNS_DIR  # run.folder is imported by the handler that reads runs
from cnnlab.training.config import (
    AUTO_VALUES,
    DEFAULT_LRS,
    DEFAULT_WEIGHT_DECAYS,
    FIELD_TYPES,
    REFERENCE_BATCH,
    TrainConfig,
    parse_overrides,
    read_config_file,
    resolve_config,
)
from cnnlab.training.plan import SMALL_DATA, SMALL_DATA_WEIGHT_DECAY

if TYPE_CHECKING:
    from cnnlab.run.folder import Run

DEFAULTS = TrainConfig()


def _short(value: float) -> str:
    """The shorter exact form of a number: 0.1 -> '0.1', 0.001 -> '1e-3'."""
    mantissa, exponent = f"{value:.0e}".split("e")
    scientific = f"{mantissa}e{int(exponent)}"
    plain = f"{value:g}"
    return scientific if float(scientific) == value and len(scientific) < len(plain) else plain


def _lr_defaults() -> str:
    """'sgd 0.1, adam 1e-3, adamw 2e-3': each optimizer's default peak learning rate."""
    return ", ".join(f"{name} {_short(lr)}" for name, lr in DEFAULT_LRS.items())


def _decay_defaults() -> str:
    """'sgd 5e-4, 5e-3 under 5,000 training images; adam 0; adamw 0.05' (plan.weight_decay)."""
    small = ", " + _("{decay} under {count} training images").format(
        decay=_short(SMALL_DATA_WEIGHT_DECAY), count=f"{SMALL_DATA:,}"
    )
    return "; ".join(
        f"{name} {_short(decay)}{small if name == 'sgd' else ''}"
        for name, decay in DEFAULT_WEIGHT_DECAYS.items()
    )


# flag -> (config key, help); the type is the config field's, and "{default}" in the help shows
# the field's default from TrainConfig, so the help cannot drift from the config ({lr_defaults},
# {decay_defaults}, {reference_batch}: training's defaults, filled in after translation). Flags
# default to None so only what the user typed overrides the config file.
FLAGS = {
    "--model": ("model", N_("preset, TOML file or one-line spec (default: {default})")),
    "--data": ("data", N_("data set name, folder:PATH or a folder (default: {default})")),
    "--data-dir": ("data_dir", N_("where to look for data set files first")),
    "--epochs": (
        "epochs",
        N_("epochs to train (default: {default}, or the preset's recipe; raised on small data)"),
    ),
    "--budget": (
        "budget",
        N_(
            "wall-time budget for the whole run instead of --epochs: seconds (60, 90s) or a multiple "
            "of E, one epoch of the tutorial recipe on this machine (1.25E); the first steps are "
            "measured and the steps planned to end within it, then re-planned once from the run's "
            "own steps after the warm-up (config.toml records the plan)"
        ),
    ),
    "--batch-size": (
        "batch_size",
        N_("images per step over all processes (default: {default}; lowered on small data)"),
    ),
    "--lr": (
        "lr",
        N_(
            "peak learning rate, or auto (a range test picks it, as `cnnlab lr-find`); when not "
            "given, the optimizer's default times sqrt(batch/{reference_batch}) "
            "(default: {lr_defaults})"
        ),
    ),
    "--optimizer": ("optimizer", N_("sgd (Nesterov), adam or adamw (default: {default})")),
    "--schedule": (
        "schedule",
        N_("onecycle, cosine, step or constant, with warm-up (default: {default})"),
    ),
    "--warmup-steps": (
        "warmup_steps",
        N_("warm-up length in optimizer steps (default: onecycle a fifth of the run, others none)"),
    ),
    "--warmup-epochs": ("warmup_epochs", N_("warm-up length in epochs (--warmup-steps wins)")),
    "--weight-decay": (
        "weight_decay",
        N_("weight decay on conv/fc weights (default: {decay_defaults})"),
    ),
    "--label-smoothing": ("label_smoothing", N_("label smoothing (default: {default})")),
    "--augment": (
        "augment",
        N_(
            "none, standard, light (mirror only), or items: translate=2, flip, vflip, rot90, "
            "cutout=8, affine=10, scale=0.1, crop=0.8 (random resized crop, area 80-100%%), "
            "jitter=0.2 (brightness, contrast, saturation), brightness=, contrast=, saturation=, "
            "hue=0.05, altflip (mirrors alternating by epoch); e.g. standard,rot90,jitter=0.2 "
            "(default: {default}, or the preset's recipe; colour folders under 5,000 images add "
            "jitter=0.2)"
        ),
    ),
    "--flip-ok": (
        "flip_ok",
        N_(
            "declare that a mirror keeps every label (allows flip, vflip and tta on a folder; "
            "or flip_ok = true in the folder's cnnlab.toml)"
        ),
    ),
    "--balance": (
        "balance",
        N_(
            "class imbalance: none, weight (class-weighted loss) or sample (batches with every "
            "class equally likely) (default: {default})"
        ),
    ),
    "--val-split": ("val_split", N_("fraction of the training set held out for validation")),
    "--early-stop": ("early_stop", N_("stop after N epochs without better validation accuracy")),
    "--seed": ("seed", N_("random seed (default: {default})")),
    "--device": ("device", N_("auto, cpu, cuda or mps (default: {default})")),
    "--threads": ("threads", N_("CPU threads per process (default: all cores)")),
    "--nproc": (
        "nproc",
        N_("processes for distributed data-parallel training (default: {default})"),
    ),
    "--out": ("out", N_("run folder (default: runs/<model>-<data>-<time>)")),
    "--stop-after": ("stop_after", N_("pause after this epoch; continue later with --resume")),
    "--train-size": ("train_size", N_("shapes: number of generated training images")),
    "--test-size": ("test_size", N_("shapes: number of generated test images")),
    "--image-size": (
        "image_size",
        N_(
            "folders: resize images to N (a square) or HxW pixels (default: 28 for grayscale; "
            "colour: 32, from 1000 training images on their median side within 32 to 48)"
        ),
    ),
    "--keep-aspect": (
        "keep_aspect",
        N_(
            "folders: images of another shape than --image-size are stretched, padded with black "
            "bars (pad) or centre-cropped (crop); predict repeats it (default: {default})"
        ),
    ),
    "--channels": ("channels", N_("folders: 1 (grayscale) or 3 (RGB)")),
    "--skip-bad": ("skip_bad", N_("folders: leave out files that are not usable images (listed)")),
    "--force-nproc": ("force_nproc", N_("allow --nproc above this machine's core count")),
    "--weights": (
        "weights",
        N_(
            "the weights training starts from: none, imagenet (EfficientNet-Lite0's, the lite0 "
            "preset's), a .safetensors file, or a run folder; the last fc starts fresh "
            "(default: {default}, or the preset's)"
        ),
    ),
    "--freeze": (
        "freeze",
        N_(
            "keep the first N layers with weights as --weights started them (counted from the input "
            "as `cnnlab summary MODEL` lists them: rows with params above 0, a res block as one): "
            "no gradient, no weight decay, their batchnorms' running statistics unchanged; at most "
            "the number of such layers minus one (default: {default}, nothing frozen; lite0's "
            "recipe 13 when it starts from --weights)"
        ),
    ),
    "--head-epochs": (
        "head_epochs",
        N_(
            "epochs of the last fc alone, on the features the layers before it compute once, "
            "before the whole network trains (default: {default}, or the preset's recipe: lite0 "
            "10 when it starts from --weights)"
        ),
    ),
}


def _number_or_auto(kind: type) -> Callable[[str], float | int | str]:
    """--lr, --weight-decay, --warmup-*: a number, or auto, kept as the word: the config's
    conversion turns it into its stand-in and refuses a typed stand-in (-1, lr 0)."""

    def value(text: str) -> float | int | str:
        if text.strip().lower() == "auto":
            return "auto"
        try:
            return kind(text)
        except ValueError:
            message = _("{value} is not a number or auto").format(value=repr(text))
            raise argparse.ArgumentTypeError(message) from None

    return value


def add_training_options(p: argparse.ArgumentParser, leave_out: tuple[str, ...] = ()) -> None:
    """The training flags (all of FLAGS but `leave_out`), --config and key=value overrides."""
    kept = {flag: entry for flag, entry in FLAGS.items() if flag not in leave_out}
    p.set_defaults(training_keys=[key for key, _ in kept.values()])
    fields = {
        "reference_batch": REFERENCE_BATCH,
        "lr_defaults": _lr_defaults(),
        "decay_defaults": _decay_defaults(),
    }
    for flag, (key, text) in kept.items():
        shown = _(text).format(default=getattr(DEFAULTS, key), **fields)
        if FIELD_TYPES[key] is bool:  # a switch: given means true
            p.add_argument(flag, dest=key, action="store_true", default=None, help=shown)
        else:
            kind = _number_or_auto(FIELD_TYPES[key]) if key in AUTO_VALUES else FIELD_TYPES[key]
            p.add_argument(flag, dest=key, type=kind, default=None, help=shown)
    p.add_argument("--config", metavar="FILE.toml", help=_("a TOML file of settings"))
    p.add_argument("--quiet", action="store_true", default=None, help=_("print only the result"))
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help=_("any setting, e.g. lr=0.05 epochs=3")
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` and `runs`."""
    p = subparsers.add_parser(
        "train",
        help=_("train a model into a run folder"),
        description=_(
            "Train a model. With no arguments: the default model on the built-in shapes data set. "
            "Settings come from the defaults, then the chosen preset's recipe for the data set, then "
            "--config FILE.toml, then flags, then key=value overrides. The recipe adapts to the data "
            "(batch, epochs, learning rate; the first lines say what was chosen and why) and "
            "config.toml records the values used."
        ),
    )
    add_training_options(p)
    p.add_argument("--resume", metavar="RUN", help=_("continue a run folder where it stopped"))
    p.add_argument(
        "--init",
        metavar="RUN",
        help=_("fine-tune from a run's weights (the same as --weights RUN)"),
    )
    p.set_defaults(handler=run_train)

    p = subparsers.add_parser(
        "runs", help=_("list run folders with their key figures"), description=_("List runs.")
    )
    p.add_argument(
        "root",
        nargs="?",
        default=str(RUNS_DIR),
        help=_("folder holding runs (default: %(default)s)"),
    )
    p.add_argument("--json", action="store_true", help=_("print JSON"))
    p.set_defaults(handler=run_runs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the model preset's recipe, then --config, then flags, then key=value."""
    file_values = read_config_file(args.config) if args.config else {}
    flags = {
        key: getattr(args, key) for key in args.training_keys if getattr(args, key) is not None
    }
    if args.quiet:
        flags["quiet"] = True
    if getattr(args, "init", None):  # `train --init RUN`
        flags["weights"] = args.init
    return resolve_config(file_values, flags, parse_overrides(args.overrides))


def run_train(args: argparse.Namespace) -> int:
    """`cnnlab train`: train (or resume) a run; 130 when Ctrl-C stopped it."""
    from cnnlab.training.budget import BudgetClock
    from cnnlab.training.loop import train

    # --budget: the whole process, start-up and data loading included
    run = train(config_from_args(args), resume=args.resume, clock=BudgetClock.whole_process())
    if run is not None and run.metrics.get("stopped") == "interrupted":
        return 130  # as a shell reports a command stopped by Ctrl-C
    return 0


def _run_row(run: Run) -> dict:
    """One run's key figures, as `cnnlab runs --json` prints them."""
    m = run.metrics
    return {
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


# How a run ended, as metrics.json records it (and `runs --json` prints it); the table says it in
# the command's language.
STOPPED = {
    "completed": N_("completed"),
    "early-stop": N_("early-stop"),
    "paused": N_("paused"),
    "interrupted": N_("interrupted"),
}


def run_runs(args: argparse.Namespace) -> int:
    """`cnnlab runs`: a table (or JSON) of the run folders under ROOT."""
    from cnnlab.run.folder import list_runs

    rows = [_run_row(run) for run in list_runs(args.root)]
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(_("no runs under {root}/ yet: train one with `cnnlab train`").format(root=args.root))
        return 0
    numbers = [_("epochs"), _("test acc"), _("train s")]
    table = titled_table(
        _("runs in {root}").format(root=args.root),
        [_("run"), _("data"), *numbers, _("stopped"), _("saved"), _("model")],
        set(numbers),
    )
    for r in rows:
        table.add_row(
            r["run"],
            r["data"],
            str(r["epochs"]),
            percent(r["test_accuracy"]),
            f"{r['train_seconds']:.1f}" if r["train_seconds"] is not None else "",
            _(STOPPED[r["stopped"]]) if r["stopped"] in STOPPED else r["stopped"],
            r["saved"],
            r["model"],
        )
    console().print(table)
    return 0
