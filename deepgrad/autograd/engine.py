"""Reverse-mode differentiation: walk the graph backwards and apply the chain rule.

The walk is iterative (an explicit stack), so a graph as deep as a 10,000-step chain is fine.
Gradients flowing into a node are summed in a dict keyed by the node and popped once the node
has run; gradients reaching leaves are summed first and then run through the leaf's hooks and
added into ``.grad``, so a hook sees each backward's total once, as in PyTorch.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, _make


def _topological_order(roots: list) -> list:
    """Nodes reachable from ``roots``, each before every node that feeds it."""
    order = []
    seen = set()
    stack = [(r, False) for r in roots]
    while stack:
        node, finished = stack.pop()
        if finished:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        for t in node.inputs:
            if t is not None:
                parent = t._ctx
                if parent is not None and parent not in seen:
                    stack.append((parent, False))
    order.reverse()
    return order


def unbroadcast(grad: np.ndarray, shape: tuple, node=None) -> np.ndarray:
    """Sum ``grad`` down to ``shape``, undoing NumPy broadcasting."""
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = np.add.reduce(grad, axis=tuple(range(extra)))  # ndarray.sum adds a Python layer
    if grad.shape != shape and extra >= 0:
        axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
        if axes:
            grad = np.add.reduce(grad, axis=axes, keepdims=True)
    if grad.shape != shape:
        op = node.name if node is not None else "backward"
        raise RuntimeError(
            f"{op}: returned a gradient of shape {grad.shape} for an input of shape {shape}, "
            "which cannot be summed down to it. The op's backward is wrong: it must return "
            "gradients in the input's shape or a shape it broadcasts to.")
    return grad


def _root_grad(t: Tensor, gradient) -> np.ndarray:
    if gradient is None:
        if t.data.size != 1:
            raise RuntimeError(
                f"backward: grad can be implicitly created only for a scalar output, but the "
                f"tensor has shape {t.shape}. Reduce it first (e.g. loss.sum() or loss.mean()) "
                "or pass gradient= a tensor of the same shape.")
        if not t.data.ndim:  # np.ones is a Python function: 4x slower for the usual 0-d loss
            return np.array(1, dtype=t.data.dtype)
        return np.ones(t.data.shape, dtype=t.data.dtype)
    g = gradient.data if isinstance(gradient, Tensor) else np.asarray(gradient, dtype=t.data.dtype)
    if g.shape != t.shape:
        raise RuntimeError(
            f"backward: gradient has shape {g.shape} but the tensor has shape {t.shape}; "
            "they must match.")
    return g


def backward(tensors, grad_tensors=None, retain_graph: bool = False, inputs=None):
    """Compute the gradient of ``tensors`` with respect to the graph's leaves.

    Gradients are summed into ``.grad`` of the leaves that require grad. With ``inputs`` given
    (a sequence of tensors), their gradients are returned instead and nothing is written to
    ``.grad`` (this is ``deepgrad.autograd.grad``).
    """
    if isinstance(tensors, Tensor):
        tensors = (tensors,)
        grad_tensors = (grad_tensors,)
    elif grad_tensors is None:
        grad_tensors = (None,) * len(tensors)

    leaf_grads: dict = {}  # id(tensor) -> [tensor, grad, owned]
    grads: dict = {}
    roots = []
    for t, g in zip(tensors, grad_tensors):
        if not t.requires_grad:
            raise RuntimeError(
                f"backward: the tensor of shape {t.shape} does not require grad and has no "
                "graph. It was computed under no_grad, from tensors without requires_grad=True, "
                "or by a non-differentiable op (argmax, comparisons, detach). Create the inputs "
                "with requires_grad=True and compute it with grad mode on.")
        g = _root_grad(t, g)
        if t._ctx is None:
            _add_leaf(leaf_grads, t, g, False)
        else:
            _add_node_grad(grads, t._ctx, t._out_idx, g)
            roots.append(t._ctx)

    capture: dict | None = None
    if inputs is not None:
        capture = {}
        for t in inputs:
            if t._ctx is not None:
                t._ctx._capture = getattr(t._ctx, "_capture", ()) + ((t._out_idx, id(t)),)

    for node in _topological_order(roots):
        g = grads.pop(node, None)
        if g is None:
            continue  # no gradient flows here (e.g. only through integer outputs)
        if node._freed:
            raise RuntimeError(
                f"{node.name}: trying to backward through the graph a second time, but its saved "
                "values were freed by the first backward. Pass retain_graph=True to the first "
                "backward() if you need to backward through it again, or recompute the forward.")
        for t, v in node._saved_versions:  # inputs changed in place since the forward?
            if t._version != v:
                node._check_versions()  # raises, naming the op
        out_ref = node._out_ref
        if out_ref is not None:  # the saved output changed in place?
            for ref in out_ref:
                y = ref()
                if y is not None and y._version != 0:
                    node._check_versions()
        if node._n_out == 1:
            if node._hooks is not None:
                g = _run_hooks(node._hooks.get(0, ()), g)
            if capture is not None and "_capture" in node.__dict__:
                for _, tid in node.__dict__.pop("_capture"):
                    capture[tid] = g
            in_grads = node.backward(g)
        else:
            g = [np.zeros(node._out_shapes[i], node._out_dtypes[i]) if gi is None else gi
                 for i, gi in enumerate(g)]
            if node._hooks is not None:
                g = [_run_hooks(node._hooks.get(i, ()), gi) for i, gi in enumerate(g)]
            if capture is not None and "_capture" in node.__dict__:
                for idx, tid in node.__dict__.pop("_capture"):
                    capture[tid] = g[idx]
            in_grads = node.backward(*g)
        if type(in_grads) is not tuple:
            in_grads = (in_grads,)
        node_inputs = node.inputs
        if not retain_graph:
            node._release()
        if len(in_grads) != len(node_inputs):
            raise RuntimeError(
                f"{node.name}: backward returned {len(in_grads)} gradients for "
                f"{len(node_inputs)} inputs; return one per input (None where not needed).")
        for t, gi in zip(node_inputs, in_grads):
            if t is None or gi is None:
                continue
            if gi.shape != t.data.shape:
                gi = unbroadcast(gi, t.data.shape, node)
            parent = t._ctx
            if parent is not None:
                if parent._n_out == 1:  # _add_node_grad's first case, inline: the common one
                    prev = grads.get(parent)
                    grads[parent] = gi if prev is None else prev + gi
                else:
                    _add_node_grad(grads, parent, t._out_idx, gi)
            else:
                # a gradient that is a view, or an array that the caller or another input
                # also holds, is copied before it becomes a leaf's .grad
                owned = gi.base is None and _only_holder(gi, g, in_grads)
                entry = leaf_grads.get(id(t))  # _add_leaf, inline
                if entry is None:
                    leaf_grads[id(t)] = [t, gi, owned]
                else:
                    entry[1] = entry[1] + gi
                    entry[2] = True

    if capture is not None and inputs is not None:
        for t, g, _ in leaf_grads.values():
            capture[id(t)] = g
        return tuple(None if id(t) not in capture else _make(np.array(capture[id(t)]))
                     for t in inputs)

    for t, g, owned in leaf_grads.values():
        if t._hooks:
            g = _run_hooks(t._hooks, g)
            owned = False
        if g.dtype != t.data.dtype:
            g = g.astype(t.data.dtype)
            owned = True
        if t.grad is None:
            t.grad = _make(g if owned else g.copy())
        else:
            t.grad.data += g
    return None


def _only_holder(gi: np.ndarray, incoming, in_grads: tuple) -> bool:
    if type(incoming) is list:
        for x in incoming:
            if x is gi:
                return False
    elif incoming is gi:
        return False
    seen = 0
    for x in in_grads:
        if x is gi:
            seen += 1
    return seen == 1


def _add_leaf(leaf_grads: dict, t: Tensor, g: np.ndarray, owned: bool) -> None:
    entry = leaf_grads.get(id(t))
    if entry is None:
        leaf_grads[id(t)] = [t, g, owned]
    else:
        entry[1] = entry[1] + g
        entry[2] = True


def _add_node_grad(grads: dict, node, idx: int, g: np.ndarray) -> None:
    if node._n_out == 1:
        prev = grads.get(node)
        grads[node] = g if prev is None else prev + g
        return
    slots = grads.get(node)
    if slots is None:
        slots = grads[node] = [None] * node._n_out
    slots[idx] = g if slots[idx] is None else slots[idx] + g


def _run_hooks(hooks, g: np.ndarray) -> np.ndarray:
    for hook in hooks:
        out = hook(_make(g))
        if out is not None:
            new = out.data if isinstance(out, Tensor) else np.asarray(out)
            if new.shape != g.shape:
                raise RuntimeError(
                    f"register_hook: a hook returned a gradient of shape {new.shape} for a "
                    f"gradient of shape {g.shape}; a hook must keep the shape.")
            g = new
    return g
