"""Models as text, pure Python (no torch): kinds (THE table of layer kinds), language (the one-line
parser), toml, shapes (every formula), analysis (the validator and per-layer report), summary."""
