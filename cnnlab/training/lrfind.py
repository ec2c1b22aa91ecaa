"""The learning-rate range test (fastai's lr_find, after Leslie Smith): which peak lr to train at.

About 100 optimizer steps on a fresh copy of the model (the run's own model is built later from
the seed, so it never sees them), the learning rate rising exponentially from START_LR to
END_LR; the loss is smoothed (an exponential moving average, bias-corrected) and the test stops
once it passes STOP_FACTOR times the best so far, or stops being a number. The suggestion is
the lr at the smallest smoothed loss: Leslie Smith's peak for a one-cycle schedule, whose
warm-up makes it safe. fastai's cautious "minimum/10" is reported beside it. (The steepest
descent is not: over a 100-step test the smoothed curve's first points jump by more than its
real fall per step, so it named 4.4e-07 on a curve that fell between 1e-2 and 1; measured over
half a decade it still needed a noise level to tell a fall from a wiggle, which one short test
cannot give.) Measured with the one-cycle default on 500 `shapes` images (2,000 test images):
the lowest-loss rule 72.95% (sgd, 0.0085) and 78.85% (adamw, 0.004); minimum/10 56.80% and
66.40%; the defaults 79.90% (sgd 0.05) and 71.40% (adamw 1e-3).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from cnnlab.data.augment import augment_batch
from cnnlab.i18n import N_, _
from cnnlab.model.inference import normalize
from cnnlab.training import distributed
from cnnlab.training.config import TrainConfig
from cnnlab.training.guard import TrainingDiverged
from cnnlab.training.schedule import set_lr
from cnnlab.training.setup import (
    TrainingData,
    autocast,
    autocast_dtype,
    build_learner,
    load_data,
    pick_device,
    thread_count,
)

if TYPE_CHECKING:
    from cnnlab.data.augment import AugmentPolicy

START_LR = 1e-7
END_LR = 10.0
STEPS = 100
SMOOTHING = 0.98  # the moving average's weight of the past, as fastai
STOP_FACTOR = 4.0  # stop once the smoothed loss is this many times the best so far
SKIP_START = 5  # the first smoothed points still carry the first batches' noise
RULE = N_("lowest loss")


@dataclass(frozen=True)
class RangeTest:
    """The learning rates tried and their smoothed losses, and what they suggest."""

    lrs: list[float]
    losses: list[float]  # smoothed, one per lr
    minimum: float  # the lr at the smallest smoothed loss
    stopped: str  # why the test ended

    @property
    def rule(self) -> str:
        """How the suggestion is picked from the curve."""
        return _(RULE)

    @property
    def suggestion(self) -> float:
        """The peak learning rate to train at (RULE), to 2 significant digits."""
        return float(f"{self.minimum:.2g}")

    def summary(self) -> str:
        """One line: the suggestion, its rule, and the other figures."""
        return _(
            "lr range test: {steps} steps from {start} to {end} ({stopped}); suggestion "
            "{suggestion} ({rule}); cautious {cautious} (minimum/10)"
        ).format(
            steps=len(self.lrs),
            start=f"{self.lrs[0]:.0e}",
            end=f"{self.lrs[-1]:.2g}",
            stopped=self.stopped,
            suggestion=f"{self.suggestion:.2g}",
            rule=self.rule,
            cautious=f"{self.minimum / 10:.2g}",
        )


def _exponential_lr(step: int, steps: int, start: float, end: float) -> float:
    return start * (end / start) ** (step / max(1, steps - 1))


def _batches(images: int, batch_size: int, seed: int):
    """Batch indices for ever, a fresh seeded permutation each pass over the images."""
    generator = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, images)
    while True:
        order = torch.randperm(images, generator=generator)
        for first in range(0, images - batch_size + 1, batch_size):
            yield order[first : first + batch_size]


def range_test(
    config: TrainConfig,
    data: TrainingData,
    policy: AugmentPolicy,
    device: torch.device,
    *,
    start: float = START_LR,
    end: float = END_LR,
    steps: int = STEPS,
) -> RangeTest:
    """Train a fresh copy of the model for `steps` steps at exponentially rising learning rates."""
    learner, _optimizer, _schedule = build_learner(
        dataclasses.replace(config, lr=start), data, device
    )
    learner.augment_generator.manual_seed(config.seed)
    learner.model.train()
    amp_dtype = autocast_dtype(device, config.precision)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    images, labels = data.train
    lrs: list[float] = []
    losses: list[float] = []
    average, best, stopped = 0.0, math.inf, _("ran to the end")
    batches = _batches(len(labels), config.batch_size, config.seed)
    for step in range(steps):
        lr = _exponential_lr(step, steps, start, end)
        set_lr(learner.optimizer, lr)
        batch = next(batches).to(images.device)
        x = augment_batch(images[batch], policy, learner.augment_generator)
        x = normalize(x, data.mean, data.std).contiguous(memory_format=memory_format)
        with autocast(device, amp_dtype):
            logits = learner.model(x)
            loss = F.cross_entropy(
                logits.float(), labels[batch], label_smoothing=config.label_smoothing
            )
        learner.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        learner.optimizer.step()
        value = loss.item()
        if not math.isfinite(value):
            stopped = _("the loss stopped being a number at lr {lr}").format(lr=f"{lr:.2g}")
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * value
        smoothed = average / (1 - SMOOTHING ** (step + 1))
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > STOP_FACTOR * best:
            stopped = _("the loss passed {factor}x its lowest at lr {lr}").format(
                factor=f"{STOP_FACTOR:g}", lr=f"{lr:.2g}"
            )
            break
    return _suggest(lrs, losses, stopped)


def _suggest(lrs: list[float], losses: list[float], stopped: str) -> RangeTest:
    """The minimum of the smoothed curve (its first noisy points left out)."""
    if len(lrs) < SKIP_START + 2:
        raise TrainingDiverged(
            _(
                "the learning-rate range test stopped after {steps} steps ({stopped}); "
                "the loss blew up at once: check the data, or give --lr yourself"
            ).format(steps=len(lrs), stopped=stopped)
        )
    kept = range(SKIP_START, len(lrs))
    lowest = min(kept, key=lambda i: losses[i])
    return RangeTest(lrs, losses, lrs[lowest], stopped)


def find_lr(config: TrainConfig) -> tuple[RangeTest, TrainConfig]:
    """`cnnlab lr-find`: the range test `--lr auto` runs, on the config's data and model sized
    as the run's plan sizes them (so both suggest the same number), and that config."""
    from cnnlab.training.plan import normalised, plan  # plan imports this module lazily

    world = distributed.world_from_env()
    device = pick_device(config.device, world)
    torch.set_num_threads(thread_count(config, world))
    data = load_data(config, device)
    # Every decision of the run's plan but the learning rate (a placeholder here): the range
    # test trains what `--lr auto` would train it on.
    asked = dataclasses.replace(config, lr=1.0, budget="", total_steps=0)
    planned = plan(asked, data)
    test = range_test(planned.config, normalised(planned.config, data), planned.policy, device)
    return test, planned.config
