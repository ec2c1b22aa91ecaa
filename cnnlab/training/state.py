"""Where training stands, and the whole training state as the tensors and JSON of a resume checkpoint.

Everything that makes a step depend on the past is here: the weights, the
optimizer's tensors, both RNG states, the epoch and step. Saved at every epoch
end (and on Ctrl-C), it makes a resumed run bitwise identical to an unbroken one on the CPU.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from cnnlab.errors import CheckpointError
from cnnlab.i18n import _
from cnnlab.run.checkpoint import check_state_dict, optimizer_from_tensors, optimizer_to_tensors
from cnnlab.run.files import METRIC_COLUMNS
from cnnlab.text import clipped
from cnnlab.training.config import MAX_COUNT, MAX_EPOCHS
from cnnlab.training.setup import Learner

Weights = dict[str, torch.Tensor]  # a state_dict


@dataclass(frozen=True)
class Position:
    """Where training stands; saved as JSON ("progress") in the resume checkpoint."""

    epoch: int = 0  # completed epochs
    step: int = 0  # steps done in the current, unfinished epoch
    history: list[dict[str, float]] = field(default_factory=list)  # metrics.csv rows
    best_val_accuracy: float = -1.0
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    train_seconds: float = 0.0


def resume_state(
    learner: Learner, position: Position, best: Weights | None, device: torch.device
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON) of a resume checkpoint: model.*, optimizer.*, rng.*, best.* and the position."""
    tensors = {f"model.{k}": v for k, v in learner.model.state_dict().items()}
    optimizer_tensors, optimizer_info = optimizer_to_tensors(learner.optimizer)
    tensors.update(optimizer_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.augment"] = learner.augment_generator.get_state()
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    if best is not None:
        tensors.update({f"best.{k}": v for k, v in best.items()})
    info = {"progress": dataclasses.asdict(position), "optimizer": optimizer_info}
    return tensors, info


def restore(
    learner: Learner, tensors: dict[str, torch.Tensor], info: dict[str, Any], source: str
) -> tuple[Position, Weights | None]:
    """Put weights, optimizer and RNG states back into `learner`; returns the position and best weights."""
    check_resume_state(tensors, info, source)
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    check_state_dict(learner.model.state_dict(), weights, source)
    learner.model.load_state_dict(weights)
    optimizer_from_tensors(learner.optimizer, tensors, info["optimizer"])
    try:
        torch.set_rng_state(tensors["rng.torch"])
        learner.augment_generator.set_state(tensors["rng.augment"])
    except (RuntimeError, TypeError) as error:  # a tensor of another dtype or size
        raise _damaged(
            source, _("its random number generator state is wrong ({error})").format(error=error)
        ) from None
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    best = {k.removeprefix("best."): v for k, v in tensors.items() if k.startswith("best.")} or None
    known = {f.name for f in dataclasses.fields(Position)}
    return Position(**{k: v for k, v in info["progress"].items() if k in known}), best


# The progress numbers a resume reads, each (whole, lowest, highest); absent ones take
# Position's default, as in files written before the field existed.
PROGRESS_BOUNDS = {
    "epoch": (True, 0, MAX_EPOCHS),
    "step": (True, 0, MAX_COUNT),
    "best_epoch": (True, 0, MAX_EPOCHS),
    "epochs_without_improvement": (True, 0, MAX_EPOCHS),
    "best_val_accuracy": (False, -1.0, 1.0),  # -1: no validation accuracy yet
    "train_seconds": (False, 0.0, math.inf),
}


def _damaged(source: str, what: str) -> CheckpointError:
    """The error for a resume checkpoint whose state cannot be right."""
    return CheckpointError(
        _(
            "{source}: {what}; the file is damaged: resume from an intact copy of the run folder, "
            "or train again without --resume"
        ).format(source=source, what=what)
    )


def _is_number(value: Any, whole: bool = False) -> bool:
    """An int (whole) or an int or float, never a bool (JSON's true is not 1 epoch)."""
    return isinstance(value, int if whole else int | float) and not isinstance(value, bool)


def check_resume_state(tensors: dict[str, torch.Tensor], info: Any, source: str) -> None:
    """Refuse a resume checkpoint whose JSON or RNG tensors are missing, mistyped or out of range."""
    if not isinstance(info, dict) or not isinstance(info.get("progress"), dict):
        raise _damaged(source, _("its training progress is missing"))
    if not isinstance(info.get("optimizer"), dict):
        raise _damaged(source, _("its optimizer settings are missing"))
    missing = [name for name in ("rng.torch", "rng.augment") if name not in tensors]
    if missing:
        raise _damaged(source, _("it has no {names} tensor").format(names=", ".join(missing)))
    progress = info["progress"]
    for key, (whole, low, high) in PROGRESS_BOUNDS.items():
        value = progress.get(key, getattr(Position(), key))
        if not (_is_number(value, whole) and low <= value <= high):
            rule = (
                _("progress {key} is {value}, not a whole number from {low} to {high}")
                if whole
                else _("progress {key} is {value}, not a number from {low} to {high}")
            )
            raise _damaged(
                source,
                rule.format(key=key, value=clipped(repr(value)), low=f"{low:g}", high=f"{high:g}"),
            )
    _check_history(progress.get("history", []), source)


def _check_history(rows: Any, source: str) -> None:
    """Each history row (a metrics.csv row) must hold a number in every metrics column."""
    if not isinstance(rows, list) or len(rows) > MAX_EPOCHS:
        raise _damaged(
            source,
            _("its history is not a list of at most {most} epochs").format(most=f"{MAX_EPOCHS:,}"),
        )
    for number, row in enumerate(rows, start=1):
        bad = [c for c in METRIC_COLUMNS if not (isinstance(row, dict) and _is_number(row.get(c)))]
        if bad:
            raise _damaged(
                source,
                _("history row {number} has no number for {columns}").format(
                    number=number, columns=", ".join(bad)
                ),
            )
