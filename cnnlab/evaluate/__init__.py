"""Numbers from a trained run, no drawing: scores (accuracy, confusion, per-class, top losses),
featuremaps, maplayers (which maps to show), filters, grids (the one tiling, numpy only), samples."""
