"""One checked path from image bytes or a file to a normalised uint8 tensor (C, H, W).

Training folders, prediction and the web server's uploads all come through here, so
they share one pixel limit, one format allowlist and one way of handling modes.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.errors import DataError
from cnnlab.fileio import open_regular_file
from cnnlab.i18n import _
from cnnlab.text import printable

MAX_PIXELS = 50_000_000  # 50 megapixels: ~7000x7000; anything larger is refused before decoding
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
MAX_SIDE = 1024  # pixels per side of the size images are resized to for a model
# How an image meets a size of another aspect ratio (fit_image); stretch first: the default.
KEEP_ASPECT = ("stretch", "pad", "crop")
# Pillow warns above MAX_IMAGE_PIXELS and raises above twice that, while opening; we refuse first.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Leading bytes of formats we refuse, so the message can say what the file is.
_KNOWN_OTHER = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "Photoshop PSD"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"\x00\x00\x00\x0cjP", "JPEG 2000"),
)


def _describe_unknown(head: bytes) -> str:
    """What a file we cannot open looks like, from its first bytes."""
    for magic, kind in _KNOWN_OTHER:
        if head.startswith(magic):
            return _("a {kind} file").format(kind=kind)
    if head[4:8] == b"ftyp":
        return _("an HEIC/AVIF/MP4 file")
    if not head:
        return _("an empty file")
    return _("not an image")


def _open_header(handle: BinaryIO, label: str) -> Image.Image:
    """Pillow's lazy open (header only), restricted to the allowed formats, size-checked."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(handle, formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        raise DataError(
            _(
                "{label}: image is too large to decode safely (over {pixels} pixels); "
                "the limit is {limit} pixels: shrink it first"
            ).format(label=label, pixels=f"{2 * MAX_PIXELS:,}", limit=f"{MAX_PIXELS:,}")
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        handle.seek(0)
        kind = _describe_unknown(handle.read(16))
        raise DataError(
            _(
                "{label}: {kind}, which cnnlab cannot read; accepted formats are "
                "{formats}: convert it (e.g. save it as PNG) or remove it"
            ).format(label=label, kind=kind, formats=", ".join(ALLOWED_FORMATS))
        ) from None
    width, height = image.size
    if width * height > MAX_PIXELS:  # from the header, before any pixel is decoded
        raise DataError(
            _(
                "{label}: image is {size} = {pixels} pixels, over the limit of "
                "{limit}; refused before decoding: shrink it first"
            ).format(
                label=label,
                size=f"{width}x{height}",
                pixels=f"{width * height:,}",
                limit=f"{MAX_PIXELS:,}",
            )
        )
    if width == 0 or height == 0:
        raise DataError(
            _("{label}: image has no pixels ({size})").format(label=label, size=f"{width}x{height}")
        )
    return image


def keep_aspect_error(keep_aspect: object) -> str:
    """The message for a keep_aspect that is none of KEEP_ASPECT."""
    return _("keep_aspect must be one of {choices}, not {value}").format(
        choices=", ".join(KEEP_ASPECT), value=repr(keep_aspect)
    )


def channels_error(channels: object) -> str:
    """The message for channels that are neither 1 nor 3."""
    return _("channels must be 1 (grayscale) or 3 (RGB), not {channels}").format(channels=channels)


def header_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file from its header alone (nothing decoded, EXIF not applied)."""
    with open_regular_file(path) as handle:
        return _open_header(handle, str(path)).size


def open_image(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Open, check and fully decode an image; EXIF orientation applied. DataError names the file."""
    label = name or (str(source) if not isinstance(source, bytes) else "uploaded image")
    if not isinstance(source, bytes) and "\x00" in str(source):  # os.open raises ValueError
        raise DataError(
            _(
                "{label}: a file path cannot contain a NUL byte (\\x00); check how the path was built"
            ).format(label=printable(label))
        )
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open_regular_file(source)
    except OSError as error:
        raise DataError(
            _("{label}: cannot read ({error})").format(label=label, error=error.strerror or error)
        ) from None
    with handle:
        image = _open_header(handle, label)
        try:
            image.load()
            return ImageOps.exif_transpose(image)  # a decoded copy: the file can close
        except Exception as error:  # noqa: BLE001 (untrusted bytes: any decoder failure is a bad file)
            raise DataError(
                _(
                    "{label}: truncated or damaged {format} image ({error}); "
                    "re-export or re-download it, or remove it"
                ).format(label=label, format=image.format, error=error)
            ) from None


def _composite(image: Image.Image, background: int) -> Image.Image:
    """Flatten an image with alpha onto a plain `background` gray level (0 black .. 255 white)."""
    rgba = image.convert("RGBA")
    base = Image.new("RGBA", rgba.size, (background, background, background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    """16-bit (I;16*) or 32-bit integer (I) grayscale -> 8-bit L, scaling 0..65535 to 0..255."""
    # Allowed formats give mode I only for 16-bit PNGs, so both modes mean a 0..65535 range.
    array = np.asarray(image).astype(np.int64)
    scaled = (np.clip(array, 0, 65535) * 255 + 32767) // 65535
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def normalise_mode(image: Image.Image, background: int = 255) -> Image.Image:
    """Any Pillow mode -> "L" (grayscale) or "RGB"; alpha composited onto `background`."""
    mode = image.mode
    if mode == "L":
        return image
    if mode == "RGB":
        return image
    if mode == "1":
        return image.convert("L")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return _sixteen_bit_to_l(image)
    if mode == "F":
        return Image.fromarray(
            np.clip(np.asarray(image), 0, 255).round().astype(np.uint8), mode="L"
        )
    if mode == "LA" or mode == "La":  # Pillow converts La (premultiplied) only to LA
        return _composite(image.convert("LA"), background).convert("L")
    if mode == "P" and "transparency" in image.info or mode in ("RGBA", "RGBa", "PA"):
        return _composite(image, background)
    return image.convert("RGB")  # P without transparency, CMYK, YCbCr, LAB, HSV


def looks_grayscale(image: Image.Image) -> bool:
    """True for "L" images and for RGB images whose three channels are equal everywhere."""
    if image.mode == "L":
        return True
    array = np.asarray(image)
    return bool((array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all())


def _target(size: int | tuple[int, int]) -> tuple[int, int]:
    """(width, height) as Pillow takes it from an int (a square) or (H, W)."""
    return (size, size) if isinstance(size, int) else (size[1], size[0])


def fit_image(
    image: Image.Image, size: int | tuple[int, int], keep_aspect: str = "stretch"
) -> Image.Image:
    """`image` at `size` (int: square; (H, W)): stretched, letterboxed (pad) or centre-cropped.

    stretch: resized to the size, the aspect ratio lost (cnnlab's behaviour before keep_aspect).
    pad: scaled to fit inside the size, the rest black bars (letterbox), centred.
    crop: the centre part with the size's aspect ratio, then resized: the edges are lost.
    LANCZOS keeps thin strokes when shrinking. E.g. a 4x2 (WxH) image to 4x4 with pad: rows
    0 and 3 black, rows 1-2 the image; to 2x2 with crop: its columns 1-2.
    """
    if keep_aspect not in KEEP_ASPECT:
        raise DataError(keep_aspect_error(keep_aspect))
    w, h = _target(size)
    iw, ih = image.size
    if keep_aspect == "crop" and iw * h != ih * w:
        if iw * h > ih * w:  # wider than the target: keep the middle columns
            cw = max(1, round(ih * w / h))
            left = (iw - cw) // 2
            image = image.crop((left, 0, left + cw, ih))
        else:
            ch = max(1, round(iw * h / w))
            top = (ih - ch) // 2
            image = image.crop((0, top, iw, top + ch))
    if keep_aspect == "pad" and iw * h != ih * w:
        scale = min(w / iw, h / ih)
        nw, nh = max(1, min(w, round(iw * scale))), max(1, min(h, round(ih * scale)))
        inner = image if (nw, nh) == (iw, ih) else image.resize((nw, nh), Image.Resampling.LANCZOS)
        canvas = Image.new(image.mode, (w, h))  # black (0 in every channel)
        canvas.paste(inner, ((w - nw) // 2, (h - nh) // 2))
        return canvas
    if image.size != (w, h):
        image = image.resize((w, h), Image.Resampling.LANCZOS)
    return image


def to_tensor(
    image: Image.Image,
    channels: int | None = None,
    size: int | tuple[int, int] | None = None,
    keep_aspect: str = "stretch",
) -> torch.Tensor:
    """A normalised ("L" or "RGB") image -> uint8 tensor (C, H, W), converted and fitted as asked."""
    if channels == 1 and image.mode != "L":
        image = image.convert("L")  # ITU-R 601 luma
    elif channels == 3 and image.mode != "RGB":
        image = image.convert("RGB")
    elif channels not in (None, 1, 3):
        raise DataError(channels_error(channels))
    if size is not None:
        image = fit_image(image, size, keep_aspect)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # (C, H, W) uint8


def load_image(
    source: str | Path | bytes,
    channels: int | None = None,
    size: int | tuple[int, int] | None = None,
    background: int = 255,
    name: str | None = None,
    keep_aspect: str = "stretch",
) -> torch.Tensor:
    """Path or bytes -> checked image -> uint8 tensor (C, H, W).

    channels: 1, 3, or None (1 when the image looks gray, else 3); size: an int for a
    square, (H, W), or None to keep the image's own size; background: the gray level
    (0..255) that transparent pixels are composited onto; keep_aspect: stretch, pad or
    crop (`fit_image`).
    """
    image = normalise_mode(open_image(source, name=name), background=background)
    if channels is None and image.mode == "RGB" and looks_grayscale(image):
        image = image.convert("L")
    return to_tensor(image, channels=channels, size=size, keep_aspect=keep_aspect)
