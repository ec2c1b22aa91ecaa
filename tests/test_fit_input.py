"""Models that fit the input: the default model's global-average-pooling variant, --image-size N
or HxW, the default size of colour folders, the note on much larger images, and keep-aspect
(stretch, pad, crop) applied alike in training and prediction."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.data import folder
from cnnlab.data.folder import RGB_MAX_DEFAULT, SMALL_FOLDER, default_rgb_size, load_folder
from cnnlab.data.images import KEEP_ASPECT, fit_image, load_image
from cnnlab.data.source import KEEP_ASPECTS, parse_image_size
from cnnlab.errors import CheckpointError, ConfigError, DataError
from cnnlab.model.cnn import CnnModel, model_for_data
from cnnlab.model.presets import preset_spec
from cnnlab.run.files import check_meta
from cnnlab.run.record import legacy_pixels
from cnnlab.spec.language import parse_spec
from cnnlab.training.config import resolve_config

# The default model as it was before the GAP variant: 28x28 grayscale data must keep it exactly
# (Fashion-MNIST's and shapes' trained weights stay bit-identical).
DEFAULT_28 = (
    "input(1x28x28) conv(32,3,padding=same) maxpool(2) batchnorm relu "
    "conv(64,3,padding=same) maxpool(2) batchnorm relu "
    "conv(128,3,padding=same) batchnorm relu flatten fc(10)"
)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A fresh user cache for folder decodes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)


def _params(spec) -> int:
    return sum(p.numel() for p in CnnModel(spec).parameters())


# --- the default model on the data's input -------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 64, 64), (3, 128, 128), (3, 32, 32), (1, 96, 96)])
def test_default_on_colour_or_large_inputs_ends_in_global_average_pooling(shape):
    spec, notes = model_for_data("default", shape, 4)
    kinds = [layer.kind for layer in spec.layers]
    assert kinds[-2:] == ["gap", "fc"] and "flatten" not in kinds
    assert spec.input_shape == shape and spec.layers[-1].params["out"] == 4
    assert any("global average pooling" in note for note in notes)


def test_the_gap_variant_has_the_same_parameters_at_64_and_128_pixels():
    small, _ = model_for_data("default", (3, 64, 64), 4)
    large, _ = model_for_data("default", (3, 128, 128), 4)
    assert small.layers == large.layers
    assert _params(small) == _params(large) < 500_000
    flatten_at_128 = parse_spec(DEFAULT_28).with_input((3, 128, 128))
    assert _params(flatten_at_128) > 1_000_000  # what the old flatten head cost at 128x128


@pytest.mark.parametrize("classes", [10, 4])
def test_28x28_grayscale_keeps_the_old_default_exactly(classes):
    spec, notes = model_for_data("default", (1, 28, 28), classes)
    old = parse_spec(DEFAULT_28.replace("fc(10)", f"fc({classes})"))
    assert spec == old
    assert all("global average pooling" not in note for note in notes)
    torch.manual_seed(0)
    fitted = CnnModel(spec).state_dict()
    torch.manual_seed(0)
    before = CnnModel(old).state_dict()
    assert all(torch.equal(fitted[name], before[name]) for name in before)


@pytest.mark.parametrize(("images", "gap"), [(500, True), (4999, True), (5000, False), (24_000, False), (60_000, False)])  # fmt: skip
def test_small_grayscale_data_takes_the_gap_variant_and_large_data_the_old_model(images, gap):
    """Under GAP_BELOW_IMAGES training images the 28x28 default ends in gap (fewer weights to
    overfit); full `shapes` (24,000) and Fashion-MNIST (60,000) keep the flatten model exactly."""
    spec, notes = model_for_data("default", (1, 28, 28), 10, images)
    kinds = [layer.kind for layer in spec.layers]
    assert (kinds[-2:] == ["gap", "fc"]) is gap and ("flatten" in kinds) is not gap
    assert any("small data" in note for note in notes) is gap
    if not gap:
        assert spec == parse_spec(DEFAULT_28)
    assert model_for_data("default", (3, 32, 32), 10, 60_000)[0].layers[-2].kind == "gap"


def test_summary_of_default_on_a_large_input_shows_the_variant(cli):
    result = cli("summary", "default", "--input", "3x128x128")
    assert result.code == 0, result.err
    assert "gap" in result.out and "flatten" not in result.out
    assert preset_spec("default").layers[-2].kind == "flatten"  # no input: the 28x28 model


# --- image_size: N or HxW -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("0", None), ("64", 64), ("48x64", (48, 64)), ("32X32", 32), (" 7 ", 7)],
)
def test_image_size_reads_n_or_h_x_w(text, size):
    assert parse_image_size(text) == size


@pytest.mark.parametrize("text", ["-5", "48x", "x48", "4x4x4", "0x10", "2000", "big"])
def test_a_bad_image_size_is_refused_with_both_spellings(text):
    with pytest.raises(ConfigError, match=r"image_size.*1 to 1024"):
        parse_image_size(text)


def test_h_x_w_on_a_registered_data_set_is_refused():
    with pytest.raises(ConfigError, match=r"shapes resizes to a square only.*image_size=32"):
        resolve_config({"data": "shapes", "image_size": "32x48"})
    assert resolve_config({"data": "shapes", "image_size": 32}).image_size == "32"


def test_keep_aspect_choices_are_one_list_and_checked():
    assert KEEP_ASPECTS == KEEP_ASPECT
    with pytest.raises(ConfigError, match="keep_aspect must be one of stretch, pad, crop"):
        resolve_config({"keep_aspect": "fill"})


# --- keep-aspect on known pixels --------------------------------------------------------------


def _four_by_two() -> Image.Image:
    """A 4 wide x 2 high gray image: columns 10, 20, 30, 40 (bottom row +100)."""
    return Image.fromarray(np.array([[10, 20, 30, 40], [110, 120, 130, 140]], np.uint8), "L")


def test_pad_letterboxes_with_black_bars():
    out = np.asarray(fit_image(_four_by_two(), 4, "pad"))
    assert out.tolist() == [[0, 0, 0, 0], [10, 20, 30, 40], [110, 120, 130, 140], [0, 0, 0, 0]]
    tall = np.asarray(fit_image(_four_by_two(), (2, 8), "pad"))  # (H, W): bars left and right
    assert tall[:, :2].tolist() == [[0, 0], [0, 0]] and tall[:, 6:].tolist() == [[0, 0], [0, 0]]
    assert tall[:, 2:6].tolist() == [[10, 20, 30, 40], [110, 120, 130, 140]]


def test_crop_keeps_the_centre():
    assert np.asarray(fit_image(_four_by_two(), 2, "crop")).tolist() == [[20, 30], [120, 130]]
    # (H, W) = (2, 1): one column of the 4, the second (left of centre when the split is odd)
    assert np.asarray(fit_image(_four_by_two(), (2, 1), "crop")).tolist() == [[20], [120]]


def test_stretch_is_the_default_and_same_aspect_is_untouched():
    stretched = fit_image(_four_by_two(), 4)
    assert stretched.size == (4, 4)
    for mode in KEEP_ASPECT:  # already the right shape: the pixels as they are
        assert np.asarray(fit_image(_four_by_two(), (2, 4), mode)).tolist() == [
            [10, 20, 30, 40],
            [110, 120, 130, 140],
        ]
    with pytest.raises(DataError, match="keep_aspect must be one of"):
        fit_image(_four_by_two(), 4, "squash")


def test_load_image_pads_colour_images(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (8, 4), (200, 100, 50)).save(path)
    x = load_image(path, size=8, keep_aspect="pad")
    assert x.shape == (3, 8, 8)
    assert x[:, :2].sum() == 0 and x[:, 6:].sum() == 0
    assert x[:, 2:6].reshape(3, -1).float().mean(1).tolist() == [200, 100, 50]


# --- folders: default size, HxW, the note on large images -----------------------------------


def _folder(root, size: tuple[int, int], per_class: int = 4, seed: int = 0):
    """root/<class>/*.png: two classes of colour images of (width, height) `size`."""
    rng = np.random.default_rng(seed)
    w, h = size
    for label, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = 40 + 160 * label
            pixels = rng.integers(base - 30, base + 30, (h, w, 3)).astype(np.uint8)
            pixels[:, : w // 4] = (255, 0, 0)  # a red band on the left: crop cuts it off
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize(
    ("side", "images", "size"),
    [(64, 1200, RGB_MAX_DEFAULT), (40, 5000, 40), (20, 5000, 32), (64, 300, 32), (500, 999, 32)],
)
def test_the_colour_default_keeps_more_of_large_folders_images(side, images, size):
    assert RGB_MAX_DEFAULT > 32 and default_rgb_size(side, images) == size
    assert images >= SMALL_FOLDER or size == 32


def test_a_64_pixel_colour_folder_keeps_more_than_32_pixels_from_enough_images(
    tmp_path, monkeypatch
):
    root = _folder(tmp_path / "f64", (64, 64))
    assert load_folder(root).image_shape == (3, 32, 32)  # 8 images: few, so 32
    monkeypatch.setattr(folder, "SMALL_FOLDER", 8)  # as if it held a thousand
    ds = load_folder(root, use_cache=False)  # the cache keys the rule by CACHE_VERSION only
    assert ds.image_shape == (3, RGB_MAX_DEFAULT, RGB_MAX_DEFAULT) and ds.notes == []
    assert load_folder(root, image_size=32).image_shape == (3, 32, 32)
    mid = _folder(tmp_path / "mid", (40, 60))
    assert load_folder(mid, use_cache=False).image_shape == (3, 40, 40)


def test_image_size_h_x_w_gives_that_shape(tmp_path):
    ds = load_folder(_folder(tmp_path / "f", (40, 40)), image_size=(48, 64))
    assert ds.image_shape == (3, 48, 64)
    with pytest.raises(DataError, match="image size"):
        load_folder(tmp_path / "f", image_size=(0, 64))


def test_much_larger_images_get_a_note(tmp_path):
    root = _folder(tmp_path / "big", (300, 200), per_class=2)
    by_default = load_folder(root)
    assert by_default.image_shape == (3, 32, 32)
    (note,) = by_default.notes
    assert "median shorter side 200 px" in note and "--image-size" in note
    assert load_folder(root, image_size=128).notes == []  # 200 is not over twice 128
    assert load_folder(root).notes == [note]  # from the cache too


def test_keep_aspect_changes_the_folder_pixels(tmp_path):
    root = _folder(tmp_path / "wide", (64, 32), per_class=2)
    stretched = load_folder(root, image_size=32).train_images
    cropped = load_folder(root, image_size=32, keep_aspect="crop").train_images
    padded = load_folder(root, image_size=32, keep_aspect="pad").train_images
    assert (stretched[:, 0, :, 0] == 255).all()  # the red band, stretched
    assert (cropped[:, 0, :, :4] < 255).all()  # cut off by the centre crop
    assert padded[:, :, :8].sum() == 0 and padded[:, :, 24:].sum() == 0  # black bars


# --- training and prediction fit images alike -----------------------------------------------


@pytest.mark.parametrize("keep_aspect", ["pad", "crop"])
def test_predict_fits_images_as_training_did(tmp_path, keep_aspect, capsys):
    root = _folder(tmp_path / "data", (90, 60), per_class=4)
    out = tmp_path / "run"
    run = cnnlab.train(
        model="default",  # the scratch default's gap variant (colour folders otherwise: lite0)
        data=str(root),
        image_size="24x40",
        keep_aspect=keep_aspect,
        epochs=1,
        batch_size=4,
        out=str(out),
        quiet=True,
    )
    assert run.input_shape == (3, 24, 40)
    assert "gap" in run.meta["spec"]
    config = (out / "config.toml").read_text()
    assert f'keep_aspect = "{keep_aspect}"' in config and 'image_size = "24x40"' in config
    ds = load_folder(root, image_size=(24, 40), keep_aspect=keep_aspect, use_cache=False)
    loaded = cnnlab.load(out)
    assert loaded.predictor.keep_aspect == keep_aspect
    for image, path in zip(ds.train_images, ds.train_paths, strict=True):
        assert torch.equal(loaded.predictor.prepare(path), image)
    assert loaded.predict(ds.train_paths[0])[0]["class"] in ("dark", "light")


# --- model.json: keep_aspect recorded, old runs still read -----------------------------------


def _meta(**extra) -> dict:
    spec = parse_spec("input(3x8x8) conv(4,3) gap fc(2)")
    meta = {
        "format": "cnnlab-run/1",
        "spec": spec.text(),
        "input_shape": [3, 8, 8],
        "classes": ["a", "b"],
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }
    return {**meta, **extra}


def test_model_json_without_keep_aspect_still_loads_as_stretch(tmp_path):
    check_meta(_meta(), tmp_path / "model.json")
    path = tmp_path / "model.json"
    assert legacy_pixels(_meta(), {}, path).keep_aspect == "stretch"
    assert legacy_pixels(_meta(), {"keep_aspect": "crop"}, path).keep_aspect == "crop"  # config
    assert (
        legacy_pixels(_meta(keep_aspect="pad"), {"keep_aspect": "crop"}, path).keep_aspect == "pad"
    )
    check_meta(_meta(keep_aspect="pad"), tmp_path / "model.json")
    with pytest.raises(CheckpointError, match="keep_aspect must be one of"):
        check_meta(_meta(keep_aspect="zoom"), tmp_path / "model.json")
    assert json.loads(json.dumps(_meta()))  # plain JSON


def test_training_prints_the_note_on_much_larger_images(tmp_path, capsys):
    from cnnlab.training.setup import load_data

    root = _folder(tmp_path / "big", (300, 200), per_class=2)
    load_data(resolve_config({"data": str(root), "image_size": "16"}), torch.device("cpu"))
    err = capsys.readouterr().err
    assert "note: the images are much larger (median shorter side 200 px) than the 16x16" in err
