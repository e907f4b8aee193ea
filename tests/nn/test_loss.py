"""Losses: functional and modules against PyTorch over reductions, weights, ignore_index,
label smoothing and target kinds; gradchecks; numerical stability; error messages."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from helpers import FLOAT_DTYPES, check_against_torch, run_gradcheck

import deepgrad as dg
from deepgrad import nn

try:
    import torch
    torch.set_num_threads(1)  # tiny ops: a busy thread pool makes torch 1000x slower
except ImportError:  # pragma: no cover
    torch = None

F = dg.nn.functional
REDUCTIONS = ["mean", "sum", "none"]


def Fm(m):
    return m.nn.functional


def _rng(seed=0):
    return np.random.default_rng(seed)


# -- regression losses ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("op", ["mse_loss", "l1_loss"])
def test_regression_losses_against_torch(op, reduction, dtype):
    rng = _rng()
    x, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    check_against_torch(lambda m, a, b: getattr(Fm(m), op)(a, b, reduction=reduction), [x, t],
                        dtype)
    w = rng.uniform(0.1, 2.0, (4, 3))
    check_against_torch(lambda m, a, b, c: getattr(Fm(m), op)(a, b, reduction=reduction,
                                                              weight=c), [x, t, w], dtype)


@pytest.mark.parametrize("op", ["mse_loss", "l1_loss"])
def test_regression_losses_broadcast_target_warns(op):
    rng = _rng()
    x, t = rng.standard_normal((4, 3)), rng.standard_normal((3,))
    with pytest.warns(UserWarning, match="different to the input size"):
        check_against_torch(lambda m, a, b: getattr(Fm(m), op)(a, b), [x, t], np.float64)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("op", ["mse_loss", "l1_loss"])
def test_regression_losses_gradcheck(op, reduction):
    rng = _rng()
    x, t = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    w = rng.uniform(0.5, 2.0, (3, 2))
    run_gradcheck(lambda m, a, b: getattr(F, op)(a, b, reduction=reduction), [x, t])
    run_gradcheck(lambda m, a, b, c: getattr(F, op)(a, b, reduction=reduction, weight=c),
                  [x, t, w])


def test_mse_loss_float32_is_a_float32_scalar():
    x = dg.randn(4, 1, requires_grad=True)
    loss = F.mse_loss(x, dg.randn(4, 1))
    loss.backward()
    assert loss.shape == () and loss.dtype == np.float32 and x.grad.dtype == np.float32
    assert type(loss.grad_fn).__name__ == "MseLoss"  # one fused node


def test_mse_loss_integer_target_is_cast():
    x = dg.tensor([[0.5], [1.5]])
    np.testing.assert_allclose(F.mse_loss(x, dg.tensor([[1], [1]])).item(), 0.25)


# -- cross entropy and nll with class indices ----------------------------------------------

CLASS_SHAPES = [((5, 4), (5,)), ((3, 4, 2), (3, 2)), ((2, 3, 2, 2), (2, 2, 2)), ((4,), ())]


def _class_targets(rng, tshape, c, ignore_index, with_ignored):
    y = rng.integers(0, c, size=tshape)
    if with_ignored and y.size > 1:
        flat = y.reshape(-1)
        flat[::3] = ignore_index
    elif with_ignored:
        y = np.array(ignore_index) if ignore_index < 0 else np.array(1)
    return y.astype(np.int64)


CE_GRID = list(itertools.product(
    range(len(CLASS_SHAPES)), [False, True], [(-100, False), (-100, True), (1, True)],
    REDUCTIONS, [0.0, 0.2]))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("si,weighted,ignore,reduction,smoothing", CE_GRID,
                         ids=[f"{CLASS_SHAPES[g[0]][0]}-w{int(g[1])}-ig{g[2][0]}{int(g[2][1])}-"
                              f"{g[3]}-ls{g[4]}" for g in CE_GRID])
def test_cross_entropy_class_indices_against_torch(si, weighted, ignore, reduction, smoothing,
                                                   dtype):
    xshape, tshape = CLASS_SHAPES[si]
    c = xshape[1] if len(xshape) > 1 else xshape[0]
    ignore_index, with_ignored = ignore
    rng = _rng(si)
    x = rng.standard_normal(xshape) * 2
    y = _class_targets(rng, tshape, c, ignore_index, with_ignored)
    # the target is closed over: the helper would turn a 0-d target into shape (1,)
    if not weighted:
        check_against_torch(
            lambda m, a: Fm(m).cross_entropy(a, m.tensor(y), ignore_index=ignore_index,
                                             reduction=reduction, label_smoothing=smoothing),
            [x], dtype)
        return
    w = rng.uniform(0.2, 2.0, c)
    check_against_torch(
        lambda m, a, ww: Fm(m).cross_entropy(a, m.tensor(y), weight=ww,
                                             ignore_index=ignore_index, reduction=reduction,
                                             label_smoothing=smoothing),
        [x, w], dtype, requires_grad_mask=[True, False])


NLL_GRID = list(itertools.product(range(len(CLASS_SHAPES)), [False, True],
                                  [(-100, False), (-100, True), (2, True)], REDUCTIONS))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("si,weighted,ignore,reduction", NLL_GRID)
def test_nll_loss_against_torch(si, weighted, ignore, reduction, dtype):
    xshape, tshape = CLASS_SHAPES[si]
    c = xshape[1] if len(xshape) > 1 else xshape[0]
    ignore_index, with_ignored = ignore
    rng = _rng(si + 10)
    x = rng.standard_normal(xshape)
    y = _class_targets(rng, tshape, c, ignore_index, with_ignored)
    w = rng.uniform(0.2, 2.0, c) if weighted else None

    def fn(m, a):
        ww = None if w is None else m.tensor(w.astype(dtype))
        return Fm(m).nll_loss(a, m.tensor(y), weight=ww, ignore_index=ignore_index,
                              reduction=reduction)

    check_against_torch(fn, [x], dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("si", range(len(CLASS_SHAPES)))
def test_class_index_losses_gradcheck(si, reduction):
    xshape, tshape = CLASS_SHAPES[si]
    c = xshape[1] if len(xshape) > 1 else xshape[0]
    rng = _rng(si)
    x = rng.standard_normal(xshape)
    y = _class_targets(rng, tshape, c, 1, True)
    w = dg.tensor(rng.uniform(0.5, 2.0, c))
    run_gradcheck(lambda m, a: F.cross_entropy(a, dg.tensor(y), reduction=reduction), [x])
    run_gradcheck(lambda m, a: F.cross_entropy(a, dg.tensor(y), weight=w, ignore_index=1,
                                               reduction=reduction, label_smoothing=0.3), [x])
    run_gradcheck(lambda m, a: F.nll_loss(a, dg.tensor(y), weight=w, ignore_index=1,
                                          reduction=reduction), [x])


def test_cross_entropy_equals_log_softmax_then_nll():
    rng = _rng()
    x = dg.tensor(rng.standard_normal((6, 5)))
    y = dg.tensor(rng.integers(0, 5, 6))
    w = dg.tensor(rng.uniform(0.5, 2.0, 5))
    a = F.cross_entropy(x, y, weight=w)
    b = F.nll_loss(F.log_softmax(x, dim=1), y, weight=w)
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-12)


def test_cross_entropy_is_one_node():
    x = dg.randn(4, 3, requires_grad=True)
    loss = F.cross_entropy(x, dg.tensor([0, 1, 2, 1]))
    assert type(loss.grad_fn).__name__ == "CrossEntropy"
    assert loss.grad_fn.inputs[0] is x


def test_cross_entropy_all_targets_ignored_gives_nan_like_torch():
    x = dg.randn(3, 4, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.cross_entropy(x, dg.tensor([-100, -100, -100]))
        assert np.isnan(loss.item())
        assert F.cross_entropy(x, dg.tensor([-100, -100, -100]), reduction="sum").item() == 0


# -- cross entropy with probability targets ------------------------------------------------

PROB_GRID = list(itertools.product([(5, 4), (3, 4, 2), (4,)], [False, True], REDUCTIONS,
                                   [0.0, 0.25]))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape,weighted,reduction,smoothing", PROB_GRID)
def test_cross_entropy_probabilities_against_torch(shape, weighted, reduction, smoothing,
                                                   dtype):
    rng = _rng(1)
    x = rng.standard_normal(shape)
    p = rng.uniform(0, 1, shape)
    p /= p.sum(axis=1 if len(shape) > 1 else 0, keepdims=True)
    c = shape[1] if len(shape) > 1 else shape[0]
    if weighted:
        w = rng.uniform(0.2, 2.0, c)
        check_against_torch(
            lambda m, a, t, ww: Fm(m).cross_entropy(a, t, weight=ww, reduction=reduction,
                                                    label_smoothing=smoothing),
            [x, p, w], dtype, requires_grad_mask=[True, True, False])
    else:
        # the target requires grad too: its gradient is checked against torch's
        check_against_torch(
            lambda m, a, t: Fm(m).cross_entropy(a, t, reduction=reduction,
                                                label_smoothing=smoothing), [x, p], dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probabilities_gradcheck(reduction):
    rng = _rng(2)
    x = rng.standard_normal((3, 4, 2))
    p = rng.uniform(0, 1, (3, 4, 2))
    w = dg.tensor(rng.uniform(0.5, 2.0, 4))
    run_gradcheck(lambda m, a, t: F.cross_entropy(a, t, weight=w, reduction=reduction,
                                                  label_smoothing=0.1), [x, p])


# -- binary cross entropy ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_shape", [None, (4, 3), (3,)])
def test_binary_cross_entropy_against_torch(weight_shape, reduction, dtype):
    rng = _rng(3)
    x = rng.uniform(0.05, 0.95, (4, 3))
    t = rng.uniform(0, 1, (4, 3))
    if weight_shape is None:
        check_against_torch(lambda m, a, b: Fm(m).binary_cross_entropy(a, b,
                                                                       reduction=reduction),
                            [x, t], dtype)
    else:
        w = rng.uniform(0.2, 2.0, weight_shape)
        check_against_torch(lambda m, a, b, c: Fm(m).binary_cross_entropy(
            a, b, weight=c, reduction=reduction), [x, t, w], dtype,
            requires_grad_mask=[True, True, False])  # torch: weight is not differentiable


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_binary_cross_entropy_clamps_log_at_minus_100(dtype):
    x = np.array([0.0, 1.0, 0.0, 1.0, 1e-30, 0.5])
    t = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_against_torch(lambda m, a, b: Fm(m).binary_cross_entropy(a, b, reduction="none"),
                            [x, t], dtype, requires_grad_mask=[False, False])
        loss = F.binary_cross_entropy(dg.tensor(x.astype(dtype)), dg.tensor(t.astype(dtype)),
                                      reduction="none").numpy()
    np.testing.assert_allclose(loss[2:4], [100.0, 100.0])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_shape,pos_shape", [(None, None), ((4, 3), None),
                                                    (None, (3,)), ((3,), (3,)),
                                                    ((4, 1), (4, 3))])
def test_bce_with_logits_against_torch(weight_shape, pos_shape, reduction, dtype):
    rng = _rng(4)
    arrays = [rng.standard_normal((4, 3)) * 3, rng.uniform(0, 1, (4, 3))]
    names = []
    if weight_shape is not None:
        arrays.append(rng.uniform(0.2, 2.0, weight_shape))
        names.append("weight")
    if pos_shape is not None:
        arrays.append(rng.uniform(0.2, 3.0, pos_shape))
        names.append("pos_weight")

    def fn(m, a, b, *rest):
        return Fm(m).binary_cross_entropy_with_logits(a, b, reduction=reduction,
                                                      **dict(zip(names, rest)))

    # torch does not differentiate weight and pos_weight; ours is covered by the gradcheck
    check_against_torch(fn, arrays, dtype, requires_grad_mask=[True, True] + [False] * len(names))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_losses_gradcheck(reduction):
    rng = _rng(5)
    x = rng.uniform(0.1, 0.9, (3, 2))
    t = rng.uniform(0, 1, (3, 2))
    w = rng.uniform(0.5, 2.0, (2,))
    z = rng.standard_normal((3, 2)) * 2
    pw = rng.uniform(0.5, 3.0, (2,))
    run_gradcheck(lambda m, a, b, c: F.binary_cross_entropy(a, b, c, reduction=reduction),
                  [x, t, w])
    run_gradcheck(lambda m, a, b, c, d: F.binary_cross_entropy_with_logits(
        a, b, c, reduction=reduction, pos_weight=d), [z, t, w, pw])
    run_gradcheck(lambda m, a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction),
                  [z, t])


# -- numerical stability -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cross_entropy_stable_at_1e4(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4], [-1e4, 0.0, 1e4]])
    y = np.array([1, 2, 0, 0])
    p = np.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    for target in (y, p):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            xd = dg.tensor(x.astype(dtype), requires_grad=True)
            t = dg.tensor(target if target.dtype.kind == "i" else target.astype(dtype))
            loss = F.cross_entropy(xd, t, label_smoothing=0.1)
            loss.backward()
        assert np.isfinite(loss.item()) and np.isfinite(xd.grad.numpy()).all()
        if torch is not None:
            check_against_torch(lambda m, a, b: Fm(m).cross_entropy(a, b, label_smoothing=0.1),
                                [x, target], dtype, requires_grad_mask=[True, False])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_bce_with_logits_stable_at_1e4(dtype):
    x = np.array([1e4, -1e4, 1e4, -1e4, 0.0, 50.0])
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.0])
    pw = np.array([2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xd = dg.tensor(x.astype(dtype), requires_grad=True)
        loss = F.binary_cross_entropy_with_logits(xd, dg.tensor(t.astype(dtype)),
                                                  pos_weight=dg.tensor(pw.astype(dtype)))
        loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(xd.grad.numpy()).all()
    check_against_torch(lambda m, a, b, c: Fm(m).binary_cross_entropy_with_logits(
        a, b, pos_weight=c, reduction="none"), [x, t, pw], dtype,
        requires_grad_mask=[True, False, False])


# -- modules -------------------------------------------------------------------------------


def test_loss_modules_repr_state_dict_and_values():
    torch_ = pytest.importorskip("torch")
    rng = _rng(6)
    w = rng.uniform(0.5, 2.0, 3).astype(np.float32)
    pairs = [
        (nn.MSELoss(), torch_.nn.MSELoss()),
        (nn.L1Loss(reduction="sum"), torch_.nn.L1Loss(reduction="sum")),
        (nn.CrossEntropyLoss(weight=dg.tensor(w), ignore_index=1, label_smoothing=0.1),
         torch_.nn.CrossEntropyLoss(weight=torch_.tensor(w), ignore_index=1,
                                    label_smoothing=0.1)),
        (nn.NLLLoss(weight=dg.tensor(w), reduction="none"),
         torch_.nn.NLLLoss(weight=torch_.tensor(w), reduction="none")),
        (nn.BCELoss(weight=dg.tensor(w)), torch_.nn.BCELoss(weight=torch_.tensor(w))),
        (nn.BCEWithLogitsLoss(pos_weight=dg.tensor(w)),
         torch_.nn.BCEWithLogitsLoss(pos_weight=torch_.tensor(w))),
    ]
    x = rng.uniform(0.1, 0.9, (4, 3))
    targets = [rng.standard_normal((4, 3)), rng.standard_normal((4, 3)),
               np.array([0, 1, 2, 1]), np.array([2, 1, 0, 0]), rng.uniform(0, 1, (4, 3)),
               rng.uniform(0, 1, (4, 3))]
    for (dm, tm), t in zip(pairs, targets):
        assert repr(dm) == repr(tm)
        assert list(dm.state_dict()) == list(tm.state_dict())
        assert list(dm.parameters()) == []
        check_against_torch(lambda m, a, b: (dm if m is dg else tm)(a, b), [x, t], np.float32,
                            requires_grad_mask=[True, False])


def test_legacy_size_average_and_reduce():
    x, t = dg.tensor([1.0, 2.0]), dg.tensor([0.0, 0.0])
    with pytest.warns(UserWarning):
        assert nn.MSELoss(size_average=False).reduction == "sum"
    with pytest.warns(UserWarning):
        assert nn.MSELoss(reduce=False).reduction == "none"
    with pytest.warns(UserWarning):
        np.testing.assert_allclose(F.mse_loss(x, t, size_average=False).item(), 5.0)


def test_tiny_classifier_trains():
    """A 2-layer net with BatchNorm, Dropout and CrossEntropyLoss learns a toy problem."""
    dg.manual_seed(0)
    rng = _rng(7)
    x = dg.tensor(rng.standard_normal((64, 2)).astype(np.float32))
    y = dg.tensor((x.numpy()[:, 0] * x.numpy()[:, 1] > 0).astype(np.int64))
    model = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.GELU(), nn.Dropout(0.1),
                          nn.Linear(16, 2))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    first = None
    for _ in range(150):
        loss = loss_fn(model(x), y)
        first = loss.item() if first is None else first
        model.zero_grad()
        loss.backward()
        with dg.no_grad():
            for p in model.parameters():
                p.data -= 0.3 * p.grad.data
    model.eval()
    acc = (model(x).detach().numpy().argmax(axis=1) == y.numpy()).mean()
    assert loss.item() < 0.5 * first and acc > 0.9


# -- errors --------------------------------------------------------------------------------


def test_cross_entropy_target_shape_error_names_both_shapes():
    x = dg.randn(4, 3)
    with pytest.raises(ValueError, match=r"cross_entropy: expected target of shape \(4,\) "
                                         r"\(class indices\) or \(4, 3\) \(class probabilities\) "
                                         r"for input of shape \(4, 3\), got target of shape "
                                         r"\(5,\)"):
        F.cross_entropy(x, dg.tensor([0, 1, 2, 0, 1]))
    model = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: cross_entropy: expected target of "
                                         r"shape \(4,\).*got target of shape \(4, 1\)"):
        model(x, dg.tensor([[0], [1], [2], [0]]))


def test_cross_entropy_target_dtype_errors():
    x = dg.randn(4, 3)
    with pytest.raises(TypeError, match=r"cross_entropy: expected integer class indices \(int64"
                                        r"\) for target of shape \(4,\) with input of shape "
                                        r"\(4, 3\), got dtype float32"):
        F.cross_entropy(x, dg.tensor([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(TypeError, match=r"expected floating-point class probabilities for "
                                        r"target of shape \(4, 3\)"):
        F.cross_entropy(x, dg.zeros(4, 3, dtype=dg.int64))
    with pytest.raises(TypeError, match=r"nll_loss: expected integer class indices of shape "
                                        r"\(4,\) for input of shape \(4, 3\), got float target "
                                        r"of shape \(4, 3\)"):
        F.nll_loss(x, dg.zeros(4, 3))


def test_class_loss_value_errors():
    x = dg.randn(4, 3)
    y = dg.tensor([0, 1, 2, 0])
    with pytest.raises(IndexError, match=r"cross_entropy: target 3 is out of bounds for 3 "
                                         r"classes \(input shape \(4, 3\)\)"):
        F.cross_entropy(x, dg.tensor([0, 3, 1, 1]))
    with pytest.raises(IndexError, match=r"nll_loss: target -1 is out of bounds"):
        F.nll_loss(x, dg.tensor([0, -1, 1, 1]))
    with pytest.raises(ValueError, match=r"cross_entropy: weight of shape \(4,\) must have one "
                                         r"entry per class, expected \(3,\) for input of shape "
                                         r"\(4, 3\)"):
        F.cross_entropy(x, y, weight=dg.ones(4))
    with pytest.raises(ValueError, match=r"cross_entropy: reduction must be 'mean', 'sum' or "
                                         r"'none', got 'avg'"):
        F.cross_entropy(x, y, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0, got 1.5"):
        F.cross_entropy(x, y, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"reduction must be 'mean', 'sum' or 'none'"):
        nn.MSELoss(reduction="avg")


def test_pointwise_loss_errors():
    with pytest.raises(ValueError, match=r"mse_loss: target of shape \(4, 2\) does not "
                                         r"broadcast with input of shape \(4, 3\)"):
        F.mse_loss(dg.randn(4, 3), dg.randn(4, 2))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: target of shape \(4,\) must "
                                         r"have the input's shape \(4, 1\)"):
        F.binary_cross_entropy(dg.rand(4, 1), dg.rand(4))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: all elements of input should "
                                         r"be between 0 and 1"):
        F.binary_cross_entropy(dg.tensor([0.5, 1.5]), dg.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: target of shape "
                                         r"\(3,\) must have the input's shape \(3, 1\)"):
        F.binary_cross_entropy_with_logits(dg.randn(3, 1), dg.rand(3))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(2,\) does not broadcast to "
                                         r"input of shape \(3, 4\)"):
        F.binary_cross_entropy_with_logits(dg.randn(3, 4), dg.rand(3, 4),
                                           pos_weight=dg.ones(2))
    with pytest.raises(ValueError, match=r"mse_loss: weight of shape \(3,\) must have the "
                                         r"input's shape \(2, 3\)"):
        F.mse_loss(dg.randn(2, 3), dg.randn(2, 3), weight=dg.ones(3))
