"""MNIST digits for the workloads, read once per process through deepgrad's MNIST dataset.

Where the digits come from is part of the result (it goes into the JSON and the table's notes):
the full files from ``$DEEPGRAD_DATA`` (or deepgrad's cache folder) when present, else the
6,000 + 1,000 digit sample that ships inside deepgrad, else random data of the same shape.
Timing does not depend on the pixel values, but real data keeps the training realistic.
"""

from __future__ import annotations

import functools

import numpy as np

MEAN, STD = 0.1307, 0.3081

_cache: dict = {}


def _normalize(images: np.ndarray) -> np.ndarray:
    # (N, 28, 28) uint8 -> (N, 1, 28, 28) float32, the usual MNIST normalization
    x = images.astype(np.float32)[:, None] / np.float32(255.0)
    return (x - np.float32(MEAN)) / np.float32(STD)


@functools.lru_cache(maxsize=None)
def _read(train: bool, sample: bool):
    # the full training split takes about 2 s to decompress and checksum: read it once
    from deepgrad.data.datasets import MNIST

    ds = MNIST(train=train, sample=sample)
    return np.asarray(ds.data.numpy()), np.asarray(ds.targets.numpy()), ds.folder


def digits(train: bool, need: int, allow_full: bool = True):
    """``(x, y, source)``: at least ``need`` digits of a split, normalized float32, int64 labels.

    ``allow_full=False`` skips the full files even when present (the quick mode's subsets come
    from the embedded sample, which loads in milliseconds instead of seconds).
    """
    key = (train, need, allow_full)
    if key in _cache:
        return _cache[key]
    result = None
    split = "train" if train else "test"
    if allow_full:
        try:
            images, labels, folder = _read(train, sample=False)
        except Exception:  # no files: fall back below, and say so in the source
            pass
        else:
            if images.shape[0] >= need:
                result = (images[:need], labels[:need], f"MNIST {split} files in {folder}")
    if result is None:
        try:
            images, labels, _ = _read(train, sample=True)
        except Exception:
            images = None
        if images is not None:
            n = images.shape[0]
            if n >= need:
                result = (images[:need], labels[:need],
                          f"MNIST {split} sample embedded in deepgrad")
            else:
                reps = -(-need // n)
                images = np.concatenate([images] * reps)[:need]
                labels = np.concatenate([labels] * reps)[:need]
                result = (images, labels, f"MNIST {split} sample embedded in deepgrad, "
                                          f"{n} digits repeated to {need}")
    if result is None:
        rng = np.random.default_rng(12345)
        images = rng.integers(0, 256, size=(need, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=need).astype(np.int64)
        result = (images, labels, "random data of MNIST's shape (no MNIST files or sample found)")
    images, labels, source = result
    out = (_normalize(images), labels.astype(np.int64), source)
    _cache[key] = out
    return out
