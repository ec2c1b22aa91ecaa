"""The in-memory data set: uint8 image tensors, int64 labels, class names and normalisation."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from cnnlab.errors import DataError
from cnnlab.i18n import _


@dataclass
class Dataset:
    """One data set in memory: images (N, C, H, W) uint8, labels (N,) int64, per split."""

    name: str
    classes: list[str]
    train_images: torch.Tensor  # (N, C, H, W) uint8, contiguous
    train_labels: torch.Tensor  # (N,) int64
    test_images: torch.Tensor  # (M, C, H, W) uint8
    test_labels: torch.Tensor  # (M,) int64
    mean: tuple[float, ...] = ()  # per channel, [0, 1] units, from the train images
    std: tuple[float, ...] = ()
    flip_ok: bool = False  # does a horizontal flip keep every label true?
    source: str = ""  # where the data came from (a folder, "generated", a URL)
    skipped: list[str] = field(default_factory=list)  # bad files left out (folder, skip_bad=True)
    # The file behind each image (image folders; None for built-in data sets), in image order.
    train_paths: list[str] | None = None
    test_paths: list[str] | None = None

    def __post_init__(self) -> None:
        for images, labels in (
            (self.train_images, self.train_labels),
            (self.test_images, self.test_labels),
        ):
            assert images.dtype == torch.uint8 and images.ndim == 4, (images.dtype, images.shape)
            assert labels.dtype == torch.int64 and labels.shape == (images.shape[0],)
        assert self.train_images.shape[1:] == self.test_images.shape[1:]
        for paths, labels in (
            (self.train_paths, self.train_labels),
            (self.test_paths, self.test_labels),
        ):
            assert paths is None or len(paths) == labels.numel(), (len(paths), labels.numel())
        self.train_images = self.train_images.contiguous()
        self.test_images = self.test_images.contiguous()
        if not self.mean:
            self.mean, self.std = channel_stats(self.train_images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.train_images.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        """How many classes (labels run 0..num_classes-1)."""
        return len(self.classes)

    def subset_train(self, size: int, seed: int = 0) -> None:
        """Cut the training part to a class-balanced `size` (paths kept in step, statistics recomputed)."""
        idx = subset_indices(self.train_labels, size, seed)
        if idx is None:
            return
        self.train_images = self.train_images[idx].contiguous()
        self.train_labels = self.train_labels[idx]
        self.train_paths = pick_paths(self.train_paths, idx)
        self.mean, self.std = channel_stats(self.train_images)

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return (
            f"Dataset({self.name!r}, {self.num_classes} classes, {c}x{h}x{w}, "
            f"train={len(self.train_labels)}, test={len(self.test_labels)})"
        )


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), in [0, 1] units.

    From each channel's histogram of the 256 pixel values: exact sums (integers below 2**53 in
    float64) in one pass over the bytes, 0.06 CPU s for Fashion-MNIST's 47M pixels, where
    summing float64 copies took 0.48 s (same figures to the 6 decimals kept). Chunk by chunk
    (`channel_histograms`), so a memory-mapped folder cache is never copied whole.
    """
    n, c = images.shape[:2]
    hist = torch.zeros(c, 256, dtype=torch.int64)
    for start in range(0, n, STATS_CHUNK):
        hist += channel_histograms(images[start : start + STATS_CHUNK])
    return stats_from_histograms(hist, n * images.shape[2] * images.shape[3])


STATS_CHUNK = 4096  # images per histogram pass: bounded copies of a channel's pixels


def channel_histograms(images: torch.Tensor) -> torch.Tensor:
    """(C, 256) int64 counts of each pixel value per channel of uint8 images (N, C, H, W)."""
    return torch.stack(
        [
            torch.bincount(images[:, channel].reshape(-1), minlength=256)
            for channel in range(images.shape[1])
        ]
    )


def stats_from_histograms(
    hist: torch.Tensor, count: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """`channel_stats` from (C, 256) histograms over `count` pixels per channel."""
    c = hist.shape[0]
    if count == 0:
        return (0.0,) * c, (1.0,) * c
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for channel in range(c):
        counts = hist[channel].to(torch.float64)
        mean = (counts * values).sum() / count  # in 0..255 units
        variance = (counts * values.square()).sum() / count - mean.square()
        means.append(round(float(mean) / 255.0, 6))
        stds.append(round(float(variance.clamp_min(1e-12).sqrt()) / 255.0, 6))
    return tuple(means), tuple(stds)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def stratified_pick(labels: torch.Tensor, counts: torch.Tensor, seed: int) -> torch.Tensor:
    """Sorted indices taking counts[k] random examples of each class k (deterministic for a seed)."""
    n = labels.numel()
    perm = torch.randperm(n, generator=_generator(seed))
    order = perm[torch.argsort(labels[perm], stable=True)]  # grouped by class, random within
    per_class = torch.bincount(labels, minlength=counts.numel())
    starts = torch.cumsum(per_class, 0) - per_class
    sorted_labels = labels[order]
    rank = torch.arange(n) - starts[sorted_labels]  # position within its class
    return torch.sort(order[rank < counts[sorted_labels]]).values


def majority(labels: torch.Tensor, classes: list[str]) -> tuple[str, float]:
    """(name, share) of the most frequent class among `labels`: what a constant answer scores."""
    counts = torch.bincount(labels.cpu(), minlength=len(classes))
    i = int(counts.argmax())
    return classes[i], counts[i].item() / max(1, len(labels))


def pick_paths(paths: list[str] | None, idx: torch.Tensor) -> list[str] | None:
    """The paths at indices `idx` (None stays None): file names follow their images."""
    return None if paths is None else [paths[i] for i in idx.tolist()]


def split_validation(
    images: torch.Tensor, labels: torch.Tensor, fraction: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split off `fraction` of each class as validation: (train_x, train_y, val_x, val_y), deterministic."""
    train_idx, val_idx = validation_indices(labels, fraction, seed)
    return images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]


def validation_indices(
    labels: torch.Tensor, fraction: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices) of `split_validation`: `fraction` of each class held out."""
    if not 0.0 < fraction < 1.0:
        raise DataError(
            _("validation fraction {fraction} must lie strictly between 0 and 1 (e.g. 0.1)").format(
                fraction=fraction
            )
        )
    per_class = torch.bincount(labels)
    # At least one validation example per class that has two, and at least one left to train on.
    want = torch.round(per_class.double() * fraction).long()
    want = torch.where(per_class >= 2, want.clamp(1), want).clamp(max=(per_class - 1).clamp(min=0))
    val_idx = stratified_pick(labels, want, seed)
    mask = torch.ones(labels.numel(), dtype=torch.bool)
    mask[val_idx] = False
    train_idx = torch.nonzero(mask).squeeze(1)
    return train_idx, val_idx


def subset(
    images: torch.Tensor, labels: torch.Tensor, size: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic class-balanced subset of `size` examples (all of them if size >= N)."""
    idx = subset_indices(labels, size, seed)
    return (images, labels) if idx is None else (images[idx], labels[idx])


def subset_indices(labels: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor | None:
    """Sorted indices of `subset`'s class-balanced pick; None when size >= N (all kept)."""
    n = labels.numel()
    if size >= n:
        return None
    if size <= 0:
        raise DataError(_("subset size {size} must be positive").format(size=size))
    per_class = torch.bincount(labels)
    # Share `size` in proportion to the class counts; hand out the rounding remainder largest-first.
    exact = per_class.double() * size / n
    want = exact.floor().long()
    rest = size - int(want.sum())
    if rest:
        want[torch.argsort(exact - want, descending=True)[:rest]] += 1
    return stratified_pick(labels, want, seed)


def convert_images(
    images: torch.Tensor, channels: int | None = None, size: int | None = None
) -> torch.Tensor:
    """Change uint8 images (N, C, H, W) to `channels` (1 or 3) and a square `size`, batched."""
    out = images
    if channels is not None and channels != out.shape[1]:
        if channels == 3 and out.shape[1] == 1:
            out = out.expand(-1, 3, -1, -1)
        elif channels == 1 and out.shape[1] == 3:
            # ITU-R 601 luma, as PIL's convert("L").
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            out = (out.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise DataError(
                _("cannot convert {have}-channel images to {channels} channels; use 1 or 3").format(
                    have=out.shape[1], channels=channels
                )
            )
    if size is not None and tuple(out.shape[2:]) != (size, size):
        chunks = []
        for start in range(0, out.shape[0], 4096):  # bounded float memory
            x = out[start : start + 4096].float()
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
            chunks.append(x.round().clamp(0, 255).to(torch.uint8))
        out = torch.cat(chunks) if chunks else out.new_zeros((0, out.shape[1], size, size))
    return out.contiguous()
