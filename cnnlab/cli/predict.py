"""`cnnlab predict`: classify image files or folders with a trained run."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from rich.console import Console

from cnnlab.cli.common import (
    ENGINE_HELP,
    RUN_HELP,
    examples,
    percent,
    print_json,
    printable,
    titled_table,
    warn_if_weights_not_finite,
)
from cnnlab.errors import ConfigError
from cnnlab.i18n import _

if TYPE_CHECKING:
    from cnnlab.deploy.predict import FileResult
    from cnnlab.run.folder import Run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the predict command."""
    from cnnlab.deploy import ENGINE_CHOICES, INVERT_CHOICES  # deploy.predict loads torch

    p = subparsers.add_parser(
        "predict",
        help=_("classify image files or folders with a trained run"),
        description=_(
            "Classify images: any common format, size and mode, preprocessed exactly as "
            "in training. Folders are searched recursively for image files. A bad file is reported "
            "and the others go on; the exit status is 1 if any failed."
        ),
        epilog=examples(
            "cnnlab predict latest photo.png",
            "cnnlab predict runs/demo digits/ --top-k 3 --json",
            "cnnlab predict latest seven.jpg --invert auto --center",
        ),
    )
    p.add_argument("run", metavar="RUN", help=_(RUN_HELP))
    p.add_argument("files", nargs="+", metavar="FILE|FOLDER", help=_("images or folders of images"))
    p.add_argument(
        "--top-k", type=int, default=3, metavar="K", help=_("classes shown (default %(default)s)")
    )
    p.add_argument("--json", action="store_true", help=_("print JSON"))
    p.add_argument(
        "--invert",
        choices=INVERT_CHOICES,
        default="no",
        help=_(
            "make dark-on-light images light-on-dark; auto: when the border is light and the "
            "model was trained on dark backgrounds (default: %(default)s)"
        ),
    )
    p.add_argument(
        "--center",
        action="store_true",
        help=_(
            "MNIST-style: crop to the ink, fit into 20x20 keeping the aspect, centre by centre of "
            "mass in 28x28 (grayscale models; for photos of digits)"
        ),
    )
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto", help=_(ENGINE_HELP))
    p.add_argument(
        "--export", metavar="FILE", help=_("an export file other than RUN/model.onnx|pt2")
    )
    p.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Classify files; print a line (or JSON) per file; exit 1 if any file failed."""
    from cnnlab.deploy.predict import (
        Predictor,
        Preprocess,
        expand_paths,
        folder_accuracy,
        predict_files,
    )

    options = Preprocess(invert=args.invert, center=args.center)
    run = _checked_run(args)
    files, problems = expand_paths(args.files)
    predictor = Predictor(run, args.engine, args.export)
    warn_if_weights_not_finite(run)
    if not args.json:
        print(printable(predictor.choice.line()), file=sys.stderr)
    results = list(problems)
    for result in predict_files(predictor, files, args.top_k, options):
        results.append(result)
        if result.ok and not args.json:
            print(printable(_result_line(result)))  # as each file is done
    failed = [r for r in results if not r.ok]
    for result in failed:
        print(_("error: {message}").format(message=printable(result.error)), file=sys.stderr)
    accuracy = folder_accuracy(results, run.classes)
    if args.json:
        print_json(
            {
                "run": str(run.path),
                "engine": predictor.choice.name,
                "files": len(results),
                "failed": len(failed),
                "folder_accuracy": accuracy,
                "results": [r.to_json() for r in results],
            }
        )
    else:
        if accuracy is not None:
            _print_folder_scores(accuracy, run.classes)
        print(printable(_summary_line(len(results), len(failed), accuracy)), file=sys.stderr)
    return 1 if failed else 0


def _print_folder_scores(accuracy: dict, classes: list[str]) -> None:
    """Per-class accuracy by folder name, then the confusion (rows: folder, columns: predicted), on stderr."""
    numbers = [_("correct"), _("images"), _("accuracy")]
    per_class = titled_table(_("accuracy by folder name"), [_("class"), *numbers], set(numbers))
    for row in accuracy["per_class"]:
        per_class.add_row(
            row["class"], str(row["correct"]), str(row["images"]), percent(row["accuracy"])
        )
    shown = [row["class"] for row in accuracy["per_class"]]
    confusion = titled_table(_("confusion"), [_("folder \\ predicted"), *classes], set(classes))
    for name in shown:
        confusion.add_row(name, *map(str, accuracy["confusion"][classes.index(name)]))
    # stderr, beside the summary line: stdout stays one line per file, for pipes
    err = Console(
        file=sys.stderr, width=None if sys.stderr.isatty() else 200, no_color=True, highlight=False
    )
    err.print(per_class)
    err.print(confusion)


def _checked_run(args: argparse.Namespace) -> Run:
    """The run, once --top-k and --center are known to suit it."""
    from cnnlab.run.folder import Run

    if args.top_k < 1:
        raise ConfigError(_("--top-k must be at least 1, not {value}").format(value=args.top_k))
    run = Run.open(args.run)
    if args.center and run.input_shape[0] != 1:
        raise ConfigError(
            _("--center is for grayscale models; {path} takes {shape} images").format(
                path=run.path, shape="x".join(map(str, run.input_shape))
            )
        )
    return run


def _result_line(result: FileResult) -> str:
    """'digits/7.png: 7 98.1%  (1 1.2%, 2 0.3%)': the best class, then the others asked for."""
    best, *others = result.top_k
    rest = ", ".join(f"{o['class']} {percent(o['probability'], 1)}" for o in others)
    return f"{result.path}: {best['class']} {percent(best['probability'], 1)}" + (
        f"  ({rest})" if rest else ""
    )


def _summary_line(files: int, failed: int, accuracy: dict | None) -> str:
    """'9 of 10 images predicted, 1 failed; accuracy by folder name 88.89% (8/9)'."""
    summary = _("{done} of {files} images predicted").format(done=files - failed, files=files)
    if failed:
        summary += _(", {failed} failed").format(failed=failed)
    if accuracy is not None:
        summary += _("; accuracy by folder name {accuracy} ({correct}/{images})").format(
            accuracy=percent(accuracy["accuracy"]),
            correct=accuracy["correct"],
            images=accuracy["images"],
        )
    return summary
