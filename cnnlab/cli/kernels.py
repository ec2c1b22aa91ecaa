"""`cnnlab kernels`: the classic kernels of the seeds (edge, sharpen, blur, ...) applied to an image."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from cnnlab.cli.common import console, examples, image_outputs, output_files, print_json, say
from cnnlab.errors import ConfigError
from cnnlab.i18n import _


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the kernels command."""
    p = subparsers.add_parser(
        "kernels",
        help=_("the classic kernels (edge, Sobel, sharpen, blur, ...) applied to an image"),
        description=_(
            "Apply the seeds' classic kernels to an image (converted to grayscale, "
            "shrunk to fit --max-size) with conv2d, and draw the results side by side with each "
            "kernel's matrix. IMAGE 'demo' is a built-in test picture."
        ),
        epilog=examples(
            "cnnlab kernels --list",
            "cnnlab kernels photo.jpg --out kernels.png",
            "cnnlab kernels demo --kernel sobel-x --kernel sobel-y --out sobel.svg",
        ),
    )
    p.add_argument("image", nargs="?", help=_("an image file (PNG, JPEG, ...) or 'demo'"))
    p.add_argument("--list", action="store_true", help=_("print every kernel's matrix"))
    p.add_argument(
        "--kernel",
        action="append",
        metavar="NAME",
        help=_("only this kernel (repeatable); prints its output statistics"),
    )
    p.add_argument("--max-size", type=int, default=256, metavar="PX", help=_("largest side (256)"))
    p.add_argument("--json", action="store_true", help=_("print JSON"))
    image_outputs(p, "kernels.png")
    p.set_defaults(handler=run_kernels)


def run_kernels(args: argparse.Namespace) -> int:
    """`cnnlab kernels`: the kernel gallery, statistics, or --list."""
    if args.list:  # before the imports below: --list needs neither torch nor matplotlib
        return _list_kernels(args.json)
    from cnnlab.explain import kernels as k
    from cnnlab.figures.canvas import save_figure
    from cnnlab.figures.kernels import kernels_figure

    if not args.image:
        raise ConfigError(
            _("give an image file (or 'demo' for the built-in picture), or --list for the kernels")
        )
    if args.max_size < 8:
        raise ConfigError(
            _("--max-size {value} is too small: use at least 8 pixels").format(value=args.max_size)
        )
    paths = output_files(args, Path("kernels.png"))  # checked before any work
    image = k.demo_image() if args.image == "demo" else k.load_gray(args.image, args.max_size)
    chosen = (
        [k.get_kernel(name) for name in args.kernel] if args.kernel else list(k.KERNELS.values())
    )
    stats = {kernel.name: k.kernel_stats(k.apply_kernel(image, kernel)) for kernel in chosen}
    figure = kernels_figure(image, [kernel.name for kernel in chosen], title=args.image)
    for path in paths:
        save_figure(figure, path)
    if args.json:
        print_json(
            {
                "image": args.image,
                "size": list(image.shape),
                "kernels": stats,
                "written": [str(p) for p in paths],
            }
        )
    else:
        _print_stats(args, image.shape, stats, chosen, paths)
    return 0


def _print_stats(
    args: argparse.Namespace, size: tuple, stats: dict, chosen: list, paths: list[Path]
) -> None:
    """The statistics table, the chosen kernels' matrices (with --kernel), the files written."""
    h, w = size
    out = console()
    say(
        _(
            "{image}: {size} grayscale in [0, 1]; each kernel applied with conv2d, "
            "same padding (replicate)"
        ).format(image=args.image, size=f"{h}x{w}")
    )
    table = Table()
    table.add_column(_("kernel"))
    for column in (_("min"), _("max"), _("mean"), _("std")):
        table.add_column(column, justify="right")
    for name, s in stats.items():
        table.add_row(name, *(f"{s[key]:.4f}" for key in ("min", "max", "mean", "std")))
    out.print(table)
    if args.kernel:
        for kernel in chosen:
            out.print(f"{kernel.name}: {_(kernel.description)}", highlight=False)
            out.print(kernel.text(), highlight=False, markup=False)
    for path in paths:
        say(_("wrote {path} ({count} panel(s))").format(path=path, count=len(chosen)))


def _list_kernels(as_json: bool) -> int:
    from cnnlab.explain.kernels import KERNELS

    if as_json:
        print_json(
            {
                k.name: {"matrix": k.matrix, "divisor": k.divisor, "description": k.description}
                for k in KERNELS.values()
            }
        )
        return 0
    out = console()
    for kernel in KERNELS.values():
        # the descriptions are extracted from explain/kernels.py's Kernel(...) calls (pybabel -k Kernel:4)
        out.print(f"{kernel.name}: {_(kernel.description)}", style="bold", highlight=False)
        out.print(kernel.text(), highlight=False, markup=False)
        out.print("")
    return 0
