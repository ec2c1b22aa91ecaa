"""Matplotlib (Agg) only: canvas (new/save figures), curves, confusion, layout, filters, maps,
diagram, kernels, samples. Numbers come from evaluate/ and spec/; nothing here computes them."""
