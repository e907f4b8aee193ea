"""``summary``: a per-layer table of output shapes, parameters and connections.

Connections are multiply-accumulate links between units, the measure LeNet-5's paper
tabulates next to the parameter count: a weight shared by many connections is counted once as a
parameter and once per use as a connection. A layer can define
``connections(input_shape, output_shape) -> int`` to give its own count; the rules below cover
the built-in layers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..autograd.grad_mode import no_grad
from ..tensor import Tensor, _make
from .module import Module


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple | list
    params: int
    trainable: int
    connections: int
    depth: int


@dataclass
class ModelSummary:
    """What ``summary`` measured; ``str()`` gives the printed table."""

    rows: list = field(default_factory=list)
    input_shape: tuple = ()
    total_params: int = 0
    trainable_params: int = 0
    total_connections: int = 0

    def __str__(self) -> str:
        head = ("Layer (type)", "Output shape", "Param #", "Connections")
        lines = [[("  " * max(r.depth - 1, 0)) + f"{r.name} ({r.kind})", _shape(r.output_shape),
                  f"{r.trainable:,}" if r.params == r.trainable else
                  f"{r.trainable:,} (+{r.params - r.trainable:,} frozen)",
                  f"{r.connections:,}"] for r in self.rows]
        widths = [max([len(head[i])] + [len(line[i]) for line in lines]) for i in range(4)]
        fmt = "{:<%d}  {:<%d}  {:>%d}  {:>%d}" % tuple(widths)
        rule = "=" * (sum(widths) + 6)
        out = [fmt.format(*head), rule]
        out += [fmt.format(*line) for line in lines]
        out += [rule,
                f"Input shape: {_shape(self.input_shape)}",
                f"Total params: {self.total_params:,}",
                f"Trainable params: {self.trainable_params:,}",
                f"Non-trainable params: {self.total_params - self.trainable_params:,}",
                f"Total connections: {self.total_connections:,}"]
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)


def _shape(s) -> str:
    if isinstance(s, list):
        return ", ".join(_shape(x) for x in s)
    return str(tuple(s))


def _pair(v, n: int = 2) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _first_tensor(obj):
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for o in obj:
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def count_connections(module: Module, in_shape: tuple, out_shape: tuple) -> int:
    """Multiply-accumulate links of one call of ``module`` (shapes include the batch dim)."""
    own = getattr(module, "connections", None)
    if callable(own):
        return int(own(in_shape, out_shape))
    kind = type(module).__name__
    has_bias = getattr(module, "bias", None) is not None
    per_out = math.prod(out_shape[1:]) if len(out_shape) > 1 else 1
    if kind in ("Linear",):
        rows = math.prod(in_shape[1:-1]) if len(in_shape) > 2 else 1
        return rows * module.out_features * (module.in_features + has_bias)
    if kind in ("Conv1d", "Conv2d", "Conv3d"):
        k = math.prod(_pair(module.kernel_size, int(kind[-2])))
        fan_in = k * module.in_channels // module.groups
        return (fan_in + has_bias) * per_out
    if kind in ("ConvTranspose1d", "ConvTranspose2d"):
        k = math.prod(_pair(module.kernel_size, int(kind[-2])))
        fan_out = k * module.out_channels // module.groups
        inputs = math.prod(in_shape[1:])
        return inputs * fan_out + (per_out if has_bias else 0)
    if kind in ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d"):
        k = math.prod(_pair(module.kernel_size, int(kind[-2])))
        return k * per_out
    if kind in ("AdaptiveAvgPool1d", "AdaptiveAvgPool2d"):
        return math.prod(in_shape[1:])
    if kind in ("BatchNorm1d", "BatchNorm2d", "LayerNorm"):
        return per_out if any(True for _ in module.parameters(recurse=False)) else 0
    if kind in ("RNN", "LSTM", "GRU"):
        # the weights already hold every gate's rows: a multiply-add per weight per step
        steps = in_shape[1] if getattr(module, "batch_first", False) else in_shape[0]
        if len(in_shape) == 2:
            steps = in_shape[0]
        total = 0
        for name, p in module.named_parameters(recurse=False):
            if name.startswith("weight"):
                total += p.data.size
            elif name.startswith("bias"):
                total += p.data.size
        return steps * total
    if kind == "Embedding":
        return 0
    return 0


def summary(model: Module, input_shape, batch_size: int = 1, dtype=None,
            print_result: bool = True) -> ModelSummary:
    """Run ``model`` on zeros of ``(batch_size, *input_shape)`` and tabulate every layer.

    Args:
        model: the module to describe.
        input_shape: the shape of one sample, without the batch dim (e.g. ``(1, 32, 32)``).
        batch_size: the batch dim used for the trial run; the connections are per sample.
        dtype: the input dtype (the model's parameters' dtype by default).
        print_result: print the table.

    Returns:
        A ``ModelSummary`` with one row per module that has no children (plus containers that
        own parameters themselves), the total parameter count and the total connections.

    Example:
        >>> deepgrad.summary(nn.Sequential(nn.Linear(4, 3), nn.Tanh()), (4,))
    """
    input_shape = tuple(input_shape)
    params = list(model.parameters())
    if dtype is None:
        dtype = params[0].dtype if params else np.float32
    names = {id(m): n for n, m in model.named_modules()}
    depth = {id(m): (n.count(".") + 1 if n else 0) for n, m in model.named_modules()}
    records = []

    def hook(module, args, output):
        x = _first_tensor(args)
        y = _first_tensor(output)
        if x is None or y is None:
            return
        records.append((module, x.shape, y.shape,
                        [o.shape for o in output] if isinstance(output, tuple) and all(
                            isinstance(o, Tensor) for o in output) else y.shape))

    handles = []
    for m in model.modules():
        own_params = any(True for _ in m.parameters(recurse=False))
        if not m._modules or own_params:
            handles.append(m.register_forward_hook(hook))
    was_training = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with no_grad():
            model(_make(np.zeros((batch_size,) + input_shape, dtype)))
    finally:
        for h in handles:
            h.remove()
        for m, mode in was_training:
            m.__dict__["training"] = mode

    result = ModelSummary(input_shape=input_shape)
    seen = set()
    for module, in_shape, out_shape, shown in records:
        first = id(module) not in seen
        seen.add(id(module))
        n_params = sum(p.data.size for p in module.parameters(recurse=False)) if first else 0
        n_train = sum(p.data.size for p in module.parameters(recurse=False)
                      if p.requires_grad) if first else 0
        conns = count_connections(module, in_shape, out_shape) // max(batch_size, 1)
        per_sample = [s[1:] for s in shown] if isinstance(shown, list) else shown[1:]
        result.rows.append(LayerRow(names.get(id(module), "?") or type(module).__name__,
                                    type(module).__name__, per_sample, n_params, n_train,
                                    conns, depth.get(id(module), 0)))
        result.total_connections += conns
    result.total_params = sum(p.data.size for p in params)
    result.trainable_params = sum(p.data.size for p in params if p.requires_grad)
    if print_result:
        print(result)
    return result
