"""Data sets as in-memory uint8 tensors: the registry, loaders, splits; see augment.py and images.py too.

from cnnlab.data import load_dataset, list_datasets, Dataset, split_validation
ds = load_dataset("shapes")          # or "fashion-mnist", "mnist", "kmnist", "cifar10", "folder:PATH"
ds.train_images  # (N, C, H, W) uint8;  ds.train_labels  # (N,) int64
An image folder's images are memory-mapped from its cache file (folder.py, foldercache.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The built-in `shapes` set as `cnnlab datasets` lists it: its classes in label order and its
# default sizes. Here, torch-free, so listing needs no torch; synthetic.py draws them.
SHAPES_CLASSES = (
    "circle",
    "triangle",
    "square",
    "pentagon",
    "star",
    "cross",
    "heart",
    "arrow",
    "line",
    "crescent",
)
# 24000 train = 2400 per class: enough for a small CNN to pass 97% in one or two
# epochs (under a minute on 2 cores); 4000 test = 400 per class, so one test error
# moves accuracy by 0.025% and the 95% interval at 98% is about +-0.4%.
SHAPES_TRAIN = 24000
SHAPES_TEST = 4000

# name -> the module defining it. Loaded on first use (PEP 562), not here: dataset.py loads torch,
# and importing any cnnlab.data module (images.py, paths.py) runs this file first.
_EXPORTS = {
    "Dataset": "dataset",
    "channel_stats": "dataset",
    "split_validation": "dataset",
    "subset": "dataset",
    "DatasetInfo": "registry",
    "get_entry": "registry",
    "list_datasets": "registry",
    "load_dataset": "registry",
}

if TYPE_CHECKING:
    from cnnlab.data.dataset import Dataset, channel_stats, split_validation, subset
    from cnnlab.data.registry import DatasetInfo, get_entry, list_datasets, load_dataset

__all__ = [
    "Dataset",
    "DatasetInfo",
    "channel_stats",
    "get_entry",
    "list_datasets",
    "load_dataset",
    "split_validation",
    "subset",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cnnlab.data' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"cnnlab.data.{_EXPORTS[name]}"), name)
    globals()[name] = value  # once: later lookups find it without this function
    return value
