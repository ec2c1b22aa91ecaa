"""The TOML spelling of a model spec: reading (`load_spec_toml`) and writing (`spec_to_toml`).

    input = [1, 28, 28]
    [[layers]]
    type = "conv"
    out = 32
    kernel = 3
    padding = "same"

Each [[layers]] table holds `type` (a kind or alias) and the parameters by name
(aliases accepted); a res block holds its layers as [[layers.body]] tables (and
[[layers.shortcut]] for a projection), checked by `language.make_layer`, so a TOML file and its
one-line spelling parse to equal specs. Written with `tomli_w`. Pure; no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from cnnlab.errors import SpecError
from cnnlab.fileio import NotToml, read_toml
from cnnlab.i18n import _
from cnnlab.spec.kinds import resolve_kind
from cnnlab.spec.language import (
    MAX_NUMBER,
    LayerSpec,
    ModelSpec,
    format_shape,
    make_layer,
    parse_shape,
)

TOP_KEYS = {"input", "layers", "name", "description"}
MAX_FILE_BYTES = 1 << 20  # a model file is a few hundred lines at most


def spec_from_toml_dict(data: dict[str, Any], source: str = "TOML") -> ModelSpec:
    """A spec from the parsed TOML mapping: 'input' (optional) and 'layers' (a list of tables)."""
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise SpecError(
            _("{source}: unknown key(s) {keys}; use input and [[layers]]").format(
                source=source, keys=", ".join(sorted(unknown))
            )
        )
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise SpecError(
            _('{source}: no [[layers]] tables; each needs type = "conv" (or relu, fc, ...)').format(
                source=source
            )
        )
    input_shape = None
    if "input" in data:
        raw = data["input"]
        raw = format_shape(raw) if isinstance(raw, list) else str(raw)
        input_shape = parse_shape(raw)
    layers = tuple(
        _layer_from_table(table, _("{source}: layer {index}").format(source=source, index=index))
        for index, table in enumerate(raw_layers, start=1)
    )
    return ModelSpec(layers, input_shape)


def _layer_from_table(table: Any, where: str) -> LayerSpec:
    """One [[layers]] table; a block's (res) [[layers.body]] and [[layers.shortcut]] tables in turn."""
    if not isinstance(table, dict):
        raise SpecError(
            _('{where} is not a table: write [[layers]] with type = "conv" and so on').format(
                where=where
            )
        )
    table = dict(table)
    kind = table.pop("type", None)
    if not isinstance(kind, str):
        raise SpecError(_('{where} has no type = "..." (e.g. type = "conv")').format(where=where))
    try:
        found = resolve_kind(kind)
        for key, value in table.items():
            p = found.param(key)
            if p is not None and p.type == "layers":
                table[key] = _block_layers(value, f"{where}, {key}", found.name, key)
        return make_layer(kind, [], table)
    except SpecError as error:
        if str(error).startswith(where):  # an inner layer's error already says where it is
            raise
        raise SpecError(f"{where}: {error}") from None


def _block_layers(value: Any, where: str, kind: str, key: str) -> tuple[LayerSpec, ...]:
    """A block's layers from their tables: [[layers.body]] type = "conv" ..."""
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise SpecError(
            _(
                "{key} holds the {kind} block's layers as tables: [[layers.{key}]] "
                'type = "conv" ...'
            ).format(key=key, kind=kind)
        )
    return tuple(
        _layer_from_table(table, _("{where} layer {index}").format(where=where, index=index))
        for index, table in enumerate(value, start=1)
    )


def load_spec_toml(path: str | Path) -> ModelSpec:
    """Read a TOML model file."""
    path = Path(path)
    try:
        data = read_toml(path, MAX_FILE_BYTES)
    except NotToml as error:
        raise SpecError(
            _(
                "{path}: {error}; numbers in a spec are at most {max}, "
                "arrays at most a pair such as [3, 5]"
            ).format(path=path, error=error, max=MAX_NUMBER)
        ) from None
    except OSError as error:  # missing, a FIFO or folder (never waited on), too large
        raise SpecError(
            _("{path}: cannot read the model file ({error})").format(path=path, error=error)
        ) from None
    return spec_from_toml_dict(data, str(path))


def spec_to_toml(spec: ModelSpec) -> str:
    """The TOML spelling of `spec`, writing what the canonical text writes; `load_spec_toml` reads it back equal."""
    data: dict[str, Any] = {}
    if spec.input_shape:
        data["input"] = list(spec.input_shape)
    data["layers"] = [_layer_table(layer) for layer in spec.layers]
    return tomli_w.dumps(data)


def _layer_table(layer: LayerSpec) -> dict[str, Any]:
    """One [[layers]] table: type and the parameters the canonical text writes."""
    return {"type": layer.kind, **{p.name: _toml_value(value) for p, value in layer.written()}}


def _toml_value(value: Any) -> Any:
    """(3, 3) -> 3 and (3, 5) -> [3, 5], as a person writes them; a block's layers as tables."""
    if isinstance(value, tuple) and value and isinstance(value[0], LayerSpec):
        return [_layer_table(layer) for layer in value]
    if isinstance(value, tuple):
        return value[0] if len(value) == 2 and value[0] == value[1] else list(value)
    return value
