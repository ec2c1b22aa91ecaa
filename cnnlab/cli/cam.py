"""`cnnlab cam`: where in one image a run's model found its evidence for a class."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cnnlab.cli.common import (
    RUN_HELP,
    examples,
    image_outputs,
    load_image_argument,
    output_files,
    percent,
    print_json,
    say,
    warn_if_weights_not_finite,
)
from cnnlab.i18n import _, using_language

if TYPE_CHECKING:
    from cnnlab.evaluate.cam import CamResult
    from cnnlab.evaluate.samples import Sample

# The method names without importing torch (evaluate/cam.py's METHODS, checked by the tests).
METHOD_CHOICES = ("gradcam", "hirescam", "cam", "occlusion", "saliency")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the cam command."""
    p = subparsers.add_parser(
        "cam",
        help=_("a class activation map: where in an image the model found its evidence"),
        description=_(
            "Explain one prediction: a heatmap over the image for the predicted class "
            "(or --class). gradcam (default) and hirescam weigh a conv layer's map by the gradient "
            "of the class's logit; cam uses the fc weights of a gap + fc head; occlusion covers "
            "patches of the image; saliency is the gradient per pixel. The image is preprocessed "
            "as `cnnlab predict` does. --sanity compares with a model of random weights."
        ),
        epilog=examples(
            "cnnlab cam latest test:0",
            "cnnlab cam runs/tut photo.png --method occlusion --sanity",
            "cnnlab cam latest test:3 --layer conv2 --class circle --json",
        ),
    )
    p.add_argument("run", help=_(RUN_HELP))
    p.add_argument(
        "image",
        help=_("an image file (PNG, JPEG, ...) or SPLIT:INDEX of the run's data, e.g. test:0"),
    )
    p.add_argument(
        "--method", choices=METHOD_CHOICES, default="gradcam", help=_("(default: %(default)s)")
    )
    p.add_argument(
        "--layer",
        metavar="NAME",
        help=_(
            "the layer whose map is weighed, named as in `cnnlab featuremaps` (default: the "
            "last conv with a map of at least 4x4, after its activation)"
        ),
    )
    p.add_argument(
        "--class",
        dest="target",
        metavar="NAME",
        help=_("the class to explain (default: predicted)"),
    )
    p.add_argument(
        "--sanity",
        action="store_true",
        help=_("also the map of a copy with random weights, and the rank correlation of the two"),
    )
    p.add_argument("--invert", choices=("no", "yes", "auto"), default="no", help=_("as in predict"))
    p.add_argument("--center", action="store_true", help=_("as in predict (MNIST-style centring)"))
    image_outputs(p, "RUN/cam/IMAGE-METHOD-LAYER-CLASS.png")
    p.add_argument("--json", action="store_true", help=_("print the numbers as JSON"))
    p.set_defaults(handler=run_cam)


def run_cam(args: argparse.Namespace) -> int:
    """`cnnlab cam`: compute the map, draw it over the image, print what it was made from."""
    from cnnlab.evaluate.cam import class_activation_map
    from cnnlab.figures.cam import cam_figure
    from cnnlab.figures.canvas import save_figure
    from cnnlab.run.folder import Run

    run = Run.open(args.run)
    sample = load_image_argument(run, args.image, args.invert, args.center)
    paths = output_files(args, run.path / "cam" / f"{sample.stem}-{args.method}.png")
    model = run.load_model()
    warn_if_weights_not_finite(run)
    result = class_activation_map(
        model,
        sample.model_input(run),
        method=args.method,
        layer=args.layer,
        target=args.target,
        classes=run.classes,
        sanity=args.sanity,
    )
    if not args.out:  # named by what it shows: another layer or class never overwrites it
        paths = output_files(args, run.path / "cam" / f"{cam_file_stem(sample.stem, result)}.png")
    title = f"{run.name}: {sample.source}" + (
        f" (true class {sample.label})" if sample.label else ""
    )
    with using_language("en"):  # the figure's font has no Hangul: its titles stay English
        figure = cam_figure(sample.image.numpy(), result, title)
    for path in paths:
        save_figure(figure, path)
    if args.json:
        data = {"run": str(run.path), "image": sample.source, "true": sample.label}
        print_json({**data, **result.to_json(), "written": [str(p) for p in paths]})
        return 0
    _print_result(sample, result)
    what = _("{method} over the image").format(method=result.method)
    for path in paths:
        say(_("wrote {path} ({what})").format(path=path, what=what))
    return 0


def cam_file_stem(stem: str, result: CamResult) -> str:
    """'test-0-gradcam-conv3-cat': the image, the method, the layer (if any) and the class."""
    from cnnlab.evaluate.misclassified import safe_folder_name

    parts = [stem, result.method]
    if result.layer is not None:
        parts.append(result.layer.name)
    return "-".join([*parts, safe_folder_name(result.class_name)])


def _print_result(sample: Sample, result: CamResult) -> None:
    """What was explained, by which layer or window, the warnings and the sanity verdict."""
    c, h, w = sample.image.shape
    shape = f"{c}x{h}x{w}"
    line = _("{source}: {shape}, true class {label}") if sample.label else _("{source}: {shape}")
    say(line.format(source=sample.source, shape=shape, label=sample.label))
    predicted = result.classes[result.predicted] if result.classes else str(result.predicted)
    say(
        _(
            "{method} for class {target} ({probability}); predicted {predicted} ({confidence})"
        ).format(
            method=result.method,
            target=result.class_name,
            probability=percent(result.probability, 1),
            predicted=predicted,
            confidence=percent(result.probabilities[result.predicted], 1),
        )
    )
    if result.layer is not None:
        say(_("layer {description}").format(description=result.layer.describe()))
    elif result.window is not None:
        (ph, pw), (sh, sw) = result.window
        say(
            _("occlusion: {patch} px patches of the data's mean, stride {stride}").format(
                patch=f"{ph}x{pw}", stride=f"{sh}x{sw}"
            )
        )
    for warning in result.warnings:
        say(_("warning: {warning}").format(warning=warning))
    if result.randomized is not None:
        say(result.sanity_line())
