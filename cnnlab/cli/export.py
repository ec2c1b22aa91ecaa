"""`cnnlab export`: a run's model to ONNX or a torch.export program, parity-checked."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from cnnlab.cli.common import RUN_HELP, examples, print_json, printable
from cnnlab.i18n import _


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the export command."""
    p = subparsers.add_parser(
        "export",
        help=_("export a run's model to ONNX or a torch.export program, parity-checked"),
        description=_(
            "Export a run's model with BatchNorm folded in. Input: float32 (N, C, H, W) "
            "normalised as in training; output: logits (no softmax). The export is run on the run's "
            "own test images and must match the model (max |logit difference| < 1e-4, same classes), "
            "else nothing is written. Writes RUN/model.onnx (or .pt2) and a .json beside it."
        ),
        epilog=examples(
            "cnnlab export latest",
            "cnnlab export runs/demo --format pt2",
            "cnnlab export latest --out deploy/digits.onnx",
        ),
    )
    p.add_argument("run", metavar="RUN", help=_(RUN_HELP))
    p.add_argument(
        "--format", choices=("onnx", "pt2"), default="onnx", help=_("default: %(default)s")
    )
    p.add_argument("--out", metavar="PATH", help=_("file or folder (default: next to the run)"))
    p.add_argument(
        "--parity-images",
        type=int,
        default=1000,
        metavar="N",
        help=_("test images to check parity on (default %(default)s; at least 256 are used)"),
    )
    p.add_argument("--json", action="store_true", help=_("print JSON"))
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export, check parity, write; print what was written and the parity figures."""
    from cnnlab.deploy.export import export_run
    from cnnlab.run.folder import Run

    run = Run.open(args.run)
    result = export_run(run, args.format, args.out, parity_limit=args.parity_images)
    folded = [f"{bn} into {layer}" for layer, bn in result.folded]  # English: JSON
    if args.json:
        print_json(
            {
                "path": str(result.path),
                "sidecar": str(result.sidecar),
                "format": result.format,
                "bytes": result.size_bytes,
                "folded": folded,
                "parity": {**asdict(result.parity), "ok": result.parity.ok},
                "seconds": round(result.seconds, 3),
                "output": "logits",
            }
        )
        return 0
    shown = [_("{bn} into {layer}").format(bn=bn, layer=layer) for layer, bn in result.folded]
    print(_("folded BatchNorm: {folded}").format(folded=", ".join(shown) or _("none")))
    print(result.parity.line())
    print(
        _(
            "wrote {path} ({size} KiB, {format}) and {sidecar}: input float32 (N, {shape}) "
            "normalised with mean {mean} std {std}; output logits (softmax for probabilities), "
            "in {seconds}s"
        ).format(
            path=printable(result.path),
            size=f"{result.size_bytes / 1024:,.0f}",
            format=result.format,
            sidecar=result.sidecar.name,
            shape=", ".join(map(str, run.input_shape)),
            mean=list(run.mean),
            std=list(run.std),
            seconds=f"{result.seconds:.1f}",
        )
    )
    return 0
