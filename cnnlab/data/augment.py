"""Batched augmentation: whole (N, C, H, W) tensors at once, random draws from one torch.Generator.

The generator is a CPU one (its state is saved for exact resume); the draws are
moved to the batch's device, so the same code augments batches on a GPU.

A policy is written as text: "none", "standard" (the data set's sensible default), "light"
(only the flip, where the data set allows it: what short training runs do best with), or
items such as "translate=2,flip,cutout=8,affine=10,scale=0.1" ("standard,cutout=8"
extends the default). Flipping is refused for data sets whose labels a mirror changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError

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
                parts.append(
                    f"{f.name}={value:g}" if isinstance(value, float) else f"{f.name}={value}"
                )
        return ",".join(parts) or "none"


# name -> (type, smallest, largest); an item without "=value" is allowed only for flip.
_ITEMS: dict[str, tuple[type, float, float]] = {
    "translate": (int, 0, 64),
    "flip": (bool, 0, 1),
    "cutout": (int, 0, 256),
    "affine": (float, 0, 180),
    "scale": (float, 0, 0.9),
}
_ALIASES = {"crop": "translate", "shift": "translate", "rotate": "affine", "hflip": "flip"}


def standard_policy(image_size: int = 28, flip_ok: bool = False) -> AugmentPolicy:
    """The default per data set: a 2-pixel shift at MNIST size (1/8 of the side above), flip where it keeps labels."""
    translate = 2 if image_size <= 28 else max(2, image_size // 8)
    return AugmentPolicy(translate=translate, flip=flip_ok)


def _parse_item(item: str) -> tuple[str, object]:
    name, _, raw = item.partition("=")
    name = _ALIASES.get(name.strip(), name.strip())
    if name not in _ITEMS:
        known = ", ".join(["none", "standard", "light", *_ITEMS])
        raise ConfigError(
            f"augmentation {name!r} is unknown; known: {known} (e.g. 'translate=2,flip')"
        )
    kind, lo, hi = _ITEMS[name]
    if kind is bool:
        if raw.strip() in ("", "1", "true", "yes", "on"):
            return name, True
        if raw.strip() in ("0", "false", "no", "off"):
            return name, False
        raise ConfigError(f"augmentation '{item}': flip takes no value (write 'flip')")
    if not raw.strip():
        raise ConfigError(
            f"augmentation '{item}' needs a value, e.g. '{name}={int(hi) // 8 or 0.1}'"
        )
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(
            f"augmentation '{item}': {raw!r} is not a{'n integer' if kind is int else ' number'}"
        ) from None
    if not lo <= value <= hi:
        raise ConfigError(f"augmentation '{item}': {name} must lie between {lo:g} and {hi:g}")
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
        policy = replace(policy, **{name: value})
    if policy.flip and flip_ok is False:
        which = f"{dataset.name}: " if dataset is not None else ""
        raise ConfigError(
            f"{which}horizontal flip changes labels in this data set (a mirrored digit or glyph is "
            "not the same class); drop 'flip' from the augmentation"
        )
    return policy


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


def augment_batch(
    images: torch.Tensor, policy: AugmentPolicy, generator: torch.Generator
) -> torch.Tensor:
    """Augment a batch (N, C, H, W), uint8 or float; same shape and dtype out, deterministic for the generator."""
    if policy.is_identity:
        return images
    x = images
    if policy.affine or policy.scale:
        x = _affine(x, policy.affine, policy.scale, generator)
    if policy.translate:
        x = _translate(x, policy.translate, generator)
    if policy.flip:
        x = _flip(x, generator)
    if policy.cutout:
        x = _cutout(x, policy.cutout, generator)
    return x
