"""Numbers from a trained run, no drawing: scores (accuracy, confusion, per-class, top losses),
featuremaps, maplayers (which maps to show), filters, grids (the one tiling, numpy only), samples."""

# The splits a run can be scored on (`cnnlab eval --split`): data/source.py's, torch-free, so
# that the command line offers them without loading torch.
from cnnlab.data.source import SPLITS

__all__ = ["SPLITS"]
