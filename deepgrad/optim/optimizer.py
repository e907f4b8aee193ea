"""``Optimizer``: the base class of every optimizer, with PyTorch's protocol.

An optimizer holds ``param_groups`` (a list of dicts: ``'params'`` and the hyper-parameters of
those parameters) and ``state`` (a dict from parameter to that parameter's buffers). Subclasses
implement ``step``; the base class does the bookkeeping: building and validating groups,
``zero_grad``, and ``state_dict`` / ``load_state_dict`` in PyTorch's layout.

The built-in optimizers are elementwise: each writes its algorithm once, as ``_update`` on
arrays, and ``_ElementwiseOptimizer.step`` runs it. How that step stays cheap:
- Every update is written in place into ``p.data`` and the state arrays with NumPy ``out=``; the
  graph is never involved, so nothing is recorded (what ``no_grad`` guarantees in PyTorch).
- Hyper-parameters become 0-d arrays of the parameter's dtype once per group and step. A 0-d
  array operand costs NumPy about a third of what a Python float does, and it keeps float32 math
  in float32 (no float64 temporaries).
- Temporaries live in a per-optimizer scratch pool, so a step allocates nothing after the first.
- Flat fast path: for a group of small parameters (a 2-8-1 MLP), the parameters and their state
  are moved into one flat array each (``p.data`` and the state tensors become views into it,
  values unchanged), the gradients are gathered with one ``concatenate``, and the whole group is
  updated by a handful of vector ops instead of that many per parameter. The math is the same
  elementwise code on a longer array, so the results are bit-for-bit those of the per-parameter
  path. Every step checks, per parameter, that the views are still in place (``p.data`` was not
  reassigned, the state was not replaced, every parameter has a gradient, the step counts
  agree); if not, the step runs per parameter and the flat buffers are rebuilt when possible.
"""
from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from typing import Any, Callable, Iterable

import numpy as np

from .. import _native
from ..autograd.grad_mode import enable_grad
from ..tensor import Tensor, _make


class _RequiredParameter:
    """Marks a hyper-parameter without a default (like ``torch.optim.optimizer.required``)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()

# number of scratch arrays of a parameter's shape that an update may use at once
_N_SCRATCH = 2
# a group whose parameters hold at most this many elements in all takes the flat path. Measured
# against the per-parameter path: 1.7x faster for SGD and 2.4x for Adam on a 2-8-1 MLP, still
# ahead at 26k elements, even at 50k; larger groups spend their time in arithmetic, and
# gathering the gradients would add a pass over memory.
_FLAT_MAX_NUMEL = 1 << 15
# a larger parameter is updated in blocks of this many bytes per array (see _chunked_update)
_CHUNK_BYTES = 1 << 17


def _typename(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"Tensor of shape {tuple(x.shape)}"
    return type(x).__name__


def _is_real(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, (int, float, np.integer, np.floating)):
        return True
    return isinstance(x, Tensor) and x.data.size == 1 and x.data.dtype.kind in "fiu"


class Optimizer:
    """Base class of all optimizers.

    Args:
        params: an iterable of Tensors, of ``(name, tensor)`` pairs, or of dicts (parameter
            groups: ``'params'`` plus any hyper-parameters that override ``defaults``).
        defaults: the hyper-parameters used by groups that do not set them.

    Example:
        >>> opt = deepgrad.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> opt.zero_grad()
        >>> loss_fn(model(x), y).backward()
        >>> opt.step()
    """

    # state entries that have the parameter's shape (checked by load_state_dict)
    _param_shaped_state: tuple = ()

    def __init__(self, params: Iterable, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        name = type(self).__name__
        if isinstance(params, (Tensor, dict)) or not hasattr(params, "__iter__"):
            raise TypeError(
                f"{name}: params argument given to the optimizer should be an iterable of "
                f"Tensors or dicts; got {_typename(params)}. Pass model.parameters() or a list "
                "of tensors.")
        if isinstance(params, (set, frozenset)):
            raise TypeError(
                f"{name}: optimizer parameters need to be organized in ordered collections, but "
                "the ordering of tensors in sets will change between runs; got a set. Please "
                "use a list instead.")
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError(
                f"{name}: optimizer got an empty parameter list; expected at least one "
                "parameter, got none. (A generator such as model.parameters() can be consumed "
                "only once.)")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        # validate every group before keeping any, so that a bad group leaves nothing behind
        checked: list[dict] = []
        for group in param_groups:
            checked.append(self._checked_group(group, self.param_groups + checked))
        for group in checked:
            self._append_group(group)

    # -- groups ----------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (a dict with ``'params'``), e.g. layers unfrozen later.

        Hyper-parameters missing from the dict take the optimizer's defaults.
        """
        self._append_group(self._checked_group(param_group, self.param_groups))

    def _append_group(self, group: dict[str, Any]) -> None:
        self.param_groups.append(group)

    def _checked_group(self, param_group: Any, existing: list[dict]) -> dict[str, Any]:
        """A new group dict (the caller's dict is not modified), or an error."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(
                f"{name}: param_group must be a dict; expected a dict with a 'params' key, got "
                f"{_typename(param_group)}. Either pass all groups as dicts or none.")
        if "params" not in param_group:
            raise ValueError(
                f"{name}: param_group has no 'params' entry; expected a dict with a 'params' "
                f"key, got keys {sorted(param_group)}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                f"{name}: optimizer parameters need to be organized in ordered collections, but "
                "the ordering of tensors in sets will change between runs; got a set. Please "
                "use a list instead.")
        elif isinstance(params, dict) or not hasattr(params, "__iter__"):
            raise TypeError(
                f"{name}: the 'params' of a param group should be an iterable of Tensors; got "
                f"{_typename(params)}")
        else:
            params = list(params)

        tensors = []
        names = []
        for p in params:
            if isinstance(p, tuple):
                if len(p) != 2 or not isinstance(p[0], str):
                    raise TypeError(
                        f"{name}: a named parameter should be a (name, tensor) pair; got a "
                        f"tuple of length {len(p)}")
                names.append(p[0])
                tensors.append(p[1])
            else:
                tensors.append(p)
        if names and len(names) != len(tensors):
            raise ValueError(
                f"{name}: all optimizer params should be with/without names; expected all "
                f"{len(tensors)} params named, got {len(names)} names. Some param names are "
                "missing")
        for i, p in enumerate(tensors):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{name}: optimizer can only optimize Tensors; expected Tensor, got "
                    f"{type(p).__name__} (params[{i}])")
            if not p.is_leaf:
                raise ValueError(
                    f"{name}: can't optimize a non-leaf Tensor; expected a leaf (a Parameter or "
                    f"a tensor created with requires_grad=True), got the output of "
                    f"{getattr(p.grad_fn, 'name', 'an op')} (params[{i}], shape "
                    f"{tuple(p.shape)}). Use "
                    ".detach().requires_grad_() to make a leaf.")
        group["params"] = tensors
        if names:
            group["param_names"] = names

        for key, default in self.defaults.items():
            if default is required and key not in group:
                raise ValueError(
                    f"{name}: parameter group didn't specify a value of required optimization "
                    f"parameter {key}")
            group.setdefault(key, default)
        self._validate_group(group)

        if len({id(p) for p in tensors}) != len(tensors):
            warnings.warn(
                f"{name}: optimizer contains a parameter group with duplicate parameters; "
                "they would be updated twice per step. In PyTorch this will become an error.",
                stacklevel=4)

        new_ids = {id(p) for p in tensors}
        for gi, other in enumerate(existing):
            if ("param_names" in group) != ("param_names" in other):
                which = "with names" if "param_names" in group else "without names"
                raise ValueError(
                    f"{name}: all optimizer param groups should be with/without names; cannot "
                    f"add param group {which} to an optimizer whose groups are not")
            for p in other["params"]:
                if id(p) in new_ids:
                    raise ValueError(
                        f"{name}: some parameters appear in more than one parameter group; "
                        f"expected each parameter in one group, got a parameter of shape "
                        f"{tuple(p.shape)} in group {gi} and in the new group {len(existing)}")
        return group

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Check a group's hyper-parameters (subclasses raise ValueError/TypeError)."""

    # -- zero_grad / step --------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized tensors.

        Args:
            set_to_none: drop the gradients (``p.grad = None``, the default, which saves memory
                and a pass) instead of filling them with zeros.
        """
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    g._ctx = None
                    g.requires_grad = False
                    g.data.fill(0)
                    g._version += 1

    def step(self, closure: Callable[[], Any] | None = None):
        """Update the parameters once; ``closure`` re-evaluates the model and returns the loss."""
        raise NotImplementedError(f"{type(self).__name__}: step() is not implemented")

    # -- state_dict ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state, in PyTorch's layout.

        ``{'state': {index: {name: value}}, 'param_groups': [{..., 'params': [indices]}]}``:
        parameters are replaced by their position counted over all groups in order. State
        values are the live Tensors (as in PyTorch; copy them to keep a snapshot) and Python
        numbers (``step`` counts).
        """
        index: dict[int, int] = {}
        packed_groups = []
        start = 0
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start):
                index.setdefault(id(p), i)
            packed["params"] = [index[id(p)] for p in group["params"]]
            start += len(group["params"])
            packed_groups.append(packed)
        packed_state = {}
        for p, s in self.state.items():
            key = index.get(id(p), p) if isinstance(p, Tensor) else p
            packed_state[key] = dict(s)
        return {"state": packed_state, "param_groups": packed_groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by ``state_dict`` (hyper-parameters included).

        Tensors are copied, in the dtype of the parameter they belong to; the optimizer is left
        unchanged if the dict does not fit it.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or "state" not in state_dict \
                or "param_groups" not in state_dict:
            raise TypeError(
                f"{name}.load_state_dict: expected a dict with keys 'state' and "
                f"'param_groups', got {_typename(state_dict)}"
                + (f" with keys {sorted(map(str, state_dict))}"
                   if isinstance(state_dict, dict) else ""))
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError(
                f"{name}.load_state_dict: loaded state dict has a different number of parameter "
                f"groups; expected {len(groups)}, got {len(saved_groups)}")
        for i, (g, sg) in enumerate(zip(groups, saved_groups)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: loaded state dict contains a parameter group that "
                    f"doesn't match the size of optimizer's group; group {i} has "
                    f"{len(g['params'])} params, checkpoint {len(sg['params'])}")
        id_map = {}
        for g, sg in zip(groups, saved_groups):
            for p, key in zip(g["params"], sg["params"]):
                id_map[key] = p

        new_state: defaultdict = defaultdict(dict)
        for key, values in state_dict["state"].items():
            p = id_map.get(key)
            if p is None:
                new_state[key] = values
                continue
            if not isinstance(values, dict):
                raise TypeError(
                    f"{name}.load_state_dict: state of parameter {key} should be a dict; got "
                    f"{type(values).__name__}")
            new_state[p] = {k: self._load_value(p, key, k, v) for k, v in values.items()}

        new_groups = []
        for g, sg in zip(groups, saved_groups):
            sg["params"] = g["params"]
            if "param_names" in g and "param_names" not in sg:
                sg["param_names"] = g["param_names"]
            for k, default in self.defaults.items():
                sg.setdefault(k, default)
            self._validate_group(sg)
            new_groups.append(sg)
        self.state = new_state
        self.param_groups = new_groups

    def _load_value(self, p: Tensor, pid: Any, key: str, value: Any) -> Any:
        """A copy of one saved state value, fitted to its parameter (shape checked)."""
        if key == "step":
            if isinstance(value, (Tensor, np.ndarray, np.generic)):
                value = np.asarray(value.data if isinstance(value, Tensor) else value).item()
            return value
        if isinstance(value, (Tensor, np.ndarray)):
            arr = value.data if isinstance(value, Tensor) else value
            if key in self._param_shaped_state and arr.shape != p.data.shape:
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: shape mismatch for state "
                    f"'{key}' of parameter {pid}; checkpoint {tuple(arr.shape)}, parameter "
                    f"{tuple(p.data.shape)}")
            dtype = p.data.dtype if p.data.dtype.kind in "fc" else arr.dtype
            return _make(np.array(arr, dtype=dtype, copy=True))
        return copy.deepcopy(value)

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)

    def __getstate__(self):
        raise TypeError(
            f"{type(self).__name__}: pickling is not supported; save opt.state_dict() with "
            "deepgrad.save instead")


def _closure_loss(closure: Callable[[], Any] | None):
    """Run a step's closure with grad mode on, as PyTorch does."""
    if closure is None:
        return None
    with enable_grad():
        return closure()


def _check_real(opt: str, key: str, value: Any) -> None:
    if not _is_real(value):
        raise TypeError(
            f"{opt}: {key} must be a real number; expected float, got {type(value).__name__}")


def _check_nonneg(opt: str, key: str, value: Any, what: str) -> None:
    """PyTorch's 'Invalid <what>' check: value >= 0 (NaN fails too)."""
    _check_real(opt, key, value)
    if not float(value) >= 0.0:
        raise ValueError(f"{opt}: Invalid {what}; expected {key} >= 0.0, got {value}")


def _check_impl_flags(opt: str, group: dict[str, Any]) -> None:
    """PyTorch's implementation switches: foreach/fused/capturable are accepted and ignored
    (deepgrad has one implementation); differentiable needs higher-order autograd."""
    if group.get("differentiable"):
        raise NotImplementedError(
            f"{opt}: differentiable=True is not supported; deepgrad's autograd is first-order")
    if group.get("fused") and group.get("foreach"):
        raise RuntimeError(f"{opt}: `fused` and `foreach` cannot be `True` together.")


class _Flat:
    """A group's parameters and state as views into flat arrays (see the module docstring)."""

    __slots__ = ("group", "params", "shapes", "pviews", "names", "sviews", "P", "G", "S",
                 "T0", "T1", "h", "c")
    group: dict            # the param group (identity checked each step)
    params: list           # its parameters when the buffers were built
    shapes: list           # their shapes
    pviews: list           # p.data of each parameter: a view into P
    names: tuple           # the state arrays kept flat, in _state_names order
    sviews: list           # per parameter, the views of its state arrays into S
    P: np.ndarray          # parameters
    G: np.ndarray          # gathered gradients
    S: list                # one flat array per state name
    T0: np.ndarray         # scratch
    T1: np.ndarray
    h: Any                 # hyper-parameters of the cached constants c
    c: Any


class _ElementwiseOptimizer(Optimizer):
    """Base of the built-in optimizers: the algorithm is ``_update`` on arrays; ``step`` runs it
    per parameter or, for groups of small parameters, once on flat buffers.

    Subclasses define:
        _has_step: whether the state keeps a per-parameter ``'step'`` count.
        _hyper(group): the group's hyper-parameters as a tuple of Python values.
        _state_names(h): names of the parameter-shaped state arrays this configuration uses.
        _new_state(name, a, h): a fresh state array for parameter data ``a``.
        _static_consts(h, dt): 0-d arrays that do not depend on the step count.
        _step_consts(h, dt, step): 0-d arrays that do (or None).
        _update(a, d, bufs, h, c, sc, t0, t1, fresh): one in-place update of parameter data
            ``a`` with gradient ``d``; ``bufs`` are the state arrays in ``_state_names`` order,
            ``t0``/``t1`` scratch arrays of ``a``'s shape, ``fresh`` True when the state was
            just created. It must not write into ``d``.
        _native_update(a, d, bufs, h, c, sc, fresh) (optional): the same update in one pass
            through a kernel of ``deepgrad._native``, bit for bit equal; returns False where no
            kernel applies, and ``_update`` runs instead.
    """

    _has_step = False

    def __init__(self, params: Iterable, defaults: dict[str, Any]) -> None:
        self._scratch_pools: dict = {}
        self._scratch_views: dict = {}
        self._const_cache: dict = {}
        self._flats: dict = {}
        super().__init__(params, defaults)

    # -- per-algorithm pieces ------------------------------------------------------------------
    def _hyper(self, group: dict[str, Any]) -> tuple:
        raise NotImplementedError

    def _state_names(self, h: tuple) -> tuple:
        return ()

    def _new_state(self, name: str, a: np.ndarray, h: tuple) -> np.ndarray:
        return np.zeros_like(a)

    def _static_consts(self, h: tuple, dt: np.dtype) -> tuple:
        return ()

    def _step_consts(self, h: tuple, dt: np.dtype, step: int):
        return None

    def _update(self, a, d, bufs, h, c, sc, t0, t1, fresh) -> None:
        raise NotImplementedError

    def _native_update(self, a, d, bufs, h, c, sc, fresh) -> bool:
        return False

    # -- step ----------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None):
        """Update every parameter that has a gradient; returns the closure's loss, if given."""
        loss = _closure_loss(closure) if closure is not None else None
        # keyed by group position: after load_state_dict (new group dicts, same parameters)
        # the old flat buffers are recognized and rebuilt from
        flats = self._flats
        for gi, group in enumerate(self.param_groups):
            h = self._hyper(group)
            names = self._state_names(h)
            flat = flats.get(gi)
            if flat is not None and flat.group is group and flat.names == names \
                    and self._flat_step(flat, h, False):
                continue
            flat = self._build_flat(group, h, names, flat)
            if flat is not None:
                flats[gi] = flat
                continue
            self._param_step(group, h, names)
        return loss

    def _consts(self, h: tuple, dt: np.dtype) -> tuple:
        key = (h, dt)
        c = self._const_cache.get(key)
        if c is None:
            if len(self._const_cache) > 64:  # e.g. a scheduler changing lr every step
                self._const_cache.clear()
            c = self._const_cache[key] = self._static_consts(h, dt)
        return c

    def _param_step(self, group: dict[str, Any], h: tuple, names: tuple) -> None:
        state = self.state
        views = self._scratch_views
        scratch = self._scratch
        has_step = self._has_step
        update = self._update
        uses_state = has_step or bool(names)  # plain SGD keeps no state, as in PyTorch
        dt = None
        last_step = None
        step = 0
        c = sc = None
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            a = p.data
            fresh = False
            bufs = []
            if uses_state:
                st = state[p]
                if has_step:
                    step = st.get("step", 0) + 1
                    st["step"] = step
                for name in names:
                    t = st.get(name)
                    if t is None:
                        t = st[name] = _make(self._new_state(name, a, h))
                        fresh = True
                    bufs.append(t.data)
            if a.dtype is not dt:
                dt = a.dtype
                c = self._consts(h, dt)
                last_step = None
            if step != last_step:
                last_step = step
                sc = self._step_consts(h, dt, step)
            d = g.data
            if d.shape != a.shape:
                raise RuntimeError(
                    f"{type(self).__name__}.step: gradient shape does not match its parameter; "
                    f"expected {a.shape}, got {d.shape}")
            if self._native_update(a, d, bufs, h, c, sc, fresh):
                pass
            elif a.nbytes > _CHUNK_BYTES and a.flags.c_contiguous:
                self._chunked_update(a, d, bufs, h, c, sc, fresh)
            else:
                key = (a.shape, dt)
                t0, t1 = views.get(key) or scratch(*key)
                update(a, d, bufs, h, c, sc, t0, t1, fresh)
            p._version += 1

    def _chunked_update(self, a, d, bufs, h, c, sc, fresh) -> None:
        """``_update`` block by block, so that the several passes of the algorithm over a large
        parameter hit the cache instead of memory (3x faster for SGD on 784x512 float32). The
        arithmetic is elementwise, so the numbers are exactly those of one big update."""
        n = a.size
        size = _CHUNK_BYTES // a.itemsize
        t0, t1 = self._scratch((size,), a.dtype)
        a = a.reshape(-1)
        d = d.reshape(-1)
        bufs = [b.reshape(-1) for b in bufs]
        update = self._update
        for i in range(0, n, size):
            j = i + size
            if j > n:
                j = n
                t0 = t0[:n - i]
                t1 = t1[:n - i]
            update(a[i:j], d[i:j], [b[i:j] for b in bufs], h, c, sc, t0, t1, fresh)

    def _flat_step(self, flat: _Flat, h: tuple, fresh: bool) -> bool:
        """One step of a flat group; False (nothing changed) if the views are not intact."""
        params = flat.group["params"]
        fparams = flat.params
        if len(params) != len(fparams):
            return False
        state = self.state
        has_step = self._has_step
        names = flat.names
        uses_state = has_step or bool(names)
        grads = []
        sts = []
        step = None
        for p, fp, pv, shape, sv in zip(params, fparams, flat.pviews, flat.shapes, flat.sviews):
            g = p.grad
            if g is None or p is not fp or p.data is not pv:
                return False
            g = g.data
            if g.shape != shape:
                return False
            if uses_state:
                st = state.get(p)
                if st is None:
                    return False
                for name, v in zip(names, sv):
                    t = st.get(name)
                    if t is None or t.data is not v:
                        return False
                if has_step:
                    s = st.get("step", 0)
                    if step is None:
                        step = s
                    elif s != step:
                        return False
                    sts.append(st)
            grads.append(g)
        np.concatenate(grads, axis=None, out=flat.G)  # axis=None flattens each, in C
        dt = flat.P.dtype
        if step is not None:
            step += 1
            for st in sts:
                st["step"] = step
        if h != flat.h:
            flat.h = h
            flat.c = self._consts(h, dt)
        sc = self._step_consts(h, dt, step or 0)
        if not self._native_update(flat.P, flat.G, flat.S, h, flat.c, sc, fresh):
            self._update(flat.P, flat.G, flat.S, h, flat.c, sc, flat.T0, flat.T1, fresh)
        for p in params:
            p._version += 1
        return True

    def _build_flat(self, group: dict[str, Any], h: tuple, names: tuple,
                    old: _Flat | None) -> _Flat | None:
        """Move a group into flat buffers and step it, or return None if it does not qualify."""
        params = group["params"]
        n = len(params)
        if n < 2:
            return None
        dt = params[0].data.dtype
        old_p = old.P if old is not None else None
        total = 0
        for p in params:
            a = p.data
            if p.grad is None or a.dtype is not dt or p.grad.data.shape != a.shape:
                return None
            # a parameter that is a view of someone else's array (another optimizer's flat
            # buffer, or memory shared with another tensor) keeps its array
            if a.base is not None and a.base is not old_p:
                return None
            total += a.size
            if total > _FLAT_MAX_NUMEL:
                return None
        if len({id(p) for p in params}) != n:
            return None
        state = self.state
        uses_state = self._has_step or bool(names)
        sts = [state[p] if uses_state else {} for p in params]
        have = [all(name in st for name in names) for st in sts]
        if all(have):
            fresh = False
        elif not any(name in st for st in sts for name in names):
            fresh = True
        else:
            return None
        if self._has_step and len({st.get("step", 0) for st in sts}) != 1:
            return None

        flat = _Flat()
        flat.group = group
        flat.params = list(params)
        flat.names = names
        flat.P = P = np.empty(total, dt)
        flat.shapes = [p.data.shape for p in params]
        if fresh and self._has_step:
            for st in sts:
                st.setdefault("step", 0)  # first key, as in the per-parameter path
        flat.S = [self._new_state(name, P, h) if fresh else np.empty(total, dt)
                  for name in names]
        flat.pviews = []
        flat.sviews = []
        o = 0
        for p, st, shape in zip(params, sts, flat.shapes):
            k = p.data.size
            view = P[o:o + k].reshape(shape)
            view[...] = p.data
            p.data = view
            flat.pviews.append(view)
            sv = []
            for name, S in zip(names, flat.S):
                sview = S[o:o + k].reshape(shape)
                if fresh:
                    st[name] = _make(sview)
                else:
                    t = st[name]
                    sview[...] = t.data
                    t.data = sview
                sv.append(sview)
            flat.sviews.append(tuple(sv))
            o += k
        flat.G = np.empty(total, dt)
        flat.T0 = np.empty(total, dt)
        flat.T1 = np.empty(total, dt)
        flat.h = None
        if not self._flat_step(flat, h, fresh):  # pragma: no cover - checked above
            raise RuntimeError(f"{type(self).__name__}: internal error building flat buffers")
        return flat

    def _scratch(self, shape: tuple, dtype: np.dtype) -> tuple:
        """``_N_SCRATCH`` temporaries of one shape, views into a pool shared by all shapes."""
        key = (shape, dtype)
        views = self._scratch_views.get(key)
        if views is not None:
            return views
        n = 1
        for s in shape:
            n *= s
        pool = self._scratch_pools.get(dtype)
        if pool is None or pool.size < _N_SCRATCH * n:
            pool = np.empty(_N_SCRATCH * max(n, 1), dtype)
            self._scratch_pools[dtype] = pool
            for k in [k for k in self._scratch_views if k[1] == dtype]:
                del self._scratch_views[k]
        views = tuple(pool[i * n:(i + 1) * n].reshape(shape) for i in range(_N_SCRATCH))
        self._scratch_views[key] = views
        return views


def native_operands(a, d, bufs):
    """The native kernels of ``deepgrad._native`` for these arrays, or None: they need float32
    or float64 arrays of one dtype, C-contiguous, none overlapping another, and at least
    ``_native.MIN_ELEMENTS`` elements."""
    if a.size < _native.MIN_ELEMENTS:
        return None
    arrays = (a, d, *bufs)
    for x in arrays:
        if x.dtype != a.dtype or not x.flags.c_contiguous or x.shape != a.shape:
            return None
    for i, x in enumerate(arrays):  # the kernels' pointers are restrict
        for y in arrays[i + 1:]:
            if np.may_share_memory(x, y):
                return None
    return _native.for_dtype(a.dtype)


def l2_gradient(param, grad, weight_decay: float, coef, maximize: bool, out):
    """The gradient an update follows: ``grad + weight_decay * param`` (L2 decay), negated when
    maximizing; written into ``out`` when it differs from ``grad``, which is left untouched.
    ``coef`` is ``weight_decay`` already cast to the parameter's dtype."""
    if weight_decay != 0:
        np.multiply(param, coef, out=out)
        if maximize:
            np.subtract(out, grad, out=out)
        else:
            np.add(grad, out, out=out)
        return out
    if maximize:
        np.negative(grad, out=out)
        return out
    return grad
