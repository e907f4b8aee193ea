"""Datasets: the map-style protocol (``__getitem__`` + ``__len__``) and a few combinators.

Batched fetching. A dataset may define ``_fetch_batch(indices)``, taking an int64 ndarray of
indices and returning the batch exactly as ``default_collate([ds[i] for i in indices])`` would,
built with one fancy index per array instead of a Python loop per item. ``DataLoader`` uses it
whenever the default collate function is in use; ``TensorDataset``, ``Subset`` and
``ConcatDataset`` of such datasets, and ``MNIST`` provide it. PyTorch's ``__getitems__``
(a list of samples for a list of indices) is honoured too.
"""
from __future__ import annotations

import bisect
import math
import warnings
from typing import Iterable, Sequence

import numpy as np

from ..random import Generator, _generator
from ..tensor import Tensor, _make

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset",
           "random_split"]


class Dataset:
    """A map-style dataset: ``dataset[i]`` is the i-th sample, ``len(dataset)`` their count.

    Subclasses define ``__getitem__`` and usually ``__len__``. ``a + b`` concatenates.

    Example:
        >>> class Squares(Dataset):
        ...     def __len__(self):
        ...         return 10
        ...     def __getitem__(self, i):
        ...         return i, i * i
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__}: subclasses must define __getitem__")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A dataset that is a stream: subclasses define ``__iter__`` (and ``__len__`` if known).

    ``DataLoader`` groups consecutive items into batches; samplers and shuffling do not apply.
    """

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__}: subclasses must define __iter__")

    def __add__(self, other):
        raise TypeError("IterableDataset: '+' (ConcatDataset) needs map-style datasets")


def _array(t) -> np.ndarray:
    return t.data if isinstance(t, Tensor) else t


class TensorDataset(Dataset):
    """Samples are rows of tensors that share their first dimension.

    Args:
        *tensors: Tensors (or ndarrays) with equal ``size(0)``.

    ``dataset[i]`` is ``tuple(t[i] for t in tensors)``. Samples are taken from the arrays
    directly, so they do not record autograd history.

    Example:
        >>> ds = TensorDataset(deepgrad.randn(100, 3), deepgrad.arange(100))
        >>> x, y = ds[0]
    """

    def __init__(self, *tensors) -> None:
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor, got none")
        wrapped = []
        for k, t in enumerate(tensors):
            if isinstance(t, np.ndarray):
                t = _make(t)
            elif not isinstance(t, Tensor):
                raise TypeError(
                    f"TensorDataset: argument {k} must be a Tensor or ndarray, "
                    f"got {type(t).__name__}")
            if t.data.ndim == 0:
                raise ValueError(
                    f"TensorDataset: argument {k} must have at least one dimension, got a scalar")
            wrapped.append(t)
        n = wrapped[0].data.shape[0]
        if any(t.data.shape[0] != n for t in wrapped):
            shapes = ", ".join(str(t.shape) for t in wrapped)
            raise ValueError(
                f"TensorDataset: size mismatch between tensors; expected equal first "
                f"dimensions, got shapes {shapes}")
        self.tensors = tuple(wrapped)

    def __getitem__(self, index):
        return tuple(_make(t.data[index]) for t in self.tensors)

    def _fetch_batch(self, indices: np.ndarray) -> list:
        # collate turns a batch of tuples into a list, one stacked tensor per field
        return [_make(t.data[indices]) for t in self.tensors]

    def __len__(self) -> int:
        return self.tensors[0].data.shape[0]

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(t.shape)) for t in self.tensors)
        return f"TensorDataset({shapes})"


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order.

    Args:
        dataset: the whole dataset.
        indices: positions in ``dataset`` (a sequence of ints).
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices
        self._index_array: np.ndarray | None = None

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def _indices_array(self) -> np.ndarray:
        arr = self._index_array
        if arr is None or len(arr) != len(self.indices):
            arr = np.asarray(self.indices, dtype=np.int64)
            self._index_array = arr
        return arr

    def __getattr__(self, name: str):
        # a fast path exists exactly when the wrapped dataset has one
        if name == "_fetch_batch" and hasattr(self.dataset, "_fetch_batch"):
            return self._fetch_subset_batch
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def _fetch_subset_batch(self, indices: np.ndarray):
        return getattr(self.dataset, "_fetch_batch")(self._indices_array()[indices])

    def __len__(self) -> int:
        return len(self.indices)


class ConcatDataset(Dataset):
    """Several datasets one after another.

    Args:
        datasets: map-style datasets with lengths.

    Attributes:
        cumulative_sizes: running totals of the lengths.
    """

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: expected a non-empty list of datasets, got none")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset: IterableDataset is not supported; "
                                "expected map-style datasets")
        self.cumulative_sizes = self.cumsum(self.datasets)

    @staticmethod
    def cumsum(sequence) -> list:
        out, total = [], 0
        for d in sequence:
            total += len(d)
            out.append(total)
        return out

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        n = len(self)
        if idx < 0:
            if -idx > n:
                raise ValueError(
                    f"ConcatDataset: index out of range; expected -{n} <= index < {n}, got {idx}")
            idx += n
        k = bisect.bisect_right(self.cumulative_sizes, idx)
        if k == len(self.datasets):
            raise IndexError(
                f"ConcatDataset: index out of range; expected index < {n}, got {idx}")
        start = self.cumulative_sizes[k - 1] if k > 0 else 0
        return self.datasets[k][idx - start]

    def __getattr__(self, name: str):
        if name == "_fetch_batch" and all(hasattr(d, "_fetch_batch") for d in self.datasets):
            return self._fetch_concat_batch
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def _fetch_concat_batch(self, indices: np.ndarray):
        n = len(self)
        indices = np.where(indices < 0, indices + n, indices)
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise IndexError(f"ConcatDataset: index out of range for length {n}")
        bounds = np.asarray(self.cumulative_sizes, dtype=np.int64)
        which = np.searchsorted(bounds, indices, side="right")
        starts = np.concatenate(([0], bounds[:-1]))
        parts, positions = [], []
        for k in np.unique(which):
            mask = which == k
            fetch = getattr(self.datasets[k], "_fetch_batch")
            parts.append(fetch(indices[mask] - starts[k]))
            positions.append(np.flatnonzero(mask))
        if len(parts) == 1:
            return parts[0]
        # parts come grouped by dataset; put the samples back in the order asked for
        order = np.argsort(np.concatenate(positions), kind="stable")
        return _merge_batches(parts, order)


def _merge_batches(parts: list, order: np.ndarray):
    first = parts[0]
    if isinstance(first, Tensor):
        return _make(np.concatenate([p.data for p in parts])[order])
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)[order]
    if isinstance(first, dict):
        return {k: _merge_batches([p[k] for p in parts], order) for k in first}
    if isinstance(first, (list, tuple)):
        merged = [_merge_batches([p[i] for p in parts], order) for i in range(len(first))]
        return merged if isinstance(first, list) else type(first)(merged)
    raise TypeError(f"ConcatDataset: can't merge batches of type {type(first).__name__}")


def random_split(dataset: Dataset, lengths: Sequence[int | float],
                 generator: Generator | None = None) -> list[Subset]:
    """Split a dataset into non-overlapping random subsets.

    Args:
        dataset: the dataset to split.
        lengths: the subsets' lengths, summing to ``len(dataset)``; or fractions summing to 1,
            in which case each length is ``floor(frac * len(dataset))`` and the remainder is
            handed out one by one, round-robin, from the first subset on.
        generator: source of the permutation (default: the global generator).

    Example:
        >>> train, val = random_split(ds, [0.9, 0.1], generator=deepgrad.Generator().manual_seed(0))
    """
    n = len(dataset)  # type: ignore[arg-type]  # map-style datasets have a length
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths is empty; expected at least one length")
    all_ints = all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in lengths)
    if not all_ints and math.isclose(sum(lengths), 1.0) and sum(lengths) <= 1.0 + 1e-9:
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(
                    f"random_split: fraction at index {i} is not between 0 and 1; got {frac}")
        sizes = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        for i, size in enumerate(sizes):
            if size == 0:
                warnings.warn(f"random_split: length of split at index {i} is 0; "
                              f"this split will be empty", stacklevel=2)
    else:
        for i, x in enumerate(lengths):
            if isinstance(x, bool) or not float(x).is_integer() or x < 0:
                raise ValueError(
                    f"random_split: lengths must be non-negative integers or fractions "
                    f"summing to 1; got {lengths[i]!r} at index {i}")
        sizes = [int(x) for x in lengths]
    if sum(sizes) != n:
        raise ValueError(
            f"random_split: sum of lengths does not equal the length of the dataset; "
            f"expected {n}, got {sum(sizes)} (lengths {sizes})")
    perm = _generator(generator).permutation(n).tolist()
    out, offset = [], 0
    for size in sizes:
        out.append(Subset(dataset, perm[offset:offset + size]))
        offset += size
    return out
