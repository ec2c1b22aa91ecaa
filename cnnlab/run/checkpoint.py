"""Checkpoints without pickle: safetensors for tensors, JSON for everything else.

`save_tensors` writes tensors with JSON metadata in one atomic file (fileio);
`load_tensors` refuses anything that is not safetensors unread. Also here: the
state-dict check that explains mismatched weights, and an optimizer's state as
named tensors (so it can travel in safetensors too).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from cnnlab.errors import CheckpointError
from cnnlab.fileio import atomic_write_bytes, read_regular_bytes

MAX_JSON_BYTES = (
    16 * 2**20
)  # model.json and export sidecars are a few kB; anything this big is not ours

# --- tensors --------------------------------------------------------------------


def save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None
) -> None:
    """Tensors (made contiguous, on the CPU) and JSON metadata into one safetensors file, atomically."""
    plain = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    header = {"json": json.dumps(metadata)} if metadata is not None else None
    atomic_write_bytes(path, save(plain, metadata=header))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Tensors and JSON metadata from a safetensors file; anything else (a pickle too) is refused unread."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    try:
        data = read_regular_bytes(path)  # by bytes: a FIFO in its place must not block
        tensors = load(data)
        header = _header(data).get("__metadata__")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({error}). cnnlab never unpickles files; "
            "a damaged or foreign checkpoint cannot be used: train again, or resume from another run"
        ) from None
    metadata = None
    if isinstance(header, dict) and "json" in header:
        try:
            metadata = json.loads(header["json"])
        except (json.JSONDecodeError, RecursionError):
            raise CheckpointError(
                f"{path}: its metadata is not valid JSON; the file is damaged"
            ) from None
    return tensors, metadata


def _header(data: bytes) -> dict[str, Any]:
    """A safetensors file's JSON header: 8 bytes of little-endian length, then the JSON."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """Only the JSON metadata of a safetensors file (the header, not the tensors); None if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        size = int.from_bytes(os.pread(fd, 8, 0), "little")
        if size > MAX_JSON_BYTES:
            return None
        header = json.loads(os.pread(fd, size, 8))
        return json.loads(header["__metadata__"]["json"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    finally:
        os.close(fd)


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from a file, or a CheckpointError naming the file."""
    path = Path(path)
    try:
        data = json.loads(read_regular_bytes(path, MAX_JSON_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist: is this a cnnlab run folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise CheckpointError(f"{path} is damaged ({error})") from None
    except RecursionError:
        raise CheckpointError(f"{path} is damaged (JSON nested too deeply)") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


# --- state dicts ----------------------------------------------------------------


def _shape(t: torch.Tensor) -> str:
    """'32x3x3x3', or 'scalar'."""
    return "x".join(str(d) for d in t.shape) or "scalar"


def check_state_dict(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], source: str
) -> None:
    """Refuse weights that do not fit the model, saying which tensors differ and what that means."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = [
        f"{name}: file {_shape(found[name])}, model {_shape(expected[name])}"
        for name in expected
        if name in found and found[name].shape != expected[name].shape
    ]
    if not (missing or extra or wrong):
        return
    details = []
    if wrong:
        details.append("different shapes: " + "; ".join(wrong[:4]))
    if missing:
        details.append("missing: " + ", ".join(missing[:6]))
    if extra:
        details.append("unexpected: " + ", ".join(extra[:6]))
    hint = _class_count_hint(expected, found)
    raise CheckpointError(
        f"{source} does not fit this model ({'; '.join(details)}). It was saved from another "
        f"architecture{hint}: use the run folder it came from, or train this model anew"
    )


def _class_count_hint(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """' or class count (10 in the file, 8 here)' when only the last layer's outputs differ."""
    last = [name for name in expected if name.endswith(".weight")]
    if not last:
        return ""
    name = last[-1]
    if (
        name in found
        and found[name].shape[1:] == expected[name].shape[1:]
        and found[name].shape[0] != expected[name].shape[0]
    ):
        return (
            f" or class count ({found[name].shape[0]} in the file, {expected[name].shape[0]} here)"
        )
    return ""


def optimizer_to_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state as named tensors plus JSON (param groups, non-tensor values)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                plain.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "plain": plain}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict[str, Any]
) -> None:
    """Load what optimizer_to_tensors saved."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, values in info.get("plain", {}).items():
        state.setdefault(int(index), {}).update(values)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    except (ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(f"the optimizer state does not fit this model ({error})") from None
