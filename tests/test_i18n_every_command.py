"""Every command's human output with --lang ko holds no untranslated English sentence (issue 26,
item 3): one tiny run, trained once, and each command that prints for a person run on it.

What may stay in Latin letters is what test_i18n_korean.py's IDENTIFIER takes out (specs, layer
and class names, paths, options, units), and the names this file adds below; a run of three or
more other English words is a sentence left untranslated.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from serve_support import ServerProcess
from test_i18n_korean import IDENTIFIER, TRAIN, _english_runs

from cnnlab.cli import main

LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE")


def _names() -> re.Pattern[str]:
    """Names the output shows as they are, beyond IDENTIFIER's: layer kinds (lenet5's 'tanh
    flatten tanh'), padding modes (`explain padding`'s columns 'zeros reflect replicate
    circular'), pooling modes, and the registered data sets' class names (`datasets` lists
    fashion-mnist's 'Trouser, Pullover, Dress, ...' and cifar10's 'airplane, automobile, ...'),
    and the kernels' names (`kernels` rows 'box-blur', 'gaussian-blur')."""
    from cnnlab.data.registry import REGISTRY
    from cnnlab.explain.kernels import ALIASES, KERNELS
    from cnnlab.explain.worked import POOL_MODES
    from cnnlab.spec.kinds import LAYER_KINDS, PADDING_MODES

    classes = {name for entry in REGISTRY.values() for name in entry.classes}
    names = {*LAYER_KINDS, *PADDING_MODES, *POOL_MODES, *classes, *KERNELS, *ALIASES}
    names = sorted(names, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, names)) + r")(?![\w-])")


NAMES = _names()
# A file name the output reports writing, such as export's 'model.onnx.json' (no '/' in it, so
# IDENTIFIER's path pattern does not take it).
HANGUL = re.compile("[\uac00-\ud7a3]")
FILE_NAME = re.compile(r"\S+\.(?:json|onnx|pt2|png|svg|py|csv|toml)\b")


def _sentences(out: str) -> list[str]:
    """The English runs of `out` once the names above are taken out too."""
    return _english_runs(NAMES.sub(" ", FILE_NAME.sub(" ", out)))


def _english_words(text: str) -> list[str]:
    return re.findall(
        r"\b[A-Za-z]{2,}\b", IDENTIFIER.sub(" ", NAMES.sub(" ", FILE_NAME.sub(" ", text)))
    )


def _untranslated(out: str) -> list[str]:
    """What of `out` is English: the runs of 3+ words, and what that scanner misses because
    a table's borders or a short phrase cut the run: a line with no Hangul and two or more
    English words ('test accuracy 6.00%', a header '┃ epoch ┃ train loss ┃ ...'), and a table
    header's cell in English ('┃ 층 ┃ tiles ┃')."""
    found = _sentences(out)
    for line in out.splitlines():
        if not HANGUL.search(line) and len(_english_words(line)) >= 2:
            found.append(line.strip())
        if "┃" in line:
            cells = [cell.strip() for cell in line.split("┃")]
            found += [c for c in cells if _english_words(c) and not HANGUL.search(c)]
    return found


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """The one training (`cnnlab train ... --lang ko`, its output kept for the train case), two
    PNG files in a folder for predict, and a folder for what the commands write."""
    root = tmp_path_factory.mktemp("every-command")
    run = root / "runs" / "tiny"
    with pytest.MonkeyPatch.context() as patch:
        for name in LOCALE_VARIABLES:
            patch.delenv(name, raising=False)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["train", *TRAIN, "--out", str(run), "--lang", "ko"])
    assert code == 0, err.getvalue()
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"drawing{i}.png")
    written = root / "written"
    written.mkdir()
    return {"run": run, "train": out.getvalue(), "images": images, "out": written}


# Each command as a function of (run, images, out): its argv without --lang ko.
COMMANDS = {
    "summary": lambda r, i, o: ["summary", "input(1x28x28) conv(4,3,padding=same) relu gap fc(8)"],
    "summary preset": lambda r, i, o: ["summary", "lenet5"],
    "summary --explain": lambda r, i, o: ["summary", "lenet5", "--explain"],
    "models": lambda r, i, o: ["models"],
    "spec": lambda r, i, o: ["spec", "lenet5"],
    "datasets": lambda r, i, o: ["datasets"],
    "datasets show": lambda r, i, o: ["datasets", "show", "shapes", "--out", f"{o}/grid.png"],
    "runs": lambda r, i, o: ["runs", str(r.parent)],
    "eval": lambda r, i, o: ["eval", str(r), "--out", f"{o}/eval", "--top", "4"],
    "plot": lambda r, i, o: ["plot", str(r), "--out", f"{o}/curves.png"],
    "filters": lambda r, i, o: ["filters", str(r), "--out", f"{o}/filters.png"],
    "featuremaps": lambda r, i, o: ["featuremaps", str(r), "test:0", "--out", f"{o}/maps.png"],
    "cam": lambda r, i, o: ["cam", str(r), "test:0", "--sanity", "--out", f"{o}/cam.png"],
    "patches": lambda r, i, o: ["patches", str(r), "--out", f"{o}/patches.png"],
    "embed": lambda r, i, o: ["embed", str(r), "--out", f"{o}/embed.png"],
    "explain conv": lambda r, i, o: ["explain", "conv"],
    "explain pool": lambda r, i, o: ["explain", "pool"],
    "explain padding": lambda r, i, o: ["explain", "padding"],
    "explain stride": lambda r, i, o: ["explain", "stride"],
    "explain cell": lambda r, i, o: ["explain", "cell", str(r), "test:0", "--layer", "conv1"],
    "kernels": lambda r, i, o: ["kernels", "demo", "--out", f"{o}/kernels.png"],
    "kernels --list": lambda r, i, o: ["kernels", "--list"],
    "diagram": lambda r, i, o: ["diagram", "lenet5", "--out", f"{o}/diagram.png"],
    "predict files": lambda r, i, o: [
        "predict",
        str(r),
        str(i / "drawing0.png"),
        str(i / "drawing1.png"),
    ],
    "predict folder": lambda r, i, o: ["predict", str(r), str(i)],
    "export": lambda r, i, o: ["export", str(r), "--out", f"{o}/model.onnx"],
    "code": lambda r, i, o: ["code", str(r), "--out", f"{o}/train_tiny.py"],
    "lr-find": lambda r, i, o: [
        "lr-find",
        *TRAIN[:2],
        "train_size=200",
        "test_size=50",
        "batch_size=20",
        "--out",
        f"{o}/lr.png",
    ],
}


# Words a command's Korean holds where English once stayed inside a Korean line, which the
# scanner cannot see there: pooling's modes in words ('max 풀링' was printed), a run's end, an
# fc's inferred input, a generated data set's source.
KOREAN_WORDS = {
    "explain pool": ("최대 풀링", "최소 풀링", "평균 풀링", "지금까지의 최댓값", "지금까지의 평균"),
    "runs": ("완료",),
    "summary preset": ("in = 400 (자동 계산)",),
    "datasets show": ("생성됨 (시드 0)",),
    # the split a command scored, named in Korean (its JSON keeps 'test')
    "eval": ("(shapes 테스트)",),
    "patches": ("shapes 테스트 이미지",),
    "embed": ("shapes 테스트 이미지",),
}
# Commands whose output is names and numbers only ('FILE: circle 97.0%  (...)', a spec).
NO_WORDS = {"spec", "predict files", "predict folder"}


@pytest.mark.slow  # the module's one-epoch training, then each command on its run
@pytest.mark.parametrize("command", ["train", *COMMANDS])
def test_every_command_says_no_english_sentence_in_korean(cli, capsys, tiny, command):
    capsys.readouterr()  # what the training printed
    if command == "train":
        out = tiny["train"]
        assert "에포크 1/1" in out and "테스트 정확도" in out, out
    else:
        argv = COMMANDS[command](tiny["run"], tiny["images"], tiny["out"])
        result = cli(*argv, "--lang", "ko")
        assert result.code == 0, result.err
        out = result.out
    if command not in NO_WORDS:
        assert HANGUL.search(out), out  # Korean was printed
    assert _untranslated(out) == [], out
    for word in KOREAN_WORDS.get(command, ()):
        assert word in out, (word, out)
    assert not re.search(r"\b(?:max|min|avg) 풀링", out), out


@pytest.mark.slow
def test_the_english_output_would_be_seen(cli, capsys, tiny):
    """The check is not vacuous: the same commands in English hold English sentences."""
    capsys.readouterr()
    for command in ("models", "filters", "patches", "plot"):
        argv = COMMANDS[command](tiny["run"], tiny["images"], tiny["out"])
        result = cli(*argv)
        assert result.code == 0, result.err
        assert _untranslated(result.out), (command, result.out)


@pytest.mark.slow  # a server in a subprocess (imports torch): a few seconds
def test_serve_says_its_start_lines_in_korean(tiny, tmp_path, monkeypatch):
    """`cnnlab serve --lang ko` on a free loopback port, stopped once it answers /healthz.
    (ServerProcess reads its URL after the English 'on ', which the Korean line does not have.)"""
    for name in LOCALE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    log_path = tmp_path / "serve.log"
    argv = ["serve", str(tiny["run"]), "--host", "127.0.0.1", "--port", "0", "--lang", "ko"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cnnlab", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and process.poll() is None:
                found = re.search(r"(http://127\.0\.0\.1:\d+)/", log_path.read_text())
                if found and ServerProcess._healthy(found[1]):
                    break
                time.sleep(0.2)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    out = log_path.read_text()
    assert found and "제공합니다" in out, out
    assert _untranslated(out) == [], out


def test_the_names_taken_out_are_names_not_sentences():
    """The allow-list holds single words (names), so it cannot hide a sentence: a sentence
    built of them still has its connecting words ('the', 'is', ...)."""
    assert _sentences("zeros reflect replicate circular") == []
    assert _sentences("the kernel is applied to every window") != []
    assert _sentences("wrote model.onnx.json") == []
    assert _untranslated("test accuracy 6.00%") != []  # short, but a whole English line
    assert _untranslated("┃ 층 ┃ tiles ┃") == ["tiles"]  # an English header beside Korean ones
    assert _untranslated("┃ # ┃ 층 ┃ FLOPs ┃ RF ┃") == []  # units stay
    assert _untranslated("│ box-blur │ 0.15 │\nmax: max(1, 3, 4, 2) = 4") == []
