"""deepgrad.io save/load: round trips, safetensors compatibility, clear errors, atomic writes."""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import re
import select
import subprocess
import sys
import time
from collections import OrderedDict

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import nn
from deepgrad.io import CheckpointError, CheckpointNotFoundError, load, save
from deepgrad.io import checkpoint as ckpt_mod

safetensors = pytest.importorskip("safetensors", reason="safetensors is not installed")
import safetensors.numpy as st_numpy  # noqa: E402


# -- helpers -----------------------------------------------------------------------------------

def same(a, b):
    """Deep equality that also compares types, dtypes and NaNs bit for bit."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dg.Tensor):
        assert a.requires_grad == b.requires_grad
        same(a.data, b.data)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys())
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            same(ka, kb)
            same(va, vb)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) ==
                                                     math.copysign(1, b))
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    else:
        assert a == b


def roundtrip(obj, tmp_path, name="ckpt.safetensors"):
    path = tmp_path / name
    save(obj, path)
    return load(path)


def split_file(path):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def join_file(path, header, data):
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def rewrite_doc(path, change):
    """Edit the deepgrad metadata document and re-seal it with a valid checksum."""
    header, data = split_file(path)
    doc = json.loads(header["__metadata__"]["deepgrad.checkpoint"])
    change(doc)
    text = json.dumps(doc)
    header["__metadata__"]["deepgrad.checkpoint"] = text
    header["__metadata__"]["deepgrad.checkpoint.sha256"] = hashlib.sha256(text.encode()).hexdigest()
    join_file(path, header, data)


def optimizer_state():
    return {
        "state": {0: {"step": 3, "exp_avg": dg.randn(4, 3), "exp_avg_sq": dg.rand(4, 3)},
                  1: {"step": 3, "exp_avg": dg.randn(4), "exp_avg_sq": dg.rand(4)}},
        "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                          "amsgrad": False, "maximize": False, "foreach": None,
                          "params": [0, 1]}],
    }


def small_model():
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


# -- round trips -------------------------------------------------------------------------------

def test_model_state_dict_roundtrip(tmp_path):
    model = small_model()
    sd = model.state_dict()
    out = roundtrip(sd, tmp_path)
    assert isinstance(out, OrderedDict)
    same(sd, out)
    fresh = small_model()
    fresh.load_state_dict(out)
    x = dg.randn(5, 3)
    np.testing.assert_array_equal(fresh(x).data, model(x).data)
    # loaded tensors own writable memory, detached from the saved ones
    out["0.weight"].data += 1
    assert not np.array_equal(out["0.weight"].data, sd["0.weight"].data)


def test_optimizer_state_dict_keeps_int_keys_and_tuples(tmp_path):
    sd = optimizer_state()
    out = roundtrip(sd, tmp_path)
    same(sd, out)
    assert list(out["state"]) == [0, 1]
    assert out["param_groups"][0]["betas"] == (0.9, 0.999)


def test_trainer_checkpoint_with_numpy_rng_state(tmp_path):
    rng = np.random.default_rng(1234)
    rng.standard_normal(7)
    mt = np.random.RandomState(5)
    ckpt = {"model": small_model().state_dict(), "optimizer": optimizer_state(), "epoch": 3,
            "config": {"lr": 0.1, "batch_size": 64, "name": "mlp", "dtype": dg.float32,
                       "layers": [784, 128, 10], "scheduler": None},
            "rng": {"numpy": rng.bit_generator.state, "legacy": mt.get_state(),
                    "deepgrad": dg.get_rng_state()}}
    assert ckpt["rng"]["numpy"]["state"]["state"] > 2 ** 64  # genuinely big ints
    out = roundtrip(ckpt, tmp_path)
    same(ckpt, out)
    restored = np.random.default_rng()
    restored.bit_generator.state = out["rng"]["numpy"]
    np.testing.assert_array_equal(restored.standard_normal(5), rng.standard_normal(5))
    mt2 = np.random.RandomState()
    mt2.set_state(out["rng"]["legacy"])
    np.testing.assert_array_equal(mt2.randint(0, 1000, 5), mt.randint(0, 1000, 5))
    assert out["config"]["dtype"] is dg.float32 or out["config"]["dtype"] == dg.float32


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int64", "int32", "int8",
                                   "uint8", "uint64", "bool"])
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (5,), (2, 3, 4)])
def test_array_dtypes_and_shapes(tmp_path, dtype, shape):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal(shape) * 100).astype(dtype)
    obj = {"t": dg.tensor(arr), "a": arr.copy()}
    out = roundtrip(obj, tmp_path)
    same(obj, out)
    assert out["t"].dtype == np.dtype(dtype) and out["t"].shape == shape


def test_python_values_and_keys(tmp_path):
    obj = {
        "nested": [[1, 2.5, [True, None, "x"]], (), [], {}, ((1, 2), [3])],
        "floats": [0.1, -0.0, 1e308, 5e-324, math.inf, -math.inf, math.nan],
        "ints": [0, -1, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), 2 ** 200, -(3 ** 150)],
        "text": ["", "héllo wörld ✓", "\x00\n\"'", "\ud800"],
        "np": [np.float32(0.1), np.int64(-7), np.bool_(True), np.uint64(2 ** 64 - 1),
               np.float16(np.inf), np.dtype("int64")],
        1: "int key", 2.5: "float key", None: "none key", False: "bool key",
        (1, "a", (2.0, None)): "tuple key", -(2 ** 80): "big int key", math.inf: "inf key",
        "__metadata__": dg.ones(2), "\ud800": dg.ones(1),
    }
    same(obj, roundtrip(obj, tmp_path))


def test_ordered_dict_and_subclasses(tmp_path):
    from collections import defaultdict, namedtuple

    point = namedtuple("Point", "x y")
    dd = defaultdict(list, {"a": [1]})
    obj = {"od": OrderedDict([("b", 1), ("a", 2)]), "dd": dd, "nt": point(1, 2)}
    out = roundtrip(obj, tmp_path)
    assert type(out["od"]) is OrderedDict and list(out["od"]) == ["b", "a"]
    assert type(out["dd"]) is dict and out["dd"] == {"a": [1]}
    assert type(out["nt"]) is tuple and out["nt"] == (1, 2)


def test_parameters_and_requires_grad(tmp_path):
    model = small_model()
    obj = {"vars": model.state_dict(keep_vars=True), "t": dg.ones(2, requires_grad=True)}
    out = roundtrip(obj, tmp_path)
    assert isinstance(out["vars"]["0.weight"], nn.Parameter)
    assert out["vars"]["0.weight"].requires_grad
    assert out["t"].requires_grad and out["t"].is_leaf and type(out["t"]) is dg.Tensor
    assert out["vars"]["0.weight"] is not model[0].weight


def test_shared_arrays_stored_once(tmp_path):
    shared = dg.randn(100)
    arr = np.arange(6).reshape(2, 3)
    obj = {"a": shared, "b": shared, "c": shared.detach(), "d": arr, "e": [arr]}
    path = tmp_path / "c.safetensors"
    save(obj, path)
    with safetensors.safe_open(str(path), framework="np") as f:
        assert sorted(f.keys()) == ["a", "d"]
    out = load(path)
    same(obj, out)
    assert out["a"].data is out["c"].data and out["d"] is out["e"][0]


def test_non_contiguous_and_byteswapped_arrays(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    obj = {"view": base[:, ::2].T, "big_endian": base.astype(">f4"), "t": dg.tensor(base).T}
    out = roundtrip(obj, tmp_path)
    np.testing.assert_array_equal(out["view"], base[:, ::2].T)
    assert out["big_endian"].dtype == np.float32
    np.testing.assert_array_equal(out["big_endian"], base.astype(np.float32))
    np.testing.assert_array_equal(out["t"].data, base.T)


def test_top_level_tensor_and_scalars(tmp_path):
    same(dg.arange(5), roundtrip(dg.arange(5), tmp_path, "a"))
    for value in [None, 3, "x", [1, (2,)], {}]:
        same(value, roundtrip(value, tmp_path, "b"))


# -- file format -------------------------------------------------------------------------------

def test_file_opens_with_safetensors_library(tmp_path):
    ckpt = {"model": small_model().state_dict(), "optimizer": optimizer_state(), "epoch": 3}
    path = tmp_path / "c.safetensors"
    save(ckpt, path)
    arrays = st_numpy.load_file(str(path))
    assert sorted(arrays) == sorted(
        ["model.0.weight", "model.0.bias", "model.1.weight", "model.1.bias",
         "optimizer.state.0.exp_avg", "optimizer.state.0.exp_avg_sq",
         "optimizer.state.1.exp_avg", "optimizer.state.1.exp_avg_sq"])
    np.testing.assert_array_equal(arrays["model.1.weight"], ckpt["model"]["1.weight"].data)
    np.testing.assert_array_equal(arrays["optimizer.state.0.exp_avg"],
                                  ckpt["optimizer"]["state"][0]["exp_avg"].data)
    with safetensors.safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    doc = json.loads(meta["deepgrad.checkpoint"])
    assert doc["format_version"] == ckpt_mod.FORMAT_VERSION
    assert doc["deepgrad_version"] == dg.__version__


def test_flat_state_dict_names_match_torch(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    sd = small_model().state_dict()
    path = tmp_path / "m.safetensors"
    save(sd, path)
    tsd = load_file(str(path))
    tmodel = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    tmodel.load_state_dict(tsd)
    np.testing.assert_array_equal(tmodel[0].weight.detach().numpy(), sd["0.weight"].data)


def test_load_foreign_safetensors_file(tmp_path):
    path = tmp_path / "foreign.safetensors"
    st_numpy.save_file({"w": np.ones((2, 2), np.float32), "n": np.arange(3)}, str(path))
    out = load(path)
    assert isinstance(out, OrderedDict) and sorted(out) == ["n", "w"]
    assert isinstance(out["w"], dg.Tensor) and out["n"].dtype == np.int64


def test_file_objects_and_torch_style_kwargs(tmp_path):
    sd = small_model().state_dict()
    buf = io.BytesIO()
    save(sd, buf)
    buf.seek(0)
    same(sd, load(buf, map_location="cpu", weights_only=True))
    path = tmp_path / "m.safetensors"
    save(sd, str(path))
    same(sd, load(str(path), map_location=None, weights_only=False))
    with open(path, "rb") as fh:
        same(sd, load(fh))
    path.write_bytes(path.read_bytes()[:-1])
    with open(path, "rb") as fh, pytest.raises(CheckpointError, match=re.escape(str(path))):
        load(fh)
    with pytest.raises(TypeError, match="binary mode"):
        load(io.StringIO("text"))
    with pytest.raises(TypeError, match="save: f must be a path"):
        save(sd, 42)


def test_missing_safetensors_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r"deepgrad\[train\]"):
        save({}, tmp_path / "x")
    with pytest.raises(ImportError, match="load: .*safetensors"):
        load(tmp_path / "x")


# -- save errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("obj, match", [
    ({"a": {"b": object()}}, r"save: cannot save a builtins.object at obj\['a'\]\['b'\]"),
    ({"s": {1, 2}}, r"builtins.set at obj\['s'\]"),
    ({"m": small_model()}, r"Sequential at obj\['m'\].*state_dict\(\)"),
    ({"g": dg.Generator()}, r"get_state\(\)"),
    ({"c": np.ones(2, np.complex128)}, r"unsupported dtype at obj\['c'\]; .*got complex128"),
    ({"o": np.array(["a"], dtype=object)}, r"unsupported dtype at obj\['o'\]"),
    ({"b": b"bytes"}, r"builtins.bytes"),
    ({frozenset(): 1}, r"dict key of type frozenset"),
])
def test_save_rejects_unsupported_values(tmp_path, obj, match):
    path = tmp_path / "c.safetensors"
    save({"old": 1}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=match):
        save(obj, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.safetensors"]


def test_save_rejects_cycles(tmp_path):
    obj = {"a": []}
    obj["a"].append(obj)
    with pytest.raises(ValueError, match=r"contains itself at obj\['a'\]\[0\]"):
        save(obj, tmp_path / "c")
    assert os.listdir(tmp_path) == []


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save({}, tmp_path / "nope" / "c.safetensors")


# -- load errors -------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save({"model": small_model().state_dict(), "epoch": 3}, path)
    return path


def expect_error(path, *phrases):
    with pytest.raises(CheckpointError) as info:
        load(path)
    msg = str(info.value)
    assert msg.startswith("load: ") and str(path) in msg, msg
    for phrase in phrases:
        assert phrase in msg, msg
    return info.value


def test_missing_file(tmp_path):
    err = expect_error(tmp_path / "nope.safetensors", "does not exist")
    assert isinstance(err, CheckpointNotFoundError) and isinstance(err, FileNotFoundError)
    assert isinstance(err, RuntimeError)


def test_directory(tmp_path):
    expect_error(tmp_path, "is a directory")


@pytest.mark.parametrize("content, phrase", [
    (b"", "expected at least 8 bytes"),
    (b"1234", "expected at least 8 bytes"),
    (b"this is a plain text file, not a checkpoint\n" * 3, "above safetensors' limit"),
    ((20).to_bytes(8, "little") + b"not json at all!!!!!", "header is not valid JSON"),
    ((2).to_bytes(8, "little") + b"[]", "expected a JSON object"),
    ((50).to_bytes(8, "little") + b"{}", "header length field says 50 bytes"),
])
def test_not_a_safetensors_file(tmp_path, content, phrase):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    expect_error(path, phrase)


def test_truncated_file(saved):
    raw = saved.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    for cut in [len(raw) - 1, 8 + n + 10, 8 + n, 8 + n // 2, 9]:
        saved.write_bytes(raw[:cut])
        expect_error(saved, "truncated")


def test_tensor_range_out_of_bounds(saved):
    header, data = split_file(saved)
    header["model.0.weight"]["data_offsets"][1] += 1000
    join_file(saved, header, data)
    expect_error(saved, "tensor 'model.0.weight' occupies bytes", "truncated or corrupted")


def test_tensor_range_inconsistent_with_shape(saved):
    header, data = split_file(saved)
    header["model.0.weight"]["shape"] = [4, 4]
    join_file(saved, header, data)
    expect_error(saved, "tensor 'model.0.weight' has shape (4, 4)")


def test_corrupted_tensor_bytes(saved):
    raw = bytearray(saved.read_bytes())
    raw[-3] ^= 0x10  # a bit flip inside the last tensor
    saved.write_bytes(bytes(raw))
    expect_error(saved, "corrupted", "do not match their SHA-256 checksum")


def test_corrupted_metadata(saved):
    header, data = split_file(saved)
    meta = header["__metadata__"]
    meta["deepgrad.checkpoint"] = meta["deepgrad.checkpoint"].replace('"epoch":3', '"epoch":4')
    join_file(saved, header, data)
    expect_error(saved, "metadata does not match its SHA-256 checksum")


def test_damaged_metadata_key(saved):
    header, data = split_file(saved)
    meta = header["__metadata__"]
    meta["deepgrad.checkpoinT"] = meta.pop("deepgrad.checkpoint")
    join_file(saved, header, data)
    expect_error(saved, "corrupted", "no 'deepgrad.checkpoint' entry")


def test_metadata_bad_json(saved):
    header, data = split_file(saved)
    text = "{not json"
    header["__metadata__"] = {"deepgrad.checkpoint": text, "deepgrad.checkpoint.sha256":
                              hashlib.sha256(text.encode()).hexdigest()}
    join_file(saved, header, data)
    expect_error(saved, "metadata is not valid JSON")


def test_newer_format_version(saved):
    rewrite_doc(saved, lambda doc: doc.update(format_version=99, deepgrad_version="9.0"))
    expect_error(saved, "format version 99", "deepgrad 9.0", "A newer deepgrad")


@pytest.mark.parametrize("change, phrase", [
    (lambda d: d["root"]["items"].update(epoch={"$": "pickle", "x": "os.system"}),
     "unknown entry type 'pickle'"),
    (lambda d: d["root"]["items"].update(epoch={"$": "tensor", "key": "nope"}),
     "unknown tensor key 'nope'"),
    (lambda d: d["root"]["items"].update(epoch={"$": "int", "hex": "__import__('os')"}),
     "bad int"),
    (lambda d: d["root"]["items"].update(epoch={"$": "dict", "pairs": [[[1], 2]]}),
     "dict key"),
    (lambda d: d["tensors"]["model.0.bias"].update(dtype="float64"), "metadata says"),
    (lambda d: d["tensors"].pop("model.0.bias"), "list different tensors"),
    (lambda d: d.pop("root"), "lacks 'tensors' or 'root'"),
])
def test_malformed_document(saved, change, phrase):
    rewrite_doc(saved, change)
    expect_error(saved, "corrupted", phrase)


def test_deeply_nested_document_is_an_error_not_a_crash(saved):
    text = ('{"format":"deepgrad.checkpoint","format_version":1,"tensors":{},"root":'
            + "[" * 100_000 + "]" * 100_000 + "}")
    header = {"__metadata__": {"deepgrad.checkpoint": text, "deepgrad.checkpoint.sha256":
                               hashlib.sha256(text.encode()).hexdigest()}}
    join_file(saved, header, b"")
    expect_error(saved, "corrupted")


# -- atomic writes -----------------------------------------------------------------------------

def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    save({"epoch": 1, "w": dg.ones(10)}, path)

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        save({"epoch": 2, "w": dg.zeros(10)}, path)
    monkeypatch.undo()
    assert load(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.safetensors"]


def test_stale_temporary_files_are_cleaned(tmp_path):
    path = tmp_path / "c.safetensors"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".c.safetensors.deepgrad-tmp-{dead.pid}-0123abcd"
    live = tmp_path / f".c.safetensors.deepgrad-tmp-{os.getppid()}-0123abcd"
    other = tmp_path / f".d.safetensors.deepgrad-tmp-{dead.pid}-0123abcd"
    unrelated = tmp_path / ".c.safetensors.deepgrad-tmp-notes"
    for p in (stale, live, other, unrelated):
        p.write_bytes(b"partial")
    save({"epoch": 1}, path)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["c.safetensors", live.name, other.name, unrelated.name])


def test_save_through_symlink_and_overwrite(tmp_path):
    real = tmp_path / "real.safetensors"
    link = tmp_path / "link.safetensors"
    save({"epoch": 1}, real)
    link.symlink_to(real)
    save({"epoch": 2}, link)
    assert link.is_symlink() and load(real)["epoch"] == 2


def test_file_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save({}, tmp_path / "c")
    finally:
        os.umask(old)
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o644


# -- killed in the middle of a save ------------------------------------------------------------

_WRITER = r"""
import sys
import time
import deepgrad as dg
from deepgrad.io import save

path, i, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
while True:
    save({"i": i, "model": {"w": dg.full((n,), float(i)), "b": dg.full((7,), -i)},
          "note": f"save {i}"}, path)
    print(i, flush=True)
    i += 1
"""
_TMP_NAME = re.compile(r"\.ckpt\.safetensors\.deepgrad-tmp-\d+-[0-9a-f]{8}")


def wait_for_temp_file(directory, target, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(f != target for f in os.listdir(directory)):
            return
    raise AssertionError("the writer process never created a temporary file")


def kill_writer_repeatedly(tmp_path, rounds, numel, seed, time_budget):
    """Start a process that saves checkpoints in a loop, SIGKILL it at a random moment (every
    other round: just after a temporary file appears), check the file on disk; repeat.
    Returns how many kills left a temporary file behind (kills inside a save)."""
    rng = random.Random(seed)
    path = tmp_path / "ckpt.safetensors"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(dg.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (repo, os.environ.get("PYTHONPATH")) if p))
    deadline = time.monotonic() + time_budget
    last, mid_save = 0, 0
    for r in range(rounds):
        if time.monotonic() > deadline:
            break
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(last + 1),
                                 str(numel)], stdout=subprocess.PIPE, env=env)
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, "the writer process made no checkpoint within 60 s"
            first = proc.stdout.readline()
            assert first, "the writer process died before its first save"
            if r % 2:
                # aim inside a save: wait until a temporary file appears, then a little more
                wait_for_temp_file(tmp_path, path.name, timeout=10)
                time.sleep(rng.uniform(0.0, 0.002))
            else:
                time.sleep(rng.uniform(0.0, 0.25))
        finally:
            proc.kill()  # SIGKILL: no cleanup handlers run
            proc.wait(timeout=30)
        done = [int(x) for x in (first + proc.stdout.read()).split()]
        proc.stdout.close()
        out = load(path)  # must be complete, checksums included
        i = out["i"]
        # the newest reported save, or the one after it if killed between replace and print
        assert done[-1] <= i <= done[-1] + 1
        np.testing.assert_array_equal(out["model"]["w"].data, np.full(numel, i, np.float32))
        np.testing.assert_array_equal(out["model"]["b"].data, np.full(7, -i))
        assert out["note"] == f"save {i}"
        leftovers = [f for f in os.listdir(tmp_path) if f != path.name]
        assert len(leftovers) <= 1 and all(_TMP_NAME.fullmatch(f) for f in leftovers), leftovers
        mid_save += len(leftovers)
        last = i
    save({"i": 0}, path)  # the next successful save removes the dead writer's temporary file
    assert os.listdir(tmp_path) == [path.name]
    return mid_save


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_sigkill_during_save_keeps_previous_checkpoint(tmp_path):
    mid_save = kill_writer_repeatedly(tmp_path, rounds=6, numel=1_000_000, seed=0,
                                      time_budget=20)
    assert mid_save > 0, "no kill landed inside a save; the test did not exercise anything"


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_sigkill_during_save_many_rounds(tmp_path):
    mid_save = kill_writer_repeatedly(tmp_path, rounds=30, numel=5_000_000, seed=1,
                                      time_budget=120)
    assert mid_save > 0, "no kill landed inside a save; the test did not exercise anything"
