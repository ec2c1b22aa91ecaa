"""`cnnlab.load(run).predict(...)` and `cnnlab export` given odd values: an answer or a cnnlab
error that names the problem and the fix, never a raw traceback from Pillow, numpy or torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_support import trained_run

import cnnlab
from cnnlab.data.images import normalise_mode
from cnnlab.errors import CnnlabError, ConfigError, DataError

# PIL modes that PNG cannot store: the API used to hand them to PNG and raise OSError.
UNWRITABLE_AS_PNG = ("CMYK", "YCbCr", "LAB", "HSV", "I", "F", "PA", "RGBX", "RGBa", "La")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> cnnlab.deploy.api.LoadedRun:
    return cnnlab.load(trained_run(tmp_path_factory))


def _colour_picture() -> Image.Image:
    """A 40x30 RGB picture with structure: gradients and a bright block."""
    y, x = np.mgrid[0:40, 0:30]
    array = np.stack([x * 8, y * 6, (x + y) * 3], -1).astype(np.uint8)
    array[10:20, 5:15] = (250, 200, 40)
    return Image.fromarray(array, "RGB")


@pytest.mark.parametrize("mode", [*UNWRITABLE_AS_PNG, "I;16"])
def test_a_pil_image_of_any_mode_is_converted_as_the_file_decoder_converts_it(model, mode):
    picture = _colour_picture()
    # Pillow makes the integer and float modes only from gray
    image = (picture.convert("L") if mode in ("I;16", "I", "F") else picture).convert(mode)
    answer = model.probabilities(image)
    # the decoder's own conversion (images.normalise_mode) gives the same pixels, so the same answer
    assert np.array_equal(answer, model.probabilities(normalise_mode(image)))
    assert answer.shape == (1, len(model.classes))


def test_a_cmyk_image_answers_as_its_file_does(model, tmp_path):
    path = tmp_path / "cmyk.jpg"
    _colour_picture().convert("CMYK").save(path, quality=95)
    with Image.open(path) as image:
        image.load()
    assert image.mode == "CMYK"
    assert np.array_equal(model.probabilities(image), model.probabilities(path))


# (what is passed, the call, the error kind, what the message must say)
BAD_VALUES = [
    (
        "0x0 array",
        lambda m: m.predict(np.zeros((0, 0), np.uint8)),
        DataError,
        r"no pixels \(width 0, height 0\)",
    ),
    (
        "0x28 array",
        lambda m: m.predict(np.zeros((0, 28), np.uint8)),
        DataError,
        r"no pixels \(width 28, height 0\)",
    ),
    ("28x0x3 array", lambda m: m.predict(np.zeros((28, 0, 3), np.uint8)), DataError, "no pixels"),
    ("0x0 image", lambda m: m.predict(Image.new("RGB", (0, 0))), DataError, r"width 0, height 0"),
    (
        "0x28 image",
        lambda m: m.predict(Image.new("L", (0, 28))),
        DataError,
        r"no pixels \(width 0, height 28\)",
    ),
    ("NUL in a path", lambda m: m.predict("digit\x00.png"), DataError, r"NUL byte"),
    ("NUL in a Path", lambda m: m.predict(Path("a\x00b.png")), DataError, r"NUL byte"),
    ("top_k=1.5", lambda m: m.predict(_colour_picture(), top_k=1.5), ConfigError, "top_k"),
    ("top_k='3'", lambda m: m.predict(_colour_picture(), top_k="3"), ConfigError, "whole number"),
    ("top_k=None", lambda m: m.predict(_colour_picture(), top_k=None), ConfigError, "top_k"),
    ("top_k=True", lambda m: m.predict(_colour_picture(), top_k=True), ConfigError, "top_k"),
    ("top_k=0", lambda m: m.predict(_colour_picture(), top_k=0), ConfigError, "at least 1"),
    ("load(None)", lambda m: cnnlab.load(None), ConfigError, "run folder"),
    ("load(3)", lambda m: cnnlab.load(3), ConfigError, "not int"),
]


@pytest.mark.parametrize(
    "call, kind, message", [case[1:] for case in BAD_VALUES], ids=[case[0] for case in BAD_VALUES]
)
def test_bad_values_are_cnnlab_errors_that_say_what_to_do(model, call, kind, message):
    with pytest.raises(CnnlabError, match=message) as caught:
        call(model)
    assert isinstance(caught.value, kind)


def test_top_k_takes_numpy_integers_and_stops_at_the_class_count(model):
    answer = model.predict(_colour_picture(), top_k=np.int64(2))
    assert len(answer) == 2
    assert len(model.predict(_colour_picture(), top_k=99)) == len(model.classes)


def test_export_refuses_a_negative_parity_image_count(tmp_path_factory, cli):
    run = trained_run(tmp_path_factory)
    result = cli("export", str(run), "--parity-images", "-5")
    assert result.code == 2
    assert "--parity-images" in result.err and "Traceback" not in result.err
    assert not (run / "model.onnx").exists()
