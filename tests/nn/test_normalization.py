"""BatchNorm1d/2d/3d and LayerNorm: functional and modules against PyTorch (outputs, grads,
running statistics over several steps, eval mode), gradchecks, state_dict and errors."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import FLOAT_DTYPES, TOLERANCES, check_against_torch, run_gradcheck

import deepgrad as dg
from deepgrad import nn

try:
    import torch as _torch_mod
    _torch_mod.set_num_threads(1)  # tiny ops: a busy thread pool makes torch 1000x slower
except ImportError:  # pragma: no cover
    pass

F = dg.nn.functional


def _torch():
    return pytest.importorskip("torch")


def _copy_from_torch(dm, tm):
    dm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})


def _step(dm, tm, x, dtype, seed):
    """One forward/backward in both; compare output, input grad and parameter grads."""
    torch = _torch()
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    xd = dg.tensor(x.astype(dtype), requires_grad=True)
    xt = torch.tensor(x.astype(dtype), requires_grad=True)
    yd = dm(xd)
    yt = tm(xt)
    assert yd.dtype == np.dtype(dtype)
    np.testing.assert_allclose(yd.detach().numpy(), yt.detach().numpy(), rtol=rtol, atol=atol)
    w = np.random.default_rng(seed).standard_normal(x.shape).astype(dtype)
    (yd * dg.tensor(w)).sum().backward()
    (yt * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=rtol, atol=atol,
                               err_msg="input grad")
    dparams = dict(dm.named_parameters())
    for name, p in tm.named_parameters():
        assert dparams[name].grad.dtype == np.dtype(dtype)
        np.testing.assert_allclose(dparams[name].grad.numpy(), p.grad.numpy(), rtol=rtol,
                                   atol=atol, err_msg=f"grad of {name}")
        dparams[name].grad = None
        p.grad = None


def _compare_buffers(dm, tm, dtype):
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    dsd = dm.state_dict()
    for k, v in tm.state_dict().items():
        got = dsd[k].numpy()
        assert got.dtype == v.numpy().dtype, k
        np.testing.assert_allclose(got, v.numpy(), rtol=rtol, atol=atol, err_msg=k)


BN_SHAPES = [("BatchNorm1d", (6, 3)), ("BatchNorm1d", (4, 3, 5)), ("BatchNorm2d", (3, 3, 4, 2)),
             ("BatchNorm3d", (2, 3, 2, 3, 2))]
BN_OPTIONS = [
    {},
    {"momentum": None},
    {"momentum": 0.3, "eps": 1e-3},
    {"affine": False},
    {"bias": False},
    {"track_running_stats": False},
    {"affine": False, "track_running_stats": False},
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("opts", BN_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in
                                                                   o.items()) or "default")
@pytest.mark.parametrize("cls,shape", BN_SHAPES, ids=[f"{c}{s}" for c, s in BN_SHAPES])
def test_batchnorm_against_torch(cls, shape, opts, dtype):
    torch = _torch()
    tm = getattr(torch.nn, cls)(3, **opts).to(torch.float64 if dtype == np.float64 else
                                              torch.float32)
    dm = getattr(nn, cls)(3, dtype=dtype, **opts)
    assert repr(dm) == repr(tm)
    assert [(k, tuple(v.shape)) for k, v in dm.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in tm.state_dict().items()]
    with torch.no_grad():  # non-trivial affine parameters
        for p in tm.parameters():
            p.copy_(torch.randn(p.shape, dtype=p.dtype))
    _copy_from_torch(dm, tm)
    rng = np.random.default_rng(0)
    for step in range(3):  # training steps: batch statistics and running updates
        x = rng.standard_normal(shape) * (1 + step) + step
        _step(dm, tm, x, dtype, step)
        _compare_buffers(dm, tm, dtype)
    dm.eval()
    tm.eval()
    x = rng.standard_normal(shape)
    _step(dm, tm, x, dtype, 10)
    _compare_buffers(dm, tm, dtype)


def test_batchnorm_state_dict_layout_and_dtypes():
    torch = _torch()
    dsd = nn.BatchNorm2d(4).state_dict()
    tsd = torch.nn.BatchNorm2d(4).state_dict()
    assert list(dsd) == list(tsd)
    assert dsd["num_batches_tracked"].dtype == np.int64
    assert dsd["num_batches_tracked"].shape == ()
    assert dsd["running_mean"].dtype == np.float32
    assert [n for n, _ in nn.BatchNorm2d(4).named_parameters()] == ["weight", "bias"]
    assert list(nn.BatchNorm1d(4, track_running_stats=False).state_dict()) == ["weight", "bias"]


def test_batchnorm_counts_batches_and_cumulative_average():
    bn = nn.BatchNorm1d(2, momentum=None)
    xs = [dg.randn(5, 2) for _ in range(4)]
    for x in xs:
        bn(x)
    assert int(bn.num_batches_tracked.item()) == 4
    means = np.stack([x.numpy().mean(axis=0) for x in xs])
    np.testing.assert_allclose(bn.running_mean.numpy(), means.mean(axis=0), rtol=1e-5,
                               atol=1e-6)
    variances = np.stack([x.numpy().var(axis=0, ddof=1) for x in xs])
    np.testing.assert_allclose(bn.running_var.numpy(), variances.mean(axis=0), rtol=1e-5)


def test_batchnorm_eval_does_not_touch_running_stats_and_no_grad_still_updates():
    bn = nn.BatchNorm1d(3)
    with dg.no_grad():
        bn(dg.randn(4, 3) + 5)  # training under no_grad still updates, as in PyTorch
    assert int(bn.num_batches_tracked.item()) == 1
    assert np.all(bn.running_mean.numpy() > 0.1)
    before = bn.state_dict()
    before = {k: v.numpy().copy() for k, v in before.items()}
    bn.eval()
    bn(dg.randn(4, 3))
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])


def test_batchnorm_float32_has_no_float64():
    bn = nn.BatchNorm2d(3)
    x = dg.randn(2, 3, 4, 4, requires_grad=True)
    y = bn(x)
    (y * y).sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    assert bn.weight.grad.dtype == np.float32 and bn.running_var.dtype == np.float32


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 4), (2, 2, 2, 3)])
def test_batch_norm_gradcheck(shape, training):
    rng = np.random.default_rng(0)
    c = shape[1]
    x = rng.standard_normal(shape)
    w = rng.standard_normal(c)
    b = rng.standard_normal(c)
    rm = rng.standard_normal(c)
    rv = rng.uniform(0.5, 2.0, c)

    def fn(m, x, w, b):
        return F.batch_norm(x, dg.tensor(rm.copy()), dg.tensor(rv.copy()), w, b,
                            training=training, momentum=0.1, eps=1e-5)

    run_gradcheck(fn, [x, w, b])
    run_gradcheck(lambda m, x: F.batch_norm(x, None, None, training=True), [x])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_functional_against_torch(training, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 4))
    w = rng.standard_normal(3)
    b = rng.standard_normal(3)
    rm = rng.standard_normal(3)
    rv = rng.uniform(0.5, 2.0, 3)

    def fn(m, x, w, b):
        tdt = x.dtype
        stats = (m.tensor(rm.copy(), dtype=tdt), m.tensor(rv.copy(), dtype=tdt))
        return m.nn.functional.batch_norm(x, *stats, w, b, training=training, momentum=0.2,
                                          eps=1e-4)

    check_against_torch(fn, [x, w, b], dtype)
    check_against_torch(lambda m, x: m.nn.functional.batch_norm(x, None, None, training=True),
                        [x], dtype)


def test_batch_norm_updates_given_running_stats_in_place():
    torch = _torch()
    x = np.random.default_rng(0).standard_normal((6, 2)).astype(np.float32)
    rm, rv = dg.zeros(2), dg.ones(2)
    trm, trv = torch.zeros(2), torch.ones(2)
    F.batch_norm(dg.tensor(x), rm, rv, training=True, momentum=0.25)
    torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.25)
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-5)


# -- batch norm errors ---------------------------------------------------------------------


def test_batchnorm_single_value_per_channel_in_training():
    bn = nn.BatchNorm1d(10)
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected more than 1 value per "
                                         r"channel when training, got input of shape \(1, 10\)"):
        bn(dg.randn(1, 10))
    bn(dg.randn(1, 10, 2))  # 2 values per channel: fine
    bn.eval()
    bn(dg.randn(1, 10))  # eval uses running statistics: fine
    with pytest.raises(ValueError, match=r"batch_norm: expected more than 1 value per channel "
                                         r"when training, got input of shape \(1, 3\)"):
        F.batch_norm(dg.randn(1, 3), None, None, training=True)


def test_batchnorm_wrong_input_shapes():
    model = nn.Sequential(nn.BatchNorm2d(3))
    with pytest.raises(ValueError, match=r"0 \(BatchNorm2d\): expected 4D input \(N, C, H, W\), "
                                         r"got 3D input of shape \(2, 3, 4\)"):
        model(dg.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"expected input with 3 channels \(num_features=3\), "
                                         r"got shape \(2, 4, 5, 5\)"):
        model(dg.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"expected 2D or 3D input"):
        nn.BatchNorm1d(3)(dg.randn(2, 3, 4, 4))


def test_batch_norm_functional_errors():
    x = dg.randn(4, 3)
    with pytest.raises(ValueError, match=r"batch_norm: weight of shape \(4,\) does not match "
                                         r"input of shape \(4, 3\); expected \(3,\)"):
        F.batch_norm(x, None, None, dg.ones(4), training=True)
    with pytest.raises(ValueError, match="running_mean and running_var are needed"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(TypeError, match=r"batch_norm: weight dtype float64 differs"):
        F.batch_norm(x, None, None, dg.ones(3, dtype=dg.float64), training=True)
    with pytest.raises(ValueError, match=r"num_features must be a positive integer, got 0"):
        nn.BatchNorm1d(0)


# -- layer norm ----------------------------------------------------------------------------

LN_CASES = [((4, 5), 5, {}), ((2, 3, 4), (3, 4), {}), ((2, 3, 4), 4, {"eps": 1e-3}),
            ((3, 4), 4, {"elementwise_affine": False}), ((2, 3, 4), (4,), {"bias": False}),
            ((6,), 6, {})]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape,ns,opts", LN_CASES, ids=[f"{s}-{n}-{o}" for s, n, o in LN_CASES])
def test_layernorm_against_torch(shape, ns, opts, dtype):
    torch = _torch()
    tm = torch.nn.LayerNorm(ns, **opts).to(torch.float64 if dtype == np.float64 else
                                            torch.float32)
    dm = nn.LayerNorm(ns, dtype=dtype, **opts)
    assert repr(dm) == repr(tm)
    assert [(k, tuple(v.shape)) for k, v in dm.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in tm.state_dict().items()]
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_(torch.randn(p.shape, dtype=p.dtype))
    _copy_from_torch(dm, tm)
    x = np.random.default_rng(0).standard_normal(shape) * 3 + 1
    _step(dm, tm, x, dtype, 0)


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_gradcheck(affine):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    if affine:
        w = rng.standard_normal((3, 4))
        b = rng.standard_normal((3, 4))
        run_gradcheck(lambda m, x, w, b: F.layer_norm(x, (3, 4), w, b), [x, w, b])
        run_gradcheck(lambda m, x, w: F.layer_norm(x, (3, 4), w), [x, w])
        run_gradcheck(lambda m, x, b: F.layer_norm(x, (3, 4), None, b), [x, b])
    else:
        run_gradcheck(lambda m, x: F.layer_norm(x, [4]), [x])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_layer_norm_functional_against_torch(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 5))
    w = rng.standard_normal((5,))
    b = rng.standard_normal((5,))
    check_against_torch(lambda m, x, w, b: m.nn.functional.layer_norm(x, (5,), w, b, 1e-3),
                        [x, w, b], dtype)
    check_against_torch(lambda m, x: m.nn.functional.layer_norm(x, [2, 5]), [x], dtype)


def test_layernorm_errors():
    model = nn.Sequential(nn.LayerNorm(4))
    with pytest.raises(ValueError, match=r"0 \(LayerNorm\): expected input with shape \(\*, 4\) "
                                         r"\(normalized_shape=\(4,\)\), got shape \(2, 3\)"):
        model(dg.randn(2, 3))
    with pytest.raises(ValueError, match=r"layer_norm: expected input with shape \(\*, 2, 3\) "
                                         r"for normalized_shape=\(2, 3\), got shape \(3,\)"):
        F.layer_norm(dg.randn(3), (2, 3))
    with pytest.raises(ValueError, match=r"layer_norm: weight of shape \(3,\) must have "
                                         r"normalized_shape \(4,\)"):
        F.layer_norm(dg.randn(2, 4), (4,), dg.ones(3))


def test_layernorm_float32_stays_float32():
    ln = nn.LayerNorm(8)
    x = dg.randn(3, 8, requires_grad=True)
    y = ln(x)
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    assert ln.weight.grad.dtype == np.float32
    np.testing.assert_allclose(y.detach().numpy().mean(axis=1), 0, atol=1e-6)
