"""Specs made torch modules: layers (a builder per kind and the way back), presets (named models and
their recipes; pure), cnn (CnnModel, build_model, adapt_to_data), fold (BatchNorm folding),
inference (uint8 pixels -> model input; logits in batches)."""
