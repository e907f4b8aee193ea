"""The quick char-lm reproduction: a character LSTM on a slice of Shakespeare gets well below
the unigram entropy of the text; and the corpus loader's pieces."""
from __future__ import annotations

import pytest

import deepgrad.reproduce as reproduce
from deepgrad.reproduce import _corpus

needs_corpus = pytest.mark.skipif(
    not _corpus.available(),
    reason=f"{_corpus.ARCHIVE} not found under $DEEPGRAD_DATA")


def test_strip_gutenberg_header_footer_and_notice():
    text = ("The Project Gutenberg EBook of Macbeth\r\nsome licence text\r\n"
            "*** START OF THIS PROJECT GUTENBERG EBOOK MACBETH ***\r\n\r\n"
            "<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS IS COPYRIGHT\r\nETC.>>\r\n"
            "ACT I.\r\nWhen shall we three meet again?\r\n\r\n"
            "*** END OF THIS PROJECT GUTENBERG EBOOK MACBETH ***\r\nmore licence\r\n")
    assert _corpus.strip_gutenberg(text) == "ACT I.\nWhen shall we three meet again?\n"
    old = ("header\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n"
           "Text.\nEnd of Project Gutenberg Etext of X\n")
    assert _corpus.strip_gutenberg(old) == "Text.\n"
    assert _corpus.strip_gutenberg("No header here.\n") == "No header here.\n"


def test_vocab_round_trip_and_unknown():
    vocab = _corpus.CharVocab("to be or not")
    ids = vocab.encode("not to be")
    assert vocab.decode(ids) == "not to be"
    assert list(vocab.encode("tz")) == [vocab.index["t"], 0]  # unseen -> placeholder 0


def test_split_documents_is_by_whole_documents():
    docs = [_corpus.Document(f"d{i}", "", "x" * (100 + i)) for i in range(20)]
    train, val = _corpus.split_documents(docs, 0.1, 0)
    names = {d.name for d in train} | {d.name for d in val}
    assert len(names) == 20 and not {d.name for d in train} & {d.name for d in val}
    assert sum(len(d.text) for d in val) >= 0.1 * sum(len(d.text) for d in docs)


@needs_corpus
def test_load_shakespeare():
    docs = _corpus.load_shakespeare()
    assert len(docs) == 42  # the modern-spelling editions only
    assert all(not d.name.endswith("_f") for d in docs)
    text = _corpus.join(docs)
    assert "gutenberg" not in text.lower()
    assert "To be, or not to be" in text


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
    assert "## Samples" in md
    assert (tmp_path / "char_lm_bpc.png").exists()
