"""Datasets, samplers and random_split."""
from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.data import (BatchSampler, ConcatDataset, Dataset, RandomSampler,
                           SequentialSampler, Subset, SubsetRandomSampler, TensorDataset,
                           WeightedRandomSampler, random_split)

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


class Squares(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return i, i * i


# -- TensorDataset ----------------------------------------------------------------------------
def test_tensor_dataset_items_and_len():
    x = dg.arange(12).reshape(6, 2)
    y = dg.tensor([0, 1, 0, 1, 0, 1])
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    xi, yi = ds[3]
    assert isinstance(xi, dg.Tensor) and xi.tolist() == [6, 7] and yi.item() == 1
    assert ds[-1][0].tolist() == [10, 11]
    np.testing.assert_array_equal(ds._fetch_batch(np.array([5, 0]))[0].numpy(), [[10, 11], [0, 1]])


def test_tensor_dataset_accepts_ndarrays():
    ds = TensorDataset(np.zeros((4, 3), np.float32), np.arange(4))
    assert isinstance(ds.tensors[0], dg.Tensor) and ds[2][1].item() == 2


def test_tensor_dataset_size_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"TensorDataset: size mismatch.*\(5, 2\).*\(4,\)"):
        TensorDataset(dg.zeros(5, 2), dg.zeros(4))


def test_tensor_dataset_bad_types():
    with pytest.raises(TypeError, match="TensorDataset: argument 1 must be a Tensor"):
        TensorDataset(dg.zeros(3), [1, 2, 3])
    with pytest.raises(ValueError, match="at least one tensor"):
        TensorDataset()


# -- Subset and ConcatDataset -----------------------------------------------------------------
def test_subset():
    sub = Subset(Squares(10), [7, 2, 5])
    assert len(sub) == 3
    assert sub[0] == (7, 49) and sub[2] == (5, 25)
    assert not hasattr(sub, "_fetch_batch")  # Squares has no fast path


def test_subset_fast_path_maps_indices():
    ds = TensorDataset(dg.arange(10) * 10)
    sub = Subset(ds, [9, 3, 4])
    assert hasattr(sub, "_fetch_batch")
    assert sub._fetch_batch(np.array([2, 0]))[0].tolist() == [40, 90]


def test_concat_dataset_indexing():
    cat = ConcatDataset([Squares(3), Squares(2)])
    assert len(cat) == 5 and cat.cumulative_sizes == [3, 5]
    assert [cat[i][0] for i in range(5)] == [0, 1, 2, 0, 1]
    assert cat[-1] == (1, 1) and cat[-5] == (0, 0)
    with pytest.raises(IndexError, match="ConcatDataset: index out of range"):
        cat[5]
    with pytest.raises(ValueError, match="ConcatDataset: index out of range"):
        cat[-6]
    assert len(Squares(2) + Squares(4)) == 6


def test_concat_fast_path_keeps_requested_order():
    a = TensorDataset(dg.arange(5), dg.arange(5) * 2)
    b = TensorDataset(dg.arange(100, 103), dg.arange(100, 103) * 2)
    cat = ConcatDataset([a, b])
    idx = np.array([6, 0, 7, 4, 5, 1, -1])
    got = cat._fetch_batch(idx)
    want = [cat[int(i)] for i in idx]
    assert got[0].tolist() == [int(w[0].item()) for w in want]
    assert got[1].tolist() == [int(w[1].item()) for w in want]


# -- samplers ---------------------------------------------------------------------------------
def test_sequential_sampler():
    s = SequentialSampler(range(5))
    assert list(s) == [0, 1, 2, 3, 4] and len(s) == 5


def test_random_sampler_is_a_permutation_and_reproducible():
    g = dg.Generator().manual_seed(3)
    s = RandomSampler(range(50), generator=g)
    first, second = list(s), list(s)
    assert sorted(first) == list(range(50)) and first != second  # a new order every epoch
    g.manual_seed(3)
    assert list(s) == first


def test_random_sampler_global_seed():
    s = RandomSampler(range(20))
    dg.manual_seed(11)
    a = list(s)
    dg.manual_seed(11)
    assert list(s) == a


def test_random_sampler_num_samples_and_replacement():
    s = RandomSampler(range(4), num_samples=10)
    out = list(s)
    assert len(out) == 10 and len(s) == 10
    assert sorted(out[:4]) == [0, 1, 2, 3] and sorted(out[4:8]) == [0, 1, 2, 3]
    r = RandomSampler(range(3), replacement=True, num_samples=100)
    out = list(r)
    assert len(out) == 100 and set(out) <= {0, 1, 2}
    with pytest.raises(ValueError, match="RandomSampler: num_samples"):
        RandomSampler(range(3), num_samples=0)
    with pytest.raises(TypeError, match="RandomSampler: replacement"):
        RandomSampler(range(3), replacement=1)


def test_subset_and_weighted_samplers():
    s = SubsetRandomSampler([10, 20, 30])
    assert sorted(s) == [10, 20, 30] and len(s) == 3
    w = WeightedRandomSampler([0.0, 1.0, 0.0, 3.0], num_samples=400)
    out = np.array(list(w))
    assert set(out.tolist()) <= {1, 3}
    assert 0.6 < (out == 3).mean() < 0.9
    with pytest.raises(ValueError, match="WeightedRandomSampler: without replacement"):
        WeightedRandomSampler([1.0, 0.0], num_samples=2, replacement=False)


def test_batch_sampler():
    assert list(BatchSampler(SequentialSampler(range(7)), 3, False)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(BatchSampler(SequentialSampler(range(7)), 3, True)) == [[0, 1, 2], [3, 4, 5]]
    assert len(BatchSampler(range(7), 3, False)) == 3 and len(BatchSampler(range(7), 3, True)) == 2
    # any iterable of indices works, through the slow path
    assert list(BatchSampler([4, 2, 0, 1], 3, False)) == [[4, 2, 0], [1]]
    with pytest.raises(ValueError, match="BatchSampler: batch_size"):
        BatchSampler(range(3), 0, False)


def test_batch_sampler_respects_overridden_iter():
    class Reversed(SequentialSampler):
        def __iter__(self):
            return iter(range(len(self.data_source) - 1, -1, -1))

    assert list(BatchSampler(Reversed(range(5)), 2, False)) == [[4, 3], [2, 1], [0]]


# -- random_split ------------------------------------------------------------------------------
def test_random_split_lengths():
    parts = random_split(Squares(10), [3, 7], generator=dg.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [3, 7]
    seen = sorted(i for p in parts for i in p.indices)
    assert seen == list(range(10))


def test_random_split_reproducible():
    a = random_split(range(30), [10, 20], generator=dg.Generator().manual_seed(5))
    b = random_split(range(30), [10, 20], generator=dg.Generator().manual_seed(5))
    assert a[0].indices == b[0].indices
    dg.manual_seed(1)
    c = random_split(range(30), [10, 20])
    dg.manual_seed(1)
    d = random_split(range(30), [10, 20])
    assert c[1].indices == d[1].indices


@pytest.mark.parametrize("n, fracs", [(11, [0.5, 0.3, 0.2]), (10, [0.25, 0.75]),
                                      (7, [1 / 3, 1 / 3, 1 / 3]), (5, [0.1, 0.9]),
                                      (100, [0.8, 0.1, 0.1])])
def test_random_split_fractions_match_pytorch_lengths(n, fracs):
    parts = random_split(range(n), fracs)
    lengths = [len(p) for p in parts]
    assert sum(lengths) == n
    if torch is not None:
        want = [len(p) for p in torch.utils.data.random_split(range(n), fracs)]
        assert lengths == want


def test_random_split_fraction_rounding_rule():
    # floor(11 * f) = [5, 3, 2]; the one left over goes to the first split
    assert [len(p) for p in random_split(range(11), [0.5, 0.3, 0.2])] == [6, 3, 2]


def test_random_split_errors():
    with pytest.raises(ValueError, match=r"random_split: sum of lengths.*expected 10, got 9"):
        random_split(range(10), [4, 5])
    with pytest.raises(ValueError, match="random_split: lengths must be"):
        random_split(range(10), [0.5, 0.7])
    with pytest.raises(ValueError, match="random_split: lengths must be"):
        random_split(range(10), [-1, 11])
