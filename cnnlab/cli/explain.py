"""`cnnlab explain`: convolution, pooling, padding and stride worked step by step on small matrices,
and one cell of a trained model's maps with its real numbers."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from cnnlab.cli.common import RUN_HELP, console, examples, load_image_argument, print_json
from cnnlab.errors import ConfigError
from cnnlab.explain import inputs, render, worked
from cnnlab.i18n import N_, _
from cnnlab.spec.kinds import PADDING_MODES

SEED_HELP = N_("seed for random:HxW inputs and kernels (default 0)")
INPUT_HELP = N_(
    "a matrix literal '[[1,0,1],[0,1,0],[1,0,1]]' (or '1 0 1; 0 1 0; 1 0 1'), "
    "a list of matrices (one per channel), or random:HxW"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the explain command and its subcommands."""
    p = subparsers.add_parser(
        "explain",
        help=_(
            "convolution, pooling, padding and stride worked out step by step on small matrices"
        ),
        description=_(
            "Work out convolution, pooling, padding or stride on small matrices, "
            "window by window. With no options, `explain conv` is seed 001's 5x5 example."
        ),
    )
    sub = p.add_subparsers(dest="topic", metavar="TOPIC", required=True)
    _register_conv(sub)
    _register_pool(sub)
    _register_padding(sub)
    _register_stride(sub)
    _register_cell(sub)


def _common(p: argparse.ArgumentParser, steps: bool = True) -> None:
    p.add_argument("--input", metavar="MATRIX", help=_(INPUT_HELP))
    p.add_argument("--seed", type=int, default=0, help=_(SEED_HELP))
    p.add_argument("--brief", action="store_true", help=_("only the formula and the final map"))
    p.add_argument("--json", action="store_true", help=_("print the steps and result as JSON"))
    if steps:
        p.add_argument(
            "--max-steps",
            type=int,
            default=render.DEFAULT_MAX_STEPS,
            metavar="N",
            help=_("show at most N steps (default %(default)s; 0: all)"),
        )


def _register_conv(sub: argparse._SubParsersAction) -> None:
    conv = sub.add_parser(
        "conv",
        help=_("each window: values, products, sum; the output map growing"),
        description=_(
            "Slide a kernel over a matrix: each window's values, the element-wise "
            "products, their sum, and the output map growing. Default: seed 001's example."
        ),
        epilog=examples(
            "cnnlab explain conv",
            "cnnlab explain conv --input random:6x6 --kernel sobel-x --padding same --padding-mode reflect",
            "cnnlab explain conv --channels 3 --kernel random:3x3 --brief",
        ),
    )
    _common(conv)
    conv.add_argument(
        "--kernel",
        metavar="KERNEL",
        help=_(
            "a matrix literal, a list of matrices (one per channel), a named kernel "
            "(see `cnnlab kernels --list`), or random:KxK (default: seed 001's [[1,0,1],[0,1,0],[1,0,1]])"
        ),
    )
    conv.add_argument("--channels", type=int, metavar="N", help=_("input channels (random inputs)"))
    conv.add_argument("--stride", default="1", metavar="S", help=_("step, S or SHxSW (default 1)"))
    conv.add_argument("--padding", default="0", metavar="P", help=_("P, PHxPW, same or valid"))
    conv.add_argument("--padding-mode", default="zeros", choices=PADDING_MODES)
    conv.add_argument("--dilation", default="1", metavar="D", help=_("gap between kernel taps"))
    conv.set_defaults(handler=run_explain_conv)


def _register_pool(sub: argparse._SubParsersAction) -> None:
    pool = sub.add_parser(
        "pool",
        help=_("max, min and avg pooling of each window, side by side"),
        description=_(
            "Pool each window: max, min and/or average, side by side on the same "
            "windows. Default: a 4x4 input, 2x2 window, stride 2, all three modes."
        ),
        epilog=examples(
            "cnnlab explain pool",
            "cnnlab explain pool --mode max --input random:6x6 --kernel 3 --stride 1",
        ),
    )
    _common(pool)
    pool.add_argument("--mode", metavar="MODES", help=_("max, min, avg or several: max,min,avg"))
    pool.add_argument(
        "--kernel", default="2", metavar="K", help=_("window, K or KHxKW (default 2)")
    )
    pool.add_argument("--channels", type=int, metavar="N", help=_("input channels (random inputs)"))
    pool.add_argument("--stride", metavar="S", help=_("step (default: the window size)"))
    pool.add_argument("--padding", default="0", metavar="P", help=_("P or PHxPW (at most K/2)"))
    pool.add_argument("--dilation", default="1", metavar="D", help=_("gap between taps (max, min)"))
    pool.set_defaults(handler=run_explain_pool)


def _register_padding(sub: argparse._SubParsersAction) -> None:
    padding = sub.add_parser(
        "padding",
        help=_("zeros, reflect, replicate and circular padding side by side"),
        description=_(
            "Pad one matrix with zeros, reflect, replicate and circular, side by side, "
            "and show what a kernel then outputs."
        ),
        epilog=examples(
            "cnnlab explain padding",
            "cnnlab explain padding --padding 2 --input random:4x4",
            "cnnlab explain padding --padding same --kernel-size 5",
        ),
    )
    _common(padding, steps=False)
    padding.add_argument("--padding", default="1", metavar="P", help=_("P, PHxPW or same"))
    padding.add_argument(
        "--padding-mode", metavar="MODES", help=_("some of zeros,reflect,replicate,circular")
    )
    padding.add_argument(
        "--kernel-size", default="3", metavar="K", help=_("kernel for the size note (default 3)")
    )
    padding.set_defaults(handler=run_explain_padding)


def _register_stride(sub: argparse._SubParsersAction) -> None:
    stride = sub.add_parser(
        "stride",
        help=_("the same input and kernel at stride 1 and 2: window positions and sizes"),
        description=_(
            "Convolve the same input with the same kernel at several strides: where "
            "each window starts and how large the output is."
        ),
        epilog=examples(
            "cnnlab explain stride", "cnnlab explain stride --stride 1,2,3 --input random:7x7"
        ),
    )
    _common(stride, steps=False)
    stride.add_argument("--kernel", metavar="KERNEL", help=_("as for explain conv"))
    stride.add_argument("--channels", type=int, metavar="N", help=_("input channels"))
    stride.add_argument("--stride", default="1,2", metavar="S,S", help=_("strides (default 1,2)"))
    stride.add_argument("--padding", default="0", metavar="P", help=_("P, PHxPW, same or valid"))
    stride.add_argument("--padding-mode", default="zeros", choices=PADDING_MODES)
    stride.add_argument("--dilation", default="1", metavar="D", help=_("gap between kernel taps"))
    stride.set_defaults(handler=run_explain_stride)


def _register_cell(sub: argparse._SubParsersAction) -> None:
    cell = sub.add_parser(
        "cell",
        help=_("one number of a trained model's feature maps, worked out with its real numbers"),
        description=_(
            "Work out how one output number of a run's layer came about for one image: "
            "a conv's window on each input channel (padding as the padded values), the kernel, "
            "the products, the sums and the bias; batchnorm, activations, pooling windows, an fc's "
            "largest products. The total is checked against the model's own output."
        ),
        epilog=examples(
            "cnnlab explain cell latest test:0 --layer conv1 --channel 3 --at 5,7",
            "cnnlab explain cell runs/look photo.png --layer fc1 --channel 2 --json",
        ),
    )
    cell.add_argument("run", help=_(RUN_HELP))
    cell.add_argument(
        "image",
        help=_("an image file (PNG, JPEG, ...) or SPLIT:INDEX of the run's data, e.g. test:0"),
    )
    cell.add_argument(
        "--layer",
        required=True,
        metavar="NAME",
        help=_("a layer's name as `cnnlab featuremaps` shows it (conv1), its number, or input"),
    )
    cell.add_argument("--channel", type=int, default=0, metavar="C", help=_("channel (default 0)"))
    cell.add_argument(
        "--at", default="0,0", metavar="Y,X", help=_("row and column in the map (default 0,0)")
    )
    cell.add_argument(
        "--invert", choices=("no", "yes", "auto"), default="no", help=_("as in predict")
    )
    cell.add_argument(
        "--center", action="store_true", help=_("as in predict (MNIST-style centring)")
    )
    cell.add_argument(
        "--brief", action="store_true", help=_("a conv's windows as one line each, no matrices")
    )
    cell.add_argument("--json", action="store_true", help=_("print the steps as JSON"))
    cell.set_defaults(handler=run_explain_cell)


def _show(args: argparse.Namespace, ex: Any, renderables: Callable[[], list]) -> int:
    """JSON with --json; else the rendering (a thunk: --max-steps is checked only then)."""
    if args.json:
        print_json(ex.to_json())
        return 0
    out = console()
    for renderable in renderables():
        # no wrapping: long arithmetic lines stay one line when piped
        out.print(renderable, soft_wrap=True, highlight=False)
    return 0


def _max_steps(args: argparse.Namespace) -> int:
    if args.max_steps < 0:
        raise ConfigError(
            _("--max-steps {value} must be 0 (all) or more").format(value=args.max_steps)
        )
    return args.max_steps


def _channels(args: argparse.Namespace) -> int | None:
    if args.channels is not None and args.channels < 1:
        raise ConfigError(
            _("{option} {value} must be at least 1").format(
                option="--channels", value=args.channels
            )
        )
    return args.channels


def run_explain_conv(args: argparse.Namespace) -> int:
    """`cnnlab explain conv`: a convolution step by step."""
    matrices = inputs.read_input(args.input, _channels(args), args.seed, inputs.SEED_INPUT)
    ex = worked.explain_conv(
        matrices,
        inputs.read_kernel(args.kernel, len(matrices), args.seed),
        inputs.parse_size(args.stride, "--stride"),
        inputs.parse_padding(args.padding),
        inputs.parse_size(args.dilation, "--dilation"),
        args.padding_mode,
    )
    return _show(args, ex, lambda: render.render_conv(ex, args.brief, _max_steps(args)))


def run_explain_pool(args: argparse.Namespace) -> int:
    """`cnnlab explain pool`: max/min/avg pooling step by step."""
    matrices = inputs.read_input(args.input, _channels(args), args.seed, inputs.POOL_INPUT)
    padding = inputs.parse_padding(args.padding)
    if padding == "same":
        raise ConfigError(_("pooling takes a number of padding pixels (P or PHxPW), not same"))
    kernel = inputs.parse_size(args.kernel, "--kernel")
    ex = worked.explain_pool(
        matrices,
        inputs.parse_modes(args.mode),
        kernel,
        inputs.parse_size(args.stride, "--stride") if args.stride else kernel,
        padding,
        inputs.parse_size(args.dilation, "--dilation"),
    )
    return _show(args, ex, lambda: render.render_pool(ex, args.brief, _max_steps(args)))


def run_explain_padding(args: argparse.Namespace) -> int:
    """`cnnlab explain padding`: the four padding modes side by side."""
    matrices = inputs.read_input(args.input, None, args.seed, inputs.PADDING_INPUT)
    if len(matrices) != 1:
        raise ConfigError(_("explain padding takes one matrix (channels are padded alike)"))
    modes = inputs.parse_padding_modes(args.padding_mode)
    ex = worked.explain_padding(
        matrices[0],
        inputs.parse_padding(args.padding),
        modes,
        inputs.parse_size(args.kernel_size, "--kernel-size"),
    )
    return _show(args, ex, lambda: render.render_padding(ex, args.brief))


def run_explain_stride(args: argparse.Namespace) -> int:
    """`cnnlab explain stride`: one input and kernel at several strides."""
    matrices = inputs.read_input(args.input, _channels(args), args.seed, inputs.SEED_INPUT)
    kernels = inputs.read_kernel(args.kernel, len(matrices), args.seed)
    ex = worked.explain_stride(
        matrices,
        kernels,
        inputs.parse_strides(args.stride),
        inputs.parse_padding(args.padding),
        inputs.parse_size(args.dilation, "--dilation"),
        args.padding_mode,
    )
    return _show(args, ex, lambda: render.render_stride(ex, args.brief))


def parse_at(text: str) -> tuple[int, int]:
    """'5,7' -> (5, 7): a cell's row and column."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
        raise ConfigError(
            _("--at '{text}' must be the row and column as Y,X, e.g. --at 5,7").format(text=text)
        )
    return int(parts[0]), int(parts[1])


def run_explain_cell(args: argparse.Namespace) -> int:
    """`cnnlab explain cell`: one cell of a run's layer, its arithmetic checked against torch."""
    from cnnlab.explain.cell import Pixels, explain_cell
    from cnnlab.run.folder import Run

    at = parse_at(args.at)
    run = Run.open(args.run)
    sample = load_image_argument(run, args.image, args.invert, args.center)
    pixels = Pixels(sample.image, tuple(run.mean), tuple(run.std))
    ex = explain_cell(
        run.load_model(), sample.model_input(run), args.layer, args.channel, at, pixels
    )
    if args.json:
        print_json({"image": sample.source, "true": sample.label, **ex.to_json()})
        return 0
    return _show(args, ex, lambda: render.render_cell(ex, args.brief))
