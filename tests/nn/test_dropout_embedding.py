"""Dropout (element and channel-wise) and Embedding: semantics, reproducibility, gradients
against PyTorch, gradchecks and errors."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import FLOAT_DTYPES, TOLERANCES, run_gradcheck

import deepgrad as dg
from deepgrad import nn

try:
    import torch
    torch.set_num_threads(1)  # tiny ops: a busy thread pool makes torch 1000x slower
except ImportError:  # pragma: no cover
    torch = None

F = dg.nn.functional


# -- dropout -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_zeroes_about_p_and_scales_the_rest(p, dtype):
    x = dg.tensor(np.random.default_rng(0).uniform(1, 2, (200, 100)).astype(dtype),
                  requires_grad=True)
    y = F.dropout(x, p)
    assert y.dtype == np.dtype(dtype)
    out, inp = y.detach().numpy(), x.detach().numpy()
    kept = out != 0
    assert abs(1 - kept.mean() - p) < 0.02
    np.testing.assert_allclose(out[kept], inp[kept] / (1 - p), rtol=1e-6)
    g = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    y.backward(dg.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), g * kept / (1 - p), rtol=1e-6)
    assert x.grad.dtype == np.dtype(dtype)


def test_dropout_eval_and_p0_are_identity():
    x = dg.randn(4, 5, requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    drop = nn.Dropout(0.5).eval()
    assert drop(x) is x
    drop.train()
    assert not np.array_equal(drop(x).detach().numpy(), x.detach().numpy())


def test_dropout_p1_gives_zeros_and_zero_grads():
    x = dg.randn(3, 4, requires_grad=True)
    y = F.dropout(x, 1.0)
    y.sum().backward()
    np.testing.assert_array_equal(y.detach().numpy(), 0)
    np.testing.assert_array_equal(x.grad.numpy(), 0)


def test_dropout_reproducible_with_manual_seed():
    x = dg.ones(50, 50)
    dg.manual_seed(123)
    a = F.dropout(x, 0.3).numpy()
    b = nn.Dropout2d(0.5)(dg.ones(4, 6, 3, 3)).numpy()
    dg.manual_seed(123)
    np.testing.assert_array_equal(F.dropout(x, 0.3).numpy(), a)
    np.testing.assert_array_equal(nn.Dropout2d(0.5)(dg.ones(4, 6, 3, 3)).numpy(), b)
    c = F.dropout(x, 0.3).numpy()
    assert not np.array_equal(a, c)  # the generator moved on


def test_dropout_mask_is_drawn_in_float32(monkeypatch):
    """The random draws use the input's dtype: no float64 temporaries for float32 input."""
    import deepgrad.ops.nn_ops as ops

    seen = []

    class Spy:
        def __init__(self, rng):
            self.rng = rng

        def random(self, shape, dtype=np.float64):
            seen.append(np.dtype(dtype))
            return self.rng.random(shape, dtype=dtype)

    real = ops._generator
    monkeypatch.setattr(ops, "_generator", lambda g: Spy(real(g)))
    F.dropout(dg.randn(3, 4), 0.5)
    F.dropout2d(dg.randn(2, 3, 4, 4), 0.5)
    F.dropout(dg.randn(3, 4, dtype=dg.float64), 0.5)
    assert seen == [np.float32, np.float32, np.float64]


@pytest.mark.parametrize("shape,noise", [((4, 6, 3, 5), (4, 6, 1, 1)), ((4, 6, 7), (4, 6, 1))])
def test_dropout2d_drops_whole_channels(shape, noise):
    x = dg.tensor(np.random.default_rng(0).uniform(1, 2, shape).astype(np.float32),
                  requires_grad=True)
    if len(shape) == 3:
        with pytest.warns(UserWarning, match=r"3D input.*\(N, C, L\)"):
            y = F.dropout2d(x, 0.5)
    else:
        y = F.dropout2d(x, 0.5)
    out = y.detach().numpy()
    kept = out != 0
    axes = tuple(range(2, len(shape)))
    per_channel = kept.all(axis=axes) | (~kept).all(axis=axes)
    assert per_channel.all()
    assert 0.2 < kept.all(axis=axes).mean() < 0.8
    np.testing.assert_allclose(out[kept], x.detach().numpy()[kept] * 2, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept * 2.0)


def test_dropout1d_drops_whole_channels_batched_and_unbatched():
    for shape in ((5, 8, 6), (8, 6)):
        out = F.dropout1d(dg.ones(*shape), 0.5).numpy()
        per = (out == 0).all(axis=-1) | (out == 2).all(axis=-1)
        assert per.all()
    with pytest.raises(ValueError, match=r"dropout1d: expected input of shape \(N, C, L\) or "
                                         r"\(C, L\), got shape \(2, 3, 4, 5\)"):
        F.dropout1d(dg.ones(2, 3, 4, 5))


def test_dropout_modules_repr_and_modes():
    if torch is not None:
        for name in ("Dropout", "Dropout1d", "Dropout2d"):
            assert repr(getattr(nn, name)(0.25)) == repr(getattr(torch.nn, name)(0.25))
    model = nn.Sequential(nn.Dropout(0.5), nn.Dropout2d(0.5))
    model.eval()
    x = dg.randn(2, 3, 4, 4)
    np.testing.assert_array_equal(model(x).numpy(), x.numpy())
    assert list(model.state_dict()) == []


def test_dropout_gradcheck():
    x = np.random.default_rng(0).standard_normal((3, 4))

    def fn(m, a):
        dg.manual_seed(5)  # the same mask on every call
        return F.dropout(a, 0.4)

    def fn2(m, a):
        dg.manual_seed(5)
        return F.dropout2d(a.reshape(1, 3, 2, 2), 0.4)

    run_gradcheck(fn, [x])
    run_gradcheck(fn2, [x])


def test_dropout_errors():
    with pytest.raises(ValueError, match=r"dropout: dropout probability has to be between 0 and "
                                         r"1, but got 1.5"):
        F.dropout(dg.randn(3), 1.5)
    with pytest.raises(ValueError, match=r"dropout2d: dropout probability has to be between"):
        F.dropout2d(dg.randn(2, 3, 4, 4), -0.1)
    with pytest.raises(ValueError, match=r"Dropout: dropout probability has to be between 0 and "
                                         r"1, but got 2"):
        nn.Dropout(2)


# -- embedding -----------------------------------------------------------------------------


def _embedding_pair(torch_, dtype, **kwargs):
    tm = torch_.nn.Embedding(10, 4, **kwargs).to(torch_.float64 if dtype == np.float64 else
                                                  torch_.float32)
    dm = nn.Embedding(10, 4, dtype=dtype, **kwargs)
    dm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return dm, tm


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kwargs", [{}, {"padding_idx": 3}, {"padding_idx": -1},
                                    {"scale_grad_by_freq": True},
                                    {"padding_idx": 0, "scale_grad_by_freq": True},
                                    {"max_norm": 1.0}, {"max_norm": 1.5, "norm_type": 1.0},
                                    {"max_norm": 0.5, "norm_type": float("inf")},
                                    {"max_norm": 1.2, "norm_type": 3.0, "padding_idx": 3}],
                         ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "default")
@pytest.mark.parametrize("idx_shape", [(7,), (3, 5), (2, 2, 3), ()])
def test_embedding_against_torch(idx_shape, kwargs, dtype):
    torch_ = pytest.importorskip("torch")
    dm, tm = _embedding_pair(torch_, dtype, **kwargs)
    assert repr(dm) == repr(tm)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 10, idx_shape)
    if idx.size > 3:
        idx.reshape(-1)[:3] = [3, 3, 9]  # repeated indices, the padding rows
    yd = dm(dg.tensor(idx))
    yt = tm(torch_.tensor(idx))
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    assert yd.shape == tuple(yt.shape) and yd.dtype == np.dtype(dtype)
    if "max_norm" in kwargs:  # rows rescaled in place: the norms sum in their own order
        np.testing.assert_allclose(yd.detach().numpy(), yt.detach().numpy(), rtol=rtol,
                                   atol=atol)
        np.testing.assert_allclose(dm.weight.detach().numpy(), tm.weight.detach().numpy(),
                                   rtol=rtol, atol=atol)
        norms = np.linalg.norm(dm.weight.detach().numpy()[np.unique(idx)], kwargs.get(
            "norm_type", 2.0), axis=1)
        assert (norms <= kwargs["max_norm"] * (1 + 1e-5)).all()
    else:
        np.testing.assert_array_equal(yd.detach().numpy(), yt.detach().numpy())
    g = rng.standard_normal(yd.shape).astype(dtype)
    yd.backward(dg.tensor(g))
    yt.backward(torch_.tensor(g))
    assert dm.weight.grad.dtype == np.dtype(dtype)
    np.testing.assert_allclose(dm.weight.grad.numpy(), tm.weight.grad.numpy(), rtol=rtol,
                               atol=atol)


def test_embedding_padding_row_is_zero_and_gets_no_grad():
    emb = nn.Embedding(5, 3, padding_idx=-2)
    assert emb.padding_idx == 3
    np.testing.assert_array_equal(emb.weight.detach().numpy()[3], 0)
    out = emb(dg.tensor([[3, 1, 3]]))
    out.sum().backward()
    np.testing.assert_array_equal(emb.weight.grad.numpy()[3], 0)
    np.testing.assert_array_equal(emb.weight.grad.numpy()[1], 1)


def test_embedding_init_is_standard_normal_and_state_dict_matches_torch():
    dg.manual_seed(0)
    emb = nn.Embedding(2000, 50)
    w = emb.weight.detach().numpy()
    assert w.shape == (2000, 50) and w.dtype == np.float32
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1) < 0.01
    assert list(emb.state_dict()) == ["weight"]
    if torch is not None:
        assert list(torch.nn.Embedding(3, 2).state_dict()) == list(nn.Embedding(3, 2).state_dict())


def test_embedding_from_pretrained():
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    emb = nn.Embedding.from_pretrained(dg.tensor(w))
    assert not emb.weight.requires_grad
    np.testing.assert_array_equal(emb(dg.tensor([2, 0])).numpy(), w[[2, 0]])
    emb = nn.Embedding.from_pretrained(dg.tensor(w), freeze=False, padding_idx=1)
    assert emb.weight.requires_grad and emb.padding_idx == 1
    np.testing.assert_array_equal(emb.weight.detach().numpy()[1], w[1])  # not zeroed
    emb(dg.tensor([1, 2, 2])).sum().backward()
    np.testing.assert_array_equal(emb.weight.grad.numpy()[[1, 2]], [[0, 0, 0], [2, 2, 2]])
    if torch is not None:
        assert repr(emb) == repr(torch.nn.Embedding.from_pretrained(torch.tensor(w),
                                                                    padding_idx=1))


def test_embedding_gradcheck():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 3))
    idx = dg.tensor(np.array([[0, 2, 2], [5, 1, 0]]))
    run_gradcheck(lambda m, ww: F.embedding(idx, ww), [w])
    # padding_idx and scale_grad_by_freq change the gradient on purpose (checked against
    # torch above); with the padding row unused the gradient is the true one
    run_gradcheck(lambda m, ww: F.embedding(idx, ww, padding_idx=3), [w])


def test_embedding_max_norm_rescales_only_rows_looked_up_and_counts_as_in_place():
    w = np.array([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0], [0.0, 9.0]], np.float32)
    emb = nn.Embedding.from_pretrained(dg.tensor(w), freeze=False, max_norm=1.0)
    out = emb(dg.tensor([0, 1, 0]))
    new = emb.weight.detach().numpy()
    np.testing.assert_allclose(new[0], [0.6, 0.8], rtol=1e-6)  # 5 -> 1
    np.testing.assert_array_equal(new[1], w[1])  # within the norm: untouched
    np.testing.assert_array_equal(new[2:], w[2:])  # not looked up: untouched
    np.testing.assert_array_equal(out.detach().numpy(), new[[0, 1, 0]])
    # an op that saved the weight before the forward rescaled it cannot backward
    emb2 = nn.Embedding.from_pretrained(dg.tensor(w), freeze=False, max_norm=1.0)
    used = (emb2.weight * emb2.weight).sum()
    emb2(dg.tensor([2]))
    with pytest.raises(RuntimeError, match="in-place"):
        used.backward()


def test_embedding_int32_indices():
    emb = nn.Embedding(5, 2)
    a = emb(dg.tensor(np.array([1, 4], dtype=np.int32))).detach().numpy()
    np.testing.assert_array_equal(a, emb.weight.detach().numpy()[[1, 4]])


def test_embedding_errors():
    emb = nn.Sequential(nn.Embedding(5, 2))
    with pytest.raises(TypeError, match=r"0 \(Embedding\): embedding: expected integer indices "
                                        r"\(int64 or int32\), got dtype float32 for input of "
                                        r"shape \(2,\)"):
        emb(dg.tensor([1.0, 2.0]))
    with pytest.raises(IndexError, match=r"embedding: index 5 is out of range for weight of "
                                         r"shape \(5, 2\); expected indices in \[0, 4\]"):
        emb(dg.tensor([[1, 5]]))
    with pytest.raises(IndexError, match=r"index -1 is out of range"):
        emb(dg.tensor([-1]))
    with pytest.raises(ValueError, match=r"Embedding: max_norm must be a norm \(>= 0\), got -1"):
        nn.Embedding(5, 2, max_norm=-1)
    with pytest.raises(ValueError, match=r"embedding: max_norm must be a norm \(>= 0\), got nan"):
        F.embedding(dg.tensor([1]), dg.randn(5, 2), max_norm=float("nan"))
    with pytest.raises(ValueError, match=r"Embedding: padding_idx must be within "
                                         r"num_embeddings=5, got 5"):
        nn.Embedding(5, 2, padding_idx=5)
    with pytest.raises(ValueError, match=r"Embedding: num_embeddings must be a positive "
                                         r"integer, got 0"):
        nn.Embedding(0, 2)
    with pytest.raises(ValueError, match=r"embedding: weight must be 2-d"):
        F.embedding(dg.tensor([1]), dg.randn(5))
