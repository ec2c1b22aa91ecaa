"""Data sets as in-memory uint8 tensors: the registry, loaders, splits; see augment.py and images.py too.

from cnnlab.data import load_dataset, list_datasets, Dataset, split_validation
ds = load_dataset("shapes")          # or "fashion-mnist", "mnist", "kmnist", "cifar10", "folder:PATH"
ds.train_images  # (N, C, H, W) uint8;  ds.train_labels  # (N,) int64
"""

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
