"""Datasets with files: MNIST (and its embedded sample).

``get_dataset(name, **kwargs)`` builds one by name: ``'mnist'`` or ``'mnist-sample'``.
"""
from __future__ import annotations

from .mnist import MNIST, MNISTSample, download_url, read_idx

__all__ = ["MNIST", "MNISTSample", "download_url", "read_idx", "get_dataset", "DATASETS"]

DATASETS = {"mnist": MNIST, "mnist-sample": MNISTSample}


def get_dataset(name: str, **kwargs):
    """A dataset by name, e.g. ``get_dataset('mnist-sample', train=False)``."""
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(
            f"get_dataset: unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[key](**kwargs)
