"""`cnnlab datasets`: list the data sets, show a sample grid, fetch files into the cache."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from cnnlab.cli.common import print_json, printable

DATA_DIR_HELP = "also look for data files in DIR/NAME/ and DIR/"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `datasets` (list), `datasets show` and `datasets fetch`."""
    parser = subparsers.add_parser(
        "datasets",
        help="list data sets; show samples; fetch files",
        description="List the data sets cnnlab knows (and whether each is here), show a labelled sample grid, or fetch files.",
    )
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.set_defaults(handler=run_datasets)
    sub = parser.add_subparsers(dest="datasets_command", metavar="SUBCOMMAND")

    show = sub.add_parser("show", help="save a labelled grid of sample images per class")
    show.add_argument(
        "name", help="a data set name (see `cnnlab datasets`), folder:PATH or a folder"
    )
    show.add_argument("--out", required=True, help="PNG file to write")
    show.add_argument("--split", choices=["train", "test"], default="train")
    show.add_argument(
        "--per-class", type=int, default=10, help="images per class (default %(default)s)"
    )
    show.add_argument("--seed", type=int, default=0, help="seed for generated data sets")
    show.add_argument("--data-dir", help=DATA_DIR_HELP)
    show.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading missing files"
    )
    show.add_argument(
        "--skip-bad", action="store_true", help="folders: leave out unreadable files (listed)"
    )
    show.set_defaults(handler=run_show)

    fetch = sub.add_parser(
        "fetch", help="download a data set's files into the cache (or find them locally)"
    )
    fetch.add_argument("name")
    fetch.add_argument("--data-dir", help=DATA_DIR_HELP)
    fetch.set_defaults(handler=run_fetch)


def run_datasets(args: argparse.Namespace) -> int:
    """Print one line per data set: name, shape, sizes, classes, availability and where."""
    from cnnlab.data import list_datasets

    infos = list_datasets(args.data_dir)
    if args.json:
        print_json([asdict(i) for i in infos])
        return 0
    header = f"{'name':<14} {'shape':<8} {'train':>6} {'test':>6}  {'flip':<4}  {'here':<4}  where"
    print(header)
    print("-" * len(header))
    for i in infos:
        c, h, w = i.image_shape
        print(
            f"{i.name:<14} {f'{c}x{h}x{w}':<8} {i.train_size:>6} {i.test_size:>6}  "
            f"{'yes' if i.flip_ok else 'no':<4}  {'yes' if i.available else 'no':<4}  {printable(i.where)}"
        )
        print(f"{'':<14} {len(i.classes)} classes: {', '.join(i.classes)}")
    print(
        "\nAlso: folder:PATH (one sub-folder per class, or train/ and test/ holding class folders)."
    )
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Load a data set and save its sample grid."""
    from cnnlab.data import get_entry, load_dataset
    from cnnlab.figures.samples import save_sample_grid

    options: dict = {"skip_bad": True} if args.skip_bad else {}
    if args.name == "shapes":  # generated: make only what the grid shows
        n = args.per_class * len(get_entry("shapes").classes)
        options = {"train_size": n, "test_size": n}
    ds = load_dataset(
        args.name, data_dir=args.data_dir, seed=args.seed, download=not args.no_download, **options
    )
    out = save_sample_grid(ds, args.out, per_class=args.per_class, split=args.split)
    print(printable(f"{_described(ds)} from {ds.source}"))
    for message in ds.skipped:
        print(f"skipped: {printable(message)}")
    print(f"wrote {printable(out)}")
    return 0


def _described(ds) -> str:
    """The data set as loaded; for `shapes`, that only the grid's images were generated."""
    if ds.name != "shapes":
        return repr(ds)
    from cnnlab.data import get_entry

    entry = get_entry("shapes")
    return (
        f"shapes: {len(ds.train_labels)} training and {len(ds.test_labels)} test images "
        f"generated for this grid (the data set: {entry.train_size} training, "
        f"{entry.test_size} test)"
    )


def run_fetch(args: argparse.Namespace) -> int:
    """Make a data set available locally (download when needed) and say where it is."""
    from cnnlab.data import get_entry, load_dataset

    entry = get_entry(args.name)
    ds = load_dataset(entry.name, data_dir=args.data_dir, train_size=None)
    print(printable(f"{ds!r} ready in {ds.source}"))
    return 0
