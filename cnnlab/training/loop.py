"""The training loop: in-memory uint8 tensors in, a run folder out.

One flat loop (`_fit`) with small helpers around it. Data never leaves tensors:
each step indexes a batch, augments it as a whole (data/augment.py),
normalises it (inference.normalize) and takes an optimizer step; no per-image
Python, no DataLoader. Everything that makes a step depend on the past (the
weights, optimizer tensors, RNG states, the step count) is saved at every epoch
end, so a resumed run is bitwise identical to an unbroken one on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import Dataset, load_dataset, split_validation
from cnnlab.data.augment import augment_batch, parse_policy
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError
from cnnlab.model.cnn import CnnModel, adapt_to_data
from cnnlab.model.inference import logits_in_batches, loss_and_accuracy, normalize
from cnnlab.model.presets import PRESETS, resolve_model
from cnnlab.run.checkpoint import (
    RESUME_FILE,
    atomic_write_text,
    check_state_dict,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_tensors,
)
from cnnlab.run.folder import (
    CONFIG_FILE,
    LOG_FILE,
    METRICS_FILE,
    RUNS_DIR,
    Run,
    model_meta,
    write_model,
)
from cnnlab.training import distributed
from cnnlab.training.config import TrainConfig, apply, from_layers, load_config
from cnnlab.training.progress import TrainingProgress
from cnnlab.training.schedule import lr_factor, make_optimizer, set_lr

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
# Settings of this invocation only: a resumed run takes them from the request, not the run.
PER_INVOCATION = {"stop_after", "quiet", "threads", "device", "nproc"}
# Settings a resumed run may change when asked; the rest would make it a different run.
RESUMABLE_CHANGES = PER_INVOCATION | {"epochs", "early_stop"}


class TrainingDiverged(CnnlabError):
    """The loss or the weights stopped being finite numbers."""


@dataclass
class Progress:
    """Where training stands; saved as JSON in the resume checkpoint."""

    epoch: int = 0  # completed epochs
    step: int = 0  # steps done in the current, unfinished epoch
    history: list[dict[str, float]] = field(default_factory=list)
    best_val_accuracy: float = -1.0
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    train_seconds: float = 0.0


@dataclass
class Prepared:
    """Everything the loop needs, built once."""

    config: TrainConfig
    folder: Path
    world: distributed.World
    device: torch.device
    model: CnnModel
    optimizer: torch.optim.Optimizer
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    data_name: str
    train: tuple[torch.Tensor, torch.Tensor]  # (N, C, H, W) uint8 and (N,) int64, on the device
    val: tuple[torch.Tensor, torch.Tensor] | None
    test: tuple[torch.Tensor, torch.Tensor]
    policy: Any
    state: Progress
    augment_generator: torch.Generator
    best_weights: dict[str, torch.Tensor] | None
    report: TrainingProgress
    state_extra: dict[str, Any] = field(
        default_factory=dict
    )  # figures for model.json (distributed runs)


EpochCallback = Callable[[dict[str, Any]], None]
StepCallback = Callable[[nn.Module, int], None]


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    on_epoch_end: EpochCallback | None = None,
    on_step_end: StepCallback | None = None,
    **overrides: Any,
) -> Run | None:
    """Train a model and return its run folder, opened (None on ranks other than 0); as `cnnlab train`.

    `cnnlab.train(model="tutorial", data="shapes", epochs=2)`; `resume` continues a
    run folder. `on_epoch_end(row)` gets each epoch's metrics and the live model
    under "model"; `on_step_end(model, global_step)` runs after every optimizer
    step (both only in single-process training).
    """
    # Settings as keywords alone: the defaults, the model preset's recipe, then the keywords.
    config = apply(config, overrides) if config is not None else from_layers(overrides)
    if config.nproc > 1 and not distributed.world_from_env().distributed:
        if not resume and not config.out:  # every process must write to the same, fixed folder
            config = dataclasses.replace(config, out=str(default_folder(config)))
        distributed.spawn(config.to_toml(), config.nproc, str(resume) if resume else None)
        return Run.open(resume or config.out)
    return run_training(config, resume=resume, on_epoch_end=on_epoch_end, on_step_end=on_step_end)


def run_training(
    config: TrainConfig,
    *,
    resume: str | Path | None = None,
    on_epoch_end: EpochCallback | None = None,
    on_step_end: StepCallback | None = None,
) -> Run | None:
    """Train in this process (one rank of a distributed run, or the only one); rank 0 returns the run."""
    world = distributed.world_from_env()
    device = pick_device(config.device, world)
    distributed.init(world, device)
    try:
        prepared = prepare(config, resume, world, device)
        with _graceful_interrupt() as stop_requested:
            outcome = _fit(prepared, stop_requested, on_epoch_end, on_step_end)
        identical = distributed.same_on_all_ranks(prepared.model) if world.distributed else None
        if world.is_main:
            _finish(prepared, outcome, identical)
        distributed.barrier()  # the others wait until rank 0 has written the run
    finally:
        distributed.shutdown()
    # Only rank 0 writes; on other machines of a multi-node run the folder may not exist.
    return Run.open(prepared.folder) if world.is_main else None


# --- preparation ----------------------------------------------------------------


def pick_device(name: str, world: distributed.World) -> torch.device:
    """auto: CUDA, then MPS, then the CPU; a requested device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                "device cuda was asked for, but torch sees no CUDA GPU: use --device auto or cpu"
            )
        return torch.device("cuda", world.local_rank % torch.cuda.device_count())
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "device mps was asked for, but it is not available: use --device auto or cpu"
        )
    return torch.device(name)


def default_threads(world: distributed.World) -> int:
    """The machine's cores shared among the processes on it."""
    return max(1, (os.cpu_count() or 1) // world.local_size)


def prepare(
    config: TrainConfig, resume: str | Path | None, world: distributed.World, device: torch.device
) -> Prepared:
    """Folder, data, model, optimizer and, when resuming, the saved state."""
    torch.set_num_threads(config.threads or default_threads(world))
    saved_tensors, saved_json = None, None
    if resume:
        folder = Path(resume)
        config = _resumed_config(folder, config)
        saved_tensors, saved_json = load_tensors(folder / RESUME_FILE)
        if not saved_json:
            raise CheckpointError(
                f"{folder / RESUME_FILE} holds no training state; it cannot be resumed"
            )
    else:
        folder = Path(config.out) if config.out else default_folder(config)
        if world.is_main:
            _claim_folder(folder)
            atomic_write_text(
                folder / CONFIG_FILE, dataclasses.replace(config, out=str(folder)).to_toml()
            )
    report = TrainingProgress(
        folder / LOG_FILE if world.is_main else None, quiet=config.quiet or not world.is_main
    )

    data = dataset_from_config(config)
    if config.tta and not data.flip_ok:
        raise ConfigError(
            f"{data.name}: tta averages each image with its mirror, but a mirror changes labels in "
            "this data set (a mirrored digit or glyph is another class); drop tta=true"
        )
    (train_x, train_y), val = training_and_validation(data, config)
    if val is not None:
        val = (val[0].to(device), val[1].to(device))
    spec, notes = adapt_to_data(resolve_model(config.model), data.image_shape, len(data.classes))
    torch.manual_seed(config.seed)  # the initial weights depend on the seed only
    model = CnnModel(spec)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    optimizer = make_optimizer(model, config)
    state = Progress()
    augment_generator = torch.Generator(device="cpu")
    best_weights = None
    if saved_tensors is not None:
        state, best_weights = _restore(
            model, optimizer, augment_generator, saved_tensors, saved_json, folder
        )
    if world.is_main and not resume:
        report.say(f"run folder: {folder}")
        report.say(f"model: {spec.text()}")
        for note in notes:
            report.say(f"  adapted: {note}")
        report.say(
            f"data: {data.name}, {len(train_x)} training images"
            + (f", {len(val[0])} validation" if val else "")
            + f", {len(data.test_images)} test, {len(data.classes)} classes"
        )
    elif world.is_main:
        report.say(
            f"resuming {folder} after epoch {state.epoch}"
            + (f", step {state.step}" if state.step else "")
        )
    return Prepared(
        config=config,
        folder=folder,
        world=world,
        device=device,
        model=model,
        optimizer=optimizer,
        classes=list(data.classes),
        mean=tuple(data.mean),
        std=tuple(data.std),
        data_name=data.name,
        train=(train_x.to(device), train_y.to(device)),
        val=val,
        test=(data.test_images, data.test_labels),
        policy=parse_policy(config.augment, data),
        state=state,
        augment_generator=augment_generator,
        best_weights=best_weights,
        report=report,
    )


def dataset_from_config(config: TrainConfig, name: str | None = None) -> Dataset:
    """The data set a config trains on (or `name` loaded with the same options)."""
    return load_dataset(
        name or config.data,
        data_dir=config.data_dir or None,
        image_size=config.image_size or None,
        channels=config.channels or None,
        train_size=config.train_size or None,
        test_size=config.test_size or None,
    )


def training_and_validation(
    data: Dataset, config: TrainConfig
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]:
    """(train images, labels) and, with val_split, the held-out (images, labels): deterministic per seed."""
    if config.val_split <= 0:
        return (data.train_images, data.train_labels), None
    train_x, train_y, val_x, val_y = split_validation(
        data.train_images, data.train_labels, config.val_split, seed=config.seed
    )
    return (train_x, train_y), (val_x, val_y)


def default_folder(config: TrainConfig) -> Path:
    """runs/<model>-<data>-<time>: readable, and new for every run."""
    model = (
        config.model
        if config.model in PRESETS
        else Path(config.model).stem
        if config.model.endswith(".toml")
        else "custom"
    )
    data = re.sub(
        r"[^A-Za-z0-9_-]+", "-", Path(config.data.removeprefix("folder:")).name or config.data
    )
    return RUNS_DIR / f"{model}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"


def _claim_folder(folder: Path) -> None:
    """Refuse to train over another run."""
    if (folder / RESUME_FILE).exists() or (folder / "model.json").exists():
        raise ConfigError(
            f"{folder} already holds a run: continue it with --resume {folder}, or choose another --out"
        )
    folder.mkdir(parents=True, exist_ok=True)


def _resumed_config(folder: Path, requested: TrainConfig) -> TrainConfig:
    """The run's own config with the few changes a resumed run allows."""
    if not (folder / CONFIG_FILE).is_file():
        raise CheckpointError(
            f"{folder} is not a cnnlab run folder (no {CONFIG_FILE}); `cnnlab runs` lists runs"
        )
    saved = load_config(folder / CONFIG_FILE)
    # What the request was built on (the defaults and its preset's recipe): equal means unasked.
    defaults = from_layers({"model": requested.model, "data": requested.data})
    changes = {key: getattr(requested, key) for key in PER_INVOCATION}
    for f in dataclasses.fields(TrainConfig):
        wanted = getattr(requested, f.name)
        if (
            wanted == getattr(defaults, f.name)
            or wanted == getattr(saved, f.name)
            or f.name == "out"
        ):
            continue
        if f.name not in RESUMABLE_CHANGES:
            raise ConfigError(
                f"{f.name} cannot change when resuming (the run was trained with {f.name}={getattr(saved, f.name)!r}); "
                f"start a new run for {f.name}={wanted!r}"
            )
        changes[f.name] = wanted
    return dataclasses.replace(saved, **changes)


def _restore(
    model: CnnModel,
    optimizer: torch.optim.Optimizer,
    augment_generator: torch.Generator,
    tensors: dict[str, torch.Tensor],
    info: dict[str, Any],
    folder: Path,
) -> tuple[Progress, dict[str, torch.Tensor] | None]:
    """Weights, optimizer, RNG states and progress from a resume checkpoint."""
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    check_state_dict(model.state_dict(), weights, str(folder / RESUME_FILE))
    model.load_state_dict(weights)
    optimizer_from_tensors(optimizer, tensors, info["optimizer"])
    torch.set_rng_state(tensors["rng.torch"])
    augment_generator.set_state(tensors["rng.augment"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    best = {k.removeprefix("best."): v for k, v in tensors.items() if k.startswith("best.")} or None
    known = {f.name for f in dataclasses.fields(Progress)}
    return Progress(**{k: v for k, v in info["progress"].items() if k in known}), best


# --- the loop -------------------------------------------------------------------


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


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 convolutions run about twice as fast as fp32 (else oneDNN emulates bf16)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private torch.cpu helpers
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The dtype autocast computes in for `precision` on `device`; None = plain fp32."""
    if precision == "fp32" or device.type not in ("cpu", "cuda"):
        return None
    if device.type == "cuda":
        bf16 = precision == "bf16" or torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float16
    return torch.bfloat16 if precision == "bf16" or cpu_has_native_bf16() else None


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision for the forward pass (weights and optimizer stay fp32); none for dtype None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _fit(
    p: Prepared,
    stop_requested: threading.Event,
    on_epoch_end: EpochCallback | None,
    on_step_end: StepCallback | None,
) -> str:
    """Train until the last epoch, an early stop, a pause or Ctrl-C; returns which."""
    config, state, world = p.config, p.state, p.world
    train_x, train_y = p.train
    steps_per_epoch = len(train_x) // config.batch_size  # the last partial batch is dropped
    if steps_per_epoch == 0:
        raise ConfigError(
            f"batch_size {config.batch_size} is larger than the {len(train_x)} training images: use a smaller one"
        )
    model = p.model
    net = nn.parallel.DistributedDataParallel(model) if world.distributed else model
    peak_lr = config.resolved_lr()
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    amp_dtype = autocast_dtype(p.device, config.precision)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None  # fp16 only
    check_every = 1 if p.device.type == "cpu" else 25  # .item() syncs a GPU; a CPU pays nothing
    per_rank = config.batch_size // world.size

    for epoch in range(state.epoch, config.epochs):
        order = torch.randperm(
            len(train_x), generator=torch.Generator().manual_seed(_epoch_seed(config.seed, epoch))
        )
        order = order.to(p.device)
        if state.step == 0:  # a fresh epoch; a resumed one continues the restored generator
            p.augment_generator.manual_seed(_epoch_seed(config.seed, epoch) * 31 + world.rank)
        p.report.start_epoch(epoch + 1, config.epochs, steps_per_epoch, state.step)
        model.train()
        loss_sum = torch.zeros((), device=p.device)
        correct = torch.zeros((), device=p.device, dtype=torch.long)
        seen = 0
        started = time.perf_counter()
        for step in range(state.step, steps_per_epoch):
            global_step = epoch * steps_per_epoch + step
            set_lr(p.optimizer, peak_lr * lr_factor(config, global_step, steps_per_epoch))
            batch = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = batch[world.rank * per_rank : (world.rank + 1) * per_rank]
            images = augment_batch(train_x[batch], p.policy, p.augment_generator)
            labels = train_y[batch]
            x = normalize(images, p.mean, p.std).contiguous(memory_format=memory_format)
            with _autocast(p.device, amp_dtype):
                logits = net(x)
                loss = F.cross_entropy(
                    logits.float(), labels, label_smoothing=config.label_smoothing
                )
            p.optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(p.optimizer)
                scaler.update()
            else:
                loss.backward()
                p.optimizer.step()
            loss_sum += loss.detach() * len(labels)
            correct += (logits.detach().argmax(1) == labels).sum()
            seen += len(labels)
            if on_step_end is not None:
                on_step_end(model, global_step)
            if (step + 1) % check_every == 0 or step + 1 == steps_per_epoch:
                flags = torch.tensor(
                    [float(stop_requested.is_set()), float(not math.isfinite(loss.item()))],
                    device=p.device,
                )
                stop_flag, nonfinite = distributed.any_rank(flags).tolist()
                if nonfinite:
                    raise _diverged(p, epoch, step, loss.item())
                elapsed = time.perf_counter() - started
                p.report.step(
                    step + 1,
                    loss.item(),
                    (correct.item() / seen),
                    seen * world.size / max(elapsed, 1e-9),
                )
                if stop_flag:
                    state.step = step + 1
                    state.train_seconds += time.perf_counter() - started
                    p.report.end_epoch(
                        f"interrupted in epoch {epoch + 1} after step {step + 1}/{steps_per_epoch}"
                    )
                    _save_resume(p)
                    return "interrupted"
        seconds = time.perf_counter() - started
        state.train_seconds += seconds
        state.step = 0
        state.epoch = epoch + 1
        distributed.average_buffers(model)
        row = _epoch_row(p, epoch + 1, loss_sum, correct, seen, seconds)
        state.history.append(row)
        improved = _track_best(p, row)
        p.report.end_epoch(_epoch_line(row, config.epochs))
        if world.is_main:
            _save_epoch(p, improved)
        if on_epoch_end is not None:
            on_epoch_end({**row, "model": model})
        if (
            config.early_stop
            and p.val is not None
            and state.epochs_without_improvement >= config.early_stop
        ):
            p.report.say(
                f"early stop: no better validation accuracy for {config.early_stop} epochs"
            )
            return "early-stop"
        if config.stop_after and state.epoch >= config.stop_after and state.epoch < config.epochs:
            return "paused"
    return "completed"


def _diverged(p: Prepared, epoch: int, step: int, loss: float) -> TrainingDiverged:
    lr = p.optimizer.param_groups[0]["lr"]
    kept = (
        f"the checkpoint of epoch {p.state.epoch} is kept" if p.state.epoch else "nothing was saved"
    )
    return TrainingDiverged(
        f"the loss became {loss} in epoch {epoch + 1}, step {step + 1} (learning rate {lr:.3g}); "
        f"training stopped and no weights with NaN or inf were written ({kept}). "
        "fix: lower --lr, use --optimizer adam, add batchnorm, or check the data for extreme values"
    )


def _scored(p: Prepared, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(mean loss, accuracy) of the model on uint8 images, run as the config says (tta included)."""
    logits = logits_in_batches(
        p.model,
        images,
        p.mean,
        p.std,
        device=p.device,
        channels_last=p.config.channels_last,
        tta=p.config.tta,
    )
    return loss_and_accuracy(logits, labels.cpu())


def _epoch_row(
    p: Prepared,
    epoch: int,
    loss_sum: torch.Tensor,
    correct: torch.Tensor,
    seen: int,
    seconds: float,
) -> dict[str, float]:
    """One line of metrics.csv; training figures are summed over ranks."""
    totals = torch.stack(
        [loss_sum.float(), correct.float(), torch.tensor(float(seen), device=p.device)]
    )
    if p.world.distributed:
        torch.distributed.all_reduce(totals)
    loss_total, correct_total, seen_total = totals.tolist()
    val_loss = val_accuracy = float("nan")
    if p.val is not None:
        val_loss, val_accuracy = _scored(p, *p.val)
    return {
        "epoch": epoch,
        "train_loss": loss_total / max(seen_total, 1),
        "train_accuracy": correct_total / max(seen_total, 1),
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
        "lr": p.optimizer.param_groups[0]["lr"],
        "seconds": seconds,
        "images_per_s": seen_total / max(seconds, 1e-9),
    }


def _epoch_line(row: dict[str, float], epochs: int) -> str:
    line = f"epoch {int(row['epoch'])}/{epochs}  loss {row['train_loss']:.4f}  acc {row['train_accuracy']:.2%}"
    if not math.isnan(row["val_accuracy"]):
        line += f"  val loss {row['val_loss']:.4f}  val acc {row['val_accuracy']:.2%}"
    return line + f"  lr {row['lr']:.3g}  {row['seconds']:.1f}s  {row['images_per_s']:,.0f} img/s"


def _track_best(p: Prepared, row: dict[str, float]) -> bool:
    """With a validation set, remember the best weights; returns whether this epoch is the best so far."""
    state = p.state
    if p.val is None:
        return True
    if row["val_accuracy"] > state.best_val_accuracy:
        state.best_val_accuracy = row["val_accuracy"]
        state.best_epoch = int(row["epoch"])
        state.epochs_without_improvement = 0
        p.best_weights = {k: v.detach().clone() for k, v in p.model.state_dict().items()}
        return True
    state.epochs_without_improvement += 1
    return False


def _check_finite(p: Prepared) -> None:
    for name, tensor in p.model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TrainingDiverged(
                f"weight {name} holds NaN or inf after epoch {p.state.epoch}; nothing was written. "
                "fix: lower --lr or add batchnorm"
            )


def _save_resume(p: Prepared) -> None:
    """The whole training state in one atomic file."""
    if not p.world.is_main:
        return
    _check_finite(p)
    tensors = {f"model.{k}": v for k, v in p.model.state_dict().items()}
    optimizer_tensors, optimizer_info = optimizer_to_tensors(p.optimizer)
    tensors.update(optimizer_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.augment"] = p.augment_generator.get_state()
    if p.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(p.device)
    if p.best_weights is not None:
        tensors.update({f"best.{k}": v for k, v in p.best_weights.items()})
    info = {"progress": dataclasses.asdict(p.state), "optimizer": optimizer_info}
    save_tensors(p.folder / RESUME_FILE, tensors, info)


def _save_epoch(p: Prepared, improved: bool) -> None:
    """Resume state, then the model (the best so far with a validation set), then metrics.csv."""
    _save_resume(p)
    if improved:
        metrics = _model_metrics(p)
        write_model(
            p.folder, p.model, model_meta(p.model, p.classes, p.mean, p.std, p.data_name, metrics)
        )
    _write_metrics_csv(p)


def _model_metrics(p: Prepared, **extra: Any) -> dict[str, Any]:
    state = p.state
    metrics = {
        "epochs": state.epoch,
        "train_seconds": round(state.train_seconds, 3),
        "augment": p.config.augment,
        "precision": str(
            autocast_dtype(p.device, p.config.precision) or torch.float32
        ).removeprefix("torch."),
    }
    if state.history:
        metrics["train_accuracy"] = state.history[-1]["train_accuracy"]
    if p.val is not None:
        metrics["best_val_accuracy"] = state.best_val_accuracy
        metrics["best_epoch"] = state.best_epoch
    metrics.update(p.state_extra)
    metrics.update(extra)
    return metrics


def _write_metrics_csv(p: Prepared) -> None:
    lines = [",".join(METRIC_COLUMNS)]
    for row in p.state.history:
        lines.append(
            ",".join("" if math.isnan(row[c]) else f"{row[c]:.6g}" for c in METRIC_COLUMNS)
        )
    atomic_write_text(p.folder / METRICS_FILE, "\n".join(lines) + "\n")


def _finish(p: Prepared, outcome: str, ranks_identical: bool | None) -> None:
    """Test the final model and write it with its score, or tell how to resume."""
    folder = p.folder
    if ranks_identical is not None:
        p.state_extra = {"ranks_identical": ranks_identical, "processes": p.world.size}
        if not ranks_identical:
            p.report.say(
                "warning: the processes ended with different weights; rank 0's are saved",
                always=True,
            )
    if outcome in ("interrupted", "paused"):
        metrics = _model_metrics(p, stopped=outcome)
        write_model(
            folder, p.model, model_meta(p.model, p.classes, p.mean, p.std, p.data_name, metrics)
        )
        p.report.say(
            f"{outcome}: the run is saved; continue with: cnnlab train --resume {folder}",
            always=True,
        )
        return
    if p.best_weights is not None:
        p.model.load_state_dict(p.best_weights)
    started = time.perf_counter()
    test_loss, test_accuracy = _scored(p, *p.test)
    metrics = _model_metrics(
        p,
        stopped=outcome,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        test_images=len(p.test[1]),
        test_seconds=round(time.perf_counter() - started, 3),
    )
    write_model(
        folder, p.model, model_meta(p.model, p.classes, p.mean, p.std, p.data_name, metrics)
    )
    correct = round(test_accuracy * len(p.test[1]))
    p.report.say(
        f"test accuracy: {test_accuracy:.2%} ({correct}/{len(p.test[1])}) after {p.state.epoch} epochs, "
        f"{p.state.train_seconds:.1f}s of training; run folder: {folder}",
        always=True,
    )
