"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` and the single-step ``RNNCell``, ``LSTMCell``,
``GRUCell``, with PyTorch's arguments, parameter names, shapes and initialisation.

Each layer of a stack (every direction at once) runs as one autograd node from
``deepgrad.ops.rnn``; the stack itself is a loop over layers here.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ... import backend
from ...ops import rnn as rnn_ops
from ...ops import shape
from ...tensor import Tensor
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}
_NAMES = {"RNN_TANH": "RNN", "RNN_RELU": "RNN", "LSTM": "LSTM", "GRU": "GRU"}


def _check_int(layer: str, name: str, value, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{layer}: {name} should be of type int, got {type(value).__name__}")
    if value < minimum:
        cond = "greater than zero" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"{layer}: {name} must be {cond}, got {value}")


def _dtype(dtype) -> np.dtype:
    return np.dtype(dtype) if dtype is not None else backend.get_default_dtype()


def _check_dtype(input: Tensor, weight: Parameter) -> None:
    if input.data.dtype != weight.data.dtype:
        raise TypeError(
            f"input dtype {input.dtype} differs from weight dtype {weight.dtype}; convert the "
            "input (x.float()) or the model (model.double())")


class RNNBase(Module):
    """Base of ``RNN``, ``LSTM`` and ``GRU``: parameters, validation and the layer loop.

    ``mode`` is 'RNN_TANH', 'RNN_RELU', 'LSTM' or 'GRU'. Parameters per layer ``k`` and
    direction: ``weight_ih_l{k}`` (gates*hidden_size, input size of the layer),
    ``weight_hh_l{k}`` (gates*hidden_size, hidden_size), ``bias_ih_l{k}``, ``bias_hh_l{k}``
    (gates*hidden_size,); the reverse direction adds the suffix ``_reverse``.
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None,
                 dtype=None) -> None:
        super().__init__()
        if mode not in _GATES:
            raise ValueError(
                f"RNNBase: unknown mode {mode!r}; expected 'RNN_TANH', 'RNN_RELU', 'LSTM' or "
                "'GRU'")
        name = _NAMES[mode]
        _check_int(name, "input_size", input_size, 0)
        _check_int(name, "hidden_size", hidden_size, 1)
        _check_int(name, "num_layers", num_layers, 1)
        _check_int(name, "proj_size", proj_size, 0)
        if (not isinstance(dropout, (int, float)) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError(
                f"{name}: dropout should be a number in range [0, 1] representing the "
                f"probability of an element being zeroed, got {dropout!r}")
        if proj_size:
            if mode != "LSTM":
                raise ValueError(
                    f"{name}: proj_size argument is only supported for LSTM, not RNN or GRU")
            raise NotImplementedError(
                f"LSTM: proj_size={proj_size} is not supported; LSTM with projections "
                "(weight_hr_l*) is not implemented in deepgrad, use proj_size=0")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}", UserWarning, stacklevel=2)
        self.mode = mode
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.proj_size = 0
        dt = _dtype(dtype)
        D = 2 if bidirectional else 1
        gate_size = _GATES[mode] * hidden_size
        self._flat_weights_names = []
        self._all_weights = []
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size * D
            for direction in range(D):
                suffix = "_reverse" if direction == 1 else ""
                shapes: list[tuple[str, tuple]] = [("weight_ih", (gate_size, in_size)),
                                                   ("weight_hh", (gate_size, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                names = []
                for pname, pshape in shapes:
                    full = f"{pname}_l{layer}{suffix}"
                    setattr(self, full, Parameter(np.empty(pshape, dt)))
                    names.append(full)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # PyTorch: every weight and bias from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for w in self.parameters():
            init.uniform_(w, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """Kept for PyTorch compatibility (cuDNN weight packing); nothing to do here."""

    @property
    def all_weights(self) -> list:
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def _layer_weights(self, layer: int) -> list:
        """``[w_ih, w_hh, b_ih, b_hh]`` for each direction of ``layer``, flat."""
        D = 2 if self.bidirectional else 1
        out = []
        for names in self._all_weights[layer * D:(layer + 1) * D]:
            ws = [getattr(self, n) for n in names]
            if len(ws) == 2:
                ws += [None, None]
            out.extend(ws)
        return out

    def _check_state(self, what: str, state, expected: tuple) -> None:
        if not isinstance(state, Tensor):
            raise TypeError(f"expected {what} to be a Tensor, got {type(state).__name__}")
        if state.data.shape != expected:
            raise ValueError(
                f"expected {what} of shape {expected} (num_layers*num_directions, batch, "
                f"hidden_size) or without the batch dim for unbatched input, got shape "
                f"{state.shape}")

    def forward(self, input, hx=None):
        if not isinstance(input, Tensor):
            raise TypeError(
                f"expected input to be a Tensor, got {type(input).__name__} (packed sequences "
                "are not supported)")
        s = input.data.shape
        if len(s) not in (2, 3):
            raise ValueError(
                f"expected input to be 2-D (L, input_size) or 3-D "
                f"({'N, L' if self.batch_first else 'L, N'}, input_size), got {len(s)}-D input "
                f"of shape {s}")
        if s[-1] != self.input_size:
            raise ValueError(
                f"expected input with last dim {self.input_size} (input_size), got shape {s}")
        batched = len(s) == 3
        batch_dim = 0 if self.batch_first else 1
        T = s[1 - batch_dim] if batched else s[0]
        if T == 0:
            raise ValueError(f"expected a sequence length larger than 0, got input of shape {s}")
        N = s[batch_dim] if batched else 1
        D = 2 if self.bidirectional else 1
        H = self.hidden_size
        L = self.num_layers
        expected = (L * D, N, H) if batched else (L * D, H)
        is_lstm = self.mode == "LSTM"
        h0 = c0 = None
        if hx is not None:
            if is_lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(
                        f"expected hx to be a tuple (h_0, c_0) of tensors, got "
                        f"{type(hx).__name__}")
                h0, c0 = hx
                self._check_state("h_0", h0, expected)
                self._check_state("c_0", c0, expected)
            else:
                h0 = hx
                self._check_state("h_0", h0, expected)
        w0 = self.weight_ih_l0
        _check_dtype(input, w0)
        for state in (h0, c0):
            if state is not None:
                _check_dtype(state, w0)
        if not batched:
            input = shape.unsqueeze(input, batch_dim)
            if h0 is not None:
                h0 = shape.unsqueeze(h0, 1)
            if c0 is not None:
                c0 = shape.unsqueeze(c0, 1)
        x = input
        hns = []
        cns = []
        for layer in range(L):
            if L == 1:
                h0_l, c0_l = h0, c0
            else:
                h0_l = None if h0 is None else h0[layer * D:(layer + 1) * D]
                c0_l = None if c0 is None else c0[layer * D:(layer + 1) * D]
            p = self.dropout if self.training and layer > 0 else 0.0
            x, hn, cn = rnn_ops.recurrent_layer(
                self.mode, x, h0_l, c0_l, self._layer_weights(layer), self.batch_first, p)
            hns.append(hn)
            cns.append(cn)
        h_n = hns[0] if L == 1 else shape.cat(hns, 0)
        c_n = None
        if is_lstm:
            c_n = cns[0] if L == 1 else shape.cat(cns, 0)
        if not batched:
            x = shape.squeeze(x, batch_dim)
            h_n = shape.squeeze(h_n, 1)
            if c_n is not None:
                c_n = shape.squeeze(c_n, 1)
        if is_lstm:
            return x, (h_n, c_n)
        return x, h_n

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, act tanh or relu.

    Args:
        input_size: features of the input.
        hidden_size: features of the hidden state.
        num_layers: stacked layers (default 1).
        nonlinearity: 'tanh' (default) or 'relu'.
        bias: learn ``b_ih`` and ``b_hh`` (default True).
        batch_first: input and output are ``(N, L, *)`` instead of ``(L, N, *)``.
        dropout: dropout on the outputs of every layer but the last, in training mode.
        bidirectional: run a second layer over the reversed sequence; outputs are concatenated.

    Shape:
        input ``(L, N, input_size)`` (``(N, L, input_size)`` with batch_first) or unbatched
        ``(L, input_size)``; h_0 ``(D*num_layers, N, hidden_size)`` (or ``(D*num_layers,
        hidden_size)``), zeros if omitted. Returns ``(output, h_n)``: output
        ``(L, N, D*hidden_size)`` and h_n like h_0, with D = 2 if bidirectional else 1.

    Example:
        >>> rnn = nn.RNN(10, 20, 2)
        >>> out, h_n = rnn(deepgrad.randn(5, 3, 10))
        >>> out.shape, h_n.shape
        ((5, 3, 20), (2, 3, 20))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None) -> None:
        if nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(
                f"RNN: unknown nonlinearity {nonlinearity!r}; select from 'tanh' or 'relu'")
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, 0, device, dtype)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory over a sequence, with PyTorch's gates and parameter layout.

    ``i, f, g, o`` = sigmoid, sigmoid, tanh, sigmoid of ``x W_ih^T + b_ih + h W_hh^T + b_hh``
    (gate blocks in that order in the weights); ``c' = f*c + i*g``, ``h' = o*tanh(c')``.

    Args: as ``RNN`` without nonlinearity; ``proj_size`` must be 0 (projections are not
    implemented).

    Shape:
        input as ``RNN``; ``hx`` is ``(h_0, c_0)``, each ``(D*num_layers, N, hidden_size)``
        (zeros if omitted). Returns ``(output, (h_n, c_n))``.

    Example:
        >>> lstm = nn.LSTM(64, 256, batch_first=True)
        >>> out, (h, c) = lstm(deepgrad.randn(32, 50, 64))
        >>> out.shape
        (32, 50, 256)
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None,
                 dtype=None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit over a sequence, with PyTorch's gates and parameter layout.

    ``r, z`` = sigmoid of ``x W_i^T + b_i + h W_h^T + b_h`` for their blocks,
    ``n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))``, ``h' = (1 - z) * n + z * h``;
    gate blocks in the weights in the order ``r, z, n``.

    Args and shapes: as ``RNN`` without nonlinearity. Returns ``(output, h_n)``.

    Example:
        >>> gru = nn.GRU(10, 20, bidirectional=True)
        >>> out, h_n = gru(deepgrad.randn(5, 3, 10))
        >>> out.shape, h_n.shape
        ((5, 3, 40), (2, 3, 20))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, 0, device, dtype)


# -- cells ----------------------------------------------------------------------------------


class RNNCellBase(Module):
    """Parameters of a cell: ``weight_ih`` (chunks*hidden, input), ``weight_hh`` (chunks*hidden,
    hidden), ``bias_ih``, ``bias_hh`` (chunks*hidden,), all from U(-1/sqrt(hidden),
    1/sqrt(hidden))."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device=None, dtype=None) -> None:
        super().__init__()
        name = type(self).__name__
        _check_int(name, "input_size", input_size, 0)
        _check_int(name, "hidden_size", hidden_size, 1)
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.bias = bool(bias)
        dt = _dtype(dtype)
        self.weight_ih = Parameter(np.empty((num_chunks * hidden_size, input_size), dt))
        self.weight_hh = Parameter(np.empty((num_chunks * hidden_size, hidden_size), dt))
        if bias:
            self.bias_ih = Parameter(np.empty((num_chunks * hidden_size,), dt))
            self.bias_hh = Parameter(np.empty((num_chunks * hidden_size,), dt))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for w in self.parameters():
            init.uniform_(w, -stdv, stdv)

    def _check_input(self, input) -> bool:
        """Validate ``input``; return whether it is batched (2-D)."""
        if not isinstance(input, Tensor):
            raise TypeError(f"expected input to be a Tensor, got {type(input).__name__}")
        s = input.data.shape
        if len(s) not in (1, 2):
            raise ValueError(
                f"expected input to be 1-D (input_size,) or 2-D (N, input_size), got "
                f"{len(s)}-D input of shape {s}")
        if s[-1] != self.input_size:
            raise ValueError(
                f"expected input with last dim {self.input_size} (input_size), got shape {s}")
        _check_dtype(input, self.weight_ih)
        return len(s) == 2

    def _check_hidden(self, what: str, state, input) -> None:
        if not isinstance(state, Tensor):
            raise TypeError(f"expected {what} to be a Tensor, got {type(state).__name__}")
        s = input.data.shape
        expected = (s[0], self.hidden_size) if len(s) == 2 else (self.hidden_size,)
        if state.data.shape != expected:
            raise ValueError(
                f"expected {what} of shape {expected} (batch, hidden_size) for input of shape "
                f"{s}, got shape {state.shape}")
        _check_dtype(state, self.weight_ih)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        nl = getattr(self, "nonlinearity", "tanh")
        if nl != "tanh":
            s += f", nonlinearity={nl}"
        return s


class RNNCell(RNNCellBase):
    """One Elman RNN step: ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``.

    Shape:
        input ``(N, input_size)`` or ``(input_size,)``; hx ``(N, hidden_size)`` (or
        ``(hidden_size,)``), zeros if omitted; returns h' with hx's shape.

    Example:
        >>> cell = nn.RNNCell(10, 20)
        >>> h = cell(deepgrad.randn(3, 10))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"RNNCell: unknown nonlinearity {nonlinearity!r}; select from 'tanh' or 'relu'")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        batched = self._check_input(input)
        if hx is not None:
            self._check_hidden("hx", hx, input)
        if not batched:
            input = shape.unsqueeze(input, 0)
            hx = None if hx is None else shape.unsqueeze(hx, 0)
        h = rnn_ops.rnn_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih,
                             self.bias_hh, self.nonlinearity)
        return h if batched else shape.squeeze(h, 0)


class LSTMCell(RNNCellBase):
    """One LSTM step, gates ``i, f, g, o`` as in ``LSTM``.

    Shape:
        input ``(N, input_size)`` or ``(input_size,)``; hx a tuple ``(h, c)``, each
        ``(N, hidden_size)`` (or ``(hidden_size,)``), zeros if omitted; returns ``(h', c')``.

    Example:
        >>> cell = nn.LSTMCell(10, 20)
        >>> h, c = cell(deepgrad.randn(3, 10))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        batched = self._check_input(input)
        h = c = None
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(
                    f"expected hx to be a tuple (h, c) of tensors, got {type(hx).__name__}")
            h, c = hx
            self._check_hidden("h", h, input)
            self._check_hidden("c", c, input)
        if not batched:
            input = shape.unsqueeze(input, 0)
            if h is not None:
                h = shape.unsqueeze(h, 0)
                c = shape.unsqueeze(c, 0)
        h2, c2 = rnn_ops.lstm_cell(input, h, c, self.weight_ih, self.weight_hh, self.bias_ih,
                                   self.bias_hh)
        if not batched:
            return shape.squeeze(h2, 0), shape.squeeze(c2, 0)
        return h2, c2


class GRUCell(RNNCellBase):
    """One GRU step, gates ``r, z, n`` as in ``GRU``.

    Shape:
        input ``(N, input_size)`` or ``(input_size,)``; hx ``(N, hidden_size)`` (or
        ``(hidden_size,)``), zeros if omitted; returns h' with hx's shape.

    Example:
        >>> cell = nn.GRUCell(10, 20)
        >>> h = cell(deepgrad.randn(3, 10))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        batched = self._check_input(input)
        if hx is not None:
            self._check_hidden("hx", hx, input)
        if not batched:
            input = shape.unsqueeze(input, 0)
            hx = None if hx is None else shape.unsqueeze(hx, 0)
        h = rnn_ops.gru_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih,
                             self.bias_hh)
        return h if batched else shape.squeeze(h, 0)
