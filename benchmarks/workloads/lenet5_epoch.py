"""One epoch of LeNet-5 training over the 60,000 MNIST training digits, data batching included.

Both libraries iterate their own DataLoader (shuffle, batch 64) over a TensorDataset of the same
normalized float32 images and int64 labels; the loader's shuffling, indexing and tensor
creation are part of the time, as in a real training loop. The two shuffles differ (each
library has its own generator), which changes only the order of the batches.
"""

from __future__ import annotations

import numpy as np

from . import _mnist, lenet5
from ._train import TRAIN_FACTOR, data_module, lenet5_forward_flops, same_init

NAME = "lenet5_epoch"
DESCRIPTION = ("one epoch of lenet5 (batch 64, SGD lr 0.01 momentum 0.9) over the 60,000 training "
               "digits through DataLoader(TensorDataset, shuffle=True) (quick: 6,000 digits)")
UNIT = "s"
TARGET = 0.8
BATCH = 64
FULL, QUICK = 60_000, 6_000
# an epoch is seconds long: one call per repetition, few repetitions
REPEATS = 3
QUICK_REPEATS = 2
TARGET_SECONDS = 0.0


def make_inputs(rng: np.random.Generator, quick: bool) -> dict:
    n = QUICK if quick else FULL
    # quick: the embedded 6,000-digit sample, which loads in milliseconds
    x, y, source = _mnist.digits(train=True, need=n, allow_full=not quick)
    subset = f"quick subset: {n:,} of {FULL:,} digits; " if quick else f"{n:,} digits; "
    return {"x": x, "y": y, "_data": subset + source}


def build(lib, inputs):
    model = lenet5.lenet5(lib, modern=False)
    same_init(lib, model)
    optimizer = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = lib.nn.CrossEntropyLoss()
    data = data_module(lib)
    dataset = data.TensorDataset(lib.from_numpy(inputs["x"]), lib.from_numpy(inputs["y"]))
    loader = data.DataLoader(dataset, batch_size=BATCH, shuffle=True)
    expected = -(-inputs["x"].shape[0] // BATCH)
    if len(loader) != expected:
        raise RuntimeError(
            f"lenet5_epoch: DataLoader has {len(loader)} batches, expected {expected}")

    def step():
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()

    return step, list(model.parameters())


def build_check(lib, inputs):
    """The gradient check runs one step of lenet5 (the shuffled epochs differ in order)."""
    return lenet5.build(lib, {"x": inputs["x"], "y": inputs["y"]})


def flops(inputs) -> float:
    n = inputs["x"].shape[0]
    # the last, partial batch counts for its size: FLOPs are linear in the batch
    return TRAIN_FACTOR * lenet5_forward_flops(1) * n
