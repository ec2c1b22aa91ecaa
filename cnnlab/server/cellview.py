"""One cell of the page's feature maps worked out (`explain/cell.py`): `POST /api/explain/cell`'s answer.

The arithmetic hooks the layer it explains, so it runs on a model of its own behind a
lock, as Grad-CAM does (`camview.py`): a hook on the predictor's model would see other
requests' images. A cell outside the layer is a 422 naming the allowed range.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from cnnlab.errors import ConfigError
from cnnlab.explain.cell import Pixels, explain_cell
from cnnlab.model.inference import normalize
from cnnlab.run.folder import Run
from cnnlab.server.errors import ApiError


class CellView:
    """`explain_cell` for the page: the run's model (a copy of its own) and its normalisation."""

    def __init__(self, run: Run):
        self.run = run
        self.model = run.load_model()
        self._lock = threading.Lock()

    def answer(
        self, image: torch.Tensor, layer: str, channel: int, y: int, x: int
    ) -> dict[str, Any]:
        """The steps for one uint8 image (C, H, W): JSON, or a 422 ApiError naming the range."""
        pixels = Pixels(image, tuple(self.run.mean), tuple(self.run.std))
        model_input = normalize(image[None], self.run.mean, self.run.std)
        try:
            with self._lock:
                ex = explain_cell(self.model, model_input, layer, channel, (y, x), pixels)
        except ConfigError as error:
            raise ApiError(422, str(error)) from None
        return ex.to_json()
