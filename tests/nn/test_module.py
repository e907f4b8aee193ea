"""Module: registration, state_dict, load_state_dict, modes, containers, repr, error paths."""
from __future__ import annotations

import math

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import nn

torch = pytest.importorskip("torch") if False else None  # torch used only where marked
try:
    import torch as _torch
except ImportError:  # pragma: no cover
    _torch = None
requires_torch = pytest.mark.skipif(_torch is None, reason="torch is not installed")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(4, 8), nn.Tanh() if hasattr(nn, "Tanh") else
                                      nn.Identity(), nn.Linear(8, 6))
        self.head = nn.Linear(6, 3, bias=False)
        self.register_buffer("steps", dg.zeros(1))
        self.register_buffer("scratch", dg.zeros(2), persistent=False)
        self.scale = nn.Parameter(dg.ones(1))

    def forward(self, x):
        return self.head(self.features(x)) * self.scale


def test_registration_and_names():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "features.0.weight", "features.0.bias", "features.2.weight",
                     "features.2.bias", "head.weight"]
    assert [n for n, _ in net.named_buffers()] == ["steps", "scratch"]
    assert list(net.state_dict().keys()) == [
        "scale", "steps", "features.0.weight", "features.0.bias", "features.2.weight",
        "features.2.bias", "head.weight"]
    assert net.head.bias is None
    assert [n for n, _ in net.named_children()] == ["features", "head"]
    assert len(list(net.modules())) == 6
    assert net.get_submodule("features.2") is net.features[2]
    assert net.get_parameter("features.2.bias") is net.features[2].bias
    # attribute reads are plain lookups and stay in sync with the registry
    new = nn.Parameter(dg.zeros(1))
    net.scale = new
    assert net._parameters["scale"] is new and net.scale is new
    del net.scale
    assert "scale" not in dict(net.named_parameters())


def test_shared_parameters_counted_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, lin)
    assert len(list(seq.parameters())) == 2
    assert sum(p.numel() for p in seq.parameters()) == 12


def test_assigning_before_init_and_wrong_types():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(dg.zeros(1))

    with pytest.raises(AttributeError, match="super"):
        Bad()
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="weight"):
        lin.weight = dg.zeros(2, 2)


def test_train_eval_recursive():
    net = Net()
    net.eval()
    assert all(not m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_zero_grad_set_to_none_and_zero():
    net = Net()
    net(dg.randn(5, 4)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.numpy() == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_round_trip_and_in_place_load():
    a, b = Net(), Net()
    w = b.features[0].weight
    b.load_state_dict(a.state_dict())
    assert b.features[0].weight is w  # loaded in place: optimizers keep their references
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k].numpy(), v.numpy())
    x = dg.randn(2, 4)
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())


def test_load_state_dict_reports_keys_by_name_and_changes_nothing():
    net = Net()
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    sd = {k: v.numpy() * 0 + 7 for k, v in net.state_dict().items()}
    del sd["head.weight"]
    sd["extra.weight"] = np.zeros(3)
    sd["features.0.weight"] = np.zeros((9, 4), np.float32)
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    assert "'head.weight'" in msg and "'extra.weight'" in msg
    assert "features.0.weight" in msg and "(9, 4)" in msg and "(8, 4)" in msg
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    del sd["features.0.weight"]
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["features.0.weight", "head.weight"]
    assert result.unexpected_keys == ["extra.weight"]
    assert np.all(net.features[2].weight.detach().numpy() == 7)


def test_to_dtype_keeps_identity():
    net = Net()
    p = net.head.weight
    net.double()
    assert net.head.weight is p and p.dtype == np.float64
    assert net.steps.dtype == np.float64
    out = net(dg.randn(2, 4, dtype=dg.float64))
    assert out.dtype == np.float64
    net.float()
    assert p.dtype == np.float32


def test_apply_and_hooks():
    net = Net()
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen.count("Linear") == 3
    calls = []
    h = net.head.register_forward_hook(lambda m, args, out: calls.append(out.shape))
    pre = net.head.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    out = net(dg.randn(2, 4))
    assert calls == [(2, 3)]
    np.testing.assert_array_equal(out.detach().numpy(), 0)
    h.remove()
    pre.remove()
    net(dg.randn(2, 4))
    assert calls == [(2, 3)]


def test_repr_nested_like_pytorch():
    net = nn.Sequential(nn.Linear(2, 8), nn.Sequential(nn.Linear(8, 1, bias=False)))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Linear(in_features=2, out_features=8, bias=True)\n"
        "  (1): Sequential(\n"
        "    (0): Linear(in_features=8, out_features=1, bias=False)\n"
        "  )\n"
        ")")
    assert repr(nn.Identity()) == "Identity()"


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 4), nn.Linear(4, 5))
    assert len(seq) == 3 and seq[-1].out_features == 5
    assert isinstance(seq[1:], nn.Sequential) and len(seq[1:]) == 2
    assert seq[1:](dg.randn(1, 3)).shape == (1, 5)
    seq.append(nn.Linear(5, 1))
    assert list(seq.state_dict().keys())[-1] == "3.bias"
    del seq[0]
    assert [n for n, _ in seq.named_children()] == ["0", "1", "2"]
    with pytest.raises(IndexError):
        seq[7]
    ml = nn.ModuleList([nn.Linear(1, 1) for _ in range(3)])
    ml.append(nn.Linear(1, 2))
    assert len(ml) == 4 and len(list(ml.parameters())) == 8
    assert "3.weight" in ml.state_dict()
    md = nn.ModuleDict({"enc": nn.Linear(2, 2), "dec": nn.Linear(2, 2)})
    assert list(md.keys()) == ["enc", "dec"] and "enc" in md
    assert "dec.bias" in md.state_dict()
    md.pop("enc")
    assert list(md.keys()) == ["dec"]
    from collections import OrderedDict

    named = nn.Sequential(OrderedDict(fc=nn.Linear(2, 2), out=nn.Linear(2, 1)))
    assert list(named.state_dict().keys()) == ["fc.weight", "fc.bias", "out.weight", "out.bias"]


def test_error_names_layer_path_and_shapes():
    net = Net()
    with pytest.raises(ValueError) as info:
        net(dg.randn(5, 7))
    msg = str(info.value)
    assert msg.startswith("features.0 (Linear):"), msg
    assert "4" in msg and "(5, 7)" in msg
    # the same module called alone is labelled by its class
    with pytest.raises(ValueError) as info:
        nn.Linear(3, 2)(dg.randn(2, 28, 28))
    assert str(info.value).startswith("Linear:") and "Flatten first?" in str(info.value)


def test_identity_flatten_unflatten():
    x = dg.randn(2, 3, 4, 5)
    assert nn.Identity(54, unused=1)(x) is x
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 2)(x).shape == (24, 5)
    assert nn.Unflatten(1, (3, 20))(nn.Flatten()(x)).shape == (2, 3, 20)
    with pytest.raises(ValueError, match="unflatten"):
        nn.Unflatten(1, (7, 3))(nn.Flatten()(x))


def test_linear_default_init_bounds():
    dg.manual_seed(0)
    lin = nn.Linear(400, 50)
    bound = 1 / math.sqrt(400)
    w = lin.weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound * 10
    assert np.abs(lin.bias.detach().numpy()).max() <= bound


@requires_torch
@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-4), (np.float64, 1e-6)])
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7), (7,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(dtype, rtol, shape, bias):
    tm = _torch.nn.Linear(7, 4, bias=bias).to(_torch.float64 if dtype == np.float64 else
                                               _torch.float32)
    m = nn.Linear(7, 4, bias=bias).to(dtype)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    g = np.random.default_rng(2).standard_normal(shape[:-1] + (4,)).astype(dtype)
    tx = _torch.tensor(x, requires_grad=True)
    dx = dg.tensor(x, requires_grad=True)
    ty, dy = tm(tx), m(dx)
    assert dy.dtype == dtype
    np.testing.assert_allclose(dy.detach().numpy(), ty.detach().numpy(), rtol=rtol, atol=rtol)
    (ty * _torch.tensor(g)).sum().backward()
    (dy * dg.tensor(g)).sum().backward()
    np.testing.assert_allclose(dx.grad.numpy(), tx.grad.numpy(), rtol=rtol, atol=rtol)
    for (name, p), (_, tp) in zip(m.named_parameters(), tm.named_parameters()):
        assert p.grad.dtype == dtype, name
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=rtol, atol=rtol)


def test_linear_and_bilinear_gradcheck():
    lin = nn.Linear(3, 2).double()
    x = dg.randn(4, 3, dtype=dg.float64, requires_grad=True)
    assert dg.autograd.gradcheck(lambda x, w, b: nn.functional.linear(x, w, b),
                                 (x, lin.weight, lin.bias))
    bil = nn.Bilinear(3, 2, 4).double()
    x2 = dg.randn(4, 2, dtype=dg.float64, requires_grad=True)
    assert dg.autograd.gradcheck(lambda a, b, w: bil(a, b), (x, x2, bil.weight))


@requires_torch
def test_bilinear_matches_torch():
    tm = _torch.nn.Bilinear(3, 2, 4).double()
    m = nn.Bilinear(3, 2, 4).double()
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    a = np.random.default_rng(0).standard_normal((5, 3))
    b = np.random.default_rng(1).standard_normal((5, 2))
    np.testing.assert_allclose(m(dg.tensor(a), dg.tensor(b)).detach().numpy(),
                               tm(_torch.tensor(a), _torch.tensor(b)).detach().numpy(),
                               rtol=1e-10)


def test_clip_grad():
    ps = [nn.Parameter(dg.zeros(3)), nn.Parameter(dg.zeros(4))]
    ps[0].grad = dg.tensor([3.0, 0.0, 0.0])
    ps[1].grad = dg.tensor([0.0, 4.0, 0.0, 0.0])
    total = nn.utils.clip_grad_norm_(ps, 1.0)
    assert abs(total.item() - 5.0) < 1e-6
    assert abs(math.hypot(*ps[0].grad.tolist(), *ps[1].grad.tolist()) - 1.0) < 1e-5
    nn.utils.clip_grad_value_(ps, 0.1)
    assert max(abs(v) for p in ps for v in p.grad.tolist()) <= 0.1 + 1e-7
    total = nn.utils.clip_grad_norm_(ps, 10.0, norm_type=math.inf)
    assert abs(total.item() - 0.1) < 1e-6


def test_summary_counts_linear_connections():
    net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3, bias=False))
    s = dg.summary(net, (4,), print_result=False)
    assert s.total_params == 4 * 8 + 8 + 24
    assert [r.connections for r in s.rows] == [40, 24]
    assert [r.output_shape for r in s.rows] == [(8,), (3,)]
    assert "Total params: 64" in str(s)


def test_summary_figures_of_the_issue():
    conv = dg.summary(nn.Conv2d(1, 6, 5), (1, 32, 32), print_result=False)
    assert conv.total_params == 156 and conv.total_connections == 122_304
    assert conv.rows[0].output_shape == (6, 28, 28)
    lin = dg.summary(nn.Linear(16384, 1), (16384,), print_result=False)
    assert lin.total_params == 16_385


def test_summary_of_published_lenet5_matches_the_paper():
    from deepgrad.models import LeNet5

    s = dg.summary(LeNet5(), (1, 32, 32), print_result=False)
    paper = {"c1": (156, 122_304), "s2": (12, 5_880), "c3": (1_516, 151_600),
             "s4": (32, 2_000), "c5": (48_120, 48_120), "f6": (10_164, 10_164)}
    got = {r.name: (r.params, r.connections) for r in s.rows if r.name in paper}
    assert got == paper
    assert s.trainable_params - s.rows[-1].trainable == 60_000
