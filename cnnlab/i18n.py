r"""Messages in the user's language: English in the code, other languages from gettext catalogues.

The bottom layer, beside text.py, and cheap: the standard library only, no torch; a catalogue is
read the first time its language is asked for. Use:

    from cnnlab.i18n import _, N_
    say(_("wrote {path}").format(path=path))     # named fields: a translation may reorder them
    NOTE = N_("a constant")                      # marked for extraction; translate where shown: _(NOTE)
    translate("parameters: {count}", "ko")       # an explicit language (the pages' dictionaries)

The command line sets the language once per command (`--lang`, else LC_ALL, LC_MESSAGES,
LANG); library code calls `_` while it builds its output, never at import time.

The choice is a context variable, not a global: the server sets it per request
(`cnnlab/server/language.py`), so that `_` called anywhere while a request is served (its
asyncio task, and the threads it hands work to with its context) speaks that request's
language while a concurrent request speaks its own. A thread started by hand starts with
no choice (the environment's language): hand it work through `carrying_language(fn)`.

The catalogues (English is the source; `cnnlab/locale/ko/LC_MESSAGES/cnnlab.po` the Korean):

    pybabel extract -k N_ -k Kernel:4 -k LayerKind:2 --no-location --omit-header --sort-output \
        -o /tmp/cnnlab.pot cnnlab   # Kernel:4, LayerKind:2: the kernels' and layer kinds' descriptions
    pybabel update -i /tmp/cnnlab.pot -d cnnlab/locale -D cnnlab --no-fuzzy-matching --ignore-obsolete
    (translate the new, empty entries of the .po; keep each {field}, and argparse's %(name)s,
     %s and %% in help strings and its messages, as they are)
    pybabel compile -d cnnlab/locale -D cnnlab

The command line's help is translated when the parser is built (`help=_("...")`), and
argparse's own words (usage, headings, its error lines) come from the same catalogue while a
command runs (cnnlab/cli/argparse_text.py). The pages' words are in the same catalogue:
cnnlab/server/page_text.py marks each with N_, and the server sends them to the browser as
GET /api/i18n.js (tests/test_i18n_pages.py).

The compiled `.mo` is committed, so `pip install -e .` works with no build step;
tests/test_i18n.py fails when the `.mo` or the `.po` falls behind the code.
"""

from __future__ import annotations

import functools
import gettext
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import ParamSpec, TypeVar

DOMAIN = "cnnlab"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
SOURCE_LANGUAGE = "en"
LANGUAGES = ("en", "ko")  # what --lang accepts: the source and each catalogue
# Where a POSIX program looks for its message language, in order (the first one set wins).
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")

# set_language's choice in this context (the command, or the request being served); None:
# follow the environment. Each asyncio task and each thread has its own context.
_chosen: ContextVar[str | None] = ContextVar("cnnlab_language", default=None)
P = ParamSpec("P")
R = TypeVar("R")


def language_from_environment(environ: Mapping[str, str] | None = None) -> str:
    """'ko' for LANG=ko_KR.UTF-8 (or LC_ALL, LC_MESSAGES); the source language otherwise.

    The first variable that is set decides, as in POSIX: LC_ALL=C with LANG=ko_KR is English.
    """
    environ = os.environ if environ is None else environ
    for name in LOCALE_VARIABLES:
        value = environ.get(name, "")
        if value:
            return normalize_language(value) or SOURCE_LANGUAGE
    return SOURCE_LANGUAGE


def normalize_language(value: str | None) -> str | None:
    """'ko_KR.UTF-8' -> 'ko', 'en-US' -> 'en'; None for a language without a catalogue ('C', 'fr')."""
    if not value:
        return None
    code = value.split(".", 1)[0].split("@", 1)[0].replace("-", "_").split("_", 1)[0].lower()
    return code if code in LANGUAGES else None


def _checked(language: str | None) -> str | None:
    if language is not None and language not in LANGUAGES:
        raise ValueError(f"no catalogue for {language!r}; languages: {', '.join(LANGUAGES)}")
    return language


def set_language(language: str | None) -> None:
    """Choose the language `_` uses in this context (this thread, or this asyncio task and the
    tasks it starts): 'en', 'ko', or None to follow the environment."""
    _chosen.set(_checked(language))


@contextmanager
def using_language(language: str | None) -> Iterator[None]:
    """`set_language` for a block, then the choice before it again (one command, one request)."""
    token = _chosen.set(_checked(language))
    try:
        yield
    finally:
        _chosen.reset(token)


def current_language() -> str:
    """The language `_` uses now."""
    return _chosen.get() or language_from_environment()


def carrying_language(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, to be called in another thread, speaking the language chosen here and now.

    A new thread (a ThreadPoolExecutor's too) starts with no choice, so `_` there would
    follow the environment instead of `--lang` or the request.
    """
    language = _chosen.get()

    @functools.wraps(fn)
    def in_language(*args: P.args, **kwargs: P.kwargs) -> R:
        token = _chosen.set(language)
        try:
            return fn(*args, **kwargs)
        finally:
            _chosen.reset(token)

    return in_language


@cache
def catalogue(language: str) -> gettext.NullTranslations:
    """The translations of one language (read once); English, or a missing file, gives the source."""
    if normalize_language(language) in (None, SOURCE_LANGUAGE):
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)


def translate(message: str, language: str | None = None) -> str:
    """`message` in `language` (any spelling normalize_language reads; None: the current one)."""
    chosen = normalize_language(language) if language else current_language()
    return catalogue(chosen or SOURCE_LANGUAGE).gettext(message)


def _(message: str) -> str:
    """`message` in the current language: what the command line and the library print."""
    return catalogue(current_language()).gettext(message)


def N_(message: str) -> str:  # noqa: N802 (gettext's conventional name)
    """Marks a constant for extraction without translating it; translate it where it is shown."""
    return message


class Said(str):
    """English text (for JSON and files) that also carries its translation, `shown`, for people."""

    shown: str


def said(template: str, **fields: object) -> Said:
    """`template` (N_-marked) filled in English, with `.shown` filled in the current language."""
    text = Said(template.format(**fields))
    text.shown = _(template).format(**{k: shown(v) for k, v in fields.items()})
    return text


def shown(text: object) -> object:
    """A `said` text's translation; any other value as it is."""
    return getattr(text, "shown", text)


SPLIT_NAMES = (N_("train"), N_("val"), N_("test"))  # a data set's parts, as --split names them


def split_name(split: str) -> Said:
    """A split's name ('test'), shown in the current language ('테스트'); another name as it is."""
    return said(split) if split in SPLIT_NAMES else said("{split}", split=split)


def data_split(data: str, split: str) -> Said:
    """'shapes test' (for JSON and files), shown as 'shapes 테스트' (for people)."""
    return said("{data} {split}", data=data, split=split_name(split))
