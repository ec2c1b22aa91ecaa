"""argparse's own words ('usage: ', 'options', its error lines) in the command's language.

argparse translates what it prints with the `_` and `ngettext` it imported from gettext, looked
up in its module's globals each time it prints. `speaking_our_language()` binds those two names
to cnnlab's catalogue while a command runs and gives the usual ones back after it, so that
in-process callers (tests, notebooks) meet the usual argparse once `main()` has returned.

SHOWN lists argparse's messages that a command line can bring up (help, usage, parse errors),
marked N_ so that `pybabel extract` puts them in the catalogue: the msgids of Python 3.11 to 3.13,
exactly as argparse.py spells them (tests/test_i18n_help.py checks the running Python's).

`ArgumentParser` (cnnlab's parsers, its subparsers too) wraps the help by the columns a terminal
gives each character: a Hangul syllable takes two, and argparse counts one.
"""

from __future__ import annotations

import argparse
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager

from cnnlab.i18n import N_, _

SHOWN = (
    # help and usage
    N_("usage: "),
    N_("positional arguments"),
    N_("options"),
    N_("subcommands"),
    N_("%(heading)s:"),  # 3.13: a section's heading
    N_(" (default: %(default)s)"),  # 3.13: ArgumentDefaultsHelpFormatter
    N_("show this help message and exit"),
    N_("show program's version number and exit"),  # translated by argparse from 3.13 on
    # errors while parsing: '%(prog)s: error: ' + 'argument --x: ' + what was wrong
    N_("%(prog)s: error: %(message)s\n"),
    N_("%(prog)s: warning: %(message)s\n"),  # 3.13
    N_("argument %(argument_name)s: %(message)s"),
    N_("the following arguments are required: %s"),
    N_("one of the arguments %s is required"),
    N_("unrecognized arguments: %s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("invalid %(type)s value: %(value)r"),
    N_("expected one argument"),
    N_("expected at most one argument"),
    N_("expected at least one argument"),
    N_("expected %s argument"),
    N_("expected %s arguments"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("not allowed with argument %s"),
    N_("ignored explicit argument %r"),
    N_("unknown parser %(parser_name)r (choices: %(choices)s)"),
    N_("can't open '%(filename)s': %(error)s"),
    N_("argument '%(argument_name)s' is deprecated"),  # 3.13
    N_("command '%(parser_name)s' is deprecated"),  # 3.13
    N_("option '%(option)s' is deprecated"),  # 3.13
)

# argparse's messages that no command line brings up: a parser built wrong (a bug of cnnlab's,
# raised while the parser is built) or a branch argparse marks 'shouldn't ever get here'. They
# stay English, as Python's tracebacks do.
NOT_SHOWN = (
    ".__call__() not defined",
    "conflicting subparser: %s",
    "conflicting subparser alias: %s",
    'argument "-" with mode %r',
    "cannot merge actions - two groups are named %r",
    "'required' is an invalid argument for positionals",
    "invalid option string %(option)r: must start with a character %(prefix_chars)r",
    "dest= is required for options like %r",
    "invalid conflict_resolution value: %r",
    "conflicting option string: %s",
    "conflicting option strings: %s",
    "mutually exclusive arguments must be optional",
    "cannot have multiple subparser arguments",
    "unexpected option string: %s",
    "%r is not callable",
)


def ngettext(singular: str, plural: str, count: int) -> str:
    """gettext's ngettext on cnnlab's catalogue: each form is a message of its own (Korean has one
    form, and the .po stays plain msgid/msgstr pairs)."""
    return _(singular if count == 1 else plural)


@contextmanager
def speaking_our_language() -> Iterator[None]:
    """argparse prints in the current language (`using_language`'s, else LC_ALL, LC_MESSAGES,
    LANG) inside the block, and as before it after.

    argparse offers no hook of its own: a subclass of ArgumentParser or HelpFormatter would reach
    'usage: ' and the headings, but not ArgumentError's 'argument %s: %s', nor the messages
    _get_value, _check_value and _match_argument build inside their bodies (copying those bodies
    would tie cnnlab to one Python's argparse). Binding argparse's two names reaches every message
    of any version, and only while a command runs (in one thread: main() is one command at a time).
    """
    usual = argparse._, argparse.ngettext
    argparse._, argparse.ngettext = _, ngettext
    try:
        yield
    finally:
        argparse._, argparse.ngettext = usual


def display_width(text: str) -> int:
    """The terminal columns `text` takes: two for a wide character (Hangul, CJK), else one."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def wrap(text: str, width: int) -> list[str]:
    """`text`'s words in lines of at most `width` columns (a longer word alone on its line)."""
    lines, line = [], ""
    for word in text.split():
        joined = f"{line} {word}" if line else word
        if line and display_width(joined) > width:
            lines.append(line)
            joined = word
        line = joined
    return [*lines, line] if line else lines


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, wrapping text that holds wide characters by display width (argparse
    fills a line with 78 characters, which Korean draws over up to 156 columns). Text without
    them goes through argparse's own wrapping: the English help stays argparse's to the byte.

    _split_lines and _fill_text are the methods argparse's own Raw*HelpFormatter classes
    override; _format_usage gets a stand-in prefix as wide as '사용법: ' so that the wrapped
    usage lines line up under the program's name."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        if display_width(text) == len(text):
            return super()._split_lines(text, width)
        return wrap(self._whitespace_matcher.sub(" ", text).strip(), width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if display_width(text) == len(text):
            return super()._fill_text(text, width, indent)
        text = self._whitespace_matcher.sub(" ", text).strip()
        return "\n".join(indent + line for line in wrap(text, width - len(indent)))

    def _format_usage(self, usage, actions, groups, prefix) -> str:
        prefix = argparse._("usage: ") if prefix is None else prefix
        extra = display_width(prefix) - len(prefix)
        if not extra:
            return super()._format_usage(usage, actions, groups, prefix)
        stand_in = "u" * display_width(prefix)
        text = super()._format_usage(usage, actions, groups, stand_in)
        return prefix + text.removeprefix(stand_in)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with `HelpFormatter` unless told otherwise; add_subparsers makes its
    subparsers of the same class, so every cnnlab command gets it."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
