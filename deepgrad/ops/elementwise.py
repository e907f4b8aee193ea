"""Elementwise ops: arithmetic with broadcasting, activations, and math functions."""
from __future__ import annotations

import numpy as np

from .. import _native, backend
from ..autograd.function import Function
from ..tensor import Tensor, _make

# -- dtype handling for binary ops -------------------------------------------------------


def _scalar(v):
    """A Python number stays weakly typed in NumPy 2, so float32 tensors stay float32."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def _operands(op: str, a, b):
    """Bring two operands to PyTorch's result dtype without touching float32 with float64."""
    if isinstance(b, Tensor):
        if isinstance(a, Tensor):
            da, db = a.data.dtype, b.data.dtype
            if da != db:
                if a.data.ndim == 0 and b.data.ndim > 0 and da.kind == db.kind:
                    a = cast(a, db)  # a 0-d tensor does not decide the dtype, as in PyTorch
                elif b.data.ndim == 0 and a.data.ndim > 0 and da.kind == db.kind:
                    b = cast(b, da)
                else:
                    dt = backend.promote_types(da, db)
                    if da != dt:
                        a = cast(a, dt)
                    if db != dt:
                        b = cast(b, dt)
            return a, b
        a, b = b, a
        swapped = True
    else:
        swapped = False
    # a is the tensor, b the other operand
    if isinstance(b, np.ndarray):
        a, b = _operands(op, a, _make(b))
    else:
        b = _scalar(b)
        if type(b) is float and a.data.dtype.kind in "iub":
            a = cast(a, backend.get_default_dtype())
        elif b is None or not isinstance(b, (int, float, bool, complex)):
            raise TypeError(f"{op}: unsupported operand type {type(b).__name__}")
    return (b, a) if swapped else (a, b)


def _broadcast_error(op: str, a, b) -> ValueError:
    sa = a.shape if isinstance(a, Tensor) else ()
    sb = b.shape if isinstance(b, Tensor) else ()
    return ValueError(f"{op}: cannot broadcast shapes {sa} and {sb}")


def _binary(cls, op: str, a, b):
    a, b = _operands(op, a, b)
    try:
        return cls.apply(a, b)
    except ValueError as e:
        if "broadcast" in str(e):
            raise _broadcast_error(op, a, b) from None
        raise


# -- arithmetic ---------------------------------------------------------------------------


class Add(Function):
    saves_inputs = False

    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    saves_inputs = False

    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, (-grad if self.needs_input_grad[1] else None)


class Mul(Function):
    def forward(self, a, b):
        self.a = a
        self.b = b
        return a * b

    def backward(self, grad):
        na, nb = self.needs_input_grad
        return (grad * self.b if na else None), (grad * self.a if nb else None)


class Div(Function):
    def forward(self, a, b):
        self.a = a
        self.b = b
        return a / b

    def backward(self, grad):
        na, nb = self.needs_input_grad
        b = self.b
        ga = grad / b if na else None
        gb = -grad * self.a / (b * b) if nb else None
        return ga, gb


class Pow(Function):
    def forward(self, a, b):
        self.a = a
        self.b = b
        self.y = a ** b
        return self.y

    def backward(self, grad):
        na, nb = self.needs_input_grad
        a, b = self.a, self.b
        ga = gb = None
        if na:
            if isinstance(b, (int, float)):
                ga = grad * b * a ** (b - 1) if b != 0 else grad * 0
            else:
                ga = grad * b * np.where(b == 0, 0, a ** np.where(b == 0, 1, b - 1))
        if nb:
            # PyTorch's convention: 0 ** b with b >= 0 has zero gradient in b; the masked
            # entries are 0 * log(0) = nan before masking, hence the silenced warnings
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = grad * np.where((a == 0) & (b >= 0), 0, self.y * np.log(a))
        return ga, gb


def add(input, other, alpha=1):
    """``input + alpha * other`` with broadcasting."""
    if alpha != 1:
        other = mul(other, alpha) if isinstance(other, Tensor) else other * alpha
    return _binary(Add, "add", input, other)


def sub(input, other, alpha=1):
    """``input - alpha * other`` with broadcasting."""
    if alpha != 1:
        other = mul(other, alpha) if isinstance(other, Tensor) else other * alpha
    return _binary(Sub, "sub", input, other)


def mul(input, other):
    """Elementwise product with broadcasting."""
    return _binary(Mul, "mul", input, other)


def div(input, other, rounding_mode=None):
    """Elementwise true division with broadcasting (integers divide to the default float)."""
    if rounding_mode is not None:
        a = input.data if isinstance(input, Tensor) else input
        b = other.data if isinstance(other, Tensor) else other
        if rounding_mode == "floor":
            return _make(np.floor_divide(a, b))
        if rounding_mode == "trunc":
            return _make(np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b)))
        raise ValueError(f"div: rounding_mode must be None, 'floor' or 'trunc', got {rounding_mode!r}")
    input, other = _operands("div", input, other)
    fdt = backend.get_default_dtype()
    if isinstance(input, Tensor) and input.data.dtype.kind in "iub":
        input = cast(input, fdt)
        if isinstance(other, Tensor) and other.data.dtype.kind in "iub":
            other = cast(other, fdt)
    elif isinstance(other, Tensor) and other.data.dtype.kind in "iub":
        other = cast(other, fdt if not isinstance(input, Tensor) else input.data.dtype)
    return _binary(Div, "div", input, other)


def pow(input, exponent):
    """``input ** exponent``; either may be a tensor or a number."""
    return _binary(Pow, "pow", input, exponent)


class Neg(Function):
    saves_inputs = False

    def forward(self, x):
        return -x

    def backward(self, grad):
        return (-grad,)


def neg(input):
    return Neg.apply(input)


# -- comparisons and selection -------------------------------------------------------------


class Maximum(Function):
    def forward(self, a, b):
        self.a = a
        self.b = b
        return np.maximum(a, b)

    def backward(self, grad):
        # ties split the gradient in half, as PyTorch does
        share = (self.a > self.b) + 0.5 * (self.a == self.b)
        share = share.astype(grad.dtype, copy=False)
        na, nb = self.needs_input_grad
        return (grad * share if na else None), (grad * (1 - share) if nb else None)


class Minimum(Function):
    def forward(self, a, b):
        self.a = a
        self.b = b
        return np.minimum(a, b)

    def backward(self, grad):
        share = (self.a < self.b) + 0.5 * (self.a == self.b)
        share = share.astype(grad.dtype, copy=False)
        na, nb = self.needs_input_grad
        return (grad * share if na else None), (grad * (1 - share) if nb else None)


def maximum(input, other):
    """Elementwise maximum; at ties each side gets half the gradient."""
    return _binary(Maximum, "maximum", input, other)


def minimum(input, other):
    """Elementwise minimum; at ties each side gets half the gradient."""
    return _binary(Minimum, "minimum", input, other)


class Where(Function):
    saves_inputs = False

    def forward(self, cond, a, b):
        self.cond = cond
        return np.where(cond, a, b)

    def backward(self, grad):
        _, na, nb = self.needs_input_grad
        zero = np.zeros((), grad.dtype)
        ga = np.where(self.cond, grad, zero) if na else None
        gb = np.where(self.cond, zero, grad) if nb else None
        return None, ga, gb


def where(condition, input=None, other=None):
    """Elementwise ``input if condition else other``; with one argument, ``nonzero`` as tuple."""
    cond = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if input is None and other is None:
        return tuple(_make(i) for i in np.nonzero(cond))
    if cond.dtype != np.bool_:
        cond = cond.astype(bool)
    input, other = _operands("where", input, other)
    try:
        return Where.apply(cond, input, other)
    except ValueError as e:
        sa = input.shape if isinstance(input, Tensor) else ()
        sb = other.shape if isinstance(other, Tensor) else ()
        raise ValueError(
            f"where: cannot broadcast condition {cond.shape}, input {sa} and other {sb}") from e


class Clamp(Function):
    def forward(self, x, lo, hi):
        self.x = x
        self.lo = lo
        self.hi = hi
        if lo is not None and hi is not None:
            return np.clip(x, lo, hi)
        if lo is not None:
            return np.maximum(x, lo)
        return np.minimum(x, hi)

    def backward(self, grad):
        x, lo, hi = self.x, self.lo, self.hi
        nx, nlo, nhi = self.needs_input_grad
        inside = np.ones(x.shape, bool)
        if lo is not None:
            inside &= x >= lo
        if hi is not None:
            inside &= x <= hi
        gx = grad * inside if nx else None
        glo = ghi = None
        if nlo:
            glo = grad * (x < lo)
        if nhi:
            ghi = grad * (x > hi) * (True if lo is None else (x >= lo))
        return gx, glo, ghi


def clamp(input, min=None, max=None):
    """Clip values to ``[min, max]``; the gradient passes where the value was inside."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    lo = _scalar(min) if not isinstance(min, Tensor) else min
    hi = _scalar(max) if not isinstance(max, Tensor) else max
    if isinstance(lo, Tensor) and lo.data.dtype != input.data.dtype:
        lo = cast(lo, input.data.dtype)
    if isinstance(hi, Tensor) and hi.data.dtype != input.data.dtype:
        hi = cast(hi, input.data.dtype)
    if type(lo) is float and input.data.dtype.kind in "iub":
        input = cast(input, backend.get_default_dtype())
    return Clamp.apply(input, lo, hi)


clip = clamp


# -- unary math ----------------------------------------------------------------------------


class Abs(Function):
    def forward(self, x):
        self.x = x
        return np.abs(x)

    def backward(self, grad):
        return (grad * np.sign(self.x),)


class Exp(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, x):
        self.y = np.exp(x)
        return self.y

    def backward(self, grad):
        return (grad * self.y,)


class Log(Function):
    def forward(self, x):
        self.x = x
        return np.log(x)

    def backward(self, grad):
        return (grad / self.x,)


class Sqrt(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, x):
        self.y = np.sqrt(x)
        return self.y

    def backward(self, grad):
        return (grad / (2 * self.y),)


class Sin(Function):
    def forward(self, x):
        self.x = x
        return np.sin(x)

    def backward(self, grad):
        return (grad * np.cos(self.x),)


class Cos(Function):
    def forward(self, x):
        self.x = x
        return np.cos(x)

    def backward(self, grad):
        return (-grad * np.sin(self.x),)


def _grad_out(grad: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A workspace array for an activation's input gradient from grad and its saved output y:
    their broadcast shape and result dtype (the same as y's in a network, where the checks
    below cost more than the kernel on small tensors)."""
    if grad.shape == y.shape and grad.dtype == y.dtype:
        return backend.empty(y.shape, y.dtype)
    return backend.empty(np.broadcast_shapes(grad.shape, y.shape), np.result_type(grad, y))


def _native_backward(name: str, y: np.ndarray, grad: np.ndarray, out: np.ndarray) -> bool:
    """An activation's gradient in one pass by the native kernel ``name`` (the same float
    operations as the NumPy lines it stands in for); False where it does not apply."""
    k = _native.unary_operands(y, grad)
    if k is None:
        return False
    addr = _native.address
    getattr(k, name)[y.dtype](addr(y), addr(grad), addr(out), y.size)
    return True


# -- ReLU, sigmoid and tanh: forward into any array (the input's own, for a fused layer) and
# backward from the saved output. The Functions below use these, and so do the layers that
# apply an activation to their own fresh output (Linear and convolution inside Sequential,
# ops/linalg.py and ops/conv.py), so the two give the same bits.

def _relu_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    # max(x, 0): NaN stays NaN, -0.0 becomes 0.0, as np.maximum gives
    k = _native.unary_operands(x, out)
    if k is None:
        return np.maximum(x, 0, out=out)
    addr = _native.address
    k.relu_forward[x.dtype](addr(x), addr(out), x.size)
    return out


def _sigmoid_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-x)) with exp's argument capped below overflow: the capped values give
    # outputs under the smallest normal float, so the result is right and warning-free
    cap = 88.0 if x.dtype.itemsize <= 4 else 709.0
    y = np.negative(x, out=out)
    np.minimum(y, cap, out=y)
    np.exp(y, out=y)
    y += 1
    return np.reciprocal(y, out=y)


def _tanh_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    return np.tanh(x, out=out)


def _relu_grad(y: np.ndarray, grad: np.ndarray) -> np.ndarray:
    # the mask as 0/1 floats in the output array, then one multiply: no bool temporary
    # (NaN > 0 is false, so a NaN output passes no gradient, as in PyTorch)
    out = _grad_out(grad, y)
    if not _native_backward("relu_backward", y, grad, out):
        np.greater(y, 0, out=out)
        np.multiply(grad, out, out=out)
    return out


def _sigmoid_grad(y: np.ndarray, grad: np.ndarray) -> np.ndarray:
    out = _grad_out(grad, y)
    if not _native_backward("sigmoid_backward", y, grad, out):
        np.subtract(1, y, out=out)
        out *= y
        out *= grad
    return out


def _tanh_grad(y: np.ndarray, grad: np.ndarray) -> np.ndarray:
    # in place on one array the op owns: a fresh temporary per step costs page faults
    out = _grad_out(grad, y)
    if not _native_backward("tanh_backward", y, grad, out):
        np.multiply(y, y, out=out)
        np.subtract(1, out, out=out)
        np.multiply(grad, out, out=out)
    return out


# Rows from which the row kernels below beat NumPy: its cost grows with the rows (a call per
# row), the foreign call's is fixed (about 3 us). Measured: 64 x 84 took 5 us in NumPy and 9 us
# natively, 1000 x 10 (a sum) 27 and 8 us, 2048 x 65 55-75 and 23-27 us.
_MANY_ROWS = 256


def _bias_operands(y: np.ndarray, bias: np.ndarray):
    """The kernels for a bias ``(C,)`` on the rows of ``y`` (*, C), or None (as
    ``_native.unary_operands``, with the bias contiguous and of ``y``'s dtype)."""
    k = _native.unary_operands(y, y)
    if (k is None or bias.dtype != y.dtype or bias.shape != y.shape[-1:]
            or not bias.flags.c_contiguous):
        return None
    return k


def _add_rows(y: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """y += bias along the last axis, in place (a layer's bias on its product). Natively where
    it applies: NumPy's broadcast makes one inner-loop call per row, which on rows of few
    columns (char_lstm's 2048 x 65 logits) costs more than the adds."""
    k = None if y.size < _MANY_ROWS * bias.size else _bias_operands(y, bias)
    if k is None:
        return np.add(y, bias, out=y)
    addr = _native.address
    cols = bias.shape[0]
    k.add_rows[y.dtype](addr(y), addr(bias), y.size // cols, cols)
    return y


def _sum_rows(g: np.ndarray) -> np.ndarray:
    """``g.sum(axis=0)`` of a 2-d ``g``: a layer's bias gradient. Natively where it applies,
    adding row after row from 0 as NumPy does on more than one column (one column it sums
    pairwise), so the same bits."""
    k = None if g.shape[0] < _MANY_ROWS or g.shape[1] < 2 else _native.unary_operands(g, g)
    if k is None:
        return np.add.reduce(g, 0)  # g.sum(axis=0) without the method's Python layer
    out = np.empty(g.shape[1], g.dtype)
    addr = _native.address
    k.sum_rows[g.dtype](addr(g), g.shape[0], g.shape[1], addr(out))
    return out


def _relu_biased(y: np.ndarray, bias: np.ndarray) -> np.ndarray:
    # one native pass for the add and the ReLU where it applies: the same bits as the two
    k = _bias_operands(y, bias)
    if k is None:
        return _relu_into(_add_rows(y, bias), y)
    addr = _native.address
    cols = bias.shape[0]
    k.bias_relu[y.dtype](addr(y), addr(bias), y.size // cols, cols)
    return y


def _sigmoid_biased(y: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return _sigmoid_into(_add_rows(y, bias), y)


def _tanh_biased(y: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return _tanh_into(_add_rows(y, bias), y)


# name -> (forward into an array, gradient from the output, forward of y + bias in place on y),
# for floating-point arrays
ACTIVATIONS = {"relu": (_relu_into, _relu_grad, _relu_biased),
               "sigmoid": (_sigmoid_into, _sigmoid_grad, _sigmoid_biased),
               "tanh": (_tanh_into, _tanh_grad, _tanh_biased)}


class Relu(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, x):
        if x.dtype.kind != "f":
            self.y = np.maximum(x, 0)
            return self.y
        self.y = _relu_into(x, backend.empty(x.shape, x.dtype))
        return self.y

    def backward(self, grad):
        y = self.y
        dt = y.dtype if grad.dtype == y.dtype else np.result_type(grad, y)
        if dt.kind != "f":
            return (grad * (y > 0),)
        return (_relu_grad(y, grad),)


class Sigmoid(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, x):
        self.y = _sigmoid_into(x, backend.empty(x.shape, x.dtype))
        return self.y

    def backward(self, grad):
        return (_sigmoid_grad(self.y, grad),)


class Tanh(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, x):
        self.y = _tanh_into(x, backend.empty(x.shape, x.dtype))
        return self.y

    def backward(self, grad):
        return (_tanh_grad(self.y, grad),)


def _unary(cls, float_only=True):
    def op(input):
        if float_only and input.data.dtype.kind != "f":
            input = cast(input, backend.get_default_dtype())  # as PyTorch: exp(int) is float
        return cls.apply(input)

    return op


abs = _unary(Abs, float_only=False)


def _with_inplace(op):
    """Accept PyTorch's ``inplace`` flag; the result is the same value, computed out of place
    (deepgrad's graph has no in-place ops)."""
    def wrapped(input, inplace: bool = False):
        return op(input)

    wrapped.__name__ = wrapped.__qualname__ = op.__name__
    return wrapped



exp = _unary(Exp)
log = _unary(Log)
sqrt = _unary(Sqrt)
sin = _unary(Sin)
cos = _unary(Cos)
relu = _unary(Relu, float_only=False)
sigmoid = _unary(Sigmoid)
tanh = _unary(Tanh)
for _name, _fn in (("abs", abs), ("exp", exp), ("log", log), ("sqrt", sqrt), ("sin", sin),
                   ("cos", cos), ("relu", relu), ("sigmoid", sigmoid), ("tanh", tanh)):
    _fn.__name__ = _fn.__qualname__ = _name
    _fn.__doc__ = f"Elementwise {_name}, differentiable."


relu = _with_inplace(relu)


def square(input):
    return mul(input, input)


# -- dtype conversion ----------------------------------------------------------------------


class Cast(Function):
    saves_inputs = False

    def forward(self, x, dtype):
        self.in_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, grad):
        return grad.astype(self.in_dtype), None


def cast(input: Tensor, dtype) -> Tensor:
    """Convert to ``dtype``; differentiable between floating types."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "fc" or input.data.dtype.kind not in "fc":
        return _make(input.data.astype(dtype))
    return Cast.apply(input, dtype)


class Clone(Function):
    saves_inputs = False

    def forward(self, x):
        return x.copy()

    def backward(self, grad):
        return (grad,)


def clone(input):
    """A copy of the data that stays in the graph."""
    return Clone.apply(input)


# -- not differentiable: results carry no graph --------------------------------------------


def _nondiff(npfn, name):
    def op(input, *args):
        args = [a.data if isinstance(a, Tensor) else a for a in args]
        return _make(npfn(input.data if isinstance(input, Tensor) else input, *args))

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise {name}; not differentiable (the result has no graph)."
    return op


eq = _nondiff(np.equal, "eq")
ne = _nondiff(np.not_equal, "ne")
lt = _nondiff(np.less, "lt")
le = _nondiff(np.less_equal, "le")
gt = _nondiff(np.greater, "gt")
ge = _nondiff(np.greater_equal, "ge")
logical_and = _nondiff(np.logical_and, "logical_and")
logical_or = _nondiff(np.logical_or, "logical_or")
logical_not = _nondiff(np.logical_not, "logical_not")
sign = _nondiff(np.sign, "sign")
floor = _nondiff(np.floor, "floor")
ceil = _nondiff(np.ceil, "ceil")
round = _nondiff(np.round, "round")
isnan = _nondiff(np.isnan, "isnan")
isinf = _nondiff(np.isinf, "isinf")
isfinite = _nondiff(np.isfinite, "isfinite")


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    return bool(np.allclose(input.data, other.data if isinstance(other, Tensor) else other,
                            rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(input, other) -> bool:
    return input.shape == other.shape and bool(np.array_equal(input.data, other.data))
