"""The quick lenet5 reproduction: LeNet-5's parameter and connection counts are the paper's,
and two epochs on the embedded sample already brings the test error far below chance."""
from __future__ import annotations

import deepgrad.reproduce as reproduce
from deepgrad.reproduce.lenet5 import PAPER_COUNTS, QUICK_EPOCHS


def test_lenet5_quick(tmp_path):
    report = reproduce.run("lenet5", quick=True, out_dir=str(tmp_path))
    r = report.results
    # the paper's counts (section II-B), layer by layer, exactly
    assert r["counts_match"]
    for name, counts in PAPER_COUNTS.items():
        assert r["layer_counts"][name] == counts
    assert r["params_c1_f6"] == 60_000
    assert r["connections_c1_f6"] == 340_068
    # chance is 90% error; two epochs on 6,000 digits get well below it
    assert r["test_error"] < 0.5
    assert r["test_error_distorted"] < 0.6
    assert len(r["history"]) == QUICK_EPOCHS == len(r["history_distorted"])
    for name in ("report.md", "lenet5_error.png", "lenet5_misclassified.png",
                 "lenet5.safetensors"):
        assert (tmp_path / name).exists()
