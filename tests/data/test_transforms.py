"""Batch-wise transforms against exact formulas, per-image NumPy references and PyTorch."""
from __future__ import annotations

import math

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.data import transforms as T

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def _digits(n=6, h=28, w=28, seed=0):
    """Blobby uint8 test images with structure in every direction."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((n, h, w), np.float64)
    for k in range(n):
        for _ in range(3):
            cy, cx = rng.uniform(4, h - 4), rng.uniform(4, w - 4)
            out[k] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(4, 20))
    return np.clip(out * 255, 0, 255).astype(np.uint8)


# -- ToTensor, Normalize, Pad, Compose ---------------------------------------------------------
def test_to_tensor():
    x = _digits(4)
    t = T.ToTensor()(x)
    assert isinstance(t, dg.Tensor) and t.shape == (4, 1, 28, 28) and t.dtype == np.float32
    np.testing.assert_array_equal(t.numpy()[:, 0], x.astype(np.float32) / np.float32(255))
    assert t.numpy().max() <= 1.0 and t.numpy().min() >= 0.0
    f = T.ToTensor()(np.ones((2, 3, 5, 5)))  # 4-D float: kept as (N, C, H, W), float32
    assert f.shape == (2, 3, 5, 5) and f.dtype == np.float32
    with pytest.raises(ValueError, match=r"ToTensor: expected a batch.*got shape \(28, 28\)"):
        T.ToTensor()(x[0])


@requires_torch
def test_to_tensor_matches_pytorch_division():
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    want = torch.from_numpy(x).float().div(255).numpy()
    np.testing.assert_array_equal(T.ToTensor()(x).numpy()[:, 0], want)


def test_normalize_exact():
    rng = np.random.default_rng(0)
    x = rng.random((5, 3, 4, 4), dtype=np.float32)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    out = T.Normalize(mean, std)(x)
    m32 = np.array(mean, np.float32)[:, None, None]
    s32 = np.array(std, np.float32)[:, None, None]
    want = (x - m32) / s32
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, want)
    # 3-D batch: one channel; Tensor in -> Tensor out; input untouched
    x3 = rng.random((5, 4, 4), dtype=np.float32)
    keep = x3.copy()
    out3 = T.Normalize((0.1307,), (0.3081,))(dg.tensor(x3))
    assert isinstance(out3, dg.Tensor)
    np.testing.assert_array_equal(out3.numpy(), (x3 - np.float32(0.1307)) / np.float32(0.3081))
    np.testing.assert_array_equal(x3, keep)


def test_normalize_inplace_and_errors():
    x = np.ones((2, 1, 2, 2), np.float32)
    out = T.Normalize(0.5, 0.5, inplace=True)(x)
    assert out is x and (x == 1).all()
    with pytest.raises(ValueError, match="Normalize: std evaluated to zero"):
        T.Normalize(0.0, (1.0, 0.0))
    with pytest.raises(TypeError, match="Normalize: input should be a float batch"):
        T.Normalize(0.5, 0.5)(np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"Normalize: mean has 2 values.*\(4, 3, 2, 2\)"):
        T.Normalize((0.1, 0.2), (1.0, 1.0))(np.zeros((4, 3, 2, 2), np.float32))


@requires_torch
def test_normalize_matches_pytorch():
    rng = np.random.default_rng(1)
    x = rng.random((8, 3, 5, 5), dtype=np.float32)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    tx = torch.from_numpy(x.copy())
    want = tx.sub(torch.tensor(mean).view(3, 1, 1)).div(torch.tensor(std).view(3, 1, 1))
    np.testing.assert_array_equal(T.Normalize(mean, std)(x), want.numpy())


@pytest.mark.parametrize("padding, lt_rb", [(2, (2, 2, 2, 2)), ((1, 3), (1, 3, 1, 3)),
                                            ((1, 2, 3, 4), (1, 2, 3, 4))])
def test_pad_constant_exact(padding, lt_rb):
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    out = T.Pad(padding, fill=-1.0)(x)
    left, top, right, bottom = lt_rb
    want = np.pad(x, ((0, 0), (top, bottom), (left, right)), constant_values=-1.0)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("mode", ["edge", "reflect", "symmetric"])
def test_pad_modes(mode):
    x = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
    out = T.Pad((1, 2), padding_mode=mode)(dg.tensor(x))
    np.testing.assert_array_equal(out.numpy(),
                                  np.pad(x, ((0, 0), (0, 0), (2, 2), (1, 1)), mode=mode))
    if torch is not None and mode != "symmetric":
        tmode = {"edge": "replicate", "reflect": "reflect"}[mode]
        want = F.pad(torch.from_numpy(x), (1, 1, 2, 2), mode=tmode).numpy()
        np.testing.assert_array_equal(out.numpy(), want)


def test_pad_per_channel_fill_and_errors():
    out = T.Pad(1, fill=(1.0, 2.0))(np.zeros((1, 2, 2, 2), np.float32))
    assert out[0, 0, 0, 0] == 1.0 and out[0, 1, 0, 0] == 2.0 and out[0, 1, 1, 1] == 0.0
    with pytest.raises(ValueError, match="Pad: padding must be"):
        T.Pad((1, 2, 3))
    with pytest.raises(ValueError, match="Pad: padding_mode"):
        T.Pad(1, padding_mode="wrap")


def test_compose_and_lambda():
    tf = T.Compose([T.ToTensor(), T.Pad(2), T.Normalize((0.5,), (0.5,)),
                    T.Lambda(lambda t: t * 2)])
    out = tf(np.zeros((3, 28, 28), np.uint8))
    assert out.shape == (3, 1, 32, 32)
    np.testing.assert_array_equal(out.numpy(), np.full((3, 1, 32, 32), -2.0, np.float32))
    assert "Pad(padding=2" in repr(tf)


# -- crops and flips ---------------------------------------------------------------------------
def test_random_crop_matches_per_image_reference():
    x = _digits(5, 12, 10)
    g = dg.Generator().manual_seed(4)
    out = T.RandomCrop((6, 7), generator=g)(x)
    rng = np.random.Generator(np.random.PCG64(4))
    tops = rng.integers(0, 12 - 6 + 1, size=5)
    lefts = rng.integers(0, 10 - 7 + 1, size=5)
    for k in range(5):
        np.testing.assert_array_equal(out[k], x[k, tops[k]:tops[k] + 6, lefts[k]:lefts[k] + 7])


def test_random_crop_with_padding_on_nchw():
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    out = T.RandomCrop(4, padding=2, generator=dg.Generator().manual_seed(0))(x)
    assert out.shape == (2, 3, 4, 4)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for k in range(2):  # every crop is some window of the padded image, all channels alike
        found = any(np.array_equal(out[k], padded[k, :, i:i + 4, j:j + 4])
                    for i in range(5) for j in range(5))
        assert found
    with pytest.raises(ValueError, match="RandomCrop: required crop size"):
        T.RandomCrop(5)(x)
    assert T.RandomCrop(6, pad_if_needed=True)(x).shape == (2, 3, 6, 6)


def test_center_crop_and_flips():
    x = np.arange(2 * 5 * 6).reshape(2, 5, 6).astype(np.float32)
    np.testing.assert_array_equal(T.CenterCrop(3)(x), x[:, 1:4, 2:5])
    flipped = T.RandomHorizontalFlip(p=1.0)(x)
    np.testing.assert_array_equal(flipped, x[:, :, ::-1])
    np.testing.assert_array_equal(T.RandomVerticalFlip(p=1.0)(x), x[:, ::-1, :])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=0.0)(x), x)


# -- affine ------------------------------------------------------------------------------------
def _forward_matrix(angle, tx, ty, scale, shx, shy, w, h):
    """3x3 forward map in pixel coordinates, composed from elementary matrices:
    T(t) C R(angle) S(scale) SHy(shy) SHx(shx) C^-1, centre (w/2, h/2)."""
    a, sx, sy = math.radians(angle), math.radians(shx), math.radians(shy)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    sc = np.diag([scale, scale, 1.0])
    shear_y = np.array([[1, 0, 0], [-math.tan(sy), 1, 0], [0, 0, 1]])
    shear_x = np.array([[1, -math.tan(sx), 0], [0, 1, 0], [0, 0, 1]])
    c = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1]])
    c_inv = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]])
    t = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    return t @ c @ rot @ sc @ shear_y @ shear_x @ c_inv


def _reference_affine(img, params, interpolation, fill):
    """One image (H, W), one output pixel at a time: invert the forward map, sample."""
    h, w = img.shape
    inv = np.linalg.inv(_forward_matrix(*params, w, h))
    out = np.empty((h, w), np.float64)
    for i in range(h):
        for j in range(w):
            sx, sy, _ = inv @ np.array([j + 0.5, i + 0.5, 1.0])
            x, y = sx - 0.5, sy - 0.5  # pixel centres sit at integer + 0.5
            if interpolation == "nearest":
                xi, yi = int(np.rint(x)), int(np.rint(y))
                out[i, j] = img[yi, xi] if 0 <= xi < w and 0 <= yi < h else fill
                continue
            x0, y0 = math.floor(x), math.floor(y)
            acc, inside = 0.0, 0.0
            for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                    if 0 <= xx < w and 0 <= yy < h:
                        acc += wy * wx * img[yy, xx]
                        inside += wy * wx
            # torchvision blends the zero-padded sample with fill by the in-image weight
            out[i, j] = acc * inside + (1 - inside) * fill
    return out


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("fill", [0.0, 0.25])
def test_random_affine_matches_per_image_reference(interpolation, fill):
    x = _digits(4, 14, 12).astype(np.float64) / 255
    aug = T.RandomAffine(degrees=30, translate=(0.2, 0.2), scale=(0.7, 1.3),
                         shear=(-15, 15, -10, 10), interpolation=interpolation, fill=fill,
                         generator=dg.Generator().manual_seed(2))
    out = aug(x)
    p = aug.sample_params(4, 14, 12, generator=dg.Generator().manual_seed(2))
    assert np.all(p["translate_x"] == np.rint(p["translate_x"]))  # whole-pixel shifts
    for k in range(4):
        params = (p["angle"][k], p["translate_x"][k], p["translate_y"][k], p["scale"][k],
                  p["shear_x"][k], p["shear_y"][k])
        want = _reference_affine(x[k], params, interpolation, fill)
        if interpolation == "bilinear":
            np.testing.assert_allclose(out[k], want, atol=1e-12)
        else:
            assert np.mean(out[k] != want) < 0.01  # only exact rounding ties may differ


def test_random_affine_zero_ranges_is_identity():
    x = _digits(5)
    for interp in ("nearest", "bilinear"):
        aug = T.RandomAffine(0, translate=(0, 0), scale=(1, 1), shear=0, interpolation=interp)
        xf = T.ToTensor()(x)
        np.testing.assert_array_equal(aug(xf).numpy(), xf.numpy())
        np.testing.assert_array_equal(aug(x), x)  # uint8 in, uint8 out


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_integer_translation_shifts_exactly(interpolation):
    x = _digits(3).astype(np.float32)
    out = T.affine(x, angle=0.0, translate=(3, -2), scale=1.0, shear=0.0,
                   interpolation=interpolation, fill=-1.0)
    want = np.full_like(x, -1.0)
    want[:, 0:26, 3:28] = x[:, 2:28, 0:25]  # content moves right by 3 and up by 2
    np.testing.assert_array_equal(out, want)


def test_per_image_parameters_and_rotation_direction():
    x = np.zeros((2, 1, 28, 28), np.float32)
    x[:, 0, 2:6, 12:16] = 1.0  # a blob above the centre
    out = T.affine(x, angle=np.array([90.0, -90.0]), translate=(0, 0), scale=1.0, shear=0.0)
    # positive angles turn clockwise on screen, as torchvision's functional.affine
    np.testing.assert_array_equal(out[0], np.rot90(x[0], k=-1, axes=(1, 2)))
    np.testing.assert_array_equal(out[1], np.rot90(x[1], k=1, axes=(1, 2)))


def test_affine_scale_and_center_and_errors():
    x = np.zeros((1, 8, 8), np.float32)
    x[0, 3:5, 3:5] = 1.0
    out = T.affine(x, 0.0, (0, 0), 2.0, 0.0)  # zoom about the centre
    np.testing.assert_array_equal(out[0, 2:6, 2:6], np.ones((4, 4)))
    assert out.sum() == 16
    with pytest.raises(ValueError, match="affine: scale must be positive"):
        T.affine(x, 0.0, (0, 0), 0.0, 0.0)
    with pytest.raises(ValueError, match="affine: interpolation"):
        T.affine(x, 0.0, (0, 0), 1.0, 0.0, interpolation="bicubic")
    with pytest.raises(ValueError, match=r"affine: angle must be a number or one value per image"):
        T.affine(x, np.zeros(3), (0, 0), 1.0, 0.0)
    with pytest.raises(ValueError, match="RandomAffine: if degrees is a single number"):
        T.RandomAffine(-5)
    with pytest.raises(ValueError, match="RandomAffine: translate"):
        T.RandomAffine(0, translate=(0.5, 1.5))


def test_random_affine_reproducible_and_per_image():
    x = T.ToTensor()(_digits(8))
    T.RandomAffine(20)  # construction draws nothing
    dg.manual_seed(5)
    a = T.RandomAffine(20, translate=(0.1, 0.1))(x).numpy()
    dg.manual_seed(5)
    b = T.RandomAffine(20, translate=(0.1, 0.1))(x).numpy()
    np.testing.assert_array_equal(a, b)
    p = T.RandomAffine(20).sample_params(8, 28, 28)
    assert len(np.unique(p["angle"])) == 8  # one draw per image


def _torch_affine(x, m, mode, fill):
    """torchvision's tensor affine, written with torch ops: grid from the (N, 2, 3) inverse
    maps in centred pixel coordinates, grid_sample, and a mask channel for the fill."""
    n, c, h, w = x.shape
    xs = torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, w, dtype=torch.float64)
    ys = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, h, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    base = torch.stack([gx, gy, torch.ones(h, w, dtype=torch.float64)], -1)
    theta = torch.from_numpy(m)
    grid = torch.einsum("hwk,njk->nhwj", base, theta) / torch.tensor([0.5 * w, 0.5 * h],
                                                                     dtype=torch.float64)
    img = torch.cat([torch.from_numpy(x), torch.ones(n, 1, h, w, dtype=torch.float64)], 1)
    out = F.grid_sample(img, grid, mode=mode, padding_mode="zeros", align_corners=False)
    res, mask = out[:, :-1], out[:, -1:].expand(n, c, h, w)
    if mode == "nearest":
        res = torch.where(mask < 0.5, torch.full_like(res, fill), res)
    else:
        res = res * mask + (1.0 - mask) * fill
    return res.numpy()


@requires_torch
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_affine_matches_torch_grid_sample(interpolation):
    x = np.repeat(_digits(6, 20, 24)[:, None], 2, axis=1).astype(np.float64) / 255
    x[:, 1] = 1 - x[:, 1]  # two different channels
    aug = T.RandomAffine(degrees=25, translate=(0.15, 0.1), scale=(0.8, 1.2), shear=12,
                         interpolation=interpolation, fill=0.5)
    p = aug.sample_params(6, 20, 24, generator=dg.Generator().manual_seed(9))
    out = T.affine(x, p["angle"], (p["translate_x"], p["translate_y"]), p["scale"],
                   (p["shear_x"], p["shear_y"]), interpolation, 0.5)
    from deepgrad.data.transforms import _inverse_affine_matrices

    m = _inverse_affine_matrices(p["angle"], p["translate_x"], p["translate_y"], p["scale"],
                                 p["shear_x"], p["shear_y"], 0.0, 0.0)
    want = _torch_affine(x, m, interpolation, 0.5)
    if interpolation == "bilinear":
        np.testing.assert_allclose(out, want, atol=1e-9)
    else:
        assert np.mean(out != want) < 0.005


def test_affine_speed_smoke():
    """A batch of 256 digits goes through in one vectorised pass (loose bound for slow CI)."""
    import time

    x = T.ToTensor()(np.repeat(_digits(8), 32, axis=0))
    aug = T.RandomAffine(10, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10,
                         interpolation="bilinear")
    aug(x)
    t = time.perf_counter()
    aug(x)
    assert time.perf_counter() - t < 0.25


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_affine_blocks_agree_with_one_pass(monkeypatch, interpolation):
    import deepgrad.data.transforms as transforms

    x = T.ToTensor()(_digits(7)).numpy()
    aug = T.RandomAffine(20, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=5,
                         interpolation=interpolation, fill=0.3)
    p = aug.sample_params(7, 28, 28, generator=dg.Generator().manual_seed(0))
    args = (p["angle"], (p["translate_x"], p["translate_y"]), p["scale"],
            (p["shear_x"], p["shear_y"]), interpolation, 0.3)
    one = T.affine(x, *args)
    monkeypatch.setattr(transforms, "_BLOCK_PIXELS", 2 * 28 * 28)  # blocks of 2 images
    np.testing.assert_array_equal(T.affine(x, *args), one)
