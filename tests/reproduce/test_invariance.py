"""The quick invariance reproduction: a ConvNet with pooling loses less accuracy than a fully
connected network when the test digits are shifted by 3-4 pixels."""
from __future__ import annotations

import numpy as np

import deepgrad.reproduce as reproduce
from deepgrad.reproduce.invariance import directions, shift_images


def test_shift_images_moves_digits_and_fills_background():
    img = np.zeros((2, 28, 28), np.uint8)
    img[:, 10:14, 12:15] = 200
    out = shift_images(img, np.array([3, -2]), np.array([-4, 5]))
    assert np.array_equal(out[0, 13:17, 8:11], img[0, 10:14, 12:15])
    assert np.array_equal(out[1, 8:12, 17:20], img[1, 10:14, 12:15])
    assert out.sum() == img.sum()
    # moved past the edge: the ink is lost, nothing wraps around
    far = shift_images(img[:1], np.array([0]), np.array([20]))
    assert far.sum() == 0
    dy, dx, names = directions(1000, 0)
    assert set(names) == {"right", "left", "down", "up"}
    assert np.all(np.abs(dy) + np.abs(dx) == 1)


def test_invariance_quick(tmp_path):
    report = reproduce.run("invariance", quick=True, out_dir=str(tmp_path))
    acc = report.results["accuracy"]
    drop = report.results["drop_3_4"]
    assert acc["mlp"][0] > 0.85 and acc["convnet"][0] > 0.85  # both learned centred digits
    assert drop["convnet"] < drop["mlp"]
    assert acc["convnet"][3] > acc["mlp"][3] and acc["convnet"][4] > acc["mlp"][4]
    for name in ("report.md", "accuracy_vs_shift.png", "shifted_examples.png"):
        assert (tmp_path / name).exists()
