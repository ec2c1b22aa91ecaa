"""Initial weights chosen from the data or the model's structure (airbench's ablations; off
unless asked: `default`'s Fashion-MNIST recipe asks for whiten = frozen, model/presets.py).

Patch whitening: the first convolution's filters set from the eigenvectors of the covariance
of the training images' k x k patches, W = V / sqrt(lambda + eps) in +/- pairs, so its
outputs on the training data are decorrelated with unit variance. Dirac: every later
convolution starts as (part of) an identity, so a fresh deep stack passes its input through.

Measured on Fashion-MNIST, the default model and recipe (seeds 0 / 1, one thread): whiten=frozen
92.24 -> 92.53 / 92.16 -> 92.76% at 3 epochs, 92.64 -> 92.84 / 92.79 -> 93.23% at 4, and a
training step costs ~16% less CPU (the first conv needs no gradient); trainable +0.20 / +0.32
at 3 epochs; dirac -0.19 (seed 0), so it stays off. The first conv of `default` has 32 filters
for 9 patch dimensions: 18 whitening filters, and the other 14 keep their random init (frozen
with them: they are random features, cheaper than a conv that still needs weight gradients).

Both are applied only to a fresh model in `setup.build_learner`; a resumed run loads the same
weights from its checkpoint over them (the whitening is deterministic in the data, so the
recomputed values are the saved ones' starting point, then replaced).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.i18n import _
from cnnlab.model.inference import normalize

WHITEN_EPS = 5e-4  # airbench's; eigenvalues of normalised 3x3 patches range ~0.01..8
CHUNK_PATCHES = 1_500_000  # patches at a time: (1.5M, 9) floats = 54 MB, 27 channels x 3 = 160 MB
# Statistics from at most this many training images, evenly spaced: 6.8M patches of 9 numbers
# give the covariance to ~1e-3; all 60,000 Fashion-MNIST images took ~3 s more on one core.
MAX_IMAGES = 10_000


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The model's first convolution (its first layer with weights must be one)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
        if isinstance(module, nn.Linear):
            break
    raise ConfigError(
        _(
            "whiten sets the first convolution's filters, but this model has no convolution "
            "before its first fc layer; drop whiten or start the model with conv(...)"
        )
    )


def patch_columns(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) -> (N, C*kh*kw, positions): every valid k x k patch, in F.unfold's order
    (channel, then row, then column), built from shifted slices (unfold is ~10x slower on CPU)."""
    (kh, kw), (height, width) = kernel, x.shape[2:]
    rows, cols = height - kh + 1, width - kw + 1
    shifted = [x[:, :, i : i + rows, j : j + cols] for i in range(kh) for j in range(kw)]
    return torch.stack(shifted, dim=2).reshape(len(x), -1, rows * cols)


def patch_statistics(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float], kernel: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) of every k x k patch (D = C*kh*kw) of the normalised
    uint8 `images` (N, C, H, W) (at most MAX_IMAGES of them), in float64, chunk by chunk."""
    dims = images.shape[1] * kernel[0] * kernel[1]
    positions = (images.shape[2] - kernel[0] + 1) * (images.shape[3] - kernel[1] + 1)
    chunk = max(1, CHUNK_PATCHES // positions)
    total = torch.zeros(dims, dtype=torch.float64)
    outer = torch.zeros(dims, dims, dtype=torch.float64)
    count = 0
    images = images[:: -(-len(images) // MAX_IMAGES)]  # every k-th image, k = ceil(N / MAX)
    for start in range(0, len(images), chunk):
        x = normalize(images[start : start + chunk].cpu(), mean, std)
        patches = patch_columns(x, kernel).transpose(1, 2).reshape(-1, dims)  # (P, D)
        total += patches.sum(0, dtype=torch.float64)
        outer += (patches.T @ patches).double()  # float32 within a chunk, float64 across
        count += len(patches)
    mu = total / count
    return mu, outer / count - torch.outer(mu, mu)


def whitening_filters(
    covariance: torch.Tensor, count: int, eps: float = WHITEN_EPS
) -> torch.Tensor:
    """(min(count, 2D), D) filters: the eigenvectors (largest eigenvalue first) scaled by
    1/sqrt(eigenvalue + eps), then the same negated (ReLU keeps both signs of each direction)."""
    values, vectors = torch.linalg.eigh(covariance)  # ascending
    values, vectors = values.flip(0).clamp(min=0), vectors.flip(1)
    scaled = (vectors / torch.sqrt(values + eps)).T  # (D, D), one filter a row
    pairs = min(count // 2, len(scaled))
    return torch.cat([scaled[:pairs], -scaled[:pairs]])


@torch.no_grad()
def whiten_first_conv(
    model: nn.Module,
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    frozen: bool,
) -> int:
    """Set the first conv's leading filters to whitening filters of `images`' patches (the rest
    keep their initialisation) and their bias to centre the outputs; frozen: the conv does not
    train. Returns how many filters were set."""
    conv = first_conv(model)
    if conv.groups != 1:
        raise ConfigError(_("whiten needs a first convolution without groups; drop whiten"))
    kernel = tuple(conv.weight.shape[2:])
    mu, covariance = patch_statistics(images, mean, std, kernel)
    filters = whitening_filters(covariance, conv.out_channels)
    count = len(filters)
    # a filter row is in unfold's order (C, kh, kw); copy_ keeps the weight's memory format
    conv.weight[:count].copy_(filters.view(count, *conv.weight.shape[1:]))
    if conv.bias is not None:
        conv.bias[:count] = -(filters @ mu).to(conv.bias.dtype)  # zero-mean outputs
    if frozen:
        conv.requires_grad_(False)
    return count


@torch.no_grad()
def dirac_init(model: nn.Module) -> int:
    """Every convolution after the first (ungrouped, odd kernel) starts with its first
    min(out, in) filters passing input channel i through as output i (torch's dirac_); the
    others keep their initialisation. Returns how many convolutions were changed."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1:]
    changed = 0
    for conv in convs:
        if conv.groups != 1 or any(k % 2 == 0 for k in conv.kernel_size):
            continue
        nn.init.dirac_(conv.weight[: min(conv.out_channels, conv.in_channels)])
        changed += 1
    return changed
