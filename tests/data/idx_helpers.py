"""Helpers for the data tests: IDX file writers and the real MNIST folder."""
from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import pytest

def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if magic is None:
        magic = 0x00000800 | arr.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.tobytes()


def write_file(path, raw: bytes, gz: bool) -> str:
    path = os.fspath(path) + (".gz" if gz else "")
    with open(path, "wb") as f:
        f.write(gzip.compress(raw, mtime=0) if gz else raw)
    return path


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def real_mnist_folder() -> str | None:
    base = os.environ.get("DEEPGRAD_DATA")
    if not base:
        return None
    folder = os.path.join(base, "mnist")
    needed = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte"]
    ok = all(os.path.exists(os.path.join(folder, n))
             or os.path.exists(os.path.join(folder, n + ".gz")) for n in needed)
    return folder if ok else None


requires_mnist = pytest.mark.skipif(
    real_mnist_folder() is None,
    reason="real MNIST not found: set DEEPGRAD_DATA to a folder with mnist/ (the Makefile does)")
