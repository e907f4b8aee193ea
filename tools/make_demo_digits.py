"""Write the sample digit images of examples/digits/ from real MNIST test digits.

One digit per class, each stored in a different way a user's image might come, so that
``deepgrad predict`` exercises its whole preparation (invert, crop, scale, centre):

    <label>-mnist.png      28x28 grey, light on dark, exactly as in MNIST
    <label>-inverted.png   28x28 grey, dark ink on white paper
    <label>-large.png      enlarged 2x (56x56), dark on white
    <label>-margin.png     dark on white on a wider 48x36 canvas, off centre
    <label>-rgb.png        RGB, blue ink on a slightly yellow paper

The file name starts with the true label; the tests check predictions against it. The digits
come from the MNIST test set (never trained on): for each class, the one that is most clearly
of its class, i.e. whose distance to the mean training image of its class is smallest compared
with its distance to the nearest other class mean. A demo should show the pipeline on clear
handwriting, not a model's mistakes on the hardest digits. Run with DEEPGRAD_DATA pointing at
the folder that holds mnist/:

    DEEPGRAD_DATA=../shared/datasets python tools/make_demo_digits.py [OUT_DIR]
"""
from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from deepgrad.data.datasets import MNIST  # noqa: E402
from deepgrad.images import write_png  # noqa: E402

VARIANTS = ("mnist", "inverted", "large", "margin", "rgb")


def render(digit: np.ndarray, variant: str) -> np.ndarray:
    """``digit``: uint8 (28, 28), light on dark. Returns the image to store."""
    ink = digit.astype(np.float64) / 255.0
    if variant == "mnist":
        return digit
    if variant == "inverted":
        return 1.0 - ink
    if variant == "large":
        return 1.0 - np.kron(ink, np.ones((2, 2)))
    if variant == "margin":
        canvas = np.zeros((36, 48))
        canvas[2:30, 4:32] = ink
        return 1.0 - canvas
    if variant == "rgb":
        paper = np.array([1.0, 0.98, 0.88])
        blue = np.array([0.1, 0.15, 0.6])
        return paper * (1.0 - ink[..., None]) + blue * ink[..., None]
    raise ValueError(f"render: unknown variant {variant!r}")


def clearest_digits(train: MNIST, test: MNIST) -> dict[int, int]:
    """For each label, the index of the test digit with the widest margin between its distance
    to the other class means (the nearest one) and to its own class mean."""
    x = train.data.data.reshape(-1, 784).astype(np.float64) / 255.0
    y = train.targets.data
    means = np.stack([x[y == c].mean(axis=0) for c in range(10)])
    t = test.data.data.reshape(-1, 784).astype(np.float64) / 255.0
    labels = test.targets.data
    dist = ((t ** 2).sum(1)[:, None] - 2 * t @ means.T + (means ** 2).sum(1)[None, :])
    rows = np.arange(len(labels))
    own = dist[rows, labels]
    dist[rows, labels] = np.inf
    margin = dist.min(axis=1) - own
    return {c: int(np.flatnonzero(labels == c)[np.argmax(margin[labels == c])])
            for c in range(10)}


def main(out_dir: str) -> None:
    test = MNIST(train=False)
    chosen = clearest_digits(MNIST(train=True), test)
    os.makedirs(out_dir, exist_ok=True)
    for old in os.listdir(out_dir):
        if old.endswith(".png") and old[:1].isdigit():
            os.remove(os.path.join(out_dir, old))
    for label, index in chosen.items():
        variant = VARIANTS[label % len(VARIANTS)]
        path = os.path.join(out_dir, f"{label}-{variant}.png")
        write_png(path, render(test.data.data[index], variant))
        print(f"{path}: MNIST test digit {index}, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(HERE), "examples",
                                                            "digits"))
