"""``deepgrad.datasets``: shorthand for ``deepgrad.data.datasets`` (``deepgrad.datasets.MNIST``)."""
from __future__ import annotations

from .data.datasets import DATASETS, MNIST, MNISTSample, download_url, get_dataset, read_idx

__all__ = ["MNIST", "MNISTSample", "download_url", "get_dataset", "read_idx", "DATASETS"]
