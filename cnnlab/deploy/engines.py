"""Three ways to run a trained model on normalised images: eager torch, onnxruntime, a torch.export program.

Every engine takes what `CnnModel.forward` takes, (N, C, H, W) float32 from
`inference.normalize`, and returns what it returns: logits (N, classes), no
softmax. So one preprocessing and one softmax serve them all (predict.py).

A .pt2 file is a zip whose tensors may be pickles; torch.export.load would
unpickle them. `Pt2Engine` refuses, unread, any archive holding a pickled
payload; cnnlab writes its own without any (export.py).

Reading an export back is here too (`read_export`): export.py writes a file and
its JSON sidecar; predict and serve open only a file whose sidecar matches it
and the run's current weights. `PARITY_TOLERANCE` is the one limit on how far an
export's logits may stray from the eager model's, when written and when used.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import statistics
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CheckpointError
from cnnlab.fileio import read_regular_bytes, sha256_file
from cnnlab.i18n import _
from cnnlab.model.fold import fold_batchnorm
from cnnlab.model.inference import memory_format_for, threads_for
from cnnlab.run.files import MODEL_FILE, read_json
from cnnlab.run.folder import Run

ENGINE_NAMES = ("eager", "onnx", "pt2")
EXPORT_FORMATS = ("onnx", "pt2")
EXPORT_FORMAT_VERSION = "cnnlab-export/1"  # the sidecar's "format"; a change of schema changes it
PARITY_TOLERANCE = 1e-4  # largest allowed |logit difference| between an export and the eager model


class Engine:
    """Normalised images (N, C, H, W) float32 -> logits (N, classes) float32 on the CPU."""

    name = "engine"

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class EagerEngine(Engine):
    """The CnnModel itself, in eval mode, without autograd, in the layout that suits the batch.

    It runs a copy with BatchNorm folded into the layers before it (model/fold.py: one op fewer
    per BatchNorm, the same logits to 1e-6). The memory layout and the thread count follow the
    batch size (`inference.memory_format_for`, `inference.threads_for`). The weights must be in
    the input's layout for oneDNN to run it without reordering them on every call, so each
    layout gets its own copy, made on first use; `model` stays as given.
    """

    name = "eager"

    def __init__(self, model: nn.Module):
        self.model = model.eval()
        self._in_layout: dict[torch.memory_format, nn.Module] = {}

    def model_in(self, layout: torch.memory_format) -> nn.Module:
        """The folded model with its weights in `layout` (a copy, kept)."""
        if layout not in self._in_layout:
            self._in_layout[layout] = fold_batchnorm(self.model).to(memory_format=layout)
        return self._in_layout[layout]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        layout = memory_format_for(len(x))
        with torch.inference_mode(), threads_for(len(x)):
            return self.model_in(layout)(x.contiguous(memory_format=layout)).float()


class OnnxEngine(Engine):
    """An ONNX model in onnxruntime's CPU provider."""

    name = "onnx"

    def __init__(self, data: bytes, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings on stderr for every session
        # Idle worker threads would otherwise spin for a while after each run, taking the
        # cores from torch (feature maps, the eager engine) and from the server's threads.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 (onnxruntime raises its own exception types)
            raise CheckpointError(
                _("onnxruntime cannot load this model: {error}").format(error=error)
            ) from None
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to(torch.float32).contiguous().numpy()
        (out,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(out)


class Pt2Engine(Engine):
    """A torch.export program (.pt2), run as the module it unflattens to."""

    name = "pt2"

    def __init__(self, data: bytes):
        refuse_pickled_payloads(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "under active development" notes
            program = torch.export.load(io.BytesIO(data))
        self.module = program.module()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(x.to(torch.float32)).float()


# What a pickle-free archive from torch.export.save holds (paths below its top folder).
_SAFE_MEMBER = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/\w+\.json|extra/[\w.-]+|data/sample_inputs/\w+\.pt"
    r"|data/(weights|constants)/\w+_config\.json|data/weights/weight_\d+|data/constants/tensor_\d+)"
)


def refuse_pickled_payloads(data: bytes) -> None:
    """Refuse, unread, a .pt2 archive holding anything torch.export.load would unpickle."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        for info in archive.infolist():
            member = info.filename.split("/", 1)[-1]
            if not _SAFE_MEMBER.fullmatch(member):
                raise CheckpointError(
                    _("it holds {member}, which may be code or a pickle").format(member=member)
                )
            if member.startswith("data/sample_inputs/") and info.file_size:
                raise CheckpointError(_("it stores pickled example inputs"))
            if member.endswith("_config.json"):
                config = json.loads(archive.read(info)).get("config", {})
                if any(entry.get("use_pickle") for entry in config.values()):
                    raise CheckpointError(_("{member} lists pickled tensors").format(member=member))
    except CheckpointError as error:
        raise CheckpointError(
            _(
                "this .pt2 file cannot be loaded safely: {error}; cnnlab never unpickles files. "
                "Export the run again with `cnnlab export RUN --format pt2`"
            ).format(error=error)
        ) from None
    except (zipfile.BadZipFile, ValueError, KeyError, AttributeError, OSError) as error:
        raise CheckpointError(
            _("this is not a readable .pt2 archive ({error})").format(error=error)
        ) from None


def engine_from_bytes(fmt: str, data: bytes, threads: int | None = None) -> Engine:
    """Load exported bytes in their runtime (`threads`: onnxruntime's per-call threads)."""
    return OnnxEngine(data, threads) if fmt == "onnx" else Pt2Engine(data)


# --- reading an export back ----------------------------------------------------------------


def default_path(run: Run, fmt: str) -> Path:
    """RUN/model.onnx or RUN/model.pt2."""
    return run.path / f"model.{fmt}"


def sidecar_path(path: str | Path) -> Path:
    """The JSON written beside an export: model.onnx -> model.onnx.json."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_export(path: str | Path, run: Run) -> tuple[str, bytes, dict[str, Any]]:
    """(format, bytes, sidecar) of an export of `run`, refusing one that is stale or not cnnlab's.

    The file's SHA-256 must match its sidecar (so cnnlab opens only files it wrote, and a
    .pt2 is never unpickled), and the sidecar's weights hash must match the run's weights.
    """
    path = Path(path)
    suffix = path.suffix.lstrip(".")
    named = suffix if suffix in EXPORT_FORMATS else "|".join(EXPORT_FORMATS)  # /etc/passwd: none
    again = _("export it again: cnnlab export {run} --format {format}").format(
        run=run.path, format=named
    )
    if not path.exists():
        raise CheckpointError(_("{path} does not exist: {again}").format(path=path, again=again))
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise CheckpointError(
            _("{path} has no {sidecar} beside it, so cnnlab did not write it: {again}").format(
                path=path, sidecar=sidecar.name, again=again
            )
        )
    meta = read_json(sidecar)
    fmt = meta.get("kind")
    if meta.get("format") != EXPORT_FORMAT_VERSION or fmt not in EXPORT_FORMATS:
        raise CheckpointError(
            _("{sidecar} is not a cnnlab export description: {again}").format(
                sidecar=sidecar, again=again
            )
        )
    try:
        data = read_regular_bytes(path)
    except OSError as error:
        raise CheckpointError(
            _("{path} cannot be read ({error}): {again}").format(
                path=path, error=error, again=again
            )
        ) from None
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise CheckpointError(
            _("{path} was changed after cnnlab wrote it: {again}").format(path=path, again=again)
        )
    try:
        weights_sha256 = sha256_file(run.path / MODEL_FILE)
    except OSError as error:
        raise CheckpointError(
            _("{path} cannot be read ({error})").format(path=run.path / MODEL_FILE, error=error)
        ) from None
    if meta.get("weights_sha256") != weights_sha256:
        raise CheckpointError(
            _("{path} was exported from other weights than {run}'s: {again}").format(
                path=path, run=run.path, again=again
            )
        )
    return fmt, data, meta


# --- timing --------------------------------------------------------------------------------


def latency_us(
    engine: Engine, x: torch.Tensor, repeats: int = 30, warmup: int = 3, budget_s: float = 0.3
) -> float:
    """Median wall time of one `engine.logits(x)` call in microseconds, over at most `repeats`
    calls or `budget_s` seconds (at least 5 calls), so a slow engine does not delay start-up."""
    return _median_us(lambda: engine.logits(x), repeats, warmup, budget_s)


def _median_us(fn: Callable[[], object], repeats: int, warmup: int, budget_s: float) -> float:
    for _round in range(warmup):
        fn()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < repeats and (len(times) < 5 or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6
