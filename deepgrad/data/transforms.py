"""Image transforms that work on whole batches at once.

Every transform takes a batch, ``(N, H, W)`` or ``(N, C, H, W)``, as an ndarray or a Tensor,
and returns the same kind (``ToTensor`` always returns a Tensor). The work is a handful of
NumPy calls per batch, never a Python loop over images; random transforms draw one set of
parameters per image from a ``deepgrad.Generator`` (default: the global one).

A dataset applies its transform to the batch it gathers (see ``deepgrad.datasets.MNIST``), so a
3-D input means a batch of single-channel images, not one ``(C, H, W)`` image.

Example:
    >>> transform = Compose([ToTensor(), RandomAffine(10, translate=(0.1, 0.1)),
    ...                      Normalize((0.1307,), (0.3081,))])
    >>> x = transform(images_uint8)        # (64, 28, 28) uint8 -> (64, 1, 28, 28) float32
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence

import numpy as np

from ..random import Generator, _generator
from ..tensor import Tensor, _make

__all__ = ["Compose", "ToTensor", "PILToTensor", "ConvertImageDtype", "Lambda", "Normalize",
           "Pad", "CenterCrop", "RandomCrop", "RandomHorizontalFlip", "RandomVerticalFlip",
           "RandomAffine", "affine", "pad"]


def _unwrap(op: str, img) -> tuple[np.ndarray, bool]:
    if isinstance(img, Tensor):
        arr, was_tensor = img.data, True
    elif isinstance(img, np.ndarray):
        arr, was_tensor = img, False
    else:
        raise TypeError(f"{op}: expected an ndarray or Tensor batch, got {type(img).__name__}")
    if arr.ndim not in (3, 4):
        raise ValueError(
            f"{op}: expected a batch of shape (N, H, W) or (N, C, H, W), got shape {arr.shape}")
    return arr, was_tensor


def _wrap(arr: np.ndarray, was_tensor: bool):
    return _make(arr) if was_tensor else arr


def _channel_values(op: str, name: str, value, arr: np.ndarray, dtype) -> np.ndarray:
    """A scalar or per-channel sequence as an array broadcastable against ``arr``."""
    v = np.asarray(value, dtype=dtype)
    if v.ndim == 0:
        return v
    if v.ndim != 1:
        raise ValueError(f"{op}: {name} must be a number or a sequence; got shape {v.shape}")
    channels = arr.shape[1] if arr.ndim == 4 else 1
    if v.shape[0] == 1:
        return v.reshape(())
    if v.shape[0] != channels:
        raise ValueError(
            f"{op}: {name} has {v.shape[0]} values; expected 1 or one per channel ({channels}) "
            f"for input of shape {arr.shape}")
    return v.reshape(channels, 1, 1)


class Compose:
    """Apply transforms one after the other.

    Example:
        >>> Compose([ToTensor(), Normalize((0.1307,), (0.3081,))])
    """

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"{type(self).__name__}({body}\n)"


class Lambda:
    """Wrap a function of a batch as a transform."""

    def __init__(self, lambd: Callable) -> None:
        if not callable(lambd):
            raise TypeError(f"Lambda: argument should be callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ToTensor:
    """Convert a batch of images to a float32 Tensor ``(N, C, H, W)``.

    uint8 input is scaled to [0, 1] (divided by 255); a 3-D ``(N, H, W)`` batch gains a channel
    dim, giving ``(N, 1, H, W)``. Float input keeps its values and becomes float32. 4-D input is
    taken to be ``(N, C, H, W)`` already.
    """

    def __call__(self, pic) -> Tensor:
        arr, _ = _unwrap("ToTensor", pic)
        if arr.ndim == 3:
            arr = arr[:, None]
        if arr.dtype == np.uint8:
            # divide (not multiply by 1/255): the same float32 values as PyTorch's ToTensor
            return _make(np.divide(arr, np.float32(255.0), dtype=np.float32))
        if arr.dtype.kind in "iub":
            return _make(arr.astype(np.float32))
        return _make(arr.astype(np.float32, copy=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class PILToTensor:
    """Keep the dtype (uint8 stays uint8) and add a channel dim to ``(N, H, W)`` input."""

    def __call__(self, pic) -> Tensor:
        arr, _ = _unwrap("PILToTensor", pic)
        if arr.ndim == 3:
            arr = arr[:, None]
        return _make(np.ascontiguousarray(arr))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ConvertImageDtype:
    """Convert to a float dtype, scaling integer images to [0, 1] by their maximum value."""

    def __init__(self, dtype) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"ConvertImageDtype: expected a floating dtype, got {self.dtype}")

    def __call__(self, img):
        arr, was_tensor = _unwrap("ConvertImageDtype", img)
        if arr.dtype.kind in "iu":
            out = arr.astype(self.dtype)
            out /= self.dtype.type(np.iinfo(arr.dtype).max)
        else:
            out = arr.astype(self.dtype)
        return _wrap(out, was_tensor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype={self.dtype})"


class Normalize:
    """``(x - mean) / std`` per channel.

    Args:
        mean: per-channel means (or one value).
        std: per-channel standard deviations (or one value), non-zero.
        inplace: overwrite the input batch instead of allocating a new one.

    Input must be floating point; a 3-D batch counts as one channel.
    """

    def __init__(self, mean, std, inplace: bool = False) -> None:
        self.mean = tuple(np.atleast_1d(np.asarray(mean, dtype=np.float64)).tolist())
        self.std = tuple(np.atleast_1d(np.asarray(std, dtype=np.float64)).tolist())
        if any(s == 0 for s in self.std):
            raise ValueError(
                f"Normalize: std evaluated to zero, leading to division by zero; got std={std}")
        self.inplace = inplace

    def __call__(self, tensor):
        arr, was_tensor = _unwrap("Normalize", tensor)
        if arr.dtype.kind != "f":
            raise TypeError(
                f"Normalize: input should be a float batch; got dtype {arr.dtype}. "
                f"Apply ToTensor first?")
        mean = _channel_values("Normalize", "mean", self.mean, arr, arr.dtype)
        std = _channel_values("Normalize", "std", self.std, arr, arr.dtype)
        out = arr if self.inplace else np.empty_like(arr)
        np.subtract(arr, mean, out=out)
        np.divide(out, std, out=out)
        if self.inplace and was_tensor:
            tensor._version += 1
            return tensor
        return _wrap(out, was_tensor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={list(self.mean)}, std={list(self.std)})"


_PAD_MODES = {"constant": "constant", "edge": "edge", "reflect": "reflect",
              "symmetric": "symmetric"}


def _parse_padding(op: str, padding) -> tuple[int, int, int, int]:
    """PyTorch's padding forms -> (left, top, right, bottom)."""
    if isinstance(padding, numbers.Integral):
        p = int(padding)
        return p, p, p, p
    if isinstance(padding, (list, tuple)) and all(isinstance(p, numbers.Integral)
                                                  for p in padding):
        if len(padding) == 1:
            p = int(padding[0])
            return p, p, p, p
        if len(padding) == 2:
            return int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1])
        if len(padding) == 4:
            return int(padding[0]), int(padding[1]), int(padding[2]), int(padding[3])
    raise ValueError(
        f"{op}: padding must be an int or a sequence of 1, 2 or 4 ints; got {padding!r}")


def pad(img, padding, fill: float | Sequence[float] = 0, padding_mode: str = "constant"):
    """Pad the last two dims of a batch; ``padding`` is an int, (lr, tb) or (l, t, r, b)."""
    arr, was_tensor = _unwrap("pad", img)
    left, top, right, bottom = _parse_padding("pad", padding)
    if min(left, top, right, bottom) < 0:
        raise ValueError(f"pad: negative padding is not supported; got {padding!r}")
    if padding_mode not in _PAD_MODES:
        raise ValueError(
            f"pad: padding_mode should be one of {sorted(_PAD_MODES)}; got {padding_mode!r}")
    width = [(0, 0)] * (arr.ndim - 2) + [(top, bottom), (left, right)]
    if padding_mode != "constant":
        mode: Any = padding_mode
        return _wrap(np.pad(arr, width, mode=mode), was_tensor)
    h, w = arr.shape[-2:]
    out = np.empty(arr.shape[:-2] + (h + top + bottom, w + left + right), dtype=arr.dtype)
    fill_arr = _channel_values("pad", "fill", fill, arr, arr.dtype)
    out[...] = fill_arr
    out[..., top:top + h, left:left + w] = arr
    return _wrap(out, was_tensor)


class Pad:
    """Pad each image's borders.

    Args:
        padding: int (all sides), (left/right, top/bottom) or (left, top, right, bottom).
        fill: value for ``padding_mode='constant'`` (a number or one per channel).
        padding_mode: 'constant', 'edge', 'reflect' or 'symmetric'.
    """

    def __init__(self, padding, fill: float | Sequence[float] = 0,
                 padding_mode: str = "constant") -> None:
        _parse_padding("Pad", padding)
        if padding_mode not in _PAD_MODES:
            raise ValueError(
                f"Pad: padding_mode should be one of {sorted(_PAD_MODES)}; got {padding_mode!r}")
        self.padding = padding
        self.fill = fill
        self.padding_mode = padding_mode

    def __call__(self, img):
        return pad(img, self.padding, self.fill, self.padding_mode)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(padding={self.padding}, fill={self.fill}, "
                f"padding_mode={self.padding_mode})")


def _size_pair(op: str, size) -> tuple[int, int]:
    if isinstance(size, numbers.Integral):
        return int(size), int(size)
    if isinstance(size, (list, tuple)) and len(size) == 1:
        return int(size[0]), int(size[0])
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    raise ValueError(f"{op}: size must be an int or a pair (h, w); got {size!r}")


class CenterCrop:
    """Crop the centre ``size`` = (h, w) (or an int) of every image; pads with 0 if too small."""

    def __init__(self, size) -> None:
        self.size = _size_pair("CenterCrop", size)

    def __call__(self, img):
        arr, was_tensor = _unwrap("CenterCrop", img)
        th, tw = self.size
        h, w = arr.shape[-2:]
        if th > h or tw > w:
            pads = ((tw - w) // 2 if tw > w else 0, (th - h) // 2 if th > h else 0,
                    (tw - w + 1) // 2 if tw > w else 0, (th - h + 1) // 2 if th > h else 0)
            arr = pad(arr, pads)
            h, w = arr.shape[-2:]
        top = int(round((h - th) / 2.0))
        left = int(round((w - tw) / 2.0))
        return _wrap(arr[..., top:top + th, left:left + tw].copy(), was_tensor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


class RandomCrop:
    """Crop a random ``size`` window from every image (an independent offset per image).

    Args:
        size: output (h, w), or an int for a square.
        padding: optional padding applied first (forms as in ``Pad``).
        pad_if_needed: pad images smaller than ``size``.
        fill, padding_mode: as in ``Pad``.
        generator: source of randomness (default: the global generator).
    """

    def __init__(self, size, padding=None, pad_if_needed: bool = False, fill=0,
                 padding_mode: str = "constant", generator: Generator | None = None) -> None:
        self.size = _size_pair("RandomCrop", size)
        if padding is not None:
            _parse_padding("RandomCrop", padding)
        self.padding = padding
        self.pad_if_needed = pad_if_needed
        self.fill = fill
        self.padding_mode = padding_mode
        self.generator = generator

    def __call__(self, img):
        arr, was_tensor = _unwrap("RandomCrop", img)
        if self.padding is not None:
            arr = pad(arr, self.padding, self.fill, self.padding_mode)
        th, tw = self.size
        h, w = arr.shape[-2:]
        if self.pad_if_needed and (w < tw or h < th):
            arr = pad(arr, (max(tw - w, 0), max(th - h, 0)), self.fill, self.padding_mode)
            h, w = arr.shape[-2:]
        if h < th or w < tw:
            raise ValueError(
                f"RandomCrop: required crop size {(th, tw)} is larger than the input image "
                f"size {(h, w)}; use padding or pad_if_needed=True")
        n = arr.shape[0]
        rng = _generator(self.generator)
        tops = rng.integers(0, h - th + 1, size=n)
        lefts = rng.integers(0, w - tw + 1, size=n)
        if h == th and w == tw:
            return _wrap(arr.copy(), was_tensor)
        # one gather: per-image row and column index vectors, broadcast over the batch
        rows = tops[:, None] + np.arange(th)
        cols = lefts[:, None] + np.arange(tw)
        batch = np.arange(n)
        if arr.ndim == 3:
            out = arr[batch[:, None, None], rows[:, :, None], cols[:, None, :]]
        else:
            out = arr[batch[:, None, None, None], np.arange(arr.shape[1])[None, :, None, None],
                      rows[:, None, :, None], cols[:, None, None, :]]
        return _wrap(out, was_tensor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    _axis = -1

    def __init__(self, p: float = 0.5, generator: Generator | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1]; got {p}")
        self.p = p
        self.generator = generator

    def __call__(self, img):
        arr, was_tensor = _unwrap(type(self).__name__, img)
        flip = _generator(self.generator).random(arr.shape[0]) < self.p
        out = arr.copy()
        out[flip] = np.flip(arr[flip], axis=self._axis)
        return _wrap(out, was_tensor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class RandomVerticalFlip(RandomHorizontalFlip):
    """Mirror each image top-bottom with probability ``p``."""

    _axis = -2


# ---------------------------------------------------------------------------------------------
# affine
# ---------------------------------------------------------------------------------------------
def _inverse_affine_matrices(angle, translate_x, translate_y, scale, shear_x, shear_y,
                             center_x, center_y) -> np.ndarray:
    """(N, 2, 3) maps from output to input coordinates, one per image, in float64.

    Coordinates are measured from the image centre (torchvision's convention). The forward map
    is M = T C RSS C^-1 with RSS = R(angle) S(scale) SHy(shear_y) SHx(shear_x); its inverse is
    written out in closed form, so there is no matrix inversion. Angles are in degrees; a
    positive angle turns the image clockwise on screen (y points down), as
    ``torchvision.transforms.functional.affine`` does.
    """
    rot = np.radians(angle)
    sx = np.radians(shear_x)
    sy = np.radians(shear_y)
    cos_sy = np.cos(sy)
    tan_sx = np.tan(sx)
    a = np.cos(rot - sy) / cos_sy
    b = -(a * tan_sx + np.sin(rot))
    c = np.sin(rot - sy) / cos_sy
    d = np.cos(rot) - c * tan_sx
    # RSS has determinant 1 before scaling, so its inverse is the adjugate over scale
    m = np.empty(np.shape(angle) + (2, 3), dtype=np.float64)
    m[..., 0, 0] = d / scale
    m[..., 0, 1] = -b / scale
    m[..., 1, 0] = -c / scale
    m[..., 1, 1] = a / scale
    ox = center_x + translate_x
    oy = center_y + translate_y
    m[..., 0, 2] = center_x - m[..., 0, 0] * ox - m[..., 0, 1] * oy
    m[..., 1, 2] = center_y - m[..., 1, 0] * ox - m[..., 1, 1] * oy
    return m


def _per_image(op: str, name: str, value, n: int) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64)
    if v.ndim == 0:
        return np.full(n, float(v))
    if v.shape != (n,):
        raise ValueError(f"{op}: {name} must be a number or one value per image ({n},); "
                         f"got shape {v.shape}")
    return v


def affine(img, angle, translate, scale, shear, interpolation: str = "nearest",
           fill: float | Sequence[float] = 0, center: Sequence[float] | None = None):
    """Apply an affine map to every image of a batch, keeping the image centre fixed.

    All images are resampled together: one (N, 2, 3) array of inverse maps gives, by
    broadcasting, the source position of every output pixel, and one gather per
    interpolation corner reads them.

    Args:
        img: batch ``(N, H, W)`` or ``(N, C, H, W)``.
        angle: rotation in degrees, clockwise on screen; a number or one per image.
        translate: (tx, ty) in pixels, numbers or one array of N values each.
        scale: zoom factor (> 0), a number or one per image.
        shear: (shear_x, shear_y) in degrees, or one number for shear_x.
        interpolation: 'nearest' (round half to even, as grid_sample) or 'bilinear'.
        fill: value of pixels mapped from outside the image (number or one per channel).
        center: centre of rotation (x, y) in pixels; default the image centre.
    """
    arr, was_tensor = _unwrap("affine", img)
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(
            f"affine: interpolation should be 'nearest' or 'bilinear'; got {interpolation!r}")
    n = arr.shape[0]
    h, w = arr.shape[-2:]
    if isinstance(translate, (numbers.Number, np.number)) or len(translate) != 2:
        raise ValueError(f"affine: translate must be a pair (tx, ty); got {translate!r}")
    if isinstance(shear, (numbers.Number, np.number)):
        shear = (shear, 0.0)
    if len(shear) != 2:
        raise ValueError(f"affine: shear must be a number or a pair (sx, sy); got {shear!r}")
    scale = _per_image("affine", "scale", scale, n)
    if (scale <= 0).any():
        raise ValueError(f"affine: scale must be positive; got {scale[scale <= 0][0]}")
    cx, cy = (0.0, 0.0) if center is None else (center[0] - w * 0.5, center[1] - h * 0.5)
    m = _inverse_affine_matrices(_per_image("affine", "angle", angle, n),
                                 _per_image("affine", "translate[0]", translate[0], n),
                                 _per_image("affine", "translate[1]", translate[1], n),
                                 scale,
                                 _per_image("affine", "shear[0]", shear[0], n),
                                 _per_image("affine", "shear[1]", shear[1], n), cx, cy)
    return _wrap(_warp(arr, m, interpolation, fill), was_tensor)


# Output pixels resampled per block. The whole batch is one vectorised computation, done in
# blocks of about this many pixels so that the dozen temporaries stay in cache and below the
# allocator's trim threshold; one 256-image pass otherwise spends most of its time in page faults.
_BLOCK_PIXELS = 1 << 16


def _warp(arr: np.ndarray, m: np.ndarray, interpolation: str, fill) -> np.ndarray:
    """Resample ``arr`` (N, [C,] H, W) at ``m`` (N, 2, 3) applied to each output pixel."""
    n = arr.shape[0]
    h, w = arr.shape[-2:]
    block = max(1, _BLOCK_PIXELS // max(1, h * w))
    if n <= block:
        return _warp_block(arr, m, interpolation, fill)
    out = np.empty(arr.shape, dtype=arr.dtype)
    for start in range(0, n, block):
        stop = start + block
        out[start:stop] = _warp_block(arr[start:stop], m[start:stop], interpolation, fill)
    return out


def _warp_block(arr: np.ndarray, m: np.ndarray, interpolation: str, fill) -> np.ndarray:
    n = arr.shape[0]
    h, w = arr.shape[-2:]
    squeeze = arr.ndim == 3
    x4 = arr[:, None] if squeeze else arr
    c = x4.shape[1]
    work = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float32)

    # Source pixel index = M (output pixel centre, measured from the image centre), shifted
    # back to indices. Folding the shifts into the offset makes x = m00*j + m01*i + off, which
    # is exact for identity maps and integer translations.
    ox = 0.5 - w * 0.5
    oy = 0.5 - h * 0.5
    off_x = m[:, 0, 0] * ox + m[:, 0, 1] * oy + m[:, 0, 2] - ox
    off_y = m[:, 1, 0] * ox + m[:, 1, 1] * oy + m[:, 1, 2] - oy
    jj = np.arange(w, dtype=work)[None, None, :]
    ii = np.arange(h, dtype=work)[None, :, None]
    coef = m[:, :, :2].astype(work)
    src_x = coef[:, 0, 0, None, None] * jj + coef[:, 0, 1, None, None] * ii \
        + off_x.astype(work)[:, None, None]
    src_y = coef[:, 1, 0, None, None] * jj + coef[:, 1, 1, None, None] * ii \
        + off_y.astype(work)[:, None, None]

    # Pad by one pixel so that clipping source indices to [-1, W] replaces all bounds checks.
    # Nearest: the border holds `fill`, so an outside source reads it. Bilinear: the border is
    # 0 and `fill` is blended in afterwards with the in-image weight, as torchvision does.
    fill_vals = _channel_values("affine", "fill", fill, x4, work)
    padded = np.empty((n, c, h + 2, w + 2), dtype=work)
    padded[...] = fill_vals if interpolation == "nearest" else 0
    padded[:, :, 1:-1, 1:-1] = x4
    flat = padded.reshape(-1)
    wp = w + 2
    # flat index = image offset + (row + 1) * wp + (col + 1); channels add c * plane
    plane = (h + 2) * wp
    img_off = (np.arange(n, dtype=np.intp) * (c * plane)).reshape(n, 1, 1) + (wp + 1)
    chan_off = None if c == 1 else (np.arange(c, dtype=np.intp) * plane).reshape(1, c, 1, 1)

    def gather(index: np.ndarray) -> np.ndarray:
        if chan_off is None:
            return flat.take(index)[:, None]
        return flat.take(index[:, None] + chan_off)

    if interpolation == "nearest":
        xi = np.clip(np.rint(src_x), -1, w).astype(np.intp)
        yi = np.clip(np.rint(src_y), -1, h).astype(np.intp)
        yi *= wp
        yi += img_off
        yi += xi
        out = gather(yi)
    else:
        x0f = np.floor(src_x)
        y0f = np.floor(src_y)
        fx = src_x - x0f
        fy = src_y - y0f
        x0 = np.clip(x0f, -1, w).astype(np.intp)
        x1 = np.clip(x0f + 1, -1, w).astype(np.intp)
        y0 = np.clip(y0f, -1, h).astype(np.intp)
        y1 = np.clip(y0f + 1, -1, h).astype(np.intp)
        y0 *= wp
        y0 += img_off
        y1 *= wp
        y1 += img_off
        if chan_off is not None:
            fx = fx[:, None]
            fy = fy[:, None]
        # lerp along x on the two rows, then along y; squeeze the channel axis for C == 1
        top = gather(y0 + x0)
        right = gather(y0 + x1)
        bot = gather(y1 + x0)
        bot_right = gather(y1 + x1)
        if chan_off is None:
            top, right, bot, bot_right = top[:, 0], right[:, 0], bot[:, 0], bot_right[:, 0]
        right -= top
        right *= fx
        top += right
        bot_right -= bot
        bot_right *= fx
        bot += bot_right
        bot -= top
        bot *= fy
        top += bot
        out = top if chan_off is not None else top[:, None]
        # torchvision samples a channel of ones alongside the image and returns
        # img * mask + fill * (1 - mask); the sampled ones are the in-image corner weights,
        # which factor into an x part and a y part
        x0_in = (x0f >= 0) & (x0f <= w - 1)
        x1_in = (x0f >= -1) & (x0f <= w - 2)
        y0_in = (y0f >= 0) & (y0f <= h - 1)
        y1_in = (y0f >= -1) & (y0f <= h - 2)
        fx = fx.reshape(n, h, w)
        fy = fy.reshape(n, h, w)
        mask = (1 - fx) * x0_in + fx * x1_in
        mask *= (1 - fy) * y0_in + fy * y1_in
        if not (mask == 1).all():
            mask = mask[:, None]
            out *= mask
            if np.any(fill_vals != 0):
                out += (1 - mask) * fill_vals
    if arr.dtype.kind != "f":
        info = np.iinfo(arr.dtype) if arr.dtype.kind in "iu" else None
        if info is not None:
            out = np.clip(np.rint(out), info.min, info.max)
        out = out.astype(arr.dtype)
    return out[:, 0] if squeeze else out


def _range(op: str, name: str, value, center: float = 0.0, length: int = 2) -> tuple:
    if isinstance(value, (int, float, np.integer, np.floating)):
        if value < 0:
            raise ValueError(f"{op}: if {name} is a single number, it must be non-negative; "
                             f"got {value}")
        return (center - float(value), center + float(value))
    value = tuple(float(v) for v in value)
    if len(value) != length:
        raise ValueError(f"{op}: {name} should be a number or a sequence of {length} numbers; "
                         f"got {value!r}")
    return value


class RandomAffine:
    """Random rotation, translation, scale and shear, drawn independently for every image.

    Args:
        degrees: rotation range (min, max) in degrees, or d for (-d, d); 0 disables it.
        translate: (a, b) maximum fractions of width and height; shifts are drawn uniformly
            in (-a*W, a*W) and (-b*H, b*H) and rounded to whole pixels (as torchvision does).
        scale: (lo, hi) zoom range; default 1.
        shear: s for an x-shear in (-s, s); (lo, hi) for an x-shear; (xlo, xhi, ylo, yhi) for
            both; in degrees.
        interpolation: 'nearest' (torchvision's default) or 'bilinear'.
        fill: value of pixels mapped from outside the image.
        center: centre (x, y) of the map in pixels; default the image centre.
        generator: source of randomness (default: the global generator).

    Per batch, parameters are drawn as vectors in a fixed order (angle, tx, ty, scale, shear_x,
    shear_y; only those enabled), then ``affine`` resamples the whole batch in one go.

    Example:
        >>> aug = RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))
        >>> x = aug(batch)            # (N, 1, 28, 28) float32
    """

    def __init__(self, degrees, translate=None, scale=None, shear=None,
                 interpolation: str = "nearest", fill: float | Sequence[float] = 0,
                 center: Sequence[float] | None = None,
                 generator: Generator | None = None) -> None:
        self.degrees = _range("RandomAffine", "degrees", degrees)
        if translate is not None:
            translate = tuple(float(t) for t in translate)
            if len(translate) != 2 or not all(0.0 <= t <= 1.0 for t in translate):
                raise ValueError(f"RandomAffine: translate should be a pair of values between "
                                 f"0 and 1; got {translate!r}")
        self.translate = translate
        if scale is not None:
            scale = tuple(float(s) for s in scale)
            if len(scale) != 2 or not all(s > 0 for s in scale):
                raise ValueError(
                    f"RandomAffine: scale should be a pair of positive values; got {scale!r}")
        self.scale = scale
        if shear is not None:
            if isinstance(shear, numbers.Number):
                shear = _range("RandomAffine", "shear", shear)
            else:
                shear = tuple(float(s) for s in shear)
                if len(shear) not in (2, 4):
                    raise ValueError(f"RandomAffine: shear should be a number or a sequence "
                                     f"of 2 or 4 numbers; got {shear!r}")
        self.shear = shear
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"RandomAffine: interpolation should be 'nearest' or 'bilinear'; "
                             f"got {interpolation!r}")
        self.interpolation = interpolation
        self.fill = fill
        self.center = center
        self.generator = generator

    def sample_params(self, n: int, height: int, width: int,
                      generator: Generator | None = None) -> dict[str, np.ndarray]:
        """Draw the parameters for ``n`` images: arrays angle, translate_x, translate_y, scale,
        shear_x, shear_y (each of shape (n,))."""
        rng = _generator(generator if generator is not None else self.generator)
        lo, hi = self.degrees
        angle = rng.uniform(lo, hi, size=n) if lo != hi else np.full(n, lo)
        tx = np.zeros(n)
        ty = np.zeros(n)
        if self.translate is not None:
            max_dx = self.translate[0] * width
            max_dy = self.translate[1] * height
            tx = np.rint(rng.uniform(-max_dx, max_dx, size=n))
            ty = np.rint(rng.uniform(-max_dy, max_dy, size=n))
        scale = np.ones(n)
        if self.scale is not None:
            scale = rng.uniform(self.scale[0], self.scale[1], size=n)
        shx = np.zeros(n)
        shy = np.zeros(n)
        if self.shear is not None:
            shx = rng.uniform(self.shear[0], self.shear[1], size=n)
            if len(self.shear) == 4:
                shy = rng.uniform(self.shear[2], self.shear[3], size=n)
        return {"angle": angle, "translate_x": tx, "translate_y": ty, "scale": scale,
                "shear_x": shx, "shear_y": shy}

    def __call__(self, img):
        arr, was_tensor = _unwrap("RandomAffine", img)
        h, w = arr.shape[-2:]
        p = self.sample_params(arr.shape[0], h, w)
        out = affine(arr, p["angle"], (p["translate_x"], p["translate_y"]), p["scale"],
                     (p["shear_x"], p["shear_y"]), self.interpolation, self.fill, self.center)
        return _wrap(out, was_tensor)

    def __repr__(self) -> str:
        parts = [f"degrees={list(self.degrees)}"]
        if self.translate is not None:
            parts.append(f"translate={self.translate}")
        if self.scale is not None:
            parts.append(f"scale={self.scale}")
        if self.shear is not None:
            parts.append(f"shear={list(self.shear)}")
        if self.interpolation != "nearest":
            parts.append(f"interpolation={self.interpolation}")
        if self.fill != 0:
            parts.append(f"fill={self.fill}")
        return f"{type(self).__name__}({', '.join(parts)})"
