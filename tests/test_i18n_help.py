"""argparse in the command's language (issue 26, "Korean everywhere"): `--help`, usage lines and
parse errors under --lang ko (or LANG=ko_KR), English unchanged, and argparse English again in
the same process once `main()` has returned."""

from __future__ import annotations

import argparse
import gettext
import re
from collections import Counter

import pytest
from babel.messages.extract import extract_python
from test_i18n import _catalogue
from test_i18n_every_command import HANGUL, _untranslated

from cnnlab.cli import build_parser
from cnnlab.cli.argparse_text import (
    NOT_SHOWN,
    SHOWN,
    display_width,
    speaking_our_language,
    wrap,
)
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


def _command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """('',), ('summary',), ..., ('datasets', 'show'), ('explain', 'conv'), ...: every parser."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, (*path, name))


def _parser_names(parser: argparse.ArgumentParser) -> set[str]:
    """What a parser's help shows as it is, in any language: its commands' names, options,
    metavars and default metavars (DATA_DIR), positionals' names and choices."""
    names = set()
    for action in parser._actions:
        names.update(action.option_strings)
        metavars = action.metavar if isinstance(action.metavar, tuple) else [action.metavar]
        names.update(m for m in metavars if m)
        names.update([action.dest, action.dest.upper()] if action.dest != "help" else [])
        names.update(str(choice) for choice in action.choices or ())
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names |= _parser_names(sub)
    return names


def _names_pattern() -> re.Pattern[str]:
    """The names of every parser, and the values a training setting takes (sgd, onecycle, ...)."""
    from cnnlab.training import config

    names = _parser_names(build_parser())
    names |= {*config.OPTIMIZERS, *config.SCHEDULES, *config.DEVICES, *config.BALANCES}
    words = sorted((n for n in names if len(n) > 1), key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, words)) + r")(?![\w-])")


PATHS = list(_command_paths(build_parser()))
NAMES = _names_pattern()
# What a user types with a colon: random:HxW, folder:PATH, SPLIT:INDEX, test:0 (not 'Default: ').
TYPED = re.compile(r"(?<![\w-])[\w-]+:[\w.\[]\S*")


def _help(cli, monkeypatch, path: tuple[str, ...], *extra: str) -> str:
    """`cnnlab PATH --help EXTRA`'s output, each paragraph on one line (COLUMNS=10000)."""
    monkeypatch.setenv("COLUMNS", "10000")
    result = cli(*path, "--help", *extra)
    assert result.code == 0 and result.err == "", result
    return result.out


def _sentences_of_help(text: str, examples_prefix: str) -> list[str]:
    """The untranslated English of a --help: what the every-command scanner finds once the
    parsers' names are taken out, and the epilog's example command lines ('예: cnnlab ... |
    cnnlab ...', each checked to be a command line)."""
    kept = []
    for line in text.splitlines():
        if line.startswith(examples_prefix):
            commands = line.removeprefix(examples_prefix).split(" | ")
            assert all(c.startswith("cnnlab ") for c in commands), line
            continue
        kept.append(NAMES.sub(" ", TYPED.sub(" ", line)))
    return _untranslated("\n".join(kept))


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "cnnlab")
def test_every_help_in_korean_says_no_english_sentence(cli, monkeypatch, path):
    out = _help(cli, monkeypatch, path, "--lang", "ko")
    assert out.startswith(f"사용법: {' '.join(('cnnlab', *path))}"), out
    assert "\n옵션:\n" in out and "이 도움말을 보여 주고 끝냅니다" in out, out
    assert _sentences_of_help(out, "예: ") == [], out


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "cnnlab")
def test_every_help_in_english_keeps_its_words(cli, monkeypatch, path):
    """The English --help is the source: argparse's words, no Hangul, and English sentences the
    scanner above sees (it is not vacuous). The Korean one differs in words only: the same usage
    line, the same options named, every number of the English (defaults, limits) kept."""
    english = _help(cli, monkeypatch, path)
    korean = _help(cli, monkeypatch, path, "--lang", "ko")
    assert english.startswith("usage: cnnlab") and "\noptions:\n" in english, english
    assert not HANGUL.search(english), english
    assert "show this help message and exit" in english and _sentences_of_help(
        english, "examples: "
    )
    assert korean != english
    usage = korean.split("\n\n", 1)[0] + "\nan error line"  # the usage block, as _usage reads it
    assert _usage(usage) == _usage(english.split("\n\n", 1)[0] + "\nan error line")
    flags = re.compile(r"--[a-z0-9][a-z0-9-]*")  # ASCII: "--toml이면" names --toml
    assert set(flags.findall(korean)) == set(flags.findall(english))
    numbers = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?:e-?\d+)?")
    left_out = Counter(numbers.findall(english)) - Counter(numbers.findall(korean))
    assert not left_out, left_out


def test_help_follows_the_lang_variable(cli, monkeypatch):
    monkeypatch.setenv("LANG", "ko_KR.UTF-8")
    assert "모델을 학습합니다" in _help(cli, monkeypatch, ("train",))
    monkeypatch.setenv("LC_ALL", "C")  # the first variable set decides, as in POSIX
    assert "Train a model" in _help(cli, monkeypatch, ("train",))


def test_cnnlab_without_a_command_prints_its_help_in_korean(cli):
    """No command: main() prints the help itself, in the language the command line asked for."""
    result = cli("--lang", "ko")
    assert result.code == 0 and result.out.startswith("사용법: cnnlab"), result
    assert "이미지 분류를 위한 합성곱 신경망" in result.out and "\n옵션:\n" in result.out


def test_train_help_fills_its_templates_after_translating(cli, monkeypatch):
    """The learning-rate and weight-decay defaults come from training's tables, in both languages."""
    english = _help(cli, monkeypatch, ("train",))
    korean = _help(cli, monkeypatch, ("train",), "--lang", "ko")
    assert "sqrt(batch/128) (default: sgd 0.1, adam 1e-3, adamw 2e-3)" in english
    assert "(default: sgd 5e-4, 5e-3 under 5,000 training images; adam 0; adamw 0.05)" in english
    assert "sqrt(batch/128) (기본값: sgd 0.1, adam 1e-3, adamw 2e-3)" in korean
    assert "(기본값: sgd 5e-4, 학습 이미지 5,000장 미만이면 5e-3; adam 0; adamw 0.05)" in korean
    assert "80-100%)" in korean and "(기본값: 8 또는 프리셋의 레시피" in korean
    assert not re.search(r"\{\w*\}", english + korean)  # no template field left unfilled


def _parsers(parser: argparse.ArgumentParser):
    """The parser and every subparser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                yield from _parsers(sub)


def test_every_help_string_goes_through_the_catalogue():
    """Built under Korean, every description, help and commands' help holds Hangul, and every
    epilog is the translated 'examples:': short help ('print JSON', 'List runs.') that the
    sentence scanner cannot tell from names is checked here."""
    with using_language("ko"), speaking_our_language():  # as main() builds it (-h's help)
        parser = build_parser()
    texts = 0
    for each in _parsers(parser):
        assert each.epilog is None or each.epilog.startswith("예: cnnlab "), each.prog
        actions = [*each._actions]
        for action in each._actions:
            if isinstance(action, argparse._SubParsersAction):
                actions += action._choices_actions  # the commands' one-line help
        helps = [a.help for a in actions if a.help not in (None, argparse.SUPPRESS)]
        for text in [each.description, *helps]:
            if text is not None:
                texts += 1
                assert HANGUL.search(text), (each.prog, text)
    assert texts >= 250, texts


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "cnnlab")
def test_korean_help_fits_the_terminal(cli, monkeypatch, path):
    """A Hangul syllable takes two columns: wrapped by characters, as argparse counts, a Korean
    help line would run to twice the terminal's width. Only a usage part argparse cannot break
    ('[--padding-mode {zeros,reflect,replicate,circular}]') may pass the edge, as in English."""
    monkeypatch.setenv("COLUMNS", "80")
    result = cli(*path, "--help", "--lang", "ko")
    assert result.code == 0, result
    for line in result.out.splitlines():
        fits = display_width(line) <= 80 or re.fullmatch(r" *\[[^\[\]]*\]", line)
        assert fits, (display_width(line), line)
    usage = result.out.split("\n\n", 1)[0].splitlines()
    indent = " " * display_width(f"사용법: {' '.join(('cnnlab', *path))} ")
    for line in usage[1:]:  # under the program's name, as the English usage lines are
        assert line.startswith(indent) and line[len(indent)] != " ", usage


def test_wrap_counts_columns_not_characters():
    assert display_width("사용법: ") == 8 and display_width("usage: ") == 7
    assert wrap("학습률 범위 테스트 lr 1e-3", 10) == ["학습률", "범위", "테스트 lr", "1e-3"]
    assert wrap("   ", 10) == [] and wrap("averyveryverylongword x", 5) == [
        "averyveryverylongword",
        "x",
    ]
