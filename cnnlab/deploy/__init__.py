"""A trained run put to work: predict (user images -> probabilities), engines (eager, onnxruntime,
torch.export; reading exports), export (writing parity-checked exports)."""
