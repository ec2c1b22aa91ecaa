"""The run folder's layout: every file name in it, and the schema of model.json.

A run folder holds:
  config.toml         the training settings as planned (every value the run uses), written first
  record.json         the run record (run/record.py): how pixels become the model's input and
                      where the data came from; what every stage after training reads
  train.log           every line training printed, appended as it goes
  metrics.csv         one row per epoch (METRIC_COLUMNS)
  resume.safetensors  the full training state in one file (weights, optimizer tensors, RNG
                      states) with its JSON (epoch, step, history) in the metadata,
                      so a kill between two writes can never pair mismatched halves
  model.safetensors   weights and BatchNorm buffers (state_dict names: conv1.weight, ...)
  model.json          spec, input shape, classes, normalisation, how images meet the input's
                      aspect ratio (keep_aspect), metrics, versions: all that evaluate,
                      predict, export and serve need to rebuild the model
  .cnnlab.lock        while a process writes the folder: its pid (run/writer.py)

Torch-free at import, as is run/folder.py: listing runs and reading model.json, record.json and
metrics.csv (`cnnlab runs`, `plot`, `diagram RUN`) need no tensors; torch is loaded by what reads
weights (run/checkpoint.py, `Run.load_model`).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab import __version__
from cnnlab.data.source import KEEP_ASPECTS  # as data/images.py's, without its torch
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.fileio import open_regular_file, read_regular_bytes
from cnnlab.i18n import _
from cnnlab.spec.analysis import analyze
from cnnlab.spec.language import parse_spec

if TYPE_CHECKING:
    from cnnlab.model.cnn import CnnModel
    from cnnlab.run.folder import Run

CONFIG_FILE = "config.toml"
RECORD_FILE = "record.json"
LOG_FILE = "train.log"
METRICS_FILE = "metrics.csv"
RESUME_FILE = "resume.safetensors"
MODEL_FILE = "model.safetensors"
MODEL_META = "model.json"
LOCK_FILE = ".cnnlab.lock"  # the pid of the process writing the folder (run/writer.py)
RUN_FORMAT = "cnnlab-run/1"  # model.json's "format"; a change of schema changes it

METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "seconds",
    "images_per_s",
)

# model.json, record.json and export sidecars are a few kB; anything this big is not ours
MAX_JSON_BYTES = 16 * 2**20

# metrics.csv rows read (a row per epoch): far beyond any real run, and parsed in well under
# a second; 30 M rows once took 7.4 GB before a MemoryError
MAX_EPOCH_ROWS = 100_000

# model.json's bounds: far beyond any real model, small enough that reading is always cheap
MAX_CHANNELS = 64
MAX_SIDE = 8192  # pixels per input side
MAX_CLASSES = 100_000

# model.json keys every reader relies on, and their JSON types
REQUIRED_META = {
    "format": str,
    "spec": str,
    "input_shape": list,
    "classes": list,
    "mean": list,
    "std": list,
}
# Optional keys, added later in RUN_FORMAT's life: older runs lack them and read as the default.
DEFAULT_KEEP_ASPECT = KEEP_ASPECTS[0]  # stretch: what every run before keep_aspect did


def model_meta(
    model: CnnModel,
    classes: list[str],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    data: str,
    metrics: dict[str, Any],
    keep_aspect: str | None = None,
) -> dict[str, Any]:
    """What model.json holds; keep_aspect: how images were fitted to the input (stretch, pad or
    crop; None leaves the key out, and readers take config.toml's, see run/record.py)."""
    import torch  # only a writer, who holds a model, needs its version (readers stay torch-free)

    meta = {
        "format": RUN_FORMAT,
        "spec": model.spec.text(),
        "input_shape": list(model.input_shape),
        "classes": list(classes),
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "data": data,
        "metrics": metrics,
        "cnnlab_version": __version__,
        "torch_version": torch.__version__,
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if keep_aspect is not None:
        meta["keep_aspect"] = keep_aspect
    return meta


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from a file, or a CheckpointError naming the file."""
    path = Path(path)
    try:
        data = json.loads(read_regular_bytes(path, MAX_JSON_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            _("{path} does not exist: is this a cnnlab run folder?").format(path=path)
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise CheckpointError(
            _("{path} is damaged ({error})").format(path=path, error=error)
        ) from None
    except RecursionError:
        raise CheckpointError(
            _("{path} is damaged (JSON nested too deeply)").format(path=path)
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(_("{path} does not hold a JSON object").format(path=path))
    return data


def check_meta(meta: dict[str, Any], source: Path) -> None:
    """Refuse a model.json that misses keys, has another format, or disagrees with its own spec."""
    for key, kind in REQUIRED_META.items():
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(
                _(
                    "{source}: '{key}' is missing or of the wrong type; the run folder is damaged"
                ).format(source=source, key=key)
            )
    if meta["format"] != RUN_FORMAT:
        raise CheckpointError(
            _("{source}: format {found} is not {expected}; upgrade cnnlab").format(
                source=source, found=repr(meta["format"]), expected=repr(RUN_FORMAT)
            )
        )
    channels = _check_input_shape(meta["input_shape"], source)
    try:
        spec = parse_spec(meta["spec"])
    except CnnlabError as error:
        raise CheckpointError(
            _("{source}: its spec does not parse ({error})").format(source=source, error=error)
        ) from None
    if list(spec.input_shape or ()) != meta["input_shape"]:
        raise CheckpointError(
            _("{source}: input_shape does not match the spec; the run folder is damaged").format(
                source=source
            )
        )
    try:
        outputs = math.prod(analyze(spec).output_shape)
    except CnnlabError as error:
        raise CheckpointError(
            _("{source}: its spec does not work ({error})").format(source=source, error=error)
        ) from None
    _check_classes(meta["classes"], outputs, source)
    _check_normalisation(meta["mean"], meta["std"], channels, source)
    if meta.get("keep_aspect", DEFAULT_KEEP_ASPECT) not in KEEP_ASPECTS:
        raise _damaged(
            source,
            _("keep_aspect must be one of {choices}").format(choices=", ".join(KEEP_ASPECTS)),
        )


def epoch_rows(run: Run, columns: tuple[str, ...] = ()) -> list[dict[str, float]]:
    """`run.epoch_metrics()` once metrics.csv is known to hold at most MAX_EPOCH_ROWS rows
    (counted as lines, before any is parsed) and, when it has rows, each of `columns`."""
    path = run.path / METRICS_FILE
    try:
        with open_regular_file(path) as lines:
            count = sum(1 for _ in itertools.islice(lines, MAX_EPOCH_ROWS + 2)) - 1  # the header
    except OSError:  # missing (no epochs yet) or unreadable: epoch_metrics says which
        count = 0
    if count > MAX_EPOCH_ROWS:
        raise CheckpointError(
            _(
                "{path} has more than {most} rows, a row per epoch, which no run "
                "trains: the run folder is damaged; delete the file or train the run again"
            ).format(path=path, most=f"{MAX_EPOCH_ROWS:,}")
        )
    rows = run.epoch_metrics()
    missing = [column for column in columns if rows and column not in rows[0]]
    if missing:
        raise CheckpointError(
            _(
                "{path} has no {missing} column: the run folder is damaged; cnnlab writes {columns}"
            ).format(path=path, missing=", ".join(missing), columns=", ".join(METRIC_COLUMNS))
        )
    return rows


def run_keep_aspect(run: Run) -> str:
    """How a run fits images to its input (stretch, pad or crop): its record's. Everything that
    fits an image file to a run's input (predict, serve, feature maps, export) asks here."""
    return run.pixels.keep_aspect


def _damaged(source: Path, what: str) -> CheckpointError:
    """The one error for a model.json that breaks its schema."""
    return CheckpointError(
        _(
            "{source}: {what}; the run folder is damaged: restore model.json or train the run again"
        ).format(source=source, what=what)
    )


def _check_input_shape(shape: list[Any], source: Path) -> int:
    """[C, H, W] as bounded positive integers; returns C."""
    if len(shape) != 3 or not all(type(v) is int and v > 0 for v in shape):
        raise _damaged(
            source,
            _("input_shape {shape} is not [channels, height, width]").format(
                shape=f"{shape!r:.80}"
            ),
        )
    channels, height, width = shape
    if channels > MAX_CHANNELS or height > MAX_SIDE or width > MAX_SIDE:
        raise _damaged(
            source,
            _(
                "input_shape {shape} is beyond the limits ({channels} channels, {side} pixels a side)"
            ).format(shape=f"{channels}x{height}x{width}", channels=MAX_CHANNELS, side=MAX_SIDE),
        )
    return channels


def _check_classes(classes: list[Any], outputs: int, source: Path) -> None:
    """Distinct non-empty strings, one per output of the model's last layer."""
    if len(classes) != outputs:
        raise _damaged(
            source,
            _("it names {count} classes but the model's last layer has {outputs} outputs").format(
                count=len(classes), outputs=outputs
            ),
        )
    if len(classes) > MAX_CLASSES or not all(isinstance(c, str) and c for c in classes):
        raise _damaged(source, _("'classes' must be non-empty strings"))
    if len(set(classes)) != len(classes):
        raise _damaged(source, _("'classes' holds the same name twice"))


def _check_normalisation(mean: list[Any], std: list[Any], channels: int, source: Path) -> None:
    """mean and std: one finite number per input channel, std above 0."""
    if len(mean) != channels or len(std) != channels:
        raise _damaged(source, one_per_channel(channels))
    for value in [*mean, *std]:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise _damaged(
                source,
                _("mean/std must be finite numbers, not {value}").format(value=f"{value!r:.40}"),
            )
    if any(s <= 0 for s in std):
        raise _damaged(source, _("std must be above 0 in every channel"))


def one_per_channel(channels: int) -> str:
    """Why mean/std do not fit: the words model.json's and record.json's checks share."""
    return _("mean/std must have one value per input channel ({channels})").format(
        channels=channels
    )
