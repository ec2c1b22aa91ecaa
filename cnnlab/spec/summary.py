"""The per-layer summary of a model: a table, JSON, or a worked paragraph per layer.

Everything shown comes from `analysis.ModelReport`, which takes its numbers
and formulas from `shapes.py`; nothing here computes a shape.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from cnnlab.spec.analysis import ModelReport, describe_shape
from cnnlab.spec.kinds import LAYER_KINDS


def _pair_text(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _rf_text(r) -> str:
    """'5/2': a 5x5 receptive field with jump 2; 'all': the whole input."""
    return "all" if r.rf is None else f"{_pair_text(r.rf)}/{_pair_text(r.jump)}"


def summary_table(report: ModelReport) -> Table:
    """A rich table: one row per layer, then the totals."""
    table = Table(title=f"{report.spec.text()}", title_justify="left", show_footer=True)
    table.add_column("#", justify="right", footer="")
    table.add_column("layer", footer="total")
    table.add_column("output", justify="right", footer=describe_shape(report.output_shape))
    table.add_column("how the size comes about", footer="")
    table.add_column("params", justify="right", footer=f"{report.total_params:,}")
    table.add_column("FLOPs", justify="right", footer=f"{report.total_flops:,}")
    table.add_column("RF", justify="right", footer="")
    table.add_row("", "input", describe_shape(report.input_shape), "", "", "", "1/1")
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
        f"parameters: {report.total_params:,}",
        f"FLOPs per image: {report.total_flops:,} ({report.total_macs:,} multiply-adds, 2 FLOPs each)",
        f"activation memory per image: {kib:,.1f} KiB (float32 outputs of every layer)",
        "RF = receptive field size/jump in input pixels ('all' = the whole input)",
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
    lines = [f"input: {describe_shape(report.input_shape)} (channels x height x width)", ""]
    for r in report.layers:
        lines.append(f"{r.index}. {r.name}: {r.layer.text()}")
        lines.append(f"   {LAYER_KINDS[r.layer.kind].summary}")
        lines.append(f"   {describe_shape(r.in_shape)} -> {describe_shape(r.out_shape)}")
        for note in r.notes:
            lines.append(f"   padding: {note}")
        for formula in r.formulas:
            lines.append(f"   size: {formula}")
        if r.params:
            lines.append(f"   parameters: {r.params_formula}")
        if r.macs:
            lines.append(f"   FLOPs: 2 x {r.macs:,} multiply-adds = {r.flops:,}")
        elif r.flops:
            lines.append(f"   FLOPs: {r.flops:,}")
        if r.rf is None:
            lines.append("   receptive field: each output value depends on the whole input")
        elif r.rf_formula:
            lines.append(
                f"   receptive field: {r.rf_formula}: each output value sees {r.rf[0]}x{r.rf[1]} input pixels, "
                f"neighbours {r.jump[0]}x{r.jump[1]} apart"
            )
        lines.append("")
    lines += totals_lines(report)
    return lines
