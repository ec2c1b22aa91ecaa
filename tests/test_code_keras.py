"""`cnnlab code --style keras`: the Keras 3 script (torch backend) with the run's weights gives
cnnlab's logits, trains, speaks Korean when asked, and refuses layers keras cannot write."""

from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import numpy as np
import pytest
from conftest import require_system_part

import cnnlab
from cnnlab.deploy import codekeras
from cnnlab.evaluate.scores import evaluate_run
from cnnlab.run.folder import Run

ROOT = Path(__file__).resolve().parent.parent
HANGUL = re.compile("[\uac00-\ud7a3]")
RUFF = Path(sys.executable).with_name("ruff")
# The generated script's model and weight loading, run apart (keras is imported there only).
LOGITS = """
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("generated", sys.argv[1])
generated = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generated)  # main() is guarded: nothing runs
model = generated.build_model()
generated.load_weights(model, generated.WEIGHTS)
np.save(sys.argv[2], generated.logits_of(model, generated.load_data()["test"][0]))
"""
# Residual blocks (functional API), batchnorm (2d and after flatten), groups, depthwise, dilation,
# explicit and 'same' padding (strided, even kernels), avg/max/min pooling, the activations, dropout.
BIG = (
    "conv(8,3,padding=same) batchnorm(eps=0.001,momentum=0.01) relu6 "
    "conv(8,3,padding=1,groups=2,dilation=2) leakyrelu(0.1) avgpool(2,padding=1) "
    "res(conv(16,1,bias=false) batchnorm relu conv(16,3,padding=same,groups=16) batchnorm gelu "
    "conv(8,1) batchnorm) "
    "res(conv(12,3,stride=2,padding=same) batchnorm relu, shortcut=conv(12,1,stride=2)) "
    "maxpool(2,stride=1) minpool(2) conv(4,2,padding=same) flatten batchnorm dropout(0.2) fc(16) tanh "
    "fc(10)"
)


def _need_keras() -> None:
    require_system_part(
        importlib.util.find_spec("keras") is not None,
        "keras",
        "pip install -e '.[dev]' (keras==3.15.1)",
    )


def _env() -> dict[str, str]:
    return {**os.environ, "KERAS_BACKEND": "torch"}


def _train(out: Path, **settings) -> Run:
    return cnnlab.train(quiet=True, out=str(out), data="shapes", epochs=1, **settings)


def _write(cli, source: str, script: Path, *more: str) -> str:
    result = cli("code", source, "--style", "keras", "--out", str(script), *more)
    assert result.code == 0, result.err
    return script.read_text()


def _check_static(script: Path) -> None:
    subprocess.run([sys.executable, "-m", "py_compile", str(script)], check=True)
    text = script.read_text()
    assert not re.search(r"^\s*(import|from) (cnnlab|torch|safetensors)", text, re.M)
    if RUFF.exists():
        config = ROOT / "pyproject.toml"
        cmd = [str(RUFF), "check", "--no-cache", "--config", str(config), str(script)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


def _check_same_logits(run: Run, script: Path) -> None:
    """The script's model, with the run's weights, gives cnnlab's logits on the test images."""
    out = script.with_suffix(".logits.npy")
    proc = subprocess.run(
        [sys.executable, "-c", LOGITS, str(script), str(out)],
        capture_output=True, text=True, env=_env(), timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    evaluation, _ = evaluate_run(run)
    expected = evaluation.logits.numpy()
    got = np.load(out)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.slow
def test_tutorial_run_as_keras_gives_cnnlabs_logits_and_trains(cli, tmp_path):
    _need_keras()
    run = _train(tmp_path / "run", model="tutorial", train_size=300, test_size=100)
    script = tmp_path / "out" / "keras_train.py"
    text = _write(cli, str(run.path), script)
    _check_static(script)
    assert "keras.Sequential(" in text and 'layers.Dense(10, name="fc1")' in text
    assert (tmp_path / "out" / "keras_train_weights.safetensors").is_file()
    assert "channels_last" in text and "(7, 7, 64)" in text  # shapes as H, W, C
    _check_same_logits(run, script)
    proc = subprocess.run(
        [sys.executable, str(script), "--train", "--epochs", "1"],
        cwd=script.parent, capture_output=True, text=True, env=_env(), timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout


@pytest.mark.slow
def test_residual_grouped_dilated_batchnorm_spec_gives_cnnlabs_logits(cli, tmp_path):
    _need_keras()
    run = _train(tmp_path / "run", model=BIG, train_size=200, test_size=60, tta=True)
    script = tmp_path / "big.py"
    text = _write(cli, str(run.path), script)
    _check_static(script)
    assert 'layers.Add(name="res1")' in text and "keras.Model(inputs, x" in text
    assert "layers.DepthwiseConv2D(" in text and "groups=2" in text and "dilation_rate=2" in text
    assert 'FLAT_INPUTS: dict[str, tuple[int, int, int]] = {"batchnorm2": (4, 3, 3)' in text
    _check_same_logits(run, script)


def _comments(text: str) -> list[str]:
    found = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            found.append(token.string.lstrip("# "))
        elif token.type == tokenize.STRING and token.string.startswith('"""'):
            found.append(token.string.strip('"'))
    return found


def test_korean_comments_are_korean(cli, tmp_path):
    run = _train(
        tmp_path / "run", train_size=100, test_size=50,
        model="conv(4,3,stride=2,padding=same) relu minpool(2) res(conv(4,3,padding=same) batchnorm) gap fc(10)",
    )  # fmt: skip
    script = tmp_path / "ko.py"
    text = _write(cli, str(run.path), script, "--lang", "ko")
    _check_static(script)
    for note in _comments(text):
        english = re.search(r"[A-Za-z]{3,} [A-Za-z]{3,} [A-Za-z]{3,}", note)
        assert HANGUL.search(note) or not english, note
    assert "합성곱" in text and "풀링" in text and "잔차 블록" in text


def test_every_block_has_its_korean():
    blocks = [codekeras.WEIGHTS_BLOCK, codekeras.DATA_BLOCK, codekeras.TRAIN_BLOCK]
    blocks += [codekeras.EVALUATE_BLOCK, codekeras.MAIN_BLOCK]
    blocks += [
        codekeras.SCHEDULE_BLOCK.replace("$doc", doc) for doc, *_ in codekeras.SCHEDULES.values()
    ]
    for block in blocks:
        assert HANGUL.search(codekeras.translated(block, "ko", codekeras.KOREAN))


def test_a_padding_mode_keras_lacks_is_a_clean_error(cli, tmp_path):
    script = tmp_path / "pm.py"
    result = cli(
        "code", "conv(4,3,padding=1,padding_mode=reflect) relu flatten fc(10)",
        "--style", "keras", "--out", str(script),
    )  # fmt: skip
    assert result.code == 2 and "Traceback" not in result.err
    assert "conv1" in result.err and "--style torch" in result.err and "reflect" in result.err
    assert not list(tmp_path.iterdir())  # nothing written


def test_cnnlab_never_imports_keras():
    code = (
        "import sys, cnnlab.cli, cnnlab.deploy.code, cnnlab.deploy.codekeras; "
        "assert 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
