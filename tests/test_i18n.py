"""Korean output: `--lang ko` and LANG=ko_*, the catalogue complete and compiled, English untouched."""

from __future__ import annotations

import gettext
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import cnnlab
from cnnlab.i18n import (
    LOCALE_DIR,
    _,
    carrying_language,
    current_language,
    language_from_environment,
    translate,
    using_language,
)

ROOT = Path(__file__).resolve().parent.parent
PO = LOCALE_DIR / "ko" / "LC_MESSAGES" / "cnnlab.po"
MO = PO.with_suffix(".mo")
# What cnnlab/i18n.py's `pybabel extract` line marks: _ (gettext's default), N_, and the
# descriptions of explain/kernels.py's Kernel(...) (4th argument) and spec/kinds.py's LayerKind(...) (2nd).
KEYWORDS = {"_": None, "N_": None, "Kernel": (4,), "LayerKind": (2,)}
HANGUL = re.compile("[\uac00-\ud7a3]")


@pytest.fixture
def english_environment(monkeypatch):
    """No locale variables: the language comes from --lang or the variable a test sets."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _catalogue() -> dict[str, str]:
    with PO.open("rb") as file:
        return {m.id: m.string for m in read_po(file) if m.id}


def test_summary_in_korean(cli, english_environment):
    result = cli("summary", "default", "--lang", "ko")
    assert result.code == 0, result.err
    for word in ("층", "출력", "파라미터", "합계", "수용 영역", "이미지 한 장당 FLOPs"):
        assert word in result.out
    for word in ("layer", "how the size comes about", "parameters:", "FLOPs per image", "total"):
        assert word not in result.out
    # the numbers are the English ones, only the words change
    english = cli("summary", "default")
    assert re.findall(r"\d[\d,]*", english.out) == re.findall(r"\d[\d,]*", result.out)


def test_summary_explain_in_korean(cli, english_environment):
    result = cli("summary", "tutorial", "--explain", "--lang", "ko")
    assert result.code == 0, result.err
    assert "입력: 1x28x28 (채널 x 높이 x 너비)" in result.out
    out = " ".join(result.out.split())  # each layer's paragraph, wherever the console wrapped it
    assert "출력 크기는 변마다 floor((28 + 2*1 - 1*(3-1) - 1)/1) + 1 = 28 (높이와 너비)" in out
    assert "파라미터 (3*3*1/1 + 1)*32 = 320개" in out and "수용 영역" in out
    for english in ("receptive field", "Each side", "parameters.", "height", "FLOPs per image"):
        assert english not in out


def test_lang_before_the_command_too(cli, english_environment):
    assert "합성곱" in cli("--lang", "ko", "explain", "conv", "--brief").out
    # the option nearest the command wins
    assert "convolution:" in cli("--lang", "ko", "explain", "conv", "--brief", "--lang", "en").out


def test_lang_refuses_a_language_without_catalogue(cli):
    result = cli("summary", "default", "--lang", "fr")
    assert result.code == 2 and "invalid choice: 'fr'" in result.err


def test_explain_follows_lang_variable(cli, english_environment):
    english_environment.setenv("LANG", "ko_KR.UTF-8")
    result = cli("explain", "conv", "--max-steps", "1")
    assert result.code == 0, result.err
    for word in (
        "합성곱",
        "커널",
        "스트라이드",
        "패딩",
        "출력 크기",
        "단계 1/9",
        "지금까지의 출력",
    ):
        assert word in result.out
    for word in ("convolution:", "stride", "output size", "step 1/9", "more steps"):
        assert word not in result.out
    assert "출력: [[4,3,4],[2,4,3],[2,3,4]]" in result.out  # seed 001's answer, unchanged


@pytest.mark.parametrize(
    "argv",
    [["pool"], ["padding"], ["stride"], ["conv", "--channels", "2", "--input", "random:4x4"]],
)
def test_every_explain_topic_in_korean(cli, english_environment, argv):
    result = cli("explain", *argv, "--lang", "ko")
    assert result.code == 0, result.err
    assert HANGUL.search(result.out)
    words = result.out.replace("output[", "")  # output[0][1] is the cell's index, as in code
    for word in ("output", "window", "channel", "padding ", "stride "):
        assert word not in words, word


def test_locale_variables_in_posix_order(english_environment):
    assert language_from_environment({"LANG": "ko_KR.UTF-8"}) == "ko"
    assert language_from_environment({"LC_MESSAGES": "ko_KR", "LANG": "en_US.UTF-8"}) == "ko"
    assert language_from_environment({"LC_ALL": "C", "LANG": "ko_KR.UTF-8"}) == "en"
    assert language_from_environment({"LANG": "fr_FR.UTF-8"}) == "en"
    assert language_from_environment({}) == "en"


@pytest.mark.slow  # two start-ups of the real command
def test_lc_all_overrides_lang_in_a_real_process(english_environment):
    """The installed `cnnlab` script, as a shell runs it."""
    cnnlab_script = Path(sys.executable).parent / "cnnlab"
    env = {**os.environ, "LANG": "ko_KR.UTF-8"}
    argv = [str(cnnlab_script), "explain", "stride", "--brief"]
    korean = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert korean.returncode == 0, korean.stderr
    assert "스트라이드" in korean.stdout
    english = subprocess.run(
        argv, env={**env, "LC_ALL": "C"}, capture_output=True, text=True, timeout=120
    )
    assert "스트라이드" not in english.stdout and "stride:" in english.stdout


def test_kernels_list_in_korean(cli, english_environment):
    result = cli("kernels", "--list", "--lang", "ko")
    assert result.code == 0, result.err
    assert "sobel-x: 가로 방향 기울기" in result.out and "시드의 Blur" in result.out
    assert "gradient" not in result.out and "the seeds'" not in result.out


@pytest.mark.slow
def test_eval_in_korean(cli, capsys, english_environment, tmp_path):
    run = cnnlab.train(
        model="conv(4,3) relu maxpool(2) flatten fc(10)",
        data="shapes",
        train_size=200,
        test_size=100,
        epochs=1,
        quiet=True,
        out=str(tmp_path / "run"),
    )
    capsys.readouterr()  # what training printed
    result = cli("eval", str(run.path), "--lang", "ko", "--top", "3")
    assert result.code == 0, result.err
    for word in ("정확도", "손실", "클래스별", "정밀도", "재현율", "저장"):
        assert word in result.out
    for word in ("accuracy", "per class", "precision", "wrote"):
        assert word not in result.out
    for name in run.classes:  # class names are data, never translated
        assert name in result.out


def test_the_command_language_does_not_outlive_the_command(cli, english_environment):
    cli("summary", "default", "--lang", "ko")
    assert current_language() == "en"
    with using_language("ko"):
        cli("explain", "conv", "--brief", "--lang", "en")
        assert current_language() == "ko"


def test_translate_takes_the_language_explicitly():
    """What the server needs: a language per request, whatever the process's is."""
    with using_language("en"):
        assert translate("kernel", "ko") == "커널"
        assert translate("kernel", "ko_KR.UTF-8") == "커널"
        assert translate("kernel") == "kernel"
    assert translate("kernel", "en") == "kernel"
    assert translate("kernel", "fr") == "kernel"  # no catalogue: the source


def test_the_language_is_per_context_so_concurrent_requests_keep_their_own(english_environment):
    """Two asyncio tasks (two requests) choose different languages and interleave: each `_`
    speaks its own task's, and neither leaks into the caller's."""
    import asyncio

    async def request(language: str, both_chosen: asyncio.Barrier) -> list[str]:
        with using_language(language):
            await both_chosen.wait()  # the other request has chosen its language meanwhile
            said = [_("kernel")]
            await asyncio.sleep(0)
            said.append(await asyncio.to_thread(_, "kernel"))  # a thread given the context
            return said

    async def both() -> list[list[str]]:
        barrier = asyncio.Barrier(2)
        return await asyncio.gather(request("ko", barrier), request("en", barrier))

    assert asyncio.run(both()) == [["커널", "커널"], ["kernel", "kernel"]]
    assert current_language() == "en"


def test_a_thread_speaks_the_language_it_was_handed(english_environment):
    """A plain thread starts with no choice (the environment's language); `carrying_language`
    hands it the one chosen where the work was made (a --lang ko command's decoding pool)."""
    from concurrent.futures import ThreadPoolExecutor

    with using_language("ko"), ThreadPoolExecutor(1) as pool:
        assert pool.submit(_, "kernel").result() == "kernel"  # the environment's: English
        assert pool.submit(carrying_language(_), "kernel").result() == "커널"
        assert pool.submit(current_language).result() == "en"  # nothing left behind in it
    with pytest.raises(ValueError, match="no catalogue"), using_language("fr"):
        pass


def test_every_message_is_translated_with_the_same_fields():
    catalogue = _catalogue()
    assert catalogue
    for msgid, msgstr in catalogue.items():
        assert msgstr, f"no translation for {msgid!r}"
        fields = sorted(re.findall(r"\{(\w*)\}", msgid))
        assert sorted(re.findall(r"\{(\w*)\}", msgstr)) == fields, msgid


def test_the_catalogue_holds_every_marked_message_of_the_code():
    """A new _("...") without its translation fails here: run the pybabel lines of cnnlab/i18n.py."""
    marked = {
        message
        for _file, _line, message, _comments, _context in extract_from_dir(
            ROOT / "cnnlab", keywords=KEYWORDS, comment_tags=()
        )
        if isinstance(message, str)
    }
    assert marked == set(_catalogue())


def test_the_compiled_catalogue_is_the_po_file():
    """cnnlab/locale/ko/LC_MESSAGES/cnnlab.mo is committed: it must be `pybabel compile` of the .po."""
    with MO.open("rb") as file:
        compiled = gettext.GNUTranslations(file)
    compiled_messages = {k: v for k, v in compiled._catalog.items() if k}
    assert compiled_messages == _catalogue()


def test_the_language_module_is_cheap():
    """cnnlab.i18n sits at the bottom: importing it loads neither torch nor rich."""
    code = "import sys, cnnlab.i18n; print(sorted({'torch', 'rich', 'numpy'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A tiny run (one conv, one epoch on 200 shapes): enough for cam, patches and embed to run."""
    return cnnlab.train(
        model="conv(4,3) relu maxpool(2) flatten fc(10)",
        data="shapes",
        train_size=200,
        test_size=60,
        epochs=1,
        quiet=True,
        out=str(tmp_path_factory.mktemp("i18n") / "run"),
    )


def test_cam_in_korean(cli, capsys, english_environment, small_run, tmp_path):
    capsys.readouterr()  # what training printed
    out = str(tmp_path / "cam.png")
    result = cli("cam", str(small_run.path), "test:0", "--sanity", "--out", out, "--lang", "ko")
    assert result.code == 0, result.err
    for word in (
        "실제 클래스",
        "클래스",
        "예측",
        "층 relu1 (conv1 뒤 relu)",
        "특징 맵",
        "수용 영역",
    ):
        assert word in result.out, word
    assert "무작위 가중치 모델과의 순위 상관" in result.out and "저장" in result.out
    for word in ("true class", "predicted", "map, each cell sees", "rank correlation", "wrote"):
        assert word not in result.out, word
    # the numbers are the English run's, only the words change
    english = cli("cam", str(small_run.path), "test:0", "--sanity", "--out", out)
    found = re.search(
        r"layer relu1 \(conv1 after relu\): (\d+x\d+) map, each cell sees (\d+x\d+) px", english.out
    )
    assert found, english.out
    size, field = found.groups()
    assert f"층 relu1 (conv1 뒤 relu): {size} 특징 맵, 각 칸의 수용 영역 {field} px" in result.out
    assert re.findall(r"\d+x\d+", english.out) == re.findall(r"\d+x\d+", result.out)


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (["patches", "--top", "2", "--channels", "2"], ("채널", "수용 영역", "상위 이미지")),
        (["embed"], ("특징", "분산", "클래스별", "오분류")),
    ],
)
def test_patches_and_embed_in_korean(
    cli, capsys, english_environment, small_run, tmp_path, command, words
):
    capsys.readouterr()
    out = str(tmp_path / "figure.png")
    result = cli(command[0], str(small_run.path), *command[1:], "--out", out, "--lang", "ko")
    assert result.code == 0, result.err
    for word in (*words, "저장"):
        assert word in result.out, word
    for word in ("each cell sees", "per class", "features entering", "wrote"):
        assert word not in result.out, word
