"""THE table of layer kinds: each kind's parameters, aliases and traits, in one place.

Every other table keyed by kind (the analyzers in `analysis.py`, the torch
builders and their way back in `model/layers.py`) is checked against
`LAYER_KINDS` with `require_every_kind` at import, and the parser, the model and
the figures ask a kind's traits (`window_pooling`, `changes_layout`,
`shape_keeping`, `shows_map`, `colour`) instead of keeping their own lists. So a
new kind is one entry here, one analyzer and one builder (plus its way back from
the module when it has parameters); `tests/test_kinds.py` runs over every kind.
Pure Python; no torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cnnlab.errors import SpecError
from cnnlab.i18n import N_, _

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
DEFAULT_COLOUR = "#e0e0e0"  # diagram boxes of kinds without a colour of their own


@dataclass(frozen=True)
class Param:
    """One layer parameter: its name, type, default and other accepted names."""

    name: str
    # count | pair | padding | pool_padding | fraction | float | bool | choice | optional_count
    # | layers (a block's own layers: a tuple of LayerSpec)
    type: str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    help: str = ""  # N_-marked: translate where shown, _(p.help)
    shown: bool = False  # always written in the canonical text, even at its default


@dataclass(frozen=True)
class LayerKind:
    """A layer type of the spec language: its parameters, other names and traits."""

    name: str
    summary: str
    params: tuple[Param, ...] = ()
    positional: tuple[str, ...] = ()  # order of parameters given without a name
    aliases: tuple[str, ...] = ()
    example: str = ""  # the required parameters of an example, e.g. "32, 3" for conv(32, 3)
    # Traits, read by the model, the validator's callers and the figures:
    shape_keeping: bool = False  # output shape == input shape (drawn inside the box before it)
    shows_map: bool = False  # its output is an activation map worth drawing as a grid
    window_pooling: bool = False  # a sliding pooling window whose stride defaults to the kernel
    # New channels or an image turned into a vector; only layers without this may follow
    # the model's last fc (pooling just resamples H and W and fails on a vector on its own).
    changes_layout: bool = False
    colour: str = DEFAULT_COLOUR  # its box in architecture diagrams

    def param(self, name: str) -> Param | None:
        """The parameter called `name` (or one of its aliases)."""
        for p in self.params:
            if name == p.name or name in p.aliases:
                return p
        return None

    @property
    def is_block(self) -> bool:
        """True for a kind that holds layers of its own (res): the parser reads them as layers."""
        return any(p.type == "layers" for p in self.params)

    def example_text(self) -> str:
        """A valid one-line spelling of this kind, e.g. 'conv(32, 3)' or 'relu'."""
        return f"{self.name}({self.example})" if self.example else self.name


def _pool_params(extra: tuple[Param, ...]) -> tuple[Param, ...]:
    return (
        Param(
            "kernel",
            "pair",
            required=True,
            aliases=("kernel_size", "pool_size"),
            help=N_("window size"),
        ),
        Param(
            "stride", "pair", None, aliases=("strides",), help=N_("step (default: the kernel size)")
        ),
        Param("padding", "pool_padding", (0, 0), help=N_("pixels added on each side")),
        *extra,
        Param("ceil_mode", "bool", False, help=N_("round the output size up")),
    )


_CONV_PARAMS = (
    Param(
        "out",
        "count",
        required=True,
        aliases=("out_channels", "filters"),
        help=N_("output channels (filters)"),
    ),
    Param(
        "kernel",
        "pair",
        required=True,
        aliases=("kernel_size",),
        help=N_("filter size k or (k_h,k_w)"),
    ),
    Param("stride", "pair", (1, 1), aliases=("strides",), help=N_("step between windows")),
    Param("padding", "padding", (0, 0), help=N_("p, (p_h,p_w), same or valid")),
    Param(
        "dilation", "pair", (1, 1), aliases=("dilation_rate",), help=N_("gap between kernel taps")
    ),
    Param("groups", "count", 1, help=N_("channel groups (C_in and C_out must divide)")),
    Param("bias", "bool", True, aliases=("use_bias",), help=N_("add a learned bias")),
    Param(
        "padding_mode", "choice", "zeros", choices=PADDING_MODES, help=N_("what the padding holds")
    ),
)
_FC_PARAMS = (
    Param("out", "count", required=True, aliases=("out_features", "units"), help=N_("outputs")),
    Param(
        "in",
        "optional_count",
        None,
        aliases=("in_features",),
        help=N_("inputs (checked; inferred if omitted)"),
    ),
    Param("bias", "bool", True, aliases=("use_bias",), help=N_("add a learned bias")),
)
_POOL = dict(positional=("kernel", "stride", "padding"), example="2", window_pooling=True)
_DILATION = Param("dilation", "pair", (1, 1), help=N_("gap between window taps"))
_ACTIVATION = dict(shape_keeping=True, shows_map=True)


# Parameters of single kinds, outside the LayerKind(...) calls: a nested N_ would hide the
# kind's description from `pybabel extract` (LayerKind:2).
_COUNT_INCLUDE_PAD = Param(
    "count_include_pad", "bool", True, help=N_("padding zeros count in the mean")
)
_BATCHNORM_PARAMS = (
    Param("eps", "float", 1e-5, help=N_("added to the variance")),
    Param("momentum", "fraction", 0.1, help=N_("weight of the newest batch in the running stats")),
)
_LEAKYRELU_PARAMS = (
    Param(
        "slope",
        "float",
        0.01,
        aliases=("negative_slope", "alpha"),
        help=N_("slope below 0"),
        shown=True,
    ),
)
_DROPOUT_PARAMS = (
    Param("p", "fraction", 0.5, aliases=("rate",), help=N_("probability of dropping"), shown=True),
)
_RES_PARAMS = (
    Param("body", "layers", required=True, help=N_("the layers whose output is added")),
    Param(
        "shortcut",
        "layers",
        (),
        aliases=("projection",),
        help=N_("layers the input goes through before the add (default: none, the input itself)"),
    ),
)


def _kinds(*kinds: LayerKind) -> dict[str, LayerKind]:
    return {kind.name: kind for kind in kinds}


LAYER_KINDS: dict[str, LayerKind] = _kinds(
    LayerKind(
        "conv",
        "2-D convolution: C_out filters of C_in/groups x k_h x k_w slide over the input",
        _CONV_PARAMS,
        positional=("out", "kernel", "stride", "padding"),
        aliases=("conv2d", "convolution"),
        example="32, 3",
        shows_map=True,
        changes_layout=True,
        colour="#9ecae1",
    ),
    LayerKind(
        "maxpool",
        "max pooling: the largest value of each window",
        _pool_params((_DILATION,)),
        aliases=("maxpool2d", "max_pool", "maxpooling2d"),
        shows_map=True,
        colour="#fdae6b",
        **_POOL,
    ),
    LayerKind(
        "minpool",
        "min pooling: the smallest value of each window (-maxpool(-x))",
        _pool_params((_DILATION,)),
        aliases=("minpool2d", "min_pool"),
        shows_map=True,
        colour="#fdd0a2",
        **_POOL,
    ),
    LayerKind(
        "avgpool",
        "average pooling: the mean of each window",
        _pool_params((_COUNT_INCLUDE_PAD,)),
        aliases=("avgpool2d", "avg_pool", "averagepooling2d"),
        shows_map=True,
        colour="#fdbe85",
        **_POOL,
    ),
    LayerKind(
        "gap",
        "global average pooling: the mean of each channel (C x H x W -> C)",
        aliases=("globalavgpool", "global_avg_pool", "globalaveragepooling2d"),
        changes_layout=True,
        colour="#c7e9c0",
    ),
    LayerKind(
        "gmp",
        "global max pooling: the largest value of each channel (C x H x W -> C)",
        aliases=("globalmaxpool", "global_max_pool", "globalmaxpooling2d"),
        changes_layout=True,
        colour="#c7e9c0",
    ),
    LayerKind(
        "batchnorm",
        "batch normalisation: per-channel (x - mean)/std * gamma + beta",
        _BATCHNORM_PARAMS,
        aliases=("bn", "batchnorm2d", "batchnormalization"),
        shape_keeping=True,
    ),
    LayerKind("relu", "max(0, x)", **_ACTIVATION),
    # MobileNet and EfficientNet(-Lite): a ceiling of 6 keeps activations small enough for int8.
    LayerKind("relu6", "min(max(0, x), 6)", aliases=("relu_6",), **_ACTIVATION),
    LayerKind(
        "leakyrelu",
        "x if x > 0 else slope*x",
        _LEAKYRELU_PARAMS,
        positional=("slope",),
        aliases=("leaky_relu", "lrelu"),
        **_ACTIVATION,
    ),
    LayerKind("sigmoid", "1/(1 + e^-x)", **_ACTIVATION),
    LayerKind("tanh", "(e^x - e^-x)/(e^x + e^-x)", **_ACTIVATION),
    LayerKind("gelu", "x * Phi(x), Phi the normal CDF", **_ACTIVATION),
    LayerKind(
        "dropout",
        "during training, zero each value with probability p (and scale the rest by 1/(1-p))",
        _DROPOUT_PARAMS,
        positional=("p",),
        shape_keeping=True,
    ),
    LayerKind(
        "flatten",
        "C x H x W -> C*H*W per image (the batch dimension stays)",
        changes_layout=True,
        colour="#e5e5e5",
    ),
    LayerKind(
        "fc",
        "fully connected: every output is a weighted sum of every input",
        _FC_PARAMS,
        positional=("out",),
        aliases=("linear", "dense", "fullyconnected"),
        example="10",
        colour="#bcbddc",
    ),
    LayerKind(
        "res",
        "residual block: its layers' output plus its input (or plus its shortcut's output)",
        _RES_PARAMS,
        positional=("body",),
        aliases=("residual", "resblock"),
        example="conv(4, 3, padding=same), shortcut=conv(4, 1)",
        shows_map=True,
        changes_layout=True,  # a projection shortcut may change the channels
        colour="#f4cae4",
    ),
    LayerKind(
        "softmax",
        "e^x_i / sum_j e^x_j: class probabilities that sum to 1",
        shape_keeping=True,
    ),
)

_KIND_BY_ALIAS: dict[str, str] = {
    alias: kind.name for kind in LAYER_KINDS.values() for alias in (kind.name, *kind.aliases)
}


def resolve_kind(name: str) -> LayerKind:
    """The layer kind for a name or alias (any case); a SpecError suggests near names."""
    key = name.lower()
    if key in _KIND_BY_ALIAS:
        return LAYER_KINDS[_KIND_BY_ALIAS[key]]
    close = difflib.get_close_matches(key, list(_KIND_BY_ALIAS), n=3)
    hint = _(" Did you mean {names}?").format(names=_(" or ").join(close)) if close else ""
    raise SpecError(
        _("unknown layer '{name}'.{hint} Layers: {layers}").format(
            name=name, hint=hint, layers=", ".join(LAYER_KINDS)
        )
    )


def require_every_kind(kinds: Iterable[str], table: str) -> None:
    """Fail at import when a per-kind table (`table` names it) misses a kind or has a stray one."""
    given = set(kinds)
    missing, extra = set(LAYER_KINDS) - given, given - set(LAYER_KINDS)
    if missing or extra:
        raise AssertionError(
            f"{table}: missing kinds {sorted(missing)}, kinds not in LAYER_KINDS {sorted(extra)}"
        )
