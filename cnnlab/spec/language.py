"""The one-line spec language: the parser, `LayerSpec`/`ModelSpec` and their canonical text.

    input(1x28x28) conv(32,3,padding=same) relu maxpool(2) flatten dropout(0.5) fc(10)

`make_layer` checks and normalises every parameter (defaults filled in,
kernels as (h, w) pairs) against the kind's entry in `kinds.py`, so two
spellings of one model compare equal; a parse error names the column and draws
a caret under it. The TOML spelling is read and written in `toml.py`, shapes
are worked out in `analysis.py`, torch modules are built in `model/layers.py`.
Pure Python; no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import SpecError
from cnnlab.i18n import N_, _
from cnnlab.spec.kinds import LAYER_KINDS, LayerKind, Param, resolve_kind
from cnnlab.text import SHOWN_CHARS, clipped

# The largest count or size a spec may hold (channels, features, kernel, input side...). Far
# beyond any model that fits in memory, and small enough that every shape, parameter count and
# formula built from such numbers stays a short number in messages and summaries.
MAX_NUMBER = 1_000_000_000
_TOO_LARGE = N_("counts and sizes in a spec are at most {max}")  # _too_large() shows it
# Groups such as (3,5) nest one deep; a few levels are allowed, thousands would exhaust the stack.
MAX_NESTING = 8


@dataclass(frozen=True)
class LayerSpec:
    """One layer: its kind and every parameter, normalised (pairs as (h, w))."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def written(self) -> list[tuple[Param, Any]]:
        """The parameters a canonical spelling writes: required, always shown, or off their default."""
        return [
            (p, self.params[p.name])
            for p in LAYER_KINDS[self.kind].params
            if p.required or p.shown or not _is_default(self, p, self.params[p.name])
        ]

    def text(self) -> str:
        """Canonical one-line text, e.g. 'conv(32, 3, padding=same)'."""
        parts = [
            _format_value(value) if p.required or p.shown else f"{p.name}={_format_value(value)}"
            for p, value in self.written()
        ]
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


def format_shape(shape: tuple[int, ...]) -> str:
    """(1, 28, 28) -> '1x28x28'."""
    return "x".join(str(n) for n in shape)


def _too_large() -> str:
    """Why a number is refused, in the current language."""
    return _(_TOO_LARGE).format(max=MAX_NUMBER)


def _found(char: str, end: str = N_("the end of the spec")) -> str:
    """What the parser found instead: "'x'", or the end (`end`, translated here)."""
    return f"'{char}'" if char else _(end)


def parse_shape(text: str) -> tuple[int, int, int]:
    """'1x28x28' or '1,28,28' -> (1, 28, 28); a SpecError says what is wrong."""
    parts = text.replace(",", "x").replace("X", "x").split("x")
    try:  # more digits than MAX_NUMBER has cannot be a size (and int() of 5000 digits raises)
        dims = tuple(int(p) if len(p) <= 12 else MAX_NUMBER + 1 for p in parts)
    except ValueError:
        dims = ()
    if len(dims) == 3 and max(dims) > MAX_NUMBER:
        raise SpecError(_("input shape is too large: {why}").format(why=_too_large()))
    if len(dims) != 3 or min(dims) < 1:
        raise SpecError(
            _(
                "input shape '{text}' is not CxHxW with positive whole numbers: "
                "write channels x height x width, e.g. 1x28x28 (grayscale) or 3x32x32 (RGB)"
            ).format(text=clipped(text))
        )
    return dims  # type: ignore[return-value]


# --- values ---------------------------------------------------------------------


def _is_default(layer: LayerSpec, p: Param, value: Any) -> bool:
    # A pooling window's stride defaults to its kernel, so a stride equal to the kernel is the default.
    if p.name == "stride" and LAYER_KINDS[layer.kind].window_pooling:
        return value == layer.params["kernel"]
    return value == p.default


def _format_value(value: Any) -> str:
    if _is_layers(value):  # a block's layers, as the one-line spec writes them
        return " ".join(layer.text() for layer in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        if len(value) == 2 and value[0] == value[1]:
            return str(value[0])
        return "(" + ",".join(str(v) for v in value) + ")"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _is_layers(value: Any) -> bool:
    return isinstance(value, tuple) and bool(value) and isinstance(value[0], LayerSpec)


def _describe(value: Any) -> str:
    return f"'{clipped(value)}'" if isinstance(value, str) else clipped(repr(value))


def _normalise(kind: LayerKind, p: Param, value: Any) -> Any:
    """Check one raw parameter value against its type and return it normalised."""
    where = f"{kind.name}: {p.name}={_describe(value)}"
    t = p.type
    if t == "optional_count" and value is None:
        return None
    if t in ("count", "optional_count"):
        return _count(where, p, value)
    if t in ("pair", "pool_padding"):
        return _pair(where, p, value, minimum=1 if t == "pair" else 0)
    if t == "padding":
        return _padding(where, p, value)
    if t in ("float", "fraction"):
        return _number(where, p, value)
    if t == "bool":
        return _bool(where, value)
    if t == "layers":
        return _layers(kind, p, value)
    if t == "choice":
        if not isinstance(value, str) or value.lower() not in p.choices:
            raise SpecError(
                _("{where} must be one of: {choices}").format(
                    where=where, choices=", ".join(p.choices)
                )
            )
        return value.lower()
    raise AssertionError(f"unknown parameter type {t}")


def _count(where: str, p: Param, v: Any, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        rule = (
            _("{where} must be a positive whole number ({help})")
            if minimum == 1
            else _("{where} must be a whole number >= 0 ({help})")
        )
        raise SpecError(rule.format(where=where, help=_(p.help)))
    if v > MAX_NUMBER:  # from TOML or make_layer; the one-line parser stops them earlier
        raise SpecError(_("{name} is too large: {why}").format(name=p.name, why=_too_large()))
    return v


def _pair(where: str, p: Param, v: Any, minimum: int = 1) -> tuple[int, int]:
    """k or (k_h, k_w) -> (k_h, k_w)."""
    if isinstance(v, list | tuple):
        if len(v) != 2:
            raise SpecError(
                _("{where} must be one number or two (height, width), e.g. 3 or (3,5)").format(
                    where=where
                )
            )
        return _count(where, p, v[0], minimum), _count(where, p, v[1], minimum)
    n = _count(where, p, v, minimum)
    return n, n


def _padding(where: str, p: Param, value: Any) -> str | tuple[int, int]:
    """'same' stays a word (worked out per input size); 'valid' is (0, 0)."""
    if isinstance(value, str):
        if value.lower() == "same":
            return "same"
        if value.lower() == "valid":
            return (0, 0)
        raise SpecError(_("{where} must be a number, (p_h,p_w), same or valid").format(where=where))
    return _pair(where, p, value, minimum=0)


def _number(where: str, p: Param, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(_("{where} must be a number ({help})").format(where=where, help=_(p.help)))
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise SpecError(
            _("{name} must be a finite number: {why}").format(name=p.name, why=_too_large())
        )
    if p.type == "fraction" and not 0 <= value < 1:
        raise SpecError(
            _("{where} must be at least 0 and below 1 ({help})").format(where=where, help=_(p.help))
        )
    if p.type == "float" and p.name == "eps" and value <= 0:
        raise SpecError(_("{where} must be above 0 ({help})").format(where=where, help=_(p.help)))
    return float(value)


def _layers(kind: LayerKind, p: Param, value: Any) -> tuple[LayerSpec, ...]:
    """A block's own layers: LayerSpecs (parsed already), at least one for the body, none a block."""
    layers = tuple(value) if isinstance(value, list | tuple) else (value,)
    if not all(isinstance(layer, LayerSpec) for layer in layers):
        raise SpecError(
            _("{kind}: {param} must be layers, e.g. {example}").format(
                kind=kind.name, param=p.name, example=f"{kind.name}(conv(16,3,padding=same) relu)"
            )
        )
    if p.required and not layers:
        raise SpecError(
            _("{kind} needs its layers, e.g. {example}").format(
                kind=kind.name, example=kind.example_text()
            )
        )
    for layer in layers:
        if LAYER_KINDS[layer.kind].is_block:
            raise SpecError(_no_nesting(kind.name, layer.kind))
    return layers


def _bool(where: str, value: Any) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, bool):
        return value
    raise SpecError(_("{where} must be true or false").format(where=where))


def _no_nesting(block: str, inner: str) -> str:
    return _(
        "{block} blocks do not nest: a {block} holds ordinary layers; "
        "write the inner {inner}(...) after this block, at the top level"
    ).format(block=block, inner=inner)


def make_layer(
    name: str, positional: list[Any] = (), named: dict[str, Any] | None = None
) -> LayerSpec:
    """Build a normalised LayerSpec from raw values, checking every parameter."""
    kind = resolve_kind(name)
    values = _raw_values(kind, positional, dict(named or {}))
    params: dict[str, Any] = {}
    for p in kind.params:
        if p.name in values:
            params[p.name] = _normalise(kind, p, values[p.name])
        elif p.required:
            raise SpecError(
                _("{kind} needs {param} ({help}), e.g. {example}").format(
                    kind=kind.name, param=p.name, help=p.help, example=kind.example_text()
                )
            )
        else:
            params[p.name] = p.default
    if kind.window_pooling and params["stride"] is None:
        params["stride"] = params["kernel"]
    return LayerSpec(kind.name, params)


def _raw_values(kind: LayerKind, positional: list[Any], named: dict[str, Any]) -> dict[str, Any]:
    """Positional and named values under their parameters' own names, not yet checked."""
    if len(positional) > len(kind.positional):
        if not kind.positional:
            raise SpecError(
                _("{kind} takes no parameters, got {count}").format(
                    kind=kind.name, count=len(positional)
                )
            )
        raise SpecError(
            _(
                "{kind} takes at most {most} parameters without names ({names}), got {count}: "
                "name the rest, e.g. dilation=2"
            ).format(
                kind=kind.name,
                most=len(kind.positional),
                names=", ".join(kind.positional),
                count=len(positional),
            )
        )
    values = dict(zip(kind.positional, positional, strict=False))
    for key, value in named.items():
        p = kind.param(key)
        if p is None:
            known = ", ".join(q.name for q in kind.params) or "none"
            raise SpecError(
                _("{kind} has no parameter '{key}' (its parameters: {known})").format(
                    kind=kind.name, key=key, known=known
                )
            )
        if p.name in values:
            raise SpecError(
                _("{kind}: {param} is given twice").format(kind=kind.name, param=p.name)
            )
        values[p.name] = value
    return values


# --- one-line parser ------------------------------------------------------------


class _Parser:
    """Recursive descent over one line; errors carry the column and a caret."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.depth = 0  # groups open around the current value

    def fail(self, message: str, pos: int | None = None) -> SpecError:
        at = self.pos if pos is None else pos
        start = max(0, at - SHOWN_CHARS)  # the line around the column, not all of it
        line = self.text[start : at + SHOWN_CHARS].replace("\n", " ")
        before = "..." if start else ""
        after = "..." if at + SHOWN_CHARS < len(self.text) else ""
        caret = " " * (len(before) + at - start)
        shown = f"\n  {before}{line}{after}\n  {caret}^"
        return SpecError(
            _("spec error at column {column}: {message}").format(column=at + 1, message=message)
            + shown
        )

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str, context: str) -> None:
        """Move past `char`, or fail; `context` (N_-marked) says what it is for."""
        self.skip_space()
        if self.peek() != char:
            raise self.fail(
                _("expected '{char}' {context}, found {found}").format(
                    char=char, context=_(context), found=_found(self.peek())
                )
            )
        self.pos += 1

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and (
            self.text[self.pos].isalnum() or self.text[self.pos] == "_"
        ):
            self.pos += 1
        if start == self.pos:
            raise self.fail(
                _("expected a layer name such as conv, relu or fc, found {found}").format(
                    found=_found(self.peek(), N_("the end"))
                )
            )
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
        shown = token if len(token) <= 40 else token[:37] + "..."
        try:
            if "x" in token:
                return tuple(self.whole(part, start) for part in token.split("x"))
            if "*" in token:
                product = 1
                for factor in token.split("*"):
                    product *= self.whole(factor, start)
                    if product > MAX_NUMBER:  # checked as it grows: no huge int is ever built
                        raise self.fail(_too_large_token(shown), start)
                return product
            if any(c in token for c in ".eE"):
                return float(token)
            return self.whole(token, start)
        except ValueError:
            raise self.fail(_("'{token}' is not a number").format(token=shown), start) from None

    def whole(self, digits: str, start: int) -> int:
        """A whole number of at most MAX_NUMBER, refused before int() would build a huge one."""
        value = int(digits) if len(digits.lstrip("+-0")) <= 12 else MAX_NUMBER + 1
        if value > MAX_NUMBER:
            shown = digits if len(digits) <= 40 else digits[:37] + "..."
            raise self.fail(_too_large_token(shown), start)
        return value

    def value(self) -> Any:
        self.skip_space()
        c = self.peek()
        if c == "(" or c == "[":
            return self.group(")" if c == "(" else "]")
        if c.isdigit() or c in "-+.":
            return self.number()
        if c.isalpha():
            return self.name()
        raise self.fail(
            _("expected a value (number, (h,w) or a word such as same), found {found}").format(
                found=_found(c)
            )
        )

    def group(self, close: str) -> tuple:
        """(a, b, ...) or [a, b, ...], nested at most MAX_NESTING deep."""
        if self.depth >= MAX_NESTING:
            raise self.fail(
                _(
                    "groups nest more than {most} deep: a value is a number or a group "
                    "such as (3,5); remove the extra parentheses"
                ).format(most=MAX_NESTING)
            )
        self.depth += 1
        self.pos += 1
        items = [self.value()]
        self.skip_space()
        while self.peek() == ",":
            self.pos += 1
            items.append(self.value())
            self.skip_space()
        self.expect(close, N_("to close the group"))
        self.depth -= 1
        return tuple(items)

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
                        raise self.fail(_("'{name}' is given twice").format(name=word), start)
                    named[word] = self.value()
                else:
                    if named:
                        raise self.fail(
                            _("a value without a name after named ones: name it"), start
                        )
                    positional.append(word)
            else:
                if named:
                    raise self.fail(_("a value without a name after named ones: name it"), start)
                positional.append(self.value())
            if self.closed(_("the parameter list"), layer, opened_at):
                return positional, named

    def parse(self) -> ModelSpec:
        layers: list[LayerSpec] = []
        input_shape = None
        self.skip_space()
        while self.pos < len(self.text):
            word, positional, named, start = self.layer()
            if word.lower() == "input":
                if layers or input_shape:
                    raise self.fail(_("input(...) must come first, once"), start)
                input_shape = self._input_shape(positional, named, start)
            else:
                layers.append(self.make(word, positional, named, start))
            self.skip_space()
        if not layers:
            raise self.fail(_("the spec has no layers; e.g. 'conv(32,3) relu flatten fc(10)'"), 0)
        return ModelSpec(tuple(layers), input_shape)

    def layer(self, block: str = "") -> tuple[str, list[Any], dict[str, Any], int]:
        """One layer's name and raw values, and its column; `block` names the block it sits in."""
        start = self.pos
        word = self.name()
        is_block = _is_block(word)
        if is_block and block:
            raise self.fail(_no_nesting(block, word), start)
        positional: list[Any] = []
        named: dict[str, Any] = {}
        self.skip_space()
        if self.peek() == "(":
            self.pos += 1
            if is_block:
                positional, named = self.block_arguments(word, start)
            else:
                positional, named = self.arguments(word, start)
        return word, positional, named, start

    def make(
        self, word: str, positional: list[Any], named: dict[str, Any], start: int
    ) -> LayerSpec:
        """make_layer, its error pointing at the layer's column."""
        try:
            return make_layer(word, positional, named)
        except SpecError as error:
            raise self.fail(str(error), start) from None

    def block_arguments(self, block: str, opened_at: int) -> tuple[list[Any], dict[str, Any]]:
        """res(LAYERS) or res(LAYERS, shortcut=LAYERS): layers separated by spaces, lists by ','."""
        positional: list[Any] = []
        named: dict[str, Any] = {}
        while True:
            self.skip_space()
            start = self.pos
            key = self.key()
            if key is None and (named or positional):
                raise self.fail(
                    _(
                        "{block}(...) has one list of layers without a name; name the next one, "
                        "e.g. {example}"
                    ).format(
                        block=block,
                        example=f"{block}(conv(32,3,stride=2,padding=same), "
                        "shortcut=conv(32,1,stride=2))",
                    ),
                    start,
                )
            if key in named:
                raise self.fail(_("'{name}' is given twice").format(name=key), start)
            layers = self.sequence(block, opened_at)
            if key is None:
                positional.append(layers)
            else:
                named[key] = layers
            if self.closed(f"{block}(...)", block, opened_at):
                return positional, named

    def closed(self, where: str, name: str, opened_at: int) -> bool:
        """After an item of a list: ',' (more follow: False) or ')' (its end: True); anything
        else is an error that names the '(' left open."""
        self.skip_space()
        if self.peek() == ",":
            self.pos += 1
            return False
        if self.peek() == ")":
            self.pos += 1
            return True
        raise self.fail(
            _(
                "expected ',' or ')' in {where}, found {found} "
                "(is a ')' missing to close '{name}(' from column {column}?)"
            ).format(where=where, found=_found(self.peek()), name=name, column=opened_at + 1)
        )

    def key(self) -> str | None:
        """The name before '=' (moving past both), or None (staying put) when no name= comes."""
        start = self.pos
        if self.peek().isalpha():
            word = self.name()
            self.skip_space()
            if self.peek() == "=":
                self.pos += 1
                return word
        self.pos = start
        return None

    def sequence(self, block: str, opened_at: int) -> tuple[LayerSpec, ...]:
        """Layers separated by spaces inside a block, up to the next ',' or ')'."""
        layers: list[LayerSpec] = []
        self.skip_space()
        while self.peek() not in (",", ")", ""):
            word, positional, named, start = self.layer(block)
            if word.lower() == "input":
                raise self.fail(
                    _("input(...) comes first in the spec, not inside {block}(...)").format(
                        block=block
                    ),
                    start,
                )
            layers.append(self.make(word, positional, named, start))
            self.skip_space()
        if not layers:
            raise self.fail(
                _("expected layers inside {block}(...), found {found}; e.g. {example}").format(
                    block=block,
                    found=_found(self.peek()),
                    example=f"{block}(conv(16,3,padding=same) batchnorm relu conv(16,3,padding=same))",
                )
            )
        return tuple(layers)

    def _input_shape(self, positional: list[Any], named: dict, start: int) -> tuple[int, int, int]:
        dims = (
            positional[0]
            if len(positional) == 1 and isinstance(positional[0], tuple)
            else tuple(positional)
        )
        if named or len(dims) != 3 or not all(isinstance(d, int) and d >= 1 for d in dims):
            raise self.fail(_("input needs channels x height x width, e.g. input(1x28x28)"), start)
        return dims


def _too_large_token(token: str) -> str:
    return _("'{token}' is too large: {why}").format(token=token, why=_too_large())


def _is_block(word: str) -> bool:
    """Whether a layer name is a block kind (res), whose values are layers; unknown names are not."""
    try:
        return resolve_kind(word).is_block
    except SpecError:
        return False


def parse_spec(text: str) -> ModelSpec:
    """Parse the one-line form; a SpecError names the column of the problem."""
    return _Parser(text).parse()
