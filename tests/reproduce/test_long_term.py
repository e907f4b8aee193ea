"""The quick long-term reproduction: on the adding problem (T = 50) the LSTM learns what the
vanilla RNN cannot, and the RNN's gradient vanishes with the distance in time."""
from __future__ import annotations

import numpy as np

import deepgrad.reproduce as reproduce
from deepgrad.reproduce.long_term import BASELINE_MSE, adding_batch


def test_adding_batch_targets_and_marks():
    x, y = adding_batch(np.random.default_rng(0), 500, 20)
    assert x.shape == (500, 20, 2) and y.shape == (500, 1)
    marks = x[:, :, 1]
    assert np.all(marks.sum(1) == 2)
    assert np.all(marks[:, :10].sum(1) == 1)  # one mark in each half
    assert np.allclose((x[:, :, 0] * marks).sum(1), y[:, 0])
    # predicting 1.0 scores about Var(U1 + U2) = 1/6
    x, y = adding_batch(np.random.default_rng(1), 20000, 20)
    assert abs(np.mean((y - 1.0) ** 2) - BASELINE_MSE) < 0.01


def test_long_term_quick(tmp_path):
    report = reproduce.run("long-term", quick=True, out_dir=str(tmp_path))
    r = report.results
    base = r["baseline_T50"]
    assert abs(base - 1 / 6) < 0.02
    # the RNN stays near the baseline, the LSTM goes well below it
    assert r["rnn_mse_T50"] > 0.8 * base
    assert r["lstm_mse_T50"] < 0.3 * base
    # the RNN's gradient w.r.t. the first input step is orders of magnitude below the last's;
    # the trained LSTM's is not
    assert r["rnn_grad_ratio_init_T50"] < 1e-6
    assert r["lstm_grad_ratio_trained_T50"] > 10 * r["rnn_grad_ratio_trained_T50"]
    assert (tmp_path / "report.md").exists()
    assert (tmp_path / "adding_mse.png").exists()
    assert (tmp_path / "gradient_vs_distance.png").exists()
