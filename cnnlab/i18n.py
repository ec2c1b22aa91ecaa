r"""Messages in the user's language: English in the code, other languages from gettext catalogues.

The bottom layer, beside text.py, and cheap: the standard library only, no torch; a catalogue is
read the first time its language is asked for. Use:

    from cnnlab.i18n import _, N_
    say(_("wrote {path}").format(path=path))     # named fields: a translation may reorder them
    NOTE = N_("a constant")                      # marked for extraction; translate where shown: _(NOTE)
    translate("parameters: {count}", "ko")       # an explicit language (the server, per request)

The command line sets the language once per command (`--lang`, else LC_ALL, LC_MESSAGES,
LANG); library code calls `_` while it builds its output, never at import time.

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

import gettext
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path

DOMAIN = "cnnlab"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
SOURCE_LANGUAGE = "en"
LANGUAGES = ("en", "ko")  # what --lang accepts: the source and each catalogue
# Where a POSIX program looks for its message language, in order (the first one set wins).
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")

_chosen: str | None = None  # set_language's choice; None: follow the environment


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


def set_language(language: str | None) -> None:
    """Choose the language `_` uses: 'en', 'ko', or None to follow the environment."""
    if language is not None and language not in LANGUAGES:
        raise ValueError(f"no catalogue for {language!r}; languages: {', '.join(LANGUAGES)}")
    global _chosen
    _chosen = language


@contextmanager
def using_language(language: str | None) -> Iterator[None]:
    """`set_language` for a block, then the choice before it again (one command in a process)."""
    global _chosen
    before = _chosen
    set_language(language)
    try:
        yield
    finally:
        _chosen = before


def current_language() -> str:
    """The language `_` uses now."""
    return _chosen or language_from_environment()


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
