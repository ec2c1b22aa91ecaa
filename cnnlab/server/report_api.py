"""The routes of the run report: GET /run (the page) and its JSON twins under /api/run/.

Every answer is computed by `report.RunReport` (on `app.state.report`) in a worker thread
of a bounded pool of its own (`ReportJobs`: `limits.Workers` of `REPORT_WORKERS` threads),
behind the limits of every other route (the body limit, the Guard's in-flight and time
limits). The pool is apart from the prediction workers: the report's first computations
(the test split's evaluation, patches, the projector) take seconds on a large split, and
a drawing's predictions must not queue behind them.

A slow computation runs once, as a task of its own: every request that needs it awaits
that task without holding a worker, and a request that hits the time limit (504) leaves
it running; its result is kept (by RunReport), so the page's next try gets it at once.
At most `MAX_PENDING` such tasks run or wait at once (else 503). A task runs in the context
of the request that started it, language included, so the tasks whose answers hold words
(patches' and the projector's notes) are one per computation and language; the evaluation's
task holds none (`RunReport.prepare`: a failure is worded by each panel in its request's).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, Response

from cnnlab.i18n import _, current_language
from cnnlab.server.errors import ApiError
from cnnlab.server.limits import Workers
from cnnlab.server.openapi import PNG_ANSWER, REPORT_ERRORS
from cnnlab.server.report import (
    CELL_IMAGES,
    MAX_CELL_IMAGES,
    MAX_PATCH_CHANNELS,
    MAX_PATCH_TOP,
    RunReport,
)

STATIC_DIR = FilePath(__file__).parent / "static"
REPORT_WORKERS = 2  # threads computing report panels at once
MAX_PENDING = 8  # slow computations running or waiting for a thread at once
# The panels computed from the test split's evaluation (made once, before the first of them).
NEEDS_EVALUATION = {
    RunReport.confusion,
    RunReport.scores,
    RunReport.cell,
    RunReport.image,
    RunReport.patches,
    RunReport.embedding,
}
router = APIRouter()


class ReportJobs:
    """The report's threads, and its slow computations, each run once as a task of its own."""

    def __init__(self, workers: int = REPORT_WORKERS, max_pending: int = MAX_PENDING):
        self.workers = Workers(workers)
        self.max_pending = max_pending
        self.pending: dict[tuple, asyncio.Future] = {}  # key -> the task computing it

    async def once(self, key: tuple, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) in a worker, started by the first request for `key`, awaited by every
        request for it until it ends (fn keeps its result; a later call returns it at once)."""
        task = self.pending.get(key)
        if task is None:
            if len(self.pending) >= self.max_pending:
                message = _(
                    "the server is computing {count} report panels already; retry in a few seconds"
                )
                raise ApiError(503, message.format(count=len(self.pending)))
            task = asyncio.ensure_future(self.workers.run(fn, *args))
            self.pending[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)  # a 504 cancels the waiting, not the task

    def _finished(self, key: tuple, task: asyncio.Future) -> None:
        self.pending.pop(key, None)
        if not task.cancelled():
            task.exception()  # read: an error no request waited for is not "never retrieved"


async def _report(
    request: Request, panel: Callable[..., Any], *args: Any, once: bool = False
) -> Any:
    """`panel` (a RunReport method) on the app's report with `args`, in the report's pool, after
    the test split's evaluation where it needs it; `once`: a slow computation, started once per
    panel and arguments."""
    report: RunReport = request.app.state.report
    jobs: ReportJobs = request.app.state.report_jobs
    language = current_language()  # the request's: each task speaks the language it began in
    if panel in NEEDS_EVALUATION:
        await jobs.once(("evaluation",), report.prepare)
    bound = functools.partial(panel, report)
    if once:
        return await jobs.once((panel.__name__, language, *args), bound, *args)
    return await jobs.workers.run(bound, *args)


@router.get("/run", include_in_schema=False)
async def run_page() -> FileResponse:
    """The run report page."""
    return FileResponse(STATIC_DIR / "run.html", headers={"Cache-Control": "no-cache"})


@router.get(
    "/api/run/curves",
    summary="training curves: metrics.csv as columns, one value per epoch",
    responses=REPORT_ERRORS,
)
async def curves(request: Request) -> dict[str, Any]:
    """Loss, accuracy, learning rate... per epoch (null where a column is empty), test accuracy."""
    return await _report(request, RunReport.curves)


@router.get(
    "/api/run/confusion",
    summary="the test split's confusion matrix (rows: true class, columns: predicted)",
    responses=REPORT_ERRORS,
)
async def confusion(request: Request) -> dict[str, Any]:
    """Computed on the first request (the test split's evaluation), then kept."""
    return await _report(request, RunReport.confusion)


@router.get(
    "/api/run/confusion/{true}/{predicted}",
    summary="the test images of one confusion cell, as PNG data URLs",
    responses=REPORT_ERRORS,
)
async def confusion_cell(
    request: Request,
    true: str = Path(description="the true class: its name, or its index in `classes`"),
    predicted: str = Path(description="the predicted class: its name, or its index"),
    offset: int = Query(0, ge=0, le=10_000_000, description="images skipped"),
    limit: int = Query(CELL_IMAGES, ge=1, le=MAX_CELL_IMAGES, description="images sent"),
) -> dict[str, Any]:
    """`count` images are in the cell; `limit` of them from `offset`, highest loss first."""
    return await _report(request, RunReport.cell, true, predicted, offset, limit)


@router.get(
    "/api/run/image/{index}",
    summary="test image INDEX as a PNG, at the model's input size",
    responses={**REPORT_ERRORS, 200: PNG_ANSWER},
    response_class=Response,
)
async def test_image(
    request: Request, index: int = Path(ge=0, le=2**31, description="index in the test split")
) -> Response:
    """The pixels the model was evaluated on."""
    png = await _report(request, RunReport.image, index)
    return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


@router.get(
    "/api/run/scores",
    summary="accuracy, balanced accuracy, majority baseline, per-class precision/recall/F1",
    responses=REPORT_ERRORS,
)
async def scores(request: Request) -> dict[str, Any]:
    """The numbers of `cnnlab eval` on the test split."""
    return await _report(request, RunReport.scores)


@router.get(
    "/api/run/filters",
    summary="the first conv layer's weights (each filter flattened from I x kh x kw)",
    responses=REPORT_ERRORS,
)
async def filters(request: Request) -> dict[str, Any]:
    """404 when the model has no conv layer."""
    return await _report(request, RunReport.filters, once=True)


@router.get(
    "/api/run/patches",
    summary="what a layer's filters respond to: each channel's top test images, cropped",
    responses=REPORT_ERRORS,
)
async def patches(
    request: Request,
    layer: str | None = Query(
        None, max_length=100, description="a layer with feature maps (default: the last conv)"
    ),
    top: int = Query(9, ge=1, le=MAX_PATCH_TOP, description="images per channel"),
    channels: int = Query(16, ge=1, le=MAX_PATCH_CHANNELS, description="the first N channels"),
) -> dict[str, Any]:
    """Each crop is the receptive field of the position of the largest activation (PNG)."""
    return await _report(request, RunReport.patches, layer, top, channels, once=True)


@router.get(
    "/api/run/embedding",
    summary="the projector: the test images' penultimate features in 2-D",
    responses=REPORT_ERRORS,
)
async def embedding(
    request: Request,
    method: str = Query("pca", pattern="^(pca|tsne)$", description="pca, or tsne (slower)"),
) -> dict[str, Any]:
    """A point per image (at most MAX_POINTS, a seeded subsample beyond): true, predicted class."""
    return await _report(request, RunReport.embedding, method, once=True)
