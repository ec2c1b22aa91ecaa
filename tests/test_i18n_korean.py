"""Korean everywhere: figures drawn in a Hangul font, and the commands' human output in Korean."""

from __future__ import annotations

import io
import json
import re
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from cnnlab.figures.canvas import hangul_font, new_figure, save_figure, use_language_fonts
from cnnlab.figures.curves import curves_figure
from cnnlab.i18n import using_language
from cnnlab.text import korean_particles

TITLE = "합성곱 층의 특징 맵: 커널 3x3, 스트라이드 1"
ROWS = [
    {"epoch": 1, "train_loss": 2.0, "val_loss": 1.9, "train_accuracy": 0.3, "lr": 0.1},
    {"epoch": 2, "train_loss": 1.0, "val_loss": 1.2, "train_accuracy": 0.6, "lr": 0.05},
]


def _render(language: str, title: str = TITLE) -> tuple[np.ndarray, list[str]]:
    """The title alone as PNG pixels (gray), and the glyph-missing warnings drawing it gave."""
    figure = new_figure(6, 0.6)
    figure.text(0.5, 0.5, title, ha="center", va="center", fontsize=14)
    use_language_fonts(figure, language)
    buffer = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure.savefig(buffer, format="png", dpi=100)
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    return np.asarray(Image.open(buffer).convert("L")), missing


def test_the_hangul_font_comes_with_the_project():
    """NanumGothic from koreanize-matplotlib (pinned in pyproject.toml), found without importing it."""
    assert hangul_font() == "NanumGothic"


def test_a_korean_title_is_drawn_in_hangul_not_boxes():
    pixels, missing = _render("ko")
    assert missing == []  # matplotlib warns "Glyph ... missing from font(s)" for each box it draws
    # the same title in the default font (DejaVu Sans, no Hangul) is boxes, and other pixels
    boxes, box_warnings = _render("en")
    assert box_warnings, "the check would not see missing glyphs"
    assert (pixels < 128).sum() != (boxes < 128).sum()


def test_a_korean_figure_saved_by_the_project_warns_of_no_missing_glyph(tmp_path):
    """A whole figure (titles, labels, legend, ticks) through save_figure, as the commands save it."""
    with using_language("ko"):
        figure = curves_figure(ROWS, TITLE, test_accuracy=0.55)
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*missing from.*")
            save_figure(figure, tmp_path / "curves.svg")
    svg = (tmp_path / "curves.svg").read_text()
    for word in ("손실", "정확도", "학습률", "에포크", "검증", "테스트 55.00%"):
        assert word in svg, word
    assert "NanumGothic" in svg


def test_english_figures_keep_their_font(tmp_path):
    with using_language("en"):
        save_figure(curves_figure(ROWS, "run: conv(4,3)"), tmp_path / "curves.svg")
    svg = (tmp_path / "curves.svg").read_text()
    assert "NanumGothic" not in svg and "learning rate" in svg and "epoch" in svg


@pytest.mark.parametrize("language", ["ko", "en"])
def test_monospace_text_stays_monospace(language):
    figure = new_figure(2, 1)
    text = figure.text(0, 0, "conv(4,3)", family="monospace")
    use_language_fonts(figure, language)
    assert text.get_fontfamily()[0] == "monospace"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3x3을(를)", "3x3을"),  # 삼 곱하기 삼: ends in ㅁ
        ("5x5을(를)", "5x5를"),  # 오
        ("커널을(를)", "커널을"),
        ("스트라이드을(를)", "스트라이드를"),
        ("12%을(를)", "12%를"),  # 퍼센트
        ("10이(가)", "10이"),  # 십
        ("conv1을(를)", "conv1을"),
        ("relu을(를)", "relu를"),
        ("입력(3x2)와(과)", "입력(3x2)과"),  # the particle goes with the word before the brackets
        ("0.1(으)로", "0.1로"),  # 일: ㄹ takes 로
        ("0.03(으)로", "0.03으로"),
        ("'circle'(이)라고", "'circle'라고"),
        ("no particle: 3x3", "no particle: 3x3"),
    ],
)
def test_korean_particles_follow_the_word_before_them(text, expected):
    assert korean_particles(text) == expected


TRAIN = ["--model", "conv(4,3) relu gap fc(8)", "train_size=200", "test_size=50", "--epochs", "1"]
# what may stay in Latin letters: specs, layer and class names, paths, options, units
IDENTIFIER = re.compile(
    r"'[^']*'|`[^`]*`|\S*[/=(]\S*|--[\w-]+|\b(?:circle|triangle|square|pentagon|star|cross|heart"
    r"|arrow|line|crescent|shapes|input|conv|relu|gap|fc|sgd|onecycle|translate|flip|img/s|px"
    r"|FLOPs?|KiB|RF|float32|H|W|C)\b"
)


def _english_runs(text: str) -> list[str]:
    """Runs of 3+ English words left once identifiers, numbers and paths are taken out."""
    plain = IDENTIFIER.sub(" ", text)
    return re.findall(r"\b[A-Za-z]{2,}(?:[\s,;:.]+[A-Za-z]{2,}){2,}\b", plain)


@pytest.mark.slow  # a one-epoch training
def test_summary_and_train_say_no_english_sentence(cli, tmp_path, monkeypatch):
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    summary = cli(
        "summary", "conv(4,3,padding=same) relu gap fc(8)", "--input", "1x28x28", "--lang", "ko"
    )
    assert summary.code == 0, summary.err
    assert "'same' 패딩" in summary.out and "before" not in summary.out
    train = cli("train", *TRAIN, "--out", str(tmp_path / "run"), "--lang", "ko")
    assert train.code == 0, train.err
    for word in (
        "실행 폴더",
        "모델:",
        "데이터:",
        "클래스:",
        "학습 설정:",
        "에포크 1/1",
        "테스트 정확도",
    ):
        assert word in train.out, word
    assert _english_runs(summary.out + train.out) == []


# The errors a learner meets, with their fixes: (argv, words the Korean error holds).
SPEC_ERRORS = [
    (["summary", "input(1x4x4) conv(8,5)"], ("출력 크기", "고치는 법", "패딩", "커널")),
    (["summary", "input(1x4x4) maxpool(8)"], ("윈도우", "풀링", "고치는 법")),
    (["summary", "input(3x8x8) conv(8,3,groups=2)"], ("입력 채널", "출력 채널", "고치는 법")),
    (["summary", "input(3x8x8) res(conv(8,3))"], ("res 블록", "모양이 같아야", "고치는 법")),
    (["summary", "input(3x8x8) res(conv(8,3), shortcut=conv(4,1))"], ("지름길", "고치는 법")),
    (["summary", "input(3x8x8) conv(4,3) fc(10)"], ("평탄한 벡터", "고치는 법")),
    (["summary", "input(1x28x28) conv(4,3) flatten fc(10, in=100)"], ("in=100", "고치는 법")),
    (["summary", "input(1x4x4) conv(4,3,padding=4,padding_mode=reflect)"], ("반사", "패딩")),
    (["summary", "input(1x8x8) maxpool(2,padding=2)"], ("패딩", "커널의 절반")),
    (["summary", "input(1x8x8) flatten conv(4,3)"], ("채널 x 높이 x 너비",)),
    (["summary", "conv(4,3,foo"], ("모델 명세 오류", "파라미터 목록")),
    (["summary", "conv(4,-1)"], ("양의 정수", "커널 크기")),
    (["summary", "conv(4,3) res(res(relu))"], ("중첩",)),
    (["summary", "conv(4,3) relu(1,2)"], ("파라미터",)),
    (["summary", "conv(4,3,stride=1,stride=2)"], ("두 번",)),
    (["summary", "conv(4,3,padding_mode=mirror)"], ("다음 중 하나",)),
    (["summary", "conv(4, 3) relu input(1x8x8)"], ("맨 앞",)),
    (["summary", "dropout(1.5)"], ("0 이상 1 미만",)),
    (["summary", "conv(4,3)) relu"], ("층 이름",)),
    (["summary", "defualt"], ("프리셋",)),
    (["summary", "missing-model.toml"], ("모델 파일",)),
]


@pytest.mark.parametrize(("argv", "words"), SPEC_ERRORS, ids=lambda v: " ".join(v)[:60])
def test_spec_errors_and_their_fixes_in_korean(cli, monkeypatch, argv, words):
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    english, korean = cli(*argv), cli(*argv, "--lang", "ko")
    assert english.code == korean.code == 2, korean.err
    assert english.err.startswith("error: ") and korean.err.startswith("오류: "), korean.err
    for word in words:
        assert word in korean.err, (word, korean.err)
    assert ("fix:" in english.err) == ("고치는 법:" in korean.err)
    assert _english_runs(_error_text(korean.err)) == [], korean.err
    assert _english_runs(_error_text(english.err)), "the check would not see English"


def _error_text(err: str) -> str:
    """The error's sentences, without the spec line and caret the parser quotes under them, and
    without the names it lists (presets, layers, padding modes, settings, data sets,
    augmentations, kernels, pooling modes)."""
    from cnnlab.data.augment import _ITEMS as AUGMENTATIONS
    from cnnlab.data.registry import REGISTRY
    from cnnlab.explain.kernels import ALIASES, KERNELS
    from cnnlab.explain.worked import POOL_MODES
    from cnnlab.model.presets import PRESETS
    from cnnlab.spec.kinds import LAYER_KINDS, PADDING_MODES
    from cnnlab.training.config import FIELD_TYPES

    names = {*PRESETS, *LAYER_KINDS, *PADDING_MODES, *FIELD_TYPES, *REGISTRY, *AUGMENTATIONS}
    names = sorted({*names, *KERNELS, *ALIASES, *POOL_MODES, "none", "standard", "light"}, key=len)
    listed = re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, names[::-1])) + r")(?![\w-])")
    lines = [line for line in err.splitlines() if not line.startswith("  ") or "법:" in line]
    return listed.sub(" ", "\n".join(lines))


def _korean_error(cli, monkeypatch, *argv: str) -> str:
    """The command's error under --lang ko, checked: exit 2, 'error:' in English without --lang,
    '오류:' and no English sentence (names, paths and options aside) with it."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    english, korean = cli(*argv), cli(*argv, "--lang", "ko")
    assert english.code == korean.code == 2, korean.err
    assert english.err.startswith("error: ") and korean.err.startswith("오류: "), korean.err
    assert _english_runs(_error_text(english.err)), "the check would not see English"
    assert _english_runs(_error_text(korean.err)) == [], korean.err
    return korean.err


def test_a_folder_of_bad_images_is_refused_in_korean(cli, monkeypatch, tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("L", (8, 8), i * 40).save(tmp_path / name / f"{i}.png")
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (tmp_path / "dog" / "notes.txt").write_text("hello")
    (tmp_path / "dog" / "empty.jpg").write_bytes(b"")
    err = _korean_error(cli, monkeypatch, "train", "--data", str(tmp_path), "--epochs", "1")
    assert "파일 3개를 이미지로 쓸 수 없습니다" in err and "--skip-bad" in err
    assert "이미지가 아닌 파일" in err and "빈 파일" in err


def test_a_folder_of_one_class_is_refused_in_korean(cli, monkeypatch, tmp_path):
    (tmp_path / "cat").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "cat" / "0.png")
    err = _korean_error(cli, monkeypatch, "train", "--data", str(tmp_path), "--epochs", "1")
    assert "클래스 폴더가 1개입니다" in err


def test_a_truncated_idx_file_is_refused_in_korean(cli, monkeypatch, tmp_path):
    import gzip

    from cnnlab.data.idx import write_idx

    for split, count in (("train", 10), ("t10k", 5)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", np.zeros((count, 28, 28), np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.zeros(count, np.uint8))
    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:-100]))
    argv = ("train", "--data", "mnist", "--data-dir", str(tmp_path), "--epochs", "1")
    err = _korean_error(cli, monkeypatch, *argv)
    assert "본문이 잘렸습니다" in err and "다시 내려받거나" in err


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny runs of different models (one epoch on 200 shapes each): one to damage, one to
    lend the first its weights."""
    import cnnlab

    root = tmp_path_factory.mktemp("damaged")
    runs = []
    for model in ("conv(4,3) relu maxpool(2) flatten fc(10)", "conv(6,3) relu gap fc(10)"):
        runs.append(
            cnnlab.train(
                model=model,
                data="shapes",
                train_size=200,
                test_size=60,
                epochs=1,
                quiet=True,
                out=str(root / f"run{len(runs)}"),
            ).path
        )
    return runs


def _damage_classes(run):
    meta = json.loads((run / "model.json").read_text())
    meta["classes"] = meta["classes"][:-1]
    (run / "model.json").write_text(json.dumps(meta))


def _damage_record(run):
    record = json.loads((run / "record.json").read_text())
    record["format"] = 99
    (run / "record.json").write_text(json.dumps(record))


def _damage_mean(run):
    meta = json.loads((run / "model.json").read_text())
    meta["mean"] = [*meta["mean"], 0.5]
    (run / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_damage_classes, ("클래스 9개", "실행 폴더가 손상되었습니다", "model.json을 되살리거나")),
        (_damage_record, ("형식 99", "실행 폴더가 손상되었습니다")),
        (_damage_mean, ("입력 채널마다", "실행 폴더가 손상되었습니다")),
        (lambda run: (run / "model.safetensors").write_bytes(b"\xff" * 64), ("safetensors",)),
        ("other weights", ("이 모델에 맞지 않습니다", "모양이 다름", "다시 학습하세요")),
    ],
    ids=["classes", "record", "mean", "weights", "other-weights"],
)
def test_a_damaged_run_folder_is_refused_in_korean(
    cli, capsys, monkeypatch, tmp_path, two_runs, damage, words
):
    capsys.readouterr()  # what training printed
    run = tmp_path / "run"
    shutil.copytree(two_runs[0], run)
    if damage == "other weights":
        shutil.copy(two_runs[1] / "model.safetensors", run / "model.safetensors")
    else:
        damage(run)
    err = _korean_error(cli, monkeypatch, "eval", str(run))
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["lr=50"], ("학습률", "받은 값")),
        (["--epochs", "0"], ("정수", "받은 값: 0")),
        (["momentum=1.5"], ("0 이상 1 미만",)),
        (["weight_decay=-1"], ("감쇠 없음",)),
        (["early_stop=-3"], ("끔",)),
        (["warmup_steps=-5"], ("워밍업 없음",)),
        (["optimizer=adamx"], ("중 하나",)),
        (["--val-split", "2"], ("0 이상 1 미만",)),
        (["budget=soon"], ("budget", "받은 값")),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_out_of_range_settings_are_refused_in_korean(cli, monkeypatch, argv, words):
    err = _korean_error(cli, monkeypatch, "train", *argv)
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "augment=warp"], ("데이터 증강", "있는 것")),
        (["train", "augment=translate=99"], ("데이터 증강", "사이여야")),
        (["train", "image_size=5000"], ("image_size", "받은 값")),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_augmentation_and_image_size_are_refused_in_korean(cli, monkeypatch, argv, words):
    err = _korean_error(cli, monkeypatch, *argv)
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["cam", "{run}", "nothere.png"], ("이미지 nothere.png", "test:0")),
        (["cam", "{run}", "test:999"], ("test 분할", "번호")),
        (["eval", "{run}", "--split", "val"], ("검증 분할",)),
        (["eval", "{run}", "--top", "99999"], ("범위를 벗어납니다",)),
    ],
    ids=["missing-image", "index", "no-val", "top"],
)
def test_a_run_given_the_wrong_image_or_split_says_so_in_korean(
    cli, capsys, monkeypatch, two_runs, argv, words
):
    capsys.readouterr()  # what training printed
    argv = [str(two_runs[0]) if a == "{run}" else a for a in argv]
    err = _korean_error(cli, monkeypatch, *argv)
    for word in words:
        assert word in err, (word, err)


@pytest.mark.slow  # a one-epoch training
def test_train_notes_on_small_data_in_korean(cli, monkeypatch, tmp_path):
    """The preset's small-data variant and a batch cut to the data, as notes of `train`."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    argv = ["train", "train_size=100", "test_size=50", "--epochs", "1", "--lang", "ko"]
    result = cli(*argv, "--out", str(tmp_path / "run"))
    assert result.code == 0, result.err
    assert (
        "적은 데이터용 변형" in result.out
        and "배치 128이 학습 이미지 100장보다 큽니다" in result.out
    )
    assert _english_runs(result.out) == [], result.out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["explain", "conv", "--input", "[[1,2],[3]]"], ("행 길이", "직사각형")),
        (["explain", "conv", "--kernel", "sobl"], ("알 수 없는 커널", "혹시")),
        (["explain", "pool", "--mode", "maxx"], ("중에서 고르세요",)),
        (["explain", "conv", "--stride", "0"], ("양의 정수",)),
        (["explain", "padding", "--padding", "-1"], ("0 이상의 수",)),
        (["explain", "conv", "--channels", "2", "--input", "[[1,2],[3,4]]"], ("행렬",)),
        (["explain", "pool", "--input", "[[[1,2],[3,4]],[[1,2,3],[4,5,6]]]"], ("크기가 다릅니다",)),
        (["explain", "pool", "--mode", "avg", "--dilation", "2"], ("팽창",)),
    ],
    ids=["ragged", "kernel", "mode", "stride", "padding", "channels", "sizes", "avg-dilation"],
)
def test_explain_refuses_its_inputs_in_korean(cli, monkeypatch, argv, words):
    err = _korean_error(cli, monkeypatch, *argv)
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (
            [
                "train",
                "--weights",
                "{run}",
                "--model",
                "conv(4,5) relu gap fc(10)",
                "--out",
                "{tmp}",
            ],
            ("맞지 않습니다", "여기는 4x1x5x5"),
        ),
        (["patches", "{run}", "--layer", "fc1"], ("평탄한 벡터", "특징 맵")),
        (["embed", "{run}", "--max-points", "0"], ("1 이상",)),
        (["cam", "{run}", "test:0", "--method", "gradcam", "--layer", "fc9"], ("층이 아닙니다",)),
        (["code", "{run}", "--out", "{tmp}"], (".py로 끝나지 않습니다",)),
    ],
    ids=["weights", "patches-layer", "embed-points", "cam-layer", "code-out"],
)
def test_weights_and_layers_that_do_not_fit_say_so_in_korean(
    cli, capsys, monkeypatch, tmp_path, two_runs, argv, words
):
    capsys.readouterr()  # what training printed
    names = {"{run}": str(two_runs[0]), "{tmp}": str(tmp_path / "run")}
    err = _korean_error(cli, monkeypatch, *[names.get(a, a) for a in argv])
    for word in words:
        assert word in err, (word, err)


def test_skipped_files_follow_the_language_not_the_folder_cache(cli, monkeypatch, tmp_path):
    """--skip-bad lists the files left out, their reasons in the command's language: a folder
    decoded (and cached) under --lang ko, then read in English, gives English reasons."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "images"
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), i * 40).save(folder / label / f"{i}.png")
    (folder / "dog" / "notes.txt").write_text("hello")
    argv = ["datasets", "show", str(folder), "--skip-bad", "--out", str(tmp_path / "grid.png")]
    korean = cli(*argv, "--lang", "ko")
    english = cli(*argv)
    assert korean.code == english.code == 0, korean.err + english.err
    assert "이미지가 아닌 파일" in korean.out, korean.out
    assert "not an image" in english.out and "이미지" not in english.out, english.out
