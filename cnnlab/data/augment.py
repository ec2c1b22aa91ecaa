"""Batched augmentation: whole (N, C, H, W) tensors at once, random draws from one torch.Generator.

The generator is a CPU one (its state is saved for exact resume); the draws are
moved to the batch's device, so the same code augments batches on a GPU.

A policy is written as text: "none", "standard" (the data set's sensible default), "light"
(only the flip, where the data set allows it: what short training runs do best with), or
items such as "translate=2,flip,cutout=8,affine=10,scale=0.1" ("standard,cutout=8"
extends the default). Mirrors (flip, vflip) are refused for data sets whose labels a
mirror changes, unless the data declares otherwise (flip_ok). Colour and geometry items
for photos: rot90, vflip, crop=0.8 (random resized crop), jitter=0.2 (brightness, contrast
and saturation at once) or brightness=/contrast=/saturation=/hue= one by one. altflip is
airbench's alternating flip: not drawn per batch but fixed per image and epoch (a seeded half
of the images mirrored in even epochs, the other half in odd ones), so the training loop
applies it (`alternating_flip`, which needs the images' indices and the epoch), not augment_batch.

Every item draws from the generator only when it is on, so adding an item never changes
what the others draw in a policy without it (default runs stay bit-identical).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError
from cnnlab.i18n import _

if TYPE_CHECKING:
    from cnnlab.data.dataset import Dataset


@dataclass(frozen=True)
class AugmentPolicy:
    """Which augmentations run, and how strong; all zero/False is the identity."""

    translate: int = 0  # max shift in pixels, each axis (a random crop of the zero-padded image)
    flip: bool = False  # horizontal flip with probability 1/2
    cutout: int = 0  # side in pixels of one zeroed square at a random centre
    affine: float = 0.0  # max rotation in degrees, either way
    scale: float = 0.0  # max relative zoom, either way (0.1 -> 0.9..1.1)
    crop: float = 0.0  # random resized crop: smallest area kept (0.8 -> 80..100%), 0 = off
    rot90: bool = False  # rotation by a random multiple of 90 degrees (square images)
    vflip: bool = False  # vertical flip with probability 1/2
    brightness: float = 0.0  # pixel factor in 1 +- brightness
    contrast: float = 0.0  # distance from the image's mean gray, times 1 +- contrast
    saturation: float = 0.0  # distance from each pixel's gray, times 1 +- saturation (colour only)
    hue: float = 0.0  # hue turned by up to +-hue of a full turn (0.05 = 18 degrees; colour only)
    altflip: bool = False  # horizontal flip alternating by epoch (alternating_flip; not with flip)

    @property
    def mirrors(self) -> bool:
        """True when training shows left-right mirrored images (flip or altflip)."""
        return self.flip or self.altflip

    @property
    def is_identity(self) -> bool:
        """True when augment_batch returns its input unchanged."""
        return self == AugmentPolicy()

    def __str__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is True:
                parts.append(f.name)
            elif value:
                text = f"{value:g}" if isinstance(value, float) else str(value)
                if f.name == "crop" and "." not in text:  # crop=1 would read back as translate
                    text += ".0"
                parts.append(f"{f.name}={text}")
        return ",".join(parts) or "none"


# name -> (type, smallest, largest); an item without "=value" is allowed only for switches.
_ITEMS: dict[str, tuple[type, float, float]] = {
    "translate": (int, 0, 64),
    "flip": (bool, 0, 1),
    "cutout": (int, 0, 256),
    "affine": (float, 0, 180),
    "scale": (float, 0, 0.9),
    "crop": (float, 0.08, 1),
    "rot90": (bool, 0, 1),
    "vflip": (bool, 0, 1),
    "jitter": (float, 0, 1),  # brightness, contrast and saturation at once
    "brightness": (float, 0, 1),
    "contrast": (float, 0, 1),
    "saturation": (float, 0, 1),
    "hue": (float, 0, 0.5),
    "altflip": (bool, 0, 1),
}
_ALIASES = {"shift": "translate", "rotate": "affine", "hflip": "flip"}
_COLOUR = ("brightness", "contrast", "saturation")  # what jitter=X sets


def standard_policy(image_size: int = 28, flip_ok: bool = False) -> AugmentPolicy:
    """The default per data set: a 2-pixel shift at MNIST size (1/8 of the side above), flip where it keeps labels."""
    translate = 2 if image_size <= 28 else max(2, image_size // 8)
    return AugmentPolicy(translate=translate, flip=flip_ok)


def _parse_item(item: str) -> tuple[str, object]:
    name, _sep, raw = item.partition("=")
    name = _ALIASES.get(name.strip(), name.strip())
    if name == "crop" and "." not in raw:  # crop=4, whole pixels: the older spelling of translate
        name = "translate"
    if name not in _ITEMS:
        known = ", ".join(["none", "standard", "light", *_ITEMS])
        raise ConfigError(
            _("augmentation {name} is unknown; known: {known} (e.g. 'translate=2,flip')").format(
                name=repr(name), known=known
            )
        )
    kind, lo, hi = _ITEMS[name]
    if kind is bool:
        if raw.strip() in ("", "1", "true", "yes", "on"):
            return name, True
        if raw.strip() in ("0", "false", "no", "off"):
            return name, False
        raise ConfigError(
            _("augmentation '{item}': {name} takes no value (write '{name}')").format(
                item=item, name=name
            )
        )
    if not raw.strip():
        raise ConfigError(
            _("augmentation '{item}' needs a value, e.g. '{example}'").format(
                item=item, example=f"{name}={int(hi) // 8 or 0.1}"
            )
        )
    try:
        value = kind(raw)
    except ValueError:
        rule = (
            _("augmentation '{item}': {value} is not an integer")
            if kind is int
            else _("augmentation '{item}': {value} is not a number")
        )
        raise ConfigError(rule.format(item=item, value=repr(raw))) from None
    if not lo <= value <= hi:
        raise ConfigError(
            _("augmentation '{item}': {name} must lie between {low} and {high}").format(
                item=item, name=name, low=f"{lo:g}", high=f"{hi:g}"
            )
        )
    return name, value


def parse_policy(
    text: str,
    dataset: Dataset | None = None,
    *,
    flip_ok: bool | None = None,
    image_size: int | None = None,
) -> AugmentPolicy:
    """Parse "none", "standard", "light" or "name=value,..." into an AugmentPolicy (ConfigError when wrong)."""
    if dataset is not None:
        flip_ok = dataset.flip_ok if flip_ok is None else flip_ok
        image_size = dataset.image_shape[1] if image_size is None else image_size
    policy = AugmentPolicy()
    for item in (part.strip().lower() for part in str(text).split(",")):
        if item in ("", "none"):
            continue
        if item in ("standard", "default"):
            policy = standard_policy(image_size or 28, bool(flip_ok))
            continue
        # A shift slows short runs down; a mirror does not (docs/performance.md).
        if item == "light":
            policy = replace(policy, flip=bool(flip_ok))
            continue
        name, value = _parse_item(item)
        names = _COLOUR if name == "jitter" else (name,)
        policy = replace(policy, **dict.fromkeys(names, value))
    _check_policy(policy, dataset, flip_ok)
    return policy


def _check_policy(policy: AugmentPolicy, dataset: Dataset | None, flip_ok: bool | None) -> None:
    """Refuse mirrors where they change labels, and rot90 on images that are not square."""
    which = f"{dataset.name}: " if dataset is not None else ""
    if policy.flip and policy.altflip:
        raise ConfigError(
            _(
                "augmentation: flip (random mirrors) and altflip (alternating mirrors) are two "
                "ways of the same mirror; keep one of them"
            )
        )
    mirrors = [name for name in ("flip", "altflip", "vflip") if getattr(policy, name)]
    if mirrors and flip_ok is False:
        flip = _("horizontal flip") if policy.mirrors else _("vertical flip")
        raise ConfigError(
            _(
                "{which}{flip} changes labels in this data set (a mirrored digit or glyph is "
                "not the same class); drop {mirrors} from the augmentation, or, if a "
                "mirror keeps every label in your data, say so with --flip-ok (flip_ok=true, or "
                "flip_ok = true in the image folder's cnnlab.toml)"
            ).format(which=which, flip=flip, mirrors=_(" and ").join(mirrors))
        )
    if policy.rot90 and dataset is not None and dataset.image_shape[1] != dataset.image_shape[2]:
        raise ConfigError(_rot90_error(dataset.image_shape[1], dataset.image_shape[2], which))


def _rot90_error(h: int, w: int, which: str = "") -> ConfigError:
    return ConfigError(
        _(
            "{which}rot90 turns images by 90 degrees, which needs square images, not {size}; "
            "drop rot90 or train at a square size (--image-size)"
        ).format(which=which, size=f"{h}x{w}")
    )


def _translate(x: torch.Tensor, t: int, g: torch.Generator) -> torch.Tensor:
    """Shift each image by its own (dy, dx) in [-t, t], filling with zeros."""
    n, c, h, w = x.shape
    padded = F.pad(x, (t, t, t, t)).reshape(n, c, -1)  # (N, C, (H+2t)*(W+2t))
    dy = torch.randint(-t, t + 1, (n, 1), generator=g).to(x.device)
    dx = torch.randint(-t, t + 1, (n, 1), generator=g).to(x.device)
    # (N, H): output row y reads padded row y + t - dy
    rows = torch.arange(h, device=x.device) + t - dy
    cols = torch.arange(w, device=x.device) + t - dx  # (N, W)
    index = (rows[:, :, None] * (w + 2 * t) + cols[:, None, :]).reshape(n, 1, h * w)
    return padded.gather(2, index.expand(n, c, h * w)).reshape(n, c, h, w)


def _flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    mask = (torch.rand(x.shape[0], generator=g) < 0.5).to(x.device)
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)


def alternating_flip(
    images: torch.Tensor, indices: torch.Tensor, epoch: int, seed: int
) -> torch.Tensor:
    """airbench's alternating flip of a batch (N, C, H, W): image `indices[i]` (its index in the
    training set) is mirrored in even epochs when it is in the seed's half, in odd ones when not.

    Every image is seen both ways in any two epochs in a row, where a coin per draw leaves a
    quarter of them unmirrored (or always mirrored) for two epochs. A pure function of
    (indices, epoch, seed): nothing to save for an exact resume."""
    mirrored = _seeded_half(indices, seed) ^ bool(epoch % 2)
    return torch.where(mirrored.view(-1, 1, 1, 1).to(images.device), images.flip(3), images)


def _seeded_half(indices: torch.Tensor, seed: int) -> torch.Tensor:
    """(N,) bool: one bit of an integer hash of each index and the seed, true for about half.
    Products stay below 2**63 for indices below 2**31 (int64 arithmetic, the same on every device)."""
    mask = 0xFFFFFFFF
    h = (indices.long() * 0x9E3779B1 + (seed & mask) * 0x85EBCA77) & mask
    h = ((h ^ (h >> 16)) * 0x2C1B3C6D) & mask
    h = ((h ^ (h >> 13)) * 0x297A2D39) & mask
    return ((h ^ (h >> 16)) >> 15) & 1 == 1


def _cutout(x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """Zero one size x size square per image, centred anywhere (it may hang over the edge)."""
    n, _, h, w = x.shape
    top = torch.randint(0, h, (n, 1), generator=g).to(x.device) - size // 2
    left = torch.randint(0, w, (n, 1), generator=g).to(x.device) - size // 2
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    inside = ((ys >= top) & (ys < top + size))[:, :, None] & ((xs >= left) & (xs < left + size))[
        :, None, :
    ]
    return x.masked_fill(inside.unsqueeze(1), 0)


def _affine(x: torch.Tensor, degrees: float, scale: float, g: torch.Generator) -> torch.Tensor:
    """Rotate by up to +-degrees and zoom by up to +-scale, bilinear, zeros outside."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(degrees)
    zoom = 1 + (torch.rand(n, generator=g) * 2 - 1) * scale
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    zero = torch.zeros(n)
    # theta maps output coordinates to input coordinates (normalised to [-1, 1]).
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    theta = theta.to(x.device)  # drawn on the CPU generator, applied where the batch lives
    source = x if x.is_floating_point() else x.float()
    grid = F.affine_grid(theta.to(source.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out if x.is_floating_point() else out.round_().clamp_(0, 255).to(x.dtype)


def _crop_boxes(
    n: int, scale: float, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(height, width, centre y, centre x) of n random crops as fractions of the image; each (n,).

    Area uniform in [scale, 1], aspect ratio log-uniform in [3/4, 4/3] (torchvision's
    RandomResizedCrop) unless a side would leave the image, centre uniform where the box fits.
    """
    area = scale + torch.rand(n, generator=g) * (1 - scale)
    log_ratio = (torch.rand(n, generator=g) * 2 - 1) * math.log(4 / 3)
    # width / height, narrowed where needed so that both sides fit: the area stays as drawn
    ratio = torch.minimum(torch.maximum(log_ratio.exp(), area), 1 / area)
    height = (area / ratio).sqrt().clamp(max=1)
    width = (area * ratio).sqrt().clamp(max=1)
    cy = 0.5 + (torch.rand(n, generator=g) - 0.5) * (1 - height)
    cx = 0.5 + (torch.rand(n, generator=g) - 0.5) * (1 - width)
    return height, width, cy, cx


def _resized_crop(x: torch.Tensor, scale: float, g: torch.Generator) -> torch.Tensor:
    """A random crop of each image (see _crop_boxes) stretched back to the full size, bilinear."""
    n = x.shape[0]
    height, width, cy, cx = _crop_boxes(n, scale, g)
    zero = torch.zeros(n)
    # theta maps output coordinates in [-1, 1] to the box's input coordinates.
    theta = torch.stack(
        [torch.stack([width, zero, cx * 2 - 1], 1), torch.stack([zero, height, cy * 2 - 1], 1)],
        1,
    ).to(x.device)
    source = x if x.is_floating_point() else x.float()
    grid = F.affine_grid(theta.to(source.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out if x.is_floating_point() else out.round_().clamp_(0, 255).to(x.dtype)


def _rot90(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each image turned by its own k * 90 degrees, k uniform in 0..3 (torch.rot90's direction)."""
    if x.shape[2] != x.shape[3]:
        raise _rot90_error(x.shape[2], x.shape[3])
    k = torch.randint(0, 4, (x.shape[0],), generator=g).to(x.device).view(-1, 1, 1, 1)
    out = x
    for turns in (1, 2, 3):
        out = torch.where(k == turns, x.rot90(turns, (2, 3)), out)
    return out


def _vflip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    mask = (torch.rand(x.shape[0], generator=g) < 0.5).to(x.device)
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(2), x)


def _factors(n: int, strength: float, g: torch.Generator) -> torch.Tensor:
    """(n, 1, 1, 1) factors uniform in [1 - strength, 1 + strength]; no draw when strength is 0."""
    if not strength:
        return torch.ones(n, 1, 1, 1)
    return (1 + (torch.rand(n, generator=g) * 2 - 1) * strength).view(-1, 1, 1, 1)


# Luma weights (ITU-R BT.601), as torchvision's grayscale, and the YIQ transform whose
# I/Q plane a hue rotation turns.
_LUMA = (0.299, 0.587, 0.114)
_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def _hue_matrices(angle: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) RGB -> RGB matrices turning the hue by `angle` radians (luma kept)."""
    yiq = torch.tensor(_YIQ)
    cos, sin, one, zero = angle.cos(), angle.sin(), torch.ones_like(angle), torch.zeros_like(angle)
    turn = torch.stack(
        [
            torch.stack([one, zero, zero], 1),
            torch.stack([zero, cos, -sin], 1),
            torch.stack([zero, sin, cos], 1),
        ],
        1,
    )
    return torch.linalg.inv(yiq) @ turn @ yiq


def _jitter(x: torch.Tensor, policy: AugmentPolicy, g: torch.Generator) -> torch.Tensor:
    """Brightness, then contrast, saturation and hue (the last two on colour images only)."""
    n, c = x.shape[:2]
    source = x.float() / 255 if not x.is_floating_point() else x
    out = source * _factors(n, policy.brightness, g).to(x.device)
    luma = torch.tensor(_LUMA, device=x.device).view(1, 3, 1, 1)
    gray = (out * luma).sum(1, keepdim=True) if c == 3 else out  # (N, 1, H, W)
    mean = gray.mean((1, 2, 3), keepdim=True)
    out = (out - mean) * _factors(n, policy.contrast, g).to(x.device) + mean
    saturation = _factors(n, policy.saturation, g).to(x.device)
    hue = (torch.rand(n, generator=g) * 2 - 1) * policy.hue * 2 * math.pi if policy.hue else None
    if c == 3:
        gray = (out * luma).sum(1, keepdim=True)
        out = (out - gray) * saturation + gray
        if hue is not None:
            out = torch.einsum("nij,njhw->nihw", _hue_matrices(hue).to(x.device), out)
    out = out.clamp(0, 1)
    return out.to(x.dtype) if x.is_floating_point() else (out * 255).round_().to(x.dtype)


def augment_batch(
    images: torch.Tensor, policy: AugmentPolicy, generator: torch.Generator
) -> torch.Tensor:
    """Augment a batch (N, C, H, W), uint8 or float; same shape and dtype out, deterministic for the generator.

    altflip is left to the caller (`alternating_flip`: it needs the images' indices and the epoch)."""
    if policy.is_identity:
        return images
    x = images
    # Each step draws only when on: the draws of policies without the newer items are unchanged.
    if policy.crop:
        x = _resized_crop(x, policy.crop, generator)
    if policy.rot90:
        x = _rot90(x, generator)
    if policy.affine or policy.scale:
        x = _affine(x, policy.affine, policy.scale, generator)
    if policy.translate:
        x = _translate(x, policy.translate, generator)
    if policy.flip:
        x = _flip(x, generator)
    if policy.vflip:
        x = _vflip(x, generator)
    if policy.brightness or policy.contrast or policy.saturation or policy.hue:
        x = _jitter(x, policy, generator)
    if policy.cutout:
        x = _cutout(x, policy.cutout, generator)
    return x
