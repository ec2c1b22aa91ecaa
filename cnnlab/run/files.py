"""The run folder's layout: every file name in it, and the schema of model.json.

A run folder holds:
  config.toml         the training settings (TrainConfig.to_toml), written first
  train.log           every line training printed, appended as it goes
  metrics.csv         one row per epoch (METRIC_COLUMNS)
  resume.safetensors  the full training state in one file (weights, optimizer tensors, RNG
                      states) with its JSON (epoch, step, history) in the metadata,
                      so a kill between two writes can never pair mismatched halves
  model.safetensors   weights and BatchNorm buffers (state_dict names: conv1.weight, ...)
  model.json          spec, input shape, classes, normalisation, metrics, versions: all that
                      evaluate, predict, export and serve need to rebuild the model
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cnnlab import __version__
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.spec.language import parse_spec

if TYPE_CHECKING:
    from cnnlab.model.cnn import CnnModel

RUNS_DIR = Path("runs")  # where runs go by default, relative to the working directory
CONFIG_FILE = "config.toml"
LOG_FILE = "train.log"
METRICS_FILE = "metrics.csv"
RESUME_FILE = "resume.safetensors"
MODEL_FILE = "model.safetensors"
MODEL_META = "model.json"
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

# model.json keys every reader relies on, and their JSON types
REQUIRED_META = {
    "format": str,
    "spec": str,
    "input_shape": list,
    "classes": list,
    "mean": list,
    "std": list,
}


def model_meta(
    model: CnnModel,
    classes: list[str],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    data: str,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """What model.json holds."""
    return {
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


def check_meta(meta: dict[str, Any], source: Path) -> None:
    """Refuse a model.json that misses keys, has another format, or disagrees with its own spec."""
    for key, kind in REQUIRED_META.items():
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(
                f"{source}: '{key}' is missing or of the wrong type; the run folder is damaged"
            )
    if meta["format"] != RUN_FORMAT:
        raise CheckpointError(
            f"{source}: format {meta['format']!r} is not {RUN_FORMAT!r}; upgrade cnnlab"
        )
    try:
        spec = parse_spec(meta["spec"])
    except CnnlabError as error:
        raise CheckpointError(f"{source}: its spec does not parse ({error})") from None
    if list(spec.input_shape or ()) != meta["input_shape"]:
        raise CheckpointError(
            f"{source}: input_shape does not match the spec; the run folder is damaged"
        )
    channels = meta["input_shape"][0]
    if len(meta["mean"]) != channels or len(meta["std"]) != channels:
        raise CheckpointError(
            f"{source}: mean/std must have one value per input channel ({channels})"
        )
