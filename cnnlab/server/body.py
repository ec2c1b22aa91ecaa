"""The one image a request carries, from its body to the model's input.

Images arrive as multipart (field `file`), as raw image bytes (Content-Type image/*),
or as JSON {"pixels": HxW or CxHxW numbers 0..255}; all take the same path as
`cnnlab predict`: load_image (allowlisted formats, pixel limit checked from the header
before decoding), resized to the model's input on the server, normalised as in training.
Reading the body is async (in the event loop); decoding runs in a worker thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from cnnlab.deploy.predict import Predictor, Preprocess, pixels_to_png
from cnnlab.errors import ConfigError, DataError
from cnnlab.i18n import N_, _
from cnnlab.server.errors import ApiError

UNSUPPORTED = N_(
    "Content-Type '{media}' is not accepted: send multipart/form-data with the image in "
    "field 'file', the image bytes as image/png (or another image/* type), or "
    'application/json {{"pixels": [[...], ...]}}'
)


@dataclass(frozen=True)
class ImageBody:
    """A request's image, still encoded: `kind` is "json" (a pixel array) or "image" (file bytes)."""

    data: bytes
    kind: str
    name: str  # how messages call it: the upload's file name, "JSON pixels" (translated), ...

    def decode(self, predictor: Predictor, options: Preprocess) -> torch.Tensor:
        """The model's uint8 (C, H, W) input (call in a worker thread), or an ApiError."""
        source = pixels_from_json(self.data) if self.kind == "json" else self.data
        try:
            return predictor.prepare(source, options, self.name)
        except DataError as error:
            raise ApiError(400, str(error)) from None
        except ConfigError as error:
            raise ApiError(422, str(error)) from None


async def read_body(request: Request) -> ImageBody:
    """The image of a request by its Content-Type, or a 415/400/422 ApiError."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        body = await read_upload(request)
    elif media == "application/json":
        body = ImageBody(await request.body(), "json", _("JSON pixels"))
    elif media.startswith("image/") or media == "application/octet-stream":
        body = ImageBody(await request.body(), "image", _("uploaded image"))
    else:
        raise ApiError(415, _(UNSUPPORTED).format(media=media or _("none")))
    if not body.data:
        raise ApiError(
            400,
            _("{name}: the image is empty (0 bytes); send an image file").format(name=body.name),
        )
    return body


async def read_upload(request: Request) -> ImageBody:
    """The file in multipart field `file`."""
    try:
        form = await request.form(max_files=1, max_fields=16)
    except (MultiPartException, StarletteHTTPException, ValueError) as error:
        detail = getattr(error, "detail", None) or getattr(error, "message", None) or str(error)
        message = _("the multipart body cannot be parsed ({detail})").format(detail=detail)
        raise ApiError(400, message) from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(
                422, _("multipart body has no file field named 'file': send the image as 'file'")
            )
        return ImageBody(await upload.read(), "image", upload.filename or _("uploaded image"))
    finally:
        await form.close()


def pixels_from_json(body: bytes) -> bytes:
    """{"pixels": HxW or CxHxW numbers 0..255} -> PNG bytes, or a 400/422 ApiError."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise ApiError(
            400, _('the body is not valid JSON; send {"pixels": [[...], ...]}')
        ) from None
    except RecursionError:  # valid JSON, but deeper than the parser goes (pixels need 2 or 3)
        raise ApiError(
            400, _('the body\'s JSON is nested too deeply; send {"pixels": [[...], ...]}')
        ) from None
    if not isinstance(payload, dict) or "pixels" not in payload:
        raise ApiError(422, _('JSON must be an object with "pixels": HxW or CxHxW numbers 0..255'))
    try:
        return pixels_to_png(payload["pixels"])
    except DataError as error:
        raise ApiError(422, str(error)) from None
    except RecursionError:
        raise ApiError(422, _("pixels is nested too deeply; send HxW or CxHxW")) from None
