"""The one source of truth for CNN arithmetic: output sizes, padding, parameters, FLOPs, receptive field.

Every function is pure (ints in, ints out) and has a twin that also returns the
formula with the numbers put in, so the summary, the validator, the error
messages, the explainer and the docs all show the same arithmetic. Only tests
run torch to get shapes, and they compare the two.

Lengths are along one spatial axis (height or width) in pixels.
"""

from __future__ import annotations

from typing import NamedTuple

from cnnlab.i18n import _


class Worked(NamedTuple):
    """A number together with the formula that gave it, numbers filled in."""

    value: int
    text: str


def _pad_term(pad_before: int, pad_after: int) -> str:
    """'2*1' for symmetric padding, '1 + 2' for asymmetric (Keras-style 'same')."""
    if pad_before == pad_after:
        return f"2*{pad_before}"
    return f"{pad_before} + {pad_after}"


# --- convolution ----------------------------------------------------------------


def conv_output_size(
    length: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    padding_after: int | None = None,
) -> int:
    """L_out = floor((L + 2p - d(k-1) - 1)/s) + 1; e.g. L=6, k=3 -> 4.

    `padding_after` (default: equal to `padding`) allows the asymmetric padding
    of 'same' with an even kernel or a stride above 1. May return 0 or less:
    the validator turns that into an error.
    """
    after = padding if padding_after is None else padding_after
    return (length + padding + after - dilation * (kernel - 1) - 1) // stride + 1


def conv_output_size_worked(
    length: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    padding_after: int | None = None,
) -> Worked:
    """conv_output_size with its formula: 'floor((28 + 2*1 - 1*(3-1) - 1)/1) + 1 = 28'."""
    after = padding if padding_after is None else padding_after
    value = conv_output_size(length, kernel, stride, padding, dilation, after)
    text = (
        f"floor(({length} + {_pad_term(padding, after)} - {dilation}*({kernel}-1) - 1)"
        f"/{stride}) + 1 = {value}"
    )
    return Worked(value, text)


def same_padding(length: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """Padding (before, after) that makes the output ceil(L/s) long.

    With stride 1 this is exactly torch's padding='same': d(k-1) pixels in
    total, the odd one (even kernels) at the bottom/right. torch refuses 'same'
    with a stride above 1; there cnnlab does what Keras does: output ceil(L/s),
    total padding max((out-1)*s + d(k-1) + 1 - L, 0), the odd pixel again at
    the bottom/right, applied explicitly before the convolution.
    """
    out = ceil_div(length, stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - length, 0)
    return total // 2, total - total // 2


def same_padding_worked(
    length: int, kernel: int, stride: int = 1, dilation: int = 1
) -> tuple[tuple[int, int], str]:
    """same_padding with its explanation."""
    before, after = same_padding(length, kernel, stride, dilation)
    total = before + after
    if stride == 1:
        text = _("'same' pads {dilation}*({kernel}-1) = {total}: {before} before, {after} after")
        text = text.format(
            dilation=dilation, kernel=kernel, total=total, before=before, after=after
        )
    else:
        out = ceil_div(length, stride)
        text = _(
            "'same' with stride {stride} (as Keras; torch refuses it): output "
            "ceil({length}/{stride}) = {out}, padding max(({out}-1)*{stride} + "
            "{dilation}*({kernel}-1) + 1 - {length}, 0) = {total}: {before} before, {after} after "
            "(applied explicitly)"
        ).format(
            stride=stride,
            length=length,
            out=out,
            dilation=dilation,
            kernel=kernel,
            total=total,
            before=before,
            after=after,
        )
    return (before, after), text


def conv_params(
    in_channels: int,
    out_channels: int,
    kernel_h: int,
    kernel_w: int,
    groups: int = 1,
    bias: bool = True,
) -> int:
    """(k_h*k_w*C_in/groups + 1)*C_out; e.g. conv(32, 3) on 1 channel -> 320."""
    return (kernel_h * kernel_w * (in_channels // groups) + int(bias)) * out_channels


def conv_params_worked(
    in_channels: int,
    out_channels: int,
    kernel_h: int,
    kernel_w: int,
    groups: int = 1,
    bias: bool = True,
) -> Worked:
    """conv_params with its formula."""
    value = conv_params(in_channels, out_channels, kernel_h, kernel_w, groups, bias)
    bias_term = " + 1" if bias else ""
    text = f"({kernel_h}*{kernel_w}*{in_channels}/{groups}{bias_term})*{out_channels} = {value}"
    return Worked(value, text)


def conv_macs(
    in_channels: int,
    out_channels: int,
    kernel_h: int,
    kernel_w: int,
    groups: int,
    out_h: int,
    out_w: int,
) -> int:
    """Multiply-adds for one image: C_out*H_out*W_out * k_h*k_w*C_in/groups."""
    return out_channels * out_h * out_w * kernel_h * kernel_w * (in_channels // groups)


# --- pooling --------------------------------------------------------------------


def pool_output_size(
    length: int,
    kernel: int,
    stride: int,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """The convolution formula with floor, or with ceil when ceil_mode is on.

    As torch: in ceil_mode the last window must start inside the input or its
    left padding, otherwise it is dropped.
    """
    span = length + 2 * padding - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= length + padding:
        out -= 1
    return out


def pool_output_size_worked(
    length: int,
    kernel: int,
    stride: int,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> Worked:
    """pool_output_size with its formula."""
    value = pool_output_size(length, kernel, stride, padding, dilation, ceil_mode)
    span = length + 2 * padding - dilation * (kernel - 1) - 1
    rounding = "ceil" if ceil_mode else "floor"
    text = f"{rounding}(({length} + 2*{padding} - {dilation}*({kernel}-1) - 1)/{stride}) + 1"
    if ceil_mode and value < ceil_div(span, stride) + 1:
        text += " - 1 (the last window would start in the right padding)"
    return Worked(value, f"{text} = {value}")


def pool_padding_limit(kernel: int) -> int:
    """Largest padding pooling accepts (torch's rule, dilation or not): half the kernel, floor(k/2).

    More would make windows that hold only padding.
    """
    return kernel // 2


def pool_ops(channels: int, out_h: int, out_w: int, kernel_h: int, kernel_w: int) -> int:
    """Comparisons or additions for one image: one per window element."""
    return channels * out_h * out_w * kernel_h * kernel_w


# --- fully connected ------------------------------------------------------------


def fc_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """(in + 1)*out; e.g. fc(10) on 3136 inputs -> 31370."""
    return (in_features + int(bias)) * out_features


def fc_params_worked(in_features: int, out_features: int, bias: bool = True) -> Worked:
    """fc_params with its formula."""
    value = fc_params(in_features, out_features, bias)
    bias_term = " + 1" if bias else ""
    return Worked(value, f"({in_features}{bias_term})*{out_features} = {value}")


def flatten_size_worked(channels: int, height: int, width: int) -> Worked:
    """C*H*W with its formula: '64*7*7 = 3136'."""
    value = channels * height * width
    return Worked(value, f"{channels}*{height}*{width} = {value}")


# --- receptive field ------------------------------------------------------------


def receptive_field(
    rf_in: int, jump_in: int, kernel: int, stride: int, dilation: int = 1
) -> tuple[int, int]:
    """(size, jump) after a sliding-window layer.

    size: input pixels one output pixel sees; jump: input pixels between two
    neighbouring output pixels. r_out = r_in + d(k-1)*j_in, j_out = j_in*s.
    """
    return rf_in + dilation * (kernel - 1) * jump_in, jump_in * stride


def receptive_field_worked(
    rf_in: int, jump_in: int, kernel: int, stride: int, dilation: int = 1
) -> tuple[tuple[int, int], str]:
    """receptive_field with its formula."""
    rf, jump = receptive_field(rf_in, jump_in, kernel, stride, dilation)
    text = (
        f"r = {rf_in} + {dilation}*({kernel}-1)*{jump_in} = {rf}, j = {jump_in}*{stride} = {jump}"
    )
    return (rf, jump), text


def sum_receptive_field_worked(
    a: tuple[tuple[int, int] | None, tuple[int, int] | None],
    b: tuple[tuple[int, int] | None, tuple[int, int] | None],
    b_name: str = "input",
) -> tuple[tuple[tuple[int, int] | None, tuple[int, int] | None], str]:
    """((rf, jump), formula) of a sum of two branches (a residual block's layers and `b_name`).

    Each output value is one value of each branch added, so it sees the union of what both
    see: the larger receptive field, per axis (the identity branch's is its input's). None is
    the whole input. The jump is the larger too (equal whenever the two strides are).
    """
    (rf_a, jump_a), (rf_b, jump_b) = a, b
    if rf_a is None or rf_b is None:
        return (None, None), "the whole input (one branch already sees all of it)"
    rf = (max(rf_a[0], rf_b[0]), max(rf_a[1], rf_b[1]))
    jump = (max(jump_a[0], jump_b[0]), max(jump_a[1], jump_b[1]))
    sizes = f"max(layers {rf_a[0]}x{rf_a[1]}, {b_name} {rf_b[0]}x{rf_b[1]}) = {rf[0]}x{rf[1]}"
    return (rf, jump), f"r = {sizes}, j = {jump[0]}x{jump[1]}"


# --- elementwise ----------------------------------------------------------------


def add_ops(shape: tuple[int, ...]) -> int:
    """Additions for one image when two tensors of `shape` are summed: one per element."""
    n = 1
    for d in shape:
        n *= d
    return n


def add_ops_worked(shape: tuple[int, ...]) -> Worked:
    """add_ops with its formula: '16*14*14 = 3136'."""
    value = add_ops(shape)
    return Worked(value, f"{'*'.join(str(d) for d in shape)} = {value}")


# --- helpers for messages -------------------------------------------------------


def ceil_div(a: int, b: int) -> int:
    """ceil(a/b) for positive b."""
    return -(-a // b)
