"""A labelled grid of sample images per class, drawn with matplotlib's Agg canvas (no display needed)."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnlab.data.dataset import Dataset
from cnnlab.errors import DataError
from cnnlab.figures.canvas import use_language_fonts
from cnnlab.fileio import atomic_write_bytes
from cnnlab.i18n import _


def sample_indices(labels: torch.Tensor, num_classes: int, per_class: int) -> list[list[int]]:
    """The first `per_class` indices of each class (a row per class; short rows when a class is small)."""
    return [torch.nonzero(labels == c).squeeze(1)[:per_class].tolist() for c in range(num_classes)]


def save_sample_grid(
    ds: Dataset, out: str | Path, per_class: int = 10, split: str = "train"
) -> Path:
    """Save a PNG with one labelled row of `per_class` images per class; returns the path."""
    if split not in ("train", "test"):
        raise DataError(_("split must be 'train' or 'test', not {split}").format(split=repr(split)))
    images = ds.train_images if split == "train" else ds.test_images
    labels = ds.train_labels if split == "train" else ds.test_labels
    rows = sample_indices(labels, ds.num_classes, per_class)
    fig = Figure(figsize=(1.0 + 0.9 * per_class, 0.9 * ds.num_classes + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    c, h, w = ds.image_shape
    for r, indices in enumerate(rows):
        for col in range(per_class):
            ax = fig.add_subplot(ds.num_classes, per_class, r * per_class + col + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(indices):
                img = images[indices[col]]
                if c == 1:
                    ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=255)
                else:
                    ax.imshow(img.permute(1, 2, 0).numpy())
            if col == 0:
                ax.set_ylabel(ds.classes[r], rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"{ds.name} ({split}, {c}x{h}x{w})", fontsize=10)
    fig.subplots_adjust(left=0.16, right=0.99, top=0.94, bottom=0.01, wspace=0.05, hspace=0.1)
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise DataError(
            _("{out}: folder {folder} does not exist; create it or choose another --out").format(
                out=out, folder=out.parent
            )
        )
    use_language_fonts(fig)  # class names of a folder may be Korean too
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    try:  # atomically: a full disk leaves no empty or partial PNG (see canvas.save_figure)
        atomic_write_bytes(out, buffer.getvalue())
    except OSError as error:
        raise DataError(
            _("{out}: cannot write ({error}); choose a writable --out").format(
                out=out, error=error.strerror or error
            )
        ) from None
    return out
