"""The quick char-lm reproduction: a character LSTM on a slice of Shakespeare gets well below
the unigram entropy of the text. (The corpus loader is tested in tests/data/test_text.py.)"""
from __future__ import annotations

import os

import pytest

import deepgrad.reproduce as reproduce
from deepgrad.data.datasets import text as corpus

needs_corpus = pytest.mark.skipif(
    not os.path.isfile(corpus.shakespeare_path()),
    reason=f"{corpus.SHAKESPEARE_ARCHIVE} not found under $DEEPGRAD_DATA")


@needs_corpus
def test_char_lm_quick(tmp_path):
    report = reproduce.run("char-lm", quick=True, out_dir=str(tmp_path))
    r = report.results
    assert 4.0 < r["unigram_entropy"] < 5.5
    assert r["val_bpc"] < r["unigram_entropy"] - 1.0
    assert r["val_bpc"] < r["bigram_val_bpc"]
    assert r["val_bpc"] < r["initial_val_bpc"]
    assert set(r["samples"]) == {0.5, 0.8, 1.0}
    assert all(len(s) > 0 for s in r["samples"].values())
    md = (tmp_path / "report.md").read_text()
    assert "## Samples" in md and "deepgrad.data.datasets.Shakespeare" in md
    assert (tmp_path / "char_lm_bpc.png").exists()
