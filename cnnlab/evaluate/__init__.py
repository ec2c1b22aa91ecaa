"""Numbers from a trained run, no drawing: scores (accuracy, confusion, per-class, top losses),
featuremaps, maplayers (which maps to show), filters, grids (the one tiling, numpy only), samples."""

# The splits a run can be scored on (`cnnlab eval --split`). Defined here, not in scores.py
# (which loads torch), so that the command line offers them without loading torch.
SPLITS = ("test", "val", "train")
