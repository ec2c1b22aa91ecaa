"""What the user types into `cnnlab explain`, read into matrices, sizes and options.

This module owns the explainer's input syntax: matrix literals ('[[1,0],[0,1]]',
'1 0; 0 1', one matrix per channel), 'random:HxW', the seeds' default examples,
and the N / HxW, padding and mode options. Sizes and padding are checked by the
spec language's own layer parameter rules (`make_layer`), so '--padding same'
means what 'conv(..., padding=same)' means; the messages name the option.
Pure Python: named kernels come from `kernels.py` only when asked for.
"""

from __future__ import annotations

import ast
import random
import re
from typing import Any

from cnnlab.errors import ConfigError, SpecError
from cnnlab.explain.worked import POOL_MODES, Matrix, Number, Pair
from cnnlab.i18n import _
from cnnlab.spec.kinds import PADDING_MODES
from cnnlab.spec.language import make_layer

# Seed 001's worked example: this 5x5 image and 3x3 kernel give [[4,3,4],[2,4,3],[2,3,4]].
SEED_INPUT: Matrix = [
    [1, 1, 1, 0, 0],
    [0, 1, 1, 1, 0],
    [0, 0, 1, 1, 1],
    [0, 0, 1, 1, 0],
    [0, 1, 1, 0, 0],
]
SEED_KERNEL: Matrix = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
# A 4x4 input for 2x2 pooling with stride 2, in the seeds' style: four windows whose
# max, min and mean all differ.
POOL_INPUT: Matrix = [[1, 3, 2, 1], [4, 2, 1, 5], [3, 1, 1, 0], [1, 2, 3, 4]]
PADDING_INPUT: Matrix = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
RANDOM_INPUT_RANGE = (0, 9)  # random inputs: whole numbers, easy to multiply by hand
RANDOM_KERNEL_RANGE = (-1, 1)


# --- matrices -------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_matrix(value: Any, what: str) -> Matrix:
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(
            _("{what} must be a non-empty list of rows, e.g. [[1,0],[0,1]]").format(what=what)
        )
    rows = [list(row) if isinstance(row, list | tuple) else None for row in value]
    if any(row is None or not row for row in rows):
        raise ConfigError(
            _("{what} must be a list of rows, each a non-empty list of numbers").format(what=what)
        )
    if any(not _is_number(v) for row in rows for v in row):
        raise ConfigError(_("{what} must hold numbers only").format(what=what))
    if len({len(row) for row in rows}) != 1:
        lengths = ", ".join(str(len(row)) for row in rows)
        raise ConfigError(
            _("{what} has rows of different lengths ({lengths}): make it rectangular").format(
                what=what, lengths=lengths
            )
        )
    return rows


def _number(token: str) -> Number:
    return float(token) if any(c in token for c in ".eE") else int(token)


def _rows_matrix(text: str, what: str) -> Matrix:
    """MATLAB-style rows: '1 0 1; 0 1 0; 1 0 1'."""
    try:
        rows = [[_number(v) for v in re.split(r"[,\s]+", row.strip())] for row in text.split(";")]
    except ValueError:
        raise ConfigError(
            _("{what} '{text}' is not a matrix: write [[1,0,1],[0,1,0]] or '1 0 1; 0 1 0'").format(
                what=what, text=text
            )
        ) from None
    return _check_matrix(rows, what)


def parse_matrices(text: str, what: str = "matrix") -> list[Matrix]:
    """'[[1,0],[0,1]]' or '1 0; 0 1' -> one matrix; '[[[..]],[[..]]]' -> one matrix per channel."""
    text = text.strip()
    if "[" not in text and "(" not in text:
        return [_rows_matrix(text, what)]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(
            _(
                "{what} '{text}' is not a matrix literal: write e.g. [[1,0,1],[0,1,0],[1,0,1]]"
            ).format(what=what, text=text)
        ) from None
    if isinstance(value, list | tuple) and value and isinstance(value[0], list | tuple):
        if value[0] and isinstance(value[0][0], list | tuple):
            channel = _("{what} channel {index}")
            return [
                _check_matrix(m, channel.format(what=what, index=i + 1))
                for i, m in enumerate(value)
            ]
        return [_check_matrix(value, what)]
    raise ConfigError(
        _("{what} '{text}' must be a list of rows, e.g. [[1,0],[0,1]]").format(what=what, text=text)
    )


def random_matrices(
    height: int, width: int, channels: int, seed: int, low: int, high: int
) -> list[Matrix]:
    """`channels` matrices of whole numbers in [low, high], the same for the same seed."""
    rng = random.Random(seed)
    return [
        [[rng.randint(low, high) for _ in range(width)] for _ in range(height)]
        for _ in range(channels)
    ]


def read_input(text: str | None, channels: int | None, seed: int, default: Matrix) -> list[Matrix]:
    """The input channels from --input (literal, 'random:HxW' or None -> the default) and --channels."""
    if text is None:
        if channels and channels > 1:
            h, w = len(default), len(default[0])
            return random_matrices(h, w, channels, seed, *RANDOM_INPUT_RANGE)
        return [default]
    if text.lower().startswith("random"):
        h, w = parse_size(text.partition(":")[2] or f"{len(default)}x{len(default[0])}", "--input")
        return random_matrices(h, w, channels or 1, seed, *RANDOM_INPUT_RANGE)
    matrices = parse_matrices(text, "--input")
    if channels and len(matrices) != channels:
        raise ConfigError(
            _(
                "--channels {channels} but --input holds {count} matrix(es): "
                "give {channels} matrices [[[...]], [[...]], ...] or --input random:HxW"
            ).format(channels=channels, count=len(matrices))
        )
    return matrices


def read_kernel(text: str | None, channels: int, seed: int) -> list[Matrix]:
    """Per-channel kernels from --kernel: a literal, a named kernel, 'random:KxK' or None (seed 001's)."""
    if text is None:
        return [SEED_KERNEL] * channels
    from cnnlab.explain.kernels import get_kernel, is_kernel_name  # torch: only when named

    if is_kernel_name(text):
        return [get_kernel(text).matrix] * channels
    if text.lower().startswith("random"):
        h, w = parse_size(text.partition(":")[2] or "3", "--kernel")
        return random_matrices(h, w, channels, seed + 1, *RANDOM_KERNEL_RANGE)
    if re.fullmatch(r"[A-Za-z][\w-]*", text.strip()):
        get_kernel(text)  # raises with the list of names and near matches
    matrices = parse_matrices(text, "--kernel")
    if len(matrices) == 1:
        return matrices * channels
    if len(matrices) != channels:
        raise ConfigError(
            _(
                "--kernel holds {count} matrices but the input has {channels} channel(s): "
                "give one matrix (used for every channel) or one per channel"
            ).format(count=len(matrices), channels=channels)
        )
    return matrices


# --- sizes and options ----------------------------------------------------------


def _raw_value(text: str) -> Any:
    """'5' -> 5; '4x6', '4,6' or '(4,6)' -> (4, 6); a word stays text: the spec checks the rest."""
    parts = re.split(r"[x,X]", text.strip().strip("()"))
    if not all(re.fullmatch(r"\s*[+-]?\d+\s*", p) for p in parts):
        return text.strip().lower()
    values = tuple(int(p) for p in parts)
    return values[0] if len(values) == 1 else values


def parse_size(text: str, what: str) -> Pair:
    """'5' -> (5, 5); '4x6' or '4,6' -> (4, 6): a window, stride or dilation, as in a layer spec."""
    try:
        return make_layer("maxpool", [_raw_value(text)]).params["kernel"]
    except SpecError:
        raise ConfigError(
            _("{what} '{text}' must be N or HxW with positive whole numbers, e.g. 3 or 2x3").format(
                what=what, text=text
            )
        ) from None


def parse_padding(text: str | None) -> Pair | str:
    """'1' -> (1, 1); '1x2' -> (1, 2); 'same' -> 'same'; 'valid' -> (0, 0), as conv(padding=...)."""
    if text is None:
        return (0, 0)
    try:
        return make_layer("conv", [1, 1], {"padding": _raw_value(text)}).params["padding"]
    except SpecError:
        raise ConfigError(
            _("--padding '{text}' must be a number >= 0, PxQ, same or valid").format(text=text)
        ) from None


def parse_strides(text: str) -> list[int]:
    """'1,2' -> [1, 2]: the strides `explain stride` compares."""
    try:
        strides = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        strides = []
    if not strides or min(strides) < 1:
        raise ConfigError(
            _("--stride '{text}' must be positive whole numbers, e.g. 1,2").format(text=text)
        )
    return strides


def parse_modes(text: str | None) -> list[str]:
    """'max,min,avg' -> ['max', 'min', 'avg']; None -> all three."""
    if not text:
        return list(POOL_MODES)
    modes = [m.strip().lower().removesuffix("pool") for m in text.split(",") if m.strip()]
    modes = ["avg" if m in ("mean", "average") else m for m in modes]
    bad = [m for m in modes if m not in POOL_MODES]
    if bad or not modes:
        raise ConfigError(
            _("--mode '{text}': choose among {modes}, e.g. max,min,avg").format(
                text=text, modes=", ".join(POOL_MODES)
            )
        )
    return list(dict.fromkeys(modes))


def parse_padding_modes(text: str | None) -> list[str]:
    """'zeros,circular' -> ['zeros', 'circular']; None -> every padding mode."""
    if not text:
        return list(PADDING_MODES)
    modes = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in PADDING_MODES]
    if bad or not modes:
        raise ConfigError(
            _("--padding-mode '{text}': choose among {modes}").format(
                text=text, modes=", ".join(PADDING_MODES)
            )
        )
    return modes
