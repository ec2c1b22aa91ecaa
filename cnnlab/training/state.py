"""Where training stands, and the whole training state as the tensors and JSON of a resume checkpoint.

Everything that makes a step depend on the past is here: the weights, the
optimizer's tensors, both RNG states, the epoch and step. Saved at every epoch
end (and on Ctrl-C), it makes a resumed run bitwise identical to an unbroken one on the CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from cnnlab.run.checkpoint import check_state_dict, optimizer_from_tensors, optimizer_to_tensors
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
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    check_state_dict(learner.model.state_dict(), weights, source)
    learner.model.load_state_dict(weights)
    optimizer_from_tensors(learner.optimizer, tensors, info["optimizer"])
    torch.set_rng_state(tensors["rng.torch"])
    learner.augment_generator.set_state(tensors["rng.augment"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    best = {k.removeprefix("best."): v for k, v in tensors.items() if k.startswith("best.")} or None
    known = {f.name for f in dataclasses.fields(Position)}
    return Position(**{k: v for k, v in info["progress"].items() if k in known}), best
