"""Data sets as in-memory uint8 tensors: the registry, loaders, splits; see augment.py and images.py too.

from cnnlab.data import load_dataset, list_datasets, Dataset, split_validation
ds = load_dataset("shapes")          # or "fashion-mnist", "mnist", "kmnist", "cifar10", "folder:PATH"
ds.train_images  # (N, C, H, W) uint8;  ds.train_labels  # (N,) int64
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
