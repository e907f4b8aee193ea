"""The per-step matrix products of char_lstm's LSTM layer, alone: 64 steps of the forward's
gates product and of backward's product with W_hh, as deepgrad's layer lays them out."""

from __future__ import annotations

import numpy as np

from ._char import BATCH, EMBED, HIDDEN, SEQ

NAME = "lstm_gemms"
DESCRIPTION = ("64 x [w (1024, 321) @ s (321, 32)] and 64 x [w_hh.T (256, 1024) @ d (1024, 32)]: "
               "char_lstm's per-step GEMMs under no_grad")
UNIT = "ms"
CHECK = "values"
K = HIDDEN + EMBED + 1  # [h; x_t; 1]


def make_inputs(rng: np.random.Generator, quick: bool) -> dict:
    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    return {"w": r(4 * HIDDEN, K), "s": r(SEQ, K, BATCH), "w_hh": r(4 * HIDDEN, HIDDEN),
            "d": r(SEQ, 4 * HIDDEN, BATCH)}


def build(lib, inputs):
    w, w_hh = lib.from_numpy(inputs["w"]), lib.from_numpy(inputs["w_hh"])
    s = [lib.from_numpy(a) for a in inputs["s"]]
    d = [lib.from_numpy(a) for a in inputs["d"]]
    outputs: list = []

    def step():
        outputs.clear()
        with lib.no_grad():
            wt = w_hh.T
            for t in range(SEQ):
                outputs.append(w @ s[t])
            for t in range(SEQ):
                outputs.append(wt @ d[t])

    return step, outputs


def flops(inputs) -> float:
    return 2.0 * SEQ * BATCH * 4 * HIDDEN * (K + HIDDEN)
