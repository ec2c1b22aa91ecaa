"""The run record: everything a stage after training needs to know about a run, in one schema.

Training writes it once, when the run's plan is made (record.json, beside config.toml); every
later stage (evaluate, figures, explain, deploy, server) reads it through `Run.record` and
never reads the training settings. It says:

- `Pixels`: how an image becomes the model's input: channels and size, how images meet the
  input's aspect ratio (stretch, pad or crop), the per-channel mean and std, and whether the
  run is scored with mirror test-time augmentation (tta);
- `DataSource` (data/source.py): where the data came from: the data set's name or folder, the
  options it was loaded with, the validation share and the seed that split it;
- the number of images in each split when the run was trained.

Runs written before record.json existed keep opening: their record is read from model.json and
config.toml as they wrote them (`legacy_record`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.data.source import KEEP_ASPECTS, SPLITS, DataSource, parse_image_size
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.i18n import _
from cnnlab.run.files import one_per_channel

RECORD_FORMAT = "cnnlab-record/1"  # record.json's "format"; a change of schema changes it
MAX_COUNT = 2**31 - 1  # images in a split, sizes: torch's int32 limits
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Pixels:
    """How an image becomes the model's input."""

    input_shape: tuple[int, int, int]  # (C, H, W) the model takes
    keep_aspect: str  # stretch, pad (letterbox) or crop (centre) to (H, W)
    mean: tuple[float, ...]  # per channel, of images scaled to 0..1; subtracted
    std: tuple[float, ...]  # per channel; divided by
    tta: bool  # scored as the mean of each image's and its mirror's logits


@dataclass(frozen=True)
class RunRecord:
    """What a run's later stages need: its pixels, its data and the size of each split."""

    pixels: Pixels
    source: DataSource
    sizes: dict[str, int]  # images per split ("train", "val", "test") when trained; {} if unknown

    def to_json(self) -> dict[str, Any]:
        """record.json's content."""
        pixels = dataclasses.asdict(self.pixels)
        pixels["input_shape"] = list(self.pixels.input_shape)
        pixels["mean"], pixels["std"] = list(self.pixels.mean), list(self.pixels.std)
        return {
            "format": RECORD_FORMAT,
            "pixels": pixels,
            "source": dataclasses.asdict(self.source),
            "sizes": dict(self.sizes),
        }


def record_from_json(data: Any, source: Path) -> RunRecord:
    """A record.json's content as a RunRecord; CheckpointError naming what is wrong."""
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise _damaged(
            source,
            _("format {found} is not {expected}").format(
                found=f"{found!r:.40}", expected=repr(RECORD_FORMAT)
            ),
        )
    for key in ("pixels", "source", "sizes"):
        if not isinstance(data.get(key), dict):
            raise _damaged(source, _("'{key}' is missing or not a table").format(key=key))
    pixels = _pixels(data["pixels"], source)
    return RunRecord(pixels, _source(data["source"], source), _sizes(data["sizes"], source))


def legacy_record(meta: dict[str, Any], config: dict[str, Any], source: Path) -> RunRecord:
    """The record of a run written before record.json: model.json's input shape, normalisation
    and keep_aspect, and config.toml's data settings (every key as TrainConfig wrote it)."""
    train = _settings(config, source)
    fields = {f.name for f in dataclasses.fields(DataSource)} - {"name", "split_seed"}
    values = {key: train[key] for key in fields if key in train}
    values["name"] = train.get("data", meta.get("data", ""))
    values["split_seed"] = train.get("seed", 0)
    return RunRecord(legacy_pixels(meta, config, source), _source(values, source), {})


def legacy_pixels(meta: dict[str, Any], config: dict[str, Any], source: Path) -> Pixels:
    """The pixels of a run written before record.json (config.toml's tta and keep_aspect where
    model.json lacks it; `config` may be {}: no tta, stretch)."""
    train = _settings(config, source)
    keep_aspect = meta.get("keep_aspect", train.get("keep_aspect", KEEP_ASPECTS[0]))
    pixels = {
        "input_shape": meta["input_shape"],
        "keep_aspect": keep_aspect if keep_aspect in KEEP_ASPECTS else KEEP_ASPECTS[0],
        "mean": meta["mean"],
        "std": meta["std"],
        "tta": train.get("tta", False),
    }
    return _pixels(pixels, source)


def _settings(config: dict[str, Any], source: Path) -> dict[str, Any]:
    """config.toml's settings: its [train] table, or its top level."""
    train = config.get("train", config)
    if not isinstance(train, dict):
        raise _damaged(source, _("its settings are not a table"))
    return train


def check_agrees(record: RunRecord, meta: dict[str, Any], source: Path) -> None:
    """record.json and model.json describe one model: the same input shape and normalisation."""
    pixels = record.pixels
    if list(pixels.input_shape) != meta["input_shape"]:
        raise _damaged(source, _("its input shape is not model.json's"))
    if list(pixels.mean) != meta["mean"] or list(pixels.std) != meta["std"]:
        raise _damaged(source, _("its mean/std are not model.json's"))


def _damaged(source: Path, what: str) -> CheckpointError:
    return CheckpointError(
        _("{source}: {what}; the run folder is damaged: restore it or train the run again").format(
            source=source, what=what
        )
    )


def _typed(values: dict[str, Any], key: str, kind: type | tuple[type, ...], source: Path) -> Any:
    """values[key] if it is of `kind` (bool is not a number here), else a CheckpointError."""
    value = values.get(key)
    numeric = kind in (int, float, (int, float))
    if not isinstance(value, kind) or (numeric and isinstance(value, bool)):
        raise _damaged(source, _("'{key}' is missing or of the wrong type").format(key=key))
    return value


def _pixels(values: dict[str, Any], source: Path) -> Pixels:
    """Pixels from JSON values, checked: a shape of 3 positive sides, one finite mean and one
    positive std per channel, a known keep_aspect."""
    shape = _typed(values, "input_shape", list, source)
    if len(shape) != 3 or not all(type(v) is int and v > 0 for v in shape):
        raise _damaged(source, _("input_shape is not [channels, height, width]"))
    mean, std = _typed(values, "mean", list, source), _typed(values, "std", list, source)
    numbers = [*mean, *std]
    if len(mean) != shape[0] or len(std) != shape[0]:
        raise _damaged(source, one_per_channel(shape[0]))
    if not all(type(v) in (int, float) and math.isfinite(v) for v in numbers) or min(std) <= 0:
        raise _damaged(source, _("mean/std must be finite numbers, std above 0"))
    if _typed(values, "keep_aspect", str, source) not in KEEP_ASPECTS:
        raise _damaged(
            source,
            _("keep_aspect must be one of {choices}").format(choices=", ".join(KEEP_ASPECTS)),
        )
    return Pixels(
        tuple(shape),
        values["keep_aspect"],
        tuple(float(m) for m in mean),
        tuple(float(s) for s in std),
        _typed(values, "tta", bool, source),
    )


def _source(values: dict[str, Any], source: Path) -> DataSource:
    """A DataSource from JSON or TOML values, each of its field's type and within range."""
    defaults = DataSource(name="")
    kept = {}
    for field in dataclasses.fields(DataSource):
        if field.name not in values and field.name != "name":
            continue  # an older file without the key: the default, as it trained
        kind = type(getattr(defaults, field.name))
        kind = (int, float) if kind is float else kind
        kept[field.name] = _typed(values, field.name, kind, source)
    data = DataSource(**kept)
    in_range = (
        data.name
        and data.channels in (0, 1, 3)
        and data.keep_aspect in KEEP_ASPECTS
        and 0 <= data.train_size <= MAX_COUNT
        and 0 <= data.test_size <= MAX_COUNT
        and 0 <= data.val_split < 1
        and 0 <= data.split_seed <= MAX_SEED
    )
    if not in_range:
        raise _damaged(source, _("its data settings are out of range"))
    try:
        parse_image_size(data.image_size)
    except CnnlabError as error:
        raise _damaged(source, str(error)) from None
    return dataclasses.replace(data, val_split=float(data.val_split))


def _sizes(values: dict[str, Any], source: Path) -> dict[str, int]:
    """Images per split: known split names, whole numbers within range."""
    for key, value in values.items():
        if key not in SPLITS or type(value) is not int or not 0 <= value <= MAX_COUNT:
            raise _damaged(source, _("sizes: '{key}' is not a split's image count").format(key=key))
    return dict(values)
