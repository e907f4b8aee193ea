"""Shared pieces of the training workloads: equal initial weights, the training step, FLOP counts.

Every training workload builds its model with ``lib.nn`` (``lib`` is ``deepgrad`` or ``torch``),
overwrites all parameters with the same NumPy arrays, and times one optimizer step on a
small pool of batches that both libraries visit in the same order.
"""

from __future__ import annotations

import itertools

import numpy as np

# Batches in the pool a training step cycles through: training on one fixed batch would drive
# the loss (and gradients) towards zero, into denormal floats whose cost differs by library.
POOL = 8


def same_init(lib, model, seed: int = 0) -> None:
    """Overwrite every parameter of ``model`` with seeded arrays equal in both libraries.

    The keys and shapes of a state dict are the same in deepgrad and PyTorch, so walking them in
    order with one seeded generator gives both libraries identical weights. The scale follows
    PyTorch's defaults (uniform in +-1/sqrt(fan_in); recurrent layers +-1/sqrt(hidden)) so the
    activations are neither saturated nor vanishing, which would change what is timed.
    """
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    new = {}
    bound = 1.0
    for key, value in state.items():
        shape = tuple(value.shape)
        leaf = key.rsplit(".", 1)[-1]
        if leaf.startswith(("weight_ih", "weight_hh", "bias_ih", "bias_hh")):
            b = 1.0 / np.sqrt(_hidden_of(state, key))
        elif len(shape) >= 2:
            bound = 1.0 / np.sqrt(int(np.prod(shape[1:])))
            b = bound
        else:
            b = bound  # a bias takes the bound of the weight before it
        new[key] = lib.from_numpy(rng.uniform(-b, b, size=shape).astype(np.float32))
    model.load_state_dict(new)


def _hidden_of(state, key: str) -> int:
    prefix, leaf = key.rsplit(".", 1) if "." in key else ("", key)
    suffix = leaf.split("_", 2)[-1]  # "l0" of "weight_ih_l0"
    hh = f"{prefix}.weight_hh_{suffix}" if prefix else f"weight_hh_{suffix}"
    return int(tuple(state[hh].shape)[1])


def data_module(lib):
    """``torch.utils.data`` or ``deepgrad.data``: the one place the two APIs differ in name."""
    utils = getattr(lib, "utils", None)
    if utils is not None and hasattr(utils, "data"):
        return utils.data
    return lib.data


def batch_pool(lib, x: np.ndarray, y: np.ndarray, batch: int, n: int = POOL) -> list:
    """The first ``n`` batches of ``(x, y)`` as tensors of ``lib`` (made once, outside timing)."""
    if x.shape[0] < batch * n:
        raise ValueError(
            f"batch_pool: need {batch * n} samples for {n} batches of {batch}, got {x.shape[0]}")
    return [
        (lib.from_numpy(np.ascontiguousarray(x[k * batch:(k + 1) * batch])),
         lib.from_numpy(np.ascontiguousarray(y[k * batch:(k + 1) * batch])))
        for k in range(n)
    ]


def train_step(model, loss_fn, optimizer, batches: list):
    """Return ``(step, leaves)``: one optimizer step per call, cycling through ``batches``.

    The first call uses ``batches[0]`` in both libraries, so the gradients compared after it
    come from the same weights and data.
    """
    cycle = itertools.cycle(batches)

    def step():
        x, y = next(cycle)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    return step, list(model.parameters())


# ---- analytic FLOP counts (a multiply-add is 2 FLOPs) -----------------------------------------
# Training costs about 3x the forward: the forward GEMM, the GEMM for the input's gradient and
# the one for the weight's gradient. Only the GEMM-like work is counted (linear, convolution,
# recurrent matrices): activations, pooling and losses are a few percent at most.

def linear_flops(batch: int, n_in: int, n_out: int) -> float:
    return 2.0 * batch * n_in * n_out


def conv_flops(batch: int, c_in: int, c_out: int, k: int, h_out: int, w_out: int) -> float:
    return 2.0 * batch * c_out * h_out * w_out * c_in * k * k


TRAIN_FACTOR = 3.0


def lenet5_forward_flops(batch: int) -> float:
    return (conv_flops(batch, 1, 6, 5, 28, 28)
            + conv_flops(batch, 6, 16, 5, 10, 10)
            + conv_flops(batch, 16, 120, 5, 1, 1)
            + linear_flops(batch, 120, 84)
            + linear_flops(batch, 84, 10))


def lenet5(lib, modern: bool):
    """Classic LeNet-5 (tanh, average pooling) or its modern variant (ReLU, max pooling)."""
    nn = lib.nn
    act = nn.ReLU if modern else nn.Tanh
    pool = nn.MaxPool2d if modern else nn.AvgPool2d
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), act(), pool(2),
        nn.Conv2d(6, 16, 5), act(), pool(2),
        nn.Conv2d(16, 120, 5), act(),
        nn.Flatten(),
        nn.Linear(120, 84), act(),
        nn.Linear(84, 10),
    )


def mnist_batches(batch: int) -> dict:
    """``make_inputs`` of an MNIST training-step workload: ``POOL`` batches of real digits."""
    from . import _mnist

    x, y, source = _mnist.digits(train=True, need=batch * POOL, allow_full=False)
    return {"x": x, "y": y, "_data": f"{POOL} batches cycled; {source}"}


def sgd_classifier_step(lib, model, inputs: dict, batch: int):
    """``build`` of an MNIST training-step workload: equal weights, cross-entropy, SGD lr 0.01
    momentum 0.9, one step per call over the pool of batches."""
    same_init(lib, model)
    optimizer = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = batch_pool(lib, inputs["x"], inputs["y"], batch)
    return train_step(model, lib.nn.CrossEntropyLoss(), optimizer, batches)
