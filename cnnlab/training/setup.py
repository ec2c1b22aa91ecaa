"""Everything training needs before its first step, built once and returned as explicit objects.

The device and the precision it computes in, CPU threads, the run folder (new,
or resumed with the few changes a resume allows), the data with the run's
train/validation split, and the model with its optimizer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.augment import parse_policy
from cnnlab.data.folder import folder_notes
from cnnlab.data.source import DataSource, check_splits, load_source, training_splits
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.i18n import _
from cnnlab.model.cnn import CnnModel, model_for_data
from cnnlab.model.presets import PRESETS
from cnnlab.run import RUNS_DIR
from cnnlab.run.checkpoint import load_tensors
from cnnlab.run.files import CONFIG_FILE, RESUME_FILE
from cnnlab.run.record import Pixels, RunRecord
from cnnlab.run.writer import (
    FolderLock,
    claim_folder,
    lock_folder,
    remove_stale_temporaries,
    write_config,
    write_record,
)
from cnnlab.spec.language import ModelSpec
from cnnlab.training import distributed
from cnnlab.training.config import (
    LR_AUTO,
    NOT_SETTINGS,
    TrainConfig,
    load_config,
    resolve_config,
    usable_cores,
)
from cnnlab.training.freeze import freeze_layers
from cnnlab.training.init import dirac_init, whiten_first_conv
from cnnlab.training.pretrained import load_start, starting_weights
from cnnlab.training.schedule import make_optimizer

# Settings of this invocation only: a resumed run takes them from the request, not the run.
PER_INVOCATION = {"stop_after", "quiet", "threads", "device", "nproc", "force_nproc"}
# Settings a resumed run may change when asked; the rest would make it a different run.
RESUMABLE_CHANGES = PER_INVOCATION | {"epochs", "early_stop"}

Pair = tuple[torch.Tensor, torch.Tensor]  # (N, C, H, W) uint8 images and (N,) int64 labels


@dataclass(frozen=True)
class OpenedRun:
    """The run folder training writes to, the settings it trains with, and a resume's saved state."""

    config: TrainConfig  # when resuming: the run's own settings with the allowed changes
    folder: Path
    saved: tuple[dict[str, torch.Tensor], dict[str, Any]] | None  # resume tensors and JSON
    lock: FolderLock | None = None  # held by rank 0 until training ends (release() it)


@dataclass(frozen=True)
class TrainingData:
    """The data a run trains, validates and tests on, as whole tensors."""

    name: str
    classes: list[str]
    image_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]  # per channel, of images scaled to 0..1
    std: tuple[float, ...]
    train: Pair  # on the training device
    val: Pair | None  # on the training device; None without val_split
    test: Pair  # on the CPU: scored in batches at the end
    class_counts: tuple[int, ...] = ()  # training images per class (after the validation split)
    flip_ok: bool = False  # a mirror keeps every label (the data set's word, or the user's)


@dataclass(frozen=True)
class Learner:
    """What training changes in place: the model, its optimizer, the augmentation RNG."""

    model: CnnModel
    optimizer: torch.optim.Optimizer
    augment_generator: torch.Generator


# --- device and precision ------------------------------------------------------------


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
                _("device cuda was asked for, but torch sees no CUDA GPU: use --device auto or cpu")
            )
        return torch.device("cuda", world.local_rank % torch.cuda.device_count())
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            _("device mps was asked for, but it is not available: use --device auto or cpu")
        )
    return torch.device(name)


def default_threads(world: distributed.World) -> int:
    """The machine's cores shared among the processes on it."""
    return max(1, (os.cpu_count() or 1) // world.local_size)


def thread_count(config: TrainConfig, world: distributed.World) -> int:
    """config.threads, at most this machine's cores (more crash torch's thread pool); 0 = share."""
    cores = usable_cores()
    if config.threads > cores:
        note = _("note: threads={threads} is more than this machine's {cores} cores; using {cores}")
        print(note.format(threads=config.threads, cores=cores), file=sys.stderr)
        return cores
    return config.threads or default_threads(world)


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


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision for the forward pass (weights and optimizer stay fp32); none for dtype None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# --- the run folder ------------------------------------------------------------------


def open_run(
    config: TrainConfig,
    resume: str | Path | None,
    world: distributed.World,
    record: RunRecord | None = None,
) -> OpenedRun:
    """A resumed run with its saved state, or a new folder claimed and its config.toml (the
    plan's config) and record.json (the run record) written.

    Rank 0 locks the folder (the lock is in the result) so that no second process writes it.
    """
    if resume:
        return _open_resumed(Path(resume), config, world)
    folder = Path(config.out) if config.out else default_folder(config)
    if not world.is_main:
        return OpenedRun(config, folder, None)
    lock = claim_folder(folder)
    try:
        write_config(folder, dataclasses.replace(config, out=str(folder)).to_toml())
        if record is not None:
            write_record(folder, record)
    except BaseException:
        lock.release()
        raise
    return OpenedRun(config, folder, None, lock)


def _open_resumed(folder: Path, config: TrainConfig, world: distributed.World) -> OpenedRun:
    """The run in `folder` with its settings and saved state, locked on rank 0."""
    lock = lock_folder(folder) if world.is_main and folder.is_dir() else None
    try:
        if lock is not None:
            remove_stale_temporaries(folder)
        config = resumed_config(folder, config)
        tensors, info = load_tensors(folder / RESUME_FILE)
        if not info:
            raise CheckpointError(
                _("{path} holds no training state; it cannot be resumed").format(
                    path=folder / RESUME_FILE
                )
            )
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return OpenedRun(config, folder, (tensors, info), lock)


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


def resumed_config(folder: Path, requested: TrainConfig) -> TrainConfig:
    """The run's own config with the few changes a resumed run allows."""
    if not (folder / CONFIG_FILE).is_file():
        raise CheckpointError(
            _("{folder} is not a cnnlab run folder (no {file}); `cnnlab runs` lists runs").format(
                folder=folder, file=CONFIG_FILE
            )
        )
    saved = load_config(folder / CONFIG_FILE)
    # What the request was built on (the defaults and its preset's recipe): equal means unasked,
    # unless the user gave the key (`--epochs 8` where 8 is the default still asks for 8).
    defaults = resolve_config({"model": requested.model, "data": requested.data})
    changes = {key: getattr(requested, key) for key in PER_INVOCATION}
    for f in dataclasses.fields(TrainConfig):
        wanted = getattr(requested, f.name)
        if (
            f.name in NOT_SETTINGS
            or (f.name not in requested.asked and wanted == getattr(defaults, f.name))
            or wanted == getattr(saved, f.name)
            or f.name == "out"
        ):
            continue
        if f.name not in RESUMABLE_CHANGES:
            wanted = "auto" if f.name == "lr" and wanted == LR_AUTO else wanted
            raise ConfigError(
                _(
                    "{key} cannot change when resuming (the run was trained with {key}={saved}); "
                    "start a new run for {key}={wanted}"
                ).format(key=f.name, saved=repr(getattr(saved, f.name)), wanted=repr(wanted))
            )
        changes[f.name] = wanted
    return dataclasses.replace(saved, **changes)


# --- data and model ------------------------------------------------------------------


def source_of(config: TrainConfig) -> DataSource:
    """Where a config's data comes from and how it is split: what the run record keeps."""
    return DataSource(
        name=config.data,
        data_dir=config.data_dir,
        image_size=config.image_size,
        channels=config.channels,
        keep_aspect=config.keep_aspect,
        train_size=config.train_size,
        test_size=config.test_size,
        skip_bad=config.skip_bad,
        val_split=config.val_split,
        split_seed=config.seed,
    )


def run_record(config: TrainConfig, data: TrainingData) -> RunRecord:
    """The run record of a planned config: how pixels become the input, where the data came from."""
    pixels = Pixels(data.image_shape, config.keep_aspect, data.mean, data.std, config.tta)
    sizes = {"train": len(data.train[0]), "test": len(data.test[0])}
    if data.val is not None:
        sizes["val"] = len(data.val[0])
    return RunRecord(pixels, source_of(config), sizes)


def load_data(config: TrainConfig, device: torch.device) -> TrainingData:
    """The config's data set, split as the run splits it, the training part on `device`."""
    source = source_of(config)
    data = load_source(source)
    for message in data.skipped:  # skip_bad: say what was left out
        print(_("skipped: {message}").format(message=message), file=sys.stderr)
    for message in folder_notes(data):  # e.g. images much larger than the size chosen
        print(_("note: {message}").format(message=message), file=sys.stderr)
    flip_ok = data.flip_ok or config.flip_ok  # the data set's own, or the user's word for it
    if config.tta and not flip_ok:
        raise ConfigError(
            _(
                "{data}: tta averages each image with its mirror, but a mirror changes labels in "
                "this data set (a mirrored digit or glyph is another class); drop tta=true, or, "
                "if a mirror keeps every label in your data, add --flip-ok"
            ).format(data=data.name)
        )
    parse_policy(config.augment, data, flip_ok=flip_ok)  # refused here, before any training
    train, val = training_splits(data, source)
    check_splits(data, source, train, val)  # refused now: no run folder claimed, nothing trained
    train_x, train_y, _paths = train
    counts = torch.bincount(train_y, minlength=len(data.classes))
    return TrainingData(
        name=data.name,
        classes=list(data.classes),
        image_shape=tuple(data.image_shape),
        mean=tuple(data.mean),
        std=tuple(data.std),
        train=(train_x.to(device), train_y.to(device)),
        val=(val[0].to(device), val[1].to(device)) if val is not None else None,
        test=(data.test_images, data.test_labels),
        class_counts=tuple(counts.tolist()),
        flip_ok=flip_ok,
    )


def build_learner(
    config: TrainConfig, data: TrainingData, device: torch.device, resuming: bool = False
) -> tuple[Learner, ModelSpec, list[str]]:
    """The model (its spec fitted to the data, with notes on what was adapted) and its
    optimizer; it starts from `config.weights` unless `resuming` (the checkpoint replaces them,
    and the run they came from may be gone), its first `config.freeze` layers with weights
    frozen (training/freeze.py)."""
    images = len(data.train[0])  # small data takes the preset's small-data variant
    spec, notes = model_for_data(config.model, data.image_shape, len(data.classes), images)
    torch.manual_seed(config.seed)  # the initial weights depend on the seed only
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = CnnModel(spec)
    start = None if resuming else starting_weights(config.weights)
    if start is not None:  # before moving: the tensors are on the CPU
        notes += load_start(model, *start)
    model = model.to(device, memory_format=memory_format)
    initialise(model, config, data)
    freeze_layers(model, config.freeze)  # before the optimizer: it leaves frozen weights out
    learner = Learner(model, make_optimizer(model, config), torch.Generator(device="cpu"))
    return learner, spec, notes


def initialise(model: CnnModel, config: TrainConfig, data: TrainingData) -> None:
    """The opt-in initialisations of training/init.py, before the optimizer sees the model.

    Deterministic in the seed and the training images: a resumed run computes the same
    starting weights (and frozen flags) and then loads its checkpoint over them.
    """
    if config.whiten != "none":
        whiten_first_conv(
            model, data.train[0], data.mean, data.std, frozen=config.whiten == "frozen"
        )
    if config.dirac:
        dirac_init(model)
