"""Batched augmentation: shapes and dtypes kept, deterministic, flips only where allowed, shifts bounded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cnnlab.data import load_dataset
from cnnlab.data.augment import AugmentPolicy, augment_batch, parse_policy
from cnnlab.errors import ConfigError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(dtype=torch.uint8, n=64, c=1, size=28) -> torch.Tensor:
    x = torch.randint(0, 256, (n, c, size, size), generator=gen(123)).to(dtype)
    return x if dtype == torch.uint8 else x / 255


POLICIES = [
    "none",
    "translate=2",
    "flip",
    "cutout=8",
    "affine=10",
    "affine=15,scale=0.1",
    "translate=3,flip,cutout=6,affine=10",
    "rot90",
    "vflip",
    "crop=0.5",
    "jitter=0.3",
    "crop=0.8,rot90,vflip,jitter=0.2,hue=0.05,cutout=4",
]


@pytest.mark.parametrize("text", POLICIES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_kept_and_deterministic(text, dtype, channels):
    x = batch(dtype, c=channels)
    policy = parse_policy(text)
    a = augment_batch(x, policy, gen(5))
    b = augment_batch(x, policy, gen(5))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    if text == "none":
        assert a is x
    else:
        assert not torch.equal(a, x)
        assert not torch.equal(a, augment_batch(x, policy, gen(6)))


def test_single_bright_pixel_moves_at_most_t():
    t = 3
    x = torch.zeros(500, 1, 28, 28, dtype=torch.uint8)
    x[:, 0, 10, 17] = 255
    out = augment_batch(x, AugmentPolicy(translate=t), gen(0))
    assert out.flatten(1).sum(1).eq(255).all()  # nothing lost far from the border
    pos = out.flatten(1).argmax(1)
    dy, dx = pos // 28 - 10, pos % 28 - 17
    assert dy.abs().max() == t and dx.abs().max() == t  # the whole range is used...
    assert set(dy.tolist()) == set(range(-t, t + 1))  # ...and every shift occurs


def test_flip_mirrors_about_half_and_only_horizontally():
    x = torch.zeros(400, 1, 8, 8, dtype=torch.uint8)
    x[:, 0, 2, 1] = 255
    out = augment_batch(x, AugmentPolicy(flip=True), gen(1))
    flipped = out[:, 0, 2, 6] == 255
    kept = out[:, 0, 2, 1] == 255
    assert torch.all(flipped ^ kept)
    assert 150 < int(flipped.sum()) < 250


def test_cutout_zeroes_a_square_at_most_size_squared():
    x = torch.full((200, 1, 28, 28), 255, dtype=torch.uint8)
    out = augment_batch(x, AugmentPolicy(cutout=8), gen(2))
    zeros = out.eq(0).flatten(1).sum(1)
    assert zeros.max() == 64 and zeros.min() > 0  # full squares inside, clipped at edges


def test_affine_rotation_keeps_centre_and_moves_corners():
    x = torch.zeros(100, 1, 28, 28)
    x[:, :, 12:16, 12:16] = 1.0  # centre block survives any rotation
    x[:, :, 0:2, 0:2] = 1.0
    out = augment_batch(x, AugmentPolicy(affine=30), gen(3))
    assert out[:, :, 13:15, 13:15].min() > 0.9
    assert out[:, :, 0:2, 0:2].mean() < 0.9


def test_policy_parser():
    assert parse_policy("none").is_identity
    assert parse_policy("translate=2,flip,cutout=8,affine=10") == AugmentPolicy(2, True, 8, 10.0)
    assert str(parse_policy("crop=4,hflip")) == "translate=4,flip"
    assert parse_policy("standard", flip_ok=True, image_size=28) == AugmentPolicy(
        translate=2, flip=True
    )
    assert parse_policy("standard,cutout=8", flip_ok=False, image_size=32) == AugmentPolicy(
        translate=4, cutout=8
    )
    with pytest.raises(
        ConfigError, match="augmentation 'blur' is unknown; known: none, standard, light, translate"
    ):
        parse_policy("blur=2")
    with pytest.raises(ConfigError, match="needs a value"):
        parse_policy("translate")
    with pytest.raises(ConfigError, match="is not an integer"):
        parse_policy("cutout=big")
    with pytest.raises(ConfigError, match="between 0 and 180"):
        parse_policy("affine=500")


def test_flip_follows_the_data_set():
    mnist_like = load_dataset("shapes", train_size=20, test_size=10)
    assert parse_policy("standard", mnist_like).flip  # every shape class is mirror-symmetric
    mnist_like.flip_ok = False  # as for mnist and kmnist: a mirrored digit is another glyph
    assert not parse_policy("standard", mnist_like).flip
    with pytest.raises(ConfigError, match="shapes: horizontal flip changes labels"):
        parse_policy("translate=2,flip", mnist_like)


# --- items a folder can opt into: rot90, vflip, crop, colour jitter ------------------------


# The older items' draws, in the order augment_batch has always made them, replayed from the
# same generator and applied by a second implementation (numpy, float64). Rotations are
# bilinear: float results differ in the last bits between CPUs (AVX-512 or not), so pixels
# after one may round 1 level apart; every other step moves whole pixels and is exact.


def _replay_affine(x: np.ndarray, degrees: float, scale: float, g: torch.Generator) -> np.ndarray:
    """Rotate by up to +-degrees, zoom by up to +-scale: bilinear, zeros outside, align_corners=False."""
    n, c, h, w = x.shape
    angle = (torch.rand(n, generator=g).double().numpy() * 2 - 1) * math.radians(degrees)
    zoom = 1 + (torch.rand(n, generator=g).double().numpy() * 2 - 1) * scale
    cos, sin = (np.cos(angle) / zoom)[:, None, None], (np.sin(angle) / zoom)[:, None, None]
    yn, xn = np.meshgrid(
        (2 * np.arange(h) + 1) / h - 1, (2 * np.arange(w) + 1) / w - 1, indexing="ij"
    )
    # output (x, y) in [-1, 1] -> input pixel coordinates
    px = ((cos * xn - sin * yn + 1) * w - 1) / 2  # (N, H, W)
    py = ((sin * xn + cos * yn + 1) * h - 1) / 2
    x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
    out = np.zeros((n, c, h, w))
    images = np.arange(n)[:, None, None]
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            weight = (1 - np.abs(px - xi)) * (1 - np.abs(py - yi))
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            pixels = x[images, :, yi.clip(0, h - 1), xi.clip(0, w - 1)]  # (N, H, W, C)
            out += np.moveaxis(pixels * (weight * inside)[..., None], -1, 1)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _replay_translate(x: np.ndarray, t: int, g: torch.Generator) -> np.ndarray:
    """Each image shifted by its (dy, dx) in [-t, t], zeros where it moved in from outside."""
    n, _, h, w = x.shape
    dy = torch.randint(-t, t + 1, (n, 1), generator=g)[:, 0].tolist()
    dx = torch.randint(-t, t + 1, (n, 1), generator=g)[:, 0].tolist()
    padded = np.pad(x, ((0, 0), (0, 0), (t, t), (t, t)))
    return np.stack(
        [padded[i, :, t - dy[i] : t - dy[i] + h, t - dx[i] : t - dx[i] + w] for i in range(n)]
    )


def _replay_flip(x: np.ndarray, g: torch.Generator) -> np.ndarray:
    mirrored = (torch.rand(x.shape[0], generator=g) < 0.5).numpy()
    return np.where(mirrored[:, None, None, None], x[..., ::-1], x)


def _replay_cutout(x: np.ndarray, size: int, g: torch.Generator) -> np.ndarray:
    n, _, h, w = x.shape
    top = torch.randint(0, h, (n, 1), generator=g)[:, 0].tolist()
    left = torch.randint(0, w, (n, 1), generator=g)[:, 0].tolist()
    out = x.copy()
    for i in range(n):
        ys, xs = max(top[i] - size // 2, 0), max(left[i] - size // 2, 0)
        out[i, :, ys : top[i] - size // 2 + size, xs : left[i] - size // 2 + size] = 0
    return out


def _replayed(x: np.ndarray, text: str, g: torch.Generator) -> np.ndarray:
    """What the older items make of x, in augment_batch's order: affine, translate, flip, cutout."""
    if text.startswith("translate=2,flip,cutout=8"):
        x = _replay_affine(x, 10, 0.1, g)
    x = _replay_translate(x, 2, g)
    if "flip" in text:
        x = _replay_flip(x, g)
    if "cutout" in text:
        x = _replay_cutout(x, 8, g)
    return x


@pytest.mark.parametrize(
    ("text", "flip_ok", "replayed_as"),
    [
        ("standard", True, "translate=2,flip"),
        ("standard", False, "translate=2"),
        ("translate=2,flip,cutout=8,affine=10,scale=0.1", None, "translate=2,flip,cutout=8,affine"),
    ],
)
def test_older_items_draw_what_they_drew_before(text, flip_ok, replayed_as):
    # the newer items (rot90, vflip, crop, jitter) draw only when on: a policy of older items
    # draws what it drew before they existed, so default training runs stay as they were
    x = torch.randint(0, 256, (64, 3, 28, 28), generator=gen(123)).to(torch.uint8)
    g, replay = gen(7), gen(7)
    policy = parse_policy(text, flip_ok=flip_ok)
    for _ in range(2):  # two batches: the second goes on from where the first left the generator
        got = augment_batch(x, policy, g).numpy().astype(int)
        expected = _replayed(x.numpy(), replayed_as, replay).astype(int)
        if policy.affine:  # bilinear: a pixel may round one level apart (see above), no more
            assert np.abs(got - expected).max() <= 1 and (got != expected).mean() < 0.01
        else:
            assert np.array_equal(got, expected)
    assert torch.equal(g.get_state(), replay.get_state())  # no draw more, none fewer


def test_rot90_turns_each_image_by_its_drawn_quarter_turns():
    image = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    x = image.expand(200, 3, 4, 4).contiguous()
    out = augment_batch(x, parse_policy("rot90"), gen(3))
    turns = torch.randint(0, 4, (200,), generator=gen(3))  # the same draws, replayed
    for i in range(200):
        assert torch.equal(out[i], x[i].rot90(int(turns[i]), (1, 2)))
    assert set(turns.tolist()) == {0, 1, 2, 3}
    # a quarter turn of the known image (torch.rot90: the top row becomes the left column)
    assert out[int(torch.nonzero(turns == 1)[0])][0, :, 0].tolist() == [3, 2, 1, 0]


def test_rot90_refuses_images_that_are_not_square():
    with pytest.raises(ConfigError, match="square"):
        augment_batch(torch.zeros(2, 1, 4, 6, dtype=torch.uint8), parse_policy("rot90"), gen())
    from cnnlab.data.dataset import Dataset

    wide = Dataset(
        "wide",
        ["a", "b"],
        torch.zeros(2, 1, 4, 6, dtype=torch.uint8),
        torch.tensor([0, 1]),
        torch.zeros(2, 1, 4, 6, dtype=torch.uint8),
        torch.tensor([0, 1]),
    )
    with pytest.raises(ConfigError, match="4x6.*--image-size"):
        parse_policy("rot90", wide)


def test_vflip_mirrors_rows_of_the_drawn_half_and_needs_flip_ok():
    x = torch.randint(0, 256, (100, 1, 5, 5), generator=gen(1)).to(torch.uint8)
    out = augment_batch(x, parse_policy("vflip"), gen(4))
    mask = torch.rand(100, generator=gen(4)) < 0.5
    assert torch.equal(out[mask], x[mask].flip(2)) and torch.equal(out[~mask], x[~mask])
    assert 30 < int(mask.sum()) < 70
    with pytest.raises(ConfigError, match="vertical flip.*--flip-ok"):
        parse_policy("vflip", flip_ok=False)


def test_brightness_scales_each_image_within_its_bounds():
    x = torch.full((300, 3, 6, 6), 100, dtype=torch.uint8)
    out = augment_batch(x, parse_policy("brightness=0.2"), gen(2))
    per_image = out.flatten(1)
    assert (per_image == per_image[:, :1]).all()  # one factor per image
    values = per_image[:, 0].float()
    assert values.min() >= 80 and values.max() <= 120
    assert values.min() < 84 and values.max() > 116  # the whole range is used


def test_contrast_saturation_and_hue_keep_a_flat_gray_image():
    x = torch.full((50, 3, 6, 6), 90, dtype=torch.uint8)
    out = augment_batch(x, parse_policy("contrast=0.5,saturation=0.5,hue=0.3"), gen(2))
    assert (out.int() - 90).abs().max() <= 1  # contrast around its own mean, no colour to turn


def test_jitter_sets_three_strengths_and_hue_turns_colour_keeping_brightness():
    assert str(parse_policy("jitter=0.2,hue=0.05")) == (
        "brightness=0.2,contrast=0.2,saturation=0.2,hue=0.05"
    )
    red = torch.tensor([0.6, 0.45, 0.4]).view(1, 3, 1, 1).expand(200, 3, 4, 4)
    # float images in 0..1 stay float; a muted red, so no channel leaves 0..1 when turned
    out = augment_batch(red, parse_policy("hue=0.1"), gen(9))
    assert out.dtype == torch.float32
    assert not torch.equal(out, red)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert torch.allclose((out * luma).sum(1), (red * luma).sum(1), atol=1e-3)  # YIQ keeps Y


def test_crop_boxes_keep_the_asked_area_inside_the_image():
    from cnnlab.data.augment import _crop_boxes

    height, width, cy, cx = _crop_boxes(2000, 0.5, gen(0))
    area = height * width
    assert area.min() >= 0.5 - 1e-5 and area.max() <= 1 + 1e-5
    assert area.min() < 0.52 and area.max() > 0.98
    assert ((width / height).log().abs() <= torch.tensor(4 / 3).log() + 1e-5).all()
    for centre, side in ((cy, height), (cx, width)):
        assert (centre - side / 2 >= -1e-5).all() and (centre + side / 2 <= 1 + 1e-5).all()


def test_crop_zooms_in_and_keeps_size():
    # a horizontal ramp: a crop of half the area shows a narrower range of columns, stretched
    ramp = torch.arange(32, dtype=torch.float32).mul(8).view(1, 1, 1, 32).expand(64, 1, 32, 32)
    x = ramp.to(torch.uint8).contiguous()
    out = augment_batch(x, parse_policy("crop=0.5"), gen(5))
    assert out.shape == x.shape and out.dtype == x.dtype
    span = out[:, 0, 16].float().amax(1) - out[:, 0, 16].float().amin(1)  # (64,) middle rows
    from cnnlab.data.augment import _crop_boxes

    _, width, _, _ = _crop_boxes(64, 0.5, gen(5))  # the same draws, replayed
    assert ((span - width * 248).abs() <= 16).all()  # the box's columns, stretched to all 32
    assert span.min() < 248 * 0.75  # some crops do zoom in
    assert torch.equal(augment_batch(x, parse_policy("crop=0.5"), gen(5)), out)


def test_crop_spellings():
    assert str(parse_policy("crop=4")) == "translate=4"  # whole pixels: the old alias
    assert str(parse_policy("crop=0.8")) == "crop=0.8"
    assert parse_policy(str(parse_policy("crop=1.0"))).crop == 1.0  # printed as crop=1.0
    with pytest.raises(ConfigError, match="between 0.08 and 1"):
        parse_policy("crop=0.01")
