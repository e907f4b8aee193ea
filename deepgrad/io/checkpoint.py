"""``save``/``load``: checkpoints as safetensors files, written atomically.

A checkpoint is one safetensors file. Every array in the saved object (deepgrad Tensors and
ndarrays) becomes a tensor of the file, named by its flattened key path (``'0.weight'`` for a
flat state dict, ``'optimizer.state.0.exp_avg'`` inside a trainer checkpoint), so other tools
(``safetensors.numpy.load_file``, ``safetensors.torch.load_file``) read the arrays directly.
Everything else (the nesting, dict keys of any simple type, tuples, numbers, strings, the
numpy RNG state with its 128-bit ints) goes into a JSON document kept in the safetensors
header's ``__metadata__``, together with the format version, the deepgrad version and a
SHA-256 checksum of every tensor's bytes; a second metadata entry holds the SHA-256 of that
document. ``load`` checks all of it, so a truncated or corrupted file raises
``CheckpointError`` instead of returning wrong numbers.

Nothing is pickled: loading an untrusted file parses JSON and copies raw arrays, and can only
ever build dicts, lists, tuples, numbers, strings, dtypes, ndarrays and Tensors.

Writes go to a temporary file next to the target (``.<name>.deepgrad-tmp-<pid>-<hex>``),
which is flushed, fsynced and renamed over the target with ``os.replace``, and then the
directory is fsynced. A process killed mid-save leaves the previous checkpoint intact; its
temporary file is removed by the next successful save to the same path.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import sys
import time
from collections import OrderedDict
from typing import Any, BinaryIO, Union

import numpy as np

from ..nn.parameter import Parameter
from ..tensor import Tensor

FORMAT_VERSION = 1
"""Version of the layout of the JSON document; ``load`` refuses newer versions."""

_FORMAT_NAME = "deepgrad.checkpoint"
_META_DOC = "deepgrad.checkpoint"
_META_SHA = "deepgrad.checkpoint.sha256"
_TMP_MARK = ".deepgrad-tmp-"
_TMP_RE = re.compile(r"(\d+)-[0-9a-f]{8}")
# safetensors refuses headers above 100 MB; a larger length field means "not a safetensors file"
_MAX_HEADER = 100_000_000
# ints beyond what a float64 holds exactly are written as hex strings, so that JSON readers
# other than Python's keep them exact, and so that reading them is not subject to Python's
# limit on decimal int conversion
_EXACT_INT = 2 ** 53
# dtypes that safetensors stores natively and NumPy reads back exactly
_DTYPES = frozenset(("bool", "uint8", "int8", "int16", "uint16", "int32", "uint32", "int64",
                     "uint64", "float16", "float32", "float64"))
_ST_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2,
                "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
                "C64": 8}
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_HEX_RE = re.compile(r"-?0x[0-9a-f]+")

PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be loaded: missing, not a safetensors file, truncated,
    corrupted, or written in a newer format. The message names the file and the problem."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist (also a ``FileNotFoundError``)."""


# -- public API --------------------------------------------------------------------------------

def save(obj: Any, f: PathLike | BinaryIO) -> None:
    """Save ``obj`` (a state dict, an optimizer state dict, a training checkpoint) to ``f``.

    Args:
        obj: a nested structure of dicts (any simple key type: str, int, float, bool, None,
            tuples of those; ``OrderedDict`` is kept), lists, tuples, deepgrad Tensors (and
            Parameters, keeping ``requires_grad``), ndarrays, NumPy scalars and dtypes, Python
            ints (any size), floats (also nan/inf), strings, bools and None. Other dict and
            tuple subclasses (``defaultdict``, namedtuples) are saved as plain dicts and tuples.
            Tensors' ``.grad`` is not saved.
        f: a file path (written atomically: temporary file, fsync, ``os.replace``), or a
            binary file object with ``write`` (written as is).

    Raises:
        TypeError: ``obj`` holds a value of another type or an array of an unsupported dtype
            (the message gives its key path); nothing is written then.
        ValueError: ``obj`` contains itself.

    Example:
        >>> deepgrad.save({"model": model.state_dict(), "epoch": 3}, "ckpt.safetensors")
        >>> ckpt = deepgrad.load("ckpt.safetensors")
        >>> model.load_state_dict(ckpt["model"])
    """
    if not isinstance(f, (str, os.PathLike)) and not hasattr(f, "write"):
        raise TypeError(
            f"save: f must be a path (str or os.PathLike) or a binary file object, "
            f"got {type(f).__name__}")
    st_numpy = _import_safetensors("save")[1]
    encoder = _Encoder()
    root = encoder.encode(obj, ())
    names = list(encoder.arrays)
    for name, digest in zip(names, _sha256_all([encoder.arrays[n] for n in names])):
        encoder.info[name]["sha256"] = digest
    from .. import __version__

    doc = {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "deepgrad_version": __version__,
        "tensors": encoder.info,
        "root": root,
    }
    # ensure_ascii keeps the header plain ASCII whatever the keys contain
    doc_text = json.dumps(doc, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    metadata = {_META_DOC: doc_text, _META_SHA: _sha256_text(doc_text)}
    data = st_numpy.save(encoder.arrays, metadata=metadata)
    if isinstance(f, (str, os.PathLike)):
        _atomic_write(os.fspath(f), data)
    else:
        f.write(data)


def load(f: PathLike | BinaryIO, map_location: Any = None,
         weights_only: bool | None = True) -> Any:
    """Load what ``save`` wrote: the same nested structure, arrays as deepgrad Tensors.

    Dict key types, ``OrderedDict``, tuples, big ints, nan/inf and array dtypes (float16/32/64,
    (u)int8-64, bool; shapes including 0-d and empty) come back as saved; Tensors are new leaf
    tensors with their own writable memory; ndarrays come back as ndarrays. A safetensors file
    written by another tool (no deepgrad metadata) loads as an ``OrderedDict`` of name to Tensor.

    Args:
        f: a file path, or a binary file object with ``read``.
        map_location: accepted for PyTorch compatibility and ignored (deepgrad runs on CPU).
        weights_only: accepted for PyTorch compatibility and ignored: loading never runs code
            (JSON and raw arrays only), as with PyTorch's ``weights_only=True``.

    Raises:
        CheckpointError: the file is not a safetensors file, is truncated or corrupted (header,
            metadata or tensor bytes fail their checks), or has a newer format version.
        CheckpointNotFoundError: the file does not exist (a ``CheckpointError`` and a
            ``FileNotFoundError``).
        OSError: other I/O errors, e.g. permission denied.

    Example:
        >>> state = deepgrad.load("model.safetensors")
        >>> model.load_state_dict(state)
    """
    del map_location, weights_only
    safetensors, st_numpy = _import_safetensors("load")
    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        where = f"checkpoint {path!r}"
        _check_file(path, where)
        try:
            with safetensors.safe_open(path, framework="np") as handle:
                metadata = handle.metadata() or {}
                arrays = {name: handle.get_tensor(name) for name in handle.keys()}
        except FileNotFoundError:
            raise CheckpointNotFoundError(
                f"load: no checkpoint at {path!r}; the file does not exist") from None
        except Exception as e:  # safetensors raises its own error type, or numpy a TypeError
            raise CheckpointError(
                f"load: {where} could not be read by safetensors: {e}") from e
    elif hasattr(f, "read"):
        name = getattr(f, "name", None)
        where = f"checkpoint {name!r}" if isinstance(name, str) else \
            f"checkpoint in a {type(f).__name__} object"
        data = f.read()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"load: the file object must be opened in binary mode; read() returned "
                f"{type(data).__name__}")
        data = bytes(data)
        header = _check_header(_BytesSource(data), len(data), where)
        metadata = header.get("__metadata__") or {}
        try:
            arrays = st_numpy.load(data)
        except Exception as e:
            raise CheckpointError(
                f"load: {where} could not be read by safetensors: {e}") from e
    else:
        raise TypeError(
            f"load: f must be a path (str or os.PathLike) or a binary file object, "
            f"got {type(f).__name__}")
    if _META_DOC not in metadata:
        if any(key.startswith("deepgrad") for key in metadata):
            raise CheckpointError(
                f"load: {where} is corrupted; its header has deepgrad metadata "
                f"({sorted(metadata)!r:.200}) but no {_META_DOC!r} entry")
        # a plain safetensors file from another tool: a flat state dict
        return OrderedDict((name, Tensor(_writable(a))) for name, a in arrays.items())
    return _restore(metadata, arrays, where)


# -- saving ------------------------------------------------------------------------------------

class _Encoder:
    """Turns the saved object into a JSON-able tree plus a dict of named arrays."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.info: dict[str, dict] = {}
        self._names_by_id: dict[int, str] = {}
        self._originals: list[np.ndarray] = []  # keeps ids in _names_by_id unique
        self._active: set[int] = set()

    def encode(self, obj: Any, path: tuple) -> Any:
        t = type(obj)
        if obj is None or t is bool or t is str:
            return obj
        if t is int:
            return _encode_int(obj)
        if t is float:
            return _encode_float(obj)
        if isinstance(obj, Tensor):
            tag = "parameter" if isinstance(obj, Parameter) else "tensor"
            node: dict[str, Any] = {"$": tag, "key": self._add_array(obj.data, path)}
            if obj.requires_grad:
                node["requires_grad"] = True
            return node
        if isinstance(obj, np.ndarray):
            return {"$": "ndarray", "key": self._add_array(obj, path)}
        if isinstance(obj, (np.generic, np.dtype)):
            return _encode_numpy_scalar(obj, path)
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in self._active:
                raise ValueError(
                    f"save: the object contains itself at {_path_str(path)}; expected a tree "
                    f"of dicts, lists and tuples without cycles")
            self._active.add(id(obj))
            try:
                return self._encode_container(obj, path)
            finally:
                self._active.discard(id(obj))
        raise TypeError(
            f"save: cannot save a {t.__module__}.{t.__qualname__} at {_path_str(path)}; "
            f"expected Tensor, ndarray, dict, list, tuple, int, float, str, bool or None"
            + _type_hint(obj))

    def _encode_container(self, obj: Any, path: tuple) -> Any:
        if isinstance(obj, list):
            return [self.encode(v, path + (i,)) for i, v in enumerate(obj)]
        if isinstance(obj, tuple):
            return {"$": "tuple", "items": [self.encode(v, path + (i,)) for i, v in enumerate(obj)]}
        tag = "odict" if isinstance(obj, OrderedDict) else "dict"
        if all(type(k) is str for k in obj):
            return {"$": tag, "items": {k: self.encode(v, path + (k,)) for k, v in obj.items()}}
        pairs = [[_encode_key(k, path), self.encode(v, path + (k,))] for k, v in obj.items()]
        return {"$": tag, "pairs": pairs}

    def _add_array(self, arr: np.ndarray, path: tuple) -> str:
        # the same array reached twice (tied weights, a Tensor and its .data) is stored once
        name = self._names_by_id.get(id(arr))
        if name is not None:
            return name
        if isinstance(arr, np.ma.MaskedArray):
            raise TypeError(
                f"save: cannot save a masked array at {_path_str(path)}; expected a plain "
                f"ndarray. Save .data and .mask separately?")
        if arr.dtype.name not in _DTYPES or arr.dtype.fields is not None:
            raise TypeError(
                f"save: unsupported dtype at {_path_str(path)}; expected one of "
                f"{', '.join(sorted(_DTYPES))}, got {arr.dtype}")
        out = np.asarray(arr, order="C")
        if not out.dtype.isnative:
            out = out.astype(out.dtype.newbyteorder("="))
        name = _unique_name(".".join(str(c) for c in path) or "tensor", self.arrays)
        self.arrays[name] = out
        self.info[name] = {"dtype": out.dtype.name, "shape": list(out.shape), "sha256": ""}
        self._names_by_id[id(arr)] = name
        self._originals.append(arr)
        return name


def _encode_int(value: int) -> Any:
    if -_EXACT_INT < value < _EXACT_INT:
        return value
    return {"$": "int", "hex": hex(value)}


def _encode_float(value: float) -> Any:
    if math.isfinite(value):
        return value  # json writes repr(), which reads back bit for bit
    return {"$": "float", "value": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _encode_numpy_scalar(obj: Any, path: tuple) -> Any:
    dtype = obj if isinstance(obj, np.dtype) else obj.dtype
    if dtype.name not in _DTYPES or dtype.fields is not None:
        raise TypeError(
            f"save: unsupported NumPy {'dtype' if obj is dtype else 'scalar'} at "
            f"{_path_str(path)}; expected one of {', '.join(sorted(_DTYPES))}, got {dtype}")
    if obj is dtype:
        return {"$": "dtype", "name": dtype.name}
    value = obj.item()
    encoded = value if type(value) is bool else (
        _encode_int(value) if type(value) is int else _encode_float(value))
    return {"$": "scalar", "dtype": dtype.name, "value": encoded}


def _encode_key(key: Any, path: tuple) -> Any:
    t = type(key)
    if key is None or t is bool or t is str:
        return key
    if t is int:
        return _encode_int(key)
    if t is float:
        return _encode_float(key)
    if isinstance(key, np.generic):
        return _encode_numpy_scalar(key, path)
    if isinstance(key, tuple):
        return {"$": "tuple", "items": [_encode_key(k, path) for k in key]}
    raise TypeError(
        f"save: cannot save a dict key of type {t.__name__} ({key!r}) in {_path_str(path)}; "
        f"expected str, int, float, bool, None or a tuple of those")


def _unique_name(name: str, taken: dict) -> str:
    # distinct key paths can flatten to one name ({0: a, '0': b}); '__metadata__' is reserved
    # by safetensors for the header's metadata; names must be valid UTF-8 (no lone surrogates)
    name = name.encode("utf-8", "backslashreplace").decode("utf-8")
    if name not in taken and name != "__metadata__":
        return name
    i = 2
    while f"{name}#{i}" in taken:
        i += 1
    return f"{name}#{i}"


def _type_hint(obj: Any) -> str:
    if hasattr(obj, "state_dict"):
        return ". Save its state_dict() instead?"
    if hasattr(obj, "get_state"):
        return ". Save its get_state() instead?"
    return ""


def _atomic_write(path: str, data: bytes) -> None:
    # write through symlinks to the file they name, as a plain open() would
    target = os.path.realpath(path)
    directory, base = os.path.split(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"save: cannot write {path!r}; the directory {directory!r} does not exist")
    prefix = _tmp_prefix(base)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = os.path.join(directory, f"{prefix}{os.getpid()}-{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)
    _remove_stale_temps(directory, prefix)


def _tmp_prefix(base: str) -> str:
    prefix = f".{base}{_TMP_MARK}"
    if len(os.fsencode(prefix)) > 200:  # stay below NAME_MAX (255 bytes) with the suffix
        prefix = f".{hashlib.sha256(os.fsencode(base)).hexdigest()[:16]}{_TMP_MARK}"
    return prefix


def _fsync_dir(directory: str) -> None:
    # makes the rename itself durable; only POSIX can open a directory for fsync
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the data itself is synced
    finally:
        os.close(fd)


def _remove_stale_temps(directory: str, prefix: str) -> None:
    """Delete temporary files of earlier saves to this path whose writer has died."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        m = _TMP_RE.fullmatch(entry.name[len(prefix):])
        if m is None or not _writer_gone(int(m.group(1)), entry):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            pass


def _writer_gone(pid: int, entry: os.DirEntry) -> bool:
    if os.name != "posix":
        # no safe liveness probe (os.kill would terminate the process); go by age instead
        try:
            return time.time() - entry.stat().st_mtime > 3600
        except OSError:
            return False
    if pid == os.getpid():
        return False  # another thread of this process may be saving to the same path
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists but belongs to someone else
    return False


# -- loading -----------------------------------------------------------------------------------

class _BytesSource:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_at(self, offset: int, size: int) -> bytes:
        return self.data[offset:offset + size]


class _FileSource:
    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh

    def read_at(self, offset: int, size: int) -> bytes:
        self.fh.seek(offset)
        return self.fh.read(size)


def _check_file(path: str, where: str) -> None:
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise CheckpointNotFoundError(
            f"load: no checkpoint at {path!r}; the file does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(
            f"load: {where} is a directory; expected a checkpoint file") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        _check_header(_FileSource(fh), size, where)


def _check_header(src: Any, size: int, where: str) -> dict:
    """Validate the safetensors framing and return the parsed header.

    safetensors checks this too, but its messages do not say what is wrong in user terms.
    """
    if size < 8:
        raise CheckpointError(
            f"load: {where} is not a safetensors file (or is truncated); expected at least "
            f"8 bytes (the header length), got {size}")
    n = int.from_bytes(src.read_at(0, 8), "little")
    if n > _MAX_HEADER:
        raise CheckpointError(
            f"load: {where} is not a safetensors file; its first 8 bytes give a header "
            f"length of {n} bytes, above safetensors' limit of {_MAX_HEADER}")
    if n > size - 8:
        raise CheckpointError(
            f"load: {where} is truncated or not a safetensors file; its header length "
            f"field says {n} bytes, but only {size - 8} bytes follow")
    raw = src.read_at(8, n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(
            f"load: {where} is not a safetensors file or its header is corrupted; the "
            f"header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(
            f"load: {where} is not a safetensors file or its header is corrupted; expected "
            f"a JSON object as header, got {type(header).__name__}")
    data_len = size - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            if entry is not None and not (isinstance(entry, dict) and all(
                    isinstance(v, str) for v in entry.values())):
                raise CheckpointError(
                    f"load: {where} has a corrupted header; __metadata__ must map strings "
                    f"to strings")
            continue
        _check_entry(name, entry, data_len, where)
    return header


def _check_entry(name: str, entry: Any, data_len: int, where: str) -> None:
    ok = (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
          and isinstance(entry.get("shape"), list)
          and all(type(d) is int and d >= 0 for d in entry["shape"])
          and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
          and all(type(o) is int for o in entry["data_offsets"]))
    if not ok:
        raise CheckpointError(
            f"load: {where} has a corrupted header; the entry of tensor {name!r} needs "
            f"dtype, shape and data_offsets, got {entry!r:.200}")
    begin, end = entry["data_offsets"]
    if not 0 <= begin <= end <= data_len:
        raise CheckpointError(
            f"load: {where} is truncated or corrupted; tensor {name!r} occupies bytes "
            f"[{begin}, {end}) of the data section, which holds {data_len} bytes")
    itemsize = _ST_ITEMSIZE.get(entry["dtype"])
    if itemsize is not None:
        need = math.prod(entry["shape"]) * itemsize
        if need != end - begin:
            raise CheckpointError(
                f"load: {where} is corrupted; tensor {name!r} has shape "
                f"{tuple(entry['shape'])} and dtype {entry['dtype']} ({need} bytes), but its "
                f"byte range holds {end - begin} bytes")


def _restore(metadata: dict, arrays: dict, where: str) -> Any:
    doc_text = metadata[_META_DOC]
    if metadata.get(_META_SHA) != _sha256_text(doc_text):
        raise CheckpointError(
            f"load: {where} is corrupted; its deepgrad metadata does not match its SHA-256 "
            f"checksum")
    try:
        doc = json.loads(doc_text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise CheckpointError(
            f"load: {where} is corrupted; its deepgrad metadata is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT_NAME:
        raise CheckpointError(
            f"load: {where} is corrupted; expected deepgrad metadata with format "
            f"{_FORMAT_NAME!r}, got {str(doc)[:100]!r}")
    version = doc.get("format_version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        from .. import __version__

        raise CheckpointError(
            f"load: {where} has checkpoint format version {version!r} (written by deepgrad "
            f"{doc.get('deepgrad_version')!s:.40}); expected a version from 1 to "
            f"{FORMAT_VERSION}, which deepgrad {__version__} reads. A newer deepgrad may "
            f"read it.")
    info = doc.get("tensors")
    if not isinstance(info, dict) or "root" not in doc:
        raise CheckpointError(
            f"load: {where} is corrupted; its deepgrad metadata lacks 'tensors' or 'root'")
    missing = sorted(set(info) - set(arrays))
    unexpected = sorted(set(arrays) - set(info))
    if missing or unexpected:
        raise CheckpointError(
            f"load: {where} is corrupted; the metadata and the file list different tensors "
            f"(missing from the file: {missing[:10]}, not in the metadata: {unexpected[:10]})")
    for name, arr in arrays.items():
        _verify_array(name, arr, info[name], where)
    names = list(arrays)
    for name, digest in zip(names, _sha256_all([arrays[n] for n in names])):
        if info[name].get("sha256") != digest:
            raise CheckpointError(
                f"load: {where} is corrupted; the bytes of tensor {name!r} do not match "
                f"their SHA-256 checksum")
    return _Decoder(arrays, where).decode(doc["root"], ())


def _verify_array(name: str, arr: np.ndarray, entry: Any, where: str) -> None:
    if not (isinstance(entry, dict) and entry.get("dtype") == arr.dtype.name
            and entry.get("shape") == list(arr.shape)):
        got = entry if not isinstance(entry, dict) else (entry.get("dtype"), entry.get("shape"))
        raise CheckpointError(
            f"load: {where} is corrupted; tensor {name!r} is {arr.dtype.name} of shape "
            f"{arr.shape} in the file, but the metadata says {got!r:.100}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


class _Decoder:
    """Rebuilds the saved object from the JSON tree; anything unexpected is corruption."""

    def __init__(self, arrays: dict, where: str) -> None:
        self.arrays = {name: _writable(a) for name, a in arrays.items()}
        self.where = where

    def fail(self, path: tuple, what: str) -> CheckpointError:
        return CheckpointError(
            f"load: {self.where} is corrupted; malformed entry at {_path_str(path)}: {what}")

    def decode(self, node: Any, path: tuple) -> Any:
        try:
            return self._decode(node, path)
        except RecursionError:
            raise self.fail(path, "nested too deeply") from None

    def _decode(self, node: Any, path: tuple) -> Any:
        t = type(node)
        if node is None or t is bool or t is str or t is int or t is float:
            return node
        if t is list:
            return [self._decode(v, path + (i,)) for i, v in enumerate(node)]
        if t is not dict:
            raise self.fail(path, f"unexpected JSON value of type {t.__name__}")
        tag = node.get("$")
        if tag in ("dict", "odict"):
            out = OrderedDict() if tag == "odict" else {}
            if isinstance(node.get("items"), dict):
                for k, v in node["items"].items():
                    out[k] = self._decode(v, path + (k,))
            elif isinstance(node.get("pairs"), list):
                for pair in node["pairs"]:
                    if not (isinstance(pair, list) and len(pair) == 2):
                        raise self.fail(path, "a dict entry is not a [key, value] pair")
                    key = self._decode_key(pair[0], path)
                    out[key] = self._decode(pair[1], path + (key,))
            else:
                raise self.fail(path, "a dict without 'items' or 'pairs'")
            return out
        if tag == "tuple":
            items = self._items(node, path)
            return tuple(self._decode(v, path + (i,)) for i, v in enumerate(items))
        if tag in ("tensor", "parameter", "ndarray"):
            arr = self.arrays.get(node.get("key"))
            if arr is None:
                raise self.fail(path, f"unknown tensor key {node.get('key')!r:.100}")
            if tag == "ndarray":
                return arr
            requires_grad = node.get("requires_grad", False)
            if type(requires_grad) is not bool or (requires_grad and arr.dtype.kind != "f"):
                raise self.fail(path, f"bad requires_grad {requires_grad!r:.20}")
            if tag == "parameter":
                return Parameter(arr, requires_grad=requires_grad)
            return Tensor(arr, requires_grad=requires_grad)
        return self._decode_scalar(node, path)

    def _decode_scalar(self, node: dict, path: tuple) -> Any:
        tag = node.get("$")
        if tag == "int":
            text = node.get("hex")
            if not isinstance(text, str) or not _HEX_RE.fullmatch(text):
                raise self.fail(path, f"bad int {text!r:.100}")
            return int(text, 16)
        if tag == "float":
            value = _NONFINITE.get(node.get("value"))  # type: ignore[arg-type]
            if value is None:
                raise self.fail(path, f"bad float {node.get('value')!r:.100}")
            return value
        if tag == "dtype":
            name = node.get("name")
            if name not in _DTYPES:
                raise self.fail(path, f"unsupported dtype {name!r:.100}")
            return np.dtype(name)
        if tag == "scalar":
            name = node.get("dtype")
            value = self._decode(node.get("value"), path)
            if name not in _DTYPES or type(value) not in (bool, int, float):
                raise self.fail(path, f"bad NumPy scalar of dtype {name!r:.100}")
            try:
                return np.dtype(name).type(value)
            except (OverflowError, ValueError):
                raise self.fail(path, f"value out of range for {name}") from None
        raise self.fail(path, f"unknown entry type {tag!r:.100}")

    def _decode_key(self, node: Any, path: tuple) -> Any:
        if isinstance(node, dict) and node.get("$") == "tuple":
            return tuple(self._decode_key(v, path) for v in self._items(node, path))
        if isinstance(node, (list, dict)) and not (
                isinstance(node, dict) and node.get("$") in ("int", "float", "scalar")):
            raise self.fail(path, "a dict key that is not a number, string, bool, None or tuple")
        return self._decode(node, path)

    def _items(self, node: dict, path: tuple) -> list:
        items = node.get("items")
        if not isinstance(items, list):
            raise self.fail(path, "a tuple without an 'items' list")
        return items


# -- helpers -----------------------------------------------------------------------------------

def _import_safetensors(op: str) -> tuple:
    try:
        import safetensors
        import safetensors.numpy as st_numpy
    except ImportError as e:
        raise ImportError(
            f"{op}: checkpoints need the optional package 'safetensors'; install it with "
            f"pip install 'deepgrad[train]' (or pip install safetensors)") from e
    return safetensors, st_numpy


def _writable(arr: np.ndarray) -> np.ndarray:
    # optimizers update loaded state in place
    return arr if arr.flags.writeable else arr.copy()


def _sha256_all(arrays: list) -> list:
    # one thread: hashing on a pool measured no faster on a busy two-core machine
    return [_sha256_array(a) for a in arrays]


def _sha256_array(arr: np.ndarray) -> str:
    if sys.byteorder == "big" and arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder("<"))  # hash the bytes as stored in the file
    return hashlib.sha256(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data).hexdigest()


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _path_str(path: tuple) -> str:
    return "obj" + "".join(f"[{c!r}]" for c in path)
