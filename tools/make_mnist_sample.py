"""Make the MNIST sample embedded in deepgrad (deepgrad/data/datasets/mnist_sample/).

How the sample is made:
  1. Read the full MNIST data with deepgrad's own loader from $DEEPGRAD_DATA (its files are
     verified against the SHA-256 sums of the original data, so the input is the real MNIST).
  2. For each split and each digit 0-9, draw PER_CLASS indices without replacement
     (600 per class from the 60,000 training images, 100 per class from the 10,000 test
     images) with ``numpy.random.default_rng(SEED)``: one generator, training split first,
     digits in increasing order.
  3. Sort the chosen indices, so the sample keeps the original order of the data.
  4. Write each split as the original IDX format (same magic numbers and headers), gzipped at
     level 9 with mtime 0, so a rerun writes byte-identical files.
  5. Print the SHA-256 of each decompressed file; they must equal ``_SAMPLE_SHA256`` in
     deepgrad/data/datasets/mnist.py (``--check`` exits non-zero when they differ).

Usage:
    DEEPGRAD_DATA=../shared/datasets python tools/make_mnist_sample.py [--check] [--out DIR]
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from deepgrad.data.datasets import mnist as mnist_module  # noqa: E402

SEED = 19981101  # the month LeCun et al.'s "Gradient-based learning ..." appeared
PER_CLASS = {True: 600, False: 100}


def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def choose(targets: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = []
    for digit in range(10):
        pool = np.flatnonzero(targets == digit)
        picks.append(rng.choice(pool, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=mnist_module._SAMPLE_DIR)
    parser.add_argument("--check", action="store_true",
                        help="fail if the sums differ from those in mnist.py")
    args = parser.parse_args()
    if not os.environ.get("DEEPGRAD_DATA"):
        print("make_mnist_sample: set DEEPGRAD_DATA to the folder holding mnist/",
              file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    sums = {}
    total = 0
    for train in (True, False):
        ds = mnist_module.MNIST(train=train)
        images = ds.data.numpy()
        labels = ds.targets.numpy()
        chosen = choose(labels, PER_CLASS[train], rng)
        img_name, lbl_name = mnist_module._SPLIT_FILES[train]
        for name, arr, magic in ((img_name, images[chosen], mnist_module.IMAGES_MAGIC),
                                 (lbl_name, labels[chosen].astype(np.uint8),
                                  mnist_module.LABELS_MAGIC)):
            raw = idx_bytes(arr, magic)
            sums[name] = hashlib.sha256(raw).hexdigest()
            blob = gzip.compress(raw, compresslevel=9, mtime=0)
            path = os.path.join(args.out, name + ".gz")
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
            total += len(blob)
            print(f"{path}: {arr.shape}, {len(blob)} bytes, sha256 {sums[name]}")
    print(f"total {total} bytes")
    print("_SAMPLE_SHA256 = {")
    for name, digest in sums.items():
        print(f'    "{name}": "{digest}",')
    print("}")
    if args.check and sums != mnist_module._SAMPLE_SHA256:
        print("make_mnist_sample: sums differ from _SAMPLE_SHA256 in mnist.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
