"""Data loading: datasets, samplers, ``DataLoader``, batch-wise transforms, MNIST.

Mirrors ``torch.utils.data`` (plus ``transforms`` and ``datasets`` in the spirit of
torchvision). Loading runs in-process; array-backed datasets are batched with one fancy index.
"""
from __future__ import annotations

from . import datasets, transforms
from .dataloader import DataLoader, default_collate, default_convert, get_worker_info
from .dataset import (ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset,
                      random_split)
from .sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler,
                      SubsetRandomSampler, WeightedRandomSampler)

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset",
           "random_split", "Sampler", "SequentialSampler", "RandomSampler",
           "SubsetRandomSampler", "WeightedRandomSampler", "BatchSampler", "DataLoader",
           "default_collate", "default_convert", "get_worker_info", "datasets", "transforms"]
