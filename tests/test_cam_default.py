"""`cnnlab cam`'s default layer is chosen by what one cell sees; cam and patches give one
receptive field for a layer; a second `cam --layer` never writes over the first picture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.evaluate.cam import class_activation_map, default_layer, describe_layer
from cnnlab.evaluate.patches import layer_geometry
from cnnlab.model.cnn import build_model

QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
SIDE, MARK = 32, 8


@pytest.mark.parametrize(
    ("shape", "layer"),
    [
        # default's gap variant: conv4's 4x4 cells see 38x38 px of a 32x32 image, conv3's 8x8
        # cells 18x18 (its maxpool comes next, so the map is conv3's own output)
        ((3, 32, 32), "conv3"),
        ((3, 48, 48), "conv3"),  # conv4: 6x6 cells of 38x38 px, more than half of 48x48
        ((3, 64, 64), "relu4"),  # conv4: 8x8 cells of 38x38 px, a third of 64x64
        ((1, 28, 28), "relu3"),  # the flatten variant: conv3's 7x7 cells see 18x18 px
    ],
)
def test_the_default_layer_is_the_last_whose_cell_sees_at_most_half_the_image(shape, layer):
    model = build_model("default", shape)
    assert default_layer(model) == layer
    chosen = describe_layer(model, layer)
    area = chosen.receptive_field[0] * chosen.receptive_field[1]
    assert area <= shape[1] * shape[2] / 2 and min(chosen.map_size) >= 4


def test_a_model_whose_cells_all_see_more_keeps_the_last_map_of_at_least_4x4():
    model = build_model("conv(4,5) relu conv(4,5) relu conv(4,5) relu flatten fc(2)", (1, 16, 16))
    # conv2's 8x8 cells see 9x9 px (a third of the image), conv3's 4x4 cells 13x13 px (two thirds)
    assert default_layer(model) == "relu2"
    big = build_model("conv(4,13) relu conv(4,1) relu flatten fc(2)", (1, 16, 16))
    assert default_layer(big) == "relu2"  # every cell sees more than half: the old rule


def test_cam_and_patches_give_one_receptive_field_for_conv4():
    model = build_model("default", (3, SIDE, SIDE))
    # the formula's window, padding included, the same for every cell; not clipped to the image
    assert describe_layer(model, "relu4").receptive_field == (38, 38)
    assert layer_geometry(model.report, "conv4").size == (38, 38)
    assert (
        "each cell sees 38x38 px (more than the 32x32 image"
        in describe_layer(model, "relu4").describe()
    )


def test_gradcam_and_hirescam_coincide_only_where_the_gradient_is_flat():
    torch.manual_seed(0)
    model = build_model("default", (3, SIDE, SIDE))
    model.eval()
    x = torch.randn(1, 3, SIDE, SIDE)
    maps = {
        (method, layer): class_activation_map(model, x, method, layer, target=1).heatmap
        for method in ("gradcam", "hirescam")
        for layer in ("conv3", "relu4")
    }
    # at the maps gap averages, d logit / d cell is the fc weight / (h*w) everywhere
    np.testing.assert_allclose(maps["gradcam", "relu4"], maps["hirescam", "relu4"], atol=1e-6)
    assert not np.allclose(maps["gradcam", "conv3"], maps["hirescam", "conv3"], atol=1e-4)


def _write_colour_quadrants(root: Path, per_class: int) -> None:
    """root/{train,test}/<quadrant>/NNN.png: dark colour noise, a yellow 8x8 mark in a quadrant."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", per_class // 4)):
        for q, name in enumerate(QUADRANTS):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                image = rng.integers(0, 80, (SIDE, SIDE, 3), dtype=np.uint8)
                y = (q // 2) * 16 + int(rng.integers(1, 16 - MARK))
                x = (q % 2) * 16 + int(rng.integers(1, 16 - MARK))
                image[y : y + MARK, x : x + MARK] = (255, 200, 40)
                Image.fromarray(image, "RGB").save(folder / f"{i:03d}.png")


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """The default preset on 240 32x32 colour images (4 epochs, a few seconds)."""
    root = tmp_path_factory.mktemp("colour")
    _write_colour_quadrants(root / "data", per_class=60)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
        return cnnlab.train(
            model="default", data=str(root / "data"), epochs=4, seed=0, quiet=True,
            out=str(root / "run"),
        )  # fmt: skip


@pytest.mark.slow
def test_a_second_cam_with_another_layer_keeps_the_first_picture(colour_run, cli):
    run = colour_run
    first = cli("cam", str(run.path), "test:0")
    assert first.code == 0, first.err
    assert "layer conv3: 8x8 map, each cell sees 18x18 px\n" in first.out
    second = cli("cam", str(run.path), "test:0", "--layer", "relu4", "--class", "top-left")
    assert second.code == 0, second.err
    assert "each cell sees 38x38 px (more than the 32x32 image" in second.out
    written = sorted(p.name for p in (run.path / "cam").iterdir())
    predicted = json.loads(cli("cam", str(run.path), "test:0", "--json").out)["class"]
    assert written == sorted(
        [f"test-0-gradcam-conv3-{predicted}.png", "test-0-gradcam-relu4-top-left.png"]
    )
    patches = cli("patches", str(run.path), "--layer", "conv4", "--top", "2", "--channels", "2")
    assert patches.code == 0, patches.err
    assert "each cell sees 38x38 px (more than the 32x32 image" in patches.out
