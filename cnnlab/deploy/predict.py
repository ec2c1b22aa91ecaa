"""Image files (or pixel arrays) -> the model's input exactly as in training -> class probabilities.

Every image goes through `images.load_image` (format allowlist, pixel limit, any mode, EXIF
rotation, fitted to the model's input with LANCZOS and the run's keep_aspect: stretch, pad
or crop) and `inference.normalize`, as training data did. Options for photos of
dark-on-light digits, as MNIST was made:
  invert  yes / no / auto (auto: when the image's border is light and the model was trained
          on dark backgrounds, i.e. its data mean is below one half)
  center  stretch the contrast (median -> black, brightest ink -> white), crop to the ink's
          bounding box, fit it into 20x20 keeping the aspect (for 28x28; 20/28 of the side in
          general), and place it so its centre of mass is at the centre of the image
Probabilities are the softmax of the engine's logits; every engine (engines.py) returns
logits, so eager, ONNX and pt2 give the same numbers to within engines.PARITY_TOLERANCE.
A run trained with tta = true is answered as `cnnlab eval` scores it: the logits are the mean
of the image's and its horizontal mirror's (`inference.tta_logits`), around whichever engine
runs, here in `Predictor.logits` and nowhere else (the CLI, `cnnlab.load` and the server all
come through it).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlab.data.images import MAX_PIXELS, load_image
from cnnlab.deploy import ENGINE_CHOICES, INVERT_CHOICES
from cnnlab.deploy.engines import (
    EXPORT_FORMATS,
    PARITY_TOLERANCE,
    EagerEngine,
    Engine,
    default_path,
    engine_from_bytes,
    latency_us,
    read_export,
)
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError, DataError
from cnnlab.i18n import N_, _
from cnnlab.model.inference import normalize, tta_logits
from cnnlab.run.files import DEFAULT_KEEP_ASPECT, run_keep_aspect
from cnnlab.run.folder import Run

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
MNIST_BOX = 20 / 28  # MNIST fitted each digit into 20x20 of its 28x28 image
INK_LEVEL = 64  # after the contrast stretch, pixels above this (of 255) count as ink
MIN_CONTRAST = 16  # brightest minus median below this: no ink at all
NO_EXPORT = N_("no export beside the run; `cnnlab export {run} --format onnx` may be faster")


@dataclass(frozen=True)
class Preprocess:
    """How to turn a user's image into the model's input beyond what training did."""

    invert: str = "no"  # no, yes, auto
    center: bool = False  # MNIST-style crop, fit and centring (grayscale models)

    def __post_init__(self) -> None:
        if self.invert not in INVERT_CHOICES:
            raise ConfigError(
                _("invert must be one of {choices}, not '{value}'").format(
                    choices=", ".join(INVERT_CHOICES), value=self.invert
                )
            )


# --- preprocessing ----------------------------------------------------------------------


def border_is_light(image: np.ndarray) -> bool:
    """True when the outer band (5% of the side) of a (H, W) or (C, H, W) uint8 image is light."""
    gray = image.mean(axis=0) if image.ndim == 3 else image.astype(np.float64)
    band = max(1, round(0.05 * min(gray.shape)))
    mask = np.ones(gray.shape, dtype=bool)
    mask[band:-band, band:-band] = False
    return bool(gray[mask].mean() > 127.5)


def should_invert(image: np.ndarray, invert: str, data_mean: Sequence[float]) -> bool:
    """yes/no as asked; auto: a light border on an image for a model trained on dark backgrounds."""
    if invert == "auto":
        return float(np.mean(data_mean)) < 0.5 and border_is_light(image)
    return invert == "yes"


def mnist_center(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (H0, W0) uint8 image with bright ink -> (H, W) uint8 with the ink fitted and centred.

    Contrast: median (the background) -> 0, brightest pixel -> 255. Then the box of pixels
    above INK_LEVEL is cropped, scaled (LANCZOS) so its longer side is 20/28 of the output,
    and placed so its centre of mass lands on the output's centre. No ink: all zeros.
    """
    height, width = size
    x = gray.astype(np.float32)
    background, peak = float(np.median(x)), float(x.max())
    if peak - background < MIN_CONTRAST:
        return np.zeros(size, dtype=np.uint8)
    ink = np.clip((x - background) * (255.0 / (peak - background)), 0, 255)
    rows = np.flatnonzero((ink > INK_LEVEL).any(axis=1))
    cols = np.flatnonzero((ink > INK_LEVEL).any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].round().astype(np.uint8)
    box = max(1, round(MNIST_BOX * min(height, width)))
    scale = box / max(crop.shape)
    new_h, new_w = (max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale)))
    patch = np.asarray(
        Image.fromarray(crop, mode="L").resize((new_w, new_h), Image.Resampling.LANCZOS),
        dtype=np.float64,
    )
    total = patch.sum()
    cy = (patch.sum(axis=1) * np.arange(new_h)).sum() / total if total else (new_h - 1) / 2
    cx = (patch.sum(axis=0) * np.arange(new_w)).sum() / total if total else (new_w - 1) / 2
    # Shift so the centre of mass sits on the centre pixel position, keeping the patch inside.
    top = int(np.clip(round((height - 1) / 2 - cy), 0, height - new_h))
    left = int(np.clip(round((width - 1) / 2 - cx), 0, width - new_w))
    out = np.zeros(size, dtype=np.uint8)
    out[top : top + new_h, left : left + new_w] = patch.round().clip(0, 255).astype(np.uint8)
    return out


def prepare_image(
    source: str | Path | bytes,
    input_shape: Sequence[int],
    data_mean: Sequence[float],
    options: Preprocess = Preprocess(),
    name: str | None = None,
    keep_aspect: str = DEFAULT_KEEP_ASPECT,
) -> torch.Tensor:
    """A file or encoded bytes -> uint8 (C, H, W) at the model's input shape, as training saw images.

    keep_aspect: how the run's training images met its input shape (stretch, pad or crop);
    centring fits the ink itself and ignores it.
    """
    channels, height, width = input_shape
    if options.center:
        if channels != 1:
            raise ConfigError(
                _("centring (--center) is for grayscale models; this one takes {shape}").format(
                    shape=f"{channels}x{height}x{width}"
                )
            )
        gray = load_image(source, channels=1, name=name)[0].numpy()  # (H0, W0) at its own size
        if should_invert(gray, options.invert, data_mean):
            gray = 255 - gray
        return torch.from_numpy(mnist_center(gray, (height, width)))[None]
    image = load_image(
        source, channels=channels, size=(height, width), name=name, keep_aspect=keep_aspect
    )
    if should_invert(image.numpy(), options.invert, data_mean):
        image = 255 - image
    return image


def pixels_to_png(pixels: Any) -> bytes:
    """A JSON pixel array, HxW or CxHxW (C 1 or 3) of numbers 0..255 -> PNG bytes.

    The PNG then takes the same path as an uploaded file (prepare_image).
    """
    try:
        array = np.asarray(pixels, dtype=np.float64)
    except (ValueError, TypeError):
        raise DataError(
            _("pixels must be a rectangular array of numbers: HxW rows, or CxHxW with C 1 or 3")
        ) from None
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)  # (H, W, 3)
    elif array.ndim != 2:
        raise DataError(
            _("pixels has shape {shape}; send HxW (grayscale) or CxHxW with C 1 or 3").format(
                shape="x".join(map(str, array.shape)) or "scalar"
            )
        )
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise DataError(
            _("pixels is empty ({size}); send at least one pixel").format(size=f"{height}x{width}")
        )
    if height * width > MAX_PIXELS:
        raise DataError(
            _("pixels is {size}, over the limit of {limit} pixels").format(
                size=f"{height}x{width}", limit=f"{MAX_PIXELS:,}"
            )
        )
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise DataError(_("pixels must be numbers from 0 to 255 (no NaN or infinity)"))
    image = Image.fromarray(array.round().astype(np.uint8), mode="L" if array.ndim == 2 else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# --- engines ------------------------------------------------------------------------------


@dataclass
class EngineChoice:
    """Which engine runs the model, and why."""

    name: str
    latency_us: dict[str, float] = field(default_factory=dict)  # per engine, one image
    notes: list[str] = field(default_factory=list)  # English
    shown_notes: list[str] = field(default_factory=list)  # the same in the command's language
    # (N_-marked template, fields) of each note: the server words them per request
    templates: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    def add_note(self, template: str, **fields: object) -> None:
        """A note (an N_-marked template and its fields): English, translated for line(), and
        kept as a template for `notes_now`."""
        self.notes.append(template.format(**fields))
        self.shown_notes.append(_(template).format(**fields))
        self.templates.append((template, fields))

    def notes_now(self) -> list[str]:
        """The notes in the current language (the server's: each request's). A field that was
        made of words already (an error's message) stays in the language it was made in."""
        return [_(template).format(**fields) for template, fields in self.templates]

    def line(self) -> str:
        timings = ", ".join(
            f"{k} {v:.0f} us" for k, v in sorted(self.latency_us.items(), key=lambda kv: kv[1])
        )
        text = _("engine: {name}").format(name=self.name)
        if timings:
            text += _(" (one image: {timings})").format(timings=timings)
        return "; ".join([text, *self.shown_notes])


def probe_images(input_shape: Sequence[int], count: int = 16) -> torch.Tensor:
    """Fixed uint8 images (random, plus black and white) to check and time engines on."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, *input_shape), generator=generator).to(torch.uint8)
    images[0] = 0
    images[1] = 255
    return images


def _check_engine(engine: Engine, eager: Engine, x: torch.Tensor) -> None:
    reference, logits = eager.logits(x), engine.logits(x)
    diff = (reference - logits).abs().max().item()
    if diff >= PARITY_TOLERANCE or not torch.equal(reference.argmax(1), logits.argmax(1)):
        raise CheckpointError(
            _("the {engine} export differs from the model by up to {diff} in the logits").format(
                engine=engine.name, diff=f"{diff:.1e}"
            )
        )


def _export_paths(run: Run, name: str, export_path: str | Path | None) -> dict[str, Path]:
    """The export file to try per format: auto tries each beside the run (or `export_path`)."""
    if name != "auto":
        return {name: Path(export_path) if export_path else default_path(run, name)}
    paths = {fmt: default_path(run, fmt) for fmt in EXPORT_FORMATS}
    if export_path and Path(export_path).suffix.lstrip(".") in paths:
        paths[Path(export_path).suffix.lstrip(".")] = Path(export_path)
    return paths


def select_engine(
    run: Run,
    eager: EagerEngine,
    name: str = "auto",
    export_path: str | Path | None = None,
    threads: int | None = None,
) -> tuple[Engine, EngineChoice]:
    """The engine asked for; auto: the fastest of eager and each valid export beside the run.

    An export is used only if its sidecar matches the file and the run's weights and it
    reproduces the eager logits (within PARITY_TOLERANCE) on fixed probe images.
    """
    if name not in ENGINE_CHOICES:
        raise ConfigError(
            _("engine must be one of {choices}, not '{value}'").format(
                choices=", ".join(ENGINE_CHOICES), value=name
            )
        )
    probe = normalize(probe_images(run.input_shape), run.mean, run.std)
    if name == "eager":
        return eager, EngineChoice("eager")
    paths = _export_paths(run, name, export_path)
    candidates: list[Engine] = [eager] if name == "auto" else []
    notes: list[tuple[str, dict[str, object]]] = []  # (template, fields)
    for fmt, path in paths.items():
        if name == "auto" and not path.exists():
            continue
        try:
            kind, data, _meta = read_export(path, run)
            if kind != fmt:
                raise CheckpointError(
                    _("{path} holds a {kind} export, not {format}").format(
                        path=path, kind=kind, format=fmt
                    )
                )
            engine = engine_from_bytes(fmt, data, threads)
            _check_engine(engine, eager, probe)
            candidates.append(engine)
        except CnnlabError as error:
            if name != "auto":
                raise
            notes.append((N_("skipped {name}: {error}"), {"name": path.name, "error": error}))
    if name == "auto" and len(candidates) == 1:
        notes.append((NO_EXPORT, {"run": run.path}))
    timings = {engine.name: latency_us(engine, probe[:1]) for engine in candidates}
    best = min(candidates, key=lambda engine: timings[engine.name])
    choice = EngineChoice(best.name, timings if name == "auto" else {})
    for template, fields in notes:
        choice.add_note(template, **fields)
    return best, choice


# --- prediction -----------------------------------------------------------------------------


def run_tta(run: Run) -> bool:
    """Whether the run is scored with mirror tta (its record says so; `cnnlab eval` does too)."""
    return run.pixels.tta


class Predictor:
    """A run's model ready to predict: its preprocessing, classes and an engine."""

    def __init__(
        self,
        run: Run,
        engine: str = "auto",
        export_path: str | Path | None = None,
        threads: int | None = None,
    ):
        self.run = run
        self.model = run.load_model()
        self.keep_aspect = run_keep_aspect(run)
        self.eager = EagerEngine(self.model)
        self.engine, self.choice = select_engine(run, self.eager, engine, export_path, threads)
        # as `cnnlab eval` scores the run (evaluate/scores.py), for every engine
        self.tta = run_tta(run)
        if self.tta:
            self.choice.add_note(N_("tta: each image and its mirror, as the run was trained"))

    @property
    def classes(self) -> list[str]:
        return self.run.classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.run.input_shape

    def prepare(
        self,
        source: str | Path | bytes,
        options: Preprocess = Preprocess(),
        name: str | None = None,
    ) -> torch.Tensor:
        """uint8 (C, H, W) model input from a file or encoded bytes."""
        return prepare_image(
            source, self.input_shape, self.run.mean, options, name, self.keep_aspect
        )

    def normalized(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> the float input every engine takes."""
        return normalize(images, self.run.mean, self.run.std)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> logits (N, classes) of the engine, with the run's tta."""
        return tta_logits(self.engine.logits, self.normalized(images), self.tta)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> softmax probabilities (N, classes)."""
        return torch.softmax(self.logits(images), dim=1)

    def top_k(self, probabilities: torch.Tensor, k: int = 5) -> list[dict[str, Any]]:
        """The k most likely classes of one image's probabilities (classes,), best first."""
        values, indices = probabilities.topk(min(max(k, 1), len(self.classes)))
        return [
            {"class": self.classes[i], "index": i, "probability": float(p)}
            for p, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]


@dataclass
class FileResult:
    """One file's prediction, or why it has none."""

    path: str
    top_k: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        if not self.ok:
            return {"file": self.path, "error": self.error}
        best = self.top_k[0]
        return {
            "file": self.path,
            "class": best["class"],
            "probability": best["probability"],
            "top_k": self.top_k,
        }


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[FileResult]]:
    """Files named, plus image files found (recursively, hidden ones skipped) in folders named."""
    files, problems = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                problems.append(
                    FileResult(
                        str(path),
                        error=f"{path}: folder has no image files ({', '.join(IMAGE_SUFFIXES)})",
                    )
                )
            files.extend(found)
        else:
            problems.append(FileResult(str(path), error=f"{path}: no such file or folder"))
    return files, problems


def predict_files(
    predictor: Predictor,
    files: Sequence[Path],
    top_k: int = 5,
    options: Preprocess = Preprocess(),
    batch_size: int = 256,
) -> Iterator[FileResult]:
    """Each file's top-k, in order; a bad file gives a result with its error and the rest go on."""
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        results: list[FileResult] = []
        tensors: list[torch.Tensor] = []
        for path in chunk:
            try:
                tensors.append(predictor.prepare(path, options, name=str(path)))
                results.append(FileResult(str(path)))
            except DataError as error:
                results.append(FileResult(str(path), error=str(error)))
        if tensors:
            probabilities = predictor.probabilities(torch.stack(tensors))
            good = iter(probabilities)
            for result in results:
                if result.ok:
                    result.top_k = predictor.top_k(next(good), top_k)
        yield from results


def folder_accuracy(results: Sequence[FileResult], classes: Sequence[str]) -> dict[str, Any] | None:
    """When every predicted file lies in a folder named after a class (digits/7/a.png): how many
    top-1 classes match their folder, per class too, and the confusion; None otherwise."""
    done = [r for r in results if r.ok]
    if not done or any(Path(r.path).parent.name not in classes for r in done):
        return None
    index = {name: i for i, name in enumerate(classes)}
    k = len(classes)
    confusion = [[0] * k for _ in range(k)]  # row = folder (true) class, column = predicted
    for r in done:
        confusion[index[Path(r.path).parent.name]][index[r.top_k[0]["class"]]] += 1
    correct = sum(confusion[i][i] for i in range(k))
    per_class = [
        {
            "class": name,
            "images": sum(confusion[i]),
            "correct": confusion[i][i],
            "accuracy": confusion[i][i] / sum(confusion[i]) if sum(confusion[i]) else None,
        }
        for i, name in enumerate(classes)
        if sum(confusion[i])  # only the classes that have a folder among the files
    ]
    return {
        "images": len(done),
        "correct": correct,
        "accuracy": correct / len(done),
        "per_class": per_class,
        "confusion": confusion,  # over all the run's classes, in their order
    }
