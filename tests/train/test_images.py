"""deepgrad.images: the PNG codec and the MNIST-style preparation used by ``deepgrad predict``."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from deepgrad.images import (BOX, CENTRE, FIELD, ImageError, _read_png_without_pillow,
                             read_image, to_mnist, write_png)

DIGITS = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "digits")


def _digit() -> np.ndarray:
    """A synthetic MNIST-like digit, light on dark: an "8" in a 20x14 box (rows 4-23, columns
    7-20) with a grey edge, centre of mass within half a pixel of (14, 14) as in MNIST."""
    d = np.zeros((28, 28))
    d[4:24, 7:10] = 1.0     # left stroke
    d[4:24, 17:21] = 1.0    # right stroke
    d[4:7, 7:21] = 1.0      # top bar
    d[13:15, 7:21] = 1.0    # middle bar
    d[19:24, 7:21] = 1.0    # bottom bar
    d[4:24, 10] = np.maximum(d[4:24, 10], 0.5)  # anti-aliased edge
    ys, xs = np.mgrid[0:28, 0:28]
    assert abs((d * ys).sum() / d.sum() - 14) < 0.45
    assert abs((d * xs).sum() / d.sum() - 14) < 0.45
    return d


@pytest.fixture
def no_pillow(monkeypatch):
    """Make ``import PIL`` fail, as on a machine without Pillow."""
    monkeypatch.setitem(sys.modules, "PIL", None)


def test_png_round_trip_grey_and_rgb(tmp_path, no_pillow):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (17, 23)).astype(np.uint8)
    write_png(tmp_path / "g.png", grey)
    assert np.array_equal(np.round(read_image(tmp_path / "g.png") * 255), grey)
    rgb = rng.integers(0, 256, (9, 5, 3)).astype(np.uint8)
    write_png(tmp_path / "c.png", rgb)
    luma = rgb.astype(np.float64) @ [0.299, 0.587, 0.114] / 255
    assert np.allclose(read_image(tmp_path / "c.png"), luma)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1", "I;16"])
def test_png_decoder_agrees_with_pillow(tmp_path, mode):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (31, 19, 4)).astype(np.uint8)
    a[..., 3] = np.where(a[..., 3] > 60, 255, a[..., 3])
    im = {"L": lambda: Image.fromarray(a[..., 0]),
          "LA": lambda: Image.fromarray(a[..., :2].copy(), "LA"),
          "RGB": lambda: Image.fromarray(a[..., :3].copy()),
          "RGBA": lambda: Image.fromarray(a),
          "P": lambda: Image.fromarray(a[..., :3].copy()).convert("P"),
          "1": lambda: Image.fromarray(a[..., 0]).convert("1"),
          "I;16": lambda: Image.fromarray(a[..., 0].astype(np.uint16) * 257)}[mode]()
    for level in (0, 6, 9):  # different levels make Pillow choose different row filters
        path = tmp_path / f"{level}.png"
        im.save(path, compress_level=level)
        with_pillow = read_image(path)
        from deepgrad.images import _to_grey

        without = _to_grey(_read_png_without_pillow(str(path)))
        np.testing.assert_allclose(without, with_pillow, atol=1e-12)


def test_unreadable_files_raise_image_error(tmp_path, no_pillow):
    with pytest.raises(ImageError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageError, match="not a PNG file.*deepgrad\\[train\\]"):
        read_image(tmp_path / "text.png")
    write_png(tmp_path / "ok.png", np.zeros((8, 8), np.uint8))
    blob = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(blob[:40])
    with pytest.raises(ImageError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_unreadable_files_with_pillow(tmp_path):
    pytest.importorskip("PIL")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageError, match="text.png.*not an image file"):
        read_image(tmp_path / "text.png")


def test_to_mnist_keeps_an_mnist_digit():
    d = _digit()
    out = to_mnist(d)
    assert out.shape == (FIELD, FIELD) and out.dtype == np.float32
    np.testing.assert_allclose(out, d, atol=1e-6)


def test_to_mnist_inverts_crops_scales_and_centres():
    d = _digit()
    # dark on light, 3x larger, off centre on a wide canvas
    canvas = np.ones((120, 200))
    canvas[5:89, 100:184] = 1.0 - np.kron(d, np.ones((3, 3)))
    out = to_mnist(canvas).astype(np.float64)
    rows = np.flatnonzero(out.max(axis=1) > 0)
    cols = np.flatnonzero(out.max(axis=0) > 0)
    assert rows[-1] - rows[0] + 1 == BOX  # the longer side fills the 20-pixel box
    assert cols[-1] - cols[0] + 1 < BOX   # aspect ratio kept
    ys, xs = np.mgrid[0:FIELD, 0:FIELD]
    assert abs((out * ys).sum() / out.sum() - CENTRE) <= 0.5
    assert abs((out * xs).sum() / out.sum() - CENTRE) <= 0.5
    assert np.abs(out - d).mean() < 0.02


def test_to_mnist_small_images_are_enlarged():
    d = _digit()[4:24:2, 7:21:2]  # a 10x7 thumbnail
    out = to_mnist(d)
    rows = np.flatnonzero(out.max(axis=1) > 0)
    assert rows[-1] - rows[0] + 1 == BOX


def test_transparent_background_is_filled_to_contrast(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    d = _digit()
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = np.round(d * 255)  # black strokes on a transparent canvas
    Image.fromarray(rgba).save(tmp_path / "t.png")
    np.testing.assert_allclose(to_mnist(read_image(tmp_path / "t.png")), d, atol=0.01)


def test_blank_image_raises():
    with pytest.raises(ImageError, match="'blank.png' shows no digit"):
        to_mnist(np.full((30, 40), 0.9), name="blank.png")


def test_demo_digits_are_small_pngs():
    names = sorted(os.listdir(DIGITS))
    assert len(names) == 10
    for name in names:
        path = os.path.join(DIGITS, name)
        assert name[0].isdigit() and name.endswith(".png")
        assert os.path.getsize(path) < 1000
        img = to_mnist(read_image(path))
        assert img.max() == pytest.approx(1.0, abs=0.05)
