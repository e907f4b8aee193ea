"""The quick feature-maps reproduction: every layer's output of a briefly trained LeNet-5 has
the paper's shape, and the figures are drawn."""
from __future__ import annotations

import deepgrad.reproduce as reproduce


def test_feature_maps_quick(tmp_path):
    report = reproduce.run("feature-maps", quick=True, out_dir=str(tmp_path))
    r = report.results
    assert r["shapes"] == {"c1": (6, 28, 28), "s2": (6, 14, 14), "c3": (16, 10, 10),
                           "s4": (16, 5, 5), "c5": (120, 1, 1), "f6": (84,), "output": (10,)}
    assert r["c1_kernels_shape"] == (6, 1, 5, 5)
    assert not r["from_checkpoint"]  # the quick run trains its own network
    assert r["test_error"] < 0.5  # the drawn network has learned something (chance: 0.9)
    assert 0 <= r["predicted"] <= 9 and 0.1 <= r["probability"] <= 1.0
    for name in ("report.md", "feature_maps.png", "c1_kernels.png"):
        assert (tmp_path / name).exists()
