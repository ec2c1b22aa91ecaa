"""The one writer of a run folder: config.toml, train.log, metrics.csv, the resume state, the model.

Training decides what to write and when; this module decides how. Every file
but the append-only train.log is replaced atomically (fileio), so a run killed
at any moment keeps its previous checkpoint whole.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cnnlab.errors import ConfigError
from cnnlab.fileio import atomic_write_json, atomic_write_text
from cnnlab.run.checkpoint import save_tensors
from cnnlab.run.files import (
    CONFIG_FILE,
    LOG_FILE,
    METRIC_COLUMNS,
    METRICS_FILE,
    MODEL_FILE,
    MODEL_META,
    RESUME_FILE,
)

if TYPE_CHECKING:
    from cnnlab.model.cnn import CnnModel


def claim_folder(folder: Path) -> None:
    """Create the folder of a new run, refusing to train over another run."""
    if (folder / RESUME_FILE).exists() or (folder / MODEL_META).exists():
        raise ConfigError(
            f"{folder} already holds a run: continue it with --resume {folder}, or choose another --out"
        )
    folder.mkdir(parents=True, exist_ok=True)


def write_config(folder: Path, toml_text: str) -> None:
    """config.toml: the settings the run trains with."""
    atomic_write_text(folder / CONFIG_FILE, toml_text)


def append_log(folder: Path, line: str) -> None:
    """One line at the end of train.log."""
    with (folder / LOG_FILE).open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def write_metrics(folder: Path, rows: Iterable[dict[str, float]]) -> None:
    """metrics.csv: one row per epoch, 6 significant digits, NaN (no validation set) as empty."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if math.isnan(row[c]) else f"{row[c]:.6g}" for c in METRIC_COLUMNS})
    atomic_write_text(folder / METRICS_FILE, text.getvalue())


def write_resume(folder: Path, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """resume.safetensors: the whole training state, tensors and JSON, in one atomic file."""
    save_tensors(folder / RESUME_FILE, tensors, info)


def write_model(folder: Path, model: CnnModel, meta: dict[str, Any]) -> None:
    """model.safetensors then model.json (files.model_meta), each atomically."""
    save_tensors(folder / MODEL_FILE, model.state_dict())
    atomic_write_json(folder / MODEL_META, meta)
