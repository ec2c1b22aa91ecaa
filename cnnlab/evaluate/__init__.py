"""Numbers from a trained run, no drawing: scores (accuracy, confusion, per-class, top losses),
featuremaps, maplayers (which maps to show), filters, grids (the one tiling, numpy only), samples."""

# The splits a run can be scored on (`cnnlab eval --split`): data/source.py's, torch-free, so
# that the command line offers them without loading torch.
from cnnlab.data.source import SPLITS

__all__ = ["SPLITS"]

# What one `cnnlab patches` or /api/run/patches may ask for: top images per channel, channels.
# One limit for both: 200 x 64 patches on 200 images ran for minutes and gigabytes.
MAX_PATCH_TOP = 16
MAX_PATCH_CHANNELS = 64
# Images in `cnnlab eval`'s top-loss gallery: each is a tile of the figure and a row of the JSON.
MAX_TOP_LOSSES = 200
