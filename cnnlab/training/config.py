"""The training configuration: one flat dataclass with every default, then a TOML file, then key=value.

Precedence (later wins): the defaults below, the recipe of the chosen model preset
(`Preset.recipe` in models.py, e.g. `best`), `--config FILE.toml`, command-line flags,
`key=value` overrides. Unknown keys are errors that suggest the near name.

This is what the user asks for; 0, -1 and "auto" here mean "decide for me". plan.py decides:
`plan(config, data)` turns the asked settings into every value the run uses, and config.toml
records those.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.data.source import KEEP_ASPECTS, parse_image_size
from cnnlab.errors import ConfigError
from cnnlab.fileio import NotToml, read_toml
from cnnlab.i18n import N_, _
from cnnlab.text import clipped

if TYPE_CHECKING:
    from cnnlab.run.folder import Run

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "constant")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
BALANCES = ("none", "weight", "sample")
WHITENINGS = ("none", "frozen", "trainable")  # the first conv's whitening (training/init.py)

LR_AUTO = -1.0  # lr = "auto": found by the learning-rate range test before training (lrfind.py)
# The highest learning rate a user may give: the range test (lrfind.py END_LR) looks no further,
# every model here diverges long before it, and far above it the schedule's arithmetic overflows.
MAX_LR = 10.0
# "Decide for me" inside TrainConfig: the stand-in value of each key a user may write as `auto`
# (lr's auto is the range test; its default is asked by leaving lr out, the stand-in 0). A user
# never types a stand-in: `_convert` refuses them (USER_RANGES) and `to_toml` writes `auto`.
AUTO_VALUES: dict[str, float | int] = {
    "lr": LR_AUTO,
    "weight_decay": -1.0,
    "warmup_epochs": -1.0,
    "warmup_steps": -1,
}
# The default learning rates below were tuned at this batch size; other batches scale them by
# sqrt(batch / REFERENCE_BATCH). Measured (sgd, one seed, flatten model, before the small-data
# recipe): a 300-image colour folder at batch 16, 76.67% unscaled (0.1), 88.33% sqrt (0.035);
# 500 `shapes` at batch 32, 82.20% unscaled, 79.90% sqrt, 77.80% linear (0.025). Batch 128
# (full `shapes`, Fashion-MNIST) is unchanged.
REFERENCE_BATCH = 128
DEFAULT_LRS = {"sgd": 0.1, "adam": 1e-3, "adamw": 2e-3}
# Each optimizer's weight decay when none is given (plan.py: sgd's is higher on small data).
DEFAULT_WEIGHT_DECAYS = {"sgd": 5e-4, "adam": 0.0, "adamw": 0.05}


@dataclass
class TrainConfig:
    """Everything a training run needs; saved as config.toml in the run folder."""

    # what to train on
    # preset, TOML file or one-line spec; not given: lite0 for a folder of colour images when
    # its ImageNet weights are installed, else default (`chosen_model`)
    model: str = "default"
    data: str = "shapes"  # registered data set, folder:PATH or a folder path
    data_dir: str = ""  # where to look for data set files first ("" = the usual places)
    train_size: int = 0  # shapes only: generated training images (0 = the data set's default)
    test_size: int = 0  # shapes only: generated test images (0 = default)
    # folders: resize to N (a square) or HxW pixels; "0" = the data set's default (folders: 28
    # for grayscale; colour 32, from 1000 training images on their median side within 32..48)
    image_size: str = "0"
    keep_aspect: str = "stretch"  # folders: stretch, pad (letterbox) or crop (centre) to image_size
    channels: int = 0  # folders: 1 or 3 (0 = decide from the data)
    skip_bad: bool = False  # folders: leave out files that are not usable images (listed)
    # a mirror keeps every label: allows flip/vflip/tta (registered data sets know; folders can
    # also say so in their cnnlab.toml)
    flip_ok: bool = False
    val_split: float = 0.0  # fraction of the training set held out for validation

    # the recipe
    epochs: int = 8
    # a wall-time budget for the whole process instead of epochs: "60" or "90s" (seconds), or
    # "1.25E" (E = one epoch of the seed-000 tutorial recipe, measured here); budget.py measures
    # the first steps and plans total_steps to end within it ("" = off)
    budget: str = ""
    # stop after this many optimizer steps, the last epoch maybe partial; the schedule ends there
    # (0 = epochs x steps per epoch); --budget plans it and config.toml records it
    total_steps: int = 0
    budget_seconds: float = 0.0  # the budget in seconds on this machine, as planned (E resolved)
    e_seconds: float = 0.0  # E as measured for an "xE" budget (0 = not measured)
    batch_size: int = 128  # total over all processes
    # small data: lower batch_size and raise epochs until the run has enough optimizer steps
    # (see fit_to_data); off as soon as epochs or batch_size is given
    fit_to_data: bool = True
    optimizer: str = "sgd"
    # peak learning rate (0 = the optimizer's default scaled to the batch size; "auto" = found by
    # a range test first); a run's config.toml records the number used
    lr: float = 0.0
    momentum: float = 0.9  # sgd (Nesterov)
    weight_decay: float = -1.0  # -1 = the optimizer's default (DEFAULT_WEIGHT_DECAYS; plan.py)
    schedule: str = "onecycle"
    warmup_epochs: float = -1.0  # -1 = the schedule's default (onecycle: a fifth of the run)
    # warm-up in optimizer steps; wins over warmup_epochs (-1 = from warmup_epochs or the schedule)
    warmup_steps: int = -1
    step_every: int = 0  # step schedule: epochs between decays (0 = a third of the run)
    gamma: float = 0.1  # step schedule: factor at each decay
    label_smoothing: float = 0.1
    augment: str = "standard"  # none, standard, or e.g. "translate=2,cutout=8"
    # what `augment` becomes when fit_to_data stretches a short recipe over small data ("" = it
    # stays): a preset's recipe of a few epochs over 60,000 images trains best without any
    # augmentation, but hundreds of epochs over 1,000 images overfit without it (a given
    # --augment clears this)
    augment_when_stretched: str = ""
    # test-time augmentation: average each image's and its mirror's logits (flip_ok data only)
    tta: bool = False
    # class imbalance: none, weight (loss weighted by inverse class frequency) or sample
    # (batches drawn with probabilities inverse to class frequency)
    balance: str = "none"
    # stop after this many epochs without a better validation accuracy (0 = off)
    early_stop: int = 0
    seed: int = 0
    # airbench's ablations (training/init.py), off by default (default's Fashion-MNIST recipe
    # sets whiten = frozen): the first conv's filters whiten
    # the training images' patches (none, frozen or trainable); later convs start as identities
    whiten: str = "none"
    dirac: bool = False
    # the weights training starts from: none (fresh), imagenet (EfficientNet-Lite0's, for the
    # lite0 preset: training/pretrained.py), a .safetensors file, or a run folder (fine-tune
    # your own run); the last fc, the data's classes, starts fresh
    weights: str = "none"
    # the first N layers with weights (as `cnnlab summary` counts them: its rows with params above
    # 0, a res block as one) keep the weights training starts from: no gradient, no weight decay,
    # their BatchNorms in eval mode (training/freeze.py); 0 = none frozen
    freeze: int = 0
    # epochs of the last fc alone, on the cached features of the layers before it, before the
    # whole network trains (training/headfirst.py); 0 = none
    head_epochs: int = 0
    # BatchNorm scales and biases train at this x the learning rate. Fashion-MNIST, default
    # recipe at 3 epochs, seed 0: x4 92.29%, x16 91.98% against 92.24% (x1): left at 1
    bn_lr_scale: float = 1.0

    # where and how
    device: str = "auto"
    threads: int = 0  # CPU threads per process (0 = all cores, shared between processes)
    nproc: int = 1  # processes for torch.distributed data-parallel training
    force_nproc: bool = False  # allow more processes than this machine has cores
    channels_last: bool = True
    # auto: bf16 autocast where the hardware computes bf16 natively (CUDA with bf16, CPUs with
    # AVX512-BF16 or AMX), fp16 on older GPUs, else fp32; weights and optimizer stay fp32.
    precision: str = "auto"
    out: str = ""  # run folder ("" = runs/<model>-<data>-<time>)
    stop_after: int = 0  # pause after this epoch with a resumable checkpoint (0 = run to the end)
    quiet: bool = False
    # Not a setting, not recorded (config.toml records the model): why `chosen_model` picked the
    # model when none was asked ("" = asked, or the default as ever; MODEL_CHOICES), said once
    # after the model line.
    model_chosen_for: str = dataclasses.field(default="", compare=False)
    # Not a setting, not recorded: the keys the user gave (resolve_config), so that a resume
    # tells `--epochs 8` from the default 8 (training/setup.resumed_config).
    asked: frozenset[str] = dataclasses.field(default=frozenset(), compare=False)

    def to_toml(self) -> str:
        """Every key and value, as TOML that `load_config` reads back: a stand-in as a user writes
        it (`auto`; lr's default by leaving lr out). A planned config has none left."""
        import tomli_w  # here: only a run being written needs it

        values = dataclasses.asdict(self)
        for key in NOT_SETTINGS:
            del values[key]
        for key, stand_in in AUTO_VALUES.items():
            if values[key] == stand_in:
                values[key] = "auto"
        if self.lr == 0:
            del values["lr"]  # the optimizer's default, scaled to the batch (plan.py)
        return tomli_w.dumps(values)


# A preset recipe's settings that only mean something from starting weights (lite0's: frozen
# ImageNet layers, a head fitted to their features): left out of a run with weights = none.
STARTING_WEIGHTS_ONLY = ("freeze", "head_epochs")
NOT_SETTINGS = ("model_chosen_for", "asked")  # TrainConfig fields no user or config.toml sets
FIELD_TYPES: dict[str, type] = {
    f.name: type(f.default) for f in fields(TrainConfig) if f.name not in NOT_SETTINGS
}
# Why a model was chosen for a run that named none (TrainConfig.model_chosen_for): a folder of
# colour photos fine-tunes lite0 (the own-images example: 77% where the scratch default reached
# 42%), or would if its weights package were installed.
COLOUR, COLOUR_NO_WEIGHTS = "colour", "colour-no-weights"
MODEL_CHOICES = ("", COLOUR, COLOUR_NO_WEIGHTS)


def scaled_lr(lr: float, batch_size: int) -> float:
    """A learning rate tuned at REFERENCE_BATCH moved to `batch_size` (square-root scaling)."""
    return lr * math.sqrt(batch_size / REFERENCE_BATCH)


MAX_FILE_BYTES = 1 << 20  # a training config is a few lines; refuse anything near a MiB
MAX_DIGITS = 20  # of a whole number given as text; every range below is far smaller


def _shown(value: Any) -> str:
    """A user's value quoted in an error, cut short when it is long."""
    return clipped(repr(value))


def _convert(key: str, value: Any) -> Any:
    """A user's value (TOML, flag, key=value) converted to the key's type and checked against
    USER_RANGES, or "auto" where the key takes it (`apply` puts its stand-in in the config: a
    converted value converts to itself). ConfigError otherwise."""
    if key in AUTO_VALUES and isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    converted = _typed(key, value)
    if key in USER_RANGES:
        allowed = USER_RANGES[key][0]
        if not allowed(converted):
            raise ConfigError(
                _("{rule}; not {value}").format(rule=range_rule(key), value=_shown(value))
            )
    return converted


def _typed(key: str, value: Any) -> Any:
    """A TOML or command-line value converted to the key's type, or a ConfigError."""
    wanted = FIELD_TYPES[key]
    if wanted is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(
            _("{key} must be true or false, got {value}").format(key=key, value=_shown(value))
        )
    if wanted is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        digits = value.strip().lstrip("-") if isinstance(value, str) else ""
        if digits.isdigit() and len(digits) <= MAX_DIGITS:  # int() of 5,000 digits raises
            return int(value)
        raise ConfigError(
            _("{key} must be a whole number, got {value}").format(key=key, value=_shown(value))
        )
    if wanted is float:
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(
                _("{key} must be a number, got {value}").format(key=key, value=_shown(value))
            ) from None
    if isinstance(value, dict | list):  # a TOML table or array where one value belongs
        raise ConfigError(
            _('{key} must be one value, e.g. {key} = "...", not a table or a list').format(key=key)
        )
    return str(value)


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(FIELD_TYPES), n=2)
    hint = _(" Did you mean {names}?").format(names=_(" or ").join(close)) if close else ""
    return ConfigError(
        _("unknown setting '{key}'.{hint} Settings: {settings}").format(
            key=key, hint=hint, settings=", ".join(FIELD_TYPES)
        )
    )


def _converted(values: dict[str, Any]) -> dict[str, Any]:
    """Settings with known keys and values of the right type (ConfigError otherwise)."""
    changes = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in FIELD_TYPES:
            raise _unknown_key(key)
        changes[key] = _convert(key, value)
    return changes


def apply(config: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """A copy of `config` with `values` set (converted and checked; auto as its stand-in)."""
    changes = {
        key: AUTO_VALUES[key] if value == "auto" and key in AUTO_VALUES else value
        for key, value in _converted(values).items()
    }
    if changes.get("model", config.model) != config.model:
        changes["model_chosen_for"] = ""  # asked now: no longer chosen
    return check(dataclasses.replace(config, **changes))


def recipe_for(model: str, data: str) -> dict[str, Any]:
    """The training settings a model preset recommends for a data set; {} for a model not a preset."""
    from cnnlab.data.registry import get_entry  # here, not at the top: these import torch
    from cnnlab.errors import DataError
    from cnnlab.model.presets import PRESETS

    preset = PRESETS.get(model)
    if preset is None:
        return {}
    # Aliases: fashion_mnist -> fashion-mnist; a folder or unknown name gets the general recipe.
    with contextlib.suppress(DataError):
        data = get_entry(data).name
    return preset.recipe_for(data)


BUDGET_UNITS = {"s": "seconds", "e": "E"}


def parse_budget(text: str) -> tuple[float, str] | None:
    """A budget as (amount, unit): "90" or "90s" -> (90.0, "s"), "1.25E" -> (1.25, "E"); "" -> None."""
    text = str(text).strip()
    if not text:
        return None
    unit = text[-1].lower() if text[-1].lower() in BUDGET_UNITS else "s"
    amount_text = text[:-1] if text[-1].lower() in BUDGET_UNITS else text
    try:
        amount = float(amount_text)
    except ValueError:
        amount = math.nan
    if not (math.isfinite(amount) and amount > 0) or len(text) > MAX_DIGITS:
        raise ConfigError(
            _(
                "budget must be seconds (e.g. 60 or 90s) or a multiple of E, one epoch of the "
                "tutorial recipe as measured on this machine (e.g. 1.25E); not {value}"
            ).format(value=_shown(text))
        )
    return amount, "E" if unit == "e" else "s"


def _check_budget_and_epochs(merged: dict[str, Any]) -> None:
    """--budget plans the epochs: both given is one wish too many (a planned run records both)."""
    if merged.get("budget") and "epochs" in merged and not merged.get("total_steps"):
        raise ConfigError(
            _(
                "budget={budget} and epochs={epochs}: give one or the other "
                "(--budget plans the number of steps to end within the time; --epochs fixes it)"
            ).format(budget=merged["budget"], epochs=merged["epochs"])
        )


def chosen_model(merged: dict[str, Any]) -> tuple[str, str]:
    """The model of settings that may name none, and why it was chosen (MODEL_CHOICES).

    Asked (a model, or starting weights other than ImageNet's, which fit their own model):
    as asked. Else a folder of colour images (looked at: `folder.looks_colour`, or channels=3)
    fine-tunes lite0 when its weights package is installed; anything else trains `default`."""
    from cnnlab.data.folder import looks_colour  # here, not at the top: these import torch
    from cnnlab.data.registry import is_folder
    from cnnlab.training.pretrained import weights_installed

    if "model" in merged:
        return merged["model"], ""
    data, channels = merged.get("data", TrainConfig.data), merged.get("channels", 0)
    if merged.get("weights", "imagenet") != "imagenet" or channels == 1 or not is_folder(data):
        return TrainConfig.model, ""
    if channels != 3 and not looks_colour(str(data).removeprefix("folder:")):
        return TrainConfig.model, ""
    return ("lite0", COLOUR) if weights_installed() else (TrainConfig.model, COLOUR_NO_WEIGHTS)


def resolve_config(*settings: dict[str, Any]) -> TrainConfig:
    """The defaults, then the chosen model preset's recipe, then each dict of settings in order.

    `resolve_config(file_settings, flags, overrides)`: the model and data are whichever the dicts
    name last (default: "default" on "shapes"; no model: `chosen_model`), so `--model best` brings best's recipe,
    `--data fashion-mnist` the default model's recipe for it, and any setting given explicitly
    still wins over the recipe.
    """
    merged: dict[str, Any] = {}
    for values in settings:
        merged.update(_converted(values))
    _check_budget_and_epochs(merged)
    # The one place a model is chosen when none was asked: before the data loads, as its
    # recipe decides how (lite0: 128 px).
    model, chosen_for = chosen_model(merged)
    asked = frozenset(merged)  # what the user gave, before the keys it implies below
    recipe = recipe_for(model, merged.get("data", TrainConfig.data))
    if ("epochs" in merged or "batch_size" in merged) and "fit_to_data" not in merged:
        merged["fit_to_data"] = False  # the user sized the run: keep it as given
    if "augment" in merged and "augment_when_stretched" not in merged:
        merged["augment_when_stretched"] = ""  # the user chose the augmentation: keep it
    if merged.get("weights", recipe.get("weights", TrainConfig.weights)) in ("", "none"):
        # a recipe's freeze and head-first phase keep and use starting weights: not from scratch
        recipe = {k: v for k, v in recipe.items() if k not in STARTING_WEIGHTS_ONLY}
    base = apply(TrainConfig(model=model, model_chosen_for=chosen_for), recipe)
    return dataclasses.replace(apply(base, merged), asked=asked)


def parse_overrides(items: list[str]) -> dict[str, str]:
    """['lr=0.1', 'epochs=3'] -> {'lr': '0.1', 'epochs': '3'}."""
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(_("'{item}' is not key=value (e.g. lr=0.05)").format(item=item))
        values[key.strip()] = value.strip()
    return values


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a TOML training config, converted and checked key by key."""
    path = Path(path)
    try:
        data = read_toml(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise ConfigError(_("config file {path} does not exist").format(path=path)) from None
    except OSError as error:  # a FIFO or folder (never waited on), too large, unreadable
        raise ConfigError(
            _("config file {path} cannot be read: {error}").format(path=path, error=error)
        ) from None
    except NotToml as error:
        raise ConfigError(
            _("{path}: {error}; settings are single values such as epochs = 3").format(
                path=path, error=error
            )
        ) from None
    try:
        return _converted(_train_table(data))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def _train_table(data: dict[str, Any]) -> dict[str, Any]:
    """The settings of a config file: its [train] table, or its top-level keys when it has none."""
    if "train" not in data:
        return data
    if not isinstance(data["train"], dict):
        raise ConfigError(_("train must be a table: write the settings under a [train] header"))
    others = [key for key in data if key != "train"]
    if others:  # they would be silently ignored beside [train]
        raise ConfigError(
            _(
                "{keys}: outside the [train] table, where they would be ignored; "
                "move every setting under [train], or drop the [train] header"
            ).format(keys=", ".join(others))
        )
    return data["train"]


def load_config(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a TOML training config over `base` (default: the defaults and its model's recipe)."""
    values = read_config_file(path)
    try:
        return apply(base, values) if base is not None else resolve_config(values)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def config_of(run: Run) -> TrainConfig:
    """The TrainConfig a run was trained with (its config.toml)."""
    from cnnlab.run.files import CONFIG_FILE  # here, not at the top: it imports torch

    values = run.config_values()
    try:
        return resolve_config(values.get("train", values))
    except ConfigError as error:
        raise ConfigError(f"{run.path / CONFIG_FILE}: {error}") from None


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS says, else all)."""
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


MAX_COUNT = 2**31 - 1  # images, steps, threads: torch's int32 limits
MAX_EPOCHS = 1_000_000
MAX_SEED = 2**32 - 1  # epoch seeds are seed * 1_000_003 * 31 + rank: must stay below 2**64
MAX_FORCED_NPROC = 256  # even with force_nproc

# key -> (lowest, highest, what 0 means or ""): the whole-number settings and their ranges;
# what 0 means is N_-marked, translated where shown (_range_text).
INT_RANGES: dict[str, tuple[int, int, str]] = {
    "epochs": (1, MAX_EPOCHS, ""),
    "total_steps": (0, MAX_COUNT, N_("epochs x steps per epoch")),
    "batch_size": (1, MAX_COUNT, ""),
    "train_size": (0, MAX_COUNT, N_("the data set's default")),
    "test_size": (0, MAX_COUNT, N_("the data set's default")),
    "step_every": (0, MAX_EPOCHS, N_("a third of the run")),
    "early_stop": (0, MAX_EPOCHS, N_("off")),
    "head_epochs": (0, MAX_EPOCHS, N_("none")),
    "stop_after": (0, MAX_EPOCHS, N_("run to the end")),
    "seed": (0, MAX_SEED, ""),
    "threads": (0, MAX_COUNT, N_("all cores")),
    "nproc": (1, MAX_FORCED_NPROC, ""),
}


FREEZE_RULE = N_(
    "freeze must be 0 (nothing frozen) or more: how many layers with weights, counted from the "
    "input as `cnnlab summary MODEL` lists them, keep their starting weights (e.g. freeze=4)"
)
# key -> (whether a user's value is allowed, the rule and the fix): the settings whose stand-ins
# (AUTO_VALUES; lr 0) or out-of-range values would otherwise be taken silently. A NaN fails each.
# The rules are N_-marked templates of RULE_FIELDS, built here at import: range_rule(key) shows one.
USER_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (
        lambda v: 0 < v <= MAX_LR,
        N_(
            "lr must be above 0 and at most {max_lr} (e.g. 0.05; higher diverges, and the range "
            "test looks no further); write auto for a range test to find it, or leave it out for "
            "the optimizer's default"
        ),
    ),
    "weight_decay": (
        lambda v: v >= 0,
        N_(
            "weight_decay must be 0 (no decay) or more (e.g. 5e-4); leave it out or write auto "
            "for the optimizer's default"
        ),
    ),
    "warmup_epochs": (
        lambda v: v >= 0,
        N_(
            "warmup_epochs must be 0 (no warm-up) or more (e.g. 1.5); leave it out or write auto "
            "for the schedule's default"
        ),
    ),
    "warmup_steps": (
        lambda v: 0 <= v <= MAX_COUNT,
        N_(
            "warmup_steps must be 0 (no warm-up) to {max_count}; leave it out or write auto for "
            "the schedule's default"
        ),
    ),
    "momentum": (
        lambda v: 0 <= v < 1,
        N_("momentum must be at least 0 and below 1 (e.g. 0.9; 0 = none)"),
    ),
    "freeze": (lambda v: v >= 0, FREEZE_RULE),
}
RULE_FIELDS = {"max_lr": f"{MAX_LR:g}", "max_count": MAX_COUNT}


def range_rule(key: str) -> str:
    """USER_RANGES' rule for `key`, in the current language."""
    return _(USER_RANGES[key][1]).format(**RULE_FIELDS)


def _range_text(key: str, low: int, high: int, zero: str) -> str:
    if zero:  # 0 means "the default"; real values start at 1
        return _("{key} must be 0 ({zero}) or 1 to {high}").format(key=key, zero=_(zero), high=high)
    return _("{key} must be a whole number from {low} to {high}").format(
        key=key, low=low, high=high
    )


def _check_ranges(config: TrainConfig) -> None:
    """Whole numbers within their ranges, floats finite: no overflow or allocator error later."""
    for key, (low, high, zero) in INT_RANGES.items():
        value = getattr(config, key)
        if not low <= value <= high:
            raise ConfigError(
                _("{rule}, not {value}").format(rule=_range_text(key, low, high, zero), value=value)
            )
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(
                _("{key} must be a finite number, not {value}").format(key=f.name, value=value)
            )
    if config.channels not in (0, 1, 3):
        raise ConfigError(
            _("channels must be 0 (decide from the data), 1 or 3, not {channels}").format(
                channels=config.channels
            )
        )


def _check_image_size(config: TrainConfig) -> None:
    """image_size parses; HxW only for folders (registered data sets resize to a square)."""
    if not isinstance(parse_image_size(config.image_size), tuple):
        return
    from cnnlab.data.registry import get_entry  # here, not at the top: it imports torch
    from cnnlab.errors import DataError

    with contextlib.suppress(DataError):  # not a registered name: a folder
        name = get_entry(config.data).name
        raise ConfigError(
            _(
                "image_size={size}: {data} resizes to a square only; give one side "
                "(e.g. image_size=32); HxW is for image folders"
            ).format(size=config.image_size, data=name)
        )


def _check_nproc(config: TrainConfig) -> None:
    """More ranks than cores only slow training down (and a typo could start thousands)."""
    cores = usable_cores()
    if config.nproc > cores and not config.force_nproc:
        raise ConfigError(
            _(
                "nproc={nproc}: more training processes than this machine's {cores} cores; "
                "use nproc={cores} or fewer, or add --force-nproc (force_nproc=true) "
                "to start them anyway"
            ).format(nproc=config.nproc, cores=cores)
        )


def _check_budget(config: TrainConfig) -> None:
    """The budget parses, and is planned in one process (each rank would measure its own plan)."""
    if parse_budget(config.budget) is None or config.total_steps:
        return
    if config.nproc > 1:
        raise ConfigError(
            _(
                "budget={budget} measures the steps in one process: drop --nproc, or train "
                "with --nproc and --epochs"
            ).format(budget=config.budget)
        )


def check(config: TrainConfig) -> TrainConfig:
    """Refuse values that cannot work, naming the key, the allowed range and the fix."""
    _check_nproc(config)  # first: a mistyped nproc gets the advice on cores
    _check_ranges(config)
    _check_image_size(config)
    _check_budget(config)
    one_of = _("{key} must be one of {choices}")
    rules = [
        (
            config.optimizer in OPTIMIZERS,
            one_of.format(key="optimizer", choices=", ".join(OPTIMIZERS)),
        ),
        (config.schedule in SCHEDULES, one_of.format(key="schedule", choices=", ".join(SCHEDULES))),
        (config.device in DEVICES, one_of.format(key="device", choices=", ".join(DEVICES))),
        (
            config.precision in PRECISIONS,
            one_of.format(key="precision", choices=", ".join(PRECISIONS)),
        ),
        (config.balance in BALANCES, one_of.format(key="balance", choices=", ".join(BALANCES))),
        (
            config.keep_aspect in KEEP_ASPECTS,
            one_of.format(key="keep_aspect", choices=", ".join(KEEP_ASPECTS)),
        ),
        (
            config.batch_size % config.nproc == 0,
            _("batch_size must divide evenly among nproc processes"),
        ),
        (0 <= config.val_split < 1, _("val_split must be at least 0 and below 1")),
        (0 <= config.label_smoothing < 1, _("label_smoothing must be at least 0 and below 1")),
        # a config built in Python may hold the stand-ins (AUTO_VALUES); users cannot type them
        (0 <= config.lr <= MAX_LR or config.lr == LR_AUTO, range_rule("lr")),
        (config.weight_decay >= 0 or config.weight_decay == -1, range_rule("weight_decay")),
        (config.warmup_epochs >= 0 or config.warmup_epochs == -1, range_rule("warmup_epochs")),
        (-1 <= config.warmup_steps <= MAX_COUNT, range_rule("warmup_steps")),
        (0 <= config.momentum < 1, range_rule("momentum")),
        (
            config.freeze >= 0,
            _("{rule}; not {value}").format(rule=_(FREEZE_RULE), value=config.freeze),
        ),
        (
            config.budget_seconds >= 0 and config.e_seconds >= 0,
            _(
                "budget_seconds and e_seconds must be 0 or more (they record a plan: leave them out)"
            ),
        ),
        (config.gamma > 0, _("gamma must be above 0 (e.g. 0.1)")),
        (config.whiten in WHITENINGS, one_of.format(key="whiten", choices=", ".join(WHITENINGS))),
        (config.bn_lr_scale > 0, _("bn_lr_scale must be above 0 (1 = the same lr as the rest)")),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)
    return config
