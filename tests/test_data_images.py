"""images.load_image: every Pillow mode to one layout, EXIF rotation, and refusals that name the file."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.images import MAX_PIXELS, load_image
from cnnlab.errors import DataError


def _save(image: Image.Image, path, fmt: str = "PNG", **kwargs):
    image.save(path, fmt, **kwargs)
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with a tiny IDAT: nothing large is ever allocated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


# --- every mode gives uint8 (C, H, W) with the expected values ---------------------------------


def test_l_image(tmp_path):
    array = np.array([[0, 128], [200, 255]], dtype=np.uint8)
    x = load_image(_save(Image.fromarray(array, "L"), tmp_path / "l.png"))
    assert x.dtype == torch.uint8 and x.shape == (1, 2, 2)
    assert x[0].tolist() == array.tolist()


def test_la_alpha_composited_onto_background(tmp_path):
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (40, 255))  # opaque dark pixel
    la.putpixel((1, 0), (40, 0))  # fully transparent
    path = _save(la, tmp_path / "la.png")
    assert load_image(path)[0].tolist() == [[40, 255]]  # default background: white
    assert load_image(path, background=0)[0].tolist() == [[40, 0]]


def test_rgb_and_rgba(tmp_path):
    rgb = Image.new("RGB", (3, 2), (10, 20, 30))
    x = load_image(_save(rgb, tmp_path / "rgb.png"))
    assert x.shape == (3, 2, 3) and x[:, 0, 0].tolist() == [10, 20, 30]
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 255, 0, 0))  # transparent green -> background
    x = load_image(_save(rgba, tmp_path / "rgba.png"), background=0)
    assert x.shape == (3, 1, 2)
    assert x[:, 0, 0].tolist() == [255, 0, 0] and x[:, 0, 1].tolist() == [0, 0, 0]


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black, index 1 blue
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    p.info["transparency"] = 0
    path = _save(p, tmp_path / "p.png", transparency=0)
    assert Image.open(path).mode == "P"
    x = load_image(path)  # index 0 is transparent -> white
    assert x.shape == (3, 1, 2)
    assert x[:, 0, 0].tolist() == [255, 255, 255] and x[:, 0, 1].tolist() == [0, 0, 255]


def test_sixteen_bit_scaled_to_eight_bit(tmp_path):
    array = np.array([[0, 65535, 128 * 257, 257]], dtype=np.uint16)
    path = _save(Image.fromarray(array), tmp_path / "sixteen.png")
    assert Image.open(path).mode.startswith("I")
    x = load_image(path)
    assert x.shape == (1, 1, 4) and x[0].tolist() == [[0, 255, 128, 1]]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in ink terms
    path = _save(cmyk, tmp_path / "cmyk.jpg", "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    x = load_image(path).int()
    assert x.shape == (3, 16, 16)
    r, g, b = x[:, 8, 8].tolist()
    assert r > 230 and g < 25 and b < 25


def test_one_bit_bmp_gif_webp_first_frame(tmp_path):
    bw = Image.new("1", (4, 4), 1)
    assert load_image(_save(bw, tmp_path / "bw.bmp", "BMP"))[0].unique().tolist() == [255]
    frames = [Image.new("L", (4, 4), 0), Image.new("L", (4, 4), 255)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    assert load_image(gif).max() == 0  # the first frame, black
    webp = _save(Image.new("RGB", (8, 8), (0, 0, 200)), tmp_path / "x.webp", "WEBP", lossless=True)
    assert load_image(webp)[:, 4, 4].tolist() == [0, 0, 200]


def test_all_modes_share_one_layout_at_requested_channels_and_size(tmp_path):
    images = {
        "l.png": Image.new("L", (40, 30), 90),
        "la.png": Image.new("LA", (40, 30), (90, 255)),
        "rgb.png": Image.new("RGB", (40, 30), (90, 90, 90)),
        "rgba.png": Image.new("RGBA", (40, 30), (90, 90, 90, 255)),
        "p.gif": Image.new("L", (40, 30), 90).convert("P"),
        "i16.png": Image.fromarray(np.full((30, 40), 90 * 257, dtype=np.uint16)),
        "cmyk.jpg": Image.new("CMYK", (40, 30), (0, 0, 0, 165)),
    }
    for channels in (1, 3):
        for name, image in images.items():
            path = _save(image, tmp_path / name, "JPEG" if name.endswith(".jpg") else None)
            x = load_image(path, channels=channels, size=28)
            assert x.shape == (channels, 28, 28) and x.dtype == torch.uint8, name
            assert abs(int(x[0, 14, 14]) - 90) <= 3, (name, int(x[0, 14, 14]))
    # Without `channels`, grayscale-looking RGB becomes one channel; colour stays three.
    assert load_image(tmp_path / "rgb.png").shape[0] == 1
    assert load_image(_save(Image.new("RGB", (4, 4), (1, 2, 3)), tmp_path / "c.png")).shape[0] == 3


@pytest.mark.parametrize(
    ("orientation", "corner"),
    [(1, "top-left"), (3, "bottom-right"), (6, "top-right"), (8, "bottom-left")],
)
def test_exif_orientation_applied(tmp_path, orientation, corner):
    # 32 wide x 16 high, dark, with a bright 8x8 block in the stored top-left corner.
    array = np.zeros((16, 32), dtype=np.uint8)
    array[:8, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(Image.fromarray(array, "L"), tmp_path / "photo.jpg", "JPEG", quality=95, exif=exif)
    x = load_image(path)[0].int()
    rotated = orientation in (6, 8)
    assert tuple(x.shape) == ((32, 16) if rotated else (16, 32))
    h, w = x.shape
    corners = {
        "top-left": x[:4, :4],
        "top-right": x[:4, w - 4 :],
        "bottom-left": x[h - 4 :, :4],
        "bottom-right": x[h - 4 :, w - 4 :],
    }
    for name, block in corners.items():
        if name == corner:
            assert block.float().mean() > 200, (name, block)
        else:
            assert block.float().mean() < 50, (name, block)


# --- refusals: each names the file and the problem ------------------------------------------


def test_decompression_bomb_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(100_000, 100_000))
    with pytest.raises(DataError, match="too large to decode safely") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_over_limit_but_under_pillow_hard_limit_refused_from_header(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(8000, 7000))  # 56 MP: over our 50 MP, under Pillow's 2x error
    assert MAX_PIXELS < 8000 * 7000
    with pytest.raises(DataError, match="8000x7000 = 56,000,000 pixels, over the limit") as info:
        load_image(path)
    assert "refused before decoding" in str(info.value) and str(path) in str(info.value)


def test_truncated_png_refused(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    good = _save(Image.fromarray(noise, "L"), tmp_path / "good.png")
    bad = tmp_path / "cut.png"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or damaged PNG image") as info:
        load_image(bad)
    assert str(bad) in str(info.value)


def test_non_image_and_unsupported_formats_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a picture\n")
    with pytest.raises(DataError, match="not an image, which cnnlab cannot read") as info:
        load_image(text)
    assert str(text) in str(info.value) and "PNG, JPEG, BMP, GIF, WEBP" in str(info.value)
    tiff = _save(Image.new("L", (4, 4)), tmp_path / "scan.tif", "TIFF")
    with pytest.raises(DataError, match="a TIFF file, which cnnlab cannot read"):
        load_image(tiff)
    eps = tmp_path / "drawing.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n")
    with pytest.raises(DataError, match="PostScript/EPS"):
        load_image(eps)


def test_bytes_input_and_upload_name():
    buffer = io.BytesIO()
    Image.new("L", (5, 5), 7).save(buffer, "PNG")
    assert load_image(buffer.getvalue()).shape == (1, 5, 5)
    with pytest.raises(DataError, match="^upload.bin: not an image"):
        load_image(b"hello", name="upload.bin")
    with pytest.raises(DataError, match="^uploaded image: an empty file"):
        load_image(b"")


def test_missing_file_named(tmp_path):
    with pytest.raises(DataError, match="missing.png: cannot read"):
        load_image(tmp_path / "missing.png")


def test_bad_channels_value(tmp_path):
    path = _save(Image.new("L", (4, 4)), tmp_path / "x.png")
    with pytest.raises(DataError, match="channels must be 1"):
        load_image(path, channels=2)
