"""argparse in the command's language (issue 26, "Korean everywhere"): `--help`, usage lines and
parse errors under --lang ko (or LANG=ko_KR), English unchanged, and argparse English again in
the same process once `main()` has returned."""

from __future__ import annotations

import argparse
import gettext
import re

import pytest
from babel.messages.extract import extract_python
from test_i18n import _catalogue
from test_i18n_every_command import HANGUL, _untranslated

from cnnlab.cli.argparse_text import NOT_SHOWN, SHOWN
from cnnlab.i18n import using_language

# printf-style placeholders, as argparse fills them: %(name)s, %s, %r, and %% for a percent sign
PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[sdr%]")
# A command line argparse refuses, and what its Korean error says.
USAGE_ERRORS = {
    "missing argument": (["summary"], "다음 인자가 필요합니다: model"),
    "missing option": (["explain", "cell", "latest", "test:0"], "다음 인자가 필요합니다: --layer"),
    "missing topic": (["explain"], "다음 인자가 필요합니다: TOPIC"),
    "invalid command": (["nosuch"], "인자 COMMAND: 잘못된 선택: 'nosuch' (다음 중에서 고르세요:"),
    "invalid choice": (["eval", "latest", "--split", "nope"], "인자 --split: 잘못된 선택: 'nope'"),
    "unrecognized argument": (["models", "--bogus"], "알 수 없는 인자: --bogus"),
    "bad type": (["explain", "conv", "--seed", "x"], "인자 --seed: 잘못된 int 값: 'x'"),
    "bad number or auto": (["train", "--lr", "x"], "인자 --lr: 숫자나 auto여야 합니다"),
    "missing value": (["summary", "default", "--input"], "인자 --input: 값 하나가 필요합니다"),
}


def _error_line(err: str) -> str:
    """The last line argparse printed: 'PROG: error: MESSAGE' (after the usage lines)."""
    return err.rstrip("\n").splitlines()[-1]


def _usage(err: str) -> str:
    """The usage lines without their prefix ('usage: ', '사용법: '): names only, any language.
    (The continuation lines are indented by the prefix's length: compared without indent.)"""
    lines = err.split(": ", 1)[1].splitlines()[:-1]
    return " ".join(" ".join(lines).split())


@pytest.mark.parametrize("case", USAGE_ERRORS)
def test_usage_errors_in_korean(cli, case):
    """Korean usage and error lines, status 2; the English ones are argparse's, unchanged."""
    argv, words = USAGE_ERRORS[case]
    result = cli(*argv, "--lang", "ko")
    assert result.code == 2, result
    assert result.err.startswith("사용법: cnnlab"), result.err
    line = _error_line(result.err)
    assert re.match(r"cnnlab[\w -]*: 오류: ", line), line
    assert words in line, line
    message = line.split(": 오류: ", 1)[1]  # after the command's name ('cnnlab explain cell')
    assert _untranslated(message) == [], line
    english = cli(*argv)
    assert english.code == 2 and english.err.startswith("usage: cnnlab"), english.err
    assert re.match(r"cnnlab[\w -]*: error: ", _error_line(english.err))
    assert not HANGUL.search(english.err), english.err
    assert _usage(result.err) == _usage(english.err)


@pytest.mark.parametrize("case", ["missing argument", "invalid choice", "bad type"])
def test_usage_errors_follow_the_lang_variable(cli, monkeypatch, case):
    monkeypatch.setenv("LANG", "ko_KR.UTF-8")
    argv, words = USAGE_ERRORS[case]
    result = cli(*argv)
    assert result.code == 2 and result.err.startswith("사용법: ") and words in result.err


def _plain_argparse_says(capsys) -> str:
    """What a plain ArgumentParser of the test's own prints for a missing and a wrong argument."""
    capsys.readouterr()
    plain = argparse.ArgumentParser(prog="plain")
    plain.add_argument("x", choices=["a"])
    for argv in ([], ["b"]):
        with pytest.raises(SystemExit):
            plain.parse_args(argv)
    return capsys.readouterr().err + plain.format_help()


PLAIN_ENGLISH = (
    "usage: plain [-h] {a}\nplain: error: the following arguments are required: x\n"
    "usage: plain [-h] {a}\nplain: error: argument x: invalid choice: 'b' (choose from 'a')\n"
    "usage: plain [-h] {a}\n\npositional arguments:\n  {a}\n\n"
    "options:\n  -h, --help  show this help message and exit\n"
)


def test_argparse_speaks_english_again_after_main(cli, capsys):
    """In-process callers (tests, notebooks) get the usual argparse back, however main() ended."""
    for argv in (
        ["summary"],  # a usage error: SystemExit(2) out of main()
        ["summary", "--help"],  # SystemExit(0)
        ["summary", "no-such-model"],  # a CnnlabError: main() returns 2
        ["models"],  # the command ran
    ):
        result = cli(*argv, "--lang", "ko")
        if argv[-1] != "models":  # argparse's words, or cnnlab's error line
            assert result.err.startswith(("사용법: ", "오류: ")) or "옵션:" in result.out, result
        assert argparse._ is gettext.gettext and argparse.ngettext is gettext.ngettext
        assert _plain_argparse_says(capsys) == PLAIN_ENGLISH
    with using_language("ko"):  # a notebook that chose Korean for cnnlab's own output
        assert _plain_argparse_says(capsys) == PLAIN_ENGLISH


def _argparse_messages() -> set[str]:
    """Every message this Python's argparse.py translates (its `_` and `ngettext` calls)."""
    with open(argparse.__file__, "rb") as source:
        found = extract_python(source, {"_": None, "ngettext": (1, 2)}, [], {})
        messages = set()
        for _line, _function, message, _comments in found:
            messages.update(message if isinstance(message, tuple) else [message])
    return {m for m in messages if m}


def test_every_message_of_this_pythons_argparse_is_listed():
    """A Python whose argparse says something new fails here: add it to SHOWN (and translate it)
    or, when no command line can bring it up, to NOT_SHOWN."""
    messages = _argparse_messages()
    assert len(messages) >= 30  # the extraction found argparse's calls
    assert messages <= set(SHOWN) | set(NOT_SHOWN), messages - set(SHOWN) - set(NOT_SHOWN)
    assert not set(SHOWN) & set(NOT_SHOWN)


def test_argparse_messages_are_translated_with_their_placeholders():
    """argparse fills its messages and the help strings with %: a msgstr that lost or changed
    a %(default)s, %s or %% would raise or mislead (only the order may change)."""
    catalogue = _catalogue()
    for message in SHOWN:
        assert catalogue.get(message), f"no translation for {message!r}"
        assert catalogue[message].endswith("\n") == message.endswith("\n"), message
    for message, translated in catalogue.items():
        placeholders = sorted(PLACEHOLDER.findall(message))
        assert sorted(PLACEHOLDER.findall(translated)) == placeholders, message
