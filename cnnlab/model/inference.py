"""Model input from uint8 images, and logits for many images in batches.

The one place that turns pixels into what a model sees: training, evaluation,
prediction, export checks and the server all call `normalize`, so an image is
preprocessed the same way everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

# The memory layout of inference by batch size: channels_last (NHWC) from this many images on,
# NCHW below. Measured 2026-11-30 on the 2-core Intel Xeon (AVX-512, AMX; torch 2.13, oneDNN)
# under a load of 12-15, each preset's weights and input in one layout, calls alternating between
# the layouts, 25th-percentile call time (/tmp script in the style of bench/infer_bench.py):
# channels_last was faster at EVERY batch size tried (1, 2, 4, ..., 256), 1 and 2 threads:
# `default` 1.55x at batch 1 and 1.79x at 256 (1 thread; 1.22x and 1.57x with 2), `tutorial`
# (seed 000's model) 1.64x and 2.90x, `best` 1.33x and 1.63x, `lenet5` 1.16x and 1.32x. So there
# is no crossover on this machine and the threshold is 1. (Medians of 2-thread calls could not
# decide it at that load: 100-250 ms stalls, a sleeping OpenMP worker waiting for a busy core,
# hit either layout at random, at every batch size.) Issue 15 read its batch-1 gap (cnnlab eager
# 880 vs the peer's 1,627 img/s, Zen 4) as channels_last hurting batch 1, but that compared the
# `default` model with the smaller seed 000 model (half its FLOPs): at 1 thread `default` in
# channels_last ran 0.93x the peer at batch 1, in NCHW 0.65x. Where NCHW wins small batches,
# raise this number: bench/infer_bench.py prints both layouts at every batch size.
CHANNELS_LAST_FROM_BATCH = 1
# Inference splits each layer over the threads from this many images on; smaller batches run on
# one. cnnlab's OpenMP threads sleep when idle (OMP_WAIT_POLICY=PASSIVE, cnnlab/__init__.py), and
# waking one costs more than its share of a small batch's work. Measured 2026-11-30 on the 2-core
# Intel Xeon, quiet, PASSIVE, random weights, channels_last, calls alternating 1 and 2 threads
# (median ms per image, 1 vs 2 threads): `default` batch 1 0.44 vs 1.37, 4 0.26 vs 0.45,
# 8 0.21 vs 0.28, 16 0.22 vs 0.19, 64 0.18 vs 0.10; `best` and `tutorial` cross at 16 too.
SPLIT_FROM_BATCH = 16
# Evaluation batches of this many images: the activations of 256 28x28 images stay in the L3
# cache, those of 1,000 do not. bench/infer_bench.py (docs/performance.md, "Inference"): cnnlab
# eager at batch 256 16,027 img/s, at 1,024 6,548. The logits do not depend on the batch size
# (Fashion-MNIST test set, batches 128 / 256 / 512 / 1,000: identical).
EVAL_BATCH = 256
# ... and, rounded down to a power of two, at most as many as keep the widest layer output of a
# batch within EVAL_ACTIVATION_BYTES (float32): a large network's activations leave the caches
# long before 256 images do. Measured 2026-12-07, AMD EPYC, 2 threads, quiet, channels_last,
# calls alternating between batch sizes, median ms an image (/tmp script): lite0 at 128x128
# (1.6 MB an image in its widest layer, 96x64x64), 192 images: batch 192 8.3, 64 6.1, 32 3.6-4.5,
# 16 3.2, 12 3.4, 8 2.0, 6 2.1, 4 2.5, 2 3.5; `default` on 3x64x64 (0.5 MB): 256 0.81, 32 0.38;
# `default` on 28x28: 256 0.060, 128 0.052, 32 0.049; `best` on 28x28: 0.12 at 32 to 256.
EVAL_ACTIVATION_BYTES = 16 * 2**20


def eval_batch_size(model: nn.Module) -> int:
    """Images per evaluation batch for `model`: a power of two up to EVAL_BATCH, fewer where the
    widest layer output of a batch would pass EVAL_ACTIVATION_BYTES (lite0 at 128 px: 8; a
    model without a shape report: EVAL_BATCH)."""
    report = getattr(model, "report", None)
    if report is None:
        return EVAL_BATCH
    widest = max((math.prod(layer.out_shape) for layer in report.every_layer()), default=1)
    fits = max(1, min(EVAL_BATCH, EVAL_ACTIVATION_BYTES // (4 * widest)))
    return 1 << (fits.bit_length() - 1)


def memory_format_for(batch_size: int) -> torch.memory_format:
    """The layout a batch of `batch_size` images runs fastest in: see CHANNELS_LAST_FROM_BATCH."""
    if batch_size >= CHANNELS_LAST_FROM_BATCH:
        return torch.channels_last
    return torch.contiguous_format


@contextmanager
def threads_for(batch_size: int) -> Iterator[None]:
    """Run a batch under SPLIT_FROM_BATCH images on one thread; restore the thread count after.

    The count is the process's. A caller that finds it at 1 leaves it alone, so of callers
    running at once only those that found it higher set it back, each to what it found.
    """
    before = torch.get_num_threads()
    if batch_size >= SPLIT_FROM_BATCH or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


# Test-time augmentation, one of TTA_MODES (True means "mirror", False "none"):
#   mirror        the mean of the logits of the image and of its horizontal mirror
#   mirror-shift  half that, plus half the mean of the mirror TTA of the image shifted one pixel
#                 up-left and one down-right (reflect padding), as airbench's multi-crop TTA
# Measured 2026-11-30 (same weights, none / mirror / mirror-shift): colour-300-imbalanced
# 56.00 / 57.75 / 57.75% and 54.25 / 54.50 / 53.50% (seeds 0, 1), fashion-mnist-1000 84.33 / 84.93 /
# 85.18%, default Fashion-MNIST (4 epochs, trained without shifts) 92.71 / 92.82 / 92.10%: only
# mirror is a default (training/config.py SMALL_DATA_TTA); mirror-shift is for runs trained with shifts.
TTA_MODES = ("none", "mirror", "mirror-shift")


def tta_mode(tta: bool | str) -> str:
    """A tta setting (a bool, as config.toml keeps it, or a mode name) -> one of TTA_MODES."""
    if isinstance(tta, bool):
        return "mirror" if tta else "none"
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, not {tta!r}")
    return tta


def tta_logits(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tta: bool | str
) -> torch.Tensor:
    """Logits (N, classes) of normalised images x (N, C, H, W) under a TTA mode (TTA_MODES).

    `forward` maps a batch to its logits (a model, or an engine's `logits`); every view has
    x's shape, so exported models with a fixed image size take them too.
    """
    mode = tta_mode(tta)
    if mode == "none":
        return forward(x)
    mirrored = (forward(x) + forward(x.flip(3))) / 2
    if mode == "mirror":
        return mirrored
    height, width = x.shape[2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[:, :, :height, :width], padded[:, :, 2:, 2:]]  # up-left, down-right
    moved = [(forward(v) + forward(v.flip(3))) / 2 for v in shifted]
    return 0.5 * mirrored + 0.25 * (moved[0] + moved[1])


@torch.inference_mode()
def logits_in_batches(
    model: nn.Module,
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    channels_last: bool = True,
    tta: bool | str = False,
) -> torch.Tensor:
    """Logits (N, classes) on the CPU for uint8 images (N, C, H, W), the model in eval mode.

    `tta`: test-time augmentation (`tta_logits`; only for data whose labels a mirror keeps:
    `Dataset.flip_ok`). `channels_last`:
    the layout by batch size (`memory_format_for`); False: NCHW throughout.
    """
    was_training = model.training
    model.eval()
    batch_size = batch_size or eval_batch_size(model)
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True)
        layout = memory_format_for(len(batch)) if channels_last else torch.contiguous_format
        x = normalize(batch, mean, std).contiguous(memory_format=layout)
        outputs.append(tta_logits(lambda view: model(view).float(), x, tta).cpu())
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
