"""The OpenAPI pieces FastAPI cannot infer (for /docs and /openapi.json): image bodies and error answers.

The image routes read their body by hand (three content types, one path), so the
request body and the error answers are described here and attached to those routes.
"""

from __future__ import annotations

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """The JSON of every error answer."""

    error: str
    status: int


IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": "An image as multipart field `file`, raw image bytes (image/*), or JSON pixels",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "pixels": {
                            "type": "array",
                            "description": "HxW (grayscale) or CxHxW (C = 1 or 3) numbers 0..255",
                            "items": {},
                        }
                    },
                    "required": ["pixels"],
                },
                "example": {"pixels": [[0, 255, 0], [255, 255, 255], [0, 255, 0]]},
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
ERRORS = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "the image cannot be read (damaged, not an image, too many pixels, empty)"),
        (413, "the body is over the size limit"),
        (415, "the Content-Type is not multipart/form-data, application/json or image/*"),
        (422, "invalid parameters or JSON (e.g. a pixel array of the wrong shape)"),
        (500, "the server's run folder is damaged, or a bug; the server log has the details"),
        (503, "too many requests in flight; retry after Retry-After seconds"),
        (504, "the request took longer than the time limit"),
    )
}
REPORT_ERRORS = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (404, "no such class or test image, or the run's test data cannot be loaded here"),
        (422, "invalid parameters (e.g. a negative index, a limit over the maximum)"),
        (500, "the server's run folder is damaged, or a bug; the server log has the details"),
        (503, "too many requests in flight; retry after Retry-After seconds"),
        (504, "took longer than the time limit (the first evaluation goes on: ask again)"),
    )
}
NO_MAP = {
    404: {
        "model": ErrorBody,
        "description": "the model has no conv layer, so no class activation map",
    }
}
PNG_ANSWER = {"description": "a PNG image", "content": {"image/png": {}}}
