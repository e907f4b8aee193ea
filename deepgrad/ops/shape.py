"""Shape ops: reshape, transpose, expand, repeat, indexing, cat/stack/split, pad."""
from __future__ import annotations

import builtins
import math

import numpy as np

from .. import backend
from ..autograd.function import Function
from ..tensor import Tensor


def _size_args(op: str, sizes) -> tuple:
    """Accept ``f(2, 3)``, ``f((2, 3))`` and ``f([2, 3])`` as PyTorch does."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = sizes[0]
    try:
        return tuple(builtins.int(s) for s in sizes)
    except TypeError:
        raise TypeError(f"{op}: sizes must be integers, got {sizes!r}") from None


def _dim(op: str, dim, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise IndexError(
            f"{op}: dimension out of range; expected dim in [{-ndim}, {ndim - 1}], got {dim}")
    return dim % ndim


class Reshape(Function):
    saves_inputs = False

    def forward(self, x, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.in_shape), None


def reshape(input, *shape):
    """The same data in a new shape; one dim may be -1 (inferred)."""
    shape = _size_args("reshape", shape)
    if shape == input.data.shape:
        return Reshape.apply(input, shape)
    n = input.data.size
    known = math.prod(s for s in shape if s != -1)
    bad = shape.count(-1) > 1 or builtins.any(s < -1 for s in shape) or \
        (-1 in shape and (known == 0 or n % known)) or (-1 not in shape and known != n)
    if bad:
        raise ValueError(
            f"reshape: shape {shape} is invalid for input of shape {input.shape} ({n} elements)")
    return Reshape.apply(input, shape)


def view(input, *shape):
    """Same as ``reshape`` (NumPy decides whether the result shares memory)."""
    if len(shape) == 1 and not isinstance(shape[0], (tuple, list, builtins.int, np.integer)):
        return input.to(shape[0])  # view(dtype)
    return reshape(input, *shape)


def view_as(input, other):
    return reshape(input, other.shape)


reshape_as = view_as


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    """Merge dims ``start_dim..end_dim`` into one."""
    nd = input.data.ndim
    if nd == 0:
        return reshape(input, 1)
    s = _dim("flatten", start_dim, nd)
    e = _dim("flatten", end_dim, nd)
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = input.shape
    return reshape(input, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


def unflatten(input, dim: int, sizes):
    d = _dim("unflatten", dim, input.data.ndim)
    shape = input.shape
    return reshape(input, shape[:d] + tuple(sizes) + shape[d + 1:])


def squeeze(input, dim=None):
    """Remove dims of size 1 (only ``dim`` if given; a dim of another size is left alone)."""
    shape = input.shape
    if dim is None:
        new = tuple(s for s in shape if s != 1)
    else:
        dims = (dim,) if isinstance(dim, (builtins.int, np.integer)) else tuple(dim)
        nd = builtins.max(len(shape), 1)
        drop = {_dim("squeeze", d, nd) for d in dims}
        new = tuple(s for i, s in enumerate(shape) if not (i in drop and s == 1))
    return reshape(input, new)


def unsqueeze(input, dim: int):
    """Insert a dim of size 1 at ``dim``."""
    nd = input.data.ndim + 1
    d = _dim("unsqueeze", dim, nd)
    shape = input.shape
    return reshape(input, shape[:d] + (1,) + shape[d:])


class Permute(Function):
    saves_inputs = False

    def forward(self, x, dims):
        self.dims = dims
        return x.transpose(dims)

    def backward(self, grad):
        return grad.transpose(np.argsort(self.dims)), None


def permute(input, *dims):
    """Reorder dims; ``dims`` is a permutation of ``range(ndim)``."""
    dims = _size_args("permute", dims)
    nd = input.data.ndim
    if len(dims) != nd:
        raise ValueError(
            f"permute: expected {nd} dims for input of shape {input.shape}, got {dims}")
    dims = tuple(_dim("permute", d, builtins.max(nd, 1)) for d in dims)
    if sorted(dims) != list(range(nd)):
        raise ValueError(f"permute: {dims} is not a permutation of the dims of {input.shape}")
    return Permute.apply(input, dims)


def transpose(input, dim0: int, dim1: int):
    """Swap two dims."""
    nd = input.data.ndim
    if nd == 0:
        return input
    d0, d1 = _dim("transpose", dim0, nd), _dim("transpose", dim1, nd)
    dims = list(range(nd))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(input, tuple(dims))


swapaxes = transpose


def t(input):
    """Transpose a tensor of at most 2 dims."""
    if input.data.ndim > 2:
        raise ValueError(f"t: expects a tensor with <= 2 dims, got shape {input.shape}")
    return transpose(input, 0, -1) if input.data.ndim == 2 else input


class Expand(Function):
    saves_inputs = False

    def forward(self, x, shape):
        return np.broadcast_to(x, shape)

    def backward(self, grad):
        return grad, None  # the engine sums the broadcast dims back


def expand(input, *sizes):
    """Broadcast size-1 dims to ``sizes`` without copying; -1 keeps a dim."""
    sizes = _size_args("expand", sizes)
    shape = input.shape
    if len(sizes) < len(shape):
        raise ValueError(
            f"expand: the number of sizes {sizes} must be at least the number of dims of "
            f"{shape}")
    lead = len(sizes) - len(shape)
    out = []
    for i, s in enumerate(sizes):
        if i < lead:
            if s < 0:
                raise ValueError(f"expand: -1 is not allowed for a new leading dim, got {sizes}")
            out.append(s)
            continue
        old = shape[i - lead]
        if s == -1:
            s = old
        if old != s and old != 1:
            raise ValueError(
                f"expand: the size {old} of dim {i - lead} of {shape} must match {s} or be 1; "
                f"sizes {sizes}")
        out.append(s)
    return Expand.apply(input, tuple(out))


def expand_as(input, other):
    return expand(input, other.shape)


def broadcast_to(input, shape):
    return expand(input, tuple(shape))


class Repeat(Function):
    saves_inputs = False

    def forward(self, x, reps):
        self.in_shape = (1,) * (len(reps) - x.ndim) + x.shape
        self.reps = reps
        return np.tile(x.reshape(self.in_shape), reps)

    def backward(self, grad):
        # view the output as (r0, s0, r1, s1, ...) and sum out the repeat axes
        split = []
        for r, s in zip(self.reps, self.in_shape):
            split += [r, s]
        g = grad.reshape(split).sum(axis=tuple(range(0, len(split), 2)))
        return g, None


def repeat(input, *sizes):
    """Tile the tensor ``sizes[i]`` times along each dim (``numpy.tile``)."""
    sizes = _size_args("repeat", sizes)
    if len(sizes) < input.data.ndim:
        raise ValueError(
            f"repeat: the number of repeats {sizes} must be at least the number of dims of "
            f"{input.shape}")
    return Repeat.apply(input, sizes)


# -- indexing ---------------------------------------------------------------------------------


def _index_key(key, shape=None):
    """Turn tensors and lists in an index into arrays; report whether indexing is advanced.

    With ``shape``, a boolean mask is checked against the dims it covers.
    """
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    advanced = False
    dim = 0  # the input dim the next index item applies to (until an Ellipsis)
    for k in key:
        if isinstance(k, Tensor):
            k = k.data
        elif isinstance(k, list):
            k = np.asarray(k)
        if isinstance(k, np.ndarray):
            advanced = True
            if k.dtype == np.bool_:
                covered = shape[dim:dim + k.ndim] if shape is not None and dim >= 0 else None
                if covered is not None and covered != k.shape:
                    raise IndexError(
                        f"getitem: boolean mask of shape {k.shape} does not match the indexed "
                        f"dims {covered} of the tensor of shape {shape}")
                out.extend(np.nonzero(k))  # same elements, but add.at needs integer indices
                dim = dim + k.ndim if dim >= 0 else dim
                continue
            if k.dtype.kind not in "iu":
                raise IndexError(
                    f"getitem: tensors used as indices must be integer or bool, got {k.dtype}")
        elif k is not None and k is not Ellipsis and not isinstance(
                k, (builtins.int, np.integer, slice)):
            raise IndexError(f"getitem: unsupported index {k!r}")
        if k is Ellipsis:
            dim = -1  # positions after an Ellipsis are not tracked; NumPy checks those
        elif k is not None and dim >= 0:
            dim += 1
        out.append(k)
    return tuple(out), advanced


class GetItem(Function):
    saves_inputs = False

    def forward(self, x, key, advanced):
        self.shape = x.shape
        self.dtype = x.dtype
        self.key = key
        self.advanced = advanced
        return x[key]

    def backward(self, grad):
        gx = np.zeros(self.shape, self.dtype)
        if self.advanced:
            np.add.at(gx, self.key, grad)  # repeated indices accumulate
        else:
            gx[self.key] = grad
        return gx, None, None


def getitem(input, key):
    key, advanced = _index_key(key, input.data.shape)
    try:
        return GetItem.apply(input, key, advanced)
    except IndexError as e:
        raise IndexError(f"getitem: {e} (tensor of shape {input.shape})") from None


# -- joining and splitting ------------------------------------------------------------------


def _common_dtype(op: str, tensors):
    dt = tensors[0].data.dtype
    for x in tensors[1:]:
        dt = backend.promote_types(dt, x.data.dtype)
    return [x if x.data.dtype == dt else x.to(dt) for x in tensors]


class Cat(Function):
    saves_inputs = False

    def forward(self, *arrays, axis):
        self.axis = axis
        self.bounds = np.cumsum([a.shape[axis] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=axis)

    def backward(self, grad):
        return tuple(np.split(grad, self.bounds, axis=self.axis))


def cat(tensors, dim: int = 0):
    """Join tensors along an existing dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    # PyTorch skips 1-d empty tensors in cat, a common idiom for accumulating
    tensors = [x for x in tensors if not (x.data.ndim == 1 and x.data.size == 0)] or tensors[:1]
    tensors = _common_dtype("cat", tensors)
    ref = tensors[0].shape
    d = _dim("cat", dim, builtins.max(len(ref), 1))
    for x in tensors:
        s = x.shape
        if len(s) != len(ref) or s[:d] + s[d + 1:] != ref[:d] + ref[d + 1:]:
            shapes = ", ".join(str(x.shape) for x in tensors)
            raise ValueError(
                f"cat: tensors must have the same shape except in dim {dim}; got shapes {shapes}")
    if len(tensors) == 1:
        return tensors[0]
    return Cat.apply(*tensors, axis=d)


concat = concatenate = cat


class Stack(Function):
    saves_inputs = False

    def forward(self, *arrays, axis):
        self.axis = axis
        return np.stack(arrays, axis=axis)

    def backward(self, grad):
        n = grad.shape[self.axis]
        return tuple(np.take(grad, i, axis=self.axis) for i in range(n))


def stack(tensors, dim: int = 0):
    """Join tensors of equal shape along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    tensors = _common_dtype("stack", tensors)
    ref = tensors[0].shape
    if builtins.any(x.shape != ref for x in tensors):
        shapes = ", ".join(str(x.shape) for x in tensors)
        raise ValueError(f"stack: all tensors must have the same shape; got shapes {shapes}")
    d = _dim("stack", dim, len(ref) + 1)
    return Stack.apply(*tensors, axis=d)


class Split(Function):
    saves_inputs = False

    def forward(self, x, bounds, axis):
        self.axis = axis
        return tuple(np.split(x, bounds, axis=axis))

    def backward(self, *grads):
        return np.concatenate(grads, axis=self.axis), None, None


def split(tensor, split_size_or_sections, dim: int = 0):
    """Split into chunks of a given size (the last may be smaller) or of listed sizes."""
    d = _dim("split", dim, builtins.max(tensor.data.ndim, 1))
    n = tensor.shape[d]
    if isinstance(split_size_or_sections, (builtins.int, np.integer)):
        size = builtins.int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
        if n == 0:
            sizes = [0]
    else:
        sizes = [builtins.int(s) for s in split_size_or_sections]
        if builtins.sum(sizes) != n:
            raise ValueError(
                f"split: sections {sizes} must add up to the size {n} of dim {dim} of "
                f"{tensor.shape}")
    bounds = list(np.cumsum(sizes)[:-1])
    return Split.apply(tensor, bounds, d)


def chunk(input, chunks: int, dim: int = 0):
    """Split into ``chunks`` pieces of size ceil(n / chunks); fewer if n is too small."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    d = _dim("chunk", dim, builtins.max(input.data.ndim, 1))
    n = input.shape[d]
    return split(input, builtins.max(-(-n // chunks), 1), d)


def unbind(input, dim: int = 0):
    d = _dim("unbind", dim, input.data.ndim)
    return tuple(squeeze(p, d) for p in split(input, 1, d))


# -- padding ------------------------------------------------------------------------------


# np.pad's names for torch's padding modes
_NP_PAD_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
                "circular": "wrap"}
PAD_MODES = tuple(_NP_PAD_MODE)


def _source_index(i: int, n: int, mode: str) -> int:
    """The index, in a dim of size n, that padded position i (0 = first input element) copies."""
    if mode == "reflect":
        i = builtins.abs(i)
        return 2 * (n - 1) - i if i > n - 1 else i
    if mode == "replicate":
        return builtins.min(builtins.max(i, 0), n - 1)
    return i % n  # circular


class Pad(Function):
    saves_inputs = False

    def forward(self, x, widths, mode, value):
        self.shape = x.shape
        self.widths = widths
        self.mode = mode
        if mode == "constant":
            return np.pad(x, widths, mode="constant", constant_values=value)
        return np.pad(x, widths, mode=_NP_PAD_MODE[mode])

    def backward(self, grad):
        if self.mode == "constant":
            inner = tuple(slice(lo, lo + n) for (lo, _), n in zip(self.widths, self.shape))
            return grad[inner], None, None, None
        # Every padded position copies one input position per axis, so, axis by axis, the
        # gradient of the inner block plus each margin column added onto the column it copied.
        # Margins are a few columns wide: a loop over them beats a scatter (np.add.at).
        g = grad
        for axis, ((lo, hi), n) in enumerate(zip(self.widths, self.shape)):
            if lo == 0 and hi == 0:
                continue
            gm = np.moveaxis(g, axis, -1)
            acc = gm[..., lo:lo + n].copy()
            for k in (*range(lo), *range(lo + n, lo + n + hi)):
                acc[..., _source_index(k - lo, n, self.mode)] += gm[..., k]
            g = np.moveaxis(acc, -1, axis)
        return g, None, None, None


def pad_widths(input, widths, mode: str = "constant", value: float = 0.0, op: str = "pad"):
    """Pad ``input`` by ``widths``, one ``(before, after)`` pair per dim (``np.pad``'s form).

    The checked entry point shared by ``pad`` and the layers with a ``padding_mode``.
    """
    if mode not in _NP_PAD_MODE:
        raise ValueError(f"{op}: mode must be one of {PAD_MODES}, got {mode!r}")
    for (lo, hi), n in zip(widths, input.shape):
        if lo < 0 or hi < 0:
            raise ValueError(f"{op}: negative padding {widths} is not supported; slice instead")
        if not (lo or hi) or mode == "constant":
            continue
        if mode == "reflect" and (lo >= n or hi >= n):
            raise ValueError(
                f"{op}: reflect padding must be smaller than the padded dim; got "
                f"{(lo, hi)} for a dim of size {n} in input of shape {input.shape}")
        if mode == "replicate" and n == 0:
            raise ValueError(f"{op}: can't replicate-pad an empty dim of {input.shape}")
        if mode == "circular" and (lo > n or hi > n):
            raise ValueError(
                f"{op}: circular padding must be at most the padded dim; got {(lo, hi)} for "
                f"a dim of size {n} in input of shape {input.shape}")
    return Pad.apply(input, tuple(widths), mode, value)


def pad(input, pad, mode: str = "constant", value: float = 0.0):
    """Pad the last ``len(pad) // 2`` dims: ``pad = (left_last, right_last, left_prev, ...)``.

    Modes as in ``torch.nn.functional.pad``: 'constant' (with ``value``), 'reflect',
    'replicate', 'circular'.
    """
    pad = tuple(builtins.int(p) for p in pad)
    nd = input.data.ndim
    if len(pad) % 2 or len(pad) // 2 > nd:
        raise ValueError(
            f"pad: padding {pad} must have an even length of at most 2 * ndim = {2 * nd} "
            f"for input of shape {input.shape}")
    if builtins.any(p < 0 for p in pad):
        raise ValueError(f"pad: negative padding {pad} is not supported; slice instead")
    widths = [(0, 0)] * nd
    for i in range(len(pad) // 2):
        widths[nd - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return pad_widths(input, widths, mode, value)
