"""A run folder: the single hand-off from training to evaluation, prediction, export and serving.

`Run.open(path)` reads `model.json`; `run.load_model()` rebuilds the model from
its spec and loads `model.safetensors`, refusing weights that do not fit.
Nothing else is needed: the spec, input shape, class names and normalisation
travel with the weights.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab import __version__
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.model.cnn import CnnModel
from cnnlab.run.checkpoint import (
    MODEL_FILE,
    MODEL_META,
    RUN_FORMAT,
    atomic_write_json,
    check_state_dict,
    load_tensors,
    read_json,
    save_tensors,
)
from cnnlab.spec.language import ModelSpec, parse_spec
from cnnlab.training.config import TrainConfig, load_config

RUNS_DIR = Path("runs")
METRICS_FILE = "metrics.csv"
CONFIG_FILE = "config.toml"
LOG_FILE = "train.log"


@dataclass
class Run:
    """An opened run folder."""

    path: Path
    meta: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """Read and check model.json of a run folder (a path, a name under runs/, or 'latest')."""
        folder = resolve_run(path)
        meta = read_json(folder / MODEL_META)
        _check_meta(meta, folder / MODEL_META)
        return cls(folder, meta)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def spec(self) -> ModelSpec:
        return parse_spec(self.meta["spec"])

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["input_shape"])

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.meta["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.meta["std"])

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.meta.get("metrics", {}))

    def load_model(self, device: str | torch.device = "cpu") -> CnnModel:
        """The trained model in eval mode; refuses weights from another architecture."""
        try:
            model = CnnModel(self.spec)
        except CnnlabError as error:
            raise CheckpointError(
                f"{self.path / MODEL_META}: its spec does not build ({error})"
            ) from None
        tensors, _ = load_tensors(self.path / MODEL_FILE)
        check_state_dict(model.state_dict(), tensors, str(self.path / MODEL_FILE))
        model.load_state_dict(tensors)
        return model.to(device).eval()

    def config(self) -> TrainConfig:
        """The training settings of this run (config.toml)."""
        path = self.path / CONFIG_FILE
        if not path.is_file():
            raise CheckpointError(f"{path} is missing; the run folder is incomplete")
        return load_config(path)

    def epoch_metrics(self) -> list[dict[str, float]]:
        """The rows of metrics.csv as numbers (empty cells as NaN)."""
        path = self.path / METRICS_FILE
        if not path.is_file():
            return []
        with path.open(newline="") as f:
            return [
                {k: float(v) if v != "" else float("nan") for k, v in row.items()}
                for row in csv.DictReader(f)
            ]


_REQUIRED = {
    "format": str,
    "spec": str,
    "input_shape": list,
    "classes": list,
    "mean": list,
    "std": list,
}


def _check_meta(meta: dict[str, Any], source: Path) -> None:
    for key, kind in _REQUIRED.items():
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


def write_model(folder: Path, model: CnnModel, meta: dict[str, Any]) -> None:
    """model.safetensors then model.json, each atomically."""
    save_tensors(folder / MODEL_FILE, model.state_dict())
    atomic_write_json(folder / MODEL_META, meta)


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


def resolve_run(path: str | Path) -> Path:
    """A run folder from a path, a name under runs/, or 'latest' (the newest run under runs/)."""
    candidate = Path(path)
    if str(path) == "latest":
        runs = sorted(
            (p for p in RUNS_DIR.glob("*") if (p / MODEL_META).is_file()),
            key=lambda p: (p / MODEL_META).stat().st_mtime,
        )
        if not runs:
            raise CheckpointError(f"no runs under {RUNS_DIR}/ yet: train one with `cnnlab train`")
        return runs[-1]
    for folder in (candidate, RUNS_DIR / candidate):
        if folder.is_dir():
            return folder
    raise CheckpointError(
        f"run folder {path} does not exist (looked in . and {RUNS_DIR}/); `cnnlab runs` lists them"
    )


def list_runs(root: str | Path = RUNS_DIR) -> list[Run]:
    """Every readable run under `root`, oldest first; damaged ones are skipped."""
    runs = []
    for folder in sorted(Path(root).glob("*")):
        if (folder / MODEL_META).is_file():
            try:
                runs.append(Run.open(folder))
            except CheckpointError:
                continue
    return sorted(runs, key=lambda r: r.meta.get("saved", ""))
