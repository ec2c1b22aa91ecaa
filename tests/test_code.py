"""`cnnlab code`: the standalone PyTorch script predicts what cnnlab predicts, trains as cnnlab
trains, compiles, passes ruff, and speaks Korean when asked."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_diagram import _fill, small_disk  # noqa: F401  (a real 256 KiB tmpfs that fills up)

import cnnlab
from cnnlab.deploy import codetext
from cnnlab.evaluate.scores import evaluate_run, split_with_files
from cnnlab.run.folder import Run

ROOT = Path(__file__).resolve().parent.parent
HANGUL = re.compile("[\uac00-\ud7a3]")
RUFF = Path(sys.executable).with_name("ruff")


@pytest.fixture(scope="module", autouse=True)
def own_cache(tmp_path_factory):
    """A fresh user cache for the folder decodes of this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
        patch.delenv("CNNLAB_DATA", raising=False)
        yield


def _train(out: Path, **settings) -> Run:
    return cnnlab.train(quiet=True, out=str(out), **settings)


def _write(cli, source: str, script: Path, *more: str) -> str:
    result = cli("code", source, "--out", str(script), *more)
    assert result.code == 0, result.err
    return script.read_text()


def _run_script(script: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _predicted(output: str) -> list[str]:
    """The class of each test image, from the script's `INDEX<TAB>CLASS[<TAB>FILE]` lines."""
    rows = [line.split("\t") for line in output.splitlines() if "\t" in line]
    assert [int(row[0]) for row in rows] == list(range(len(rows)))
    return [row[1] for row in rows]


def _check_static(script: Path) -> None:
    """Compiles; needs no cnnlab; passes the project's ruff where it is installed."""
    subprocess.run([sys.executable, "-m", "py_compile", str(script)], check=True)
    text = script.read_text()
    assert not re.search(r"^\s*(import|from) cnnlab", text, re.M)
    if RUFF.exists():
        config = ROOT / "pyproject.toml"
        cmd = [str(RUFF), "check", "--no-cache", "--config", str(config), str(script)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


def _check_same_predictions(cli, run: Run, script: Path) -> list[str]:
    _write(cli, str(run.path), script)
    _check_static(script)
    evaluation, _ = evaluate_run(run)
    expected = [run.classes[i] for i in evaluation.logits.argmax(1).tolist()]
    got = _predicted(_run_script(script))
    assert got == expected
    return got


@pytest.mark.slow
def test_tutorial_run_script_predicts_exactly_as_cnnlab(cli, tmp_path):
    run = _train(
        tmp_path / "run", model="tutorial", data="shapes", train_size=500, test_size=200, epochs=1
    )
    _check_same_predictions(cli, run, tmp_path / "out" / "train.py")
    assert (tmp_path / "out" / "train_weights.pt").is_file()
    assert (tmp_path / "out" / "train_data.npz").is_file()


@pytest.mark.slow
def test_a_run_with_residual_blocks_and_relu6_predicts_exactly_as_cnnlab(cli, tmp_path):
    """MBConv-style blocks (expand, depthwise with Keras-style strided same, project) and a
    ResNet-style projection: the script's Residual modules load the run's res*.body/shortcut
    weights as they are."""
    model = (
        "conv(8,3,padding=same) batchnorm(eps=0.001) relu6 "
        "res(conv(16,1,bias=false) batchnorm relu6 conv(16,3,padding=same,groups=16) "
        "batchnorm relu6 conv(8,1) batchnorm) "
        "res(conv(12,3,stride=2,padding=same) batchnorm relu, shortcut=conv(12,1,stride=2)) "
        "relu gap fc(10)"
    )
    run = _train(tmp_path / "run", model=model, data="shapes", train_size=300, test_size=100,
                 epochs=1)  # fmt: skip
    script = tmp_path / "out" / "train.py"
    _check_same_predictions(cli, run, script)
    text = script.read_text()
    assert "class Residual(nn.Module):" in text and "nn.ReLU6()" in text
    assert "class SameConv2d(nn.Conv2d):" in text  # the strided same conv inside a block


@pytest.mark.slow
def test_default_run_with_validation_and_tta_predicts_exactly_as_cnnlab(cli, tmp_path):
    run = _train(
        tmp_path / "run",
        model="default",
        data="shapes",
        train_size=600,
        test_size=200,
        epochs=2,
        val_split=0.1,
        tta=True,
        augment="translate=2,flip,cutout=6",
    )
    text = _write(cli, str(run.path), tmp_path / "d.py")
    assert "VAL_SPLIT, SPLIT_SEED = 0.1, 0" in text and "TTA = True" in text
    assert (
        "self.batchnorm1 = nn.BatchNorm2d(" in text
        and "SHIFT, FLIP, VFLIP, CUTOUT = 2, True, False, 6" in text
    )
    _check_same_predictions(cli, run, tmp_path / "default.py")


def _rectangular_folder(root: Path, per_class: int = 12) -> Path:
    """root/<class>/*.png: 3 classes of 40x30 grey shapes (not square: pad must letterbox)."""
    rng = np.random.default_rng(0)
    for k, kind in enumerate(("bar", "dot", "box")):
        (root / kind).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (30, 40)).astype(np.uint8)
            y, x = (int(v) for v in rng.integers(4, 20, 2))
            if k == 0:
                pixels[y : y + 3, 2:38] = 255
            elif k == 1:
                pixels[y : y + 5, x : x + 5] = 255
            else:
                pixels[y : y + 8, x : x + 8] = 200
                pixels[y + 2 : y + 6, x + 2 : x + 6] = 0
            Image.fromarray(pixels, mode="L").save(root / kind / f"{kind}-{i:02d}.png")
    (root / "dot" / ".hidden.png").write_bytes(b"not an image: hidden files are left out")
    return root


@pytest.mark.slow
def test_image_folder_run_predicts_exactly_as_cnnlab(cli, tmp_path):
    folder = _rectangular_folder(tmp_path / "images")
    run = _train(
        tmp_path / "run",
        model="tutorial",
        data=str(folder),
        image_size="24",
        keep_aspect="pad",
        epochs=2,
        batch_size=8,
    )
    script = tmp_path / "folder.py"
    _check_same_predictions(cli, run, script)
    assert 'KEEP_ASPECT = "pad"' in script.read_text()
    files = [line.split("\t")[2] for line in _run_script(script).splitlines() if "\t" in line]
    assert files == split_with_files(run)[3]


def _accuracy(output: str) -> float:
    return float(re.search(r"test accuracy: ([\d.]+)%", output).group(1))


@pytest.mark.slow
def test_training_from_scratch_reaches_what_cnnlab_reaches(cli, tmp_path):
    run = _train(
        tmp_path / "run", model="default", data="shapes", train_size=3000, test_size=600,
        epochs=1, batch_size=32, optimizer="adam",
    )  # fmt: skip
    script = tmp_path / "scratch.py"
    _write(cli, str(run.path), script)
    cnnlab_accuracy = 100 * run.metrics["test_accuracy"]
    assert cnnlab_accuracy > 30  # one epoch learns something
    script_accuracy = _accuracy(_run_script(script, "--train"))
    assert abs(script_accuracy - cnnlab_accuracy) <= 8, (script_accuracy, cnnlab_accuracy)


def _comments(text: str) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    found = []
    for token in tokens:
        if token.type == tokenize.COMMENT:
            found.append(token.string.lstrip("# "))
        elif token.type == tokenize.STRING and token.string.startswith('"""'):
            found.append(token.string.strip('"'))
    return found


def test_korean_comments_are_korean(cli, tmp_path):
    run = _train(
        tmp_path / "run",
        model="conv(4,3,stride=2,padding=same) relu minpool(2) batchnorm gap fc(10)",
        data="shapes",
        train_size=100,
        test_size=50,
        epochs=1,
    )
    script = tmp_path / "ko.py"
    text = _write(cli, str(run.path), script, "--lang", "ko")
    _check_static(script)
    assert "class SameConv2d" in text and "class MinPool2d" in text
    for note in _comments(text):
        english = re.search(r"[A-Za-z]{3,} [A-Za-z]{3,} [A-Za-z]{3,}", note)
        assert HANGUL.search(note) or not english, note
    assert "합성곱" in text and "풀링" in text


def test_every_comment_of_the_script_has_its_korean():
    blocks = [codetext.SPLITS, codetext.IDX, codetext.NPZ, codetext.FOLDER, codetext.NORMALIZE]
    blocks += [codetext.AUGMENT, codetext.TRAIN, codetext.EVALUATE, codetext.MAIN]
    blocks += [*codetext.SCHEDULES.values(), *codetext.SPECIAL_LAYERS.values()]
    for block in blocks:
        assert HANGUL.search(codetext.translated(block, "ko"))  # a KeyError names what is missing


def test_refuses_existing_files_links_and_other_suffixes(cli, tmp_path):
    run = _train(
        tmp_path / "run", model="conv(4,3) relu flatten fc(10)", data="shapes",
        train_size=60, test_size=20, epochs=1,
    )  # fmt: skip
    script = tmp_path / "train.py"
    script.write_text("# mine\n")
    result = cli("code", str(run.path), "--out", str(script))
    assert result.code == 2 and "--force" in result.err and "Traceback" not in result.err
    assert script.read_text() == "# mine\n"
    assert cli("code", str(run.path), "--out", str(script), "--force").code == 0
    link = tmp_path / "link.py"
    link.symlink_to(tmp_path / "elsewhere.py")
    result = cli("code", str(run.path), "--out", str(link), "--force")
    assert result.code == 2 and "link" in result.err
    assert cli("code", str(run.path), "--out", str(tmp_path / "train.txt")).code == 2


@pytest.mark.slow
def test_a_spec_gets_a_script_that_trains(cli, tmp_path):
    folder = _rectangular_folder(tmp_path / "images", per_class=6)
    script = tmp_path / "spec.py"
    text = _write(cli, "conv(4,3) relu maxpool(2) flatten fc(3)", script, "--data", str(folder))
    _check_static(script)
    assert "WEIGHTS: Path | None = None" in text
    assert "test accuracy" in _run_script(script, "--epochs", "1")
    shutil.rmtree(folder)


@pytest.mark.parametrize("style", ["torch", "keras"])
def test_a_full_disk_is_a_clean_error_and_leaves_no_file(cli, small_disk, style):  # noqa: F811
    _fill(small_disk)
    out = small_disk / "net.py"
    result = cli("code", "input(1x8x8) conv(2,3) relu flatten fc(3)", "--out", str(out),
                 "--style", style)  # fmt: skip
    assert result.code == 2 and "Traceback" not in result.err, result.err
    assert "cannot write" in result.err and "choose a writable folder with --out" in result.err
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # nothing half-written
