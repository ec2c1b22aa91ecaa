"""Export a run's model to ONNX or a torch.export program (.pt2), checked to give the same answers.

What an export is:
  input   (N, C, H, W) float32, normalised exactly as in training: (pixel/255 - mean)/std per
          channel (`inference.normalize`); N is dynamic. mean, std, classes, the input shape
          and keep_aspect (how training fitted images of another aspect ratio) are written into the
          file (ONNX metadata_props, pt2 extra/cnnlab.json) and beside it.
  output  logits (N, classes): what `CnnModel.forward` returns. A final softmax layer of the
          spec is left out, as forward leaves it out; apply softmax to get probabilities, as
          `cnnlab predict` and `cnnlab serve` do for every engine.
  graph   BatchNorm folded into the conv or fc before it (fold.py); dropout gone (eval mode).

Before anything is written, the exported bytes are loaded in their runtime (onnxruntime,
torch.export.load) and run on real images of the run's own test split; the largest
absolute logit difference from the eager model must stay under PARITY_TOLERANCE (1e-4,
engines.py) and every predicted class must agree, else ExportError and no file. The file and a JSON sidecar
(`model.onnx.json`: hashes of the file and of the weights it came from, the parity
figures) are then written atomically. `predict`/`serve` refuse an export whose sidecar
does not match the file or the run's current weights (`engines.read_export`).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnlab import __version__
from cnnlab.deploy.engines import (
    EXPORT_FORMAT_VERSION,
    EXPORT_FORMATS,
    PARITY_TOLERANCE,
    Engine,
    default_path,
    engine_from_bytes,
    sidecar_path,
)
from cnnlab.deploy.predict import run_tta
from cnnlab.errors import CnnlabError, ConfigError, OutputError
from cnnlab.fileio import atomic_write_bytes, atomic_write_json, sha256_file
from cnnlab.i18n import N_, _, said, shown
from cnnlab.model.cnn import CnnModel
from cnnlab.model.fold import fold_batchnorm, foldable_pairs
from cnnlab.model.inference import logits_in_batches, normalize
from cnnlab.run.files import MODEL_FILE, run_keep_aspect
from cnnlab.run.folder import Run

PARITY_IMAGES = 1000  # test images checked by default (evenly spread over the split)
MIN_PARITY_IMAGES = 256  # topped up with random images when the split is smaller
ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"
MAX_BATCH = 65536  # torch.export needs an upper bound for the dynamic batch dimension
_JSON_KEYS = ("classes", "input_shape", "mean", "std")  # metadata values that are JSON text


class ExportError(CnnlabError):
    """An export that failed or does not give the model's answers."""


@dataclass
class Parity:
    """How closely an exported model reproduces the eager model's logits."""

    images: int
    source: str  # where the images came from
    max_abs_diff: float
    mismatches: int  # images whose predicted class differs
    tolerance: float = PARITY_TOLERANCE

    @property
    def ok(self) -> bool:
        return self.max_abs_diff < self.tolerance and self.mismatches == 0

    def line(self) -> str:
        verdict = _("ok") if self.ok else _("FAILED")
        return _(
            "parity {verdict}: {images} images ({source}): max |logit difference| {diff} "
            "(limit {limit}), {same}/{images} same predicted class"
        ).format(
            verdict=verdict,
            images=self.images,
            source=shown(self.source),
            diff=f"{self.max_abs_diff:.2e}",
            limit=f"{self.tolerance:.0e}",
            same=self.images - self.mismatches,
        )


@dataclass
class ExportResult:
    """A written, checked export."""

    path: Path
    sidecar: Path
    format: str
    parity: Parity
    folded: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    size_bytes: int = 0


# --- paths and metadata -----------------------------------------------------------------


def model_metadata(run: Run) -> dict[str, str]:
    """What another runtime needs to use the file, as string key/values."""
    return {
        "cnnlab_format": EXPORT_FORMAT_VERSION,
        "classes": json.dumps(run.classes),
        "input_shape": json.dumps(list(run.input_shape)),
        "mean": json.dumps(list(run.mean)),
        "std": json.dumps(list(run.std)),
        "input": "float32 (N, C, H, W): (pixel / 255 - mean) / std per channel, pixels 0..255",
        "output": "logits (N, classes); softmax gives probabilities",
        "spec": run.spec.text(),
        # how images of another aspect ratio meet input_shape, as in training: stretch (resize),
        # pad (letterbox, black bars) or crop (centre crop); fit images alike before the model
        "keep_aspect": run_keep_aspect(run),
        # test-time augmentation the run is scored with (`cnnlab eval`) and cnnlab predicts with
        # around this file: none, or mirror (average the logits of the image and its horizontal
        # mirror, input.flip(3), before the softmax); the graph itself computes one view
        "tta": "mirror" if run_tta(run) else "none",
    }


def _resolve_out(run: Run, fmt: str, out: str | Path | None) -> Path:
    if out is None:
        return default_path(run, fmt)
    path = Path(out)
    if path.is_dir():
        return path / f"model.{fmt}"
    if path.suffix.lower() != f".{fmt}":
        raise ExportError(f"--out {path} does not end in .{fmt}: name it e.g. model.{fmt}")
    return path


# --- building the exported bytes -----------------------------------------------------------


def onnx_bytes(model: CnnModel, metadata: dict[str, str] | None = None) -> bytes:
    """The model as ONNX (opset 17, dynamic batch), with `metadata` in metadata_props."""
    import onnx

    example = torch.zeros(1, *model.input_shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy (TorchScript) exporter warns that it is deprecated; the dynamo one needs
        # onnxscript, which cnnlab does not install. Constant-folding notes are noise too.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            buffer,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "cnnlab"
    proto.producer_version = __version__
    return proto.SerializeToString()


def pt2_bytes(model: CnnModel, metadata: dict[str, str] | None = None) -> bytes:
    """The model as a torch.export program with a dynamic batch, saved without any pickle."""
    example = torch.zeros(2, *model.input_shape)  # 2, not 1: a batch of 1 would be specialised
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))
    program.example_inputs = None  # they would be stored as a pickle
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={"cnnlab.json": json.dumps(metadata or {})})
    return buffer.getvalue()


# --- parity --------------------------------------------------------------------------------


def parity_images(run: Run, limit: int = PARITY_IMAGES, seed: int = 0) -> tuple[torch.Tensor, str]:
    """(uint8 images (N, C, H, W), where they come from): the run's test split, else random."""
    from cnnlab.evaluate.scores import split_images

    try:
        images, _labels, name = split_images(run, None, "test")
        source = said(N_("{name} test split"), name=name)
    except CnnlabError as error:
        images = torch.empty(0, *run.input_shape, dtype=torch.uint8)
        source = said(N_("the run's test data is not available ({error})"), error=error)
    if len(images) > limit:
        images = images[torch.linspace(0, len(images) - 1, limit).long()]
    if len(images) < MIN_PARITY_IMAGES:
        extra = MIN_PARITY_IMAGES - len(images)
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randint(0, 256, (extra, *run.input_shape), generator=generator)
        images = torch.cat([images, noise.to(torch.uint8)])
        source = said(N_("{source} + {extra} random images"), source=source, extra=extra)
    return images, source


def check_parity(
    reference: torch.Tensor, logits: torch.Tensor, source: str, tolerance: float = PARITY_TOLERANCE
) -> Parity:
    """Compare exported logits with the eager model's, image by image."""
    if reference.shape != logits.shape:
        raise ExportError(
            f"the export gives logits of shape {tuple(logits.shape)}, "
            f"the model {tuple(reference.shape)}"
        )
    diff = (reference - logits).abs().max().item() if len(reference) else 0.0
    mismatches = int((reference.argmax(1) != logits.argmax(1)).sum()) if len(reference) else 0
    return Parity(len(reference), source, float(diff), mismatches, tolerance)


def engine_logits(
    engine: Engine, images: torch.Tensor, run: Run, batch_size: int = 500
) -> torch.Tensor:
    """Logits of uint8 images through any engine, normalised as in training."""
    outputs = [
        engine.logits(normalize(images[start : start + batch_size], run.mean, run.std))
        for start in range(0, len(images), batch_size)
    ]
    return torch.cat(outputs) if outputs else torch.empty(0, len(run.classes))


def _sidecar_json(
    run: Run,
    fmt: str,
    path: Path,
    data: bytes,
    metadata: dict[str, str],
    pairs: list[tuple[str, str]],
    parity: Parity,
) -> dict[str, Any]:
    """What model.onnx.json records: hashes of the file and its weights, metadata, parity."""
    return {
        "format": EXPORT_FORMAT_VERSION,
        "kind": fmt,
        "file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "run": str(run.path),
        "weights_sha256": sha256_file(run.path / MODEL_FILE),
        **{
            k: json.loads(v) if k in _JSON_KEYS else v
            for k, v in metadata.items()
            if k != "cnnlab_format"
        },
        "folded": [f"{bn} into {layer}" for layer, bn in pairs],
        "parity": asdict(parity),
        "onnx_opset": ONNX_OPSET if fmt == "onnx" else None,
        "cnnlab_version": __version__,
        "torch_version": torch.__version__,
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --- the export ----------------------------------------------------------------------------


def export_run(
    run: Run,
    fmt: str,
    out: str | Path | None = None,
    parity_limit: int = PARITY_IMAGES,
    tolerance: float = PARITY_TOLERANCE,
) -> ExportResult:
    """Fold, export, check parity on real images, then write the file and its sidecar atomically."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"format '{fmt}' is not one of {', '.join(EXPORT_FORMATS)}")
    if isinstance(parity_limit, bool) or not isinstance(parity_limit, int) or parity_limit < 0:
        raise ConfigError(
            _(
                "the parity images (--parity-images) must be a whole number, 0 or more, not "
                "{value}; at least {least} are used whatever it is"
            ).format(value=repr(parity_limit), least=MIN_PARITY_IMAGES)
        )
    started = time.perf_counter()
    path = _resolve_out(run, fmt, out)
    model = run.load_model()
    folded = fold_batchnorm(model)
    pairs = foldable_pairs(model)
    metadata = model_metadata(run)
    try:
        data = onnx_bytes(folded, metadata) if fmt == "onnx" else pt2_bytes(folded, metadata)
        engine = engine_from_bytes(fmt, data)
    except CnnlabError:
        raise
    except Exception as error:  # noqa: BLE001 (exporters raise many kinds; the user gets the reason)
        raise ExportError(f"{fmt} export of {run.path} failed: {error}") from None
    images, source = parity_images(run, parity_limit)
    reference = logits_in_batches(model, images, run.mean, run.std, batch_size=500)
    parity = check_parity(reference, engine_logits(engine, images, run), source, tolerance)
    if not parity.ok:
        raise ExportError(
            f"{parity.line()}; the {fmt} export does not give the model's answers, "
            "so nothing was written. Try the other format, or report this model's spec"
        )
    sidecar = sidecar_path(path)
    try:
        atomic_write_bytes(path, data)
        atomic_write_json(sidecar, _sidecar_json(run, fmt, path, data, metadata, pairs, parity))
    except OSError as error:
        # mkdir says "File exists" when a part of the path is a file
        reason = (
            _("a file stands where a folder should") if isinstance(error, FileExistsError) else None
        )
        raise OutputError(
            _("cannot write {path}: {reason}; choose a writable file or folder with --out").format(
                path=path, reason=reason or error.strerror or error
            )
        ) from None
    return ExportResult(path, sidecar, fmt, parity, pairs, time.perf_counter() - started, len(data))
