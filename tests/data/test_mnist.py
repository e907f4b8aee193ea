"""MNIST: the real files, small IDX files written here, the embedded sample, the loader."""
from __future__ import annotations

import gzip
import importlib.util
import os

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.data import DataLoader, Subset
from deepgrad.data import transforms as T
from deepgrad.data.datasets import mnist as mnist_mod
from deepgrad.datasets import MNIST, MNISTSample, get_dataset, read_idx

from .idx_helpers import idx_bytes, real_mnist_folder, requires_mnist, sha256, write_file

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte"]


# -- the real data -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_train():
    if real_mnist_folder() is None:
        pytest.skip("real MNIST not found: set DEEPGRAD_DATA to a folder with mnist/")
    return MNIST(root=os.environ["DEEPGRAD_DATA"], train=True)


@requires_mnist
def test_real_train_split(mnist_train):
    ds = mnist_train
    assert len(ds) == 60000
    assert ds.data.shape == (60000, 28, 28) and ds.data.dtype == np.uint8
    assert ds.targets.shape == (60000,) and ds.targets.dtype == np.int64
    assert np.bincount(ds.targets.numpy(), minlength=10).tolist() == TRAIN_COUNTS
    pixels = ds.data.numpy().reshape(-1)
    mean = pixels.mean(dtype=np.float64)
    # sum of squares in chunks: float32 squares of bytes are exact, and the chunks stay small
    squares = sum(float(np.square(part, dtype=np.float32).sum(dtype=np.float64))
                  for part in np.array_split(pixels, 50))
    std = np.sqrt(squares / pixels.size - mean ** 2)
    assert round(float(mean), 3) == 33.318
    assert abs(std / 255 - 0.3081) < 5e-5
    img, label = ds[0]
    assert isinstance(img, np.ndarray) and img.shape == (28, 28) and img.dtype == np.uint8
    assert isinstance(label, int) and label == 5  # the first training digit is a 5
    assert ds.classes[label] == "5 - five" and ds.class_to_idx["5 - five"] == 5
    assert ds.folder == real_mnist_folder()


@requires_mnist
def test_real_test_split_from_env(monkeypatch):
    monkeypatch.setenv("DEEPGRAD_DATA", os.path.dirname(real_mnist_folder()))
    ds = MNIST(train=False)
    assert len(ds) == 10000
    assert np.bincount(ds.targets.numpy(), minlength=10).tolist() == TEST_COUNTS
    assert "Split: Test" in repr(ds)


@requires_mnist
def test_real_loader_epoch(mnist_train):
    ds = mnist_train
    ds_t = MNIST(root=os.environ["DEEPGRAD_DATA"],
                 transform=T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))]))
    loader = DataLoader(ds_t, batch_size=64, shuffle=True,
                        generator=dg.Generator().manual_seed(0))
    assert len(loader) == 938
    seen = np.zeros(60000, bool)
    perm = np.random.Generator(np.random.PCG64(0)).permutation(60000)
    for k, (x, y) in enumerate(loader):
        if k == 0:
            assert x.shape == (64, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
            idx = perm[:64]
            want = (ds.data.numpy()[idx].astype(np.float32) / np.float32(255)
                    - np.float32(0.1307)) / np.float32(0.3081)
            np.testing.assert_array_equal(x.numpy()[:, 0], want)
            assert y.tolist() == ds.targets.numpy()[idx].tolist()
        seen[perm[k * 64:(k + 1) * 64]] = True
    assert x.shape[0] == 60000 - 937 * 64 and seen.all()


# -- the embedded sample --------------------------------------------------------------------------
def test_sample_needs_no_files(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPGRAD_DATA", str(tmp_path))
    train = MNIST(sample=True)
    test = MNISTSample(train=False)
    assert len(train) == 6000 and len(test) == 1000
    assert np.bincount(train.targets.numpy()).tolist() == [600] * 10
    assert np.bincount(test.targets.numpy()).tolist() == [100] * 10
    assert train.data.dtype == np.uint8 and train.data.shape == (6000, 28, 28)
    assert abs(train.data.numpy().mean() - 33.3) < 1.5
    assert len(get_dataset("mnist-sample", train=False)) == 1000
    with pytest.raises(ValueError, match="get_dataset: unknown dataset 'cifar'"):
        get_dataset("cifar")


def test_sample_is_small():
    total = sum(os.path.getsize(os.path.join(mnist_mod._SAMPLE_DIR, n + ".gz")) for n in NAMES)
    assert total <= 2 * 1024 * 1024


@requires_mnist
def test_sample_is_reproduced_by_its_script(mnist_train):
    """The sample is the script's stratified choice from the real data, image for image."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "make_mnist_sample.py")
    spec = importlib.util.spec_from_file_location("make_mnist_sample", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rng = np.random.default_rng(script.SEED)
    idx = script.choose(mnist_train.targets.numpy(), script.PER_CLASS[True], rng)
    sample = MNISTSample(train=True)
    np.testing.assert_array_equal(sample.data.numpy(), mnist_train.data.numpy()[idx])
    np.testing.assert_array_equal(sample.targets.numpy(), mnist_train.targets.numpy()[idx])


def test_sample_transforms_and_fast_path():
    tf = T.Compose([T.ToTensor(), T.Pad(2), T.Normalize((0.1307,), (0.3081,))])
    ds = MNISTSample(train=False, transform=tf, target_transform=lambda y: y % 2)
    img, target = ds[3]
    assert isinstance(img, dg.Tensor) and img.shape == (1, 32, 32) and img.dtype == np.float32
    assert target == ds.targets.numpy()[3] % 2
    idx = np.array([5, 999, 0, -1])
    fast = ds._fetch_batch(idx)
    slow = dg.data.default_collate([ds[int(i)] for i in idx])
    for f, s in zip(fast, slow):
        assert f.dtype == s.dtype and f.shape == s.shape
        np.testing.assert_array_equal(f.numpy(), s.numpy())
    xb, yb = next(iter(DataLoader(Subset(ds, [4, 2]), batch_size=2)))
    assert xb.shape == (2, 1, 32, 32) and yb.tolist() == (ds.targets.numpy()[[4, 2]] % 2).tolist()
    with pytest.raises(IndexError, match="MNIST: index out of range"):
        ds[1000]


# -- small IDX files written here ---------------------------------------------------------------
def _small(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, size=n).astype(np.uint8))


def _write_split(folder, train=True, n=10, gz=True, images=None, labels=None, img_magic=None):
    os.makedirs(folder, exist_ok=True)
    img, lbl = _small(n)
    img = img if images is None else images
    lbl = lbl if labels is None else labels
    img_name, lbl_name = mnist_mod._SPLIT_FILES[train]
    raw_img = idx_bytes(img, 0x00000803 if img_magic is None else img_magic)
    raw_lbl = idx_bytes(lbl, 0x00000801)
    write_file(os.path.join(folder, img_name), raw_img, gz)
    write_file(os.path.join(folder, lbl_name), raw_lbl, gz)
    return {img_name: sha256(raw_img), lbl_name: sha256(raw_lbl)}, img, lbl


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """An empty DEEPGRAD_DATA; tests write files into its mnist/ folder."""
    monkeypatch.setenv("DEEPGRAD_DATA", str(tmp_path))
    return tmp_path


def _trust(monkeypatch, sums):
    for name, digest in sums.items():
        monkeypatch.setitem(mnist_mod._SHA256, name, digest)


@pytest.mark.parametrize("gz", [True, False])
def test_small_files_gz_and_raw(data_root, monkeypatch, gz):
    sums, img, lbl = _write_split(data_root / "mnist", gz=gz)
    _trust(monkeypatch, sums)
    ds = MNIST()
    np.testing.assert_array_equal(ds.data.numpy(), img)
    np.testing.assert_array_equal(ds.targets.numpy(), lbl)
    assert ds.data.numpy().flags.writeable


def test_read_idx_gz_equals_raw(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = idx_bytes(arr, 0x00000803)
    a = read_idx(write_file(tmp_path / "a", raw, gz=False), 0x00000803, sha256=sha256(raw))
    b = read_idx(write_file(tmp_path / "b", raw, gz=True))
    np.testing.assert_array_equal(a, arr)
    np.testing.assert_array_equal(b, arr)


def test_multi_member_gzip(tmp_path):
    raw = idx_bytes(np.arange(10, dtype=np.uint8), 0x00000801)
    path = tmp_path / "m.gz"
    path.write_bytes(gzip.compress(raw[:7]) + gzip.compress(raw[7:]))
    np.testing.assert_array_equal(read_idx(path), np.arange(10))


def test_torchvision_layout_and_root(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPGRAD_DATA", raising=False)
    sums, img, _ = _write_split(tmp_path / "MNIST" / "raw", train=False, gz=False)
    _trust(monkeypatch, sums)
    ds = MNIST(root=tmp_path, train=False)
    assert ds.folder == str(tmp_path / "MNIST" / "raw")
    np.testing.assert_array_equal(ds.data.numpy(), img)


def test_truncated_raw_file_names_file_and_sizes(data_root, monkeypatch):
    sums, *_ = _write_split(data_root / "mnist", gz=False)
    _trust(monkeypatch, sums)
    path = data_root / "mnist" / "train-images-idx3-ubyte"
    full = path.read_bytes()
    path.write_bytes(full[:5000])
    with pytest.raises(ValueError) as e:
        MNIST()
    msg = str(e.value)
    assert msg.startswith("MNIST: file ") and str(path) in msg and "truncated" in msg
    assert f"expected {len(full)} bytes" in msg and "got 5000 bytes" in msg


def test_truncated_gz_content(data_root, monkeypatch):
    sums, *_ = _write_split(data_root / "mnist", gz=True)
    _trust(monkeypatch, sums)
    lbl = data_root / "mnist" / "train-labels-idx1-ubyte.gz"
    lbl.write_bytes(gzip.compress(idx_bytes(np.zeros(10, np.uint8), 0x00000801)[:12]))
    with pytest.raises(ValueError, match=r"MNIST: file '.*train-labels-idx1-ubyte.gz' is "
                                         r"truncated; expected 18 bytes .*got 12 bytes "
                                         r"decompressed \(\d+ bytes on disk\)"):
        MNIST()


def test_truncated_gz_stream(data_root, monkeypatch):
    sums, *_ = _write_split(data_root / "mnist", gz=True)
    _trust(monkeypatch, sums)
    path = data_root / "mnist" / "train-images-idx3-ubyte.gz"
    blob = path.read_bytes()
    path.write_bytes(blob[:len(blob) // 2])
    with pytest.raises(ValueError, match=r"MNIST: '.*train-images-idx3-ubyte.gz' is truncated; "
                                         r"the gzip stream ends"):
        MNIST()
    path.write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(ValueError, match="is not a valid gzip file"):
        MNIST()


def test_wrong_magic(data_root, monkeypatch):
    sums, *_ = _write_split(data_root / "mnist", gz=False, img_magic=0x00000801)
    _trust(monkeypatch, sums)
    with pytest.raises(ValueError, match=r"MNIST: file '.*train-images-idx3-ubyte' has the wrong "
                                         r"magic number; expected 0x00000803 \(images\), "
                                         r"got 0x00000801"):
        MNIST()
    (data_root / "mnist" / "train-images-idx3-ubyte").write_bytes(b"\x12\x34\x56\x78" * 8)
    with pytest.raises(ValueError, match="is not an IDX file; expected magic number 0x00000803"):
        MNIST()


def test_wrong_dims_and_counts(data_root, monkeypatch):
    img = np.zeros((4, 27, 28), np.uint8)
    sums, *_ = _write_split(data_root / "mnist", n=4, images=img)
    _trust(monkeypatch, sums)
    with pytest.raises(ValueError, match=r"MNIST: wrong image dimensions in '.*'; expected "
                                         r"\(N, 28, 28\), got \(4, 27, 28\)"):
        MNIST()
    sums, *_ = _write_split(data_root / "mnist", n=4, labels=np.zeros(5, np.uint8))
    _trust(monkeypatch, sums)
    with pytest.raises(ValueError, match="MNIST: image and label counts differ.*got 4 images"):
        MNIST()
    sums, *_ = _write_split(data_root / "mnist", n=3, labels=np.array([1, 12, 3], np.uint8))
    _trust(monkeypatch, sums)
    with pytest.raises(ValueError, match="MNIST: labels must be digits 0-9; got 12"):
        MNIST()


def test_bad_checksum(data_root):
    # well-formed files whose content is not the original data's
    _write_split(data_root / "mnist", gz=True)
    with pytest.raises(ValueError) as e:
        MNIST()
    msg = str(e.value)
    assert "MNIST: checksum mismatch for" in msg and "train-images-idx3-ubyte.gz" in msg
    assert mnist_mod._SHA256["train-images-idx3-ubyte"] in msg


def test_not_found_names_folder_and_files(data_root):
    with pytest.raises(RuntimeError) as e:
        MNIST()
    msg = str(e.value)
    assert "MNIST: dataset not found" in msg and str(data_root / "mnist") in msg
    for name in NAMES:
        assert name + ".gz" in msg
    assert "download=True" in msg


def test_default_folder_is_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPGRAD_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"\.cache/deepgrad/mnist"):
        MNIST()


def test_other_split_missing(data_root, monkeypatch):
    sums, *_ = _write_split(data_root / "mnist", train=True)
    _trust(monkeypatch, sums)
    assert len(MNIST(train=True)) == 10
    with pytest.raises(RuntimeError, match="MNIST: dataset not found"):
        MNIST(train=False)
