"""Scores of a trained model on a data split: accuracy, loss, confusion matrix, per-class scores, top losses.

`evaluate_run` rebuilds the run's data exactly as training saw it (the same
options and validation split) unless another data set is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.data.dataset import majority
from cnnlab.data.source import SPLITS, load_source, split_source
from cnnlab.errors import DataError
from cnnlab.i18n import _
from cnnlab.model.inference import logits_in_batches
from cnnlab.run.folder import Run


@dataclass
class Evaluation:
    """Logits and labels of one split, and every score derived from them."""

    classes: list[str]
    labels: torch.Tensor  # (N,) int64
    logits: torch.Tensor  # (N, K) float32
    data: str = ""
    split: str = "test"
    files: list[str] | None = None  # the file behind each image (image folders), else None

    def _named(self, i: int) -> dict[str, Any]:
        """Image i's index, and its file when the data came from files."""
        return {"index": i} if self.files is None else {"index": i, "file": self.files[i]}

    @cached_property
    def probabilities(self) -> torch.Tensor:
        """(N, K) softmax of the logits."""
        return torch.softmax(self.logits, dim=1)

    @cached_property
    def predictions(self) -> torch.Tensor:
        """(N,) top-1 class indices."""
        return self.logits.argmax(1)

    @cached_property
    def losses(self) -> torch.Tensor:
        """(N,) cross-entropy of each image."""
        return F.cross_entropy(self.logits, self.labels, reduction="none")

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def accuracy(self) -> float:
        return (
            (self.predictions == self.labels).float().mean().item() if self.size else float("nan")
        )

    @property
    def loss(self) -> float:
        return self.losses.mean().item() if self.size else float("nan")

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes present in the split (each class counts once, however large)."""
        actual = self.confusion.sum(1)
        present = actual > 0
        if not present.any():
            return float("nan")
        return (self.confusion.diag()[present].double() / actual[present]).mean().item()

    def majority_baseline(self) -> dict[str, Any]:
        """The best constant answer: the split's most frequent class, and the accuracy it scores
        (training's guard computes the same from the training labels: one helper for both)."""
        name, share = majority(self.labels, self.classes)
        return {"class": name, "accuracy": share if self.size else float("nan")}

    @cached_property
    def confusion(self) -> torch.Tensor:
        """(K, K) counts: row = true class, column = predicted class."""
        k = len(self.classes)
        flat = self.labels * k + self.predictions
        return torch.bincount(flat, minlength=k * k).view(k, k)

    def per_class(self) -> list[dict[str, Any]]:
        """Precision, recall, F1 and support of each class (0 where undefined)."""
        confusion = self.confusion.double()
        correct = confusion.diag()
        predicted = confusion.sum(0)
        actual = confusion.sum(1)
        rows = []
        for i, name in enumerate(self.classes):
            precision = (correct[i] / predicted[i]).item() if predicted[i] else 0.0
            recall = (correct[i] / actual[i]).item() if actual[i] else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            rows.append(
                {
                    "class": name,
                    "precision": precision,
                    "recall": recall,
                    "f1": f1,
                    "support": int(actual[i]),
                }
            )
        return rows

    def most_confused(self, n: int = 5) -> list[dict[str, Any]]:
        """The n largest off-diagonal cells: which true class is taken for which, how often."""
        off = self.confusion.clone()
        off.fill_diagonal_(0)
        counts, flat = off.flatten().sort(descending=True)
        k = len(self.classes)
        return [
            {"true": self.classes[i // k], "predicted": self.classes[i % k], "count": int(c)}
            for c, i in zip(counts[:n].tolist(), flat[:n].tolist(), strict=True)
            if c > 0
        ]

    def top_losses(self, n: int = 16) -> list[dict[str, Any]]:
        """The n images with the highest loss: index (and file), true and predicted class, probabilities, loss."""
        order = self.losses.argsort(descending=True)[:n]
        return [
            {
                **self._named(i),
                "true": self.classes[int(self.labels[i])],
                "predicted": self.classes[int(self.predictions[i])],
                "probability": float(self.probabilities[i, self.predictions[i]]),
                "true_probability": float(self.probabilities[i, self.labels[i]]),
                "loss": float(self.losses[i]),
            }
            for i in order.tolist()
        ]

    def misclassified(self) -> list[dict[str, Any]]:
        """Every wrongly classified image, in index order: index (and file), true, predicted, probability."""
        wrong = torch.nonzero(self.predictions != self.labels).squeeze(1)
        return [
            {
                **self._named(i),
                "true": self.classes[int(self.labels[i])],
                "predicted": self.classes[int(self.predictions[i])],
                "probability": float(self.probabilities[i, self.predictions[i]]),
            }
            for i in wrong.tolist()
        ]

    def to_json(self, top: int = 16) -> dict[str, Any]:
        """Everything above for machines."""
        return {
            "data": self.data,
            "split": self.split,
            "images": self.size,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "balanced_accuracy": self.balanced_accuracy,
            "majority_baseline": self.majority_baseline(),
            "classes": self.classes,
            "confusion": self.confusion.tolist(),
            "per_class": self.per_class(),
            "most_confused": self.most_confused(),
            "top_losses": self.top_losses(top),
            "misclassified": self.misclassified(),
        }

    def _repr_html_(self) -> str:
        """A notebook cell's view: the scores, the per-class table and the confusion matrix."""
        from cnnlab.spec.summary import html_table

        scores = [
            [_("images"), str(self.size)],
            [_("accuracy"), f"{self.accuracy:.2%}"],
            [_("loss"), f"{self.loss:.4f}"],
            [_("balanced accuracy"), f"{self.balanced_accuracy:.2%}"],
        ]
        per_class = [
            [r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}"]
            + [str(r["support"])]
            for r in self.per_class()
        ]
        confusion = [
            [name, *(str(n) for n in row)]
            for name, row in zip(self.classes, self.confusion.tolist(), strict=True)
        ]
        title = " ".join(part for part in (self.data, self.split) if part)
        return (
            html_table(title, [_("what"), _("value")], scores)
            + html_table(
                _("per class"),
                [_("class"), _("precision"), _("recall"), "F1", _("support")],
                per_class,
            )
            + html_table(
                _("confusion (row: true class, column: predicted)"), ["", *self.classes], confusion
            )
        )


def split_images(
    run: Run, data: str | None = None, split: str = "test"
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(images, labels, data name) of a split, as the run's training saw it."""
    images, labels, name, _ = split_with_files(run, data, split)
    return images, labels, name


def split_with_files(
    run: Run, data: str | None = None, split: str = "test"
) -> tuple[torch.Tensor, torch.Tensor, str, list[str] | None]:
    """`split_images` plus the file of each image (image folders; None for built-in data sets).

    The data comes from the run record: its data set (or `data` loaded with the same options),
    split by the run's own rule."""
    source = run.record.source.with_name(data)
    if split not in SPLITS:
        raise DataError(
            _("split '{split}' is not one of {splits}").format(
                split=split, splits=", ".join(SPLITS)
            )
        )
    dataset = load_source(source)
    if dataset.image_shape != run.input_shape:
        raise DataError(
            _(
                "{data} has {shape} images, but the model of {run} takes {input}: evaluate it on "
                "data of that shape"
            ).format(
                data=dataset.name,
                shape="x".join(map(str, dataset.image_shape)),
                run=run.path,
                input="x".join(map(str, run.input_shape)),
            )
        )
    if list(dataset.classes) != run.classes:
        raise DataError(
            _(
                "{data}'s classes ({classes}) are not the ones {run} was trained on ({trained})"
            ).format(
                data=dataset.name,
                classes=", ".join(dataset.classes),
                run=run.path,
                trained=", ".join(run.classes),
            )
        )
    try:
        images, labels, paths = split_source(dataset, source, split)
    except DataError as error:
        raise DataError(f"{run.path}: {error}") from None
    return images, labels, dataset.name, paths


def evaluate_run(
    run: Run, data: str | None = None, split: str = "test", device: str = "cpu"
) -> tuple[Evaluation, torch.Tensor]:
    """The run's model scored on a split; also returns the split's uint8 images (for galleries)."""
    images, labels, name, files = split_with_files(run, data, split)
    if not len(labels):  # a folder with one image per class holds none out: no score exists
        raise DataError(
            _(
                "the {split} split of {data} is empty: nothing to score; a folder without test/ "
                "holds out test images only from classes of 2 images or more"
            ).format(split=split, data=name)
        )
    model = run.load_model(device)
    # Scored as training scored it: a run trained with tta=true is evaluated with the mirror too.
    tta = run.record.pixels.tta
    logits = logits_in_batches(model, images, run.mean, run.std, device=device, tta=tta)
    return Evaluation(run.classes, labels, logits, name, split, files), images
