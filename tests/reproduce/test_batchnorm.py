"""The quick batchnorm reproduction: under a bad initialisation or learning rate the 10-layer
MLP with batch norm reaches a lower loss than without, and its units stay unsaturated."""
from __future__ import annotations

import numpy as np

import deepgrad as dg
import deepgrad.reproduce as reproduce
from deepgrad.reproduce import _deepnet


def test_measuring_passes_leave_batch_norm_statistics_alone():
    net, _, acts = _deepnet.build_mlp(3, 8, "tanh", batch_norm=True, seed=0)
    bn = net[1]
    before = bn.running_mean.data.copy(), bn.running_var.data.copy()
    probe = _deepnet.PreactivationProbe(acts, 2.0)
    probe.active = True
    with dg.no_grad(), _deepnet.frozen_buffers(net):
        net(dg.tensor(np.random.default_rng(0).standard_normal((32, 784)).astype(np.float32)))
    probe.remove()
    assert np.array_equal(bn.running_mean.data, before[0])
    assert np.array_equal(bn.running_var.data, before[1])
    pct, sat = probe.stats()
    assert pct.shape == (2, 3) and sat.shape == (2,)
    # batch norm's output over a batch is standardised: about 4.6% beyond |z| = 2
    assert np.all(sat < 0.15)
    assert abs(pct[0, 1]) < 0.3  # median near 0


def test_batchnorm_quick(tmp_path):
    report = reproduce.run("batchnorm", quick=True, out_dir=str(tmp_path))
    r = report.results
    # in every bad setting batch norm ends with the lower training loss, by a wide margin
    assert r["bad_settings_bn_wins"] == r["bad_settings"] == 4
    for key in ("small_init", "large_init", "high_lr", "sigmoid"):
        assert r[f"{key}_bn_loss"] < 0.6 * r[f"{key}_plain_loss"], key
    # too-large weights and a too-high learning rate saturate the tanh units without batch
    # norm; with it they stay near the ~5% of a standard normal beyond |z| = 2
    for key in ("large_init", "high_lr"):
        assert r[f"{key}_plain_saturation_peak"] > 0.3
        assert r[f"{key}_bn_saturation_end"] < 0.1
    # the sigmoid net's gradient vanishes without batch norm, not with it
    assert r["sigmoid_plain_grad_ratio_init"] < 1e-3
    assert r["sigmoid_bn_grad_ratio_init"] > 1e-2
    assert (tmp_path / "report.md").exists()
    for png in ("batchnorm_curves.png", "batchnorm_saturation.png",
                "batchnorm_preactivations.png"):
        assert (tmp_path / png).exists()
