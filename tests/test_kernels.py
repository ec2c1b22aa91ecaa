"""The classic kernels on real pixels: flat images, edges, blur, the gallery image and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab.errors import ConfigError, DataError
from cnnlab.explain.kernels import KERNELS, apply_kernel, demo_image, get_kernel, load_gray
from cnnlab.explain.worked import explain_conv
from cnnlab.figures.kernels import kernels_figure

FLAT_VALUES = [0.0, 0.1, 1 / 3, 0.7, 200 / 255, 1.0]


def vertical_edge(h: int = 12, w: int = 12) -> torch.Tensor:
    """Dark left half, bright right half: the edge runs top to bottom."""
    image = torch.zeros(h, w)
    image[:, w // 2 :] = 1.0
    return image


def png_pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float64)


def assert_not_blank(path) -> None:
    """A real drawing: dark ink on white, and a spread of grey levels, not one colour."""
    pixels = png_pixels(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert (pixels < 128).mean() > 0.01  # some ink
    assert (pixels > 250).mean() > 0.05  # some white page
    assert len(np.unique(pixels)) > 20


# --- the registry ---------------------------------------------------------------------


def test_registry_is_data_with_the_seeds_kernels():
    assert {
        "identity",
        "edge",
        "sobel-x",
        "sobel-y",
        "sharpen",
        "box-blur",
        "gaussian-blur",
        "emboss",
        "outline",
    } <= set(KERNELS)
    for kernel in KERNELS.values():
        assert kernel.description
        assert kernel.tensor().shape == (1, 1, *kernel.size)
        assert torch.allclose(kernel.tensor().sum(), torch.tensor(float(kernel.total)))
    assert KERNELS["box-blur"].matrix[0][0] == pytest.approx(1 / 9)
    assert KERNELS["sobel-x"].matrix == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]


def test_names_are_forgiving_and_mistakes_are_explained():
    assert get_kernel("Sobel_X") is KERNELS["sobel-x"]
    assert get_kernel("laplacian") is KERNELS["edge"]
    assert get_kernel("blur") is KERNELS["box-blur"]
    with pytest.raises(ConfigError, match="Did you mean sharpen"):
        get_kernel("sharpn")


# --- what each kernel does ------------------------------------------------------------


@pytest.mark.parametrize("value", FLAT_VALUES)
def test_edge_of_a_flat_image_is_exactly_zero_everywhere(value):
    flat = torch.full((15, 21), value)
    for name in ("edge", "outline", "sobel-x", "sobel-y"):
        out = apply_kernel(flat, name)
        assert out.shape == flat.shape
        assert torch.equal(out, torch.zeros_like(flat)), name  # border included (replicate)


@pytest.mark.parametrize("value", FLAT_VALUES)
def test_blur_keeps_a_flat_image_and_its_mean(value):
    flat = torch.full((15, 21), value)
    for name in ("box-blur", "gaussian-blur", "identity", "sharpen", "emboss"):
        out = apply_kernel(flat, name)
        assert torch.equal(out, flat), name
    assert float(apply_kernel(flat, "box-blur").double().mean()) == float(flat.double().mean())


def test_sobel_x_sees_a_vertical_edge_and_not_a_horizontal_one():
    vertical = vertical_edge()
    horizontal = vertical.T.contiguous()
    sobel_x_v = apply_kernel(vertical, "sobel-x")
    sobel_x_h = apply_kernel(horizontal, "sobel-x")
    # the response sits on the two columns beside the edge: 1*1 + 2*1 + 1*1 = 4
    assert torch.equal(sobel_x_v[:, 5], torch.full((12,), 4.0))
    assert torch.equal(sobel_x_v[:, 6], torch.full((12,), 4.0))
    assert float(sobel_x_v[:, :5].abs().max()) == 0 and float(sobel_x_v[:, 7:].abs().max()) == 0
    assert torch.equal(sobel_x_h, torch.zeros_like(horizontal))
    # and Sobel-y the other way round
    assert torch.equal(apply_kernel(vertical, "sobel-y"), torch.zeros_like(vertical))
    assert float(apply_kernel(horizontal, "sobel-y").abs().max()) == 4.0


def test_box_blur_keeps_the_mean_of_an_image_away_from_its_border():
    image = torch.rand(40, 40, generator=torch.Generator().manual_seed(0))
    blurred = apply_kernel(image, "box-blur")
    # inside, each output is the mean of its 3x3 neighbourhood: the same as avg pooling, stride 1
    inside = F.avg_pool2d(image[None, None].double(), 3, stride=1)[0, 0].float()
    torch.testing.assert_close(blurred[1:-1, 1:-1], inside)
    assert float(blurred.std()) < float(image.std())  # blurring smooths


def test_apply_kernel_is_the_explainers_arithmetic_and_torchs():
    image = torch.randint(0, 10, (6, 7)).float()
    for kernel in KERNELS.values():
        stepwise = explain_conv(
            [image.int().tolist()], [kernel.matrix], padding="same", padding_mode="replicate"
        )
        torch.testing.assert_close(
            apply_kernel(image, kernel), torch.tensor(stepwise.output, dtype=torch.float32)
        )
        float_conv = F.conv2d(
            F.pad(image[None, None], (1, 1, 1, 1), mode="replicate"), kernel.tensor()
        )[0, 0]
        torch.testing.assert_close(apply_kernel(image, kernel), float_conv)


# --- images in, images out ------------------------------------------------------------


def test_load_gray_converts_and_shrinks(tmp_path):
    path = tmp_path / "red.jpg"
    Image.new("RGB", (600, 300), (255, 0, 0)).save(path, quality=95)
    image = load_gray(path)
    assert image.shape == (128, 256)  # the long side fits 256, the aspect ratio kept
    assert float(image.mean()) == pytest.approx(76 / 255, abs=2 / 255)  # L = 0.299 R
    assert load_gray(path, max_side=64).shape == (32, 64)


def test_load_gray_refuses_what_is_not_an_image(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_gray(tmp_path / "missing.png")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DataError, match="not an image"):
        load_gray(text)


def test_load_gray_goes_through_the_checked_decoder(tmp_path, monkeypatch):
    """The format allowlist and the pixel limit of cnnlab.data.images hold for kernels too."""
    tiff = tmp_path / "scan.tif"
    Image.new("L", (20, 20), 128).save(tiff)  # Pillow reads TIFF, cnnlab does not
    with pytest.raises(DataError, match="a TIFF file, which cnnlab cannot read"):
        load_gray(tiff)
    big = tmp_path / "big.png"
    Image.new("L", (40, 30), 0).save(big)
    monkeypatch.setattr("cnnlab.data.images.MAX_PIXELS", 1000)
    with pytest.raises(DataError, match="refused before decoding"):
        load_gray(big)


def test_the_kernels_need_no_matplotlib():
    """Kernels are torch and data; only cnnlab.figures.kernels draws them."""
    code = "import sys, cnnlab.explain.kernels; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_figure_has_one_panel_per_kernel_with_its_matrix():
    figure = kernels_figure(demo_image(64))
    axes = figure.axes
    assert len(axes) == len(KERNELS)
    for ax, kernel in zip(axes, KERNELS.values(), strict=True):
        assert ax.get_title().startswith(kernel.name)
        assert ax.get_xlabel() == kernel.text()
        shown = ax.get_images()[0].get_array()
        assert shown.shape == (64, 64) and 0 <= shown.min() <= shown.max() <= 1
    # the edge panel is black where the demo picture is flat, bright on its edges
    edge = axes[list(KERNELS).index("edge")].get_images()[0].get_array()
    assert edge[2, 2] == 0 and edge.max() == 1
    assert len(kernels_figure(demo_image(64), ["sobel-x", "sobel-y"]).axes) == 2


def test_cli_writes_a_png_gallery_and_prints_statistics(cli, tmp_path):
    source = tmp_path / "square.png"
    pixels = np.zeros((80, 120), dtype=np.uint8)
    pixels[20:60, 30:90] = 255
    Image.fromarray(pixels).save(source)
    out = tmp_path / "kernels.png"
    result = cli("kernels", str(source), "--out", str(out))
    assert result.code == 0, result.err
    assert_not_blank(out)
    for name in KERNELS:
        assert name in result.out
    assert f"wrote {out} ({len(KERNELS)} panel(s))" in result.out


def test_cli_kernel_statistics_as_json(cli, tmp_path):
    result = cli(
        "kernels",
        "demo",
        "--kernel",
        "edge",
        "--kernel",
        "box-blur",
        "--json",
        "--out",
        str(tmp_path / "k.png"),
    )
    data = json.loads(result.out)
    assert list(data["kernels"]) == ["edge", "box-blur"]
    expected = apply_kernel(demo_image(), "edge")
    assert data["kernels"]["edge"]["max"] == pytest.approx(float(expected.max()))
    assert data["kernels"]["box-blur"]["mean"] == pytest.approx(
        float(demo_image().mean()), abs=0.01
    )


def test_cli_svg_keeps_kernel_names_as_text(cli, tmp_path):
    out = tmp_path / "sobel.svg"
    result = cli("kernels", "demo", "--kernel", "sobel-x", "--kernel", "sobel-y", "--out", str(out))
    assert result.code == 0, result.err
    texts = " ".join(
        "".join(el.itertext()) for el in ET.parse(out).iter() if el.tag.endswith("text")
    )
    assert "sobel-x" in texts and "sobel-y" in texts and "emboss" not in texts


def test_cli_list_prints_every_matrix(cli):
    result = cli("kernels", "--list")
    assert result.code == 0
    for kernel in KERNELS.values():
        assert kernel.name in result.out
        assert kernel.text() in result.out
    data = json.loads(cli("kernels", "--list", "--json").out)
    assert data["sobel-x"]["matrix"] == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give an image file"),
        (["missing.png"], "does not exist"),
        (["demo", "--out", "k.gif"], ".png or .svg"),
        (["demo", "--out", "k.png", "--format", "svg"], "--format is svg"),
        (["demo", "--kernel", "sharpn"], "Did you mean"),
    ],
)
def test_cli_errors(cli, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    result = cli("kernels", *argv)
    assert result.code == 2
    assert message in result.err
