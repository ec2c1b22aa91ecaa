"""Reading a run folder, the single hand-off from training to evaluation, prediction, export and serving.

The names of its files live in run/files.py and its one writer is run/writer.py.
`Run.open(path)` reads `model.json`; `run.load_model()` rebuilds the model from
its spec and loads `model.safetensors`, refusing weights that do not fit.
Nothing else is needed: the spec, input shape, class names and normalisation
travel with the weights.

Torch-free at import: opening and listing runs reads JSON, TOML and CSV only (`cnnlab runs`,
`plot` and `diagram` start in a tenth of torch's import time); `load_model` imports torch.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.errors import CheckpointError, CnnlabError, ConfigError
from cnnlab.fileio import NotToml, read_regular_bytes, read_toml
from cnnlab.i18n import _
from cnnlab.run import RUNS_DIR
from cnnlab.run.files import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    MODEL_META,
    RECORD_FILE,
    check_meta,
    read_json,
)
from cnnlab.run.record import (
    Pixels,
    RunRecord,
    check_agrees,
    legacy_pixels,
    legacy_record,
    record_from_json,
)
from cnnlab.spec.language import ModelSpec, parse_spec

if TYPE_CHECKING:
    import torch

    from cnnlab.model.cnn import CnnModel

MAX_TEXT_BYTES = 64 * 2**20  # config.toml and metrics.csv: a few kB in any real run


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
        check_meta(meta, folder / MODEL_META)
        run = cls(folder, meta)
        if (folder / RECORD_FILE).exists():  # validated now; a run without it is read lazily
            run.record  # noqa: B018 (a property read for its check)
        return run

    @cached_property
    def record(self) -> RunRecord:
        """The run record (run/record.py): pixels, data source, split sizes. Runs before
        record.json: read from model.json and config.toml (CheckpointError without it)."""
        path = self.path / RECORD_FILE
        if path.exists():
            record = record_from_json(read_json(path), path)
            check_agrees(record, self.meta, path)
            return record
        return legacy_record(self.meta, self.config_values(), self.path / CONFIG_FILE)

    @property
    def pixels(self) -> Pixels:
        """How an image becomes the model's input (`record.pixels`); an old run whose config.toml
        is gone still predicts: model.json's shape, normalisation and keep_aspect, without tta."""
        try:
            return self.record.pixels
        except CnnlabError:
            if (self.path / RECORD_FILE).exists():
                raise
            return legacy_pixels(self.meta, {}, self.path / MODEL_META)

    @property
    def name(self) -> str:
        """The folder's name."""
        return self.path.name

    @property
    def spec(self) -> ModelSpec:
        """The model's spec, parsed."""
        return parse_spec(self.meta["spec"])

    @property
    def classes(self) -> list[str]:
        """Class names, in output order."""
        return list(self.meta["classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input image."""
        return tuple(self.meta["input_shape"])

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean that normalisation subtracts (images scaled to 0..1)."""
        return tuple(self.meta["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation that normalisation divides by."""
        return tuple(self.meta["std"])

    @property
    def metrics(self) -> dict[str, Any]:
        """The metrics saved with the model (test accuracy, epochs, ...)."""
        return dict(self.meta.get("metrics", {}))

    def load_model(self, device: str | torch.device = "cpu") -> CnnModel:
        """The trained model in eval mode; refuses weights from another architecture."""
        # here, not at the top: torch, which only the weights need (see the module's docstring)
        from cnnlab.model.cnn import CnnModel
        from cnnlab.run.checkpoint import check_state_dict, check_weights_fit_spec, load_tensors

        check_weights_fit_spec(self.spec, self.path)  # before a tampered spec allocates
        try:
            model = CnnModel(self.spec)
        except CnnlabError as error:
            raise CheckpointError(
                _("{path}: its spec does not build ({error})").format(
                    path=self.path / MODEL_META, error=error
                )
            ) from None
        tensors, _metadata = load_tensors(self.path / MODEL_FILE)
        check_state_dict(model.state_dict(), tensors, str(self.path / MODEL_FILE))
        model.load_state_dict(tensors)
        return model.to(device).eval()

    def config_values(self) -> dict[str, Any]:
        """The training settings of this run as config.toml holds them, for reading: stages after
        training take what they need from `record`; training.config.config_of makes a TrainConfig."""
        path = self.path / CONFIG_FILE
        if not path.exists():
            raise CheckpointError(
                _("{path} is missing; the run folder is incomplete").format(path=path)
            )
        try:
            return read_toml(path, MAX_TEXT_BYTES)
        except OSError as error:
            raise CheckpointError(
                _("{path} cannot be read ({error})").format(path=path, error=error)
            ) from None
        except NotToml as error:
            raise ConfigError(f"{path}: {error}") from None

    def epoch_metrics(self) -> list[dict[str, float]]:
        """The rows of metrics.csv as numbers (empty cells as NaN)."""
        path = self.path / METRICS_FILE
        if not path.exists():
            return []
        try:
            text = read_regular_bytes(path, MAX_TEXT_BYTES).decode("utf-8")
            return [
                {k: float(v) if v != "" else float("nan") for k, v in row.items()}
                for row in csv.DictReader(io.StringIO(text, newline=""))
            ]
        except (OSError, UnicodeDecodeError, ValueError, TypeError, csv.Error) as error:
            raise CheckpointError(
                _("{path} is damaged ({error})").format(path=path, error=error)
            ) from None

    def _repr_html_(self) -> str:
        """A notebook cell's view: the model, classes and saved metrics, then one row per epoch."""
        from cnnlab.spec.summary import html_table

        facts = [
            [_("folder"), str(self.path)],
            [_("model"), self.meta["spec"]],
            [_("input"), "x".join(str(n) for n in self.input_shape)],
            [_("classes"), ", ".join(self.classes)],
        ]
        facts += [[key, _cell(value)] for key, value in self.metrics.items()]
        rows = self.epoch_metrics()
        columns = list(rows[0]) if rows else []
        epochs = [[_cell(row[c]) for c in columns] for row in rows]
        page = html_table(_("run {name}").format(name=self.name), [_("what"), _("value")], facts)
        if epochs:
            page += html_table(_("epochs (metrics.csv)"), columns, epochs)
        return page


def _cell(value: Any) -> str:
    """A metric as table text: 4 significant digits for floats, whole epochs without '.0'."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    return str(value)


def resolve_run(path: str | Path) -> Path:
    """A run folder from a path, a name under runs/, or 'latest' (the newest run under runs/)."""
    candidate = Path(path)
    if str(path) == "latest":
        runs = sorted(
            (p for p in RUNS_DIR.glob("*") if (p / MODEL_META).is_file()),
            key=lambda p: (p / MODEL_META).stat().st_mtime,
        )
        if not runs:
            raise CheckpointError(
                _("no runs under {root}/ yet: train one with `cnnlab train`").format(root=RUNS_DIR)
            )
        return runs[-1]
    for folder in (candidate, RUNS_DIR / candidate):
        if folder.is_dir():
            return folder
    raise CheckpointError(
        _(
            "run folder {path} does not exist (looked in . and {root}/); `cnnlab runs` lists them"
        ).format(path=path, root=RUNS_DIR)
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
