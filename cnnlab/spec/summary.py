"""The per-layer summary of a model: a table, JSON, or a worked paragraph per layer.

Everything shown comes from `analysis.ModelReport`, which takes its numbers
and formulas from `shapes.py`; nothing here computes a shape.
"""

from __future__ import annotations

import html
from typing import Any

from rich.table import Table

from cnnlab.i18n import _
from cnnlab.spec.analysis import ModelReport, describe_shape
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
    table.add_row("", _("input"), describe_shape(report.input_shape), "", "", "", "1/1")
    for r in report.layers:
        how = "\n".join(r.notes + r.formulas)
        table.add_row(
            str(r.index),
            f"{r.name}  {r.layer.text()}",
            describe_shape(r.out_shape),
            how,
            f"{r.params:,}",
            f"{r.flops:,}",
            _rf_text(r),
        )
    return table


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
    """The same content for machines."""
    return {
        "spec": report.spec.text(),
        "input_shape": list(report.input_shape),
        "output_shape": list(report.output_shape),
        "layers": [
            {
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
            for r in report.layers
        ],
        "total_params": report.total_params,
        "total_macs": report.total_macs,
        "total_flops": report.total_flops,
        "activation_bytes": report.activation_bytes,
    }


def explain_lines(report: ModelReport) -> list[str]:
    """A worked paragraph per layer: what it does, its input and output, and each number's formula."""
    shape = describe_shape(report.input_shape)
    lines = [_("input: {shape} (channels x height x width)").format(shape=shape), ""]
    for r in report.layers:
        lines += _layer_paragraph(r)
        lines.append("")
    lines += totals_lines(report)
    return lines


def _layer_paragraph(r) -> list[str]:
    """One layer's lines in `explain_lines`: kind, shapes, padding, size, parameters, FLOPs, RF."""
    lines = [
        f"{r.index}. {r.name}: {r.layer.text()}",
        f"   {_(LAYER_KINDS[r.layer.kind].summary)}",  # extracted with -k LayerKind:2
        f"   {describe_shape(r.in_shape)} -> {describe_shape(r.out_shape)}",
    ]
    lines += [_("   padding: {note}").format(note=note) for note in r.notes]
    lines += [_("   size: {formula}").format(formula=formula) for formula in r.formulas]
    if r.params:
        lines.append(_("   parameters: {formula}").format(formula=r.params_formula))
    if r.macs:
        lines.append(
            _("   FLOPs: 2 x {macs} multiply-adds = {flops}").format(
                macs=f"{r.macs:,}", flops=f"{r.flops:,}"
            )
        )
    elif r.flops:
        lines.append(_("   FLOPs: {flops}").format(flops=f"{r.flops:,}"))
    if r.rf is None:
        lines.append(_("   receptive field: each output value depends on the whole input"))
    elif r.rf_formula:
        lines.append(
            _(
                "   receptive field: {formula}: each output value sees {rf} input pixels, "
                "neighbours {jump} apart"
            ).format(
                formula=r.rf_formula,
                rf=f"{r.rf[0]}x{r.rf[1]}",
                jump=f"{r.jump[0]}x{r.jump[1]}",
            )
        )
    return lines


def summary_html(report: ModelReport) -> str:
    """The summary table as HTML for a notebook cell (`ModelReport._repr_html_`)."""
    head = ["#", _("layer"), _("output"), _("how the size comes about"), _("params"), "FLOPs", "RF"]
    rows = [["", _("input"), describe_shape(report.input_shape), "", "", "", "1/1"]]
    rows += [
        [
            str(r.index),
            f"{r.name}  {r.layer.text()}",
            describe_shape(r.out_shape),
            "\n".join(r.notes + r.formulas),
            f"{r.params:,}",
            f"{r.flops:,}",
            _rf_text(r),
        ]
        for r in report.layers
    ]
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
