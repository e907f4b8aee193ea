"""Shared body of char_lstm, char_gru and char_rnn: a character-level language model step.

Embedding(65, 64) -> recurrent layer (64 -> 256, batch_first) -> Linear(256, 65), batch 32,
sequence 64, cross-entropy over every position, Adam lr 1e-3.
"""

from __future__ import annotations

import numpy as np

from ._train import POOL, TRAIN_FACTOR, linear_flops, same_init, train_step

VOCAB, EMBED, HIDDEN, BATCH, SEQ = 65, 64, 256, 32, 64
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def describe(cell: str) -> str:
    layer = "RNN(64, 256, tanh, batch_first)" if cell == "RNN" else f"{cell}(64, 256, batch_first)"
    return (f"Embedding(65, 64), {layer}, Linear(256, 65); batch 32, "
            f"sequence 64, cross-entropy over all positions, Adam lr 1e-3: one training step")


def make_inputs(rng: np.random.Generator, quick: bool) -> dict:
    # random characters: the cost of a step does not depend on which tokens they are
    tokens = rng.integers(0, VOCAB, size=(POOL * BATCH, SEQ + 1)).astype(np.int64)
    return {"x": tokens[:, :-1].copy(), "y": tokens[:, 1:].copy(),
            "_data": f"{POOL} batches of random tokens cycled"}


def build(lib, inputs, cell: str):
    nn = lib.nn

    extra = {"nonlinearity": "tanh"} if cell == "RNN" else {}

    class CharModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, EMBED)
            self.rnn = getattr(nn, cell)(EMBED, HIDDEN, batch_first=True, **extra)
            self.head = nn.Linear(HIDDEN, VOCAB)

        def forward(self, x):
            h, _ = self.rnn(self.embed(x))
            return self.head(h)

    model = CharModel()
    same_init(lib, model)
    optimizer = lib.optim.Adam(model.parameters(), lr=1e-3)
    cross_entropy = nn.CrossEntropyLoss()

    def loss_fn(logits, y):
        return cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))

    x, y = inputs["x"], inputs["y"]
    batches = [(lib.from_numpy(x[k:k + BATCH]), lib.from_numpy(y[k:k + BATCH]))
               for k in range(0, POOL * BATCH, BATCH)]
    return train_step(model, loss_fn, optimizer, batches)


def flops(cell: str) -> float:
    g = GATES[cell]
    rows = BATCH * SEQ
    forward = (linear_flops(rows, EMBED, g * HIDDEN) + linear_flops(rows, HIDDEN, g * HIDDEN)
               + linear_flops(rows, HIDDEN, VOCAB))
    return TRAIN_FACTOR * forward
