"""The classic image kernels of the seeds (edge, sharpen, blur, ...) as data, applied to real images.

`KERNELS` is the registry (name -> weights, description) that `cnnlab kernels`
applies and `cnnlab explain conv --kernel NAME` steps through; the panels are
drawn by `cnnlab.figures.kernels`. Images are decoded by `cnnlab.data.images`
(the checked decoder: format allowlist, pixel limit). Kernels are applied
as a CNN applies a filter: torch's conv2d (cross-correlation, no flip), with
'same' padding from `shapes.same_padding` in replicate mode, so a flat image
stays flat up to its border and the output has the input's size.

torch and the image decoder are imported inside the functions that use them: the registry
alone (`cnnlab kernels --list`, `explain conv --kernel NAME`) starts without them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.errors import ConfigError, DataError
from cnnlab.i18n import _
from cnnlab.spec import shapes

if TYPE_CHECKING:
    import torch

MAX_SIDE = 256  # images are shrunk to fit max_side x max_side pixels


@dataclass(frozen=True)
class Kernel:
    """A named k_h x k_w filter: integer weights divided by `divisor`, and what it does."""

    name: str
    weights: tuple[tuple[int, ...], ...]
    divisor: int = 1
    description: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """(k_h, k_w)."""
        return len(self.weights), len(self.weights[0])

    @property
    def matrix(self) -> list[list[int | float]]:
        """The weights as numbers (ints when the divisor is 1)."""
        if self.divisor == 1:
            return [list(row) for row in self.weights]
        return [[w / self.divisor for w in row] for row in self.weights]

    @property
    def total(self) -> Fraction:
        """Sum of the weights: 1 keeps the brightness of a flat image, 0 turns it black."""
        return Fraction(sum(sum(row) for row in self.weights), self.divisor)

    def rows_text(self) -> list[str]:
        """The integer weights as aligned rows, e.g. ['-1  0  1', '-2  0  2', '-1  0  1']."""
        width = max(len(str(w)) for row in self.weights for w in row)
        return [" ".join(f"{w:>{width}}" for w in row) for row in self.weights]

    def text(self) -> str:
        """Multi-line matrix, prefixed by '1/9 x' when the weights are divided."""
        rows = self.rows_text()
        if self.divisor == 1:
            return "\n".join(f"[{row}]" for row in rows)
        prefix = f"1/{self.divisor} x "
        pad = " " * len(prefix)
        return "\n".join(
            f"{prefix if i == len(rows) // 2 else pad}[{row}]" for i, row in enumerate(rows)
        )

    def tensor(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The weights (divided) shaped (1, 1, k_h, k_w), as conv2d wants them (float32 unless dtype)."""
        import torch

        weights = torch.tensor(self.weights, dtype=dtype or torch.float32)
        return weights.div(self.divisor)[None, None]


KERNELS: dict[str, Kernel] = {
    k.name: k
    for k in (
        Kernel("identity", ((0, 0, 0), (0, 1, 0), (0, 0, 0)), 1, "the image unchanged"),
        Kernel(
            "edge",
            ((0, -1, 0), (-1, 4, -1), (0, -1, 0)),
            1,
            "Laplacian: the seeds' Edge kernel; 0 on flat areas, bright where brightness bends",
        ),
        Kernel(
            "outline",
            ((-1, -1, -1), (-1, 8, -1), (-1, -1, -1)),
            1,
            "Laplacian with diagonals: every edge, in all eight directions",
        ),
        Kernel(
            "sobel-x",
            ((-1, 0, 1), (-2, 0, 2), (-1, 0, 1)),
            1,
            "horizontal gradient: responds to vertical edges (left-to-right changes)",
        ),
        Kernel(
            "sobel-y",
            ((-1, -2, -1), (0, 0, 0), (1, 2, 1)),
            1,
            "vertical gradient: responds to horizontal edges (top-to-bottom changes)",
        ),
        Kernel(
            "sharpen",
            ((0, -1, 0), (-1, 5, -1), (0, -1, 0)),
            1,
            "the seeds' Sharpen: identity plus the Laplacian, crisper edges",
        ),
        Kernel(
            "box-blur",
            ((1, 1, 1), (1, 1, 1), (1, 1, 1)),
            9,
            "the seeds' Blur: the mean of the 3x3 neighbourhood",
        ),
        Kernel(
            "gaussian-blur",
            ((1, 2, 1), (2, 4, 2), (1, 2, 1)),
            16,
            "weighted mean, nearer pixels count more: a softer blur",
        ),
        Kernel(
            "emboss",
            ((-2, -1, 0), (-1, 1, 1), (0, 1, 2)),
            1,
            "relief: bright on one side of an edge, dark on the other",
        ),
    )
}

ALIASES = {
    "laplacian": "edge",
    "blur": "box-blur",
    "box": "box-blur",
    "mean": "box-blur",
    "gaussian": "gaussian-blur",
    "gauss": "gaussian-blur",
    "sobelx": "sobel-x",
    "sobely": "sobel-y",
}


def get_kernel(name: str) -> Kernel:
    """The kernel called `name` (any case, '_' or '-'); a ConfigError suggests near names."""
    key = name.strip().lower().replace("_", "-")
    key = ALIASES.get(key.replace("-", ""), ALIASES.get(key, key))
    if key in KERNELS:
        return KERNELS[key]
    close = difflib.get_close_matches(key, [*KERNELS, *ALIASES], n=3)
    hint = _(" Did you mean {names}?").format(names=_(" or ").join(close)) if close else ""
    raise ConfigError(
        _("unknown kernel '{name}'.{hint} Kernels: {kernels} (see `cnnlab kernels --list`)").format(
            name=name, hint=hint, kernels=", ".join(KERNELS)
        )
    )


def is_kernel_name(text: str) -> bool:
    """Whether `text` names a registered kernel (or an alias)."""
    try:
        get_kernel(text)
    except ConfigError:
        return False
    return True


# --- images ---------------------------------------------------------------------


def load_gray(path: str | Path, max_side: int = MAX_SIDE) -> torch.Tensor:
    """An image file (PNG, JPEG, BMP, GIF, WebP) -> (H, W) float32 in [0, 1], shrunk to fit max_side."""
    import torch
    from PIL import Image

    from cnnlab.data.images import open_image

    if not Path(path).exists():
        raise DataError(_("image {source} does not exist").format(source=path))
    gray = open_image(path).convert("L")  # ITU-R 601 luma, as Pillow converts
    gray.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # keeps the aspect ratio
    return (
        torch.frombuffer(bytearray(gray.tobytes()), dtype=torch.uint8)
        .reshape(gray.height, gray.width)
        .float()
        / 255.0
    )


def demo_image(size: int = 128) -> torch.Tensor:
    """A built-in test picture (H = W = size, values in [0, 1]): a square, a disk and a ramp.

    Straight vertical and horizontal edges, a round edge and a smooth gradient
    show what each kernel picks out, with no image file needed.
    """
    import torch

    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    image = 0.15 + 0.35 * (ys.float() / (size - 1)) * (xs < size // 2)  # ramp on the left half
    square = (ys >= size // 8) & (ys < size // 2) & (xs >= size // 8) & (xs < 7 * size // 16)
    image = torch.where(square, torch.tensor(0.9), image)
    disk = (ys - 5 * size // 8) ** 2 + (xs - 11 * size // 16) ** 2 < (size // 5) ** 2
    image = torch.where(disk, torch.tensor(0.65), image)
    return image.float()


def apply_kernel(image: torch.Tensor, kernel: Kernel | str) -> torch.Tensor:
    """Filter an (H, W) image with `kernel`: 'same' padding, replicate mode -> (H, W)."""
    import torch
    import torch.nn.functional as F

    kernel = get_kernel(kernel) if isinstance(kernel, str) else kernel
    (kh, kw), (h, w) = kernel.size, image.shape
    top, bottom = shapes.same_padding(h, kh)
    left, right = shapes.same_padding(w, kw)
    # float64 and the integer weights, divided at the end: every partial sum is a small
    # integer multiple of float32 pixels, which float64 holds exactly, so a flat image
    # gives exactly 0 under a zero-sum kernel and exactly itself under a blur.
    x = F.pad(image[None, None].double(), (left, right, top, bottom), mode="replicate")
    weights = torch.tensor(kernel.weights, dtype=torch.float64)[None, None]
    out = F.conv2d(x, weights) / kernel.divisor  # (1, 1, H, W)
    return out[0, 0].float()


def kernel_stats(output: torch.Tensor) -> dict[str, float]:
    """min, max, mean and standard deviation of a filtered image."""
    return {
        "min": float(output.min()),
        "max": float(output.max()),
        "mean": float(output.mean()),
        "std": float(output.std(correction=0)),
    }
