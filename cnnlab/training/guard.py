"""The divergence guard: a learning rate too high caught early, and a run that does not learn named.

Three checks, all on numbers the loop already has:
- in the warm-up of a fresh run's first epoch, a step's loss far above the first step's (or
  not finite) means the peak learning rate is too high: the loop starts again at a tenth of it
  (`LrTooHigh`), before any checkpoint exists, and config.toml records the lowered rate, so a
  resumed run stays exact;
- after an epoch, a training loss far above where it started: diverging;
- after the warm-up, a loss still at chance level (the loss of uniform predictions: ln K for K
  classes, more with --balance weight, see `chance_loss`) with an accuracy no better than always
  answering the biggest class: not learning.
Each says so once during training, and again at the end with what to try.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from cnnlab.data.dataset import majority
from cnnlab.errors import CnnlabError
from cnnlab.i18n import _

EXPLOSION_FACTOR = (
    10.0  # a first-epoch warm-up step's loss above this times the first step's: lr too high
)
MAX_LR_CUTS = 2  # the lr is lowered at most twice, to a hundredth
LR_CUT = 10.0
RISE_FACTOR = 3.0  # an epoch's loss above this times where it started: diverging
CHANCE_LOSS_SHARE = 0.95  # a loss above this share of ln K ...
CHANCE_ACCURACY_MARGIN = 0.05  # ... with an accuracy within this of the majority share: chance


class TrainingDiverged(CnnlabError):
    """The loss or the weights stopped being finite numbers."""


class LrTooHigh(Exception):  # noqa: N818 - a signal to the loop, not an error a user sees
    """The loss exploded in the warm-up: the loop starts again at a lower learning rate."""

    def __init__(self, step: int, loss: float, first: float):
        super().__init__(f"loss {loss:.4g} at step {step + 1}, from {first:.4g}")
        self.step, self.loss, self.first = step, loss, first


def advice(lr: float, optimizer: str) -> str:
    """What to try when a run diverges or does not learn."""
    tries = [_("a lower --lr (e.g. {lr})").format(lr=f"{lr / 10:.2g}")]
    if optimizer == "sgd":
        tries.append("--optimizer adamw")
    tries.append(_("--lr auto (a range test picks it)"))
    return _("try {tries}").format(tries=", ".join(tries))


@dataclass
class DivergenceGuard:
    """Watches one run's losses; `warnings` holds what it found, one line per kind."""

    classes: int
    majority_share: float  # of the training labels
    warmup_steps: int
    steps_per_epoch: int
    lr: float  # the peak learning rate
    optimizer: str
    cuts_left: int  # times an explosion may still restart the run lower (0 when resumed)
    chance_loss: float | None = None  # the loss of uniform predictions (`chance_loss`); None: ln K
    first_step_loss: float | None = None
    warnings: dict[str, str] = field(default_factory=dict)

    def restart(self, lr: float) -> None:
        """The run starts again from the seed at `lr`."""
        self.lr, self.cuts_left, self.first_step_loss = lr, self.cuts_left - 1, None

    def exploded(self, global_step: int, loss: float) -> bool:
        """Whether this step's loss shows, early in the warm-up, that the lr is too high."""
        early = global_step < min(self.warmup_steps, self.steps_per_epoch)
        if not (self.cuts_left > 0 and early):
            return False
        if not math.isfinite(loss):
            return True
        if self.first_step_loss is None:
            self.first_step_loss = loss
            return False
        return loss > EXPLOSION_FACTOR * self.first_step_loss

    def after_epoch(self, history: list[dict[str, float]]) -> str | None:
        """A warning line the first time the latest epoch diverges or sits at chance; else None."""
        row, epoch = history[-1], int(history[-1]["epoch"])
        if "rising" not in self.warnings and self._rising(history):
            self.warnings["rising"] = _(
                "the training loss rose to {loss} in epoch {epoch}, more than {factor}x "
                "where it started ({start}): the learning rate {lr} is too high"
            ).format(
                loss=f"{row['train_loss']:.3g}",
                epoch=epoch,
                factor=f"{RISE_FACTOR:g}",
                start=f"{self._start(history):.3g}",
                lr=f"{self.lr:.3g}",
            )
            return self._line("rising")
        # Twice the warm-up: a run may sit at chance a few epochs past it, then learn (measured
        # on a 300-image colour folder: at ln 4 in epoch 7 of 34, 88% in the end).
        waited = epoch * self.steps_per_epoch >= max(
            2 * self.warmup_steps, 2 * self.steps_per_epoch
        )
        said = "chance" in self.warnings or "rising" in self.warnings  # rising: the cause, said
        if not said and waited and self._at_chance(row):
            self.warnings["chance"] = _(
                "the training loss is still {loss} in epoch {epoch}, long after the warm-up: "
                "chance level ({chance}); the model is not learning"
            ).format(loss=f"{row['train_loss']:.3g}", epoch=epoch, chance=self._chance_text())
            return self._line("chance")
        return None

    def _start(self, history: list[dict[str, float]]) -> float:
        """Where the loss started: the first epoch's. (Not ln K: a first epoch far above chance
        is common with SGD at lr 0.1 and recovers, e.g. 7.7 on 500 `shapes`, 82.85% in the end.)"""
        return history[0]["train_loss"]

    def _rising(self, history: list[dict[str, float]]) -> bool:
        return len(history) > 1 and history[-1]["train_loss"] > RISE_FACTOR * self._start(history)

    def _chance(self) -> float:
        return math.log(self.classes) if self.chance_loss is None else self.chance_loss

    def _chance_text(self) -> str:
        """'ln 4 = 1.39', or for a class-weighted loss '1.22 for this class-weighted loss ...'."""
        ln_k = f"ln {self.classes} = {math.log(self.classes):.3g}"
        if math.isclose(self._chance(), math.log(self.classes), rel_tol=1e-3):
            return ln_k
        return _("{loss} for this class-weighted loss, not {ln_k}").format(
            loss=f"{self._chance():.3g}", ln_k=ln_k
        )

    def _at_chance(self, row: dict[str, float]) -> bool:
        return (
            self.classes > 1
            and row["train_loss"] >= CHANCE_LOSS_SHARE * self._chance()
            and row["train_accuracy"] <= self.majority_share + CHANCE_ACCURACY_MARGIN
        )

    def _line(self, kind: str) -> str:
        return _("warning: {warning}").format(
            warning=f"{self.warnings[kind]}; {advice(self.lr, self.optimizer)}"
        )

    def summary(self, history: list[dict[str, float]]) -> list[str]:
        """The end-of-run lines: each problem found that the last epoch still shows, with what to
        try (a run that recovered is not blamed for its past)."""
        if not history:
            return []
        still = {"rising": self._rising(history), "chance": self._at_chance(history[-1])}
        return [self._line(kind) for kind in self.warnings if still[kind]]


def chance_loss(
    labels: torch.Tensor, classes: int, weight: torch.Tensor | None, label_smoothing: float
) -> float:
    """The training loss of uniform predictions on these labels, by the loop's own loss function.

    ln K without class weights. With them (--balance weight) and label smoothing e it is
    ln K * (1 - e + e * mean weight): torch weights each class's share of the smoothed target
    by that class's weight, and the weights N / (K * count) average well above 1 on imbalanced
    data (1.22 for 320/48/48 images and e = 0.1, where ln 3 = 1.10).
    """
    uniform = torch.zeros(len(labels), classes)  # equal logits: every class 1/K
    return F.cross_entropy(
        uniform, labels.cpu().long(), weight=weight, label_smoothing=label_smoothing
    ).item()


def lowered_lr_line(error: LrTooHigh, lr: float, lowered: float) -> str:
    """What the loop says when it starts again at a lower learning rate."""
    return _(
        "the loss exploded early in the warm-up ({error}): the learning rate {lr} is too "
        "high; starting again at {lowered} (recorded in config.toml, so a resumed run keeps it)"
    ).format(error=error, lr=f"{lr:.3g}", lowered=f"{lowered:.3g}")


def accuracy_note(accuracy: float, labels: torch.Tensor, classes: list[str]) -> str:
    """'' or, when `accuracy` is no better than always answering the biggest class, a plain note."""
    name, share = majority(labels, classes)
    # compared in images: a float32 accuracy of 10/100 reads 0.1000000015
    if len(labels) == 0 or round(accuracy * len(labels)) > round(share * len(labels)):
        return ""
    return _(
        " -- no better than always answering '{name}' ({share} of the test images): "
        "the model has not learned"
    ).format(name=name, share=f"{share:.2%}")
