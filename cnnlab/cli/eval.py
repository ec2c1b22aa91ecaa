"""`cnnlab eval`: accuracy, confusion, per-class scores and top losses of a trained run."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from cnnlab.cli.common import (
    RUN_HELP,
    cannot_write,
    console,
    examples,
    make_folder,
    percent,
    print_json,
    say,
    titled_table,
    warn_if_weights_not_finite,
)
from cnnlab.errors import ConfigError
from cnnlab.evaluate import MAX_TOP_LOSSES, SPLITS  # not evaluate.scores: it loads torch (start-up)
from cnnlab.i18n import _, shown, split_name

if TYPE_CHECKING:
    import torch

    from cnnlab.evaluate.scores import Evaluation


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the eval command."""
    p = subparsers.add_parser(
        "eval",
        help=_(
            "score a trained run: accuracy, per-class precision/recall/F1, confusion, top losses"
        ),
        description=_(
            "Score a run's model on a split of its data (or another data set with the "
            "same classes and image shape): accuracy, per-class precision, recall and F1, the most "
            "confused pairs; write the confusion matrix (image and JSON) and a gallery of the "
            "images with the highest loss."
        ),
        epilog=examples(
            "cnnlab eval runs/tut",
            "cnnlab eval latest --split val --json",
            "cnnlab eval runs/tut --out report --format svg --top 32",
            "cnnlab eval runs/mine --misclassified wrong/",
        ),
    )
    p.add_argument("run", help=_(RUN_HELP))
    p.add_argument("--data", help=_("another data set with the run's classes (default: the run's)"))
    p.add_argument(
        "--split", choices=SPLITS, default="test", help=_("which split (default %(default)s)")
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help=_("folder for confusion.png, evaluation.json, top_losses.png (default RUN/eval/)"),
    )
    p.add_argument(
        "--format", choices=("png", "svg"), default="png", help=_("image format (%(default)s)")
    )
    p.add_argument(
        "--top",
        type=int,
        default=16,
        metavar="N",
        help=_("images in the top-loss gallery (%(default)s; 0: none; at most {most})").format(
            most=MAX_TOP_LOSSES
        ),
    )
    p.add_argument(
        "--misclassified",
        metavar="DIR",
        help=_(
            "write the wrongly classified images into DIR/<true>__as__<predicted>/ (links to "
            "the original files for image folders, PNGs named by index otherwise); DIR must be new "
            "or empty"
        ),
    )
    p.add_argument("--json", action="store_true", help=_("print the evaluation as JSON"))
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
    from cnnlab.run.folder import Run

    if not 0 <= args.top <= MAX_TOP_LOSSES:
        raise ConfigError(
            _("--top {top} is out of range: give 0 (no gallery) to {most} images").format(
                top=args.top, most=MAX_TOP_LOSSES
            )
        )
    run = Run.open(args.run)
    folder = Path(args.out) if args.out else eval_folder(run.path, args.data, args.split)
    make_folder(folder)  # an unwritable --out fails now, not after the evaluation
    if args.misclassified:
        from cnnlab.evaluate.misclassified import require_new_folder

        require_new_folder(Path(args.misclassified))
    evaluation, images = evaluate_run(run, args.data, args.split)
    warn_if_weights_not_finite(run)
    if evaluation.size == 0:
        raise ConfigError(
            _("the {split} split of {data} is empty: nothing to score").format(
                split=args.split, data=evaluation.data
            )
        )
    result = evaluation.to_json(top=args.top)
    # the figures' titles stay English (their font has no Hangul); the terminal lines are translated
    heading = f"{run.name} on {evaluation.data} {args.split}"
    correct = int(evaluation.confusion.diag().sum())
    accuracy_line = f"accuracy {percent(evaluation.accuracy)} ({correct}/{evaluation.size})"
    written = _write_reports(
        folder, args.format, evaluation, images, result, heading, accuracy_line
    )
    pairs = _write_misclassified(args.misclassified, result, images, written)
    if args.json:
        print_json(
            {**result, "run": str(run.path), "written": {k: str(v) for k, v in written.items()}}
        )
        return 0
    _print_evaluation(_heading(run.name, evaluation.data, args.split), evaluation, result)
    _print_written(written, result, len(evaluation.classes), pairs)
    return 0


def _heading(run: str, data: str, split: str) -> str:
    """'tut on shapes test': the run, the data and the split scored."""
    return _("{run} on {data} {split}").format(run=run, data=data, split=shown(split_name(split)))


def _print_written(
    written: dict[str, Path], result: dict, classes: int, pairs: dict[str, int] | None
) -> None:
    """A 'wrote FILE (what)' line per file, and the misclassified folders' count."""
    say(_("wrote {path} ({what})").format(path=written["confusion"], what=f"{classes}x{classes}"))
    say(_("wrote {path}").format(path=written["json"]))
    if "top_losses" in written:
        what = _("{count} images").format(count=len(result["top_losses"]))
        say(_("wrote {path} ({what})").format(path=written["top_losses"], what=what))
    if pairs is not None:
        say(
            _(
                "wrote {count} misclassified images to {folder}/<true>__as__<predicted>/ "
                "({folders} folders)"
            ).format(count=sum(pairs.values()), folder=written["misclassified"], folders=len(pairs))
        )


def _write_misclassified(
    out: str | None, result: dict, images: torch.Tensor, written: dict[str, Path]
) -> dict[str, int] | None:
    """The wrong images into out/<true>__as__<predicted>/ when --misclassified asks; counts per folder."""
    if out is None:
        return None
    from cnnlab.evaluate.misclassified import write_misclassified

    written["misclassified"] = Path(out)
    return write_misclassified(Path(out), result["misclassified"], images)


def _write_reports(
    folder: Path,
    image_format: str,
    evaluation: Evaluation,
    images: torch.Tensor,
    result: dict,
    heading: str,
    accuracy_line: str,
) -> dict[str, Path]:
    """evaluation.json, the confusion image and (when asked) the top-loss gallery in `folder`."""
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.confusion import confusion_figure, gallery_figure
    from cnnlab.fileio import atomic_write_json

    written = {"json": folder / "evaluation.json"}
    try:
        atomic_write_json(written["json"], result)
    except OSError as error:
        raise cannot_write(written["json"], error) from None
    written["confusion"] = save_figure(
        confusion_figure(evaluation.confusion, evaluation.classes, f"{heading}: {accuracy_line}"),
        folder / f"confusion.{image_format}",
    )
    if result["top_losses"]:
        title = f"{heading}: the {len(result['top_losses'])} images with the highest loss"
        written["top_losses"] = save_figure(
            gallery_figure(images, result["top_losses"], title),
            folder / f"top_losses.{image_format}",
        )
    return written


def _print_evaluation(heading: str, evaluation: Evaluation, result: dict) -> None:
    """The heading, accuracy and loss, then the per-class, most-confused and top-loss tables."""
    out = console()
    say(_("{heading}: {count} images").format(heading=heading, count=evaluation.size))
    correct = int(evaluation.confusion.diag().sum())
    say(
        _("accuracy {accuracy} ({correct}/{count}), loss {loss}").format(
            accuracy=percent(evaluation.accuracy),
            correct=correct,
            count=evaluation.size,
            loss=f"{evaluation.loss:.4f}",
        )
    )
    baseline = result["majority_baseline"]
    say(
        _(
            "balanced accuracy {balanced} (mean per-class recall); "
            "always answering {majority}: {accuracy}"
        ).format(
            balanced=percent(result["balanced_accuracy"]),
            majority=baseline["class"],
            accuracy=percent(baseline["accuracy"]),
        )
    )
    out.print(_class_table(result["per_class"]))
    if result["most_confused"]:
        out.print(_confused_table(result["most_confused"], result["per_class"]))
    else:
        say(_("no confusions: every image was classified correctly"))
    if result["top_losses"]:
        out.print(_losses_table(result["top_losses"][:5]))


def _class_table(per_class: list[dict]) -> Table:
    """Precision, recall, F1 and support of each class."""
    numbers = [_("precision"), _("recall"), "F1", _("support")]
    table = titled_table(_("per class"), [_("class"), *numbers], set(numbers))
    for row in per_class:
        table.add_row(
            row["class"],
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    return table


def _confused_table(pairs: list[dict], per_class: list[dict]) -> Table:
    """The most confused pairs, each count also as a share of its true class."""
    supports = {row["class"]: row["support"] for row in per_class}
    numbers = [_("count"), _("of the true class")]
    table = titled_table(
        _("most confused (true class taken for another)"),
        [_("true"), _("predicted"), *numbers],
        set(numbers),
    )
    for pair in pairs:
        share = percent(pair["count"] / supports[pair["true"]])
        table.add_row(pair["true"], pair["predicted"], str(pair["count"]), share)
    return table


def _losses_table(items: list[dict]) -> Table:
    """The images with the highest loss: index (or file), classes, probabilities, loss."""
    first = _("file") if items and "file" in items[0] else _("index")
    numbers = [_("p(predicted)"), _("p(true)"), _("loss")]
    right = set(numbers) if first == _("file") else {first, *numbers}
    table = titled_table(_("highest losses"), [first, _("true"), _("predicted"), *numbers], right)
    for item in items:
        table.add_row(
            item.get("file", str(item["index"])),
            item["true"],
            item["predicted"],
            f"{item['probability']:.3f}",
            f"{item['true_probability']:.3f}",
            f"{item['loss']:.3f}",
        )
    return table
