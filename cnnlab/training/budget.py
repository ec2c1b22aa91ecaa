"""`--budget`: plan a run's optimizer steps so that the whole process ends within a wall time.

A budget is seconds ("60", "90s") or a multiple of E ("1.25E"), E being the wall seconds of one
epoch of seed 000's tutorial recipe (the `tutorial` preset, Adam 1e-3, batch 128, fp32, fed by a
DataLoader: 60,000 images) on this machine, the unit of issue 15's goals. Before training
(plan.plan, its last decision), on throwaway copies, as lrfind.py's range test trains one:

- the run's own recipe: WARMUP_STEPS steps (oneDNN builds its kernels), then MEASURED_STEPS
  timed ones; their mean without the slowest (`_typical_seconds`), x STEP_SAFETY, is what the
  plan allows a step;
- for an "xE" budget, the tutorial recipe the same way, its steps alternating with the run's
  (both see the same load, so their ratio holds on a busy machine): E = its step x 60,000 / 128;
- the test evaluation: a forward pass over part of the test set, scaled to all of it.

Then `plan_steps` (pure arithmetic): the budget, less the seconds the process has already run,
the test evaluation and writing, and a margin, divided by the seconds per step (each epoch's
checkpoint spread over its steps). config.toml records budget, total_steps, budget_seconds and
e_seconds: `--resume` replays the plan and measures nothing.

Ten timed steps foretell the loop's step to about +-5%, so the run re-plans once, when its
warm-up ends (`Replanner`): the loop's own steps so far give the step's time, and the steps
left are fitted to the seconds left (`replan_steps`); the loop makes the new Plan
(plan.revised). The warm-up's steps are fixed and the one-cycle's decay starts at the peak
whatever its length, so the learning rate runs on without a jump; config.toml is written
again with the new total_steps.

What the budget counts from travels as a `BudgetClock` (the CLI: the process's start;
cnnlab.train(): the call), passed to planning and to the loop; no module state.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from cnnlab.data.augment import AugmentPolicy, augment_batch
from cnnlab.errors import ConfigError
from cnnlab.i18n import _
from cnnlab.model.cnn import CnnModel, model_for_data
from cnnlab.model.inference import logits_in_batches, normalize
from cnnlab.training.config import MAX_COUNT, TrainConfig, parse_budget
from cnnlab.training.init import first_conv
from cnnlab.training.plan import steps_per_epoch
from cnnlab.training.schedule import set_lr
from cnnlab.training.setup import (
    Learner,
    TrainingData,
    autocast,
    autocast_dtype,
    build_learner,
)

WARMUP_STEPS = 2  # untimed: the first steps build oneDNN's kernels for these shapes
MEASURED_STEPS = 10
# What the plan allows a step, over the timed one. Quiet, 2 threads, Fashion-MNIST (2026-11-30):
# the timed step ran 3.5% above the loop's once (23.2 vs 22.4 ms) and left 1.1 s of a 23.6 s
# budget unused; in `make bench` Run 5 three runs planned on it for 23.5 s ended at 24.0, 24.3
# and 23.3 s. An 8% allowance (before) left 2.4-3.4 s of 24 unused when quiet.
STEP_SAFETY = 1.04
# The re-plan at the end of the warm-up (`Replanner`). In `make bench` Run 6 the plan alone left
# 1.0-2.1 s of 23.6 unused (runs of 1.14-1.19 E, 91.83-92.16%). The loop's own mean over the
# warm-up's steps is the run's step; REPLAN_SAFETY covers how the steps still ahead differ from
# them (quiet, 2 threads, Fashion-MNIST, the 150 steps of a 1.25E warm-up against the 600 after:
# 24.4 vs 22.5 ms in one process, 23.4 vs 24.3 in another).
REPLAN_MIN_STEPS = 20  # a shorter warm-up is too few steps to time: the plan stands
REPLAN_UNTIMED = 2  # the loop's first steps, not timed (a first step allocates)
REPLAN_SAFETY = 1.02
MIN_STEPS = 50  # "a few dozen": fewer steps learn next to nothing
E_IMAGES = 60_000  # Fashion-MNIST's training set: E's epoch
E_BATCH = 128
E_SHAPE = (1, 28, 28)
E_CLASSES = 10
TEST_SAMPLE = 500  # test images timed; the estimate scales to the whole test set
TEST_TIMES = 4
WRITE_SECONDS = 0.15  # model.safetensors, model.json, metrics.csv at the end
EPOCH_END_SECONDS = 0.1  # each epoch's checkpoint (resume state, model, metrics)
# The work between planning and the first training step (the run's own model, its whitening),
# the process's exit (the `cnnlab` command skips Python's teardown since cli.entry: 0.01 s, was
# 0.3-0.6 s; a notebook's cnnlab.train() does not exit) and the planner's own error: at least
# MARGIN_SECONDS, or EXIT_SHARE of the start-up spent (both scale with the machine's speed and
# load: 3.6 s of exit after 25 s of start-up at a load of 16, before cli.entry).
MARGIN_SECONDS = 0.4
EXIT_SHARE = 0.15

_imported_at = time.time()  # the fallback for process_seconds where /proc is missing


@dataclass(frozen=True)
class BudgetClock:
    """What a budget counts from: the process's start (`cnnlab train`: start-up, imports and
    data loading count), or the moment cnnlab.train() was called (a notebook's hours do not)."""

    since: float | None = None  # time.time() of the call; None = the process's start

    @classmethod
    def whole_process(cls) -> BudgetClock:
        """`cnnlab train`: the budget is the whole process's wall time, start-up included."""
        return cls(None)

    @classmethod
    def from_now(cls) -> BudgetClock:
        """cnnlab.train(): the budget counts from this call."""
        return cls(time.time())

    def spent(self) -> float:
        """Wall seconds the budget has used so far."""
        return process_seconds() if self.since is None else time.time() - self.since

    def what_ran(self) -> str:
        """What the seconds count: 'the process has' or 'training has'."""
        return "the process has" if self.since is None else "training has"


def process_seconds() -> float:
    """Wall seconds since this process started (Linux: /proc; elsewhere since cnnlab's training
    modules were imported, a little later)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, after the name
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time() - _imported_at


@dataclass(frozen=True)
class Measured:
    """What planning needs, measured on this machine (seconds)."""

    step: float  # one optimizer step of the run's recipe
    spent: float  # the process's wall time so far
    finish: float  # the test evaluation and writing the run at the end
    epoch_end: float = EPOCH_END_SECONDS  # each epoch's checkpoint (and validation)
    e: float = 0.0  # E, for a budget in E (0 = not measured)


@dataclass(frozen=True)
class BudgetPlan:
    """A budget turned into optimizer steps."""

    text: str  # as given, e.g. "1.25E"
    seconds: float  # the budget in seconds
    total_steps: int
    steps_per_epoch: int
    measured: Measured

    @property
    def epochs(self) -> int:
        """Epochs started: the last one maybe partial."""
        return max(1, math.ceil(self.total_steps / self.steps_per_epoch))

    def line(self) -> str:
        """'budget: 1.25E = 18.9 s (E = 15.1 s measured here): 0.9 s spent, ... = 3.3 epochs'."""
        m = self.measured
        e = f" (E = {m.e:.1f} s measured here)" if m.e else ""
        return (
            f"budget: {self.text} = {self.seconds:.1f} s{e}: {m.spent:.1f} s spent, "
            f"{m.finish:.1f} s for test and writing: {self.total_steps:,} steps of "
            f"{m.step * 1000:.1f} ms = {self.total_steps / self.steps_per_epoch:.1f} epochs"
        )


def budget_seconds(text: str, e: float) -> float:
    """The budget in seconds: "90s" -> 90, "1.25E" -> 1.25 x e."""
    parsed = parse_budget(text)
    assert parsed is not None, "no budget"
    amount, unit = parsed
    return amount * e if unit == "E" else amount


def margin_seconds(measured: Measured) -> float:
    """Kept free for the process's exit: MARGIN_SECONDS, more after a slow start-up."""
    return max(MARGIN_SECONDS, EXIT_SHARE * measured.spent)


def plan_steps(seconds: float, measured: Measured, steps_per_epoch: int) -> int:
    """The most optimizer steps that fit in `seconds` of wall time after what is spent and what
    the end needs, each started epoch costing its checkpoint too. May be below MIN_STEPS (or 0)."""
    left = seconds - measured.spent - measured.finish - margin_seconds(measured)
    return min(_steps_fitting(left, measured, steps_per_epoch), MAX_COUNT)


def _steps_fitting(left: float, measured: Measured, per_epoch: int, done: int = 0) -> int:
    """The most steps after `done` whose cost fits in `left` seconds: each step measured.step,
    each epoch end still ahead (the current epoch's included) measured.epoch_end; 0 if none."""
    behind = (done - 1) // per_epoch if done else 0  # epoch ends (checkpoints) already passed

    def cost(more: int) -> float:
        ends = math.ceil((done + more) / per_epoch) - behind
        return more * measured.step + ends * measured.epoch_end

    # A guess within an epoch end or two of the answer, then the exact rule (cost grows with steps).
    per_step = measured.step + measured.epoch_end / per_epoch
    more = max(0, math.floor((left - measured.epoch_end) / per_step))
    while more > 0 and cost(more) > left:
        more -= 1
    while cost(more + 1) <= left:
        more += 1
    return more


def minimum_seconds(measured: Measured) -> float:
    """The least budget (seconds) that plans MIN_STEPS steps, as measured."""
    return (
        measured.spent
        + measured.finish
        + margin_seconds(measured)
        + MIN_STEPS * measured.step
        + measured.epoch_end
    )


def check_enough(plan: BudgetPlan) -> None:
    """A ConfigError naming the least budget when the plan has under MIN_STEPS steps."""
    if plan.total_steps >= MIN_STEPS:
        return
    m = plan.measured
    least = minimum_seconds(m)
    in_e = f" = {math.ceil(100 * least / m.e) / 100:g}E" if m.e else ""
    raise ConfigError(
        _(
            "budget {budget} = {seconds} s is too short: {spent} s are already spent and the test "
            "and writing need {finish} s, which leaves {steps} optimizer steps of {step} ms, "
            "under the {least_steps} a run needs to learn anything; give --budget {least} or more"
        ).format(
            budget=plan.text,
            seconds=f"{plan.seconds:.1f}",
            spent=f"{m.spent:.1f}",
            finish=f"{m.finish:.1f}",
            steps=plan.total_steps,
            step=f"{m.step * 1000:.1f}",
            least_steps=MIN_STEPS,
            least=f"{math.ceil(least)}s{in_e}",
        )
    )


def replan_steps(plan: BudgetPlan, done: int, step: float, spent: float) -> int:
    """The run's total steps re-planned after `done` of them (done >= 1): as many more steps of
    `step` seconds as fit in what is left of the budget after `spent` seconds, each epoch still
    to end costing its checkpoint; at least one more (a run over its time ends at once)."""
    m = dataclasses.replace(plan.measured, step=step)
    left = plan.seconds - spent - m.finish - margin_seconds(m)
    return min(done + max(1, _steps_fitting(left, m, plan.steps_per_epoch, done)), MAX_COUNT)


class Replanner:
    """Re-plans a budget run once, after its warm-up's `at` steps, from the loop's own steps."""

    def __init__(self, plan: BudgetPlan, at: int, clock: BudgetClock) -> None:
        self.plan, self.at, self.clock = plan, at, clock
        self._timed_from: float | None = None  # perf_counter after REPLAN_UNTIMED steps

    def step_done(self, done: int, total_steps: int) -> tuple[int, str] | None:
        """After the run's `done`-th step of `total_steps`: None, or at the re-plan the new
        total_steps and the line that says so."""
        if done == REPLAN_UNTIMED:
            self._timed_from = time.perf_counter()
        if done != self.at or self._timed_from is None:
            return None
        step = (time.perf_counter() - self._timed_from) / (done - REPLAN_UNTIMED) * REPLAN_SAFETY
        new = replan_steps(self.plan, done, step, self.clock.spent())
        line = (
            f"budget: re-planned after {done} steps at {step * 1000:.1f} ms a step (planned "
            f"{self.plan.measured.step * 1000:.1f}): {new:,} steps (was "
            f"{total_steps:,}) = {new / self.plan.steps_per_epoch:.1f} epochs"
        )
        return new, line


def replanner(
    plan: BudgetPlan | None, warmup_steps: int, total_steps: int, clock: BudgetClock
) -> Replanner | None:
    """The re-planner of a budget run this process planned, whose warm-up is long enough to time
    and ends before the run does; None otherwise (no budget, a resume, a short warm-up)."""
    if plan is None or warmup_steps < REPLAN_MIN_STEPS or warmup_steps >= total_steps:
        return None
    return Replanner(plan, warmup_steps, clock)


def plan_budget(
    config: TrainConfig,
    data: TrainingData,
    policy: AugmentPolicy,
    device: torch.device,
    clock: BudgetClock,
    ranks: int = 1,
) -> BudgetPlan:
    """The steps that end `config`'s budget in time, measured here (its `line()` says so); a
    ConfigError when the budget is too short."""
    steps = steps_per_epoch(len(data.train[0]), config.batch_size, ranks)
    unit = parse_budget(config.budget)
    in_e = unit is not None and unit[1] == "E"
    learner, run_step = _run_step(config, data, policy, device)
    # Alternating, the two recipes see the same load: their ratio holds on a busy machine.
    timed = _typical_seconds([run_step, _tutorial_step(device)] if in_e else [run_step])
    # The plan allows STEP_SAFETY x the timed step: 10 steps right after start-up foretell the
    # loop's mean only to about +-5%, and a budget is a promise to end within it.
    step = timed[0] * STEP_SAFETY
    # E and the budget rounded as config.toml records them, so the line says what a resume reads
    e = round(timed[1] * E_IMAGES / E_BATCH, 2) if in_e else 0.0
    finish = time_test(learner.model, config, data, device)
    epoch_end = EPOCH_END_SECONDS + finish_share(data) * finish
    measured = Measured(step, clock.spent(), finish + WRITE_SECONDS, epoch_end, e)
    seconds = round(budget_seconds(config.budget, e), 2)
    plan = BudgetPlan(config.budget, seconds, plan_steps(seconds, measured, steps), steps, measured)
    check_enough(plan)
    return plan


def finish_share(data: TrainingData) -> float:
    """The validation set's size relative to the test set's (its evaluation after each epoch)."""
    return len(data.val[0]) / max(1, len(data.test[0])) if data.val else 0.0


def _typical_seconds(
    steps: list[Callable[[], None]], warmup: int = WARMUP_STEPS, measured: int = MEASURED_STEPS
) -> list[float]:
    """The wall seconds of each of `steps`, called in turn: the mean of `measured` calls but the
    slowest, after `warmup` untimed ones (a mean, as the run pays the machine's ordinary
    slow-downs too; without the slowest, as one stall would weigh on 10 steps what it weighs on
    hundreds)."""
    for _round in range(warmup):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _round in range(measured):
        for step, kept in zip(steps, times, strict=True):
            started = time.perf_counter()
            step()
            kept.append(time.perf_counter() - started)
    return [statistics.fmean(sorted(t)[:-1] if len(t) > 2 else t) for t in times]


def _run_step(
    config: TrainConfig, data: TrainingData, policy: AugmentPolicy, device: torch.device
) -> tuple[Learner, Callable[[], None]]:
    """A throwaway copy of the run's model and one optimizer step of it, as loop._step takes
    one (the run's own model is built later, from the seed).

    The copy skips the whitening's patch statistics (0.7 CPU s on Fashion-MNIST, spent again
    on the run's own model): a filter's values do not change a step's time, only whether the
    first conv trains, so a frozen whitening is a frozen first conv here."""
    learner, _, _ = build_learner(dataclasses.replace(config, whiten="none"), data, device)
    if config.whiten == "frozen":  # no gradient for it: the optimizer skips it, as in the run
        first_conv(learner.model).requires_grad_(False)
    learner.augment_generator.manual_seed(config.seed)
    set_lr(learner.optimizer, 0.1 * config.lr)  # the one-cycle's first lr
    amp_dtype = autocast_dtype(device, config.precision)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    images, labels = data.train
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(config.seed))
    batch_size = min(config.batch_size, len(labels))
    position = [0]

    def step() -> None:
        first = position[0] % max(1, len(labels) - batch_size + 1)
        batch = order[first : first + batch_size].to(images.device)
        position[0] += batch_size
        x = augment_batch(images[batch], policy, learner.augment_generator)
        x = normalize(x, data.mean, data.std).contiguous(memory_format=layout)
        with autocast(device, amp_dtype):
            loss = F.cross_entropy(
                learner.model(x).float(), labels[batch], label_smoothing=config.label_smoothing
            )
        learner.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        learner.optimizer.step()
        loss.item()  # as the loop's check for NaN does each step

    learner.model.train()
    return learner, step


def time_test(
    model: torch.nn.Module, config: TrainConfig, data: TrainingData, device: torch.device
) -> float:
    """Seconds to score the whole test set, from TEST_SAMPLE images scored TEST_TIMES times
    (after one untimed call; one timing alone was 3x off on a busy machine)."""
    images = data.test[0]
    sample = images[: min(TEST_SAMPLE, len(images))]
    if not len(sample):
        return 0.0

    def score() -> None:
        logits_in_batches(
            model,
            sample,
            data.mean,
            data.std,
            device=device,
            channels_last=config.channels_last,
            tta=config.tta,
        )

    with torch.no_grad():
        [seconds] = _typical_seconds([score], warmup=1, measured=TEST_TIMES)
    return seconds * len(images) / len(sample)


def _tutorial_step(device: torch.device) -> Callable[[], None]:
    """One step of seed 000's tutorial recipe (E's: fp32, Adam 1e-3, batch 128, a shuffling
    DataLoader over float images) on random images: a step's time does not depend on the pixels."""
    spec, _notes = model_for_data("tutorial", E_SHAPE, E_CLASSES, E_IMAGES)
    torch.manual_seed(0)  # build_learner seeds again before the run's own model
    model = CnnModel(spec).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    count = E_BATCH * (WARMUP_STEPS + MEASURED_STEPS)
    images = torch.rand((count, *E_SHAPE), generator=generator)
    labels = torch.randint(0, E_CLASSES, (count,), generator=generator)
    batches = iter(DataLoader(TensorDataset(images, labels), batch_size=E_BATCH, shuffle=True))
    model.train()

    def step() -> None:
        x, y = next(batches)
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def wall_line(plan: BudgetPlan | None, clock: BudgetClock) -> str | None:
    """After the test: how the wall time compares with the budget this process planned (None
    without one, or on a resume, whose process is not the one the budget was planned for)."""
    if plan is None:
        return None
    wall, budget = clock.spent(), plan.seconds
    verdict = f"{budget - wall:.1f} s to spare" if wall <= budget else f"{wall - budget:.1f} s over"
    return f"budget {plan.text} = {budget:.1f} s: {clock.what_ran()} run {wall:.1f} s, {verdict}"
