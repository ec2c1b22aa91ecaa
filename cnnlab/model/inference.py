"""Model input from uint8 images, and logits for many images in batches.

The one place that turns pixels into what a model sees: training, evaluation,
prediction, export checks and the server all call `normalize`, so an image is
preprocessed the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def normalize(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(N, C, H, W) uint8 in 0..255 -> float (x/255 - mean)/std per channel; mean, std in [0, 1] units."""
    channels = images.shape[1]
    mean_t = torch.tensor(mean, dtype=dtype, device=images.device).view(1, channels, 1, 1)
    std_t = torch.tensor(std, dtype=dtype, device=images.device).view(1, channels, 1, 1)
    # one multiply-add per pixel: x * 1/(255 std) - mean/std
    return torch.addcmul(-mean_t / std_t, images.to(dtype), 1.0 / (255.0 * std_t))


@torch.inference_mode()
def logits_in_batches(
    model: nn.Module,
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 1000,
    device: torch.device | str = "cpu",
    channels_last: bool = True,
    tta: bool = False,
) -> torch.Tensor:
    """Logits (N, classes) on the CPU for uint8 images (N, C, H, W), the model in eval mode.

    `tta`: test-time augmentation, the mean of the logits of each image and its horizontal
    mirror (only for data whose labels a mirror keeps: `Dataset.flip_ok`).
    """
    was_training = model.training
    model.eval()
    outputs = []
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True)
        x = normalize(batch, mean, std).contiguous(memory_format=memory_format)
        logits = model(x).float()
        if tta:
            logits = (logits + model(x.flip(3)).float()) / 2
        outputs.append(logits.cpu())
    model.train(was_training)
    if not outputs:
        return torch.empty(0, 0)
    return torch.cat(outputs)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and the fraction of correct top-1 predictions."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    loss = F.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    return loss, accuracy
