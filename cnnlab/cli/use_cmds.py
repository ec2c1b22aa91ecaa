"""`cnnlab predict`, `cnnlab export`, `cnnlab serve`: put a trained run to work.

Parse, call `predict.py`, `export.py` or `server/app.py`, print. Nothing is computed here.
"""

from __future__ import annotations

import argparse
import sys

from cnnlab.cli.common import print_json
from cnnlab.errors import ConfigError

RUN_HELP = "a run folder, a name under runs/, or 'latest'"
ENGINE_HELP = (
    "eager (torch), onnx or pt2 (the export beside the run, see `cnnlab export`), or auto: "
    "the fastest of eager and the valid exports present, measured at start (default: auto)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the predict, export and serve commands."""
    from cnnlab.deploy.predict import ENGINE_CHOICES, INVERT_CHOICES

    p = subparsers.add_parser(
        "predict",
        help="classify image files or folders with a trained run",
        description="Classify images: any common format, size and mode, preprocessed exactly as "
        "in training. Folders are searched recursively for image files. A bad file is reported "
        "and the others go on; the exit status is 1 if any failed.",
        epilog="examples: cnnlab predict latest photo.png | "
        "cnnlab predict runs/demo digits/ --top-k 3 --json | "
        "cnnlab predict latest seven.jpg --invert auto --center",
    )
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("files", nargs="+", metavar="FILE|FOLDER", help="images or folders of images")
    p.add_argument("--top-k", type=int, default=3, metavar="K", help="classes shown (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--invert",
        choices=INVERT_CHOICES,
        default="no",
        help="make dark-on-light images light-on-dark; auto: when the border is light and the "
        "model was trained on dark backgrounds (default: no)",
    )
    p.add_argument(
        "--center",
        action="store_true",
        help="MNIST-style: crop to the ink, fit into 20x20 keeping the aspect, centre by centre of "
        "mass in 28x28 (grayscale models; for photos of digits)",
    )
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto", help=ENGINE_HELP)
    p.add_argument("--export", metavar="FILE", help="an export file other than RUN/model.onnx|pt2")
    p.set_defaults(handler=run_predict)

    p = subparsers.add_parser(
        "export",
        help="export a run's model to ONNX or a torch.export program, parity-checked",
        description="Export a run's model with BatchNorm folded in. Input: float32 (N, C, H, W) "
        "normalised as in training; output: logits (no softmax). The export is run on the run's "
        "own test images and must match the model (max |logit difference| < 1e-4, same classes), "
        "else nothing is written. Writes RUN/model.onnx (or .pt2) and a .json beside it.",
        epilog="examples: cnnlab export latest | cnnlab export runs/demo --format pt2 | "
        "cnnlab export latest --out deploy/digits.onnx",
    )
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("--format", choices=("onnx", "pt2"), default="onnx", help="default: onnx")
    p.add_argument("--out", metavar="PATH", help="file or folder (default: next to the run)")
    p.add_argument(
        "--parity-images",
        type=int,
        default=1000,
        metavar="N",
        help="test images to check parity on (default 1000; at least 256 are used)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_export)

    p = subparsers.add_parser(
        "serve",
        help="serve a run: a page to draw on and see every layer, and a JSON API",
        description="Serve a run over HTTP: GET / is a page where you draw or drop an image and "
        "see the prediction and every layer's feature maps; /docs lists the JSON API.",
        epilog="examples: cnnlab serve latest | cnnlab serve runs/demo --port 8080 --engine onnx",
    )
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto", help=ENGINE_HELP)
    p.add_argument("--export", metavar="FILE", help="an export file other than RUN/model.onnx|pt2")
    p.add_argument(
        "--max-body-mb", type=float, default=16.0, help="largest request body (default 16 MB)"
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=64,
        help="requests handled at once; more get 503 (default 64)",
    )
    p.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per request; then 504 (default 10)"
    )
    p.set_defaults(handler=run_serve)


def _check_top_k(k: int) -> None:
    if k < 1:
        raise ConfigError(f"--top-k must be at least 1, not {k}")


def run_predict(args: argparse.Namespace) -> int:
    """Classify files; print a line (or JSON) per file; exit 1 if any file failed."""
    from cnnlab.deploy.predict import Predictor, Preprocess, expand_paths, predict_files
    from cnnlab.run.folder import Run

    _check_top_k(args.top_k)
    options = Preprocess(invert=args.invert, center=args.center)
    run = Run.open(args.run)
    if args.center and run.input_shape[0] != 1:
        raise ConfigError(
            f"--center is for grayscale models; {run.path} takes "
            f"{'x'.join(map(str, run.input_shape))} images"
        )
    files, problems = expand_paths(args.files)
    predictor = Predictor(run, args.engine, args.export)
    if not args.json:
        print(predictor.choice.line(), file=sys.stderr)
    results = list(problems)
    for result in predict_files(predictor, files, args.top_k, options):
        results.append(result)
        if args.json:
            continue
        if result.ok:
            best, *others = result.top_k
            rest = ", ".join(f"{o['class']} {o['probability']:.1%}" for o in others)
            print(
                f"{result.path}: {best['class']} {best['probability']:.1%}"
                + (f"  ({rest})" if rest else "")
            )
    failed = [r for r in results if not r.ok]
    for result in failed:
        print(f"error: {result.error}", file=sys.stderr)
    accuracy = _folder_accuracy(results, run.classes)
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
        predicted = len(results) - len(failed)
        summary = f"{predicted} of {len(results)} images predicted"
        if failed:
            summary += f", {len(failed)} failed"
        if accuracy is not None:
            summary += f"; accuracy by folder name {accuracy['accuracy']:.2%} ({accuracy['correct']}/{accuracy['images']})"
        print(summary, file=sys.stderr)
    return 1 if failed else 0


def _folder_accuracy(results, classes: list[str]) -> dict | None:
    """When every predicted file lies in a folder named after a class: the share predicted right."""
    from pathlib import Path

    done = [r for r in results if r.ok]
    if not done or any(Path(r.path).parent.name not in classes for r in done):
        return None
    correct = sum(Path(r.path).parent.name == r.top_k[0]["class"] for r in done)
    return {"images": len(done), "correct": correct, "accuracy": correct / len(done)}


def run_export(args: argparse.Namespace) -> int:
    """Export, check parity, write; print what was written and the parity figures."""
    from cnnlab.deploy.export import export_run
    from cnnlab.run.folder import Run

    run = Run.open(args.run)
    result = export_run(run, args.format, args.out, parity_limit=args.parity_images)
    if args.json:
        from dataclasses import asdict

        print_json(
            {
                "path": str(result.path),
                "sidecar": str(result.sidecar),
                "format": result.format,
                "bytes": result.size_bytes,
                "folded": [f"{bn} into {layer}" for layer, bn in result.folded],
                "parity": {**asdict(result.parity), "ok": result.parity.ok},
                "seconds": round(result.seconds, 3),
                "output": "logits",
            }
        )
        return 0
    folded = ", ".join(f"{bn} into {layer}" for layer, bn in result.folded) or "none"
    print(f"folded BatchNorm: {folded}")
    print(result.parity.line())
    print(
        f"wrote {result.path} ({result.size_bytes / 1024:,.0f} KiB, {result.format}) and "
        f"{result.sidecar.name}: input float32 (N, {', '.join(map(str, run.input_shape))}) "
        f"normalised with mean {list(run.mean)} std {list(run.std)}; output logits "
        f"(softmax for probabilities), in {result.seconds:.1f}s"
    )
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Start the HTTP server and block until Ctrl-C."""
    from cnnlab.run.folder import Run
    from cnnlab.server.app import Limits, serve

    if args.max_body_mb <= 0 or args.max_in_flight < 1 or args.timeout <= 0:
        raise ConfigError(
            "--max-body-mb and --timeout must be positive, --max-in-flight at least 1"
        )
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, not {args.port}")
    limits = Limits(
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_in_flight=args.max_in_flight,
        timeout_s=args.timeout,
    )
    serve(Run.open(args.run), args.host, args.port, args.engine, args.export, limits)
    return 0
