"""The quick activations reproduction: in a 10-layer MLP the sigmoid's gradient vanishes toward
the input, and the ReLU net's loss falls far below the sigmoid net's in the same steps."""
from __future__ import annotations

import numpy as np

import deepgrad as dg
import deepgrad.reproduce as reproduce
from deepgrad import nn
from deepgrad.reproduce import _deepnet


def test_build_mlp_layout_and_init():
    net, linears, acts = _deepnet.build_mlp(4, 16, "tanh", batch_norm=True, seed=3)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "BatchNorm1d", "Tanh"] * 3 + ["Linear"]
    assert [fc.weight.shape for fc in linears] == [(16, 784), (16, 16), (16, 16), (10, 16)]
    assert len(acts) == 3
    assert all(np.all(fc.bias.data == 0) for fc in linears)
    bound = np.sqrt(6 / (784 + 16))
    assert np.abs(linears[0].weight.data).max() <= bound
    # same seed, same weights
    again = _deepnet.build_mlp(4, 16, "tanh", batch_norm=True, seed=3)[1]
    assert np.array_equal(again[1].weight.data, linears[1].weight.data)


def test_sigmoid_gradient_shrinks_about_fourfold_per_layer():
    x = dg.tensor(np.random.default_rng(0).standard_normal((64, 784)).astype(np.float32))
    y = dg.tensor(np.arange(64) % 10)
    factors = {}
    for act in ("sigmoid", "tanh"):
        net, linears, _ = _deepnet.build_mlp(8, 128, act, seed=0)
        nn.functional.cross_entropy(net(x), y).backward()
        g = _deepnet.grad_norms(linears)
        factors[act] = (g[1] / g[-2]) ** (1 / (len(g) - 3))
    assert 0.15 < factors["sigmoid"] < 0.27
    assert factors["tanh"] > 0.7


def test_activations_quick(tmp_path):
    report = reproduce.run("activations", quick=True, out_dir=str(tmp_path))
    r = report.results
    for init in ("xavier", "default"):
        # the sigmoid net's input layer gets orders of magnitude less gradient than its output
        # layer; tanh's and ReLU's do not
        assert r[f"{init}_sigmoid_grad_ratio_init"] < 1e-3
        assert r[f"{init}_tanh_grad_ratio_init"] > 0.1
        assert r[f"{init}_relu_grad_ratio_init"] > 0.1
        assert r[f"{init}_sigmoid_layer_factor_init"] < 0.3
    # ReLU learns, the sigmoid does not (normalised init, the same steps and learning rate)
    assert r["xavier_relu_final_loss"] < 0.5 * r["xavier_sigmoid_final_loss"]
    assert r["xavier_sigmoid_final_loss"] > 2.0
    assert r["sweep_relu_best_loss"] < 0.5 * r["sweep_sigmoid_best_loss"]
    assert (tmp_path / "report.md").exists()
    for png in ("activations_gradients.png", "activations_curves.png",
                "activations_gradient_ratio.png"):
        assert (tmp_path / png).exists()
