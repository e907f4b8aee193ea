"""Datasets with files: MNIST (and its embedded sample) and Shakespeare's works as characters.

``get_dataset(name, **kwargs)`` builds one by name: ``'mnist'``, ``'mnist-sample'`` or
``'shakespeare'``.
"""
from __future__ import annotations

from .mnist import MNIST, MNISTSample, download_url, read_idx
from .text import CharDataset, CharVocab, Shakespeare

__all__ = ["MNIST", "MNISTSample", "download_url", "read_idx", "CharVocab", "CharDataset",
           "Shakespeare", "get_dataset", "DATASETS"]

DATASETS = {"mnist": MNIST, "mnist-sample": MNISTSample, "shakespeare": Shakespeare}


def get_dataset(name: str, **kwargs):
    """A dataset by name, e.g. ``get_dataset('mnist-sample', train=False)`` or
    ``get_dataset('shakespeare', split='val', seq_len=100)``."""
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(
            f"get_dataset: unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[key](**kwargs)
