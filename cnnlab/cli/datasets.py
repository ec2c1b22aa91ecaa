"""`cnnlab datasets`: list the data sets, show a sample grid, fetch files into the cache."""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict

from cnnlab.cli.common import print_json, printable
from cnnlab.i18n import N_, SOURCE_LANGUAGE, _, current_language
from cnnlab.text import columns, padded

# the listing's left-aligned headers and their widths
LEFT_COLUMNS = ((N_("name"), 14), (N_("shape"), 8), (N_("flip"), 4), (N_("here"), 4))
WHERE = N_("where")

DATA_DIR_HELP = N_("also look for data files in DIR/NAME/ and DIR/")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `datasets` (list), `datasets show` and `datasets fetch`."""
    parser = subparsers.add_parser(
        "datasets",
        help=_("list data sets; show samples; fetch files"),
        description=_(
            "List the data sets cnnlab knows (and whether each is here), show a labelled sample grid, or fetch files."
        ),
    )
    parser.add_argument("--data-dir", help=_(DATA_DIR_HELP))
    parser.add_argument("--json", action="store_true", help=_("print the list as JSON"))
    parser.set_defaults(handler=run_datasets)
    sub = parser.add_subparsers(dest="datasets_command", metavar="SUBCOMMAND")

    show = sub.add_parser("show", help=_("save a labelled grid of sample images per class"))
    show.add_argument(
        "name", help=_("a data set name (see `cnnlab datasets`), folder:PATH or a folder")
    )
    show.add_argument("--out", required=True, help=_("PNG file to write"))
    show.add_argument("--split", choices=["train", "test"], default="train")
    show.add_argument(
        "--per-class", type=int, default=10, help=_("images per class (default %(default)s)")
    )
    show.add_argument("--seed", type=int, default=0, help=_("seed for generated data sets"))
    show.add_argument("--data-dir", help=_(DATA_DIR_HELP))
    show.add_argument(
        "--no-download", action="store_true", help=_("fail instead of downloading missing files")
    )
    show.add_argument(
        "--skip-bad", action="store_true", help=_("folders: leave out unreadable files (listed)")
    )
    show.set_defaults(handler=run_show)

    fetch = sub.add_parser(
        "fetch", help=_("download a data set's files into the cache (or find them locally)")
    )
    fetch.add_argument("name")
    fetch.add_argument("--data-dir", help=_(DATA_DIR_HELP))
    fetch.set_defaults(handler=run_fetch)


def run_datasets(args: argparse.Namespace) -> int:
    """Print one line per data set: name, shape, sizes, classes, availability and where."""
    from cnnlab.data import list_datasets

    infos = list_datasets(args.data_dir)
    if args.json:
        print_json([asdict(i) for i in infos])
        return 0
    yes, no = _("yes"), _("no")
    name, shape, flip, here = (padded(_(w), n) for w, n in LEFT_COLUMNS)
    train, test = padded(_("train"), 6, right=True), padded(_("test"), 6, right=True)
    header = f"{name} {shape} {train} {test}  {flip}  {here}  {_(WHERE)}"
    print(header)
    print("-" * columns(header))
    for i in infos:
        c, h, w = i.image_shape
        print(
            f"{i.name:<14} {f'{c}x{h}x{w}':<8} {i.train_size:>6} {i.test_size:>6}  "
            f"{padded(yes if i.flip_ok else no, 4)}  {padded(yes if i.available else no, 4)}  "
            f"{printable(_where(i.where))}"
        )
        classes = _("{count} classes: {names}").format(
            count=len(i.classes), names=", ".join(i.classes)
        )
        print(f"{'':<14} {classes}")
    print(
        _(
            "\nAlso: folder:PATH (one sub-folder per class, or train/ and test/ holding class "
            "folders)."
        )
    )
    return 0


def _where(where: str) -> str:
    """A DatasetInfo's `where` (English, as JSON gives it) in the command's language."""
    if where == "generated":
        return _("generated")
    seeded = re.fullmatch(r"generated \(seed (\d+)\)", where)  # a generated set's source
    if seeded:
        return _("generated (seed {seed})").format(seed=seeded[1])
    prefix = "download from "
    if where.startswith(prefix):
        return _("download from {url}").format(url=where.removeprefix(prefix))
    return where


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
    print(
        printable(_("{data} from {source}").format(data=_described(ds), source=_where(ds.source)))
    )
    for message in ds.skipped:
        print(_("skipped: {message}").format(message=printable(message)))
    print(_("wrote {path}").format(path=printable(out)))
    return 0


def _described(ds) -> str:
    """The data set as loaded; for `shapes`, that only the grid's images were generated."""
    if ds.name != "shapes":
        return _loaded(ds)
    from cnnlab.data import get_entry

    entry = get_entry("shapes")
    return _(
        "shapes: {train} training and {test} test images generated for this grid (the data set: "
        "{all_train} training, {all_test} test)"
    ).format(
        train=len(ds.train_labels),
        test=len(ds.test_labels),
        all_train=entry.train_size,
        all_test=entry.test_size,
    )


def _loaded(ds) -> str:
    """repr(ds) in English, as before; its words in the command's language otherwise."""
    text = repr(ds)
    if current_language() == SOURCE_LANGUAGE:
        return text
    c, h, w = ds.image_shape
    return _("{name}: {classes} classes, {shape}, {train} training and {test} test images").format(
        name=ds.name,
        classes=ds.num_classes,
        shape=f"{c}x{h}x{w}",
        train=len(ds.train_labels),
        test=len(ds.test_labels),
    )


def run_fetch(args: argparse.Namespace) -> int:
    """Make a data set available locally (download when needed) and say where it is."""
    from cnnlab.data import get_entry, load_dataset

    entry = get_entry(args.name)
    ds = load_dataset(entry.name, data_dir=args.data_dir, train_size=None)
    print(printable(_("{data} ready in {source}").format(data=_loaded(ds), source=ds.source)))
    return 0
