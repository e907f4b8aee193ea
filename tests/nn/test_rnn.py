"""Recurrent layers (RNN, LSTM, GRU) and cells: outputs, final states and every gradient
against PyTorch over a grid of options, gradchecks of the fused ops, dropout between layers,
state_dict layout, initialisation and error messages."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from helpers import TOLERANCES

import deepgrad as dg
from deepgrad import nn
from deepgrad.ops import rnn as rnn_ops

try:
    import torch
    torch.set_num_threads(1)  # tiny ops: a busy thread pool makes torch 1000x slower
except ImportError:  # pragma: no cover
    torch = None

T, N, I, H = 4, 3, 3, 5
KINDS = ["LSTM", "GRU", "RNN", "RNN_relu"]
DTYPES = [np.float32, np.float64]


def _make(kind, lib, dtype, **kw):
    if kind == "RNN_relu":
        kind, kw = "RNN", dict(kw, nonlinearity="relu")
    m = getattr(lib.nn, kind)(I, H, **kw)
    if lib is torch:
        return m.to(torch.float64 if dtype == np.float64 else torch.float32)
    return m.to(dtype)


def _copy_weights(tm, m):
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})


def _close(a, b, dtype, what):
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, err_msg=what)


def _flat_outputs(kind, res):
    out, hn = res
    if kind == "LSTM":
        return [out, hn[0], hn[1]]
    return [out, hn]


def _run(lib, m, kind, x, states):
    """Forward with fresh leaves; returns (outputs, input leaves)."""
    mk = (lambda a: torch.tensor(a, requires_grad=True)) if lib is torch else \
        (lambda a: dg.tensor(a, requires_grad=True))
    xs = mk(x)
    leaves = [xs]
    if states is None:
        res = m(xs)
    else:
        st = [mk(s) for s in states]
        leaves += st
        res = m(xs, tuple(st) if kind == "LSTM" else st[0])
    return _flat_outputs(kind, res), leaves


CONFIGS = {
    "default": (dict(), False, True),
    "h0": (dict(), True, True),
    "layers2": (dict(num_layers=2), True, True),
    "bidirectional": (dict(bidirectional=True), True, True),
    "layers2_bidir_batch_first": (dict(num_layers=2, bidirectional=True, batch_first=True),
                                  False, True),
    "no_bias": (dict(bias=False), True, True),
    "no_bias_bidir_layers2": (dict(bias=False, bidirectional=True, num_layers=2), True, True),
    "batch_first": (dict(batch_first=True), True, True),
    "unbatched": (dict(), True, False),
    "unbatched_no_h0": (dict(num_layers=2), False, False),
    "unbatched_bidir_batch_first": (dict(bidirectional=True, batch_first=True, num_layers=2),
                                    True, False),
}


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch(kind, config, dtype):
    kw, with_state, batched = CONFIGS[config]
    rng = np.random.default_rng(0)
    tm = _make(kind, torch, dtype, **kw)
    m = _make(kind, dg, dtype, **kw)
    _copy_weights(tm, m)
    D = 2 if kw.get("bidirectional") else 1
    L = kw.get("num_layers", 1)
    if batched:
        xshape = (N, T, I) if kw.get("batch_first") else (T, N, I)
        sshape = (L * D, N, H)
    else:
        xshape, sshape = (T, I), (L * D, H)
    x = rng.standard_normal(xshape).astype(dtype)
    states = None
    if with_state:
        states = [rng.standard_normal(sshape).astype(dtype)
                  for _ in range(2 if kind == "LSTM" else 1)]
    t_out, t_leaves = _run(torch, tm, kind, x, states)
    d_out, d_leaves = _run(dg, m, kind, x, states)
    names = ["output", "h_n", "c_n"]
    t_loss = d_loss = 0
    for k, (t, d) in enumerate(zip(t_out, d_out)):
        assert d.shape == tuple(t.shape), names[k]
        assert d.dtype == np.dtype(dtype), names[k]
        _close(d.detach().numpy(), t.detach().numpy(), dtype, names[k])
        w = rng.standard_normal(d.shape).astype(dtype)
        t_loss = t_loss + (t * torch.tensor(w)).sum()
        d_loss = d_loss + (d * dg.tensor(w)).sum()
    t_loss.backward()
    d_loss.backward()
    for k, (t, d) in enumerate(zip(t_leaves, d_leaves)):
        assert d.grad is not None and d.grad.shape == d.shape
        assert d.grad.dtype == np.dtype(dtype)
        _close(d.grad.numpy(), t.grad.numpy(), dtype, ["grad input", "grad h_0", "grad c_0"][k])
    d_params = dict(m.named_parameters())
    for name, p in tm.named_parameters():
        g = d_params[name].grad
        assert g is not None and g.shape == tuple(p.shape), name
        _close(g.numpy(), p.grad.numpy(), dtype, f"grad {name}")


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize("kind", KINDS)
def test_only_output_used_and_frozen_weights(kind):
    """Unused final states (zero grads) and parameters without requires_grad."""
    rng = np.random.default_rng(1)
    tm = _make(kind, torch, np.float64, num_layers=2, bidirectional=True)
    m = _make(kind, dg, np.float64, num_layers=2, bidirectional=True)
    _copy_weights(tm, m)
    tm.weight_hh_l0.requires_grad_(False)
    m.weight_hh_l0.requires_grad = False
    x = rng.standard_normal((T, N, I))
    (t_out, _), (d_out, _) = tm(torch.tensor(x)), m(dg.tensor(x))
    w = rng.standard_normal(d_out.shape)
    (t_out * torch.tensor(w)).sum().backward()
    (d_out * dg.tensor(w)).sum().backward()
    assert m.weight_hh_l0.grad is None
    d_params = dict(m.named_parameters())
    for name, p in tm.named_parameters():
        if p.requires_grad:
            _close(d_params[name].grad.numpy(), p.grad.numpy(), np.float64, name)


# -- cells ----------------------------------------------------------------------------------

CELL_KINDS = ["LSTMCell", "GRUCell", "RNNCell", "RNNCell_relu"]


def _make_cell(kind, lib, dtype, **kw):
    if kind == "RNNCell_relu":
        kind, kw = "RNNCell", dict(kw, nonlinearity="relu")
    m = getattr(lib.nn, kind)(I, H, **kw)
    if lib is torch:
        return m.to(torch.float64 if dtype == np.float64 else torch.float32)
    return m.to(dtype)


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("config", ["default", "hx", "no_bias", "unbatched", "unbatched_hx"])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_cell_matches_torch(kind, config, dtype):
    rng = np.random.default_rng(2)
    kw = dict(bias=False) if config == "no_bias" else {}
    tm = _make_cell(kind, torch, dtype, **kw)
    m = _make_cell(kind, dg, dtype, **kw)
    _copy_weights(tm, m)
    batched = not config.startswith("unbatched")
    x = rng.standard_normal((N, I) if batched else (I,)).astype(dtype)
    with_state = config in ("hx", "no_bias", "unbatched_hx")
    n_states = 2 if kind == "LSTMCell" else 1
    states = [rng.standard_normal((N, H) if batched else (H,)).astype(dtype)
              for _ in range(n_states)] if with_state else None
    results = []
    for lib in (torch, dg):
        mod = tm if lib is torch else m
        mk = (lambda a: torch.tensor(a, requires_grad=True)) if lib is torch else \
            (lambda a: dg.tensor(a, requires_grad=True))
        leaves = [mk(x)] + ([mk(s) for s in states] if states else [])
        hx = None
        if states:
            hx = tuple(leaves[1:]) if n_states == 2 else leaves[1]
        out = mod(leaves[0], hx)
        outs = list(out) if isinstance(out, tuple) else [out]
        results.append((outs, leaves))
    (t_outs, t_leaves), (d_outs, d_leaves) = results
    t_loss = d_loss = 0
    for t, d in zip(t_outs, d_outs):
        assert d.shape == tuple(t.shape)
        _close(d.detach().numpy(), t.detach().numpy(), dtype, "output")
        w = rng.standard_normal(d.shape).astype(dtype)
        t_loss = t_loss + (t * torch.tensor(w)).sum()
        d_loss = d_loss + (d * dg.tensor(w)).sum()
    t_loss.backward()
    d_loss.backward()
    for t, d in zip(t_leaves, d_leaves):
        _close(d.grad.numpy(), t.grad.numpy(), dtype, "input/state grad")
    d_params = dict(m.named_parameters())
    for name, p in tm.named_parameters():
        _close(d_params[name].grad.numpy(), p.grad.numpy(), dtype, f"grad {name}")


# -- gradchecks of the fused ops --------------------------------------------------------------


def _leaf(rng, *shape):
    return dg.tensor(rng.standard_normal(shape) * 0.7, dtype=dg.float64, requires_grad=True)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
def test_gradcheck_layer_op(mode, batch_first):
    rng = np.random.default_rng(3)
    t, n, i, h, D = 3, 2, 3, 2, 2
    G = {"LSTM": 4, "GRU": 3}.get(mode, 1)
    x = _leaf(rng, *((n, t, i) if batch_first else (t, n, i)))
    h0 = _leaf(rng, D, n, h)
    c0 = _leaf(rng, D, n, h) if mode == "LSTM" else None
    ws = []
    for _ in range(D):
        ws += [_leaf(rng, G * h, i), _leaf(rng, G * h, h), _leaf(rng, G * h), _leaf(rng, G * h)]
    inputs = [x, h0] + ([c0] if c0 is not None else []) + ws

    def fn(x, h0, *rest):
        c = rest[0] if mode == "LSTM" else None
        w = list(rest[1:] if mode == "LSTM" else rest)
        out, hn, cn = rnn_ops.recurrent_layer(mode, x, h0, c, w, batch_first=batch_first)
        return (out, hn) if cn is None else (out, hn, cn)

    assert dg.autograd.gradcheck(fn, tuple(inputs))


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_gradcheck_layer_op_no_bias_no_state(mode):
    rng = np.random.default_rng(4)
    G = {"LSTM": 4, "GRU": 3}.get(mode, 1)
    x = _leaf(rng, 3, 2, 3)
    w_ih, w_hh = _leaf(rng, G * 2, 3), _leaf(rng, G * 2, 2)

    def fn(x, w_ih, w_hh):
        out, hn, cn = rnn_ops.recurrent_layer(mode, x, None, None, [w_ih, w_hh, None, None])
        return (out, hn) if cn is None else (out, hn, cn)

    assert dg.autograd.gradcheck(fn, (x, w_ih, w_hh))


def test_gradcheck_layer_op_with_dropout():
    """A fixed seed makes the mask the same in every evaluation."""
    rng = np.random.default_rng(5)
    x = _leaf(rng, 3, 2, 4)
    ws = [_leaf(rng, 8, 4), _leaf(rng, 8, 2), _leaf(rng, 8), _leaf(rng, 8)]

    def fn(x, *w):
        dg.manual_seed(7)
        out, hn, cn = rnn_ops.recurrent_layer("LSTM", x, None, None, list(w), dropout=0.4)
        return out, hn, cn

    assert dg.autograd.gradcheck(fn, (x, *ws))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("with_state", [False, True])
def test_gradcheck_cell_ops(kind, with_state):
    rng = np.random.default_rng(6)
    G = {"lstm": 4, "gru": 3}.get(kind, 1)
    x = _leaf(rng, 2, 3)
    w = [_leaf(rng, G * 2, 3), _leaf(rng, G * 2, 2), _leaf(rng, G * 2), _leaf(rng, G * 2)]
    states = [_leaf(rng, 2, 2) for _ in range(2 if kind == "lstm" else 1)] if with_state else []

    def fn(x, *rest):
        st = list(rest[:len(states)]) or [None] * (2 if kind == "lstm" else 1)
        ws = rest[len(states):]
        if kind == "lstm":
            return rnn_ops.lstm_cell(x, st[0], st[1], *ws)
        if kind == "gru":
            return rnn_ops.gru_cell(x, st[0], *ws)
        return rnn_ops.rnn_cell(x, st[0], *ws, nonlinearity=kind[4:])

    assert dg.autograd.gradcheck(fn, (x, *states, *w))


# -- dropout between layers -------------------------------------------------------------------


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_dropout_is_identity_in_eval(kind):
    kw = dict(num_layers=3, dropout=0.5, bidirectional=True)
    tm = _make(kind, torch, np.float64, **kw).eval()
    m = _make(kind, dg, np.float64, **kw).eval()
    _copy_weights(tm, m)
    x = np.random.default_rng(7).standard_normal((T, N, I))
    t_out = tm(torch.tensor(x))[0].detach().numpy()
    d_out = m(dg.tensor(x))[0].detach().numpy()
    _close(d_out, t_out, np.float64, "eval output")


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_dropout_changes_outputs_in_train(kind):
    m = getattr(nn, kind)(I, H, num_layers=2, dropout=0.5)
    x = dg.randn(T, N, I)
    m.eval()
    ref = m(x)[0].detach().numpy()
    m.train()
    dg.manual_seed(1)
    a = m(x)[0].detach().numpy()
    dg.manual_seed(1)
    b = m(x)[0].detach().numpy()
    c = m(x)[0].detach().numpy()
    assert not np.allclose(a, ref)
    np.testing.assert_array_equal(a, b)  # the global generator decides the mask
    assert not np.array_equal(a, c)
    with dg.no_grad():  # train-mode dropout does not depend on grad mode, as in PyTorch
        dg.manual_seed(1)
        np.testing.assert_array_equal(m(x)[0].detach().numpy(), a)


def test_dropout_not_applied_to_input_or_last_layer():
    """With one layer the dropout option has no effect (PyTorch warns about it)."""
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        m = nn.LSTM(I, H, dropout=0.9)
    x = dg.randn(T, N, I)
    a = m(x)[0].detach().numpy()
    m.eval()
    np.testing.assert_array_equal(m(x)[0].detach().numpy(), a)


def test_dropout_one_zeroes_the_input_of_upper_layers():
    m = nn.RNN(I, H, num_layers=2, dropout=1.0)
    x = dg.randn(T, N, I)
    out = m(x)[0].detach().numpy()
    # layer 2 sees zeros: its output depends only on its biases and recurrence
    ref = nn.RNN(H, H)
    ref.load_state_dict({"weight_ih_l0": m.weight_ih_l1.data, "weight_hh_l0": m.weight_hh_l1.data,
                         "bias_ih_l0": m.bias_ih_l1.data, "bias_hh_l0": m.bias_hh_l1.data})
    np.testing.assert_allclose(out, ref(dg.zeros(T, N, H))[0].detach().numpy(), rtol=1e-6)


# -- structure: state_dict, init, repr ----------------------------------------------------------


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize("kw", [dict(), dict(num_layers=3, bidirectional=True),
                                dict(bias=False, num_layers=2), dict(bidirectional=True,
                                                                     bias=False)])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_state_dict_layout_matches_torch(kind, kw):
    tm = getattr(torch.nn, kind)(I, H, **kw)
    m = getattr(nn, kind)(I, H, **kw)
    t_sd, d_sd = tm.state_dict(), m.state_dict()
    assert list(d_sd) == list(t_sd)
    for k in t_sd:
        assert tuple(d_sd[k].shape) == tuple(t_sd[k].shape), k
        assert d_sd[k].dtype == np.float32
    assert m._flat_weights_names == tm._flat_weights_names
    assert m._all_weights == tm._all_weights
    assert [[tuple(p.shape) for p in ws] for ws in m.all_weights] == \
        [[tuple(p.shape) for p in ws] for ws in tm.all_weights]
    assert repr(m) == repr(tm)
    m2 = getattr(nn, kind)(I, H, **kw)
    m2.load_state_dict(m.state_dict())
    for k, v in m2.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), d_sd[k].numpy())


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize("kind", CELL_KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_cell_state_dict_and_repr_match_torch(kind, bias):
    tm = _make_cell(kind, torch, np.float32, bias=bias)
    m = _make_cell(kind, dg, np.float32, bias=bias)
    assert list(m.state_dict()) == list(tm.state_dict())
    for k, v in tm.state_dict().items():
        assert tuple(m.state_dict()[k].shape) == tuple(v.shape)
    assert repr(m) == repr(tm)
    if not bias:
        assert m.bias_ih is None and m.bias_hh is None


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.RNNCell])
def test_default_init_is_uniform_in_one_over_sqrt_hidden(cls):
    hidden = 16
    m = cls(8, hidden, **({"num_layers": 2} if "Cell" not in cls.__name__ else {}))
    bound = 1 / math.sqrt(hidden)
    for name, p in m.named_parameters():
        v = p.detach().numpy()
        assert v.dtype == np.float32
        assert np.abs(v).max() <= bound, name
        assert v.std() > bound / 3, name  # not constant, spread over the interval


def test_dtype_and_default_dtype():
    m = nn.GRU(I, H, dtype=dg.float64)
    assert m.weight_ih_l0.dtype == np.float64
    out, hn = m(dg.randn(T, N, I, dtype=dg.float64))
    assert out.dtype == np.float64 and hn.dtype == np.float64


def test_no_grad_matches_grad_mode_and_builds_no_graph():
    m = nn.LSTM(I, H, num_layers=2, bidirectional=True)
    x = dg.randn(T, N, I)
    out, (hn, cn) = m(x)
    with dg.no_grad():
        out2, (hn2, cn2) = m(x)
    assert not out2.requires_grad and out2.grad_fn is None
    np.testing.assert_array_equal(out.detach().numpy(), out2.numpy())
    np.testing.assert_array_equal(hn.detach().numpy(), hn2.numpy())


def test_one_node_per_layer():
    m = nn.LSTM(I, H, batch_first=True)
    out, (hn, cn) = m(dg.randn(N, T, I))
    assert out.grad_fn is hn.grad_fn is cn.grad_fn
    assert type(out.grad_fn).__name__ == "LSTMLayer"


def test_training_reduces_loss():
    """A tiny sequence task: predict the running sum's sign; the loss must drop."""
    dg.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 16, 1)).astype(np.float32)
    y = (np.cumsum(x, axis=0) > 0).astype(np.float32)
    lstm, head = nn.LSTM(1, 8), nn.Linear(8, 1)
    params = list(lstm.parameters()) + list(head.parameters())
    losses = []
    for _ in range(60):
        out, _ = lstm(dg.tensor(x))
        p = head(out).sigmoid()
        loss = ((p - dg.tensor(y)) ** 2).mean()
        for q in params:
            q.grad = None
        loss.backward()
        with dg.no_grad():
            for q in params:
                q.data -= 2.0 * q.grad.data
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


# -- errors -------------------------------------------------------------------------------------


def test_constructor_errors():
    with pytest.raises(ValueError, match="LSTM: hidden_size must be greater than zero, got 0"):
        nn.LSTM(3, 0)
    with pytest.raises(ValueError, match="GRU: num_layers must be greater than zero"):
        nn.GRU(3, 4, num_layers=0)
    with pytest.raises(TypeError, match="RNN: hidden_size should be of type int, got float"):
        nn.RNN(3, 2.5)
    with pytest.raises(ValueError, match=r"LSTM: dropout should be a number in range \[0, 1\]"):
        nn.LSTM(3, 4, 2, dropout=1.5)
    with pytest.raises(ValueError, match="RNN: unknown nonlinearity 'gelu'"):
        nn.RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="RNNCell: unknown nonlinearity"):
        nn.RNNCell(3, 4, nonlinearity="sigmoid")
    with pytest.raises(NotImplementedError, match="LSTM: proj_size=2 is not supported"):
        nn.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="LSTMCell: hidden_size must be greater than zero"):
        nn.LSTMCell(3, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.LSTM(3, 4, num_layers=2, dropout=0.3)  # no warning with more than one layer


def test_forward_errors_name_layer_and_shapes():
    m = nn.LSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"LSTM: expected input with last dim 3 \(input_size\), "
                                         r"got shape \(5, 2, 7\)"):
        m(dg.randn(5, 2, 7))
    with pytest.raises(ValueError, match=r"LSTM: expected input to be 2-D .* got 4-D input of "
                                         r"shape \(5, 2, 3, 1\)"):
        m(dg.randn(5, 2, 3, 1))
    with pytest.raises(ValueError, match=r"LSTM: expected h_0 of shape \(2, 2, 4\).* got shape "
                                         r"\(1, 2, 4\)"):
        m(dg.randn(5, 2, 3), (dg.randn(1, 2, 4), dg.randn(2, 2, 4)))
    with pytest.raises(ValueError, match=r"LSTM: expected c_0 of shape \(2, 2, 4\).* got shape "
                                         r"\(2, 3, 4\)"):
        m(dg.randn(5, 2, 3), (dg.randn(2, 2, 4), dg.randn(2, 3, 4)))
    with pytest.raises(ValueError, match=r"expected h_0 of shape \(2, 4\).*got shape "
                                         r"\(2, 1, 4\)"):
        m(dg.randn(5, 3), (dg.randn(2, 1, 4), dg.randn(2, 1, 4)))
    with pytest.raises(TypeError, match=r"LSTM: expected hx to be a tuple \(h_0, c_0\)"):
        m(dg.randn(5, 2, 3), dg.randn(2, 2, 4))
    with pytest.raises(ValueError, match="sequence length larger than 0"):
        m(dg.randn(0, 2, 3))
    g = nn.GRU(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"GRU: expected h_0 of shape \(1, 2, 4\).*got shape "
                                         r"\(1, 5, 4\)"):
        g(dg.randn(2, 5, 3), dg.randn(1, 5, 4))
    with pytest.raises(TypeError, match="GRU: input dtype float64 differs from weight dtype "
                                        "float32"):
        g(dg.randn(2, 5, 3, dtype=dg.float64))


def test_nested_error_path():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(3, 4)

        def forward(self, x):
            return self.rnn(x)

    with pytest.raises(ValueError, match=r"^rnn \(RNN\): expected input with last dim 3"):
        Net()(dg.randn(2, 1, 5))


def test_cell_errors():
    c = nn.LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"LSTMCell: expected input with last dim 3 "
                                         r"\(input_size\), got shape \(2, 5\)"):
        c(dg.randn(2, 5))
    with pytest.raises(ValueError, match=r"LSTMCell: expected h of shape \(2, 4\).*got shape "
                                         r"\(3, 4\)"):
        c(dg.randn(2, 3), (dg.randn(3, 4), dg.randn(2, 4)))
    with pytest.raises(TypeError, match=r"LSTMCell: expected hx to be a tuple \(h, c\)"):
        c(dg.randn(2, 3), dg.randn(2, 4))
    g = nn.GRUCell(3, 4)
    with pytest.raises(ValueError, match=r"GRUCell: expected input to be 1-D .* got 3-D input"):
        g(dg.randn(2, 3, 1))
    with pytest.raises(ValueError, match=r"GRUCell: expected hx of shape \(4,\).*got shape "
                                         r"\(2, 4\)"):
        g(dg.randn(3), dg.randn(2, 4))


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_second_backward_with_retain_graph(kind):
    """Backward reuses the saved activations' memory; a second backward recomputes them."""
    m = getattr(nn, kind)(I, H, num_layers=2, bidirectional=True, dropout=0.3)
    x = dg.randn(T, N, I, requires_grad=True)
    out, _ = m(x)
    loss = (out * out).sum()
    loss.backward(retain_graph=True)
    g1 = x.grad.numpy().copy()
    p1 = m.weight_hh_l0.grad.numpy().copy()
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * g1, rtol=1e-5)
    np.testing.assert_allclose(m.weight_hh_l0.grad.numpy(), 2 * p1, rtol=1e-5)


def test_outputs_and_graphs_survive_later_calls():
    """Scratch memory is reused across calls only once nothing refers to it."""
    m = nn.LSTM(I, H, batch_first=True)
    xs = [dg.randn(N, T, I, requires_grad=True) for _ in range(3)]
    outs = [m(x)[0] for x in xs]  # three graphs alive at once
    with dg.no_grad():
        refs = [m(x)[0].numpy().copy() for x in xs]
    for o, r in zip(outs, refs):
        np.testing.assert_array_equal(o.detach().numpy(), r)
    grads = []
    for x, o in zip(xs, outs):
        o.sum().backward()
        grads.append(x.grad.numpy().copy())
    for x, g in zip(xs, grads):
        x.grad = None
        m(x)[0].sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), g, rtol=1e-6)


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize("kind", KINDS)
def test_long_sequence_matches_torch(kind):
    """More time steps than the op's copy chunks (and not a multiple of them)."""
    rng = np.random.default_rng(8)
    kw = dict(bidirectional=True, batch_first=True)
    tm = _make(kind, torch, np.float64, **kw)
    m = _make(kind, dg, np.float64, **kw)
    _copy_weights(tm, m)
    x = rng.standard_normal((2, 37, I))
    states = [rng.standard_normal((2, 2, H)) for _ in range(2 if kind == "LSTM" else 1)]
    t_out, t_leaves = _run(torch, tm, kind, x, states)
    d_out, d_leaves = _run(dg, m, kind, x, states)
    t_loss = sum((t * torch.tensor(np.cos(np.arange(t.numel())).reshape(t.shape))).sum()
                 for t in t_out)
    d_loss = sum((d * dg.tensor(np.cos(np.arange(d.numel())).reshape(d.shape))).sum()
                 for d in d_out)
    t_loss.backward()
    d_loss.backward()
    for t, d in zip(t_out, d_out):
        _close(d.detach().numpy(), t.detach().numpy(), np.float64, "output")
    for t, d in zip(t_leaves, d_leaves):
        _close(d.grad.numpy(), t.grad.numpy(), np.float64, "input grad")
    d_params = dict(m.named_parameters())
    for name, p in tm.named_parameters():
        _close(d_params[name].grad.numpy(), p.grad.numpy(), np.float64, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_flush_zeroes_only_values_below_tiny_over_eps(dtype):
    fi = np.finfo(dtype)
    cut = fi.tiny / fi.eps
    below = np.nextafter(dtype(cut), dtype(0))
    x = np.array([cut, -cut, below, -below, fi.tiny, fi.tiny / 8, 1e-40 if dtype == np.float64
                  else 0.0, 0.0, 1.0, -3.5, np.inf, -np.inf, np.nan, fi.max, 1e-20] * 3, dtype)
    expected = np.where(np.abs(x) < cut, 0, x)
    y = x.copy()
    rnn_ops._Flush(np, y)()
    np.testing.assert_array_equal(y, expected)  # NaN compares equal to NaN here


# the sequence length per kind that brings the carried gradient at h0 below tiny/eps of float32
# (about 1e-31) but leaves it far inside float64's normal range: checked against torch below
_VANISHING_T = {"LSTM": 125, "GRU": 130, "RNN": 36}


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_vanishing_carried_grad_is_flushed_and_still_matches_torch(kind):
    """Long sequence, gradient only from the last output: the carried grads shrink by orders of
    magnitude per step. In float32 the ones below tiny/eps become exact zeros (values that
    would be, or soon make, subnormals: 2-5x slower backward), everything else matches torch;
    in float64 the same small grads are normal and come out as torch's."""
    T = _VANISHING_T[kind]
    rng = np.random.default_rng(11)
    x = rng.standard_normal((T, 2, I))
    states = [rng.standard_normal((1, 2, H)) for _ in range(2 if kind == "LSTM" else 1)]
    results = {}
    for dtype in DTYPES:
        tm = _make(kind, torch, dtype)
        with torch.no_grad():
            for p in tm.parameters():
                p.copy_(torch.linspace(-0.2, 0.2, p.numel()).reshape(p.shape).flip(0) * 0.5
                        + 0.05 * torch.cos(torch.arange(p.numel()).reshape(p.shape) * 1.0))
        m = _make(kind, dg, dtype)
        _copy_weights(tm, m)
        xs = x.astype(dtype)
        st = [s.astype(dtype) for s in states]
        t_out, t_leaves = _run(torch, tm, kind, xs, st)
        d_out, d_leaves = _run(dg, m, kind, xs, st)
        t_out[0][-1].sum().backward()
        d_out[0][-1].sum().backward()
        results[dtype] = (tm, m, t_leaves, d_leaves)
    fi = np.finfo(np.float32)
    cut = fi.tiny / fi.eps
    # float64 (exact enough): the grads of the initial states are tiny but not zero, below the cut
    tm, m, t_leaves, d_leaves = results[np.float64]
    for t, d in zip(t_leaves[1:], d_leaves[1:]):
        ref = np.abs(t.grad.numpy())
        assert 0 < ref.max() < cut, f"test setup: |grad h0| max {ref.max()} not in (0, {cut})"
        _close(d.grad.numpy(), t.grad.numpy(), np.float64, "float64 state grad")
    # float32: those same grads are exactly zero, the rest as torch's
    tm, m, t_leaves, d_leaves = results[np.float32]
    for t, d in zip(t_leaves[1:], d_leaves[1:]):
        assert not np.any(d.grad.numpy()), "carried grad below tiny/eps was not flushed"
        _close(d.grad.numpy(), t.grad.numpy(), np.float32, "float32 state grad")
    _close(d_leaves[0].grad.numpy(), t_leaves[0].grad.numpy(), np.float32, "input grad")
    d_params = dict(m.named_parameters())
    for name, p in tm.named_parameters():
        _close(d_params[name].grad.numpy(), p.grad.numpy(), np.float32, name)
