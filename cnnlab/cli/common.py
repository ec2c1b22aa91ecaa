"""What every CLI command shares: the console, `printable` (user-supplied names made safe for a
terminal), JSON output, help strings, output-file options, the percent formatter and table helpers."""

from __future__ import annotations

import argparse
import copy
import math
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from cnnlab.errors import ConfigError, OutputError
from cnnlab.fileio import json_text
from cnnlab.i18n import N_, _
from cnnlab.text import clipped, korean_particles, printable

if TYPE_CHECKING:
    from cnnlab.evaluate.samples import Sample
    from cnnlab.run.folder import Run

RUN_HELP = N_("a run folder, a run name under runs/, or 'latest'")

MODEL_HELP = N_("a preset name (see `cnnlab models`), a TOML file, or a one-line spec in quotes")

ENGINE_HELP = N_(
    "eager (torch), onnx or pt2 (the export beside the run, see `cnnlab export`), or auto: "
    "the fastest of eager and the valid exports present, measured at start (default: auto)"
)


# Format characters that reorder the text shown after them (bidi embeddings, overrides,
# isolates): a name holding one can make a line read differently from what it says.
def plain(text: object) -> Text:
    """A table cell or title shown as is: escaped by `printable`, and no rich markup ('[red]' stays)."""
    return Text(printable(text))


class PlainTable(Table):
    """A rich Table whose string cells are `plain`: user-supplied names cannot style the output."""

    def add_row(self, *cells: Any, **options: Any) -> None:
        """Table.add_row with every str cell made `plain`."""
        super().add_row(*(plain(c) if isinstance(c, str) else c for c in cells), **options)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """As rich draws it; narrower than it needs, with no side borders and one space between
        columns: the 3 columns a boxed column costs would squeeze the cells, 8 columns in 80."""
        if self.__rich_measure__(console, options).maximum <= options.max_width:
            yield from super().__rich_console__(console, options)
            return
        compact = copy.copy(self)
        compact.box, compact.show_edge, compact.pad_edge = box.SIMPLE_HEAD, False, False
        compact.collapse_padding = True
        yield from Table.__rich_console__(compact, console, options)


class _Console(Console):
    """rich's Console, but a closed pipe reaches main() as BrokenPipeError (rich would exit 1)."""

    def on_broken_pipe(self) -> None:
        """Called by rich inside its `except BrokenPipeError`: raise it on to main()."""
        self.quiet = True
        raise BrokenPipeError


def console() -> Console:
    """A console on stdout, as wide as COLUMNS says, else the terminal; a pipe without COLUMNS
    gets 200 columns, so that tables do not wrap."""
    if sys.stdout.isatty():
        return _Console()  # rich reads COLUMNS, else asks the terminal
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        # width=None: rich reads COLUMNS as it does on a terminal; tables wrap their cells to it
        return _Console(width=None, no_color=True)
    return _Console(width=max(shutil.get_terminal_size((200, 24)).columns, 200), no_color=True)


def print_json(data: Any) -> None:
    """Strict JSON for machines, on stdout (NaN and infinity as null)."""
    print(json_text(data))


def warn_if_weights_not_finite(run: Run) -> None:
    """A warning on stderr when the run's weights hold NaN or infinity: its outputs are then NaN
    (null in JSON), which must not pass for a result."""
    from cnnlab.run.checkpoint import non_finite_tensors
    from cnnlab.run.files import MODEL_FILE

    names = non_finite_tensors(run.path / MODEL_FILE)
    if names:
        message = _(
            "warning: the weights in {path} hold NaN or infinity ({names}): outputs are NaN "
            "(null in JSON); train the run again"
        ).format(path=run.path / MODEL_FILE, names=", ".join(names[:4]))
        print(printable(message), file=sys.stderr)


def say(text: str) -> None:
    """One plain line: control characters escaped, no markup, no highlighting, never wrapped."""
    console().print(
        korean_particles(printable(text)), highlight=False, markup=False, soft_wrap=True
    )


def print_written(paths: list[Path], what: str = "") -> None:
    """A 'wrote FILE (what)' line per file written."""
    for path in paths:
        say(
            _("wrote {path} ({what})").format(path=path, what=what)
            if what
            else _("wrote {path}").format(path=path)
        )


def percent(value: float | None, places: int = 2) -> str:
    """0.9731 -> '97.31%' (places decimals); '' for a missing or NaN value."""
    return "" if value is None or math.isnan(value) else f"{value:.{places}%}"


def titled_table(title: str, columns: list[str], right: set[str]) -> Table:
    """A table with a left-aligned title; the columns named in `right` are right-aligned.

    Headers are `plain` (escaped, no markup) and clipped, as cells are: columns may be class
    names, and a name with ESC or a newline must not reach the terminal or break the header. On
    a console narrower than the table, cells wrap at spaces and a word longer than its column
    folds onto the next line: rich's default would cut it with an ellipsis (a run name lost).
    """
    table = PlainTable(title=plain(title), title_justify="left")
    for i, column in enumerate(columns):
        justify = "right" if column in right else "left"
        # the first column names the row (a run, a class): others wrap first, so it stays whole
        table.add_column(plain(clipped(column)), justify=justify, overflow="fold", no_wrap=i == 0)
    return table


def make_folder(folder: Path) -> Path:
    """Create an output folder (and its parents); OutputError naming it when that cannot be done."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_write(folder, error) from None
    return folder


def cannot_write(path: Path, error: OSError) -> OutputError:
    """The OutputError for a file or folder that could not be written."""
    # mkdir says "File exists" when a part of the path is a file
    folder_taken = isinstance(error, FileExistsError)
    reason = _("a file stands where a folder should") if folder_taken else None
    return OutputError(
        _("cannot write {path}: {reason}; choose a writable folder with --out").format(
            path=path, reason=reason or error.strerror or error
        )
    )


def image_outputs(p: argparse.ArgumentParser, default: str) -> None:
    """Add --out FILE (repeatable: .png and/or .svg) and --format; `default` names the file."""
    p.add_argument(
        "--out",
        action="append",
        metavar="FILE",
        help=_("image to write, .png or .svg; repeat for both (default {default})").format(
            default=default
        ),
    )
    p.add_argument(
        "--format", choices=("png", "svg"), help=_("image format when FILE has no extension")
    )


def examples(*commands: str) -> str:
    """A command's epilog, 'examples: CMD | CMD | ...': the word in the current language, the
    command lines as they are typed."""
    return _("examples: {commands}").format(commands=" | ".join(commands))


def output_files(args: argparse.Namespace, default: Path) -> list[Path]:
    """--out files (format by extension or --format), else `default` with --format's suffix."""
    from cnnlab.figures.canvas import output_paths

    return output_paths(args.out, args.format, str(default.with_suffix("")))


def split_names(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated names as one list: ['a,b', 'c'] -> ['a', 'b', 'c']."""
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def choose_layers(
    available: list[str], wanted: list[str], model_layers: list[str], kind: str = ""
) -> list[str]:
    """The wanted layer names, checked against `available` (the `kind` layers of the model)."""
    listed = _("its {kind} layers").format(kind=kind) if kind else _("its layers")
    names = ", ".join(available)
    for name in wanted:
        if name in available:
            continue
        if name in model_layers:
            raise ConfigError(
                _("{name} is not a {kind} layer; choose among {names}").format(
                    name=name, kind=kind, names=names
                )
            )
        raise ConfigError(
            _("the model has no layer {name}; {listed}: {names}").format(
                name=name, listed=listed, names=names
            )
        )
    return wanted


def load_image_argument(run: Run, image: str, invert: str = "no", center: bool = False) -> Sample:
    """An IMAGE argument: a file prepared as `cnnlab predict` prepares it, or SPLIT:INDEX."""
    from cnnlab.deploy.predict import Preprocess, prepare_image
    from cnnlab.evaluate.samples import Sample, load_sample

    if Path(image).is_file():
        options = Preprocess(invert=invert, center=center)
        return Sample(prepare_image(image, run.input_shape, run.mean, options), image)
    return load_sample(run, image)  # test:12, or the error naming a missing file
