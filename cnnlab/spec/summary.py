"""The per-layer summary of a model: a table, JSON, or a worked paragraph per layer.

Everything shown comes from `analysis.ModelReport`, which takes its numbers
and formulas from `shapes.py`; nothing here computes a shape.
"""

from __future__ import annotations

import html
import re
from typing import Any

from rich.table import Table

from cnnlab.i18n import N_, _
from cnnlab.spec.analysis import LayerReport, ModelReport, branch_reports, describe_shape
from cnnlab.spec.kinds import LAYER_KINDS


def _pair_text(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _rf_text(r) -> str:
    """'5/2': a 5x5 receptive field with jump 2; 'all': the whole input."""
    return _("all") if r.rf is None else f"{_pair_text(r.rf)}/{_pair_text(r.jump)}"


def summary_table(report: ModelReport) -> Table:
    """A rich table: one row per layer, then the totals."""
    table = Table(title=f"{report.spec.text()}", title_justify="left", show_footer=True)
    table.add_column("#", justify="right", footer="")
    table.add_column(_("layer"), footer=_("total"))
    table.add_column(_("output"), justify="right", footer=describe_shape(report.output_shape))
    table.add_column(_("how the size comes about"), footer="")
    table.add_column(_("params"), justify="right", footer=f"{report.total_params:,}")
    table.add_column("FLOPs", justify="right", footer=f"{report.total_flops:,}")
    table.add_column("RF", justify="right", footer="")
    for row in summary_rows(report):
        table.add_row(*row)
    return table


def summary_rows(report: ModelReport) -> list[list[str]]:
    """The table's cells, input first; a res block's layers as rows '3.1', '3.2', ... (named
    res1.body.conv1, indented) and then one row for the add, which counts only the add's FLOPs."""
    rows = [["", _("input"), describe_shape(report.input_shape), "", "", "", "1/1"]]
    for r in report.layers:
        for number, inner in enumerate(r.inner, start=1):
            rows.append(_row(f"{r.index}.{number}", f"  {inner.name}  {inner.layer.text()}", inner))
        if r.inner:
            rows.append(_row(str(r.index), f"{r.name}  {_add_label(r)}", r, r.add_flops, ""))
        else:
            rows.append(_row(str(r.index), f"{r.name}  {r.layer.text()}", r))
    return rows


def _row(
    number: str, label: str, r, flops: int | None = None, params: str | None = None
) -> list[str]:
    how = "\n".join(r.notes + [_formula_words(f) for f in r.formulas])
    params = f"{r.params:,}" if params is None else params
    flops = r.flops if flops is None else flops
    return [number, label, describe_shape(r.out_shape), how, params, f"{flops:,}", _rf_text(r)]


def _add_label(r) -> str:
    """'add: layers + input' (an identity shortcut) or 'add: layers + shortcut' (a projection)."""
    if branch_reports(r, "shortcut"):
        return _("add: layers + shortcut")
    return _("add: layers + input")


def totals_lines(report: ModelReport) -> list[str]:
    """Plain lines under the table: parameters, FLOPs, activation memory, and conventions."""
    kib = report.activation_bytes / 1024
    return [
        _("parameters: {count}").format(count=f"{report.total_params:,}"),
        _("FLOPs per image: {flops} ({macs} multiply-adds, 2 FLOPs each)").format(
            flops=f"{report.total_flops:,}", macs=f"{report.total_macs:,}"
        ),
        _("activation memory per image: {kib} KiB (float32 outputs of every layer)").format(
            kib=f"{kib:,.1f}"
        ),
        _("RF = receptive field size/jump in input pixels ('all' = the whole input)"),
    ]


def summary_json(report: ModelReport) -> dict[str, Any]:
    """The same content for machines; a res block holds its own layers under 'layers'."""
    return {
        "spec": report.spec.text(),
        "input_shape": list(report.input_shape),
        "output_shape": list(report.output_shape),
        "layers": [_layer_json(r) for r in report.layers],
        "total_params": report.total_params,
        "total_macs": report.total_macs,
        "total_flops": report.total_flops,
        "activation_bytes": report.activation_bytes,
    }


def _layer_json(r) -> dict[str, Any]:
    """One layer for machines; a block's params, macs and flops include its layers' (and the add)."""
    entry = {
        "index": r.index,
        "name": r.name,
        "kind": r.layer.kind,
        "layer": r.layer.text(),
        "in_shape": list(r.in_shape),
        "out_shape": list(r.out_shape),
        "formulas": r.formulas,
        "notes": r.notes,
        "params": r.params,
        "params_formula": r.params_formula,
        "macs": r.macs,
        "flops": r.flops,
        "receptive_field": list(r.rf) if r.rf else None,
        "jump": list(r.jump) if r.jump else None,
        "rf_formula": r.rf_formula,
    }
    if r.branch:
        entry["branch"] = r.branch  # body or shortcut
    if r.inner:
        entry["add_flops"] = r.add_flops
        entry["layers"] = [_layer_json(inner) for inner in r.inner]
    return entry


def explain_lines(report: ModelReport) -> list[str]:
    """A worked paragraph per layer, then the totals; a paragraph is one line indented by three
    spaces (the command line wraps it to the terminal, keeping the indent)."""
    shape = describe_shape(report.input_shape)
    lines = [_("input: {shape} (channels x height x width)").format(shape=shape), ""]
    for r in report.layers:
        for number, inner in enumerate(r.inner, start=1):
            lines += _layer_paragraph(inner, f"{r.index}.{number}")
            lines.append("")
        lines += _add_paragraph(r) if r.inner else _layer_paragraph(r)
        lines.append("")
    lines += totals_lines(report)
    return lines


def _add_paragraph(r: LayerReport) -> list[str]:
    """A res block's own paragraph, after its layers': what is added, and why the shapes agree."""
    other = _("the shortcut's output") if branch_reports(r, "shortcut") else _("the block's input")
    added = _(
        "It adds, value by value, the output of its layers ({rows} above) and {other}; the two "
        "must have one shape, since each output value is the sum of one value from each."
    ).format(rows=f"{r.index}.1-{r.index}.{len(r.inner)}", other=other)
    params = _("Its parameters are its layers': {formula}.").format(formula=r.params_formula)
    cost = _("That takes {flops} additions per image ({total} FLOPs with its layers').").format(
        flops=f"{r.add_flops:,}", total=f"{r.flops:,}"
    )
    sentences = [_shape_sentence(r), added, params, _rf_sentence(r), cost]
    return [
        f"{r.index}. {r.name}: {r.layer.text()}",
        f"   {_(LAYER_KINDS[r.layer.kind].summary)}",
        "   " + " ".join(sentences),
    ]


def _layer_paragraph(r: LayerReport, number: str | None = None) -> list[str]:
    """A heading (`number`: a block's layer, e.g. 4.2), what the layer's kind does, and a
    paragraph that says with the layer's own numbers (the worked formulas of shapes.py, through
    the report) how its output shape, parameters and receptive field come about, and what it
    costs."""
    sentences = [_shape_sentence(r), *_size_sentences(r), _params_sentence(r)]
    sentences += [_rf_sentence(r), _cost_sentence(r)]
    return [
        f"{number or r.index}. {r.name}: {r.layer.text()}",
        f"   {_(LAYER_KINDS[r.layer.kind].summary)}",  # extracted with -k LayerKind:2
        "   " + " ".join(sentence for sentence in sentences if sentence),
    ]


# The words of an fc's formula, 'in = 400 (inferred)' (analysis writes it in English, as the JSON
# keeps it; the table shows the words in the command's language).
_FC_IN = {"inferred": N_("inferred"), "declared and checked": N_("declared and checked")}
_FC_IN_FORMULA = re.compile(r"(in = \d+) \((inferred|declared and checked)\)")


def _formula_words(formula: str) -> str:
    found = _FC_IN_FORMULA.fullmatch(formula)
    return f"{found[1]} ({_(_FC_IN[found[2]])})" if found else formula


# How analysis labels a formula's axis ('H, W: ...' when both sides work out alike).
_AXES = {"H, W": N_("height and width"), "H": N_("height"), "W": N_("width")}


def _per_axis(texts: list[str]) -> str:
    """Formulas as analysis labels them, 'H, W: f' or 'H: f' and 'W: g', with the axes in words
    after them: 'f (height and width)', 'f (height); g (width)'."""
    worded = []
    for text in texts:
        axes, colon, formula = text.partition(": ")
        if colon and axes in _AXES:
            text = _("{formula} ({axes})").format(formula=formula, axes=_(_AXES[axes]))
        worded.append(text)
    return "; ".join(worded)


def _shape_sentence(r: LayerReport) -> str:
    """What goes in and what comes out."""
    if r.in_shape == r.out_shape:
        return _("It keeps the shape of its input, {shape}.").format(
            shape=describe_shape(r.in_shape)
        )
    return _("It turns its {input} input into {output}.").format(
        input=describe_shape(r.in_shape), output=describe_shape(r.out_shape)
    )


def _size_sentences(r: LayerReport) -> list[str]:
    """How the output size comes about: padding, then each side's formula (or the layout)."""
    kind, params = LAYER_KINDS[r.layer.kind], r.layer.params
    sentences = []
    if r.notes:  # 'same' padding, worked out per axis
        sentences.append(_("The padding comes first: {how}.").format(how=_per_axis(r.notes)))
    if r.layer.kind == "conv":
        text = _(
            "Each side of the output is {formula}, and its {filters} filters give as many channels."
        )
        sentences.append(text.format(formula=_per_axis(r.formulas), filters=params["out"]))
    elif kind.window_pooling:
        text = _(
            "Each side of the output is {formula}; each of the {channels} channels is pooled "
            "on its own."
        )
        sentences.append(text.format(formula=_per_axis(r.formulas), channels=r.in_shape[0]))
    elif r.layer.kind == "flatten" and r.formulas:
        text = _("It lays the {shape} values out in one row: {formula} values.")
        sentences.append(text.format(shape=describe_shape(r.in_shape), formula=r.formulas[0]))
    elif r.layer.kind in ("gap", "gmp"):
        text = _("It pools each channel's whole {h}x{w} map into one value: {channels} values.")
        channels, h, w = r.in_shape
        sentences.append(text.format(h=h, w=w, channels=channels))
    elif r.layer.kind == "fc":
        text = (
            _("Each of its {count} inputs (in= inferred) reaches every output.")
            if params["in"] is None
            else _("Each of its {count} inputs (in= declared and checked) reaches every output.")
        )
        sentences.append(text.format(count=r.in_shape[0]))
    return sentences


def _params_sentence(r: LayerReport) -> str:
    """How the parameter count comes about (shapes.py's worked count, through the report)."""
    bias = r.layer.params.get("bias", False)
    if r.layer.kind == "conv" and bias:
        text = _(
            "Each filter has a weight per kernel element and input channel, plus a bias: "
            "{formula} parameters."
        )
    elif r.layer.kind == "conv":
        text = _(
            "Each filter has a weight per kernel element and input channel, no bias: "
            "{formula} parameters."
        )
    elif r.layer.kind == "fc" and bias:
        text = _("Each output has a weight per input, plus a bias: {formula} parameters.")
    elif r.layer.kind == "fc":
        text = _("Each output has a weight per input, no bias: {formula} parameters.")
    elif r.layer.kind == "batchnorm":  # a learned scale (gamma) and shift (beta) per channel
        text = _(
            "It learns a scale and a shift per channel: {formula} parameters (its running mean "
            "and variance are kept, not learned)."
        )
        return text.format(formula=f"2*{r.in_shape[0]} = {r.params}")
    else:
        return _("It has no weights.")
    return text.format(formula=r.params_formula)


def _rf_sentence(r: LayerReport) -> str:
    """How many input pixels one output value sees, and why."""
    if r.rf is None:
        return _("Each output value depends on the whole input.")
    rf, jump = f"{r.rf[0]}x{r.rf[1]}", f"{r.jump[0]}x{r.jump[1]}"
    if r.rf_formula:
        text = _(
            "Each output value sees {rf} input pixels, the windows of neighbouring values "
            "{jump} pixels apart: {formula}."
        )
        return text.format(rf=rf, jump=jump, formula=_per_axis(r.rf_formula.split("; ")))
    text = _("Each output value sees the same {rf} input pixels as the value it comes from.")
    return text.format(rf=rf)


def _cost_sentence(r: LayerReport) -> str:
    """FLOPs per image: 2 per multiply-add; 1 per compared or added value."""
    if r.macs:
        text = _("That takes 2 x {macs} multiply-adds = {flops} FLOPs per image.")
        return text.format(macs=f"{r.macs:,}", flops=f"{r.flops:,}")
    if r.flops:
        return _("That takes {flops} FLOPs per image.").format(flops=f"{r.flops:,}")
    return ""


def summary_html(report: ModelReport) -> str:
    """The summary table as HTML for a notebook cell (`ModelReport._repr_html_`)."""
    head = ["#", _("layer"), _("output"), _("how the size comes about"), _("params"), "FLOPs", "RF"]
    rows = summary_rows(report)
    foot = ["", _("total"), describe_shape(report.output_shape), "", f"{report.total_params:,}"]
    foot += [f"{report.total_flops:,}", ""]
    totals = "".join(f"<li>{html.escape(line)}</li>" for line in totals_lines(report))
    return html_table(report.spec.text(), head, rows, foot) + f"<ul>{totals}</ul>"


def html_table(
    caption: str, head: list[str], rows: list[list[str]], foot: list[str] | None = None
) -> str:
    """An HTML table of text cells, every one escaped (names come from users); newlines as <br>.

    The notebook views (`_repr_html_`) of a model report, a run and an evaluation share it.
    """

    def cells(tag: str, row: list[str]) -> str:
        return "".join(
            f"<{tag}>{html.escape(str(cell)).replace(chr(10), '<br>')}</{tag}>" for cell in row
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    footer = f"<tfoot><tr>{cells('td', foot)}</tr></tfoot>" if foot else ""
    return (
        f'<table class="cnnlab"><caption>{html.escape(caption)}</caption>'
        f"<thead><tr>{cells('th', head)}</tr></thead><tbody>{body}</tbody>{footer}</table>"
    )
