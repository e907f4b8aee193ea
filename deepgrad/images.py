"""Reading digit images and preparing them the way MNIST was made, for ``deepgrad predict``.

MNIST's digits were scanned as dark ink on light paper, size-normalised to fit a 20x20 box
keeping their aspect ratio (anti-aliased, hence the grey levels), then placed in a 28x28 field
with their centre of mass at the field's centre, white on black. ``to_mnist`` does the same to an
image of any size, so that a photo or a drawing of a digit looks to a model like its training
data.

Images are read with Pillow when it is installed (any format it knows). Without Pillow, PNG files
are decoded here (8-bit or 16-bit, grey, grey+alpha, RGB, RGBA or palette, not interlaced), which
covers the usual exports of drawing programs; ``write_png`` writes 8-bit grey PNGs the same way.
"""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np

__all__ = ["ImageError", "read_image", "write_png", "to_mnist"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# channels per colour type: 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# ITU-R 601-2 luma, the weights Pillow's convert("L") uses
_LUMA = np.array([0.299, 0.587, 0.114], np.float64)

FIELD = 28        # MNIST's image size
BOX = 20          # the box the digit is scaled into
CENTRE = 14.0     # where MNIST's centres of mass lie (measured: mean 14.00, std 0.29)


class ImageError(ValueError):
    """An image file that cannot be read or holds no digit."""


# -- reading -----------------------------------------------------------------------------------
def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as grey levels in ``[0, 1]``, shape ``(H, W)``, float64.

    Colour images are converted to luma; a transparent background is filled with the colour
    that contrasts with the ink, so that strokes drawn on a transparent canvas stay visible.

    Raises:
        ImageError: the file is missing, not an image, or in a format that cannot be decoded.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageError(f"read_image: cannot read {path!r}: the file does not exist")
    try:
        from PIL import Image  # noqa: F401
    except ImportError:
        rgba = _read_png_without_pillow(path)
    else:
        rgba = _read_with_pillow(path)
    return _to_grey(rgba)


def _read_with_pillow(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, np.float64)
                top = 65535.0 if arr.max() > 255 else 255.0
                return (arr / top)[..., None]
            img: Image.Image = im
            if im.mode not in ("L", "LA", "RGB", "RGBA"):
                img = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info
                                 else "RGB")
            arr = np.asarray(img, np.float64) / 255.0
    except UnidentifiedImageError:
        raise ImageError(f"read_image: cannot read {path!r}: not an image file") from None
    except (OSError, ValueError, SyntaxError, struct.error, zlib.error) as e:
        raise ImageError(f"read_image: cannot read {path!r}: {e}") from None
    return arr if arr.ndim == 3 else arr[..., None]


def _to_grey(img: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` with C in 1..4 (grey, grey+alpha, RGB, RGBA) -> ``(H, W)`` grey levels."""
    c = img.shape[2]
    if c in (2, 4):
        colour, alpha = img[..., :-1], img[..., -1]
    else:
        colour, alpha = img, None
    grey = colour[..., 0] if colour.shape[2] == 1 else colour @ _LUMA
    if alpha is not None and alpha.min() < 1.0:
        weight = alpha.sum()
        ink_level = (grey * alpha).sum() / weight if weight > 0 else 0.0
        background = 1.0 if ink_level < 0.5 else 0.0
        grey = grey * alpha + background * (1.0 - alpha)
    return np.clip(grey, 0.0, 1.0)


def _read_png_without_pillow(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(_PNG_SIGNATURE):
        raise ImageError(
            f"read_image: cannot read {path!r}: not a PNG file, and reading other formats "
            "needs Pillow: pip install 'deepgrad[train]'")
    try:
        return _decode_png(raw)
    except ImageError as e:
        raise ImageError(f"read_image: cannot read {path!r}: {e}") from None
    except (struct.error, zlib.error, ValueError, IndexError) as e:
        raise ImageError(f"read_image: cannot read {path!r}: corrupt PNG ({e})") from None


def _decode_png(raw: bytes) -> np.ndarray:
    pos = len(_PNG_SIGNATURE)
    header = None
    palette = None
    transparency = None
    data = []
    while pos < len(raw):
        length, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        body = raw[pos + 8:pos + 8 + length]
        if len(body) != length:
            raise ImageError("truncated PNG")
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"tRNS":
            transparency = body
        elif kind == b"IDAT":
            data.append(body)
        elif kind == b"IEND":
            break
    if header is None or not data:
        raise ImageError("truncated PNG (no IHDR or IDAT chunk)")
    width, height, depth, colour, _, _, interlace = header
    if colour not in _CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise ImageError(f"bad PNG header (bit depth {depth}, colour type {colour})")
    if interlace or (depth < 8 and colour not in (0, 3)):
        raise ImageError("interlaced or low-bit-depth colour PNGs need Pillow: "
                         "pip install 'deepgrad[train]'")
    channels = _CHANNELS[colour]
    bits_per_pixel = channels * depth
    stride = (width * bits_per_pixel + 7) // 8
    bpp = max(1, bits_per_pixel // 8)
    rows = _unfilter(zlib.decompress(b"".join(data)), height, stride, bpp)
    if depth == 16:
        values = rows.view(">u2").reshape(height, width, channels).astype(np.float64) / 65535.0
    elif depth == 8:
        values = rows.reshape(height, width, channels).astype(np.float64)
    else:
        bits = np.unpackbits(rows, axis=1).reshape(height, -1, depth)[:, :width]
        weights = (1 << np.arange(depth - 1, -1, -1)).astype(np.uint8)
        values = (bits * weights).sum(axis=2, dtype=np.int64)[..., None].astype(np.float64)
    if colour == 3:
        if palette is None:
            raise ImageError("palette PNG without a PLTE chunk")
        index = values[..., 0].astype(np.int64)
        rgb = palette[np.clip(index, 0, len(palette) - 1)].astype(np.float64) / 255.0
        if transparency:
            alpha = np.full(256, 255, np.uint8)
            t = np.frombuffer(transparency, np.uint8)[:256]
            alpha[:len(t)] = t
            return np.concatenate([rgb, alpha[np.clip(index, 0, 255)][..., None] / 255.0], 2)
        return rgb
    if depth <= 8:
        values /= (1 << depth) - 1
    return values


def _unfilter(stream: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo PNG's per-row filters; returns the raw scanlines, ``(height, stride)`` uint8."""
    if len(stream) < height * (stride + 1):
        raise ImageError("truncated image data")
    lines = np.frombuffer(stream, np.uint8)[:height * (stride + 1)].reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prior = np.zeros(stride, np.int64)
    for y in range(height):
        kind = int(lines[y, 0])
        line = lines[y, 1:].astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: running sum along the row, per byte position within a pixel
            cur = _running_sum(line, bpp)
        elif kind == 2:  # Up
            cur = (line + prior) & 255
        elif kind in (3, 4):  # Average and Paeth depend on the byte just decoded
            cur = np.zeros(stride, np.int64)
            for x in range(stride):
                a = cur[x - bpp] if x >= bpp else 0
                b = prior[x]
                if kind == 3:
                    pred = (a + b) >> 1
                else:
                    c = prior[x - bpp] if x >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (line[x] + pred) & 255
        else:
            raise ImageError(f"unknown PNG filter type {kind}")
        out[y] = cur
        prior = cur
    return out


def _running_sum(line: np.ndarray, bpp: int) -> np.ndarray:
    n = len(line)
    padded = np.zeros(-(-n // bpp) * bpp, np.int64)
    padded[:n] = line
    return (np.cumsum(padded.reshape(-1, bpp), axis=0).reshape(-1)[:n]) & 255


# -- writing -----------------------------------------------------------------------------------
def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write ``image`` as an 8-bit grey PNG (``(H, W)`` uint8, or floats in ``[0, 1]``) or an
    8-bit RGB one (``(H, W, 3)``)."""
    image = np.asarray(image)
    if image.dtype.kind == "f":
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0)
    image = image.astype(np.uint8)
    if image.ndim == 2:
        colour = 0
    elif image.ndim == 3 and image.shape[2] == 3:
        colour = 2
    else:
        raise ValueError(f"write_png: expected an image of shape (H, W) or (H, W, 3), got "
                         f"{image.shape}")
    height, width = image.shape[:2]
    lines = image.reshape(height, -1)
    # filter "Up" on every row but the first: digits have long vertical runs, so it packs well
    filtered = np.empty((height, lines.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[0, 0] = 0
    filtered[0, 1:] = lines[0]
    filtered[1:, 1:] = lines[1:] - lines[:-1]  # uint8 arithmetic wraps mod 256, as PNG wants

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    blob = (_PNG_SIGNATURE + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(filtered.tobytes(), 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(blob)


# -- MNIST-style normalisation -----------------------------------------------------------------
def to_mnist(grey: np.ndarray, name: str = "image") -> np.ndarray:
    """Turn a grey image of a digit into a 28x28 MNIST-style one, float32 in ``[0, 1]``.

    Steps, as MNIST was made: make the ink light on a dark background (inverting images whose
    border is light), stretch the contrast, crop to the ink, scale it to fit a 20x20 box keeping
    the aspect ratio (with anti-aliasing), and place it in a 28x28 field with its centre of mass
    at the centre.

    Raises:
        ImageError: the image holds no ink (it is blank).
    """
    grey = np.asarray(grey, np.float64)
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise ImageError(f"to_mnist: expected a 2-D grey image, got shape {grey.shape}")
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    if background > 0.5:
        grey = 1.0 - grey
        background = 1.0 - background
    top = float(grey.max())
    if top - background < 0.1:
        raise ImageError(f"{name!r} shows no digit (the image is blank or has no contrast)")
    ink = np.clip((grey - background) / (top - background), 0.0, 1.0)
    ink[ink < 0.1] = 0.0  # scanner or camera noise, not strokes
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = ink.shape
    scale = BOX / max(h, w)
    new_h = min(BOX, max(1, int(round(h * scale))))
    new_w = min(BOX, max(1, int(round(w * scale))))
    small = _resize(ink, new_h, new_w)
    field = np.zeros((FIELD, FIELD), np.float64)
    top_y = (FIELD - new_h) // 2
    left_x = (FIELD - new_w) // 2
    total = small.sum()
    if total > 0:
        cy = (small.sum(axis=1) * np.arange(new_h)).sum() / total + top_y
        cx = (small.sum(axis=0) * np.arange(new_w)).sum() / total + left_x
        top_y += int(np.clip(round(CENTRE - cy), -top_y, FIELD - new_h - top_y))
        left_x += int(np.clip(round(CENTRE - cx), -left_x, FIELD - new_w - left_x))
    field[top_y:top_y + new_h, left_x:left_x + new_w] = small
    return np.clip(field, 0.0, 1.0).astype(np.float32)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return _resample_matrix(image.shape[0], height) @ image @ _resample_matrix(
        image.shape[1], width).T


def _resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of a triangle filter widened by the reduction factor: bilinear
    when enlarging, area-like anti-aliasing when shrinking (like Pillow's BILINEAR). Every
    target pixel sees a source pixel within half a pixel, so no row of weights is empty."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    pixels = np.arange(n_in) + 0.5
    weights = np.clip(1.0 - np.abs(pixels[None, :] - centres[:, None]) / support, 0.0, None)
    sums = weights.sum(axis=1, keepdims=True)
    return weights / sums
