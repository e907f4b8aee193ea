"""XOR, the classic case for hidden layers: a linear threshold unit cannot separate it,
a network with one hidden layer learns it."""
from __future__ import annotations

import numpy as np

import deepgrad as dg
from deepgrad import nn

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
Y = np.array([0, 1, 1, 0], np.float32)


def test_perceptron_rule_never_separates_xor():
    # Rosenblatt's rule: w += lr * (target - prediction) * x on every mistake. Whatever it
    # does, a single threshold unit classifies at most 3 of the 4 XOR points correctly.
    w = np.zeros(2)
    b = 0.0
    best = 0
    for _ in range(200):
        for x, t in zip(X, Y):
            pred = float(w @ x + b > 0)
            w += 0.1 * (t - pred) * x
            b += 0.1 * (t - pred)
        accuracy = int(np.sum((X @ w + b > 0) == Y.astype(bool)))
        best = max(best, accuracy)
    assert best <= 3


def test_single_layer_trained_by_gradient_descent_fails():
    dg.manual_seed(0)
    layer = nn.Linear(2, 1)
    x, y = dg.tensor(X), dg.tensor(Y[:, None])
    for _ in range(2000):
        loss = ((layer(x).sigmoid() - y) ** 2).mean()
        layer.zero_grad()
        loss.backward()
        with dg.no_grad():
            for p in layer.parameters():
                p.sub_(p.grad, alpha=1.0)
    predictions = layer(x).sigmoid().detach().numpy()[:, 0] > 0.5
    assert int(np.sum(predictions == Y.astype(bool))) <= 3


def test_two_layer_network_learns_xor():
    dg.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.Linear(8, 1))
    x, y = dg.tensor(X), dg.tensor(Y[:, None])

    def forward(inp):
        return net[1](net[0](inp).tanh()).sigmoid()

    for _ in range(2000):
        loss = ((forward(x) - y) ** 2).mean()
        net.zero_grad()
        loss.backward()
        with dg.no_grad():
            for p in net.parameters():
                p.sub_(p.grad, alpha=1.0)
    out = forward(x).detach().numpy()[:, 0]
    np.testing.assert_array_equal(out > 0.5, Y.astype(bool))
    assert loss.item() < 0.01
