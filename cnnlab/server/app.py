"""The HTTP routes: a page to draw on, and its JSON twin, over one `Predictor`.

Routes: GET / (the page), GET /api/i18n.js and /api/i18n (the pages' words, from gettext), GET /api/model, POST /api/predict, POST /api/featuremaps,
POST /api/cam, POST /api/explain/cell, GET /healthz, GET /readyz, and FastAPI's /docs and /openapi.json; GET /run
and /api/run/* (the run report) are in report_api.py.

`create_app` puts what the routes share on `app.state` (the predictor, the model info,
the worker-thread limiter, the Guard) and wraps the app in the limits of `limits.py`, and
those in `language.py`'s `RequestLanguage`: each request is served in its language (`?lang=`,
else Accept-Language, else English), its messages and the words the answers make alike.
Request bodies are read by `body.py`, feature maps drawn by `maps.py`, every error
answered by `errors.py`; `serve.py` binds the socket and runs uvicorn.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from cnnlab import __version__
from cnnlab.deploy.predict import Predictor, Preprocess
from cnnlab.evaluate.featuremaps import feature_maps
from cnnlab.fileio import finite
from cnnlab.i18n import LANGUAGES, SOURCE_LANGUAGE, _, current_language, using_language
from cnnlab.server.body import ImageBody, read_body
from cnnlab.server.camview import CamView
from cnnlab.server.cellview import CellView
from cnnlab.server.errors import add_error_handlers, without_paths
from cnnlab.server.language import RequestLanguage
from cnnlab.server.limits import DEFAULT_LIMITS, BodyLimit, Guard, Limits, Workers
from cnnlab.server.maps import MAX_CHANNELS, input_json, layer_json
from cnnlab.server.openapi import ERRORS, IMAGE_BODY, NO_MAP
from cnnlab.server.page_text import dictionary, script
from cnnlab.server.report import RunReport
from cnnlab.server.report_api import ReportJobs
from cnnlab.server.report_api import router as report_router
from cnnlab.spec.analysis import analyze
from cnnlab.spec.summary import summary_json

STATIC_DIR = Path(__file__).parent / "static"
router = APIRouter()


def model_info(predictor: Predictor, limits: Limits) -> dict[str, Any]:
    """Everything the page shows about the model (GET /api/model), in the current language (the
    summary's notes and formulas too: analysed again; the model's own report is in the one
    the server started in)."""
    run = predictor.run
    report = predictor.model.report
    dark = sum(run.mean) / len(run.mean) < 0.5
    return finite(
        {
            "run": run.name,
            "spec": run.spec.text(),
            "input_shape": list(run.input_shape),
            "classes": run.classes,
            "mean": list(run.mean),
            "std": list(run.std),
            "data": without_paths(run.meta.get("data", "")),  # no server paths in answers
            "metrics": run.metrics,
            "summary": summary_json(analyze(report.spec, report.input_shape)),
            "engine": predictor.choice.name,
            "engine_latency_us": predictor.choice.latency_us,
            "engine_notes": [without_paths(note) for note in predictor.choice.notes_now()],
            "output": _("softmax of the model's logits"),
            # The page draws in the training data's polarity: white on black for MNIST-like data.
            "drawing": {
                "background": "black" if dark else "white",
                "ink": "white" if dark else "black",
            },
            "resize": _(
                "on the server: the canvas is sent as a PNG and resized with LANCZOS, exactly "
                "as uploaded files are"
            ),
            "limits": {
                "max_body_bytes": limits.max_body_bytes,
                "max_in_flight": limits.max_in_flight,
                "timeout_s": limits.timeout_s,
                "body_timeout_s": limits.body_timeout_s,
                "header_timeout_s": limits.header_timeout_s,
                "workers": limits.workers,
            },
            "cnnlab_version": __version__,
        }
    )


def create_app(predictor: Predictor, limits: Limits = DEFAULT_LIMITS) -> ASGIApp:
    """The FastAPI app wrapped in the body limit and the in-flight/time guard, each request
    in its language."""
    api = FastAPI(
        title="cnnlab",
        version=__version__,
        description=f"Predictions and feature maps of run `{predictor.run.name}` "
        f"({predictor.run.spec.text()}). Messages and descriptions in the answers are in the "
        "request's language: `?lang=en|ko` on any route, else the Accept-Language header, "
        "else English; JSON keys and values meant for programs stay as they are.",
    )
    add_error_handlers(api)
    api.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    api.include_router(router)
    api.include_router(report_router)
    guard = Guard(api, limits)
    api.state.predictor = predictor
    api.state.info = {}  # language -> model_info, each made once (cheap: no tensors)
    for language in LANGUAGES:
        with using_language(language):
            api.state.info[language] = model_info(predictor, limits)
    api.state.cam = CamView(predictor.run)  # Grad-CAM on a model of its own (hooks, a lock)
    api.state.cell = CellView(predictor.run)  # explain_cell hooks layers: a model of its own
    api.state.report = RunReport(predictor.run, api.state.cam)  # computed on first request
    api.state.workers = Workers(limits.workers)  # threads decoding and predicting
    api.state.report_jobs = ReportJobs()  # /api/run/*'s threads, apart: slow first answers
    api.state.guard = guard  # /readyz reports its count
    app = RequestLanguage(BodyLimit(guard, limits.max_body_bytes))
    app.fastapi = api  # type: ignore[attr-defined]  (tests and tools reach the FastAPI app here)
    return app


def _answer_head(routes: APIRouter) -> None:
    """HEAD on every GET route (load balancers and `curl -I` use it), kept out of /docs."""
    for route in list(routes.routes):
        if isinstance(route, APIRoute) and route.methods == {"GET"}:
            routes.add_api_route(
                route.path, route.endpoint, methods=["HEAD"], include_in_schema=False
            )


async def in_worker(request: Request, fn, *args):
    """fn(*args) in one of the app's worker threads (`Workers`: bounded, slot held to the end).

    A time limit answers at once even while a decode runs; the decode keeps its worker.
    """
    return await request.app.state.workers.run(fn, *args)


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The drawing page."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/api/i18n.js", include_in_schema=False)
async def page_dictionaries() -> Response:
    """The pages' words in each catalogue's language, as the script both pages load before
    /static/i18n.js (synchronously: the dictionary is there when the page is first translated)."""
    return Response(script(), media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@router.get("/api/i18n", summary="the pages' words in one language, from the gettext catalogue")
async def page_dictionary(
    lang: str = Query(
        "ko", pattern=f"^({'|'.join(LANGUAGES)})$", description="language of the translations"
    ),
) -> dict[str, Any]:
    """{English: translation} for every text the pages show; English, the source, is empty."""
    messages = {} if lang == SOURCE_LANGUAGE else dictionary(lang)
    return {"language": lang, "source_language": SOURCE_LANGUAGE, "messages": messages}


@router.get("/healthz", summary="the process is up")
async def healthz() -> dict[str, str]:
    """Always ok while the process answers."""
    return {"status": "ok"}


@router.get("/readyz", summary="ready for requests (503 while at the in-flight limit)")
async def readyz(request: Request) -> JSONResponse:
    """Ready, or busy (503) while the Guard is at its in-flight limit."""
    guard: Guard = request.app.state.guard
    workers: Workers = request.app.state.workers
    payload = {
        "status": "busy" if guard.busy else "ready",
        "in_flight": guard.in_flight,
        "max_in_flight": guard.max_in_flight,
        "uploading": guard.uploading,  # bodies still arriving: not counted in flight
        "buffered_bytes": guard.buffered,  # of bodies held, arriving or being answered
        "workers_busy": workers.busy,
        "workers": workers.count,
        "engine": request.app.state.predictor.choice.name,
    }
    return JSONResponse(payload, status_code=503 if guard.busy else 200)


@router.get("/api/model", summary="the model: spec, per-layer summary, classes, input, metrics")
async def model(request: Request) -> dict[str, Any]:
    """The run's model as the page shows it (computed once per language, at start)."""
    return request.app.state.info[current_language()]


@router.post(
    "/api/predict",
    summary="class probabilities for one image",
    openapi_extra=IMAGE_BODY,
    responses=ERRORS,
)
async def predict(
    request: Request,
    top_k: int = Query(5, ge=1, le=1000, description="classes in top_k"),
    invert: str = Query("no", pattern="^(no|yes|auto)$", description="invert dark-on-light"),
    center: bool = Query(False, description="MNIST-style crop, fit and centring"),
) -> dict[str, Any]:
    """Class probabilities of one image, the same numbers as `cnnlab predict`."""
    started = time.perf_counter()
    predictor: Predictor = request.app.state.predictor
    body = await read_body(request)
    image, probabilities = await in_worker(
        request, _predict, predictor, body, Preprocess(invert, center)
    )
    top = predictor.top_k(probabilities, top_k)
    return {
        "prediction": top[0]["class"],
        "probability": top[0]["probability"],
        "top_k": top,
        "probabilities": dict(zip(predictor.classes, probabilities.tolist(), strict=True)),
        "engine": predictor.choice.name,
        "input_shape": list(image.shape),
        "milliseconds": round((time.perf_counter() - started) * 1000, 3),
    }


def _predict(
    predictor: Predictor, body: ImageBody, options: Preprocess
) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 input (C, H, W), probabilities (classes,)): one trip to a worker thread."""
    image = body.decode(predictor, options)
    return image, predictor.probabilities(image[None])[0]


@router.post(
    "/api/featuremaps",
    summary="every layer's output for one image: PNG grids (per-channel scaled) or numbers",
    openapi_extra=IMAGE_BODY,
    responses=ERRORS,
)
async def featuremaps(
    request: Request,
    invert: str = Query("no", pattern="^(no|yes|auto)$"),
    center: bool = Query(False),
    max_channels: int = Query(MAX_CHANNELS, ge=1, le=1024, description="channels per layer"),
) -> dict[str, Any]:
    """Every layer's output for one image, laid out as `cnnlab featuremaps` lays it out."""
    body = await read_body(request)
    options = Preprocess(invert, center)
    return await in_worker(
        request, _featuremaps, request.app.state.predictor, body, options, max_channels
    )


def _featuremaps(
    predictor: Predictor, body: ImageBody, options: Preprocess, max_channels: int
) -> dict[str, Any]:
    """The /api/featuremaps answer (in a worker thread): input, prediction, every layer."""
    image = body.decode(predictor, options)
    maps = feature_maps(predictor.model, predictor.normalized(image[None]))
    logits = maps[predictor.model.logit_layers - 1].values
    probabilities = torch.softmax(logits.view(1, -1), dim=1)[0]
    return {
        "input": input_json(image),
        "prediction": predictor.top_k(probabilities, 1)[0],
        "layers": [layer_json(i + 1, m, max_channels) for i, m in enumerate(maps)],
        "scaling": _("each channel's min -> black, max -> white"),
    }


@router.post(
    "/api/cam",
    summary="Grad-CAM of one image for its predicted class, drawn over the model's view",
    openapi_extra=IMAGE_BODY,
    responses={**ERRORS, **NO_MAP},
)
async def cam(
    request: Request,
    invert: str = Query("no", pattern="^(no|yes|auto)$"),
    center: bool = Query(False),
) -> dict[str, Any]:
    """Where in the image the model found its evidence (404 for a model without a conv layer)."""
    body = await read_body(request)
    options = Preprocess(invert, center)
    return await in_worker(
        request, _cam, request.app.state.predictor, request.app.state.cam, body, options
    )


def _cam(
    predictor: Predictor, view: CamView, body: ImageBody, options: Preprocess
) -> dict[str, Any]:
    """The /api/cam answer (in a worker thread)."""
    return view.answer(body.decode(predictor, options))


@router.post(
    "/api/explain/cell",
    summary="how one number of a layer's output came about for one image, step by step",
    openapi_extra=IMAGE_BODY,
    responses=ERRORS,
)
async def explain_cell_route(
    request: Request,
    layer: str = Query(..., max_length=64, description="conv1, a layer number, or input"),
    channel: int = Query(0, description="channel (a vector layer: the value's index)"),
    y: int = Query(0, description="row in the map (0 for a vector)"),
    x: int = Query(0, description="column in the map (0 for a vector)"),
    invert: str = Query("no", pattern="^(no|yes|auto)$"),
    center: bool = Query(False),
) -> dict[str, Any]:
    """The arithmetic of `cnnlab explain cell` for the image sent (the page's drawing or file):
    each step with the cells one layer down it reads; the total checked against torch."""
    body = await read_body(request)
    options = Preprocess(invert, center)
    cell = (layer, channel, y, x)
    return await in_worker(
        request,
        _explain_cell,
        request.app.state.predictor,
        request.app.state.cell,
        body,
        options,
        cell,
    )


def _explain_cell(
    predictor: Predictor, view: CellView, body: ImageBody, options: Preprocess, cell: tuple
) -> dict[str, Any]:
    """The /api/explain/cell answer (in a worker thread)."""
    return view.answer(body.decode(predictor, options), *cell)


_answer_head(router)  # after every route above
_answer_head(report_router)
