"""Shared body of the single-layer workloads: one layer, forward + backward of a weighted sum."""

from __future__ import annotations

import numpy as np


def layer_step(lib, layer, inputs):
    """Return (step, leaves) timing forward+backward of ``layer`` on ``inputs['x']``.

    The loss is ``(layer(x) * g).sum()`` with a fixed random ``g``, so every output element
    gets its own gradient (a plain sum would hide mistakes that cancel out).
    """
    x = lib.tensor(inputs["x"], requires_grad=True)
    g = None

    def step():
        nonlocal g
        for p in layer.parameters():
            p.grad = None
        x.grad = None
        out = layer(x)
        if isinstance(out, tuple):
            out = out[0]
        if g is None:
            rng = np.random.default_rng(1)
            g = lib.tensor(rng.standard_normal(tuple(out.shape)).astype(np.float32))
        (out * g).sum().backward()

    return step, [x] + list(layer.parameters())


def copy_weights(lib, layer, weights: dict) -> None:
    """Load the same initial weights into either library's layer."""
    own = layer.state_dict()
    layer.load_state_dict({k: lib.from_numpy(weights[k].copy()) if k in weights else own[k]
                           for k in own})


def init_weights(rng: np.random.Generator, shapes: dict) -> dict:
    return {k: (rng.standard_normal(s) * 0.1).astype(np.float32) for k, s in shapes.items()}
