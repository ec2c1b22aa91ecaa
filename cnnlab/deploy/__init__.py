"""A trained run put to work: predict (user images -> probabilities), engines (eager, onnxruntime,
torch.export; reading exports), export (writing parity-checked exports)."""

# The choices of `cnnlab predict` and `cnnlab serve`. Defined here, not in predict.py (which
# loads torch), so that the command line offers them without loading torch.
INVERT_CHOICES = ("no", "yes", "auto")
ENGINE_CHOICES = ("auto", "eager", "onnx", "pt2")
