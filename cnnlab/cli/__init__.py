"""The cnnlab command line: parse arguments, call the library, print. Nothing else lives here.

Each command group is one module with `register(subparsers)`; a command sets
`handler=function(args) -> int` on its parser.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import signal
import sys
import warnings
from typing import NoReturn

from cnnlab import __version__
from cnnlab.cli.argparse_text import ArgumentParser, speaking_our_language
from cnnlab.errors import CnnlabError
from cnnlab.i18n import LANGUAGES, N_, _, using_language

# One module per command (or family: models = summary, models, spec; train = train, runs),
# named after it; each adds its subcommands (in this order in --help).
COMMAND_MODULES: list[str] = [
    "models",
    "datasets",
    "train",
    "lrfind",
    "eval",
    "plot",
    "filters",
    "featuremaps",
    "cam",
    "patches",
    "embed",
    "explain",
    "kernels",
    "diagram",
    "predict",
    "export",
    "code",
    "serve",
]


def build_parser() -> argparse.ArgumentParser:
    """The full `cnnlab` parser with every registered command, its help in the current language
    (build it inside `using_language`: the help strings are translated here, once)."""
    parser = ArgumentParser(
        prog="cnnlab",
        description=_(
            "Convolutional neural networks for image classification: "
            "define, inspect, train, look inside, and use."
        ),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"cnnlab {__version__}",
        help=_("show program's version number and exit"),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"cnnlab.cli.{name}").register(subparsers)
    _add_language_option(parser)
    return parser


LANG_HELP = N_("language of the output: en or ko (default: from LC_ALL, LC_MESSAGES or LANG)")


def _add_language_option(parser: argparse.ArgumentParser) -> None:
    """--lang on `cnnlab` and on every (sub)command, so it may come anywhere on the line.

    Below the top the default is SUPPRESS: a subcommand that did not see --lang leaves the
    value parsed before it alone.
    """
    shown = _(LANG_HELP)
    parser.add_argument("--lang", choices=LANGUAGES, help=shown)
    todo = [parser]
    while todo:
        for action in todo.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in set(action.choices.values()):  # aliases share a parser
                    if "--lang" not in sub._option_string_actions:
                        sub.add_argument(
                            "--lang", choices=LANGUAGES, default=argparse.SUPPRESS, help=shown
                        )
                    todo.append(sub)


def main(argv: list[str] | None = None) -> int:
    """Run one cnnlab command; returns the process exit status."""
    try:
        usual, warnings.showwarning = warnings.showwarning, _show_warning
        try:
            with speaking_our_language():  # argparse's usage and errors too
                code = _run_command(argv)
        finally:  # in-process callers (tests) get the usual printer back
            warnings.showwarning = usual
        sys.stdout.flush()  # output still buffered meets a closed pipe here, not at exit
        return code
    except BrokenPipeError:
        return _reader_gone()


def entry() -> NoReturn:
    """The `cnnlab` command (and `python -m cnnlab`): `main`, then the process ends at once.

    Python's own teardown after a command that loaded torch frees every module's objects one by
    one: 0.3 s after `import torch`, 0.57 s once torch.optim has loaded torch._dynamo (measured
    2026-11-30: wall time after the last atexit handler), work no one waits for, and a `--budget`
    run pays it inside its budget. Files are all written and closed by then (atomic writes, no
    background writer); the streams and logging are flushed here first. In-process callers
    (tests, notebooks) call `main` and keep the usual exit.
    """
    try:
        code = main()
    except SystemExit as stop:  # argparse's --help and usage errors
        code = _exit_status(stop.code)
    if "logging" in sys.modules:
        import logging  # noqa: PLC0415 (only when something used it: the server)

        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: all that could be said is
            stream.flush()
    os._exit(code)


def _exit_status(code: object) -> int:
    """SystemExit's code as a process status, as the interpreter turns it into one."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as Python prints them, escaped: they may quote a name (matplotlib's missing glyphs)."""
    from cnnlab.cli.common import printable

    text = warnings.formatwarning(message, category, filename, lineno, line)
    (file or sys.stderr).write(printable(text, keep="\n"))


def _run_command(argv: list[str] | None) -> int:
    """Parse and run; a CnnlabError becomes `error: MESSAGE` (escaped) and status 2."""
    from cnnlab.cli.common import printable
    from cnnlab.text import korean_particles

    language = _argv_language(sys.argv[1:] if argv is None else argv)
    try:
        # the help strings, argparse's words and argument types' errors (CnnlabError too)
        with using_language(language):
            parser = build_parser()
            args = _parse(parser, argv)
            if getattr(args, "handler", None) is None:
                parser.print_help()
                return 0
        handler = args.handler
        with using_language(args.lang):  # None: LC_ALL, LC_MESSAGES or LANG decides
            return handler(args) or 0
    except CnnlabError as error:
        # Messages quote user-supplied names: escape their control characters, keep the lines;
        # korean_particles: a Korean message's 을(를) after a quoted name (English has none).
        message = korean_particles(printable(error, keep=chr(10)))
        with using_language(language):
            print(_("error: {message}").format(message=message), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        with using_language(language):
            print(_("interrupted"), file=sys.stderr)
        return 130


def _argv_language(argv: list[str]) -> str | None:
    """The last `--lang X` (or `--lang=X`) on the command line, before argparse has read it:
    errors of parsing (argument types) speak it too; None when absent or not a language."""
    chosen = None
    for i, item in enumerate(argv):
        if item == "--lang" and i + 1 < len(argv):
            chosen = argv[i + 1]
        elif item.startswith("--lang="):
            chosen = item.removeprefix("--lang=")
    return chosen if chosen in LANGUAGES else None


KEY_VALUE = re.compile(r"^[A-Za-z_][\w-]*=")  # `epochs=3`, as the training commands take them


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The command line, with `key=value` settings anywhere on it (`train --out X epochs=1`):
    argparse takes positionals only before or after all options, users type them anywhere."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all(KEY_VALUE.match(item) for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(_("unrecognized arguments: %s") % " ".join(extra))  # argparse's message
    return args


def _reader_gone() -> int:
    """stdout's reader has closed the pipe (`cnnlab models --json | head -1`): stop quietly.

    The status is 141 = 128 + SIGPIPE, what the shell reports for `cat`, `yes` and the other
    Unix tools that SIGPIPE ends: `set -o pipefail` scripts see cnnlab as they see them, and the
    status does not claim that everything was written (0 would). Python ignores SIGPIPE (so
    the server survives closed sockets), hence this by hand, as the Python docs' recipe does:
    stdout now points at devnull, so the interpreter's flush at exit cannot fail again.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass
    return 128 + getattr(signal, "SIGPIPE", 13)
