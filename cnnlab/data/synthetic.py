"""The built-in `shapes` data set: hand-drawn-looking shapes, 28x28 white strokes on black.

Each class is a few polylines in a unit frame. Per image, the vertices are jittered
(hand tremor) and bent by a smooth random wobble, then mapped by a random affine
(rotation, size, aspect, shear, position). The image is the distance from each pixel
to the nearest segment, turned into ink by a stroke width with a one-pixel soft edge,
then noise is added. All of it runs on whole batches in torch; Python loops only over
classes and segments, never over images or pixels.

Every class shape has a mirror axis and rotation is uniform over 360 degrees, so a
horizontally flipped drawing is still the same class: flipping preserves labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cnnlab.data import SHAPES_CLASSES, SHAPES_TEST, SHAPES_TRAIN
from cnnlab.errors import DataError
from cnnlab.i18n import _

IMAGE_SIZE = 28
DEFAULT_TRAIN = SHAPES_TRAIN  # the sizes and classes are defined, torch-free, in data/__init__.py
DEFAULT_TEST = SHAPES_TEST
# Images rendered at a time, and the float32 (H, W) planes each holds while it is drawn
# (distances, strokes, noise): about 20 measured (peak RSS, 40,960 images), 24 counted
CHUNK = 4096
CHUNK_PLANES = 24


def _ring(
    n: int, radius: float = 1.0, start: float = 0.0, sweep: float = 2 * math.pi
) -> np.ndarray:
    t = start + sweep * np.arange(n + 1) / n
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _polygon(sides: int) -> np.ndarray:
    return _ring(sides, 1.0, start=math.pi / 2)  # closed: last vertex repeats the first


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    t = math.pi / 2 + math.pi * np.arange(2 * points + 1) / points
    r = np.where(np.arange(2 * points + 1) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _heart(n: int = 20) -> np.ndarray:
    t = 2 * math.pi * np.arange(n + 1) / n
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y + 2.5], axis=1) / 16.5


def _crescent(n: int = 10) -> np.ndarray:
    a0 = math.radians(50)
    outer = _ring(n, 1.0, start=a0, sweep=2 * math.pi - 2 * a0)  # from top-right round the left
    end = outer[-1]
    cx = 0.9  # inner arc: a circle through both tips, centred right of the outer one
    r = math.hypot(end[0] - cx, end[1])
    b0 = math.atan2(end[1], end[0] - cx) % (2 * math.pi)  # lower tip, seen from the inner centre
    inner = _ring(n // 2 + 2, r, start=b0, sweep=2 * math.pi - 2 * b0) + np.array(
        [cx, 0.0]
    )  # to the upper tip
    pts = np.concatenate([outer, inner[1:]])
    return pts + np.array([0.2, 0.0])


# Class name -> strokes (each a polyline of vertices in a frame of radius about 1).
CLASS_STROKES: dict[str, list[np.ndarray]] = {
    "circle": [_ring(24)],
    "triangle": [_polygon(3)],
    "square": [_ring(4, math.sqrt(2) * 0.8, start=math.pi / 4)],
    "pentagon": [_polygon(5)],
    "star": [_star()],
    "cross": [np.array([[-1.0, 0], [1, 0]]), np.array([[0, -1.0], [0, 1]])],
    "heart": [_heart()],
    "arrow": [
        np.array([[-1.0, 0], [1, 0]]),
        np.array([[1.0, 0], [0.45, 0.45]]),
        np.array([[1.0, 0], [0.45, -0.45]]),
    ],
    "line": [np.array([[-1.0, 0], [1, 0]])],
    "crescent": [_crescent()],
}
CLASSES: list[str] = list(CLASS_STROKES)
assert tuple(CLASSES) == SHAPES_CLASSES, "data/__init__.py lists the shapes classes in this order"


@dataclass(frozen=True)
class Difficulty:
    """How messy the drawings are; units are pixels unless said otherwise."""

    # Tuned so that a good CNN learns it well but not perfectly: `cnnlab train` (the default
    # model and recipe, 8 epochs, about 40 s on 2 cores) reaches 98.3%; stray strokes, pen
    # lifts and small, wobbly drawings leave some images ambiguous even to a person.
    size: tuple[float, float] = (5.5, 11.5)  # shape radius
    stroke: tuple[float, float] = (0.6, 1.6)  # half stroke width
    jitter: float = 0.05  # per-vertex tremor, in shape radii
    wobble: float = 0.1  # smooth bend amplitude, in shape radii
    aspect: float = 0.18  # log aspect ratio range (+-)
    shear: float = 0.1
    shift: float = 3.0  # centre offset range (+-), reduced for big shapes
    ink: tuple[float, float] = (0.65, 1.0)  # stroke brightness
    noise: tuple[float, float] = (0.0, 0.25)  # gaussian noise std, per image
    specks: float = 0.015  # fraction of pixels hit by bright specks
    clutter: float = 0.3  # probability of a stray pen stroke beside the shape
    gaps: float = 0.35  # probability of a pen lift: a band across the drawing without ink


DEFAULT_DIFFICULTY = Difficulty()


def _class_geometry(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices (V, 2) float32 and segment endpoints (S, 2) as vertex indices."""
    verts, segs, offset = [], [], 0
    for stroke in CLASS_STROKES[name]:
        v = torch.tensor(stroke, dtype=torch.float32)
        verts.append(v)
        idx = torch.arange(offset, offset + len(v))
        segs.append(torch.stack([idx[:-1], idx[1:]], dim=1))
        offset += len(v)
    return torch.cat(verts), torch.cat(segs)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, *shape: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand((n, *shape), generator=gen)


def _place(
    vertices: torch.Tensor, n: int, d: Difficulty, gen: torch.Generator, size: int
) -> torch.Tensor:
    """Per-image vertex positions in pixels (n, V, 2): tremor, wobble, then a random affine."""
    v = vertices.expand(n, -1, -1) + d.jitter * torch.randn((n, *vertices.shape), generator=gen)
    # Smooth wobble: axis j moves by amp_j * sin(k_j . v + phase_j), k_j a random low frequency.
    k = _uniform(n, 1.0, 3.0, gen, 2, 1) * torch.nn.functional.normalize(
        torch.randn((n, 2, 2), generator=gen), dim=2
    )
    phase = _uniform(n, 0, 2 * math.pi, gen, 1, 2)
    amp = _uniform(n, 0, d.wobble, gen, 1, 2)
    v = v + amp * torch.sin(torch.einsum("nvd,njd->nvj", v, k) + phase)
    # Affine: scale with aspect, shear, rotate (uniform, so mirror images are reachable too).
    radius = _uniform(n, *d.size, gen)
    log_aspect = _uniform(n, -d.aspect, d.aspect, gen)
    shear = _uniform(n, -d.shear, d.shear, gen)
    angle = _uniform(n, 0, 2 * math.pi, gen)
    sx, sy = radius * log_aspect.exp(), radius * (-log_aspect).exp()
    cos, sin = angle.cos(), angle.sin()
    # M = R @ [[1, shear], [0, 1]] @ diag(sx, sy): (n, 2, 2)
    m = torch.stack(
        [
            torch.stack([cos * sx, (cos * shear - sin) * sy], -1),
            torch.stack([sin * sx, (sin * shear + cos) * sy], -1),
        ],
        dim=1,
    )
    room = (size / 2 - 1 - radius).clamp(0, d.shift)  # keep big shapes inside the frame
    centre = size / 2 + room.unsqueeze(1) * _uniform(n, -1, 1, gen, 2)
    return v @ m.transpose(1, 2) + centre.unsqueeze(1)


def _distance(points: torch.Tensor, segs: torch.Tensor, size: int) -> torch.Tensor:
    """Distance in pixels (n, size*size) from each pixel centre to the nearest segment."""
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    px, py = gx.reshape(1, -1), gy.reshape(1, -1)  # (1, HW)
    a, b = points[:, segs[:, 0]], points[:, segs[:, 1]]  # (n, S, 2)
    best = torch.full((points.shape[0], size * size), float("inf"))
    for s in range(segs.shape[0]):
        ax, ay = a[:, s, 0:1], a[:, s, 1:2]  # (n, 1)
        dx, dy = b[:, s, 0:1] - ax, b[:, s, 1:2] - ay
        rx, ry = px - ax, py - ay  # (n, HW)
        t = ((rx * dx + ry * dy) / (dx * dx + dy * dy + 1e-6)).clamp_(0, 1)
        ex, ey = rx.sub_(t * dx), ry.sub_(t * dy)
        torch.minimum(best, ex.square_().add_(ey.square_()), out=best)
    return best.sqrt_()


def render_class(
    name: str,
    n: int,
    gen: torch.Generator,
    d: Difficulty = DEFAULT_DIFFICULTY,
    size: int = IMAGE_SIZE,
) -> torch.Tensor:
    """`n` drawings of class `name` as float images (n, size, size) in [0, 1] (before noise)."""
    vertices, segs = _class_geometry(name)
    points = _place(vertices, n, d, gen, size)
    dist = _distance(points, segs, size)
    half_width = _uniform(n, *d.stroke, gen, 1)
    ink = _uniform(n, *d.ink, gen, 1)
    # Full ink within the half width, a one-pixel linear edge outside it (anti-aliasing).
    return ((half_width + 0.5 - dist).clamp_(0, 1) * ink).view(n, size, size)


def _random_segments(
    n: int, gen: torch.Generator, size: int, length: tuple[float, float]
) -> torch.Tensor:
    """(n, 2, 2) endpoints of one random segment per image, in pixels, inside the frame."""
    centre = _uniform(n, 4, size - 4, gen, 2)
    angle = _uniform(n, 0, math.pi, gen)
    half = _uniform(n, *length, gen) / 2
    offset = torch.stack([angle.cos(), angle.sin()], 1) * half.unsqueeze(1)
    return torch.stack([centre - offset, centre + offset], 1)


_ONE_SEGMENT = torch.tensor([[0, 1]])


def _mess(images: torch.Tensor, d: Difficulty, gen: torch.Generator) -> torch.Tensor:
    """Stray strokes and pen lifts on a chosen fraction of the drawings (n, H, W)."""
    n, size = images.shape[0], images.shape[-1]
    stray = _random_segments(n, gen, size, (3.0, 9.0))
    stray_ink = (1.2 - _distance(stray, _ONE_SEGMENT, size)).clamp_(0, 1).view(n, size, size)
    has_stray = (torch.rand(n, generator=gen) < d.clutter).view(n, 1, 1)
    images = torch.where(has_stray, torch.maximum(images, stray_ink * 0.9), images)
    band = _random_segments(n, gen, size, (30.0, 40.0))  # a long line through the frame
    erased = (_distance(band, _ONE_SEGMENT, size) < _uniform(n, 0.8, 1.8, gen, 1)).view(
        n, size, size
    )
    has_gap = (torch.rand(n, generator=gen) < d.gaps).view(n, 1, 1)
    return images.masked_fill(erased & has_gap, 0.0)


def _add_noise(images: torch.Tensor, d: Difficulty, gen: torch.Generator) -> torch.Tensor:
    n = images.shape[0]
    sigma = _uniform(n, *d.noise, gen, 1, 1)
    noisy = images + sigma * torch.randn(images.shape, generator=gen)
    specks = (torch.rand(images.shape, generator=gen) < d.specks) * _uniform(n, 0.3, 1.0, gen, 1, 1)
    return torch.maximum(noisy, specks).clamp_(0, 1)


def _split_generator(seed: int, split: int) -> torch.Generator:
    """Independent streams per (seed, split): the test set does not depend on the train size."""
    mixed = (int(seed) * 0x9E3779B97F4A7C15 + split * 0xBF58476D1CE4E5B9 + 1) % (2**63)
    return torch.Generator().manual_seed(mixed)


def generate_shapes(
    n: int,
    seed: int = 0,
    split: int = 0,
    difficulty: Difficulty = DEFAULT_DIFFICULTY,
    size: int = IMAGE_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` shuffled, class-balanced images (n, 1, size, size) uint8 and labels (n,) int64."""
    if n < 0:
        raise DataError(_("shapes: size {size} must be zero or positive").format(size=n))
    gen = _split_generator(seed, split)
    k = len(CLASSES)
    counts = [n // k + (1 if c < n % k else 0) for c in range(k)]
    # uint8 chunk by chunk: the whole set as float32 took 4 bytes a pixel, twice (the shuffled
    # copy), where it now takes 1, twice (the same bytes: round(255 x) is per pixel)
    images = torch.empty((n, size, size), dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.int64)
    start = 0
    for c, (name, count) in enumerate(zip(CLASSES, counts, strict=True)):
        for lo in range(0, count, CHUNK):  # chunks bound the (chunk, HW) float temporaries
            m = min(CHUNK, count - lo)
            drawn = _mess(render_class(name, m, gen, difficulty, size), difficulty, gen)
            noisy = _add_noise(drawn, difficulty, gen)
            images[start : start + m] = noisy.mul_(255).round_().to(torch.uint8)
            labels[start : start + m] = c
            start += m
    perm = torch.randperm(n, generator=gen)
    return images[perm].unsqueeze(1), labels[perm]  # (n, 1, H, W), contiguous


def generation_bytes(n: int, size: int = IMAGE_SIZE) -> int:
    """Memory `generate_shapes(n)` holds at its peak: the uint8 images and their shuffled copy,
    and one chunk's float32 temporaries (CHUNK_PLANES planes of H*W per image)."""
    return 2 * n * size * size + min(n, CHUNK) * size * size * 4 * CHUNK_PLANES
