"""The run report behind GET /run: each panel's numbers as JSON, computed on first request and kept.

Panels: the training curves (metrics.csv), the test split's confusion matrix and the
images of each of its cells with their Grad-CAM overlays (`camview.py`), the per-class
scores (the numbers `cnnlab eval` prints: `evaluate.scores.Evaluation`), the filters of
the first conv layer, the top patches of a layer's channels (`evaluate/patches.py`) and
the projector: the test images' penultimate features in 2-D (`evaluate/embed.py`).

The test split's evaluation (`evaluate_run`: the split rebuilt as training saw it, the
model over every image) takes up to seconds, so it runs once, under a lock, on the first
request that needs it; concurrent first requests wait for that one computation. A failure
the user can fix (the data set is not on this machine) is kept too, so that each request
does not try again (once per language: its message is in the language of the request that
met it). What one answer may hold is bounded: at most `MAX_CELL_IMAGES` images
of a cell, at most `MAX_FILTERS` filters, `MAX_POINTS` points, `MAX_PATCH_CHANNELS` x
`MAX_PATCH_TOP` patches; answers with options (patches, embedding) are kept per option and
language (their notes are words). Every method speaks the current language (cnnlab.i18n),
which the server sets per request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.errors import CnnlabError
from cnnlab.evaluate import MAX_PATCH_CHANNELS, MAX_PATCH_TOP  # noqa: F401 (report_api's import)
from cnnlab.evaluate.embed import LabelledImages, embed_features
from cnnlab.evaluate.filters import conv_filters
from cnnlab.evaluate.patches import default_layer, map_layers, top_patches
from cnnlab.evaluate.scores import Evaluation, evaluate_run
from cnnlab.fileio import finite
from cnnlab.i18n import N_, _, current_language
from cnnlab.run.files import epoch_rows
from cnnlab.run.folder import Run
from cnnlab.server.camview import CamView
from cnnlab.server.errors import ApiError, without_paths
from cnnlab.server.maps import png_bytes, png_data_url
from cnnlab.text import clipped

CELL_IMAGES = 48  # images of a confusion cell per answer, unless asked otherwise
MAX_CELL_IMAGES = 200  # the most one answer may hold (each is a PNG in base64)
MAX_FILTERS = 256  # filters of the first conv layer sent (the first ones)
CELL_ORDER = N_("highest loss first: the most confident mistakes, the least sure correct answers")
MAX_POINTS = 2000  # projector points (a seeded subsample of larger test splits)
MAX_KEPT = 16  # answers with options kept (the oldest goes first): options cannot fill memory


def picture(image: torch.Tensor) -> np.ndarray:
    """A uint8 (C, H, W) image as PIL takes it: (H, W) gray or (H, W, 3) RGB."""
    array = image.numpy()
    return array[0] if array.shape[0] == 1 else np.ascontiguousarray(array.transpose(1, 2, 0))


def class_index(classes: list[str], text: str) -> int:
    """A class given by name, or else by its index in `classes`; a 404 ApiError when neither."""
    if text in classes:
        return classes.index(text)
    if text.isascii() and text.isdigit() and int(text) < len(classes):
        return int(text)
    message = _(
        "no class '{name}' in this run: give a class name or an index from 0 to {last} (the "
        "classes are listed by /api/run/confusion)"
    )
    raise ApiError(404, message.format(name=clipped(text), last=len(classes) - 1))


def shown_files(files: list[str] | None, data: str) -> list[str] | None:
    """Each file relative to the data set's folder ('dark/dark-03.png'), not where it lies on
    the server; just its name where it is not under that folder."""
    if files is None:
        return None
    root = Path(data.removeprefix("folder:"))
    roots = (root, root.resolve())
    shown = []
    for file in map(Path, files):
        under = next((r for r in roots if file.is_relative_to(r)), None)
        shown.append(file.relative_to(under).as_posix() if under else file.name)
    return shown


def shown_evaluation(evaluation: Evaluation) -> Evaluation:
    """`evaluation` as answers show it: its data set and files named without server paths."""
    return dataclasses.replace(
        evaluation,
        data=without_paths(evaluation.data),  # 'folder:/srv/photos' -> 'folder:photos'
        files=shown_files(evaluation.files, evaluation.data),
    )


class RunReport:
    """The report of one run; every method is safe to call from several worker threads."""

    def __init__(self, run: Run, cam: CamView | None = None):
        self.run = run
        self.cam = cam if cam is not None and cam.available else None  # overlays in cells
        self._lock = threading.Lock()
        self._evaluated: tuple[Evaluation, torch.Tensor] | None = None
        self._failures: dict[str, CnnlabError] = {}  # language -> the evaluation's error
        self._filters: dict[str, Any] | None = None
        self._filters_lock = threading.Lock()  # apart: filters need not wait for the evaluation
        self._kept: OrderedDict[tuple, dict[str, Any]] = OrderedDict()  # per option, newest last
        self._key_locks: dict[tuple, threading.Lock] = {}  # one per option: apart, in parallel
        self._kept_lock = threading.Lock()  # guards the two dicts
        self._overlays: dict[tuple[int, int], str] = {}  # (image, class) -> CAM overlay data URL

    def prepare(self) -> None:
        """The test split's evaluation made (or its failure kept): what every request for a
        panel that needs it awaits, once, whatever its language. It raises nothing, so no
        request is handed a message in another's language: each panel's own `evaluated()`
        reports a failure in its request's."""
        with contextlib.suppress(ApiError):
            self.evaluated()

    def evaluated(self) -> tuple[Evaluation, torch.Tensor]:
        """(the test split's Evaluation, its uint8 images (N, C, H, W)): computed once."""
        language = current_language()
        with self._lock:
            if self._evaluated is None and language not in self._failures:
                try:
                    evaluation, images = evaluate_run(self.run)
                    self._evaluated = shown_evaluation(evaluation), images
                except CnnlabError as error:  # e.g. the data set is not on this machine
                    self._failures[language] = error
            if self._evaluated is None:
                message = _(
                    "the run's test data cannot be loaded here: {error} (make it available, "
                    "then restart the server)"
                )
                raise ApiError(404, message.format(error=self._failures[language]))
            return self._evaluated

    def curves(self) -> dict[str, Any]:
        """metrics.csv as columns (one value per epoch, null where empty) and the test accuracy."""
        rows = epoch_rows(self.run)
        names = list(dict.fromkeys(key for row in rows for key in row))
        return finite(
            {
                "run": self.run.name,
                "epochs": len(rows),
                "columns": {name: [row.get(name, math.nan) for row in rows] for name in names},
                "test_accuracy": self.run.metrics.get("test_accuracy"),
            }
        )

    def confusion(self) -> dict[str, Any]:
        """The test split's confusion matrix: rows true classes, columns predicted."""
        evaluation, _images = self.evaluated()
        return finite(
            {
                "data": evaluation.data,
                "split": evaluation.split,
                "images": evaluation.size,
                "accuracy": evaluation.accuracy,
                "classes": evaluation.classes,
                "matrix": evaluation.confusion.tolist(),
                "rows": _("true class"),
                "columns": _("predicted class"),
                "cell_order": _(CELL_ORDER),
                "max_cell_images": MAX_CELL_IMAGES,
                "cam": None if self.cam is None else {"method": "gradcam", "layer": self.cam.layer},
            }
        )

    def scores(self) -> dict[str, Any]:
        """Accuracy, loss, balanced accuracy, the majority baseline and each class's scores."""
        evaluation, _images = self.evaluated()
        return finite(
            {
                "data": evaluation.data,
                "split": evaluation.split,
                "images": evaluation.size,
                "accuracy": evaluation.accuracy,
                "loss": evaluation.loss,
                "balanced_accuracy": evaluation.balanced_accuracy,
                "majority_baseline": evaluation.majority_baseline(),
                "per_class": evaluation.per_class(),
                "most_confused": evaluation.most_confused(),
            }
        )

    def cell(self, true: str, predicted: str, offset: int, limit: int) -> dict[str, Any]:
        """The test images of one confusion cell, `limit` from `offset` in CELL_ORDER."""
        evaluation, images = self.evaluated()
        t = class_index(evaluation.classes, true)
        p = class_index(evaluation.classes, predicted)
        members = torch.nonzero((evaluation.labels == t) & (evaluation.predictions == p))[:, 0]
        order = members[evaluation.losses[members].argsort(descending=True, stable=True)]
        shown = order[offset : offset + limit].tolist()
        return finite(
            {
                "true": evaluation.classes[t],
                "predicted": evaluation.classes[p],
                "count": len(members),
                "offset": offset,
                "order": _(CELL_ORDER),
                "images": [self._cell_image(evaluation, images, i, p) for i in shown],
            }
        )

    def _cell_image(
        self, evaluation: Evaluation, images: torch.Tensor, i: int, predicted: int
    ) -> dict[str, Any]:
        """One image of a cell: index (and file), the probabilities it got, its pixels."""
        entry: dict[str, Any] = {"index": i}
        if evaluation.files is not None:
            entry["file"] = evaluation.files[i]
        entry.update(
            probability=float(evaluation.probabilities[i, predicted]),
            true_probability=float(evaluation.probabilities[i, evaluation.labels[i]]),
            loss=float(evaluation.losses[i]),
            url=f"/api/run/image/{i}",
            png=png_data_url(picture(images[i])),
        )
        if self.cam is not None:
            entry["cam"] = self._overlay(images, i, predicted)
        return entry

    def _overlay(self, images: torch.Tensor, i: int, target: int) -> str:
        """Image i's Grad-CAM for class `target` over it, as a PNG data URL (kept)."""
        key = (i, target)
        if key not in self._overlays:
            _result, pixels = self.cam.overlay(images[i], target)
            self._overlays[key] = png_data_url(pixels)
        return self._overlays[key]

    def image(self, index: int) -> bytes:
        """Test image `index` as PNG bytes, at the model's input size; a 404 past the end."""
        _evaluation, images = self.evaluated()
        if not 0 <= index < len(images):
            message = _(
                "no test image {index}: the test split has {count} images, use an index from 0 "
                "to {last}"
            )
            raise ApiError(
                404, message.format(index=index, count=len(images), last=len(images) - 1)
            )
        return png_bytes(picture(images[index]))

    def filters(self) -> dict[str, Any]:
        """The first conv layer's weights (O, I, kh, kw), on one symmetric scale +-max_abs."""
        with self._filters_lock:
            if self._filters is None:
                self._filters = self._first_filters()
            return self._filters

    def _first_filters(self) -> dict[str, Any]:
        layers = conv_filters(self.run.load_model())
        if not layers:
            message = _("the model of {run} has no conv layer, so no filters")
            raise ApiError(404, message.format(run=self.run.name))
        first = layers[0]
        weight = first.weight[:MAX_FILTERS].float()
        return finite(
            {
                "layer": first.name,
                "spec": first.layer,
                "weight_shape": list(first.weight.shape),
                "filters_shown": len(weight),
                "rgb": first.can_be_rgb(),
                "max_abs": float(first.weight.abs().max()),
                "weights": [[round(v, 5) for v in w.flatten().tolist()] for w in weight],
            }
        )

    def _keep(self, key: tuple, compute) -> dict[str, Any]:
        """compute() once per key; different keys compute at the same time."""
        with self._kept_lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            with self._kept_lock:
                if key in self._kept:
                    self._kept.move_to_end(key)  # the least recently used goes first
                    return self._kept[key]
            answer = compute()
            with self._kept_lock:
                self._kept[key] = answer
                while len(self._kept) > MAX_KEPT:
                    oldest, _answer = self._kept.popitem(last=False)
                    self._key_locks.pop(oldest, None)
            return answer

    def patches(self, layer: str | None, top: int, channels: int) -> dict[str, Any]:
        """The `top` test images of each of the first `channels` channels of `layer` (default:
        the last conv layer with a map, as `cnnlab patches`), each cropped to its window."""
        evaluation, images = self.evaluated()
        model = self.run.load_model()
        layers = map_layers(model.report)
        layer = layer or default_layer(model.report) or ""
        if layer not in layers:
            shown = (
                _("'{layer}' has no feature map").format(layer=clipped(layer))
                if layer
                else _("no conv layer has one")
            )
            choices = ", ".join(layers) or _("none in this model")
            message = _("{problem}: choose a layer with feature maps ({choices})")
            raise ApiError(404, message.format(problem=shown, choices=choices))

        def compute() -> dict[str, Any]:
            found = top_patches(
                model, images, evaluation.labels, evaluation.classes,
                (self.run.mean, self.run.std), layer, top, channels, evaluation.files,
            )  # fmt: skip
            answer = found.to_json()
            for row, patches in zip(answer["channels"], found.patches, strict=True):
                for entry, patch in zip(row["top"], patches, strict=True):
                    entry["png"] = png_data_url(picture(patch.crop))
            return finite(
                {**answer, "data": evaluation.data, "layers": layers, "notes": found.notes}
            )

        return self._keep(("patches", current_language(), layer, top, channels), compute)

    def embedding(self, method: str) -> dict[str, Any]:
        """The test images' penultimate features in 2-D (pca or tsne), at most MAX_POINTS."""
        evaluation, images = self.evaluated()
        data = LabelledImages(
            images, evaluation.labels, evaluation.files, f"{evaluation.data} {evaluation.split}"
        )

        def compute() -> dict[str, Any]:
            found = embed_features(self.run, data, method, max_points=MAX_POINTS)
            return finite(found.to_json())

        try:
            return self._keep(("embedding", current_language(), method), compute)
        except CnnlabError as error:  # e.g. no fc layer
            raise ApiError(404, str(error)) from None
