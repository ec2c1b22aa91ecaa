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

from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.fileio import atomic_write_bytes, read_regular_bytes
from cnnlab.i18n import _
from cnnlab.run.files import MAX_JSON_BYTES, MODEL_FILE, MODEL_META
from cnnlab.spec.analysis import ModelReport, analyze
from cnnlab.spec.language import ModelSpec

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
        raise CheckpointError(_("{path} does not exist").format(path=path))
    try:
        data = read_regular_bytes(path)  # by bytes: a FIFO in its place must not block
        tensors = load(data)
        header = _header(data).get("__metadata__")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise _unreadable(path, error) from None
    metadata = None
    if isinstance(header, dict) and "json" in header:
        try:
            metadata = json.loads(header["json"])
        except (json.JSONDecodeError, RecursionError):
            raise CheckpointError(
                _("{path}: its metadata is not valid JSON; the file is damaged").format(path=path)
            ) from None
    return tensors, metadata


def _unreadable(path: Path, error: Exception) -> CheckpointError:
    """The error for a file that is not safetensors (or not readable at all)."""
    return CheckpointError(
        _(
            "{path} is not a readable safetensors file ({error}). cnnlab never unpickles files; "
            "a damaged or foreign checkpoint cannot be used: train again, or resume from another run"
        ).format(path=path, error=error)
    )


def _header(data: bytes) -> dict[str, Any]:
    """A safetensors file's JSON header: 8 bytes of little-endian length, then the JSON."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    if not isinstance(header, dict):
        raise ValueError(_("the header is not a JSON object"))
    return header


def _read_header(path: str | Path) -> dict[str, Any]:
    """A safetensors file's JSON header alone (not its tensors); OSError or ValueError if unreadable."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO must not block
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(_("not a regular file"))
        size = int.from_bytes(os.pread(fd, 8, 0), "little")
        if size > MAX_JSON_BYTES:
            raise ValueError(_("a header of {size} bytes").format(size=f"{size:,}"))
        return _header(os.pread(fd, 8, 0) + os.pread(fd, size, 8))
    except RecursionError:
        raise ValueError(_("a header nested too deeply")) from None
    finally:
        os.close(fd)


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """Only the JSON metadata of a safetensors file (the header, not the tensors); None if unreadable."""
    try:
        return json.loads(_read_header(path)["__metadata__"]["json"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in a safetensors file, from its header alone (no tensor is read)."""
    try:
        header = _read_header(path)
        return {
            name: tuple(int(n) for n in entry["shape"])
            for name, entry in header.items()
            if name != "__metadata__"
        }
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise _unreadable(path, error) from None


def non_finite_tensors(path: Path) -> list[str]:
    """The names of a safetensors file's floating-point tensors that hold NaN or infinity."""
    tensors, _ = load_tensors(path)
    return [
        name
        for name, tensor in tensors.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


# --- state dicts ----------------------------------------------------------------


Shapes = dict[str, tuple[int, ...]]  # state-dict name -> tensor shape


def _shape(shape: tuple[int, ...]) -> str:
    """'32x3x3x3', or 'scalar'."""
    return "x".join(str(d) for d in shape) or "scalar"


def spec_tensor_shapes(report: ModelReport) -> Shapes:
    """The state dict of the model a spec builds, as names and shapes from the spec alone: no
    module is built, so a spec tampered to a billion channels allocates nothing."""
    shapes: Shapes = {}
    for r in report.every_layer():  # a res block's layers too: res1.body.conv1.weight, ...
        p, kind, channels = r.layer.params, r.layer.kind, r.in_shape[0]
        if kind == "conv":
            shapes[f"{r.name}.weight"] = (p["out"], channels // p["groups"], *p["kernel"])
        elif kind == "fc":
            shapes[f"{r.name}.weight"] = (p["out"], channels)
        elif kind == "batchnorm":
            for tensor in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{r.name}.{tensor}"] = (channels,)
            shapes[f"{r.name}.num_batches_tracked"] = ()
        if kind in ("conv", "fc") and p["bias"]:
            shapes[f"{r.name}.bias"] = (p["out"],)
    return shapes


def check_weights_fit_spec(spec: ModelSpec, folder: Path) -> None:
    """Refuse a run folder whose weights' shapes (model.safetensors' header) are not those its
    spec (model.json) needs, before the model is built: a tampered spec cannot allocate."""
    try:
        expected = spec_tensor_shapes(analyze(spec))
    except CnnlabError as error:
        raise CheckpointError(
            _("{path}: its spec does not work ({error}); the run folder is damaged").format(
                path=folder / MODEL_META, error=error
            )
        ) from None
    _check_shapes(
        expected,
        header_shapes(folder / MODEL_FILE),
        str(folder / MODEL_FILE),
        _(
            "the run folder is damaged ({meta} and {weights} do not belong together): "
            "use the run folder the weights came from, or train again"
        ).format(meta=MODEL_META, weights=MODEL_FILE),
    )


def check_state_dict(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], source: str
) -> None:
    """Refuse weights that do not fit the model, saying which tensors differ and what that means."""
    _check_shapes(
        {name: tuple(t.shape) for name, t in expected.items()},
        {name: tuple(t.shape) for name, t in found.items()},
        source,
        _("use the run folder it came from, or train this model anew"),
    )


def _check_shapes(expected: Shapes, found: Shapes, source: str, fix: str) -> None:
    """A CheckpointError naming the tensors that are missing, unexpected or of another shape."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = [
        _("{name}: file {found}, model {expected}").format(
            name=name, found=_shape(found[name]), expected=_shape(expected[name])
        )
        for name in expected
        if name in found and found[name] != expected[name]
    ]
    if not (missing or extra or wrong):
        return
    details = []
    if wrong:
        details.append(_("different shapes: {list}").format(list="; ".join(wrong[:4])))
    if missing:
        details.append(_("missing: {list}").format(list=", ".join(missing[:6])))
    if extra:
        details.append(_("unexpected: {list}").format(list=", ".join(extra[:6])))
    hint = _class_count_hint(expected, found)
    raise CheckpointError(
        _(
            "{source} does not fit this model ({details}). It was saved from another "
            "architecture{hint}: {fix}"
        ).format(source=source, details="; ".join(details), hint=hint, fix=fix)
    )


def _class_count_hint(expected: Shapes, found: Shapes) -> str:
    """' or class count (10 in the file, 8 here)' when only the last layer's outputs differ."""
    last = [name for name in expected if name.endswith(".weight")]
    if not last:
        return ""
    name = last[-1]
    if (
        name in found
        and found[name][1:] == expected[name][1:]
        and found[name][:1] != expected[name][:1]
    ):
        return _(" or class count ({found} in the file, {expected} here)").format(
            found=found[name][0], expected=expected[name][0]
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
        raise CheckpointError(
            _("the optimizer state does not fit this model ({error})").format(error=error)
        ) from None
