"""``DataLoader``: batches of samples from a dataset, and the default collate function.

Everything runs in the calling process. ``num_workers`` is accepted for PyTorch compatibility
but no worker processes are started: batches of array-backed datasets are gathered with one
fancy index (see ``dataset.py``), which is faster than shipping them between processes would be.
"""
from __future__ import annotations

import collections.abc
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..random import Generator
from ..tensor import Tensor, _make
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["DataLoader", "default_collate", "default_convert", "get_worker_info"]

_COLLATE_ERROR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts "
                  "or lists; found {}")


def default_collate(batch: Sequence) -> Any:
    """Stack a list of samples into a batch, field by field.

    - Tensors and ndarrays are stacked along a new first dim into a Tensor (dtype kept).
    - Python floats become a float64 Tensor, ints int64, bools bool; NumPy scalars keep their
      dtype.
    - Strings and bytes are returned as a list.
    - Dicts collate per key (same mapping type), named tuples per field (same type), other
      tuples and lists per position into a list (as PyTorch does).

    Stacking works on the arrays, so the result records no autograd history.

    Example:
        >>> default_collate([(np.zeros(3), 0), (np.ones(3), 1)])
        [tensor([[0., 0., 0.], [1., 1., 1.]], dtype=float64), tensor([0, 1])]
    """
    if len(batch) == 0:
        raise ValueError("default_collate: batch is empty; expected at least one sample")
    elem = batch[0]
    t = type(elem)
    if t is Tensor:
        return _make(_stack("default_collate", [b.data for b in batch]))
    if t is np.ndarray:
        if elem.dtype.kind in "OSUV":
            raise TypeError(_COLLATE_ERROR.format(f"ndarray of dtype {elem.dtype}"))
        return _make(_stack("default_collate", batch))
    if isinstance(elem, np.generic):
        if elem.dtype.kind in "OSUV":
            raise TypeError(_COLLATE_ERROR.format(f"numpy scalar of dtype {elem.dtype}"))
        return _make(np.asarray(batch))
    if isinstance(elem, Tensor):
        return _make(_stack("default_collate", [b.data for b in batch]))
    if isinstance(elem, np.ndarray):
        return _make(_stack("default_collate", [np.asarray(b) for b in batch]))
    if isinstance(elem, bool):
        return _make(np.asarray(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return _make(np.asarray(batch, dtype=np.int64))
    if isinstance(elem, float):
        return _make(np.asarray(batch, dtype=np.float64))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        per_key = {key: default_collate([d[key] for d in batch]) for key in elem}
        try:
            return t(per_key)
        except TypeError:
            return per_key
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return t(*(default_collate(list(samples)) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(b) != size for b in batch):
            sizes = sorted({len(b) for b in batch})
            raise RuntimeError(
                f"default_collate: each element in list of batch should be of equal size; "
                f"got sizes {sizes}")
        fields = [default_collate(list(samples)) for samples in zip(*batch)]
        if isinstance(elem, tuple):
            return fields
        try:
            return t(fields)
        except TypeError:
            return fields
    raise TypeError(_COLLATE_ERROR.format(t))


def _stack(op: str, arrays: Sequence) -> np.ndarray:
    shape = arrays[0].shape
    for a in arrays:
        if a.shape != shape:
            shapes = sorted({str(b.shape) for b in arrays})
            raise RuntimeError(
                f"{op}: stack expects each sample to have the same shape; got shapes "
                f"{', '.join(shapes)}")
    return np.stack(arrays)


def default_convert(data: Any) -> Any:
    """Turn ndarrays and NumPy scalars into Tensors, recursively; leave other data as is.

    The collate function used when ``batch_size=None`` (no automatic batching).
    """
    if isinstance(data, Tensor):
        return data
    if isinstance(data, (np.ndarray, np.generic)):
        if data.dtype.kind in "OSUV":
            return data
        return _make(np.asarray(data))
    if isinstance(data, (str, bytes)):
        return data
    kind: Any = type(data)
    if isinstance(data, collections.abc.Mapping):
        converted = {k: default_convert(v) for k, v in data.items()}
        try:
            return kind(converted)
        except TypeError:
            return converted
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence):
        try:
            return kind([default_convert(d) for d in data])
        except TypeError:
            return [default_convert(d) for d in data]
    return data


def get_worker_info() -> None:
    """Always ``None``: data loading runs in the main process."""
    return None


class DataLoader:
    """Iterate over a dataset in batches.

    Args:
        dataset: a map-style ``Dataset`` (``__getitem__``/``__len__``) or an
            ``IterableDataset``.
        batch_size: samples per batch; ``None`` yields single samples (no batching).
        shuffle: visit samples in a new random order every epoch.
        sampler: order of indices (excludes ``shuffle``).
        batch_sampler: yields lists of indices, one per batch (excludes ``batch_size``,
            ``shuffle``, ``sampler`` and ``drop_last``).
        num_workers: accepted for compatibility; loading always runs in this process.
        collate_fn: merges a list of samples into a batch (default ``default_collate``).
        pin_memory: ignored (there is no accelerator memory).
        drop_last: drop the last batch if it is incomplete.
        timeout, worker_init_fn, prefetch_factor, persistent_workers: accepted and ignored
            (they only concern worker processes).
        generator: source of randomness for ``shuffle`` (default: the global generator,
            seeded by ``deepgrad.manual_seed``).

    With the default collate function, datasets that provide ``_fetch_batch`` (TensorDataset,
    MNIST, their Subsets and ConcatDatasets) are read with one fancy index per batch.

    Example:
        >>> loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
        >>> for xb, yb in loader:
        ...     loss = loss_fn(model(xb), yb)
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Sampler | None = None, batch_sampler: Sampler | None = None,
                 num_workers: int = 0, collate_fn: Callable | None = None,
                 pin_memory: bool = False, drop_last: bool = False, timeout: float = 0,
                 worker_init_fn: Callable | None = None, multiprocessing_context=None,
                 generator: Generator | None = None, *, prefetch_factor: int | None = None,
                 persistent_workers: bool = False, pin_memory_device: str = "",
                 in_order: bool = True) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) \
                or num_workers < 0:
            raise ValueError(
                f"DataLoader: num_workers option should be a non-negative integer; "
                f"got {num_workers!r}")
        if timeout < 0:
            raise ValueError(f"DataLoader: timeout option should be non-negative; got {timeout}")
        if batch_size is not None and (isinstance(batch_size, bool)
                                       or not isinstance(batch_size, (int, np.integer))
                                       or batch_size <= 0):
            raise ValueError(
                f"DataLoader: batch_size should be a positive integer or None; "
                f"got {batch_size!r}")
        self.dataset = dataset
        self.num_workers = int(num_workers)
        self.pin_memory = pin_memory
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        self.pin_memory_device = pin_memory_device
        self.in_order = in_order
        self.generator = generator
        self._iterable = isinstance(dataset, IterableDataset)

        if self._iterable:
            if shuffle not in (None, False):
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified shuffle option, "
                    f"got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified sampler option, "
                    f"got sampler={sampler!r}")
            if batch_sampler is not None:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified batch_sampler "
                    f"option, got batch_sampler={batch_sampler!r}")
        else:
            if sampler is not None and shuffle:
                raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
            if batch_sampler is not None:
                if batch_size != 1 or shuffle or sampler is not None or drop_last:
                    raise ValueError(
                        "DataLoader: batch_sampler option is mutually exclusive with "
                        "batch_size, shuffle, sampler, and drop_last")
                batch_size = None
                drop_last = False
            elif batch_size is None and drop_last:
                raise ValueError(
                    "DataLoader: batch_size=None option disables auto-batching and is mutually "
                    "exclusive with drop_last")
            if sampler is None:
                if shuffle:
                    sampler = RandomSampler(dataset, generator=generator)
                else:
                    sampler = SequentialSampler(dataset)
            if batch_size is not None and batch_sampler is None:
                batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler: Any = sampler
        self.batch_sampler: Any = batch_sampler
        if collate_fn is None:
            collate_fn = default_collate if batch_size is not None or batch_sampler is not None \
                else default_convert
        self.collate_fn = collate_fn

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    def __iter__(self) -> Iterator:
        if self._iterable:
            return self._iter_iterable()
        if not self._auto_collation:
            return self._iter_single()
        return self._iter_batches()

    def _iter_batches(self) -> Iterator:
        dataset = self.dataset
        collate = self.collate_fn
        batch_sampler = self.batch_sampler
        if isinstance(batch_sampler, BatchSampler):
            batches = batch_sampler._iter_arrays()
        else:
            batches = (np.asarray(b, dtype=np.int64) for b in batch_sampler)
        fetch = getattr(dataset, "_fetch_batch", None) if collate is default_collate else None
        if fetch is not None:
            for idx in batches:
                yield fetch(idx)
            return
        getitems = getattr(dataset, "__getitems__", None)
        if getitems is not None:
            for idx in batches:
                yield collate(getitems(idx.tolist()))
            return
        for idx in batches:
            yield collate([dataset[i] for i in idx.tolist()])

    def _iter_single(self) -> Iterator:
        dataset = self.dataset
        convert = self.collate_fn
        for i in self.sampler:
            yield convert(dataset[i])

    def _iter_iterable(self) -> Iterator:
        convert = self.collate_fn
        if self.batch_size is None:
            for item in self.dataset:
                yield convert(item)
            return
        bs = self.batch_size
        batch = []
        for item in self.dataset:
            batch.append(item)
            if len(batch) == bs:
                yield convert(batch)
                batch = []
        if batch and not self.drop_last:
            yield convert(batch)

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            if self.drop_last:
                return n // self.batch_size
            return -(-n // self.batch_size)
        if self._auto_collation:
            return len(self.batch_sampler)
        return len(self.sampler)

    def __repr__(self) -> str:
        return (f"DataLoader(dataset={type(self.dataset).__name__}, "
                f"batch_size={self.batch_size}, drop_last={self.drop_last}, "
                f"sampler={type(self.sampler).__name__ if self.sampler is not None else None})")
