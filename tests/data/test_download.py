"""MNIST download through a local HTTP server on 127.0.0.1 (never an external host)."""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import os
import socket
import sys
import threading

import numpy as np
import pytest

from deepgrad.data.datasets import mnist as mnist_mod
from deepgrad.datasets import MNIST, download_url

from .idx_helpers import idx_bytes, sha256

NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte"]


def _files():
    """Small gzipped MNIST-shaped files: name.gz -> (gz bytes, raw bytes)."""
    rng = np.random.default_rng(0)
    out = {}
    for name, n in zip(NAMES, (12, 12, 5, 5)):
        if "images" in name:
            raw = idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 0x00000803)
        else:
            raw = idx_bytes(rng.integers(0, 10, n).astype(np.uint8), 0x00000801)
        out[name + ".gz"] = (gzip.compress(raw, mtime=0), raw)
    return out


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes: /good/<file> serves it, /bad/<file> serves wrong bytes, /flaky/<file> fails
    with 503 on the first request per file, /short/<file> announces more bytes than it sends;
    anything else is 404."""

    files: dict = {}
    hits: dict = {}

    def do_GET(self):  # noqa: N802 - http.server's naming
        _, route, name = self.path.split("/", 2)
        key = (route, name)
        self.hits[key] = self.hits.get(key, 0) + 1
        if name not in self.files or route not in ("good", "bad", "flaky", "short"):
            self.send_error(404)
            return
        body = self.files[name][0]
        if route == "bad":
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        if route == "flaky" and self.hits[key] == 1:
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + (100 if route == "short" else 0)))
        self.end_headers()
        self.wfile.write(body)
        if route == "short":
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A local HTTP server for one test; shut down afterwards, and after 60 s at the latest."""
    files = _files()
    handler = type("Handler", (_Handler,), {"files": files, "hits": {}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    guard = threading.Timer(60.0, httpd.shutdown)
    guard.daemon = True
    guard.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", files, handler.hits
    finally:
        guard.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def local(monkeypatch, tmp_path, server):
    """DEEPGRAD_DATA in tmp_path, the small files' checksums trusted, no retry delays."""
    url, files, hits = server
    monkeypatch.setenv("DEEPGRAD_DATA", str(tmp_path))
    for gz, (blob, raw) in files.items():
        monkeypatch.setitem(mnist_mod._MD5, gz, hashlib.md5(blob).hexdigest())
        monkeypatch.setitem(mnist_mod._SHA256, gz[:-3], sha256(raw))
    monkeypatch.setattr(MNIST, "download_backoff", 0.0)
    monkeypatch.setattr(MNIST, "download_timeout", 5.0)
    return url, files, hits, tmp_path


def _closed_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_tries_mirrors_in_order(local, monkeypatch):
    url, files, hits, root = local
    monkeypatch.setattr(MNIST, "mirrors", (url + "/missing/", url + "/good/"))
    ds = MNIST(download=True)
    folder = root / "mnist"
    assert ds.folder == str(folder) and len(ds) == 12
    assert sorted(os.listdir(folder)) == sorted(files)  # all four, no temporary files left
    for gz, (blob, _) in files.items():
        assert (folder / gz).read_bytes() == blob
        assert hits[("missing", gz)] == 1  # a 404 is not retried
    assert len(MNIST(train=False)) == 5  # now present without downloading
    n_hits = sum(hits.values())
    MNIST(download=True)
    assert sum(hits.values()) == n_hits  # nothing fetched when the files are there


def test_download_retries_transient_errors(local, monkeypatch):
    url, files, hits, root = local
    sleeps = []
    monkeypatch.setattr(MNIST, "mirrors", (url + "/flaky/",))
    monkeypatch.setattr(MNIST, "download_backoff", 0.5)
    monkeypatch.setattr(mnist_mod.time, "sleep", sleeps.append)
    MNIST(download=True)
    assert all(hits[("flaky", gz)] == 2 for gz in files)
    assert sleeps == [0.5] * 4  # one backoff per file before its second attempt


def test_download_short_read_is_retried_then_fails(local, monkeypatch):
    url, files, hits, root = local
    monkeypatch.setattr(MNIST, "mirrors", (url + "/short/",))
    monkeypatch.setattr(MNIST, "download_retries", 2)
    with pytest.raises(RuntimeError, match="MNIST: could not download"):
        MNIST(download=True)
    assert hits[("short", "train-images-idx3-ubyte.gz")] == 2
    assert not [f for f in os.listdir(root / "mnist") if f.endswith(".part")]


def test_bad_checksum_error_names_folder_and_files(local, monkeypatch):
    url, files, hits, root = local
    monkeypatch.setattr(MNIST, "mirrors", (url + "/bad/",))
    with pytest.raises(RuntimeError) as e:
        MNIST(download=True)
    msg = str(e.value)
    folder = str(root / "mnist")
    assert f"into '{folder}'" in msg and "checksum mismatch" in msg
    for name in NAMES:
        assert name + ".gz" in msg
    assert hits[("bad", "train-images-idx3-ubyte.gz")] == 1  # a bad checksum is not retried
    assert os.listdir(folder) == []  # nothing half-written is left behind


def test_offline_error_names_folder_and_files(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPGRAD_DATA", str(tmp_path))
    monkeypatch.setattr(MNIST, "mirrors", (f"http://127.0.0.1:{_closed_port()}/mnist/",))
    monkeypatch.setattr(MNIST, "download_backoff", 0.0)
    monkeypatch.setattr(MNIST, "download_timeout", 2.0)
    with pytest.raises(RuntimeError) as e:
        MNIST(download=True)
    msg = str(e.value)
    assert msg.startswith("MNIST: could not download train-images-idx3-ubyte.gz into")
    assert str(tmp_path / "mnist") in msg and "Connection refused" in msg
    for name in NAMES:
        assert name + ".gz" in msg


def test_default_mirrors_are_not_contacted_in_tests(monkeypatch, tmp_path):
    """The network guard of conftest.py turns an external download into a clear error."""
    monkeypatch.setenv("DEEPGRAD_DATA", str(tmp_path))
    monkeypatch.setattr(MNIST, "download_retries", 1)
    with pytest.raises(RuntimeError, match="test guard"):
        MNIST(download=True)


def test_download_url_text_progress_without_tqdm(server, tmp_path, monkeypatch, capsys):
    url, files, _ = server
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails: plain text progress
    gz = "t10k-labels-idx1-ubyte.gz"
    blob = files[gz][0]
    dest = tmp_path / gz
    download_url(f"{url}/good/{gz}", dest, md5=hashlib.md5(blob).hexdigest(), backoff=0)
    assert dest.read_bytes() == blob
    err = capsys.readouterr().err
    assert f"Downloading {gz} ({len(blob)} bytes)" in err and "100%" in err
    with pytest.raises(ValueError, match="download_url: checksum mismatch"):
        download_url(f"{url}/good/{gz}", tmp_path / "x.gz", md5="0" * 32, backoff=0)
    assert not (tmp_path / "x.gz").exists()


def test_download_url_with_tqdm(server, tmp_path):
    pytest.importorskip("tqdm")
    url, files, _ = server
    gz = "t10k-labels-idx1-ubyte.gz"
    download_url(f"{url}/good/{gz}", tmp_path / gz, backoff=0)
    assert (tmp_path / gz).read_bytes() == files[gz][0]
