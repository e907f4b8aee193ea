"""DataLoader: batching, last batch, drop_last, shuffling, collate, the fast path."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.data import (BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler,
                           SequentialSampler, Subset, TensorDataset, default_collate,
                           default_convert)

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


class Items(Dataset):
    """A map-style dataset without a fast path; samples are whatever ``make(i)`` returns."""

    def __init__(self, n, make=lambda i: (np.full(3, i, np.float32), i)):
        self.n = n
        self.make = make

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.make(i)


def _tensor_ds(n=10):
    return TensorDataset(dg.arange(n * 2, dtype=dg.float32).reshape(n, 2), dg.arange(n))


# -- batching ---------------------------------------------------------------------------------
def test_batches_in_order_with_short_last_batch():
    loader = DataLoader(_tensor_ds(10), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    x, y = batches[0]
    assert isinstance(batches[0], list)  # collate of tuples gives a list, as in PyTorch
    assert x.shape == (4, 2) and x.dtype == np.float32 and y.dtype == np.int64


def test_drop_last():
    loader = DataLoader(_tensor_ds(10), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [b[1].tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(DataLoader(_tensor_ds(8), batch_size=4, drop_last=True)) == 2


def test_default_batch_size_is_one():
    loader = DataLoader(_tensor_ds(3))
    assert len(loader) == 3
    x, y = next(iter(loader))
    assert x.shape == (1, 2) and y.tolist() == [0]


def test_fast_path_equals_per_item_collate():
    ds = _tensor_ds(13)
    for idx in ([3, 0, 12], list(range(13)), [7]):
        fast = ds._fetch_batch(np.array(idx))
        slow = default_collate([ds[i] for i in idx])
        assert type(fast) is type(slow)
        for f, s in zip(fast, slow):
            assert f.dtype == s.dtype and f.shape == s.shape
            np.testing.assert_array_equal(f.numpy(), s.numpy())


def test_fast_path_is_used_and_custom_collate_is_not_bypassed():
    calls = []

    class Counting(TensorDataset):
        def __getitem__(self, i):
            calls.append(i)
            return super().__getitem__(i)

    ds = Counting(dg.arange(6))
    list(DataLoader(ds, batch_size=4))
    assert calls == []  # whole batches through _fetch_batch
    out = list(DataLoader(ds, batch_size=4, collate_fn=lambda b: len(b)))
    assert out == [4, 2] and calls == list(range(6))


def test_getitems_protocol():
    class Batched(Items):
        def __getitems__(self, idx):
            return [self.make(i) for i in idx]

    ds = Batched(5)
    x, y = next(iter(DataLoader(ds, batch_size=5)))
    assert y.tolist() == [0, 1, 2, 3, 4] and x.shape == (5, 3)


# -- shuffling --------------------------------------------------------------------------------
def _order(loader):
    return [i for _, y in loader for i in y.tolist()]


def test_shuffle_reproducible_from_manual_seed_and_reshuffles():
    loader = DataLoader(_tensor_ds(20), batch_size=6, shuffle=True)
    dg.manual_seed(123)
    e1, e2 = _order(loader), _order(loader)
    assert sorted(e1) == list(range(20)) and sorted(e2) == list(range(20))
    assert e1 != e2  # iterating twice reshuffles
    dg.manual_seed(123)
    assert _order(loader) == e1 and _order(loader) == e2


def test_shuffle_with_explicit_generator_ignores_global_seed():
    g = dg.Generator().manual_seed(7)
    loader = DataLoader(_tensor_ds(20), batch_size=6, shuffle=True, generator=g)
    dg.manual_seed(0)
    e1 = _order(loader)
    g.manual_seed(7)
    dg.manual_seed(999)
    assert _order(loader) == e1


def test_shuffle_slow_path_same_order_as_fast_path():
    fast = DataLoader(_tensor_ds(10), batch_size=3, shuffle=True,
                      generator=dg.Generator().manual_seed(1))
    slow = DataLoader(Items(10, lambda i: (np.zeros(2), i)), batch_size=3, shuffle=True,
                      generator=dg.Generator().manual_seed(1))
    assert _order(fast) == _order(slow)


# -- samplers and options -----------------------------------------------------------------------
def test_sampler_and_batch_sampler_options():
    ds = _tensor_ds(6)
    loader = DataLoader(ds, batch_size=2, sampler=[5, 4, 3, 2, 1, 0])
    assert _order(loader) == [5, 4, 3, 2, 1, 0]
    loader = DataLoader(ds, batch_sampler=[[0, 5], [1], [2, 3, 4]])
    assert [b[1].tolist() for b in loader] == [[0, 5], [1], [2, 3, 4]]
    assert len(loader) == 3
    loader = DataLoader(ds, batch_sampler=BatchSampler(SequentialSampler(ds), 4, True))
    assert len(loader) == 1 and _order(loader) == [0, 1, 2, 3]


def test_mutually_exclusive_options():
    ds = _tensor_ds(4)
    with pytest.raises(ValueError, match="DataLoader: sampler option is mutually exclusive"):
        DataLoader(ds, sampler=RandomSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="DataLoader: batch_sampler option is mutually"):
        DataLoader(ds, batch_sampler=[[0]], batch_size=2)
    with pytest.raises(ValueError, match="DataLoader: batch_size"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="DataLoader: num_workers"):
        DataLoader(ds, num_workers=-1)


def test_num_workers_and_pin_memory_run_in_process():
    loader = DataLoader(_tensor_ds(5), batch_size=2, num_workers=4, pin_memory=True,
                        persistent_workers=True, prefetch_factor=2)
    assert loader.num_workers == 4
    assert _order(loader) == [0, 1, 2, 3, 4]


def test_batch_size_none_yields_converted_samples():
    loader = DataLoader(Items(3), batch_size=None)
    items = list(loader)
    assert len(loader) == 3 and len(items) == 3
    x, y = items[1]
    assert isinstance(x, dg.Tensor) and x.shape == (3,) and y == 1


def test_iterable_dataset():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(7))

        def __len__(self):
            return 7

    loader = DataLoader(Stream(), batch_size=3)
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(loader) == 3
    assert len(DataLoader(Stream(), batch_size=3, drop_last=True)) == 2
    with pytest.raises(ValueError, match="IterableDataset: expected unspecified shuffle"):
        DataLoader(Stream(), shuffle=True)


def test_subset_of_tensor_dataset_through_loader():
    ds = _tensor_ds(10)
    loader = DataLoader(Subset(ds, [9, 1, 4]), batch_size=2)
    assert _order(loader) == [9, 1, 4]


# -- default_collate -----------------------------------------------------------------------------
Point = collections.namedtuple("Point", ["x", "y"])


def test_collate_tuples_and_dicts():
    batch = [{"img": np.ones((2, 2), np.float32) * i, "label": i, "name": f"s{i}",
              "pair": (float(i), np.int32(i))} for i in range(3)]
    out = default_collate(batch)
    assert isinstance(out, dict) and set(out) == {"img", "label", "name", "pair"}
    assert out["img"].shape == (3, 2, 2) and out["img"].dtype == np.float32
    assert out["label"].dtype == np.int64 and out["label"].tolist() == [0, 1, 2]
    assert out["name"] == ["s0", "s1", "s2"]
    assert isinstance(out["pair"], list)
    assert out["pair"][0].dtype == np.float64 and out["pair"][1].dtype == np.int32


def test_collate_namedtuple_and_lists():
    out = default_collate([Point(1, 2.0), Point(3, 4.0)])
    assert isinstance(out, Point) and out.x.tolist() == [1, 3] and out.y.dtype == np.float64
    out = default_collate([[1, 2], [3, 4]])
    assert isinstance(out, list) and [t.tolist() for t in out] == [[1, 3], [2, 4]]
    out = default_collate([True, False])
    assert out.dtype == np.bool_


def test_collate_tensors_stack():
    out = default_collate([dg.tensor([1.0, 2.0]), dg.tensor([3.0, 4.0])])
    assert out.shape == (2, 2) and out.dtype == np.float32 and not out.requires_grad


def test_collate_errors():
    with pytest.raises(RuntimeError, match="default_collate: each element in list of batch"):
        default_collate([[1, 2], [3]])
    with pytest.raises(RuntimeError, match=r"default_collate: stack expects.*\(3,\).*\(4,\)"):
        default_collate([np.zeros(3), np.zeros(4)])
    with pytest.raises(TypeError, match="default_collate: batch must contain"):
        default_collate([object(), object()])
    with pytest.raises(ValueError, match="default_collate: batch is empty"):
        default_collate([])


def test_default_convert():
    out = default_convert({"a": np.arange(3), "b": (np.float32(1.5), "s"), "c": 4})
    assert isinstance(out["a"], dg.Tensor) and out["a"].tolist() == [0, 1, 2]
    assert isinstance(out["b"], list) and out["b"][0].dtype == np.float32 and out["b"][1] == "s"
    assert out["c"] == 4


def _same(ours, theirs):
    """Structure, dtype and values of a deepgrad collate result equal PyTorch's."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, dg.Tensor), type(ours)
        assert str(theirs.dtype) == f"torch.{ours.dtype.name}"
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and set(ours) == set(theirs)
        for k in theirs:
            _same(ours[k], theirs[k])
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _same(a, b)
    else:
        assert ours == theirs


@requires_torch
@pytest.mark.parametrize("make", [
    lambda i: (np.full((2, 3), i, np.float32), i),
    lambda i: {"x": np.arange(4, dtype=np.int16) + i, "y": float(i) / 3, "id": str(i)},
    lambda i: [np.float64(i), np.uint8(i), True],
    lambda i: Point(np.ones(2) * i, (i, float(i))),
    lambda i: float(i) * 0.5,
])
def test_collate_matches_pytorch(make):
    batch = [make(i) for i in range(4)]
    torch_batch = [make(i) for i in range(4)]
    _same(default_collate(batch), torch.utils.data.default_collate(torch_batch))
