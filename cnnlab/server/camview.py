"""Class activation maps for the pages: Grad-CAM (`evaluate/cam.py`) drawn over the image as a PNG.

The report's confusion cells show each image's map for the class it was taken for, and
the drawing page shows the map over the model's view of the drawing. The overlay is
the one `cnnlab cam` draws (figures/cam.py): the image in gray, the map in the jet
colours from 0 (blue) to the map's largest value (red), half transparent; computed here
with numpy, so the server needs no matplotlib.

`class_activation_map` hooks a layer of the model it is given, so concurrent calls on
one model would see each other's hooks: `CamView` keeps a model of its own and takes a
lock around each map.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch

from cnnlab.errors import CnnlabError
from cnnlab.evaluate.cam import CamResult, class_activation_map, default_layer, describe_layer
from cnnlab.i18n import _
from cnnlab.model.inference import normalize
from cnnlab.run.folder import Run
from cnnlab.server.errors import ApiError
from cnnlab.server.maps import png_data_url

METHOD = "gradcam"
OVERLAY_ALPHA = 0.5  # as figures/cam.py draws it


def jet(values: np.ndarray) -> np.ndarray:
    """(H, W) floats in 0..1 -> (H, W, 3) uint8 in matplotlib's jet colours (blue .. red)."""
    x = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25])  # where red, green and blue peak
    rgb = np.clip(1.5 - np.abs(4 * x - 4 * centres), 0.0, 1.0)
    return (rgb * 255 + 0.5).astype(np.uint8)


def heat_overlay(image: torch.Tensor, heatmap: np.ndarray) -> np.ndarray:
    """A uint8 (C, H, W) image in gray with an (H, W) map over it: (H, W, 3) uint8.

    The map is scaled by its largest value (0 stays blue; a map of zeros is all blue).
    """
    pixels = image.float()
    gray = (pixels.mean(0) if pixels.shape[0] == 3 else pixels[0]).numpy()
    top = float(heatmap.max()) if heatmap.size else 0.0
    heat = jet(heatmap / top if top > 0 else np.zeros_like(heatmap)).astype(np.float32)
    blended = (1 - OVERLAY_ALPHA) * gray[..., None] + OVERLAY_ALPHA * heat
    return (blended + 0.5).clip(0, 255).astype(np.uint8)


class CamView:
    """Grad-CAM maps of one run's images, one at a time on a model of its own."""

    def __init__(self, run: Run):
        self.run = run
        self.model = run.load_model()
        self._lock = threading.Lock()
        self.layer: dict[str, Any] | None = None
        if not self.problem():
            self.layer = describe_layer(self.model, default_layer(self.model, METHOD)).to_json()

    def problem(self) -> str:
        """Why the model has no layer Grad-CAM can use ("" when it has one), in the current
        language: asked again each time, as the request asking speaks its own."""
        try:
            describe_layer(self.model, default_layer(self.model, METHOD))
        except CnnlabError as error:  # e.g. no conv layer: nothing to weigh
            return str(error)
        return ""

    @property
    def available(self) -> bool:
        """False when the model has no layer Grad-CAM can use (then `problem()` says why)."""
        return self.layer is not None

    def result(self, image: torch.Tensor, target: int | None = None) -> CamResult:
        """The Grad-CAM of a uint8 (C, H, W) image for class `target` (None: the predicted one)."""
        x = normalize(image[None], self.run.mean, self.run.std)
        with self._lock:
            return class_activation_map(
                self.model, x, METHOD, target=target, classes=self.run.classes
            )

    def overlay(
        self, image: torch.Tensor, target: int | None = None
    ) -> tuple[CamResult, np.ndarray]:
        """(the CamResult, the (H, W, 3) uint8 overlay of its map on the image)."""
        result = self.result(image, target)
        return result, heat_overlay(image, result.heatmap)

    def answer(self, image: torch.Tensor) -> dict[str, Any]:
        """POST /api/cam: the map of a uint8 (C, H, W) image for its predicted class, drawn over it."""
        if not self.available:
            message = _("no class activation map for this model: {problem}")
            raise ApiError(404, message.format(problem=self.problem()))
        result, pixels = self.overlay(image)
        assert result.layer is not None  # gradcam always has one
        return {
            "method": METHOD,
            "class": result.class_name,
            "probability": result.probability,
            "layer": result.layer.to_json(),
            "layer_text": result.layer.describe(),
            "overlay": png_data_url(pixels),
            "scaling": _(
                "gray image; the map in jet colours from 0 (blue) to its largest value (red), "
                "{alpha} over it"
            ).format(alpha=f"{OVERLAY_ALPHA:.0%}"),
            "warnings": result.warnings,
        }
