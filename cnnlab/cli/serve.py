"""`cnnlab serve`: the drawing page and the JSON API of a run over HTTP."""

from __future__ import annotations

import argparse

from cnnlab.cli.common import (
    ENGINE_HELP,
    RUN_HELP,
    examples,
)
from cnnlab.errors import ConfigError
from cnnlab.i18n import _


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the serve command."""
    _register_serve(subparsers)


def _register_serve(subparsers: argparse._SubParsersAction) -> None:
    from cnnlab.deploy import ENGINE_CHOICES  # deploy.predict loads torch

    p = subparsers.add_parser(
        "serve",
        help=_(
            "serve a run: a page to draw on and see every layer, its report page, and a JSON API"
        ),
        description=_(
            "Serve a run over HTTP: GET / is a page where you draw or drop an image and "
            "see the prediction and every layer's feature maps; GET /run is the run's report "
            "(curves, a clickable confusion matrix with Grad-CAM, per-class scores, filters, top "
            "patches, a projector); /docs lists the JSON API."
        ),
        epilog=examples("cnnlab serve latest", "cnnlab serve runs/demo --port 8080 --engine onnx"),
    )
    p.add_argument("run", metavar="RUN", help=_(RUN_HELP))
    p.add_argument(
        "--host", default="127.0.0.1", help=_("address to listen on (default 127.0.0.1)")
    )
    p.add_argument("--port", type=int, default=8000, help=_("port (default 8000; 0: any free one)"))
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto", help=_(ENGINE_HELP))
    p.add_argument(
        "--export", metavar="FILE", help=_("an export file other than RUN/model.onnx|pt2")
    )
    p.add_argument(
        "--max-body-mb", type=float, default=16.0, help=_("largest request body (default 16 MB)")
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=64,
        help=_("requests handled at once; more get 503 (default 64)"),
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help=_("seconds per request once its body has arrived; then 504 (default 10)"),
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        help=_("seconds for a request body to arrive; then 408 (default 30)"),
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        help=_(
            "seconds for a request's headers to arrive; then the connection is closed (default 10)"
        ),
    )
    p.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Start the HTTP server and block until Ctrl-C."""
    from cnnlab.run.folder import Run
    from cnnlab.server.limits import Limits, check_number
    from cnnlab.server.serve import serve

    # Every number before anything starts: argparse's float() takes "nan" and "inf".
    check_number("--max-body-mb", args.max_body_mb, 0.001, 1024, "(megabytes)")
    check_number("--max-in-flight", args.max_in_flight, 1, 100_000)
    for option in ("timeout", "body_timeout", "header_timeout"):
        flag = "--" + option.replace("_", "-")
        check_number(flag, getattr(args, option), 0.001, 86_400, "(seconds)")
    if not 0 <= args.port <= 65535:
        raise ConfigError(_("--port must be 0..65535, not {port}").format(port=args.port))
    limits = Limits(
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_in_flight=args.max_in_flight,
        timeout_s=args.timeout,
        body_timeout_s=args.body_timeout,
        header_timeout_s=args.header_timeout,
    )
    serve(Run.open(args.run), args.host, args.port, args.engine, args.export, limits)
    return 0
