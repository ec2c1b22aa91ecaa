"""cnnlab predict: files and folders preprocessed exactly as in training, bad files one by one, MNIST centring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from serve_support import image_bytes, trained_run

from cnnlab.deploy.predict import (
    Predictor,
    Preprocess,
    border_is_light,
    mnist_center,
    pixels_to_png,
    prepare_image,
    should_invert,
)
from cnnlab.errors import ConfigError, DataError
from cnnlab.evaluate.scores import evaluate_run, split_images
from cnnlab.run.folder import Run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def test_folder(run_dir, tmp_path_factory) -> Path:
    """The run's test split as PNG files in class folders, written from the uint8 tensors."""
    run = Run.open(run_dir)
    images, labels, _ = split_images(run)
    root = tmp_path_factory.mktemp("test-pngs")
    for i, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
        folder = root / run.classes[label]
        folder.mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(folder / f"{i:04d}.png")
    return root


def test_predict_on_the_test_set_as_png_files_matches_evaluation(run_dir, test_folder, cli):
    result = cli("predict", str(run_dir), str(test_folder), "--json", "--engine", "eager")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    run = Run.open(run_dir)
    evaluation, _ = evaluate_run(run)
    assert data["files"] == evaluation.size == 400 and data["failed"] == 0
    # each file's class, in the order the files were written (their names are the indices)
    by_index = {int(Path(r["file"]).stem): r["class"] for r in data["results"]}
    predicted = [run.classes.index(by_index[i]) for i in range(evaluation.size)]
    assert predicted == evaluation.predictions.tolist()
    correct = sum(Path(r["file"]).parent.name == r["class"] for r in data["results"])
    assert correct == int((evaluation.predictions == evaluation.labels).sum())
    assert correct / 400 == pytest.approx(evaluation.accuracy, abs=1e-6)  # float32 there
    assert data["folder_accuracy"]["correct"] == correct
    # probabilities are the softmax of the evaluation's logits
    first = next(r for r in data["results"] if int(Path(r["file"]).stem) == 0)
    expected = torch.softmax(evaluation.logits[0], 0)
    assert first["probability"] == pytest.approx(expected.max().item(), abs=1e-6)


def test_text_output_and_top_k(run_dir, test_folder, cli):
    one = sorted((test_folder / "circle").glob("*.png"))[0]
    result = cli("predict", str(run_dir), str(one), "--top-k", "4", "--engine", "eager")
    assert result.code == 0, result.err
    line = result.out.strip()
    assert line.startswith(f"{one}: ")
    assert line.count("%") == 4  # the best class and three others
    assert "engine: eager" in result.err and "1 of 1 images predicted" in result.err
    result = cli("predict", str(run_dir), str(one), "--json", "--top-k", "10", "--engine", "eager")
    top = json.loads(result.out)["results"][0]["top_k"]
    assert len(top) == 10 and sum(c["probability"] for c in top) == pytest.approx(1.0, abs=1e-5)
    assert [c["probability"] for c in top] == sorted((c["probability"] for c in top), reverse=True)
    assert cli("predict", str(run_dir), str(one), "--top-k", "0").code == 2


def test_bad_files_are_reported_one_by_one_and_the_rest_go_on(run_dir, test_folder, tmp_path, cli):
    good = sorted((test_folder / "star").glob("*.png"))[:2]
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    for i, path in enumerate(good):
        (folder / f"good{i}.png").write_bytes(path.read_bytes())
    (folder / "sub" / "truncated.png").write_bytes(good[0].read_bytes()[:60])
    (folder / "sub" / "random.png").write_bytes(np.random.default_rng(0).bytes(500))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "scan.png").write_bytes(image_bytes(Image.new("L", (8, 8)), "TIFF"))
    (folder / "notes.txt").write_text("not an image, and not named like one: skipped")
    (folder / ".hidden.png").write_bytes(b"skipped: hidden")
    result = cli(
        "predict", str(run_dir), str(folder), str(tmp_path / "missing.png"), "--engine", "eager"
    )
    assert result.code == 1
    assert f"{folder / 'good0.png'}: " in result.out and f"{folder / 'good1.png'}: " in result.out
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 5, result.err
    expected = {
        "truncated.png": "truncated or damaged PNG",
        "random.png": "not an image",
        "empty.jpg": "an empty file",
        "scan.png": "a TIFF file",
        "missing.png": "no such file or folder",
    }
    for name, reason in expected.items():
        assert any(name in line and reason in line for line in errors), (name, result.err)
    assert "2 of 7 images predicted, 5 failed" in result.err
    assert "notes.txt" not in result.err + result.out and ".hidden" not in result.err + result.out


def test_a_folder_without_images_is_an_error(run_dir, tmp_path, cli):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hello")
    result = cli("predict", str(run_dir), str(tmp_path / "docs"))
    assert result.code == 1
    assert "folder has no image files" in result.err


# --- preprocessing ------------------------------------------------------------------------


def _picture() -> np.ndarray:
    """A 40x30 gray picture with structure (a gradient and a bright block)."""
    y, x = np.mgrid[0:40, 0:30]
    picture = (x * 6 + y * 2).astype(np.uint8)
    picture[10:20, 5:15] = 250
    return picture


def test_any_mode_of_the_same_picture_gives_the_same_input():
    gray = _picture()
    reference = prepare_image(image_bytes(Image.fromarray(gray, "L"), "PNG"), (1, 28, 28), (0.2,))
    variants = {
        "RGB": Image.fromarray(np.stack([gray] * 3, -1), "RGB"),
        "palette": Image.fromarray(gray, "L").convert("P"),
        "16-bit": Image.fromarray(gray.astype(np.uint16) * 257),  # mode I;16
        "RGBA opaque": Image.fromarray(
            np.stack([gray] * 3 + [np.full_like(gray, 255)], -1), "RGBA"
        ),
    }
    for name, image in variants.items():
        tensor = prepare_image(image_bytes(image, "PNG"), (1, 28, 28), (0.2,))
        assert tensor.shape == (1, 28, 28) and tensor.dtype == torch.uint8
        assert (tensor.int() - reference.int()).abs().max() <= 1, name


def test_exif_rotation_is_applied(tmp_path):
    picture = np.zeros((20, 40), dtype=np.uint8)
    picture[:, :10] = 255  # a bright band on the left of a landscape picture
    image = Image.fromarray(picture, "L")
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, format="JPEG", exif=exif, quality=95)
    tensor = prepare_image(path, (1, 40, 20), (0.2,))[0].float()  # portrait after rotation
    assert tensor[:10].mean() > 200 and tensor[-10:].mean() < 50  # the band is now on top


def _photo_of_a_digit() -> np.ndarray:
    """A 150x200 'photo': light paper with noise and a dark stroke off centre."""
    rng = np.random.default_rng(0)
    photo = rng.normal(200, 8, (150, 200)).clip(0, 255)
    photo[30:100, 140:152] = 40  # a dark vertical bar: a '1' near the right edge
    photo[30:40, 128:152] = 40
    return photo.astype(np.uint8)


def test_mnist_centring_of_a_photo_of_a_dark_digit():
    photo = _photo_of_a_digit()
    data = image_bytes(Image.fromarray(photo, "L"), "PNG")
    out = prepare_image(data, (1, 28, 28), (0.13,), Preprocess(invert="auto", center=True))[
        0
    ].numpy()
    ink = out > 64
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    assert rows[-1] - rows[0] + 1 == 20  # the longer side (height 70 of 70x24) fitted to 20
    assert cols[-1] - cols[0] + 1 < 20  # aspect kept
    weights = out.astype(np.float64)
    cy = (weights.sum(1) * np.arange(28)).sum() / weights.sum()
    cx = (weights.sum(0) * np.arange(28)).sum() / weights.sum()
    assert abs(cy - 13.5) <= 0.75 and abs(cx - 13.5) <= 0.75  # centre of mass in the middle
    assert out[0].max() == 0 and out[:, 0].max() == 0  # paper became black
    assert out.max() >= 200  # the ink is bright


def test_invert_choices():
    photo = _photo_of_a_digit()
    assert border_is_light(photo)
    assert should_invert(photo, "auto", (0.13,))  # dark training data, light photo
    assert not should_invert(photo, "auto", (0.8,))  # light training data: leave it
    assert not should_invert(255 - photo, "auto", (0.13,))
    assert should_invert(photo, "yes", (0.8,)) and not should_invert(photo, "no", (0.13,))
    data = image_bytes(Image.fromarray(photo, "L"), "PNG")
    plain = prepare_image(data, (1, 28, 28), (0.13,))
    inverted = prepare_image(data, (1, 28, 28), (0.13,), Preprocess(invert="yes"))
    assert torch.equal(inverted, 255 - plain)
    with pytest.raises(ConfigError, match="invert must be one of"):
        Preprocess(invert="maybe")


def test_centring_a_blank_image_gives_black_and_colour_models_refuse_it():
    assert mnist_center(np.full((50, 50), 128, np.uint8), (28, 28)).max() == 0
    data = image_bytes(Image.new("RGB", (10, 10)), "PNG")
    with pytest.raises(ConfigError, match="for grayscale models"):
        prepare_image(data, (3, 32, 32), (0.5, 0.5, 0.5), Preprocess(center=True))


@pytest.mark.parametrize(
    "pixels, shape",
    [
        ([[0, 255], [255, 0]], (1, 28, 28)),
        ([[[10] * 5] * 4], (1, 28, 28)),  # 1xHxW
        ([[[0] * 6] * 6, [[128] * 6] * 6, [[255] * 6] * 6], (3, 8, 8)),  # 3xHxW on a colour model
    ],
)
def test_pixel_arrays_take_the_upload_path(pixels, shape):
    tensor = prepare_image(pixels_to_png(pixels), shape, (0.5,) * shape[0])
    assert tuple(tensor.shape) == shape
    if shape[0] == 3:
        assert tensor[0].max() == 0 and tensor[2].min() == 255


@pytest.mark.parametrize(
    "pixels, message",
    [
        ([[0, 1], [2]], "rectangular"),
        ([[[[0]]]], "send HxW"),
        ([[[0] * 3] * 3] * 2, "send HxW"),  # 2 channels
        ([], "send HxW"),
        ([[]], "empty"),
        ([[0, 300]], "from 0 to 255"),
        ([[0, -1]], "from 0 to 255"),
        ([["a", "b"]], "rectangular"),
        (5, "send HxW"),
    ],
)
def test_bad_pixel_arrays_are_refused_with_the_reason(pixels, message):
    with pytest.raises(DataError, match=message):
        pixels_to_png(pixels)


def test_predictor_probabilities_sum_to_one(run_dir):
    predictor = Predictor(Run.open(run_dir), "eager")
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    probabilities = predictor.probabilities(images)
    assert probabilities.shape == (5, 10)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(5))
