"""The plan: every value a run uses, decided once from what was asked and what the data is.

`plan(asked, data)` is the one place a run's recipe is decided, in this order:

0. the pixels' normalisation (`normalised`: ImageNet's for a network starting from its weights,
   else the data's own mean and std);
1. the image size a folder was decoded at (config.toml records the size, not "0");
2. the batch and epochs fitted to the number of images (`fit_to_data`), with small data's
   weight decay, colour jitter and mirror TTA, and the augmentation a stretched recipe wants;
3. a batch no larger than the data (`_batch_within_data`);
4. the weight decay (`weight_decay`);
5. the peak learning rate (`learning_rate`): given, found by the range test (lr = auto), or
   the optimizer's default scaled to the batch;
6. with --budget, the optimizer steps that end within it (budget.py measures them);
7. the warm-up (`warmup_steps`).

The result, a frozen `Plan`, holds the config with every one of those values in place (what
config.toml records), the steps and the augmentation, and the lines that say why (the recipe
line). Nothing rewrites it: the divergence guard's lower learning rate and the budget's
re-planned steps are new Plans made by `revised`, through `plan` again; a resumed run reads its
plan back from config.toml (`recorded`).

Torch-free at import: the range test and the budget's timing are imported where they run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnlab.data.source import parse_image_size
from cnnlab.errors import ConfigError
from cnnlab.i18n import _
from cnnlab.training.config import (
    DEFAULT_LRS,
    DEFAULT_WEIGHT_DECAYS,
    LR_AUTO,
    REFERENCE_BATCH,
    TrainConfig,
    recipe_for,
    scaled_lr,
)
from cnnlab.training.freeze import frozen_layers, frozen_text

if TYPE_CHECKING:
    import torch

    from cnnlab.data.augment import AugmentPolicy
    from cnnlab.training.budget import BudgetClock, BudgetPlan
    from cnnlab.training.setup import TrainingData

# The last partial batch of an epoch is dropped only while it is at most this share of the data.
MAX_DROPPED_SHARE = 0.02
# A run needs enough optimizer steps to learn: 300 images at batch 128 give 2 steps an epoch,
# 16 in 8 epochs, and the model stays at chance (measured: 10% on 500 shapes; 15% on 2,000).
# 1,000 steps, not 500: 500 `shapes` (gap model) 89.3 -> 91.2/91.6% (seeds 0/1), the
# reference's step count (docs/performance.md, "Small-data recipe"). Large data sets have more.
MIN_STEPS_PER_EPOCH = 10
MIN_STEPS = 1000
MIN_BATCH = 16
MAX_FITTED_EPOCHS = 300
# Under this many training images sgd's default weight decay is SMALL_DATA_WEIGHT_DECAY, not 5e-4:
# 1,000 steps over a few hundred images overfit. Measured (docs/performance.md, "Small-data
# recipe"): colour-300 54.5 -> 56.0 / 48.5 -> 54.25% (seeds 0/1), 500 `shapes` 91.95 -> 92.83%.
# The same bound as the default model's gap variant (model/presets.py GAP_BELOW_IMAGES).
SMALL_DATA = 5000
SMALL_DATA_WEIGHT_DECAY = 5e-3
# Under SMALL_DATA images, a run whose augmentation mirrors its images (flip_ok data) is scored
# and answered with mirror TTA: tta = true in config.toml, honoured by eval, predict, load, serve
# and exports alike. Measured 2026-11-30 on bench/robustness.py's cells, the same weights without
# -> with (seeds 0 / 1): colour-300-imbalanced 56.00 -> 57.75 / 54.25 -> 54.50%, fashion-mnist-1000
# 84.33 -> 84.93%, shapes-500 92.83 -> 94.30% (seed 0). Multi-crop TTA (mirror + 1-px shifts,
# inference.TTA_MODES) was not taken: colour-300 57.75 / 53.50%, default Fashion-MNIST (4 epochs,
# trained without shifts) 92.71 -> 92.10%.
SMALL_DATA_TTA = True
# Under SMALL_DATA images of colour data the default augmentation ("standard": shifts, and
# mirrors where flip_ok) gains colour jitter (brightness, contrast and saturation x 1 +- 0.2;
# hue kept): a few hundred photos do not show the lighting and colour variation a test set has.
# Measured 2026-11-30 on bench/robustness.py's colour-300-imbalanced (--threads 1, seeds 0/1/2,
# docs/performance.md, "Small-data recipe"): 56.00/52.00/51.50 -> 61.50/57.50/60.00%. Grey data
# and a given augmentation are untouched.
SMALL_COLOUR_AUGMENT = "standard,jitter=0.2"
# The normalisation EfficientNet-Lite's TensorFlow release was trained with, (x - 127) / 128 on
# 0..255 pixels: a run starting from its ImageNet weights feeds them pixels the same way.
IMAGENET_LITE0_MEAN = (127 / 255,) * 3
IMAGENET_LITE0_STD = (128 / 255,) * 3


@dataclass(frozen=True)
class Measure:
    """What planning needs to measure on this machine: where the range test and the budget's
    timed steps run, and what the budget counts from."""

    device: torch.device
    clock: BudgetClock


@dataclass(frozen=True)
class Plan:
    """Every value a run uses; `config` is what config.toml records (no 0 / -1 / auto left)."""

    asked: TrainConfig  # what the user asked: defaults, the preset's recipe, file, flags
    config: TrainConfig  # the asked settings with every value decided
    steps_per_epoch: int  # optimizer steps of a whole epoch (all processes together)
    policy: AugmentPolicy  # the augmentation, parsed for this data
    budget: BudgetPlan | None = None  # this process's measured budget (None: none, a resume)
    lines: tuple[str, ...] = ()  # what planning says: range test, budget, recipe, notes

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run: total_steps, or epochs x steps per epoch."""
        return planned_steps(self.config, self.steps_per_epoch)

    @property
    def last_epoch(self) -> int:
        """Epochs the run starts, the last one maybe partial where total_steps ends it."""
        return math.ceil(self.total_steps / max(1, self.steps_per_epoch))


def steps_per_epoch(images: int, batch_size: int, ranks: int = 1) -> int:
    """Optimizer steps in an epoch: the last partial batch counts when dropping it would waste
    more than MAX_DROPPED_SHARE of the images (and it holds an image for every rank, 2 at least)."""
    full, rest = divmod(images, batch_size)
    keep = rest > MAX_DROPPED_SHARE * images and rest >= max(2, ranks)
    return full + 1 if keep else full


def planned_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of the whole run: total_steps, or epochs x steps per epoch."""
    every = config.epochs * steps_per_epoch
    return min(config.total_steps, every) if config.total_steps else every


def plan(
    asked: TrainConfig, data: TrainingData, ranks: int = 1, measure: Measure | None = None
) -> Plan:
    """The run's plan: `asked` turned into every value the run uses, for `data` on `ranks`
    processes. `measure` runs the range test (lr = auto) and times a budget; without it, both
    must be decided already (a revision)."""
    images, data = len(data.train[0]), normalised(asked, data)
    frozen = _frozen(asked, data)  # refused before the range test or the budget's timing
    config = _with_size_used(asked, data)
    config, policy = _fitted(config, data)
    config, lines = _batch_within_data(config, images, ranks)
    config = dataclasses.replace(config, weight_decay=weight_decay(config))
    lr, line = learning_rate(config, data, policy, measure)
    config = dataclasses.replace(config, lr=lr)
    lines += [line] if line else []
    config, budget_plan, line = _budgeted(config, data, policy, ranks, measure)
    lines += [line] if line else []
    steps = steps_per_epoch(images, config.batch_size, ranks)
    warmup = warmup_steps(config, steps)
    config = dataclasses.replace(
        config,
        warmup_steps=warmup,
        warmup_epochs=round(warmup / max(1, steps), 4),  # for reading; steps win
    )
    lines.append(recipe_line(asked, config, data, policy, steps, frozen))
    lines += _unseen_mirror_note(config, policy)
    lines += _random_freeze_note(config)
    return Plan(asked, config, steps, policy, budget_plan, tuple(lines))


def revised(old: Plan, data: TrainingData, ranks: int = 1, **decided: float | int) -> Plan:
    """`old` with some of its decisions taken otherwise (the guard's lower `lr`, the budget's
    re-planned `total_steps`), planned again from what was asked: nothing is measured again."""
    # the warm-up stays in steps (a re-planned budget run's lr runs on without a jump)
    keep = ("lr", "warmup_steps", "total_steps", "budget_seconds", "e_seconds")
    fixed = {key: getattr(old.config, key) for key in keep}
    again = plan(dataclasses.replace(old.asked, **{**fixed, **decided}), data, ranks)
    return dataclasses.replace(again, asked=old.asked, budget=old.budget)


def recorded(config: TrainConfig, data: TrainingData, ranks: int = 1) -> Plan:
    """The plan a run folder's config.toml records (a resume): nothing decided again."""
    from cnnlab.data.augment import parse_policy  # torch: not at start-up

    steps = steps_per_epoch(len(data.train[0]), config.batch_size, ranks)
    policy = parse_policy(config.augment, flip_ok=data.flip_ok, image_size=data.image_shape[1])
    return Plan(config, config, steps, policy)


# --- the decisions, in plan's order ------------------------------------------------------


def normalised(config: TrainConfig, data: TrainingData) -> TrainingData:
    """`data` with the normalisation the model sees: a network starting from ImageNet weights
    gets the pixels it was trained on ((x - 127) / 128), any other the data's own mean and std."""
    if config.weights != "imagenet":
        return data
    channels = data.image_shape[0]  # grey: one channel (the stem's filters are summed)
    mean, std = IMAGENET_LITE0_MEAN[:channels], IMAGENET_LITE0_STD[:channels]
    return dataclasses.replace(data, mean=mean, std=std)


def _frozen(config: TrainConfig, data: TrainingData) -> list[str]:
    """The layers `freeze` keeps as they start (training/freeze.py), counted on the model this
    data gets; a ConfigError when none would be left to train."""
    if not config.freeze:
        return []
    from cnnlab.model.cnn import model_for_data  # torch: not at start-up
    from cnnlab.spec.analysis import analyze

    shape, classes, images = data.image_shape, len(data.classes), len(data.train[0])
    spec, _notes = model_for_data(config.model, shape, classes, images)
    return frozen_layers(analyze(spec), config.freeze)


def _with_size_used(config: TrainConfig, data: TrainingData) -> TrainConfig:
    """`config` with the image size an image folder was decoded at, for config.toml to record.

    Only for folders left to choose their size ("0"): the chosen size depends on the files, so a
    resume or `cnnlab eval` on a folder that has since changed would otherwise decode at another
    size. Registered data sets keep "0" (their own size; they refuse HxW), and a size the user
    gave is kept as written. The size is the one the folder chose, so decoding is unchanged.
    """
    from cnnlab.data.registry import is_folder  # torch: not at start-up

    if parse_image_size(config.image_size) is not None or not is_folder(config.data):
        return config
    _channels, height, width = data.image_shape
    size = str(height) if height == width else f"{height}x{width}"
    return dataclasses.replace(config, image_size=size)


def _fitted(config: TrainConfig, data: TrainingData) -> tuple[TrainConfig, AugmentPolicy]:
    """`fit_to_data` for this data, and the augmentation the fitted config asks for."""
    from cnnlab.data.augment import parse_policy  # torch: not at start-up

    def policy_of(augment: str) -> AugmentPolicy:
        return parse_policy(augment, flip_ok=data.flip_ok, image_size=data.image_shape[1])

    colour = data.image_shape[0] == 3
    mirrors = policy_of(config.augment).flip
    fitted, _notes = fit_to_data(config, len(data.train[0]), mirrors, data.flip_ok, colour)
    return fitted, policy_of(fitted.augment)


def _small_data_defaults(config: TrainConfig, images: int, colour: bool) -> TrainConfig:
    """Under SMALL_DATA images: sgd's default weight decay raised, colour jitter on colour data."""
    if images >= SMALL_DATA:
        return config
    if config.optimizer == "sgd" and config.weight_decay < 0:
        config = dataclasses.replace(config, weight_decay=SMALL_DATA_WEIGHT_DECAY)
    if colour and config.augment == "standard":
        config = dataclasses.replace(config, augment=SMALL_COLOUR_AUGMENT)
    return config


def fit_to_data(
    config: TrainConfig,
    images: int,
    mirrors: bool = False,
    flip_ok: bool = False,
    colour: bool = False,
) -> tuple[TrainConfig, str | None]:
    """The config sized to `images` training images, and a note saying what changed (or None).

    Halves the batch while an epoch has fewer than MIN_STEPS_PER_EPOCH steps (down to
    MIN_BATCH), then raises the epochs until the run has MIN_STEPS steps; under SMALL_DATA
    images sgd's default weight decay becomes SMALL_DATA_WEIGHT_DECAY, `colour` data's
    "standard" augmentation becomes SMALL_COLOUR_AUGMENT, and a run whose augmentation
    `mirrors` its images (flip_ok data) is scored with mirror TTA (SMALL_DATA_TTA); raised
    epochs bring `augment_when_stretched` in place of `augment` (whether it mirrors follows
    `flip_ok`). Large data sets already have their steps: their runs are unchanged.
    """
    if not config.fit_to_data:
        return config, None
    config = _small_data_defaults(config, images, colour)
    batch = config.batch_size
    while batch // 2 >= MIN_BATCH and steps_per_epoch(images, batch) < MIN_STEPS_PER_EPOCH:
        batch //= 2
    steps = max(1, steps_per_epoch(images, batch))
    epochs = min(MAX_FITTED_EPOCHS, max(config.epochs, math.ceil(MIN_STEPS / steps)))
    if epochs > config.epochs and config.augment_when_stretched:
        from cnnlab.data.augment import parse_policy  # torch: not at start-up (cli/__init__)

        config = dataclasses.replace(config, augment=config.augment_when_stretched)
        mirrors = parse_policy(config.augment, flip_ok=flip_ok).flip
    if images < SMALL_DATA and mirrors and SMALL_DATA_TTA:
        config = dataclasses.replace(config, tta=True)
    if (batch, epochs) == (config.batch_size, config.epochs):
        return config, None
    changed = [f"batch {batch} (not {config.batch_size})"] if batch != config.batch_size else []
    changed += [f"{epochs} epochs (not {config.epochs})"] if epochs != config.epochs else []
    note = (
        f"fitted to {images} training images: {', '.join(changed)} = {steps * epochs} "
        "optimizer steps; give --batch-size or --epochs to choose yourself"
    )
    return dataclasses.replace(config, batch_size=batch, epochs=epochs), note


def _batch_within_data(
    config: TrainConfig, images: int, ranks: int
) -> tuple[TrainConfig, list[str]]:
    """A batch no larger than the data: a bigger one is one batch of every image anyway, and the
    default learning rate, scaled to the batch size, would be scaled for images that are not there."""
    if config.batch_size <= images:
        return config, []
    batch = max(ranks, images - images % ranks)  # whole per-rank shares
    note = _("batch {asked} is more than the {images} training images: batch {batch}").format(
        asked=config.batch_size, images=images, batch=batch
    )
    return dataclasses.replace(config, batch_size=batch), [note]


def weight_decay(config: TrainConfig) -> float:
    """The weight decay: the given one (or small data's, see fit_to_data), else the optimizer's."""
    if config.weight_decay >= 0:
        return config.weight_decay
    return DEFAULT_WEIGHT_DECAYS[config.optimizer]


def learning_rate(
    config: TrainConfig,
    data: TrainingData,
    policy: AugmentPolicy,
    measure: Measure | None,
) -> tuple[float, str | None]:
    """The run's peak learning rate, and the range test's line when one ran: the given lr (also
    the guard's lowered one, see `revised`); lr = auto: the range test's suggestion for the
    fitted config; none given: the optimizer's default scaled to the batch (`scaled_lr`)."""
    if config.lr != LR_AUTO:
        return peak_lr(config), None
    if measure is None:
        raise ConfigError(_("lr = auto needs the range test, which runs only when a run starts"))
    from cnnlab.training.lrfind import range_test  # torch: not at start-up

    test = range_test(config, data, policy, measure.device)
    return test.suggestion, test.summary()


def peak_lr(config: TrainConfig) -> float:
    """A learning rate that needs no measuring: the given one, else the optimizer's default
    scaled to the batch (`scaled_lr`)."""
    assert config.lr != LR_AUTO, "lr = auto is found by the range test (learning_rate)"
    return (
        config.lr if config.lr > 0 else scaled_lr(DEFAULT_LRS[config.optimizer], config.batch_size)
    )


def _budgeted(
    config: TrainConfig,
    data: TrainingData,
    policy: AugmentPolicy,
    ranks: int,
    measure: Measure | None,
) -> tuple[TrainConfig, BudgetPlan | None, str | None]:
    """With a budget not yet planned: the config with the epochs and total_steps that end
    within it (measured last, so the time spent so far counts), the plan and its line. A budget
    already planned (config.toml's total_steps) runs its epochs to total_steps."""
    if not config.budget:
        return config, None, None
    if config.total_steps:
        epochs = math.ceil(
            config.total_steps / steps_per_epoch(len(data.train[0]), config.batch_size, ranks)
        )
        return dataclasses.replace(config, epochs=max(1, epochs)), None, None
    if measure is None:
        raise ConfigError(_("a budget is planned from timed steps, taken only when a run starts"))
    from cnnlab.training.budget import plan_budget  # torch: not at start-up

    budget_plan = plan_budget(config, data, policy, measure.device, measure.clock, ranks)
    planned = dataclasses.replace(
        config,
        epochs=budget_plan.epochs,
        total_steps=budget_plan.total_steps,
        budget_seconds=budget_plan.seconds,
        e_seconds=budget_plan.measured.e,
    )
    return planned, budget_plan, budget_plan.line()


def warmup_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Warm-up length in optimizer steps: warmup_steps, warmup_epochs, or the schedule's default
    (onecycle: a fifth of the run's steps; the others none)."""
    if config.warmup_steps >= 0:
        return config.warmup_steps
    epochs = config.warmup_epochs
    if epochs < 0 and config.total_steps and config.schedule == "onecycle":
        return round(planned_steps(config, steps_per_epoch) / 5)
    if epochs < 0:
        epochs = config.epochs / 5 if config.schedule == "onecycle" else 0.0
    return round(epochs * steps_per_epoch)


# --- what the plan says ------------------------------------------------------------------


def _unseen_mirror_note(chosen: TrainConfig, policy: AugmentPolicy) -> list[str]:
    """A note when tta scores mirrors of images the run never trains on mirrored.

    Measured 2026-11-30, Fashion-MNIST, `default`, augment none, 900 steps, seeds 0 / 1: 92.15 /
    92.30% without tta, 81.67 / 81.75% with (its shoes all point one way)."""
    if not chosen.tta or policy.mirrors:
        return []
    return [
        f"note: tta=true averages each test image with its mirror, but this run's augmentation "
        f"({chosen.augment}) never shows it mirrored images, which can cost many points "
        f"(Fashion-MNIST: 92.2% -> 81.7%); add flip (e.g. --augment standard) or drop tta=true"
    ]


def _random_freeze_note(chosen: TrainConfig) -> list[str]:
    """A warning when freeze keeps layers at their random initialisation (no starting weights):
    almost surely a mistake, as they would never learn anything."""
    if not chosen.freeze or chosen.weights not in ("", "none"):
        return []
    return [
        _(
            "warning: freeze={count} without starting weights: the frozen layers keep their "
            "random initialisation and never learn; give --weights (a run folder, a .safetensors "
            "file, or imagenet for lite0), or drop --freeze"
        ).format(count=chosen.freeze)
    ]


def _lr_reason(asked: TrainConfig, chosen: TrainConfig) -> str:
    """Where the learning rate came from."""
    if asked.lr == LR_AUTO:
        return _("{optimizer}, from the range test").format(optimizer=chosen.optimizer)
    if asked.lr > 0:
        if recipe_for(asked.model, asked.data).get("lr") == asked.lr:
            return _("{optimizer}: {model}'s recipe").format(
                optimizer=chosen.optimizer, model=asked.model
            )
        return _("{optimizer}, given").format(optimizer=chosen.optimizer)
    if chosen.batch_size == REFERENCE_BATCH:
        return _("{optimizer} default").format(optimizer=chosen.optimizer)
    return _(
        "{optimizer}: its default {lr} at batch {reference}, x sqrt({batch}/{reference})"
    ).format(
        optimizer=chosen.optimizer,
        lr=f"{DEFAULT_LRS[chosen.optimizer]:g}",
        reference=REFERENCE_BATCH,
        batch=chosen.batch_size,
    )


def _size_reason(asked: TrainConfig, chosen: TrainConfig) -> str:
    """Why the batch and epochs are what they are."""
    if chosen.total_steps and chosen.budget:
        return ""  # _length says it
    changed = []
    if chosen.batch_size != asked.batch_size:
        changed.append(_("batch from {batch}").format(batch=asked.batch_size))
    if chosen.epochs != asked.epochs:
        changed.append(_("epochs from {epochs}").format(epochs=asked.epochs))
    if changed:
        return _(" (fitted to the data: {changed}; --batch-size, --epochs to choose)").format(
            changed=", ".join(changed)
        )
    return ""


def _decay_reason(asked: TrainConfig, chosen: TrainConfig) -> str:
    """' (small data)' where fit_to_data raised the default weight decay (SMALL_DATA)."""
    return (
        _(" (small data)")
        if asked.weight_decay < 0 and chosen.weight_decay == SMALL_DATA_WEIGHT_DECAY
        else ""
    )


def _augment_reason(asked: TrainConfig, chosen: TrainConfig) -> str:
    """' (colour jitter: small colour data)' where fit_to_data added it (SMALL_COLOUR_AUGMENT)."""
    added = asked.augment != chosen.augment and chosen.augment == SMALL_COLOUR_AUGMENT
    return (
        _(" (colour jitter: small colour data; --augment standard,jitter=0 without)")
        if added
        else ""
    )


def _partial_batch(images: int, batch_size: int, steps: int) -> str:
    rest = images % batch_size
    if not rest:
        return ""
    if steps * batch_size > images:
        return _(", last batch of {count} kept").format(count=rest)
    return _(", last {count} images of each shuffled epoch left out ({share})").format(
        count=rest, share=f"{rest / images:.1%}"
    )


def _length(chosen: TrainConfig, steps: int) -> str:
    """'4 epochs = 1876 steps', or with total_steps '2 epochs = 694 steps (for the budget 1.25E;
    the last epoch partial)'."""
    total = planned_steps(chosen, steps)
    why = (
        [_("for the budget {budget}").format(budget=chosen.budget)]
        if chosen.budget and chosen.total_steps
        else []
    )
    why += [_("the last epoch partial")] if total < steps * chosen.epochs else []
    return _("{epochs} = {steps} steps").format(epochs=epochs_text(chosen.epochs), steps=total) + (
        f" ({'; '.join(why)})" if why else ""
    )


def _momentum(chosen: TrainConfig) -> str:
    """', Nesterov momentum 0.95' where sgd's momentum is not the usual 0.9 (a preset's recipe)."""
    if chosen.optimizer != "sgd" or chosen.momentum == TrainConfig.momentum:
        return ""
    if not chosen.momentum:
        return _(", no momentum")
    return _(", Nesterov momentum {momentum}").format(momentum=f"{chosen.momentum:g}")


def recipe_line(
    asked: TrainConfig,
    chosen: TrainConfig,
    data: TrainingData,
    policy: AugmentPolicy,
    steps: int,
    frozen: list[str] | None = None,
) -> str:
    """'500 images, 10 classes: batch 32, 32 epochs = 512 steps, lr 0.0707 (sgd: ...), ...',
    ending with the `frozen` layers (training/freeze.py) where there are any."""
    images = len(data.train[0])
    channels, height, width = data.image_shape
    colour = (
        _("colour")
        if channels == 3
        else _("grey")
        if channels == 1
        else _("{count} channels").format(count=channels)
    )
    mirrors = _(", mirrors allowed (flip_ok)") if chosen.flip_ok or policy.flip else ""
    mirrors += _(", tta: each test image and its mirror") if chosen.tta else ""
    if chosen.whiten != "none":
        mirrors += _("; first conv: patch whitening ({whiten})").format(whiten=chosen.whiten)
    return _(
        "recipe: {images} images, {classes} classes: batch {batch}, {length}{size_reason}"
        "{partial}; lr {lr} ({lr_reason}){momentum}, {schedule} with {warmup} warm-up steps, "
        "weight decay {decay}{decay_reason}; {size} {colour}; augment {policy}{augment_reason}"
        "{mirrors}"
    ).format(
        images=images,
        classes=len(data.classes),
        batch=chosen.batch_size,
        length=_length(chosen, steps),
        size_reason=_size_reason(asked, chosen),
        partial=_partial_batch(images, chosen.batch_size, steps),
        lr=f"{chosen.lr:.3g}",
        lr_reason=_lr_reason(asked, chosen),
        momentum=_momentum(chosen),
        schedule=chosen.schedule,
        warmup=chosen.warmup_steps,
        decay=f"{chosen.weight_decay:g}",
        decay_reason=_decay_reason(asked, chosen),
        size=f"{height}x{width}",
        colour=colour,
        policy=policy,
        augment_reason=_augment_reason(asked, chosen),
        mirrors=mirrors,
    ) + frozen_text(frozen or [])


def epochs_text(count: int) -> str:
    """'1 epoch', '4 epochs' (text.counted), in the current language."""
    if count == 1:
        return _("{count} epoch").format(count=count)
    return _("{count} epochs").format(count=count)
