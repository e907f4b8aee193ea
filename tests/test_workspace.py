"""The reusable-array workspace (``backend.empty``) and the ops that take their outputs and
temporaries from it: an array is handed out again only once nothing refers to it, so results
returned to the caller, arrays saved for backward and adopted ``.grad`` arrays are never
overwritten by a later call."""
from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import backend

F = dg.nn.functional
BIG = (64, 6, 28, 28)  # above the workspace's minimum size


def test_free_array_is_reused_and_held_array_is_not():
    ws = backend.Workspace()
    a = ws.empty(BIG, np.float32)
    assert a.base is None and a.shape == BIG and a.dtype == np.float32
    b = ws.empty(BIG, np.float32)
    assert b is not a  # a is still held
    addr = a.ctypes.data
    del a
    c = ws.empty(BIG, np.float32)
    assert c.ctypes.data == addr  # a's memory, now that nobody holds it


def test_a_view_keeps_the_array_busy():
    ws = backend.Workspace()
    a = ws.empty(BIG, np.float32)
    v = a[1:, 2]
    addr = a.ctypes.data
    del a
    assert ws.empty(BIG, np.float32).ctypes.data != addr
    del v
    assert ws.empty(BIG, np.float32).ctypes.data == addr


def test_dtype_and_shape_are_part_of_the_key_and_small_arrays_are_not_kept():
    ws = backend.Workspace()
    a = ws.empty(BIG, np.float32)
    addr = a.ctypes.data
    del a
    assert ws.empty(BIG, np.float64).ctypes.data != addr
    ws.empty((3, 4), np.float32)
    assert all(k[0] != (3, 4) for k in ws.arrays)


def test_limit_drops_free_arrays_and_never_a_held_one():
    n = int(np.prod(BIG)) * 4
    ws = backend.Workspace(max_bytes=2 * n)
    held = ws.empty(BIG, np.float32)
    held[...] = 7
    ws.empty((64, 6, 28, 29), np.float32)  # kept, then free
    c = ws.empty((64, 6, 28, 30), np.float32)  # needs the free one's room
    assert ws.nbytes <= 2 * n
    c[...] = 1
    d = ws.empty((64, 6, 28, 31), np.float32)  # no room left: a plain array
    d[...] = 2
    assert (held == 7).all() and (c == 1).all()


def _run_twice(make, shape, seed=0):
    rng = np.random.default_rng(seed)
    xs = [dg.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
          for _ in range(3)]
    return xs, [make(x) for x in xs]


OPS = {
    "tanh": lambda x: F.tanh(x),
    "relu": lambda x: F.relu(x),
    "sigmoid": lambda x: F.sigmoid(x),
    "avg_pool2d": lambda x: F.avg_pool2d(x, 2),
    "avg_pool2d_overlap": lambda x: F.avg_pool2d(x, 3, 1, 1),
    "max_pool2d": lambda x: F.max_pool2d(x, 2),
    "max_pool2d_overlap": lambda x: F.max_pool2d(x, 3, 1, 1),
    "conv2d": lambda x: F.conv2d(x, dg.ones(4, 6, 3, 3) * 0.1, padding=1),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_outputs_and_grads_survive_later_calls_of_the_same_shape(name):
    torch = pytest.importorskip("torch")
    make = OPS[name]
    tmake = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
             "avg_pool2d": lambda x: torch.nn.functional.avg_pool2d(x, 2),
             "avg_pool2d_overlap": lambda x: torch.nn.functional.avg_pool2d(x, 3, 1, 1),
             "max_pool2d": lambda x: torch.nn.functional.max_pool2d(x, 2),
             "max_pool2d_overlap": lambda x: torch.nn.functional.max_pool2d(x, 3, 1, 1),
             "conv2d": lambda x: torch.nn.functional.conv2d(
                 x, torch.ones(4, 6, 3, 3) * 0.1, padding=1)}[name]
    xs, ys = _run_twice(make, BIG)
    expect = [tmake(torch.tensor(x.detach().numpy(), requires_grad=True)) for x in xs]
    # every output is still its own value although all three graphs were recorded first
    for y, e in zip(ys, expect):
        np.testing.assert_allclose(y.detach().numpy(), e.detach().numpy(), rtol=1e-5, atol=1e-6)
    # backward of each graph in turn, keeping the .grad arrays themselves (not copies): a
    # later backward must not write into an earlier one's
    grads = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        (y * (i + 1)).sum().backward()
        grads.append(x.grad.numpy())
    for i, (x, g) in enumerate(zip(xs, grads)):
        xt = torch.tensor(x.detach().numpy(), requires_grad=True)
        (tmake(xt) * (i + 1)).sum().backward()
        np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_aligned_views_are_aligned_and_reused_only_when_unreferenced():
    ws = backend.Workspace()
    a = ws.empty(BIG, np.float32, align=64)
    assert a.ctypes.data % 64 == 0 and a.shape == BIG and a.dtype == np.float32
    a[...] = 3
    b = ws.empty(BIG, np.float32, align=64)
    b[...] = 4
    assert (a == 3).all()  # a is held: b has other memory
    v = a[5]
    addr = a.ctypes.data
    del a
    c = ws.empty(BIG, np.float32, align=64)
    assert c.ctypes.data != addr  # a view of a still holds its buffer
    del v, c
    d = ws.empty(BIG, np.float32, align=64)
    assert d.ctypes.data % 64 == 0
    small = ws.empty((3, 5), np.float64, align=64)
    assert small.ctypes.data % 64 == 0 and small.shape == (3, 5)
