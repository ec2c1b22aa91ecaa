"""The model spec language: one-line text and TOML, parsed to the same `ModelSpec`.

One-line form (layers separated by spaces; the input shape optional):

    input(1x28x28) conv(32,3,padding=same) relu maxpool(2) flatten dropout(0.5) fc(10)

TOML form:

    input = [1, 28, 28]
    [[layers]]
    type = "conv"
    out = 32
    kernel = 3
    padding = "same"

Both normalise every parameter (defaults filled in, kernels as (h, w) pairs),
so two spellings of one model compare equal. This module is pure Python:
shapes are worked out in `analysis.py`, torch modules are built in `layers.py`.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import SpecError

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@dataclass(frozen=True)
class Param:
    """One layer parameter: its name, type, default and other accepted names."""

    name: str
    type: str  # count | pair | padding | pool_padding | fraction | float | bool | choice | optional_count
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    help: str = ""
    shown: bool = False  # always written in the canonical text, even at its default


@dataclass(frozen=True)
class LayerKind:
    """A layer type of the spec language."""

    name: str
    summary: str
    params: tuple[Param, ...] = ()
    positional: tuple[str, ...] = ()  # order of parameters given without a name
    aliases: tuple[str, ...] = ()

    def param(self, name: str) -> Param | None:
        """The parameter called `name` (or one of its aliases)."""
        for p in self.params:
            if name == p.name or name in p.aliases:
                return p
        return None


def _pool_params(extra: tuple[Param, ...]) -> tuple[Param, ...]:
    return (
        Param(
            "kernel",
            "pair",
            required=True,
            aliases=("kernel_size", "pool_size"),
            help="window size",
        ),
        Param("stride", "pair", None, aliases=("strides",), help="step (default: the kernel size)"),
        Param("padding", "pool_padding", (0, 0), help="pixels added on each side"),
        *extra,
        Param("ceil_mode", "bool", False, help="round the output size up"),
    )


LAYER_KINDS: dict[str, LayerKind] = {
    kind.name: kind
    for kind in (
        LayerKind(
            "conv",
            "2-D convolution: C_out filters of C_in/groups x k_h x k_w slide over the input",
            (
                Param(
                    "out",
                    "count",
                    required=True,
                    aliases=("out_channels", "filters"),
                    help="output channels (filters)",
                ),
                Param(
                    "kernel",
                    "pair",
                    required=True,
                    aliases=("kernel_size",),
                    help="filter size k or (k_h,k_w)",
                ),
                Param("stride", "pair", (1, 1), aliases=("strides",), help="step between windows"),
                Param("padding", "padding", (0, 0), help="p, (p_h,p_w), same or valid"),
                Param(
                    "dilation",
                    "pair",
                    (1, 1),
                    aliases=("dilation_rate",),
                    help="gap between kernel taps",
                ),
                Param("groups", "count", 1, help="channel groups (C_in and C_out must divide)"),
                Param("bias", "bool", True, aliases=("use_bias",), help="add a learned bias"),
                Param(
                    "padding_mode",
                    "choice",
                    "zeros",
                    choices=PADDING_MODES,
                    help="what the padding holds",
                ),
            ),
            positional=("out", "kernel", "stride", "padding"),
            aliases=("conv2d", "convolution"),
        ),
        LayerKind(
            "maxpool",
            "max pooling: the largest value of each window",
            _pool_params((Param("dilation", "pair", (1, 1), help="gap between window taps"),)),
            positional=("kernel", "stride", "padding"),
            aliases=("maxpool2d", "max_pool", "maxpooling2d"),
        ),
        LayerKind(
            "minpool",
            "min pooling: the smallest value of each window (-maxpool(-x))",
            _pool_params((Param("dilation", "pair", (1, 1), help="gap between window taps"),)),
            positional=("kernel", "stride", "padding"),
            aliases=("minpool2d", "min_pool"),
        ),
        LayerKind(
            "avgpool",
            "average pooling: the mean of each window",
            _pool_params(
                (Param("count_include_pad", "bool", True, help="padding zeros count in the mean"),)
            ),
            positional=("kernel", "stride", "padding"),
            aliases=("avgpool2d", "avg_pool", "averagepooling2d"),
        ),
        LayerKind(
            "gap",
            "global average pooling: the mean of each channel (C x H x W -> C)",
            aliases=("globalavgpool", "global_avg_pool", "globalaveragepooling2d"),
        ),
        LayerKind(
            "gmp",
            "global max pooling: the largest value of each channel (C x H x W -> C)",
            aliases=("globalmaxpool", "global_max_pool", "globalmaxpooling2d"),
        ),
        LayerKind(
            "batchnorm",
            "batch normalisation: per-channel (x - mean)/std * gamma + beta",
            (
                Param("eps", "float", 1e-5, help="added to the variance"),
                Param(
                    "momentum",
                    "fraction",
                    0.1,
                    help="weight of the newest batch in the running stats",
                ),
            ),
            aliases=("bn", "batchnorm2d", "batchnormalization"),
        ),
        LayerKind("relu", "max(0, x)"),
        LayerKind(
            "leakyrelu",
            "x if x > 0 else slope*x",
            (
                Param(
                    "slope",
                    "float",
                    0.01,
                    aliases=("negative_slope", "alpha"),
                    help="slope below 0",
                    shown=True,
                ),
            ),
            positional=("slope",),
            aliases=("leaky_relu", "lrelu"),
        ),
        LayerKind("sigmoid", "1/(1 + e^-x)"),
        LayerKind("tanh", "(e^x - e^-x)/(e^x + e^-x)"),
        LayerKind("gelu", "x * Phi(x), Phi the normal CDF"),
        LayerKind(
            "dropout",
            "during training, zero each value with probability p (and scale the rest by 1/(1-p))",
            (
                Param(
                    "p",
                    "fraction",
                    0.5,
                    aliases=("rate",),
                    help="probability of dropping",
                    shown=True,
                ),
            ),
            positional=("p",),
        ),
        LayerKind("flatten", "C x H x W -> C*H*W per image (the batch dimension stays)"),
        LayerKind(
            "fc",
            "fully connected: every output is a weighted sum of every input",
            (
                Param(
                    "out", "count", required=True, aliases=("out_features", "units"), help="outputs"
                ),
                Param(
                    "in",
                    "optional_count",
                    None,
                    aliases=("in_features",),
                    help="inputs (checked; inferred if omitted)",
                ),
                Param("bias", "bool", True, aliases=("use_bias",), help="add a learned bias"),
            ),
            positional=("out",),
            aliases=("linear", "dense", "fullyconnected"),
        ),
        LayerKind("softmax", "e^x_i / sum_j e^x_j: class probabilities that sum to 1"),
    )
}

_KIND_BY_ALIAS: dict[str, str] = {
    alias: kind.name for kind in LAYER_KINDS.values() for alias in (kind.name, *kind.aliases)
}


@dataclass(frozen=True)
class LayerSpec:
    """One layer: its kind and every parameter, normalised (pairs as (h, w))."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """Canonical one-line text, e.g. 'conv(32, 3, padding=same)'."""
        kind = LAYER_KINDS[self.kind]
        parts = []
        for p in kind.params:
            value = self.params[p.name]
            if p.required or p.shown:
                parts.append(_format_value(value))
            elif not _is_default(self, p, value):
                parts.append(f"{p.name}={_format_value(value)}")
        return f"{self.kind}({', '.join(parts)})" if parts else self.kind


@dataclass(frozen=True)
class ModelSpec:
    """A whole model: its layers in order, and the input shape (C, H, W) when known."""

    layers: tuple[LayerSpec, ...]
    input_shape: tuple[int, int, int] | None = None

    def text(self, with_input: bool = True) -> str:
        """Canonical one-line text; parses back to an equal spec."""
        layers = " ".join(layer.text() for layer in self.layers)
        if with_input and self.input_shape:
            return f"input({format_shape(self.input_shape)}) {layers}"
        return layers

    def with_input(self, input_shape: tuple[int, int, int]) -> ModelSpec:
        """The same layers on another input shape."""
        return ModelSpec(self.layers, tuple(input_shape))

    def to_toml(self) -> str:
        """The TOML spelling of this spec; `load_spec_toml` reads it back to an equal spec."""
        lines = []
        if self.input_shape:
            lines += [f"input = [{', '.join(str(n) for n in self.input_shape)}]", ""]
        for layer in self.layers:
            lines.append("[[layers]]")
            lines.append(f'type = "{layer.kind}"')
            for p in LAYER_KINDS[layer.kind].params:
                value = layer.params[p.name]
                if p.required or p.shown or not _is_default(layer, p, value):
                    lines.append(f"{p.name} = {_toml_value(value)}")
            lines.append("")
        return "\n".join(lines)


def format_shape(shape: tuple[int, ...]) -> str:
    """(1, 28, 28) -> '1x28x28'."""
    return "x".join(str(n) for n in shape)


def parse_shape(text: str) -> tuple[int, int, int]:
    """'1x28x28' or '1,28,28' -> (1, 28, 28); a SpecError says what is wrong."""
    parts = text.replace(",", "x").replace("X", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise SpecError(
            f"input shape '{text}' is not CxHxW with positive whole numbers: "
            "write channels x height x width, e.g. 1x28x28 (grayscale) or 3x32x32 (RGB)"
        )
    return dims  # type: ignore[return-value]


# --- values ---------------------------------------------------------------------


def _is_default(layer: LayerSpec, p: Param, value: Any) -> bool:
    if p.name == "stride" and p.default is None:  # pooling: stride defaults to the kernel
        return value == layer.params["kernel"]
    return value == p.default


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        if len(value) == 2 and value[0] == value[1]:
            return str(value[0])
        return "(" + ",".join(str(v) for v in value) + ")"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        if len(value) == 2 and value[0] == value[1]:
            return str(value[0])
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value) if isinstance(value, float) else str(value)


def _describe(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


def _normalise(kind: LayerKind, p: Param, value: Any) -> Any:
    """Check one raw parameter value against its type and return it normalised."""
    where = f"{kind.name}: {p.name}={_describe(value)}"

    def count(v: Any, minimum: int = 1) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            least = "a positive whole number" if minimum == 1 else "a whole number >= 0"
            raise SpecError(f"{where} must be {least} ({p.help})")
        return v

    def pair(v: Any, minimum: int = 1) -> tuple[int, int]:
        if isinstance(v, list | tuple):
            if len(v) != 2:
                raise SpecError(
                    f"{where} must be one number or two (height, width), e.g. 3 or (3,5)"
                )
            return count(v[0], minimum), count(v[1], minimum)
        n = count(v, minimum)
        return n, n

    t = p.type
    if t == "count":
        return count(value)
    if t == "optional_count":
        return None if value is None else count(value)
    if t == "pair":
        return pair(value)
    if t == "pool_padding":
        return pair(value, minimum=0)
    if t == "padding":
        if isinstance(value, str):
            if value.lower() == "same":
                return "same"
            if value.lower() == "valid":
                return (0, 0)
            raise SpecError(f"{where} must be a number, (p_h,p_w), same or valid")
        return pair(value, minimum=0)
    if t in ("float", "fraction"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"{where} must be a number ({p.help})")
        if t == "fraction" and not 0 <= value < 1:
            raise SpecError(f"{where} must be at least 0 and below 1 ({p.help})")
        if t == "float" and p.name == "eps" and value <= 0:
            raise SpecError(f"{where} must be above 0 ({p.help})")
        return float(value)
    if t == "bool":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, bool):
            return value
        raise SpecError(f"{where} must be true or false")
    if t == "choice":
        if not isinstance(value, str) or value.lower() not in p.choices:
            raise SpecError(f"{where} must be one of: {', '.join(p.choices)}")
        return value.lower()
    raise AssertionError(f"unknown parameter type {t}")


def resolve_kind(name: str) -> LayerKind:
    """The layer kind for a name or alias (any case); a SpecError suggests near names."""
    key = name.lower()
    if key in _KIND_BY_ALIAS:
        return LAYER_KINDS[_KIND_BY_ALIAS[key]]
    close = difflib.get_close_matches(key, list(_KIND_BY_ALIAS), n=3)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise SpecError(f"unknown layer '{name}'.{hint} Layers: {', '.join(LAYER_KINDS)}")


def make_layer(
    name: str, positional: list[Any] = (), named: dict[str, Any] | None = None
) -> LayerSpec:
    """Build a normalised LayerSpec from raw values, checking every parameter."""
    kind = resolve_kind(name)
    named = dict(named or {})
    values: dict[str, Any] = {}
    if len(positional) > len(kind.positional):
        if not kind.positional:
            raise SpecError(f"{kind.name} takes no parameters, got {len(positional)}")
        raise SpecError(
            f"{kind.name} takes at most {len(kind.positional)} parameters without names "
            f"({', '.join(kind.positional)}), got {len(positional)}: name the rest, e.g. dilation=2"
        )
    for pname, value in zip(kind.positional, positional, strict=False):
        values[pname] = value
    for key, value in named.items():
        p = kind.param(key)
        if p is None:
            known = ", ".join(q.name for q in kind.params) or "none"
            raise SpecError(f"{kind.name} has no parameter '{key}' (its parameters: {known})")
        if p.name in values:
            raise SpecError(f"{kind.name}: {p.name} is given twice")
        values[p.name] = value
    params: dict[str, Any] = {}
    for p in kind.params:
        if p.name in values:
            params[p.name] = _normalise(kind, p, values[p.name])
        elif p.required:
            raise SpecError(
                f"{kind.name} needs {p.name} ({p.help}), e.g. {kind.name}({_example(kind)})"
            )
        else:
            params[p.name] = p.default
    if kind.name in ("maxpool", "minpool", "avgpool") and params["stride"] is None:
        params["stride"] = params["kernel"]
    return LayerSpec(kind.name, params)


def _example(kind: LayerKind) -> str:
    examples = {"conv": "32, 3", "fc": "10", "maxpool": "2", "minpool": "2", "avgpool": "2"}
    return examples.get(kind.name, "")


# --- one-line parser ------------------------------------------------------------


class _Parser:
    """Recursive descent over one line; errors carry the column and a caret."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, message: str, pos: int | None = None) -> SpecError:
        at = self.pos if pos is None else pos
        line = self.text.replace("\n", " ")
        return SpecError(f"spec error at column {at + 1}: {message}\n  {line}\n  {' ' * at}^")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str, context: str) -> None:
        self.skip_space()
        if self.peek() != char:
            found = f"'{self.peek()}'" if self.peek() else "the end of the spec"
            raise self.fail(f"expected '{char}' {context}, found {found}")
        self.pos += 1

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and (
            self.text[self.pos].isalnum() or self.text[self.pos] == "_"
        ):
            self.pos += 1
        if start == self.pos:
            found = f"'{self.peek()}'" if self.peek() else "the end"
            raise self.fail(f"expected a layer name such as conv, relu or fc, found {found}")
        return self.text[start : self.pos]

    def number(self) -> int | float | tuple[int, ...]:
        """123, 0.5, 1e-5, -0.2, 32*32*32 (a product), or 1x28x28 (a shape)."""
        start = self.pos
        while self.pos < len(self.text) and (
            self.text[self.pos].isalnum() or self.text[self.pos] in ".-+*"
        ):
            if (
                self.text[self.pos] in "-+"
                and self.pos > start
                and self.text[self.pos - 1] not in "eE"
            ):
                break
            self.pos += 1
        token = self.text[start : self.pos]
        try:
            if "x" in token:
                return tuple(int(part) for part in token.split("x"))
            if "*" in token:
                product = 1
                for factor in token.split("*"):
                    product *= int(factor)
                return product
            return float(token) if any(c in token for c in ".eE") else int(token)
        except ValueError:
            raise self.fail(f"'{token}' is not a number", start) from None

    def value(self) -> Any:
        self.skip_space()
        c = self.peek()
        if c == "(" or c == "[":
            close = ")" if c == "(" else "]"
            self.pos += 1
            items = [self.value()]
            self.skip_space()
            while self.peek() == ",":
                self.pos += 1
                items.append(self.value())
                self.skip_space()
            self.expect(close, "to close the group")
            return tuple(items)
        if c.isdigit() or c in "-+.":
            return self.number()
        if c.isalpha():
            return self.name()
        found = f"'{c}'" if c else "the end of the spec"
        raise self.fail(f"expected a value (number, (h,w) or a word such as same), found {found}")

    def arguments(self, layer: str, opened_at: int) -> tuple[list[Any], dict[str, Any]]:
        positional: list[Any] = []
        named: dict[str, Any] = {}
        self.skip_space()
        if self.peek() == ")":
            self.pos += 1
            return positional, named
        while True:
            self.skip_space()
            start = self.pos
            if self.peek().isalpha():
                word = self.name()
                self.skip_space()
                if self.peek() == "=":
                    self.pos += 1
                    if word in named:
                        raise self.fail(f"'{word}' is given twice", start)
                    named[word] = self.value()
                else:
                    if named:
                        raise self.fail("a value without a name after named ones: name it", start)
                    positional.append(word)
            else:
                if named:
                    raise self.fail("a value without a name after named ones: name it", start)
                positional.append(self.value())
            self.skip_space()
            if self.peek() == ",":
                self.pos += 1
                continue
            if self.peek() == ")":
                self.pos += 1
                return positional, named
            found = f"'{self.peek()}'" if self.peek() else "the end of the spec"
            raise self.fail(
                f"expected ',' or ')' in the parameter list, found {found} "
                f"(is a ')' missing to close '{layer}(' from column {opened_at + 1}?)"
            )

    def parse(self) -> ModelSpec:
        layers: list[LayerSpec] = []
        input_shape = None
        self.skip_space()
        while self.pos < len(self.text):
            start = self.pos
            word = self.name()
            positional: list[Any] = []
            named: dict[str, Any] = {}
            self.skip_space()
            if self.peek() == "(":
                self.pos += 1
                positional, named = self.arguments(word, start)
            if word.lower() == "input":
                if layers or input_shape:
                    raise self.fail("input(...) must come first, once", start)
                input_shape = self._input_shape(positional, named, start)
            else:
                try:
                    layers.append(make_layer(word, positional, named))
                except SpecError as error:
                    raise self.fail(str(error), start) from None
            self.skip_space()
        if not layers:
            raise self.fail("the spec has no layers; e.g. 'conv(32,3) relu flatten fc(10)'", 0)
        return ModelSpec(tuple(layers), input_shape)

    def _input_shape(self, positional: list[Any], named: dict, start: int) -> tuple[int, int, int]:
        dims = (
            positional[0]
            if len(positional) == 1 and isinstance(positional[0], tuple)
            else tuple(positional)
        )
        if named or len(dims) != 3 or not all(isinstance(d, int) and d >= 1 for d in dims):
            raise self.fail("input needs channels x height x width, e.g. input(1x28x28)", start)
        return dims


def parse_spec(text: str) -> ModelSpec:
    """Parse the one-line form; a SpecError names the column of the problem."""
    return _Parser(text).parse()


# --- TOML -----------------------------------------------------------------------


def spec_from_toml_dict(data: dict[str, Any], source: str = "TOML") -> ModelSpec:
    """A spec from the parsed TOML mapping: 'input' (optional) and 'layers' (a list of tables)."""
    unknown = set(data) - {"input", "layers", "name", "description"}
    if unknown:
        raise SpecError(
            f"{source}: unknown key(s) {', '.join(sorted(unknown))}; use input and [[layers]]"
        )
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise SpecError(
            f'{source}: no [[layers]] tables; each needs type = "conv" (or relu, fc, ...)'
        )
    input_shape = None
    if "input" in data:
        raw = data["input"]
        raw = format_shape(raw) if isinstance(raw, list) else str(raw)
        input_shape = parse_shape(raw)
    layers = []
    for index, table in enumerate(raw_layers, start=1):
        table = dict(table)
        kind = table.pop("type", None)
        if not isinstance(kind, str):
            raise SpecError(f'{source}: layer {index} has no type = "..." (e.g. type = "conv")')
        try:
            layers.append(make_layer(kind, [], table))
        except SpecError as error:
            raise SpecError(f"{source}: layer {index}: {error}") from None
    return ModelSpec(tuple(layers), input_shape)


def load_spec_toml(path: str | Path) -> ModelSpec:
    """Read a TOML model file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path}: not valid TOML ({error})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: cannot read the model file ({error})") from None
    return spec_from_toml_dict(data, str(path))
