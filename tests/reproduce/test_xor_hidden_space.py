"""Quick runs of the xor and hidden-space reproductions assert their claims' direction."""
from __future__ import annotations

import os

import pytest

pytest.importorskip("matplotlib")

from deepgrad import reproduce  # noqa: E402


def test_xor_perceptron_fails_network_learns(tmp_path):
    report = reproduce.run("xor", quick=True, out_dir=str(tmp_path))
    assert report.results["perceptron_best"] <= 0.75
    assert report.results["network_solved"] >= 1
    assert os.path.exists(tmp_path / "report.md")
    assert os.path.exists(tmp_path / reproduce.load("xor").MAIN_FIGURE)


def test_hidden_space_makes_classes_linearly_separable(tmp_path):
    report = reproduce.run("hidden-space", quick=True, out_dir=str(tmp_path))
    assert report.results["input_linear_accuracy"] < 0.9
    assert report.results["network_accuracy"] == 1.0
    assert report.results["hidden_linear_accuracy"] == 1.0
    text = (tmp_path / "report.md").read_text()
    assert "deepgrad reproduce hidden-space --quick" in text
