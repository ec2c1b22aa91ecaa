"""A generated colour image folder: objects on cluttered, coloured backgrounds, as JPEG files.

Run: .venv/bin/python -m bench.colour_folder OUT [--train 1200] [--test-per-class 100]
     [--weights 4,2,1,1] [--seed 0]

Four classes, each an object drawn filled or outlined at a random colour, size (about a third
to a half of the side), position and rotation: `disc` (filled circle), `ring` (circle
outline), `star` (five-pointed, filled) and `cross` (a plus of two bars, filled). The
background is a random two-colour gradient with clutter: coloured blobs (ellipses), lines and
pixel noise, some of it drawn over the object. A mirror keeps every label (all four objects are
symmetric), so flips are a fair augmentation for this data: the folder says so as a user whose
classes are mirror-safe would, in a `cnnlab.toml` holding `flip_ok = true` (the README's way;
flip_ok=False writes none, and cnnlab then never mirrors).

Layout (what cnnlab/data/folder.py reads): OUT/train/<class>/NNNNN.jpg and
OUT/test/<class>/NNNNN.jpg. `weights` sets the training class counts in proportion
(e.g. 4,2,1,1 for an imbalanced set); the test part is always balanced, and depends only
on its own seed, so every training size shares the same held-out test folder.
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("disc", "ring", "star", "cross")
SIZE = 64  # pixels per side
JPEG_QUALITY = 90
TEST_SEED_OFFSET = 1_000_003  # test images come from another random stream than any train set


def class_counts(total: int, weights: tuple[float, ...] = (1, 1, 1, 1)) -> list[int]:
    """Images per class for `total` images split in proportion to `weights` (sums to total)."""
    if len(weights) != len(CLASSES) or min(weights) <= 0:
        raise ValueError(f"weights: one positive number per class ({len(CLASSES)}), not {weights}")
    share = [w / sum(weights) for w in weights]
    counts = [math.floor(total * s) for s in share]
    # the remainder goes to the classes that lost most to rounding down
    for i in sorted(range(len(counts)), key=lambda i: counts[i] - total * share[i])[
        : total - sum(counts)
    ]:
        counts[i] += 1
    return counts


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randrange(256) for _ in range(3))


def _far_colour(rng: random.Random, avoid: tuple[int, int, int]) -> tuple[int, int, int]:
    """A random colour at least a little away from `avoid`, so the object is (mostly) visible."""
    for _ in range(20):
        colour = _colour(rng)
        if sum(abs(a - b) for a, b in zip(colour, avoid, strict=True)) > 150:
            return colour
    return tuple(255 - a for a in avoid)


def _background(rng: random.Random) -> tuple[Image.Image, tuple[int, int, int]]:
    """A two-colour gradient in a random direction, with its mean colour."""
    a, b = np.array(_colour(rng), float), np.array(_colour(rng), float)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    t = (xs * math.cos(angle) + ys * math.sin(angle) + 1.5) / 3  # 0..1 across the image
    pixels = a + (b - a) * t[..., None]
    return Image.fromarray(pixels.astype(np.uint8)), tuple(int(v) for v in (a + b) / 2)


def _clutter(draw: ImageDraw.ImageDraw, rng: random.Random, blobs: int, lines: int) -> None:
    for _ in range(blobs):
        x, y = rng.uniform(-4, SIZE), rng.uniform(-4, SIZE)
        w, h = rng.uniform(4, 16), rng.uniform(4, 16)
        draw.ellipse((x, y, x + w, y + h), fill=_colour(rng))
    for _ in range(lines):
        points = [(rng.uniform(0, SIZE), rng.uniform(0, SIZE)) for _ in range(2)]
        draw.line(points, fill=_colour(rng), width=rng.randint(1, 3))


def _polygon(cx: float, cy: float, radii: list[float], turn: float) -> list[tuple[float, float]]:
    """Points at the given radii, evenly spaced in angle, turned by `turn` radians."""
    step = 2 * math.pi / len(radii)
    return [
        (cx + r * math.cos(turn + i * step), cy + r * math.sin(turn + i * step))
        for i, r in enumerate(radii)
    ]


def _cross(cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    """A plus sign of arm length r and bar half-width r/3, turned by `turn`: 12 corners."""
    w = r / 3
    corners = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r)]
    corners += [(-x, -y) for x, y in corners]
    c, s = math.cos(turn), math.sin(turn)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]


def _draw_object(
    draw: ImageDraw.ImageDraw, rng: random.Random, label: int, colour: tuple[int, int, int]
) -> None:
    r = rng.uniform(0.17, 0.27) * SIZE  # radius: the object spans a third to a half of the side
    cx, cy = rng.uniform(r, SIZE - r), rng.uniform(r, SIZE - r)
    turn = rng.uniform(0, 2 * math.pi)
    name = CLASSES[label]
    if name == "disc":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif name == "ring":
        width = max(2, round(r * rng.uniform(0.2, 0.35)))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=width)
    elif name == "star":
        draw.polygon(_polygon(cx, cy, [r, r * 0.42] * 5, turn), fill=colour)
    else:
        draw.polygon(_cross(cx, cy, r, turn), fill=colour)


def render(label: int, rng: random.Random, clutter: bool = True) -> Image.Image:
    """One 64x64 RGB image of class `label` from the random stream `rng` (clutter: blobs, lines)."""
    image, mean_colour = _background(rng)
    draw = ImageDraw.Draw(image)
    if clutter:
        _clutter(draw, rng, blobs=rng.randint(2, 6), lines=rng.randint(2, 6))
    _draw_object(draw, rng, label, _far_colour(rng, mean_colour))
    if clutter:  # some of it over the object
        _clutter(draw, rng, blobs=rng.randint(0, 2), lines=rng.randint(0, 2))
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 12, (SIZE, SIZE, 3))
    pixels = np.clip(np.asarray(image, float) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def write_split(folder: Path, counts: list[int], seed: int, clutter: bool = True) -> None:
    """folder/<class>/NNNNN.jpg with counts[i] images of class i, all from `seed`."""
    rng = random.Random(seed)
    for label, count in enumerate(counts):
        (folder / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = folder / CLASSES[label] / f"{i:05d}.jpg"
            render(label, rng, clutter).save(path, quality=JPEG_QUALITY)


def write_folder(
    root: str | Path,
    train: int,
    test_per_class: int = 100,
    weights: tuple[float, ...] = (1, 1, 1, 1),
    seed: int = 0,
    clutter: bool = True,
    flip_ok: bool = True,
) -> Path:
    """Write root/train (train images, in proportion to weights), root/test (balanced) and,
    with flip_ok, root/cnnlab.toml declaring that a mirror keeps every label.

    clutter=False leaves the backgrounds plain (gradient and noise): an easy folder for tests.
    """
    root = Path(root)
    write_split(root / "train", class_counts(train, weights), seed, clutter)
    write_split(root / "test", [test_per_class] * len(CLASSES), seed + TEST_SEED_OFFSET, clutter)
    if flip_ok:  # the user's statement about their data (cnnlab/data/folderconfig.py)
        (root / "cnnlab.toml").write_text("flip_ok = true\n")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write (train/ and test/ inside)")
    parser.add_argument("--train", type=int, default=1200, help="training images in all")
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--weights", default="1,1,1,1", help="class proportions, e.g. 4,2,1,1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    weights = tuple(float(w) for w in args.weights.split(","))
    root = write_folder(args.out, args.train, args.test_per_class, weights, args.seed)
    print(
        f"written {root}: train {class_counts(args.train, weights)}, test {args.test_per_class} each"
    )


if __name__ == "__main__":
    main()
