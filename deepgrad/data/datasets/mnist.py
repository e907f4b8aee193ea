"""MNIST: 70,000 handwritten digits (LeCun, Cortes & Burges), read from the original IDX files.

Where the files are looked for (the first folder holding the split's two files wins):
    ``root`` given:      ``root/mnist/``, ``root/MNIST/raw/`` (torchvision's layout), ``root/``
    else DEEPGRAD_DATA:  ``$DEEPGRAD_DATA/mnist/``, ``$DEEPGRAD_DATA/MNIST/raw/``
    else:                ``~/.cache/deepgrad/mnist/``, ``~/.cache/deepgrad/MNIST/raw/``
Each file may be gzipped (``.gz``) or not. ``download=True`` fetches missing files into the
first of those folders. Every file is checked: IDX magic number, dimensions, length, and the
SHA-256 of its decompressed content against the sums of the original data.

``MNIST(..., sample=True)`` (or ``MNISTSample``) reads a stratified sample that ships inside the
package: 6,000 training and 1,000 test digits, 600 and 100 per class (made by
``tools/make_mnist_sample.py``), for examples and tests that need no files.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from typing import Callable

import numpy as np

from ...tensor import Tensor, _make
from ..dataset import Dataset

__all__ = ["MNIST", "MNISTSample", "read_idx", "download_url"]

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

# IDX type code -> big-endian dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_SPLIT_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_ALL_FILES = _SPLIT_FILES[True] + _SPLIT_FILES[False]

# SHA-256 of the decompressed IDX files: the same for the original data wherever it comes from.
_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# MD5 of the gzipped files as published by the public mirrors (checked after download).
_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

# The embedded sample (tools/make_mnist_sample.py prints these; keep them in step).
_SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist_sample")
_SAMPLE_SHA256 = {
    "train-images-idx3-ubyte": "2c345952aa0c6098e497b9fbe1033820f38a3b864ca5c0148fb778ddc4456363",
    "train-labels-idx1-ubyte": "388d744ed74c243e69f86ed799c29e540b2f8dfd2becc324acf86621e754f5c4",
    "t10k-images-idx3-ubyte": "ec153744b6b34510f265604590f4d4ebecaa25475f045ab0f8bcc0a1705cb0ef",
    "t10k-labels-idx1-ubyte": "cea7f06d0b9474be7ae33a02ef8a7b7384426f4c11d9742fea96cee4d4f1a54d",
}


# ---------------------------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------------------------
def _gunzip(blob: bytes, path: str, op: str) -> bytes:
    """Decompress every gzip member of ``blob``; a cut-off stream is an error, not a short read."""
    parts = []
    data = blob
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            parts.append(d.decompress(data))
            parts.append(d.flush())
        except zlib.error as e:
            raise ValueError(
                f"{op}: '{path}' is not a valid gzip file ({e}); got {len(blob)} bytes on disk. "
                f"Delete it and download it again.") from None
        if not d.eof:
            raise ValueError(
                f"{op}: '{path}' is truncated; the gzip stream ends before its end marker "
                f"(file size {len(blob)} bytes). Delete it and download it again.")
        data = d.unused_data
        if not data.strip(b"\x00"):
            break  # trailing zero padding, as gzip itself tolerates
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_bytes(path: str, op: str) -> tuple[bytes, str]:
    """The file's IDX content (decompressed if ``.gz``) and a phrase describing its size."""
    with open(path, "rb") as f:
        blob = f.read()
    if path.endswith(".gz"):
        raw = _gunzip(blob, path, op)
        return raw, f"{len(raw)} bytes decompressed ({len(blob)} bytes on disk)"
    return blob, f"{len(blob)} bytes"


def _parse_idx(raw: bytes, path: str, size_note: str, op: str,
               expected_magic: int | None) -> np.ndarray:
    if len(raw) < 4:
        raise ValueError(
            f"{op}: file '{path}' is truncated; expected at least a 4-byte IDX header, "
            f"got {size_note}")
    magic = int.from_bytes(raw[:4], "big")
    type_code, ndim = raw[2], raw[3]
    if raw[0] != 0 or raw[1] != 0 or type_code not in _IDX_TYPES or ndim == 0:
        want = f"0x{expected_magic:08X}" if expected_magic is not None else "an IDX header"
        raise ValueError(
            f"{op}: file '{path}' is not an IDX file; expected magic number {want}, "
            f"got 0x{magic:08X}")
    if expected_magic is not None and magic != expected_magic:
        kind = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}.get(expected_magic, "IDX data")
        raise ValueError(
            f"{op}: file '{path}' has the wrong magic number; expected 0x{expected_magic:08X} "
            f"({kind}), got 0x{magic:08X}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{op}: file '{path}' is truncated; expected a {header}-byte header, got {size_note}")
    dims = tuple(int.from_bytes(raw[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) < expected:
        shape = " x ".join(str(d) for d in dims)
        raise ValueError(
            f"{op}: file '{path}' is truncated; expected {expected} bytes (header says "
            f"{shape} of {dtype.name}), got {size_note}. Delete it and download it again.")
    if len(raw) > expected:
        raise ValueError(
            f"{op}: file '{path}' is longer than its header says; expected {expected} bytes, "
            f"got {size_note}")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    # a writable, native-endian copy that does not keep the file's bytes alive
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike, expected_magic: int | None = None,
             sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (gzipped if the name ends in ``.gz``) into an ndarray.

    Args:
        path: the file.
        expected_magic: e.g. ``0x00000803`` for MNIST images; a different one is an error.
        sha256: if given, the SHA-256 the decompressed content must have.

    Raises ValueError naming the file for a bad header, a truncated or over-long file, or a
    checksum mismatch.
    """
    return _read_idx(os.fspath(path), "read_idx", expected_magic, sha256)


def _read_idx(path: str, op: str, expected_magic: int | None, sha256: str | None) -> np.ndarray:
    raw, size_note = _read_bytes(path, op)
    arr = _parse_idx(raw, path, size_note, op, expected_magic)
    if sha256:
        got = hashlib.sha256(raw).hexdigest()
        if got != sha256:
            raise ValueError(
                f"{op}: checksum mismatch for '{path}'; expected SHA-256 {sha256} of the "
                f"decompressed content, got {got}. The file is corrupt or not the original "
                f"data; delete it and download it again.")
    return arr


# ---------------------------------------------------------------------------------------------
# download
# ---------------------------------------------------------------------------------------------
class _ChecksumError(Exception):
    pass


class _TextProgress:
    """Progress on stderr in 10 % steps, for when tqdm is not installed."""

    def __init__(self, total: int | None, name: str) -> None:
        self.total = total
        self.done = 0
        self.next_mark = 10
        self.name = name
        sys.stderr.write(f"Downloading {name}" + (f" ({total} bytes)" if total else "") + "\n")

    def update(self, n: int) -> None:
        self.done += n
        if self.total:
            pct = 100 * self.done // self.total
            while pct >= self.next_mark and self.next_mark <= 100:
                sys.stderr.write(f"  {self.name}: {self.next_mark}%\n")
                self.next_mark += 10

    def close(self) -> None:
        sys.stderr.flush()


def _progress_bar(total: int | None, name: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]  # optional, nicer progress
    except ImportError:
        return _TextProgress(total, name)
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                leave=False)


def _fetch_once(url: str, path: str, md5: str | None, timeout: float, progress: bool) -> None:
    folder = os.path.dirname(path) or "."
    name = os.path.basename(path)
    req = urllib.request.Request(url, headers={"User-Agent": "deepgrad"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        try:
            digest = hashlib.md5(usedforsecurity=False)
            size = 0
            bar = _progress_bar(total, name, progress)
            try:
                with os.fdopen(fd, "wb") as f:
                    while True:
                        chunk = resp.read(1 << 16)
                        if not chunk:
                            break
                        f.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                if bar is not None:
                    bar.close()
            if total is not None and size != total:
                raise OSError(f"connection closed after {size} of {total} bytes")
            if md5 and digest.hexdigest() != md5:
                raise _ChecksumError(f"MD5 {digest.hexdigest()}, expected {md5}")
            # atomic: readers see either no file or the whole verified file
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def download_url(url: str, path: str | os.PathLike, md5: str | None = None, retries: int = 3,
                 timeout: float = 30.0, backoff: float = 1.0, progress: bool = True) -> None:
    """Download ``url`` to ``path`` through a temporary file, verifying ``md5`` if given.

    Transient failures (network errors, HTTP 5xx, short reads) are retried ``retries`` times
    with exponential backoff (``backoff``, 2x, 4x ... seconds). HTTP 4xx and a wrong checksum
    fail at once. Raises ``OSError`` (network) or ``ValueError`` (checksum).
    """
    path = os.fspath(path)
    last: Exception | None = None
    for attempt in range(max(1, retries)):
        try:
            _fetch_once(url, path, md5, timeout, progress)
            return
        except _ChecksumError as e:
            raise ValueError(f"download_url: checksum mismatch for {url}: {e}") from None
        except urllib.error.HTTPError as e:
            if 400 <= e.code < 500:
                raise
            last = e
        except (urllib.error.URLError, OSError, EOFError, http.client.HTTPException) as e:
            last = e
        if attempt + 1 < retries and backoff > 0:
            time.sleep(backoff * 2 ** attempt)
    raise last if last is not None else OSError(f"download_url: could not fetch {url}")


# ---------------------------------------------------------------------------------------------
# the dataset
# ---------------------------------------------------------------------------------------------
def _folders(root: str | os.PathLike | None) -> list[str]:
    if root is not None:
        base = os.path.expanduser(os.fspath(root))
        return [os.path.join(base, "mnist"), os.path.join(base, "MNIST", "raw"), base]
    env = os.environ.get("DEEPGRAD_DATA")
    base = env if env else os.path.join(os.path.expanduser("~"), ".cache", "deepgrad")
    return [os.path.join(base, "mnist"), os.path.join(base, "MNIST", "raw")]


def _find(folder: str, name: str) -> str | None:
    for candidate in (name, name + ".gz"):
        p = os.path.join(folder, candidate)
        if os.path.isfile(p):
            return p
    return None


class MNIST(Dataset):
    """The MNIST digits: 60,000 training and 10,000 test images of 28x28 grey pixels.

    Args:
        root: folder holding ``mnist/`` (or torchvision's ``MNIST/raw/``), or the files
            themselves; default ``$DEEPGRAD_DATA``, else ``~/.cache/deepgrad``.
        train: the training split (True) or the test split (False).
        download: fetch missing files from the public mirrors (``MNIST.mirrors``).
        transform: applied to batches of images, uint8 ``(N, 28, 28)`` (see
            ``deepgrad.data.transforms``); ``dataset[i]`` passes a batch of one.
        target_transform: applied to batches of labels, int64 ``(N,)``.
        sample: read the small sample embedded in the package instead (no files needed).

    Attributes:
        data: uint8 Tensor ``(N, 28, 28)``.
        targets: int64 Tensor ``(N,)``.
        classes: ``['0 - zero', ..., '9 - nine']``.
        folder: where the files were read from.

    ``dataset[i]`` is ``(image, label)``: the image a uint8 ndarray (28, 28) (or the
    transform's output for it), the label an int. A ``DataLoader`` with the default collate
    gathers whole batches with one index and transforms them in one call.

    Example:
        >>> from deepgrad.data import transforms as T
        >>> ds = MNIST(train=True, transform=T.Compose([T.ToTensor(),
        ...                                           T.Normalize((0.1307,), (0.3081,))]))
        >>> loader = DataLoader(ds, batch_size=64, shuffle=True)
    """

    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five",
               "6 - six", "7 - seven", "8 - eight", "9 - nine"]
    mirrors = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    # download behaviour (class attributes so that tests and users can adjust them)
    download_retries = 3
    download_backoff = 1.0
    download_timeout = 30.0

    def __init__(self, root: str | os.PathLike | None = None, train: bool = True,
                 download: bool = False, transform: Callable | None = None,
                 target_transform: Callable | None = None, sample: bool = False) -> None:
        self.train = bool(train)
        self.transform = transform
        self.target_transform = target_transform
        self.sample = bool(sample)
        if self.sample:
            self.root = None
            self.folder = _SAMPLE_DIR
            sums = _SAMPLE_SHA256
        else:
            self.root = root
            self.folder = self._locate(root, self.train, download)
            sums = _SHA256
        img_name, lbl_name = _SPLIT_FILES[self.train]
        img_path = _find(self.folder, img_name)
        lbl_path = _find(self.folder, lbl_name)
        if img_path is None or lbl_path is None:
            raise RuntimeError(
                f"MNIST: files of the {'train' if self.train else 'test'} split are missing "
                f"in '{self.folder}'; expected {img_name}[.gz] and {lbl_name}[.gz]")
        images = _read_idx(img_path, "MNIST", IMAGES_MAGIC, sums.get(img_name) or None)
        labels = _read_idx(lbl_path, "MNIST", LABELS_MAGIC, sums.get(lbl_name) or None)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(
                f"MNIST: wrong image dimensions in '{img_path}'; expected (N, 28, 28), "
                f"got {images.shape}")
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise ValueError(
                f"MNIST: expected unsigned-byte IDX data; got {images.dtype} images in "
                f"'{img_path}' and {labels.dtype} labels in '{lbl_path}'")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"MNIST: image and label counts differ; expected equal, got "
                f"{images.shape[0]} images in '{img_path}' and {labels.shape[0]} labels "
                f"in '{lbl_path}'")
        if labels.size and labels.max() > 9:
            raise ValueError(
                f"MNIST: labels must be digits 0-9; got {int(labels.max())} in '{lbl_path}'")
        self.data = _make(images)
        self.targets = _make(labels.astype(np.int64))

    # -- files -------------------------------------------------------------------------
    @classmethod
    def _locate(cls, root, train: bool, download: bool) -> str:
        folders = _folders(root)
        split = _SPLIT_FILES[train]
        for folder in folders:
            if all(_find(folder, n) is not None for n in split):
                return folder
        if download:
            cls._download(folders[0])
            return folders[0]
        files = ", ".join(n + ".gz" for n in _ALL_FILES)
        looked = ", ".join(f"'{f}'" for f in folders)
        raise RuntimeError(
            f"MNIST: dataset not found; looked in {looked}. Put the files {files} "
            f"(gzipped or not) in '{folders[0]}', use download=True, or set DEEPGRAD_DATA to a "
            f"folder whose mnist/ subfolder holds them.")

    @classmethod
    def _download(cls, folder: str) -> None:
        """Fetch the files missing from ``folder``, trying each mirror in turn."""
        files = ", ".join(n + ".gz" for n in _ALL_FILES)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise RuntimeError(
                f"MNIST: can't create the download folder '{folder}' ({e}). Put these four "
                f"files there yourself (gzipped or not): {files}; or pass another root.") from None
        for name in _ALL_FILES:
            if _find(folder, name) is not None:
                continue
            gz = name + ".gz"
            path = os.path.join(folder, gz)
            errors = []
            for mirror in cls.mirrors:
                url = mirror + gz
                try:
                    download_url(url, path, md5=_MD5.get(gz), retries=cls.download_retries,
                                 timeout=cls.download_timeout, backoff=cls.download_backoff)
                    break
                except (OSError, ValueError, http.client.HTTPException) as e:
                    errors.append(f"{url}: {e}" if str(e) else f"{url}: {e!r}")
            else:
                tried = "; ".join(errors) or "no mirrors configured"
                raise RuntimeError(
                    f"MNIST: could not download {gz} into '{folder}' (tried {tried}). "
                    f"Put these four files in '{folder}' yourself (gzipped or not): {files}; "
                    f"or set DEEPGRAD_DATA to a folder whose mnist/ subfolder holds them.")

    # -- samples -----------------------------------------------------------------------
    def __len__(self) -> int:
        return self.data.data.shape[0]

    def __getitem__(self, index):
        images = _arr(self.data)
        n = images.shape[0]
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"MNIST: index out of range; expected -{n} <= index < {n}, got {i}")
        i %= n
        if self.transform is None:
            img = images[i].copy()
        else:
            img = _first(self.transform(images[i:i + 1]))
        targets = _arr(self.targets)
        if self.target_transform is None:
            target = int(targets[i])
        else:
            target = _first(self.target_transform(targets[i:i + 1]))
        return img, target

    def _fetch_batch(self, indices: np.ndarray) -> list:
        img = _arr(self.data)[indices]
        if self.transform is not None:
            img = self.transform(img)
        target = _arr(self.targets)[indices]
        if self.target_transform is not None:
            target = self.target_transform(target)
        return [_as_tensor(img), _as_tensor(target)]

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def __repr__(self) -> str:
        lines = [f"Dataset {type(self).__name__}",
                 f"    Number of datapoints: {len(self)}",
                 f"    Root location: {self.folder}",
                 f"    Split: {'Train' if self.train else 'Test'}"]
        if self.sample:
            lines.append("    Sample: embedded stratified sample")
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform!r}")
        if self.target_transform is not None:
            lines.append(f"    Target transform: {self.target_transform!r}")
        return "\n".join(lines)


class MNISTSample(MNIST):
    """The sample of MNIST embedded in the package: 6,000 training / 1,000 test digits.

    Balanced (600 / 100 per class), drawn with a fixed seed from the real data; needs no files.
    Same interface as ``MNIST``.
    """

    def __init__(self, root: str | os.PathLike | None = None, train: bool = True,
                 download: bool = False, transform: Callable | None = None,
                 target_transform: Callable | None = None) -> None:
        super().__init__(root=None, train=train, download=False, transform=transform,
                         target_transform=target_transform, sample=True)


def _arr(x) -> np.ndarray:
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _first(x):
    if isinstance(x, Tensor):
        return _make(x.data[0])
    return x[0]


def _as_tensor(x):
    if isinstance(x, np.ndarray):
        return _make(x)
    return x
