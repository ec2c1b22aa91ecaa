"""Walk a spec layer by layer with `shapes.py`: every shape, parameter count, FLOPs and receptive field.

This is also the validator: an impossible model raises a SpecError naming the
layer, the input it gets, the formula that fails and a fix, before any tensor
exists. Pure Python; no torch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from cnnlab.errors import SpecError
from cnnlab.i18n import N_, _
from cnnlab.spec import shapes
from cnnlab.spec.kinds import require_every_kind
from cnnlab.spec.language import LayerSpec, ModelSpec, format_shape

Shape = tuple[int, ...]  # per image: (C, H, W) before flatten, (F,) after
BYTES_PER_VALUE = 4  # float32 activations
# A res block's two branches as its messages name them ('res block 1 (layer 2), body layer 1 ...')
BRANCHES = {"body": N_("body"), "shortcut": N_("shortcut")}


@dataclass
class LayerReport:
    """What one layer does to the shape, and what it costs, with the arithmetic shown."""

    index: int  # 1-based position in the spec
    name: str  # conv1, relu1, maxpool1, ...: the module name in the built model
    layer: LayerSpec
    in_shape: Shape
    out_shape: Shape
    formulas: list[str] = field(default_factory=list)  # output-size arithmetic
    params: int = 0
    params_formula: str = ""
    macs: int = 0  # multiply-adds per image
    # per image: 2 per multiply-add; 1 per compared/added window element or activation
    flops: int = 0
    # receptive field (height, width) in input pixels; None = the whole input
    rf: tuple[int, int] | None = None
    jump: tuple[int, int] | None = None  # input pixels between neighbouring outputs (height, width)
    rf_formula: str = ""
    notes: list[str] = field(default_factory=list)
    # Inside a block: 'res block 2 (layer 5), body ' for messages; its branch, body or shortcut.
    place: str = ""
    branch: str = ""
    # A block's (res) own layers' reports, body then shortcut; the block's params, macs and
    # flops include theirs (its flops also the add), so totals over the top level count all.
    inner: list[LayerReport] = field(default_factory=list)

    @property
    def label(self) -> str:
        """'layer 3 conv(64, 3, padding=same)' (in a block: 'res block 1 (layer 2), body layer 3 ...')."""
        return _("{place}layer {index} {layer}").format(
            place=self.place, index=self.index, layer=self.layer.text()
        )

    @property
    def add_flops(self) -> int:
        """A block's own FLOPs: the add (its flops less its layers')."""
        return self.flops - sum(r.flops for r in self.inner)


@dataclass
class ModelReport:
    """Every layer's report and the totals."""

    spec: ModelSpec
    layers: list[LayerReport]

    @property
    def input_shape(self) -> Shape:
        return self.spec.input_shape

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].out_shape

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.layers)

    @property
    def total_flops(self) -> int:
        return sum(r.flops for r in self.layers)

    @property
    def activation_bytes(self) -> int:
        """Float32 bytes of every layer's output for one image (what a forward pass keeps for backward)."""
        return sum(_numel(r.out_shape) for r in self.every_layer()) * BYTES_PER_VALUE

    def every_layer(self) -> list[LayerReport]:
        """Every report, a block's own layers (named res1.body.conv1, ...) just before the block."""
        return [inner for r in self.layers for inner in (*r.inner, r)]

    def _repr_html_(self) -> str:
        """The summary table in a notebook cell (summary.py imports this module: imported here)."""
        from cnnlab.spec.summary import summary_html

        return summary_html(self)


def _numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def describe_shape(shape: Shape) -> str:
    """(64, 7, 7) -> '64x7x7'; (3136,) -> '3136'."""
    return format_shape(shape)


def layer_names(spec: ModelSpec, prefix: str = "") -> list[str]:
    """conv1, relu1, maxpool1, conv2, ...: one counter per layer kind (in a block, after `prefix`).

    A kind ending in a digit takes '_' before its count: relu6_1, not relu61.
    """
    counts: Counter[str] = Counter()
    names = []
    for layer in spec.layers:
        counts[layer.kind] += 1
        joint = "_" if layer.kind[-1].isdigit() else ""
        names.append(f"{prefix}{layer.kind}{joint}{counts[layer.kind]}")
    return names


def analyze(spec: ModelSpec, input_shape: Shape | None = None) -> ModelReport:
    """Report every layer of `spec`; raises SpecError for a model that cannot work."""
    if input_shape is not None:
        spec = spec.with_input(tuple(input_shape))
    if spec.input_shape is None:
        raise SpecError(
            _(
                "the model has no input shape: give it, e.g. --input 1x28x28, "
                "or start the spec with input(1x28x28)"
            )
        )
    return ModelReport(spec, _walk(spec, layer_names(spec), (1, 1), (1, 1)))


def _walk(
    spec: ModelSpec,
    names: list[str],
    rf: tuple[int, int] | None,
    jump: tuple[int, int] | None,
    place: str = "",
) -> list[LayerReport]:
    """Each layer's report in turn from spec.input_shape; a block walks its own layers with it."""
    shape: Shape = tuple(spec.input_shape)
    reports = []
    for index, (layer, name) in enumerate(zip(spec.layers, names, strict=True), start=1):
        report = LayerReport(index, name, layer, shape, shape, place=place)
        report.rf, report.jump = rf, jump
        _ANALYZERS[layer.kind](report, spec)
        reports.append(report)
        shape, rf, jump = report.out_shape, report.rf, report.jump
    return reports


def branch_reports(block: LayerReport, branch: str) -> list[LayerReport]:
    """A block's body or shortcut reports (empty for an identity shortcut)."""
    return [r for r in block.inner if r.branch == branch]


def seen_window(r: LayerReport, input_shape: Shape) -> tuple[int, int]:
    """Input pixels (h, w) one output value of `r` depends on: the receptive field as the formula
    gives it (`shapes.receptive_field`), or the whole input for a flat or globally pooled output.

    Not clipped to the image: the window is the same size for every cell, and where it reaches
    past the border it covers padding (zeros), not more image. Clipping would make it depend on
    the cell (conv4 of `default` at 32x32: cell (0, 0) covers 23 image rows, cell (1, 1) 31).
    """
    return (input_shape[1], input_shape[2]) if r.rf is None else r.rf


def seen_text(window: tuple[int, int], image: tuple[int, int]) -> str:
    """'18x18 px', or '38x38 px (more than the 32x32 image: ...)' for a `seen_window` on an
    image of (height, width): what `cnnlab cam` and `cnnlab patches` say one cell sees."""
    (h, w), (height, width) = window, image
    size = f"{h}x{w} px"
    if h <= height and w <= width:
        return size
    return _(
        "{size} (more than the {image} image: each window reaches past its border into the padding)"
    ).format(size=size, image=f"{height}x{width}")


def validate(spec: ModelSpec, input_shape: Shape | None = None) -> ModelSpec:
    """The spec with its input shape, once `analyze` accepts it; raises SpecError otherwise."""
    return analyze(spec, input_shape).spec


# --- per-kind analysis ----------------------------------------------------------


def _fail(r: LayerReport, why: str, fix: str) -> SpecError:
    return SpecError(
        _("{layer} gets {shape}: {why}\n  fix: {fix}").format(
            layer=r.label, shape=describe_shape(r.in_shape), why=why, fix=fix
        )
    )


def _need_image(r: LayerReport) -> tuple[int, int, int]:
    if len(r.in_shape) != 3:
        raise _fail(
            r,
            _("{kind} needs channels x height x width, but its input is a flat vector").format(
                kind=r.layer.kind
            ),
            _("move {kind} before flatten (or before the layer that made the vector)").format(
                kind=r.layer.kind
            ),
        )
    return r.in_shape  # type: ignore[return-value]


def _axis_text(h_text: str, w_text: str) -> list[str]:
    if h_text == w_text:
        return [f"H, W: {h_text}"]
    return [f"H: {h_text}", f"W: {w_text}"]


def _sliding_rf(
    r: LayerReport, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> None:
    """Receptive field and jump, per axis, after a sliding-window layer."""
    if r.rf is None:
        return
    (rf_h, jump_h), h_text = shapes.receptive_field_worked(
        r.rf[0], r.jump[0], kernel[0], stride[0], dilation[0]
    )
    (rf_w, jump_w), w_text = shapes.receptive_field_worked(
        r.rf[1], r.jump[1], kernel[1], stride[1], dilation[1]
    )
    r.rf, r.jump = (rf_h, rf_w), (jump_h, jump_w)
    r.rf_formula = "; ".join(_axis_text(h_text, w_text))


def _conv(r: LayerReport, spec: ModelSpec) -> None:
    p = r.layer.params
    c_in, h, w = _need_image(r)
    (kh, kw), (sh, sw), (dh, dw) = p["kernel"], p["stride"], p["dilation"]
    groups = p["groups"]
    if c_in % groups or p["out"] % groups:
        raise _fail(
            r,
            _(
                "groups={groups} must divide both the {c_in} input channels and the {c_out} "
                "output channels"
            ).format(groups=groups, c_in=c_in, c_out=p["out"]),
            _("choose groups among {divisors}").format(divisors=_common_divisors(c_in, p["out"])),
        )
    if p["padding"] == "same":
        (pt, pb), h_pad_text = shapes.same_padding_worked(h, kh, sh, dh)
        (pl, pr), w_pad_text = shapes.same_padding_worked(w, kw, sw, dw)
        r.notes += _axis_text(h_pad_text, w_pad_text)
    else:
        pt, pl = p["padding"]
        pb, pr = pt, pl
    _check_padding_mode(r, p["padding_mode"], h, w, max(pt, pb), max(pl, pr))
    out_h = shapes.conv_output_size_worked(h, kh, sh, pt, dh, pb)
    out_w = shapes.conv_output_size_worked(w, kw, sw, pl, dw, pr)
    r.formulas = _axis_text(out_h.text, out_w.text)
    if out_h.value < 1 or out_w.value < 1:
        raise _fail(
            r,
            _("the output would be {size} pixels: {formulas}").format(
                size=f"{out_h.value}x{out_w.value}", formulas="; ".join(r.formulas)
            ),
            _(
                "add padding (e.g. padding=same), use a smaller kernel, stride or dilation, "
                "remove a pooling layer before it, or give a larger input"
            ),
        )
    r.out_shape = (p["out"], out_h.value, out_w.value)
    r.params, r.params_formula = shapes.conv_params_worked(
        c_in, p["out"], kh, kw, groups, p["bias"]
    )
    r.macs = shapes.conv_macs(c_in, p["out"], kh, kw, groups, out_h.value, out_w.value)
    r.flops = 2 * r.macs
    _sliding_rf(r, (kh, kw), (sh, sw), (dh, dw))


def _check_padding_mode(r: LayerReport, mode: str, h: int, w: int, pad_h: int, pad_w: int) -> None:
    if mode == "reflect" and (pad_h >= h or pad_w >= w):
        raise _fail(
            r,
            _(
                "reflect padding of {padding} must be smaller than the {size} input it mirrors"
            ).format(padding=f"{pad_h}x{pad_w}", size=f"{h}x{w}"),
            _("use less padding, padding_mode=replicate or zeros, or a larger input"),
        )
    if mode == "circular" and (pad_h > h or pad_w > w):
        raise _fail(
            r,
            _(
                "circular padding of {padding} would wrap around the {size} input more than once"
            ).format(padding=f"{pad_h}x{pad_w}", size=f"{h}x{w}"),
            _("use at most as much padding as the input is wide, or padding_mode=zeros"),
        )


def _common_divisors(a: int, b: int) -> str:
    return ", ".join(str(g) for g in range(1, min(a, b) + 1) if a % g == 0 and b % g == 0)


def _pool(r: LayerReport, spec: ModelSpec) -> None:
    p = r.layer.params
    c, h, w = _need_image(r)
    (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["padding"]
    dh, dw = p.get("dilation", (1, 1))
    limits = shapes.pool_padding_limit(kh), shapes.pool_padding_limit(kw)
    if ph > limits[0] or pw > limits[1]:
        limit = f"{limits[0]}x{limits[1]}"
        raise _fail(
            r,
            _(
                "padding {padding} is larger than half the kernel, floor(k/2) = {limit}: "
                "some windows would hold only padding"
            ).format(padding=f"{ph}x{pw}", limit=limit),
            _("use padding of at most {limit}, or a larger kernel").format(limit=limit),
        )
    out_h = shapes.pool_output_size_worked(h, kh, sh, ph, dh, p["ceil_mode"])
    out_w = shapes.pool_output_size_worked(w, kw, sw, pw, dw, p["ceil_mode"])
    r.formulas = _axis_text(out_h.text, out_w.text)
    if out_h.value < 1 or out_w.value < 1:
        raise _fail(
            r,
            _("the output would be {size} pixels: {formulas}").format(
                size=f"{out_h.value}x{out_w.value}", formulas="; ".join(r.formulas)
            ),
            _(
                "the window ({window}) is larger than the input: use a smaller window, remove an "
                "earlier pooling layer, add padding to earlier layers, or give a larger input"
            ).format(window=f"{kh}x{kw}"),
        )
    r.out_shape = (c, out_h.value, out_w.value)
    r.flops = shapes.pool_ops(c, out_h.value, out_w.value, kh, kw)
    r.params_formula = "no weights"
    _sliding_rf(r, (kh, kw), (sh, sw), (dh, dw))


def _global_pool(r: LayerReport, spec: ModelSpec) -> None:
    c, h, w = _need_image(r)
    r.out_shape = (c,)
    r.formulas = [
        _("one value per channel over {size}: {channels}").format(size=f"{h}x{w}", channels=c)
    ]
    r.flops = c * h * w
    r.rf, r.jump, r.rf_formula = None, None, "the whole input"


def _batchnorm(r: LayerReport, spec: ModelSpec) -> None:
    channels = r.in_shape[0]
    r.params = 2 * channels
    r.params_formula = (
        f"gamma and beta per channel: 2*{channels} = {r.params} (+ running mean/var, not learned)"
    )
    r.flops = 2 * _numel(r.in_shape)


def _elementwise(cost: int):
    def analyze_layer(r: LayerReport, spec: ModelSpec) -> None:
        r.flops = cost * _numel(r.in_shape)

    return analyze_layer


def _flatten(r: LayerReport, spec: ModelSpec) -> None:
    if len(r.in_shape) == 3:
        worked = shapes.flatten_size_worked(*r.in_shape)
        r.out_shape = (worked.value,)
        r.formulas = [worked.text]


def _fc(r: LayerReport, spec: ModelSpec) -> None:
    p = r.layer.params
    if len(r.in_shape) != 1:
        raise _fail(
            r,
            _("fc needs a flat vector per image"),
            _(
                "add flatten before it (it gives {values} values and keeps the batch dimension), "
                "or gap for one value per channel"
            ).format(values=shapes.flatten_size_worked(*r.in_shape).text),
        )
    n_in = r.in_shape[0]
    if p["in"] is not None and p["in"] != n_in:
        raise SpecError(_fc_mismatch(r, spec, n_in))
    r.out_shape = (p["out"],)
    r.formulas = [f"in = {n_in} ({'declared and checked' if p['in'] else 'inferred'})"]
    r.params, r.params_formula = shapes.fc_params_worked(n_in, p["out"], p["bias"])
    r.macs = n_in * p["out"]
    r.flops = 2 * r.macs
    r.rf, r.jump, r.rf_formula = None, None, "the whole input"


def _fc_mismatch(r: LayerReport, spec: ModelSpec, n_in: int) -> str:
    declared = r.layer.params["in"]
    source = n_in
    prefix = spec.layers[: r.index - 1]
    flat = _flat_source(prefix, spec.input_shape)
    where = f" = {describe_shape(flat)}" if flat else ""
    message = _(
        "{layer} declares in={declared} inputs, but gets {source}{where} (on a {shape} input)."
    ).format(
        layer=r.label,
        declared=declared,
        source=source,
        where=where,
        shape=describe_shape(spec.input_shape),
    )
    fitting = input_for_flat_size(prefix, spec.input_shape, declared)
    fixes = [
        _("drop in= to have it inferred ({layer})").format(
            layer=f"{r.layer.kind}({r.layer.params['out']})"
        ),
        _("write in={source}").format(source=source),
    ]
    if fitting:
        message += _(" {declared} needs a {shape} input.").format(
            declared=declared, shape=describe_shape(fitting)
        )
        fixes.append(_("feed a {shape} input").format(shape=describe_shape(fitting)))
    return _("{message}\n  fix: {fixes}").format(message=message, fixes=_(", or ").join(fixes))


def _flat_source(layers: tuple[LayerSpec, ...], input_shape: Shape) -> Shape | None:
    """The C x H x W that the last flatten before an fc received, if any."""
    try:
        reports = analyze(ModelSpec(layers, input_shape)).layers if layers else []
    except SpecError:
        return None
    for report in reversed(reports):
        if report.layer.kind == "flatten" and len(report.in_shape) == 3:
            return report.in_shape
        if report.out_shape != report.in_shape:
            return None
    return None


def _res(r: LayerReport, spec: ModelSpec) -> None:
    """A residual block: out = body(x) + x, or body(x) + shortcut(x); both must be one shape."""
    block = _("res block {number} (layer {index})").format(
        number=r.name.removeprefix(r.layer.kind), index=r.index
    )
    for branch in ("body", "shortcut"):
        layers = r.layer.params[branch]
        inner = ModelSpec(layers, r.in_shape)
        names = layer_names(inner, f"{r.name}.{branch}.")
        place = _("{block}, {branch} ").format(block=block, branch=_(BRANCHES[branch]))
        for report in _walk(inner, names, r.rf, r.jump, place) if layers else []:
            report.branch = branch
            r.inner.append(report)
    body, shortcut = branch_reports(r, "body"), branch_reports(r, "shortcut")
    skip = shortcut[-1] if shortcut else None
    body_out, skip_out = body[-1].out_shape, skip.out_shape if skip else r.in_shape
    if body_out != skip_out:
        raise SpecError(_res_mismatch(r, block, body_out, skip_out, bool(shortcut)))
    other = "shortcut" if skip else "input"
    r.out_shape = body_out
    added = shapes.add_ops_worked(body_out)
    r.formulas = [
        f"layers {describe_shape(body_out)} + {other} {describe_shape(skip_out)} "
        f"= {describe_shape(body_out)}; {added.text} additions"
    ]
    r.params = sum(i.params for i in r.inner)
    r.params_formula = " + ".join(f"{i.params:,} ({i.name})" for i in r.inner if i.params)
    r.params_formula = f"{r.params_formula} = {r.params:,}" if r.params else "no weights"
    r.macs = sum(i.macs for i in r.inner)
    r.flops = sum(i.flops for i in r.inner) + added.value
    skip_rf = (skip.rf, skip.jump) if skip else (r.rf, r.jump)
    (r.rf, r.jump), r.rf_formula = shapes.sum_receptive_field_worked(
        (body[-1].rf, body[-1].jump), skip_rf, other
    )


def _res_mismatch(r: LayerReport, block: str, body: Shape, skip: Shape, projected: bool) -> str:
    """The sum of a res block needs two equal shapes: say which differ and how to fix it."""
    given, needed = describe_shape(r.in_shape), describe_shape(body)
    if projected:
        why = _("its layers give {needed} and its shortcut {skip}").format(
            needed=needed, skip=describe_shape(skip)
        )
        added = _("the shortcut is added to the layers' output")
    else:
        why = _("its layers turn {given} into {needed}").format(given=given, needed=needed)
        added = _("the input is added to the layers' output")
    return _(
        "{block} gets {given}: {why}, but the sum needs both the same shape ({added})\n"
        "  fix: {fixes}"
    ).format(
        block=block,
        given=given,
        why=why,
        added=added,
        fixes=_(", or ").join(_res_fixes(r.in_shape, body, projected)),
    )


def _res_fixes(given: Shape, body: Shape, projected: bool) -> list[str]:
    """Ways to make a res block's two sides agree: keep the input's shape, or project it."""
    # N_: "use" or "add", then the shortcut that projects the input
    project = (
        N_("use {shortcut} to project the input")
        if projected
        else N_("add {shortcut} to project the input")
    )
    if len(given) != len(body):
        return [_("keep flatten and gap out of the block (before or after it)")]
    if len(body) == 1:  # vectors: a block of fc layers
        keep = (
            [] if projected else [_("end the block with {layer}").format(layer=f"fc({given[0]})")]
        )
        return [*keep, _(project).format(shortcut=f"shortcut=fc({body[0]})")]
    (c_in, h, w), (c_out, out_h, out_w) = given, body
    stride = max(1, round(h / out_h)), max(1, round(w / out_w))
    # A 1x1 conv with stride s and no padding gives floor((L - 1)/s) + 1 = ceil(L/s) pixels.
    reachable = shapes.ceil_div(h, stride[0]) == out_h and shapes.ceil_div(w, stride[1]) == out_w
    fixes = []
    if (out_h, out_w) != (h, w) and not (projected and reachable):
        fixes.append(
            _("keep {size} inside the block (padding=same, stride 1)").format(size=f"{h}x{w}")
        )
    elif c_out != c_in and not projected:
        fixes.append(
            _("end the block with {layer} to keep {channels} channels").format(
                layer=f"conv({c_in}, ...)", channels=c_in
            )
        )
    if reachable:
        s = stride[0] if stride[0] == stride[1] else f"({stride[0]},{stride[1]})"
        strided = f", stride={s}" if stride != (1, 1) else ""
        fixes.append(_(project).format(shortcut=f"shortcut=conv({c_out}, 1{strided}) batchnorm"))
    return fixes


def input_for_flat_size(
    layers: tuple[LayerSpec, ...], input_shape: Shape, wanted: int
) -> Shape | None:
    """An input of the same channels and aspect whose flattened output has `wanted` values.

    Several sizes often fit (floor division forgives a pixel or two); the one
    divisible by the highest power of two is the one a person would choose
    (256 rather than 255 for four halvings).
    """
    if not layers or len(input_shape) != 3:  # a block of fc layers starts from a vector
        return None
    channels, height, width = input_shape
    fitting = []
    for size in range(1, 4097):
        candidate = (channels, size, max(1, round(size * width / height)))
        try:
            out = analyze(ModelSpec(layers, candidate)).output_shape
        except SpecError:
            continue
        if out == (wanted,):
            fitting.append(candidate)
        elif len(out) == 1 and out[0] > wanted:
            break
    if not fitting:
        return None
    return max(fitting, key=lambda shape: ((shape[1] & -shape[1]), -shape[1]))


_ANALYZERS = {
    "conv": _conv,
    "maxpool": _pool,
    "minpool": _pool,
    "avgpool": _pool,
    "gap": _global_pool,
    "gmp": _global_pool,
    "batchnorm": _batchnorm,
    "relu": _elementwise(1),
    "relu6": _elementwise(2),  # two comparisons: with 0, then with 6
    "leakyrelu": _elementwise(1),
    "sigmoid": _elementwise(1),
    "tanh": _elementwise(1),
    "gelu": _elementwise(1),
    "dropout": _elementwise(0),
    "flatten": _flatten,
    "fc": _fc,
    "res": _res,
    "softmax": _elementwise(3),  # exp, sum, divide
}
require_every_kind(_ANALYZERS, "spec.analysis._ANALYZERS")
