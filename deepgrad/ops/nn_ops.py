"""Neural-network ops with fused backward: activations, softmax, normalization, dropout,
embedding and losses (the functions of ``deepgrad.nn.functional``).

Each op is one ``Function`` node with a hand-written backward; the public functions check
shapes with integer and tuple comparisons and then call ``apply``. Names, arguments, defaults
and semantics follow ``torch.nn.functional``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import _native, backend
from ..autograd.function import Function
from ..random import _generator
from ..tensor import Tensor
from .elementwise import cast, neg
from .shape import reshape

__all__ = [
    # activations
    "leaky_relu", "elu", "selu", "celu", "gelu", "softplus", "hardtanh", "relu6", "silu",
    "mish", "logsigmoid", "softmax", "log_softmax", "softmin",
    # normalization
    "batch_norm", "layer_norm",
    # dropout and embedding
    "dropout", "dropout1d", "dropout2d", "embedding",
    # losses
    "mse_loss", "l1_loss", "cross_entropy", "nll_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
]


def _dim(op: str, dim: int, ndim: int) -> int:
    n = ndim if ndim > 0 else 1
    if dim < -n or dim >= n:
        raise IndexError(
            f"{op}: dim {dim} is out of range for a tensor with {ndim} dims; expected a value "
            f"in [{-n}, {n - 1}]")
    return dim + n if dim < 0 else dim


def _check_float(op: str, input) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: expected a Tensor input, got {type(input).__name__}")
    if input.data.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point input, got dtype {input.data.dtype}")


# =========================================================================================
# activations
# =========================================================================================


class LeakyRelu(Function):
    saves_inputs = False

    # NumPy's masked selection (where=, np.where) is slow on random masks, so the ops here
    # use max/min and 0/1 multipliers instead
    def forward(self, x, slope):
        self.pos = x > 0
        self.slope = slope
        y = x * slope
        # max(x, slope x) is x for x > 0 and slope x otherwise when slope <= 1
        if slope <= 1.0:
            np.maximum(y, x, out=y)
        else:
            np.minimum(y, x, out=y)
        return y

    def backward(self, grad):
        slope = self.slope
        # 1 where x > 0, else slope
        g = np.multiply(self.pos, 1.0 - slope, dtype=grad.dtype)
        g += slope
        g *= grad
        return g, None


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``x`` where ``x > 0``, else ``negative_slope * x``. ``inplace`` gives the same result."""
    _check_float("leaky_relu", input)
    return LeakyRelu.apply(input, float(negative_slope))


class Elu(Function):
    """``scale * (x if x > 0 else alpha * (exp(x * input_scale) - 1))`` (ELU, SELU, CELU)."""

    saves_inputs = False

    def forward(self, x, alpha, scale, input_scale):
        e = np.minimum(x, 0)  # exp only of the negative side: no overflow
        if input_scale != 1.0:
            e *= input_scale
        np.exp(e, out=e)  # 1 where x >= 0
        self.e = e
        self.pos = x > 0
        self.alpha, self.scale, self.input_scale = alpha, scale, input_scale
        # scale * (max(x, 0) + alpha (e - 1)): the second term vanishes for x >= 0
        y = e - 1.0
        y *= alpha
        y += np.maximum(x, 0)
        if scale != 1.0:
            y *= scale
        return y

    def backward(self, grad):
        # scale for x > 0, else scale * alpha * input_scale * e (and e = 1 for x > 0)
        k = self.scale * self.alpha * self.input_scale
        g = self.e * k
        g += np.multiply(self.pos, self.scale - k, dtype=g.dtype)
        g *= grad
        return g, None, None, None


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``."""
    _check_float("elu", input)
    return Elu.apply(input, float(alpha), 1.0, 1.0)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """Scaled ELU with the self-normalising constants of Klambauer et al. (2017)."""
    _check_float("selu", input)
    return Elu.apply(input, _SELU_ALPHA, _SELU_SCALE, 1.0)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    _check_float("celu", input)
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0, got 0")
    return Elu.apply(input, float(alpha), 1.0, 1.0 / alpha)


# -- the error function --------------------------------------------------------------------
# NumPy has no erf. These are W. J. Cody's rational Chebyshev approximations ("Rational
# Chebyshev approximations for the error function", Math. Comp. 1969), good to about 1e-16 in
# float64; evaluated in float32 they are as good as float32 allows. Coefficients are listed
# from the highest-order term that Horner's rule adds first.
_ERF_A = (0.185777706184603153, 3.16112374387056560, 113.864154151050156,
          377.485237685302021, 3209.37758913846947)
_ERF_B = (23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062)
_ERFC_C = (2.15311535474403846e-8, 0.564188496988670089, 8.88314979438837594,
           66.1191906371416295, 298.635138197400131, 881.952221241769090,
           1712.04761263407058, 2051.07837782607147, 1230.33935479799725)
_ERFC_D = (15.7449261107098347, 117.693950891312499, 537.181101862009858,
           1621.38957456669019, 3290.79923573345963, 4362.61909014324716,
           3439.36767414372164, 1230.33935480374942)
_ERFC_P = (0.0163153871373020978, 0.305326634961232344, 0.360344899949804439,
           0.125781726111229246, 0.0160837851487422766, 6.58749161529837803e-4)
_ERFC_Q = (2.56852019228982242, 1.87295284992346047, 0.527905102951428412,
           0.0605183413124413191, 0.00233520497626869185)
_SQRT_1_PI = 0.56418958354775628695
_ERF_SMALL = 0.46875


def _rational(t, num, den):
    """``num(t) / den(t)`` by Horner's rule; ``den`` is monic (its leading 1 is implicit)."""
    p = t * num[0]
    for c in num[1:-1]:
        p += c
        p *= t
    p += num[-1]
    q = t + den[0]
    for c in den[1:]:
        q *= t
        q += c
    p /= q
    return p


def _erf_small(x):
    """erf(x) for |x| <= 0.46875."""
    t = x * x
    r = _rational(t, _ERF_A, _ERF_B)
    r *= x
    return r


def _erfc_large(y):
    """erfc(y) for y > 0.46875, within 5e-12 also for 0 <= y <= 0.46875 (a fresh array)."""
    y = np.minimum(y, 27.0)  # erfc is 0 beyond; keeps y * y and 1 / y finite
    if y.size and y.max() > 4.0:
        r = np.empty_like(y)
        flat = y.reshape(-1)
        far = np.flatnonzero(flat > 4.0)
        mid = np.flatnonzero(flat <= 4.0)
        r.put(mid, _rational(flat.take(mid), _ERFC_C, _ERFC_D))
        yf = flat.take(far)
        t = 1.0 / (yf * yf)
        s = _rational(t, _ERFC_P, _ERFC_Q)
        s *= t
        np.subtract(_SQRT_1_PI, s, out=s)
        s /= yf
        r.put(far, s)
    else:
        r = _rational(y, _ERFC_C, _ERFC_D)
    # exp(-y^2) as exp(-a^2) * exp(-(y - a)(y + a)) with a = y rounded down to 1/16: a^2 is
    # exact, which keeps the relative error of the tail small (Cody's trick)
    a = np.trunc(y * 16.0)
    a *= 1.0 / 16.0
    d = y - a
    d *= y + a
    a *= a
    a += d
    np.negative(a, out=a)
    np.exp(a, out=a)
    r *= a
    return r


def _split_small(u):
    """Flat indices of ``|u| <= 0.46875`` and of the rest, or None for an empty part.

    Index arrays, not boolean masks: NumPy's masked selection is slow on random masks.
    """
    flat = np.abs(u).reshape(-1)
    big = flat > _ERF_SMALL
    n_big = np.count_nonzero(big)
    if n_big == 0:
        return None, None
    if n_big == flat.size:
        return None, flat
    return np.flatnonzero(~big), np.flatnonzero(big)


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise, in ``x``'s floating dtype."""
    small, big = _split_small(x)
    if big is None:
        return _erf_small(x)
    if small is None:
        v = _erfc_large(np.abs(x))
        np.subtract(1.0, v, out=v)
        return np.copysign(v, x, out=v)
    out = np.empty_like(x)
    flat = x.reshape(-1)
    out.put(small, _erf_small(flat.take(small)))
    xb = flat.take(big)
    v = _erfc_large(np.abs(xb))
    np.subtract(1.0, v, out=v)
    out.put(big, np.copysign(v, xb, out=v))
    return out


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x) = erfc(-x / sqrt(2)) / 2, with full relative precision in the lower tail.

    One formula for all x, without selecting elements: Cody's erfc rational for [0.47, 4] is
    used on [0, 0.47] too, where it stays within 5e-12 of erfc (Phi is near 1/2 there, so
    this is a relative error of 1e-11); only arguments beyond 4 (|x| > 5.6) take the tail
    formula. Selecting elements by a random mask is slow in NumPy; this path avoids it.
    """
    u = x * (1.0 / math.sqrt(2.0))
    y = np.abs(u)
    c = _erfc_large(y)
    c *= 0.5
    # the lower half is erfc(|u|) / 2 (no cancellation); the upper half 1 - that
    v = np.subtract(u > 0, c, out=c)
    np.abs(v, out=v)
    return v


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715


class Gelu(Function):
    def forward(self, x, approximate):
        self.x = x
        self.tanh = approximate
        if approximate:
            inner = x * x
            inner *= _GELU_C
            inner += 1.0
            inner *= x
            inner *= _SQRT_2_OVER_PI
            t = np.tanh(inner, out=inner)
            self.t = t
            y = t + 1.0
            y *= x
            y *= 0.5
            return y
        cdf = _normal_cdf(x)
        self.cdf = cdf
        return x * cdf

    def backward(self, grad):
        x = self.x
        if self.tanh:
            t = self.t
            # d/dx 0.5 x (1 + t) = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3c x^2)
            inner = x * x
            inner *= 3.0 * _GELU_C
            inner += 1.0
            inner *= x
            inner *= 0.5 * _SQRT_2_OVER_PI
            sech2 = t * t
            np.subtract(1.0, sech2, out=sech2)
            inner *= sech2
            inner += 0.5
            inner += 0.5 * t
            inner *= grad
            return inner, None
        # d/dx x Phi(x) = Phi(x) + x phi(x)
        pdf = x * x
        pdf *= -0.5
        np.exp(pdf, out=pdf)
        pdf *= _INV_SQRT_2PI
        pdf *= x
        pdf += self.cdf
        pdf *= grad
        return pdf, None


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """``x * Phi(x)`` (Phi the standard normal CDF), or its tanh approximation."""
    _check_float("gelu", input)
    if approximate == "none":
        return Gelu.apply(input, False)
    if approximate == "tanh":
        return Gelu.apply(input, True)
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


class Softplus(Function):
    def forward(self, x, beta, threshold):
        bx = x * beta if beta != 1.0 else x
        self.bx = bx
        self.threshold = threshold
        # log(1 + exp(bx)) = max(bx, 0) + log1p(exp(-|bx|)): no overflow for large bx
        y = np.abs(bx)
        np.negative(y, out=y)
        np.exp(y, out=y)
        np.log1p(y, out=y)
        # above the threshold the output is linear: drop the log1p term (a 0/1 multiplier
        # is much faster than a masked copy in NumPy)
        y *= bx <= threshold
        y += np.maximum(bx, 0)
        if beta != 1.0:
            y *= 1.0 / beta
        return y

    def backward(self, grad):
        bx = self.bx
        # sigmoid(beta x); exactly 1 above the threshold, where the output is x
        s = _sigmoid(bx)
        np.maximum(s, bx > self.threshold, out=s)
        s *= grad
        return s, None, None


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + exp(beta * x)) / beta``; linear (``x``) where ``beta * x > threshold``."""
    _check_float("softplus", input)
    return Softplus.apply(input, float(beta), float(threshold))


class Hardtanh(Function):
    saves_inputs = False

    def forward(self, x, lo, hi):
        self.inside = (x > lo) & (x < hi)
        return np.clip(x, lo, hi)

    def backward(self, grad):
        return grad * self.inside, None, None


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Tensor:
    """Clamp to ``[min_val, max_val]``; the gradient is zero outside (and on the edges)."""
    _check_float("hardtanh", input)
    if min_val > max_val:
        raise ValueError(
            f"hardtanh: min_val must not exceed max_val, got min_val={min_val}, "
            f"max_val={max_val}")
    return Hardtanh.apply(input, min_val, max_val)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """``min(max(x, 0), 6)``."""
    _check_float("relu6", input)
    return Hardtanh.apply(input, 0.0, 6.0)


def _sigmoid(x):
    """Overflow-free logistic function in ``x``'s dtype."""
    cap = 88.0 if x.dtype.itemsize <= 4 else 709.0
    s = np.negative(x)
    np.minimum(s, cap, out=s)
    np.exp(s, out=s)
    s += 1.0
    np.reciprocal(s, out=s)
    return s


class Silu(Function):
    def forward(self, x):
        self.x = x
        s = _sigmoid(x)
        self.s = s
        return x * s

    def backward(self, grad):
        # s (1 + x (1 - s))
        s = self.s
        g = 1.0 - s
        g *= self.x
        g += 1.0
        g *= s
        g *= grad
        return (g,)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """``x * sigmoid(x)`` (swish)."""
    _check_float("silu", input)
    return Silu.apply(input)


def _softplus1(x):
    """log(1 + exp(x)) with no overflow."""
    y = np.abs(x)
    np.negative(y, out=y)
    np.exp(y, out=y)
    np.log1p(y, out=y)
    y += np.maximum(x, 0)
    return y


class Mish(Function):
    def forward(self, x):
        self.x = x
        t = np.tanh(_softplus1(x))
        self.t = t
        return x * t

    def backward(self, grad):
        # tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2)
        t = self.t
        g = t * t
        np.subtract(1.0, g, out=g)
        g *= _sigmoid(self.x)
        g *= self.x
        g += t
        g *= grad
        return (g,)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """``x * tanh(softplus(x))``."""
    _check_float("mish", input)
    return Mish.apply(input)


class LogSigmoid(Function):
    def forward(self, x):
        self.x = x
        y = _softplus1(-x)
        np.negative(y, out=y)
        return y

    def backward(self, grad):
        return (grad * _sigmoid(-self.x),)


def logsigmoid(input: Tensor) -> Tensor:
    """``log(sigmoid(x))``, stable for large ``|x|``."""
    _check_float("logsigmoid", input)
    return LogSigmoid.apply(input)


# -- softmax family ------------------------------------------------------------------------


class Softmax(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, x, dim):
        self.dim = dim
        if x.ndim == 0:
            self.y = np.ones_like(x)
            return self.y
        y = x - np.maximum.reduce(x, dim, keepdims=True)
        np.exp(y, out=y)
        y /= np.add.reduce(y, dim, keepdims=True)
        self.y = y
        return y

    def backward(self, grad):
        y = self.y
        gx = grad * y
        s = np.add.reduce(gx, self.dim, keepdims=True) if y.ndim else gx
        gx -= y * s
        return gx, None


class LogSoftmax(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, x, dim):
        self.dim = dim
        if x.ndim == 0:
            self.y = np.zeros_like(x)
            return self.y
        z = x - np.maximum.reduce(x, dim, keepdims=True)
        e = np.exp(z)
        z -= np.log(np.add.reduce(e, dim, keepdims=True))
        self.y = z
        return z

    def backward(self, grad):
        if self.y.ndim == 0:
            return grad * 0, None
        gx = np.exp(self.y)
        gx *= np.add.reduce(grad, self.dim, keepdims=True)
        np.subtract(grad, gx, out=gx)
        return gx, None


def _implicit_dim(op: str, ndim: int) -> int:
    warnings.warn(
        f"Implicit dimension choice for {op} has been deprecated. Change the call to include "
        "dim=X as an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def _softmax_input(op, input, dim, dtype):
    _check_float(op, input)
    if dtype is not None and np.dtype(dtype) != input.data.dtype:
        input = cast(input, dtype)
    ndim = input.data.ndim
    if dim is None:
        dim = _implicit_dim(op, ndim)
    return input, _dim(op, dim, ndim)


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype=None) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``dim``, computed after subtracting the max."""
    input, d = _softmax_input("softmax", input, dim, dtype)
    return Softmax.apply(input, d)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
                dtype=None) -> Tensor:
    """``x - logsumexp(x)`` along ``dim``; use with ``nll_loss`` (or use ``cross_entropy``)."""
    input, d = _softmax_input("log_softmax", input, dim, dtype)
    return LogSoftmax.apply(input, d)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype=None) -> Tensor:
    """``softmax(-x)`` along ``dim``."""
    input, d = _softmax_input("softmin", input, dim, dtype)
    return Softmax.apply(neg(input), d)


# =========================================================================================
# normalization
# =========================================================================================


# the native batch norm takes channels of at least this many values per image (a 2-d input,
# one value per image and channel, reads a channel at a stride: the NumPy path serves it)
_BN_MIN_RUN = 16


def _batch_norm_kernels(x3: np.ndarray, w, b):
    """The native kernels for a training batch norm of ``x3`` (N, C, L), or None: float32 or
    float64, C-contiguous, runs of ``_BN_MIN_RUN`` or more, parameters of the same dtype."""
    if x3.ndim != 3 or x3.shape[2] < _BN_MIN_RUN or not x3.flags.c_contiguous:
        return None
    for p in (w, b):
        if p is not None and (p.dtype != x3.dtype or not p.flags.c_contiguous):
            return None
    return _native.for_dtype(x3.dtype)


def _update_running(running_mean, running_var, mean, var, momentum: float, m: int) -> None:
    """``running = (1 - momentum) * running + momentum * batch``, in place; the running
    variance takes the unbiased batch variance ``var * m / (m - 1)``."""
    if running_mean is not None:
        running_mean *= 1.0 - momentum
        running_mean += mean * momentum
    if running_var is not None:
        running_var *= 1.0 - momentum
        running_var += var * (momentum * m / (m - 1))


class BatchNorm(Function):
    """Batch normalization over all dims but dim 1, as one node.

    The input is viewed as ``(N, C)`` or ``(N, C, L)``; statistics have shape ``(C,)`` or
    ``(C, 1)`` so that they broadcast. In training the batch statistics are used (and the
    running ones updated in place); in eval the running ones. Per-channel sums are einsums,
    which NumPy runs several times faster than ``sum(axis=(0, 2))``. In training, the native
    kernels (``_batch_norm_kernels``) do the forward in three passes and the backward in two
    where the NumPy lines take about ten: on (32, 64, 16, 16) float32, forward 740 against
    1,558 us and forward plus backward 1,536 against 3,086 (PyTorch: 738 and 1,637).
    """

    def forward(self, x, w, b, running_mean, running_var, training, momentum, eps):
        shape = x.shape
        n, c = shape[0], shape[1]
        if x.ndim == 2:
            x2 = x
            m = n
            sshape = (c,)
            self.sub_sum, self.sub_dot = "nc->c", "nc,nc->c"
        else:
            x2 = x.reshape(n, c, -1)
            m = n * x2.shape[2]
            sshape = (c, 1)
            self.sub_sum, self.sub_dot = "ncl->c", "ncl,ncl->c"
        self.m = m
        self.shape = shape
        self.w = w
        self.training = training
        self.native = None
        if training:
            kern = _batch_norm_kernels(x2, w, b)
            if kern is not None:
                return self._native_forward(kern, x2, w, b, running_mean, running_var,
                                            momentum, eps)
            mean = np.einsum(self.sub_sum, x2)
            mean *= 1.0 / m
            xc = x2 - mean.reshape(sshape)
            var = np.einsum(self.sub_dot, xc, xc)
            var *= 1.0 / m
            _update_running(running_mean, running_var, mean, var, momentum, m)
            var += eps
            invstd = np.sqrt(var, out=var)
            np.reciprocal(invstd, out=invstd)
            invstd = invstd.reshape(sshape)
            xhat = xc
            xhat *= invstd
            self.xhat = xhat
            self.invstd = invstd
            if w is not None:
                y = xhat * w.reshape(sshape)
                if b is not None:
                    y += b.reshape(sshape)
            elif b is not None:
                y = xhat + b.reshape(sshape)
            else:
                y = xhat.copy()
            return y.reshape(shape)
        # eval: y = x * scale + shift with the running statistics
        invstd = running_var + eps
        np.sqrt(invstd, out=invstd)
        np.reciprocal(invstd, out=invstd)
        scale = invstd * w if w is not None else invstd
        shift = running_mean * scale
        np.negative(shift, out=shift)
        if b is not None:
            shift += b
        y = x2 * scale.reshape(sshape)
        y += shift.reshape(sshape)
        self.x2 = x2
        self.mean = running_mean.reshape(sshape).copy()
        self.invstd = invstd.reshape(sshape)
        self.scale = scale.reshape(sshape)
        return y.reshape(shape)

    def _native_forward(self, kern, x3, w, b, running_mean, running_var, momentum, eps):
        """The training forward in the native kernel's three passes (``_batch_norm_kernels``)."""
        n, c, l = x3.shape
        dt = x3.dtype
        mean, var, invstd = np.empty(c, dt), np.empty(c, dt), np.empty(c, dt)
        xhat = backend.empty(x3.shape, dt)
        y = backend.empty(x3.shape, dt)
        addr = _native.address
        kern.batch_norm_forward[dt](addr(x3), n, c, l, None if w is None else addr(w),
                                    None if b is None else addr(b), eps, addr(mean), addr(var),
                                    addr(invstd), addr(xhat), addr(y))
        _update_running(running_mean, running_var, mean, var, momentum, self.m)
        self.native = kern
        self.xhat = xhat
        self.invstd = invstd
        return y.reshape(self.shape)

    def _native_backward(self, g, nx):
        """Sums and input gradient in the native kernel: ``(gsum, gxsum, gx or None)``."""
        kern, xhat = self.native, self.xhat
        n, c, l = xhat.shape
        dt = xhat.dtype
        g = np.ascontiguousarray(g, dt)
        gsum, gxsum = np.empty(c, dt), np.empty(c, dt)
        gx = backend.empty(xhat.shape, dt) if nx else None
        addr = _native.address
        kern.batch_norm_backward[dt](addr(g), addr(xhat), n, c, l, addr(self.invstd),
                                     None if self.w is None else addr(self.w), addr(gsum),
                                     addr(gxsum), None if gx is None else addr(gx))
        return gsum, gxsum, gx

    def backward(self, grad):
        nx, nw, nb = self.needs_input_grad[:3]
        shape = self.shape
        g = grad.reshape(shape[0], shape[1], -1) if grad.ndim > 2 else grad
        gx = gw = gb = None
        if self.native is not None:
            gsum, gxsum, gx = self._native_backward(g, nx)
            return (None if gx is None else gx.reshape(shape), gxsum if nw else None,
                    gsum if nb else None, None, None, None, None, None)
        if self.training:
            xhat = self.xhat
            gsum = np.einsum(self.sub_sum, g)
            gxsum = np.einsum(self.sub_dot, g, xhat)
            if nw:
                gw = gxsum
            if nb:
                gb = gsum
            if nx:
                inv_m = 1.0 / self.m
                sshape = self.invstd.shape
                # dx = w * invstd * (g - mean(g) - xhat * mean(g * xhat))
                gx = xhat * (gxsum * -inv_m).reshape(sshape)
                gx += g
                gx -= (gsum * inv_m).reshape(sshape)
                k = self.invstd * self.w.reshape(sshape) if self.w is not None else self.invstd
                gx *= k
                gx = gx.reshape(shape)
        else:
            if nx:
                gx = (g * self.scale).reshape(shape)
            if nw:
                xhat = self.x2 - self.mean
                xhat *= self.invstd
                gw = np.einsum(self.sub_dot, g, xhat)
            if nb:
                gb = np.einsum(self.sub_sum, g)
        return gx, gw, gb, None, None, None, None, None


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel (dim 1) over the batch and spatial dims, then scale and shift.

    In training the batch statistics are used and ``running_mean``/``running_var`` (if given)
    are updated in place: ``running = (1 - momentum) * running + momentum * batch``, with the
    unbiased batch variance. Otherwise the running statistics are used.

    Shape:
        input ``(N, C, *)``; running stats, weight and bias ``(C,)``.
    """
    _check_float("batch_norm", input)
    s = input.data.shape
    if len(s) < 2:
        raise ValueError(
            f"batch_norm: expected input with at least 2 dims (N, C, *), got shape {s}")
    c = s[1]
    dt = input.data.dtype
    rm = rv = None
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if t.data.shape != (c,):
            raise ValueError(
                f"batch_norm: {name} of shape {t.data.shape} does not match input of shape "
                f"{s}; expected ({c},)")
        if t.data.dtype != dt:
            raise TypeError(
                f"batch_norm: {name} dtype {t.data.dtype} differs from input dtype {dt}")
    if running_mean is not None:
        rm = running_mean.data
    if running_var is not None:
        rv = running_var.data
    if training:
        m = s[0]
        for k in s[2:]:
            m *= k
        if m <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, got input "
                f"of shape {s}")
    elif rm is None or rv is None:
        raise ValueError(
            "batch_norm: running_mean and running_var are needed when training=False")
    return BatchNorm.apply(input, weight, bias, rm, rv, bool(training), float(momentum),
                           float(eps))


class LayerNorm(Function):
    """Normalisation over the trailing dims, viewed as rows of an ``(M, K)`` matrix.

    Row and column sums are einsums (several times faster than ``sum(axis=...)`` in NumPy).
    """

    def forward(self, x, w, b, normalized_shape, eps):
        shape = x.shape
        k = 1
        for v in normalized_shape:
            k *= v
        x2 = x.reshape(-1, k)
        mean = np.einsum("ij->i", x2)
        mean *= 1.0 / k
        xc = x2 - mean[:, None]
        var = np.einsum("ij,ij->i", xc, xc)
        var *= 1.0 / k
        var += eps
        invstd = np.sqrt(var, out=var)
        np.reciprocal(invstd, out=invstd)
        invstd = invstd[:, None]
        xhat = xc
        xhat *= invstd
        self.xhat = xhat
        self.invstd = invstd
        self.w = w
        self.shape = shape
        self.k = k
        self.normalized_shape = normalized_shape
        if w is not None:
            y = xhat * w.reshape(k)
            if b is not None:
                y += b.reshape(k)
        elif b is not None:
            y = xhat + b.reshape(k)
        else:
            y = xhat.copy()
        return y.reshape(shape)

    def backward(self, grad):
        nx, nw, nb = self.needs_input_grad[:3]
        xhat = self.xhat
        k = self.k
        w = self.w
        g = grad.reshape(-1, k)
        gx = gw = gb = None
        if nw:
            gw = np.einsum("ij,ij->j", g, xhat).reshape(self.normalized_shape)
        if nb:
            gb = np.einsum("ij->j", g).reshape(self.normalized_shape)
        if nx:
            gh = g * w.reshape(k) if w is not None else g
            # dx = invstd * (gh - mean(gh) - xhat * mean(gh * xhat)), means over each row
            dot = np.einsum("ij,ij->i", gh, xhat)
            dot *= -1.0 / k
            gmean = np.einsum("ij->i", gh)
            gmean *= 1.0 / k
            gx = xhat * dot[:, None]
            gx += gh
            gx -= gmean[:, None]
            gx *= self.invstd
            gx = gx.reshape(self.shape)
        return gx, gw, gb, None, None


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the last ``len(normalized_shape)`` dims, then scale and shift.

    Shape:
        input ``(*, *normalized_shape)``; weight and bias ``normalized_shape``.
    """
    _check_float("layer_norm", input)
    if isinstance(normalized_shape, (int, np.integer)):
        normalized_shape = (int(normalized_shape),)
    else:
        normalized_shape = tuple(normalized_shape)
    s = input.data.shape
    nd = len(normalized_shape)
    if nd == 0 or nd > len(s) or s[len(s) - nd:] != normalized_shape:
        raise ValueError(
            f"layer_norm: expected input with shape (*, {', '.join(map(str, normalized_shape))})"
            f" for normalized_shape={normalized_shape}, got shape {s}")
    dt = input.data.dtype
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if t.data.shape != normalized_shape:
            raise ValueError(
                f"layer_norm: {name} of shape {t.data.shape} must have normalized_shape "
                f"{normalized_shape}")
        if t.data.dtype != dt:
            raise TypeError(
                f"layer_norm: {name} dtype {t.data.dtype} differs from input dtype {dt}")
    return LayerNorm.apply(input, weight, bias, normalized_shape, float(eps))


# =========================================================================================
# dropout and embedding
# =========================================================================================


class Dropout(Function):
    """``x * mask / (1 - p)``; the mask has ``noise_shape`` and broadcasts over ``x``."""

    saves_inputs = False

    def forward(self, x, p, noise_shape):
        dt = x.dtype if x.dtype.itemsize >= 4 else np.dtype(np.float32)
        keep = _generator(None).random(noise_shape, dtype=dt)
        keep = keep >= p
        scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
        self.keep = keep
        self.scale = scale
        y = x * keep
        y *= scale
        return y

    def backward(self, grad):
        g = grad * self.keep
        g *= self.scale
        return g, None, None


def _check_p(op: str, p) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")


def dropout(input: Tensor, p: float = 0.5, training: bool = True,
            inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    The identity when ``training`` is False. The mask comes from deepgrad's global generator,
    so ``deepgrad.manual_seed`` makes it reproducible. ``inplace`` gives the same result.
    """
    if not 0.0 <= p <= 1.0:
        _check_p("dropout", p)
    if not training or p == 0:
        return input
    return Dropout.apply(input, float(p), input.data.shape)


def _feature_dropout(op: str, input, p, training, batched_ndim, min_ndim):
    _check_p(op, p)
    s = input.data.shape
    if len(s) < min_ndim:
        raise ValueError(
            f"{op}: expected input with at least {min_ndim} dims, got shape {s}")
    if not training or p == 0:
        return input
    if len(s) >= batched_ndim:
        noise = s[:2] + (1,) * (len(s) - 2)  # (N, C, 1, ...)
    else:
        noise = s[:1] + (1,) * (len(s) - 1)  # unbatched (C, 1, ...)
    return Dropout.apply(input, float(p), noise)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    """Zero whole channels: input ``(N, C, L)`` or ``(C, L)``, each channel with prob. ``p``."""
    if input.data.ndim not in (2, 3):
        raise ValueError(
            f"dropout1d: expected input of shape (N, C, L) or (C, L), got shape "
            f"{input.data.shape}")
    return _feature_dropout("dropout1d", input, p, training, 3, 2)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    """Zero whole channels of ``(N, C, H, W)`` input, each with probability ``p``.

    As in PyTorch, a 3-d input is taken as ``(N, C, L)`` (channel-wise 1-d dropout).
    """
    nd = input.data.ndim
    if nd not in (3, 4):
        warnings.warn(
            f"dropout2d: received a {nd}-D input, which is deprecated; dropout2d expects "
            "(N, C, H, W) input. Use dropout instead.", stacklevel=2)
    elif nd == 3:
        warnings.warn(
            "dropout2d: received a 3D input; as in PyTorch it is taken as (N, C, L) and whole "
            "channels are dropped (1-d channel-wise dropout). Use dropout1d to say so "
            "explicitly.", stacklevel=2)
    return _feature_dropout("dropout2d", input, p, training, 3, 1)


class Embedding(Function):
    saves_inputs = False

    def forward(self, w, idx, padding_idx, scale_grad_by_freq):
        self.idx = idx
        self.w_shape = w.shape
        self.w_dtype = w.dtype
        self.padding_idx = padding_idx
        self.scale_grad_by_freq = scale_grad_by_freq
        return w.take(idx, axis=0)

    def backward(self, grad):
        if not self.needs_input_grad[0]:
            return None, None, None, None
        v, d = self.w_shape
        idx = self.idx.reshape(-1)
        g = grad.reshape(-1, d)
        if self.scale_grad_by_freq:
            counts = np.bincount(idx, minlength=v)
            g = g / counts[idx].astype(g.dtype)[:, None]
        gw = np.zeros(self.w_shape, self.w_dtype)
        # repeated indices must add up
        k = _native.for_dtype(g.dtype) if g.dtype == gw.dtype else None
        if k is not None and idx.size * d >= 1024:
            # a row at a time in index order: np.add.at's additions, in one pass
            rows = np.ascontiguousarray(idx, np.int64)
            g = np.ascontiguousarray(g)
            addr = _native.address
            k.embedding_backward[g.dtype](addr(g), addr(rows), rows.size, d, addr(gw))
        elif idx.size * d >= 1024:
            # np.add.at over flat element indices takes NumPy's 1-d fast path and measures
            # 1.2-4x faster than row-wise np.add.at (and than sort + add.reduceat or
            # bincount) except on tiny inputs. The flat indices in intp: narrow index types
            # (uint8, int32) would wrap around in the product.
            flat = idx.astype(np.intp)[:, None] * d + np.arange(d)
            np.add.at(gw.reshape(-1), flat.reshape(-1), g.reshape(-1))
        else:
            np.add.at(gw, idx, g)
        if self.padding_idx is not None:
            gw[self.padding_idx] = 0
        return gw, None, None, None


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Look up rows of ``weight`` by the integer indices in ``input``.

    Rows are summed into the gradient once per occurrence; the ``padding_idx`` row gets no
    gradient. With ``max_norm``, the rows looked up whose ``norm_type``-norm exceeds it are
    first scaled to that norm, in place in ``weight`` (PyTorch's behaviour).

    Shape:
        input ``(*)`` integer; weight ``(num_embeddings, embedding_dim)``; output
        ``(*, embedding_dim)``.
    """
    idx = input.data if isinstance(input, Tensor) else np.asarray(input)
    ws = weight.data.shape
    if len(ws) != 2:
        raise ValueError(
            f"embedding: weight must be 2-d (num_embeddings, embedding_dim), got shape {ws}")
    if idx.dtype.kind not in "iu":
        raise TypeError(
            f"embedding: expected integer indices (int64 or int32), got dtype {idx.dtype} for "
            f"input of shape {idx.shape}; use input.long()")
    if sparse:
        raise NotImplementedError("embedding: sparse gradients are not supported; use sparse=False")
    v = ws[0]
    if idx.size and (idx.min() < 0 or idx.max() >= v):
        bad = idx[(idx < 0) | (idx >= v)].reshape(-1)[0]
        raise IndexError(
            f"embedding: index {int(bad)} is out of range for weight of shape {ws}; expected "
            f"indices in [0, {v - 1}] (input shape {idx.shape})")
    if padding_idx is not None:
        if not -v <= padding_idx < v:
            raise ValueError(
                f"embedding: padding_idx must be within num_embeddings={v}, got {padding_idx}")
        if padding_idx < 0:
            padding_idx += v
    if max_norm is not None:
        if not max_norm >= 0:
            raise ValueError(f"embedding: max_norm must be a norm (>= 0), got {max_norm!r}")
        _embedding_renorm(weight, idx, float(max_norm), float(norm_type))
    return Embedding.apply(weight, idx, padding_idx, bool(scale_grad_by_freq))


def _embedding_renorm(weight: Tensor, idx: np.ndarray, max_norm: float, norm_type: float):
    """Scale, in place, each row of ``weight`` that ``idx`` looks up and whose ``norm_type``-norm
    exceeds ``max_norm`` by ``max_norm / (norm + 1e-7)``, as PyTorch's ``embedding_renorm_``
    does (the norm in the weight's dtype, the scale rounded to it). The change counts as an
    in-place edit of ``weight``: an op that saved it earlier in the graph refuses to backward."""
    rows = np.unique(idx)
    if rows.size == 0:
        return
    w = weight.data
    norms = np.linalg.norm(w[rows], ord=norm_type, axis=1)
    over = norms > max_norm
    if not over.any():
        return
    scale = (max_norm / (norms[over].astype(np.float64) + 1e-7)).astype(w.dtype)
    w[rows[over]] *= scale[:, None]
    weight._version += 1


# =========================================================================================
# losses
# =========================================================================================

_NONE, _MEAN, _SUM = 0, 1, 2
_REDUCTIONS = {"none": _NONE, "mean": _MEAN, "sum": _SUM}


def _legacy_reduction(size_average, reduce) -> str:
    warnings.warn("size_average and reduce args will be deprecated, please use "
                  "reduction='mean', 'sum' or 'none' instead.", stacklevel=3)
    if size_average is None:
        size_average = True
    if reduce is None:
        reduce = True
    if size_average and reduce:
        return "mean"
    if reduce:
        return "sum"
    return "none"


def _reduction(op: str, reduction, size_average, reduce) -> int:
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce)
    code = _REDUCTIONS.get(reduction)
    if code is None:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return code


def _reduce_out(v, code, denom, dtype):
    """Reduce per-element losses ``v`` (a fresh array); returns a 0-d array unless 'none'."""
    if code == _NONE:
        return v
    s = np.add.reduce(v, None)
    if code == _MEAN:
        s = s / denom
    return s if type(s) is np.ndarray or s.dtype == dtype else np.asarray(s, dtype)


def _pair(op: str, input, target):
    """Check (input, target) of a pointwise loss; bring the target to the input's dtype."""
    _check_float(op, input)
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: expected a Tensor target, got {type(target).__name__}")
    sx, st = input.data.shape, target.data.shape
    if sx != st:
        try:
            np.broadcast_shapes(sx, st)
        except ValueError:
            raise ValueError(
                f"{op}: target of shape {st} does not broadcast with input of shape {sx}; "
                "expected the same shape") from None
        warnings.warn(
            f"{op}: using a target size ({st}) that is different to the input size ({sx}). "
            "This will likely lead to incorrect results due to broadcasting. Please ensure "
            "they have the same size.", stacklevel=3)
    if target.data.dtype != input.data.dtype:
        target = cast(target, input.data.dtype)
    return target


def _check_weight_same(op, weight, input):
    if weight.data.shape != input.data.shape:
        raise ValueError(
            f"{op}: weight of shape {weight.data.shape} must have the input's shape "
            f"{input.data.shape}")


class MseLoss(Function):
    def forward(self, x, t, w, code):
        d = x - t
        self.d = d
        self.code = code
        self.w = w
        if w is None:
            if code == _NONE:
                return d * d
            flat = d.reshape(-1)
            s = flat @ flat
            if code == _MEAN:
                self.n = d.size
                s = s / d.size
            return np.asarray(s, x.dtype)
        sq = d * d
        sq *= w
        if code == _MEAN:
            self.wsum = w.sum()
            self.loss = sq.sum() / self.wsum
            return np.asarray(self.loss, x.dtype)
        return _reduce_out(sq, code, 1, x.dtype)

    def backward(self, grad):
        nx, nt, nw, _ = self.needs_input_grad
        d, w, code = self.d, self.w, self.code
        if code == _MEAN:
            c = grad * (2.0 / (self.n if w is None else self.wsum))
        elif code == _SUM:
            c = grad * 2.0
        else:
            c = grad * 2.0
        gx = d * c
        if w is not None:
            gx *= w
        gt = -gx if nt else None
        gw = None
        if nw:
            gw = d * d
            if code == _MEAN:
                gw -= self.loss
                gw *= grad / self.wsum
            else:
                gw *= grad
        return (gx if nx else None), gt, gw, None


def mse_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
             reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """Mean squared error ``(input - target) ** 2``, reduced; with ``weight``, the weighted
    mean ``sum(w * se) / sum(w)``."""
    code = _REDUCTIONS.get(reduction) if size_average is None and reduce is None else None
    if code is None:
        code = _reduction("mse_loss", reduction, size_average, reduce)
    if (type(target) is not Tensor or target.data.shape != input.data.shape
            or target.data.dtype != input.data.dtype or input.data.dtype.kind != "f"):
        target = _pair("mse_loss", input, target)
    if weight is not None:
        _check_weight_same("mse_loss", weight, input)
    return MseLoss.apply(input, target, weight, code)


class L1Loss(Function):
    def forward(self, x, t, w, code):
        d = x - t
        self.sign = np.sign(d)
        self.code = code
        self.w = w
        a = np.abs(d, out=d)
        self.n = a.size
        if w is None:
            return _reduce_out(a, code, a.size, x.dtype)
        if self.needs_input_grad[2]:
            self.abs = a.copy()
        a *= w
        if code == _MEAN:
            self.wsum = w.sum()
            self.loss = a.sum() / self.wsum
            return np.asarray(self.loss, x.dtype)
        return _reduce_out(a, code, 1, x.dtype)

    def backward(self, grad):
        nx, nt, nw, _ = self.needs_input_grad
        w, code = self.w, self.code
        if code == _MEAN:
            c = grad / (self.n if w is None else self.wsum)
        else:
            c = grad
        gx = self.sign * c
        if w is not None:
            gx *= w
        gt = -gx if nt else None
        gw = None
        if nw:
            gw = self.abs.copy()
            if code == _MEAN:
                gw -= self.loss
                gw *= grad / self.wsum
            else:
                gw *= grad
        return (gx if nx else None), gt, gw, None


def l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
            reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """Mean absolute error ``|input - target|``, reduced; with ``weight``, the weighted mean."""
    code = _reduction("l1_loss", reduction, size_average, reduce)
    target = _pair("l1_loss", input, target)
    if weight is not None:
        _check_weight_same("l1_loss", weight, input)
    return L1Loss.apply(input, target, weight, code)


# -- classification losses ------------------------------------------------------------------


def _class_view(x):
    """``(N, C)`` as is, ``(N, C, d1, ...)`` as ``(N, C, L)``: the class dim stays dim 1, so
    the ops below never copy to move it. Returns (view, einsum subscripts of a per-position
    class dot product, of a product with a ``(C,)`` vector)."""
    if x.ndim == 2:
        return x, "nc,nc->n", "nc,c->n"
    return x.reshape(x.shape[0], x.shape[1], -1), "ncl,ncl->nl", "ncl,c->nl"


def _class_index(ys):
    """Index tuple that picks entry ``ys`` along dim 1 of ``(N, C)`` or ``(N, C, L)``."""
    if ys.ndim == 1:
        return np.arange(ys.shape[0]), ys
    n, l = ys.shape
    return np.arange(n)[:, None], ys, np.arange(l)[None, :]


def _targets(op, y, c, ignore_index, x_shape):
    """Validate class indices; returns (safe indices, valid mask or None)."""
    if y.size == 0:
        return y, None
    lo = np.minimum.reduce(y, None)
    hi = np.maximum.reduce(y, None)
    if lo >= 0 and hi < c:
        if 0 <= ignore_index < c:
            valid = y != ignore_index
            if not valid.all():
                return y, valid
        return y, None
    valid = y != ignore_index
    bad = (y < 0) | (y >= c)
    bad &= valid
    if bad.any():
        v = int(y[bad][0])
        raise IndexError(
            f"{op}: target {v} is out of bounds for {c} classes (input shape {x_shape}); "
            f"expected class indices in [0, {c - 1}] or ignore_index={ignore_index}")
    ys = np.where(valid, y, 0)
    return ys, valid


def _softmax_native(x, ys, keep_z: bool):
    """``(z or None, e, s, zy, rows)`` of cross-entropy's forward from the native kernel, for
    2-d float logits ``x`` (N, C) and class indices ``ys`` (or None): ``z = x - max`` (kept
    only with ``keep_z``), ``e = exp(z)``, ``s`` (N, 1) the row sums, ``zy`` z at the targets
    and ``rows`` the targets as int64 for the backward kernel. The kernel calls NumPy's own
    maximum, exp and add loops as ``np.maximum.reduce``, ``np.exp`` and ``np.add.reduce`` do,
    so the same bits, in one pass over the rows instead of one NumPy call per row and op.
    None where it does not apply."""
    dt = x.dtype
    if x.ndim != 2 or not x.flags.c_contiguous or x.size < _native.MIN_ELEMENTS // 4:
        return None
    k = _native.for_dtype(dt)
    if k is None:
        return None
    loops: list[int] = []  # (loop, data) of each
    for ufunc in (np.maximum, np.exp, np.add):
        found = _native.ufunc_loop(ufunc, dt)
        if found is None:
            return None
        loops += found
    n, c = x.shape
    e = np.empty_like(x)
    z = np.empty_like(x) if keep_z else None
    s = np.empty((n, 1), dt)
    addr = _native.address
    rows = zy = None
    if ys is not None:
        rows = ys if ys.dtype == np.int64 and ys.flags.c_contiguous else \
            np.ascontiguousarray(ys, np.int64)
        zy = np.empty(n, dt)
    # (NumPy's loops raise no warnings: the ufunc machinery around them checks the flags)
    k.softmax_rows[dt](addr(x), n, c, 0 if z is None else addr(z), addr(e), addr(s),
                       0 if rows is None else addr(rows), 0 if zy is None else addr(zy), *loops)
    return z, e, s, zy, rows


def _softmax_grad_native(e, q, rows, hit):
    """``e * q`` with ``hit`` taken off each row's target (``rows``), by the native kernel:
    cross-entropy's input gradient; None where it does not apply (no kernel ran forward)."""
    if rows is None:
        return None
    dt = e.dtype
    hit = np.asarray(hit)
    k = _native.for_dtype(dt)  # (None if the kernels were turned off since the forward)
    if k is None or hit.dtype != dt or q.dtype != dt or hit.ndim > 1:
        return None
    per_row = hit.ndim  # else one value for every row
    hit = np.ascontiguousarray(hit)  # (note: 1-d even for a scalar)
    q = np.ascontiguousarray(q)
    gx = np.empty_like(e)
    addr = _native.address
    n, c = e.shape
    k.softmax_grad[dt](addr(e), addr(q), n, c, addr(rows), addr(hit), per_row, addr(gx))
    return gx


class CrossEntropy(Function):
    """log-softmax over classes and negative log-likelihood, as one node.

    Along the class dim: ``z = x - max``, ``lse = log(sum(exp(z)))``, ``logp = z - lse``. The
    gradient with respect to the logits is ``softmax * sum(a) - a`` for the per-position target
    coefficients ``a`` (one-hot times class weight, plus the label-smoothing share).
    """

    def forward(self, x, target, w, code, ignore_index, smoothing, probs):
        shape = x.shape
        self.shape = shape
        x3, sub_dot, sub_w = _class_view(x)
        c = shape[1]
        ys = valid = None
        if not probs:
            y = target if x3.ndim == 2 else target.reshape(x3.shape[0], -1)
            ys, valid = _targets("cross_entropy", y, c, ignore_index, shape)
        # z = x - max, e = exp(z), s = sum(e) along the class dim; z at the targets as zy
        parts = _softmax_native(x3, ys, keep_z=probs or bool(smoothing))
        if parts is None:
            # ufunc.reduce directly: the ndarray methods add a Python layer, which shows here
            z = x3 - np.maximum.reduce(x3, 1, keepdims=True)
            e = np.exp(z)
            s = np.add.reduce(e, 1, keepdims=True)
            zy = None
            self.rows = None
        else:
            z, e, s, zy, self.rows = parts
        lse = np.log(s)
        lse0 = lse[:, 0]  # (N,) or (N, L)
        self.e = e
        self.s = s
        self.w = w
        self.code = code
        self.smoothing = smoothing
        self.probs = probs
        self.wcol = None if w is None else (w if x3.ndim == 2 else w[:, None])
        dt = x.dtype
        count = lse0.size  # positions that each get a loss
        out_shape = shape[:1] + shape[2:]
        if probs:
            t = target if x3.ndim == 2 else target.reshape(x3.shape)
            a = t * (1.0 - smoothing) + (smoothing / c) if smoothing else t
            if w is not None:
                a = a * self.wcol
            self.a = a
            asum = a.sum(axis=1)
            self.asum = asum
            # loss = sum_c a_c (lse - z_c)
            loss = lse0 * asum
            loss -= np.einsum(sub_dot, a, z)
            self.denom = count
            if self.needs_input_grad[1]:
                z -= lse
                self.logp = z
            out = _reduce_out(loss, code, count, dt)
            return out.reshape(out_shape) if code == _NONE else out
        idx = _class_index(ys)
        self.idx = idx
        # the weight of each position's target class (0 where ignored)
        if w is not None:
            wy = w[ys]
            if valid is not None:
                wy *= valid
        elif valid is not None:
            wy = valid.astype(dt)
        else:
            wy = None
        self.wy = wy
        self.valid = valid
        loss = lse0 - (z[idx] if zy is None else zy)
        if wy is not None:
            loss *= wy
        if smoothing:
            loss *= 1.0 - smoothing
            # smooth = sum_c w_c (lse - z_c)
            if w is not None:
                smooth = lse0 * w.sum()
                smooth -= np.einsum(sub_w, z, w)
            else:
                smooth = lse0 * c
                smooth -= z.sum(axis=1)
            if valid is not None:
                smooth *= valid
            smooth *= smoothing / c
            loss += smooth
        if code == _MEAN:
            denom = wy.sum() if wy is not None else count
        else:
            denom = 1
        self.denom = denom
        if code == _MEAN and not denom:
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.asarray(loss.sum() / denom, dt)
        out = _reduce_out(loss, code, denom, dt)
        return out.reshape(out_shape) if code == _NONE else out

    def backward(self, grad):
        nx, nt = self.needs_input_grad[:2]
        e, s, w, code = self.e, self.s, self.w, self.code
        c = self.shape[1]
        # gi: the gradient of each position's loss, a scalar unless reduction='none'
        if code == _NONE:
            gi = grad.reshape(s.shape[:1] + s.shape[2:])
        elif code == _MEAN:
            # every target ignored: the loss is nan, but no position contributes a gradient
            gi = grad / self.denom if self.denom else grad * 0
        else:
            gi = grad
        gcol = gi[:, None] if code == _NONE else gi
        gx = gt = None
        if self.probs:
            if nx:
                # softmax * sum(a) - a
                r = self.asum * gi
                gx = e * (r[:, None] / s)
                gx -= self.a * gcol
                gx = gx.reshape(self.shape)
            if nt:
                gt = self.logp * (-(1.0 - self.smoothing))
                if w is not None:
                    gt *= self.wcol
                gt *= gcol
                gt = gt.reshape(self.shape)
            return gx, gt, None, None, None, None, None
        if not nx:
            return None, None, None, None, None, None, None
        eps = self.smoothing
        wy, valid = self.wy, self.valid
        # coefficient of the target class: (1 - eps) w_y, times the position's gradient
        hit = gi * (1.0 - eps) if eps else gi
        if wy is not None:
            hit = hit * wy
        r = hit
        if eps:
            # every class also gets eps / C * w_c: the sum over classes grows by
            # eps / C * sum(w)
            share = gi * (eps / c)
            if valid is not None:
                share = share * valid
            r = r + share * (w.sum() if w is not None else c)
        q = (r[:, None] if np.ndim(r) else r) / s
        gx = _softmax_grad_native(e, q, self.rows, hit)
        if gx is None:
            gx = e * q
            gx[self.idx] -= hit
        if eps:
            share = share[:, None] if np.ndim(share) else share
            gx -= share * self.wcol if w is not None else share
        return gx.reshape(self.shape), None, None, None, None, None, None


def _class_loss_args(op, input, target, weight, reduction, size_average, reduce):
    """Shared checks of cross_entropy and nll_loss; returns (target array, probs, code)."""
    _check_float(op, input)
    code = _REDUCTIONS.get(reduction) if size_average is None and reduce is None else None
    if code is None:
        code = _reduction(op, reduction, size_average, reduce)
    sx = input.data.shape
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    st = t.shape
    if not sx:
        raise ValueError(f"{op}: expected input of shape (N, C, *) or (C,), got shape {sx}")
    class_shape = sx[:1] + sx[2:] if len(sx) > 1 else ()
    c = sx[1] if len(sx) > 1 else sx[0]
    if weight is not None:
        if weight.data.shape != (c,):
            raise ValueError(
                f"{op}: weight of shape {weight.data.shape} must have one entry per class, "
                f"expected ({c},) for input of shape {sx}")
        if weight.data.dtype != input.data.dtype:
            raise TypeError(
                f"{op}: weight dtype {weight.data.dtype} differs from input dtype "
                f"{input.data.dtype}")
    kind = t.dtype.kind
    if st == class_shape and kind in "iu":
        return t, False, code
    if st == sx and kind == "f":
        return t, True, code
    if st == class_shape:
        raise TypeError(
            f"{op}: expected integer class indices (int64) for target of shape {st} with input "
            f"of shape {sx}, got dtype {t.dtype}; use target.long()")
    if st == sx:
        raise TypeError(
            f"{op}: expected floating-point class probabilities for target of shape {st} "
            f"(the input's shape), got dtype {t.dtype}")
    raise ValueError(
        f"{op}: expected target of shape {class_shape} (class indices) or {sx} (class "
        f"probabilities) for input of shape {sx}, got target of shape {st}")


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross entropy of logits against class indices or class probabilities, as one node.

    Equals ``nll_loss(log_softmax(input, 1), target)`` but is computed in one stable pass.
    With class indices, ``'mean'`` divides by the summed weights of the non-ignored targets.

    Shape:
        input ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``; target class indices ``(N,)``,
        ``(N, d1, ...)`` or ``()``, or probabilities of the input's shape.
    """
    t, probs, code = _class_loss_args("cross_entropy", input, target, weight, reduction,
                                      size_average, reduce)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(
            f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    unbatched = input.data.ndim == 1
    if unbatched:
        input = reshape(input, 1, -1)
        t = t.reshape(1, -1) if probs else t.reshape(1)
    if probs:
        if isinstance(target, Tensor) and target.requires_grad:
            tt = target if not unbatched else reshape(target, 1, -1)
        else:
            tt = t
        out = CrossEntropy.apply(input, tt, weight, code, ignore_index, float(label_smoothing),
                                 True)
    else:
        out = CrossEntropy.apply(input, t, weight, code, ignore_index,
                                 float(label_smoothing), False)
    if unbatched and code == _NONE:
        out = reshape(out, ())
    return out


class NllLoss(Function):
    saves_inputs = False

    def forward(self, x, y, w, code, ignore_index):
        shape = x.shape
        self.shape = shape
        x3 = _class_view(x)[0]
        c = shape[1]
        if x3.ndim == 3:
            y = y.reshape(x3.shape[0], -1)
        ys, valid = _targets("nll_loss", y, c, ignore_index, shape)
        idx = _class_index(ys)
        if w is not None:
            wy = w[ys]
            if valid is not None:
                wy *= valid
        elif valid is not None:
            wy = valid.astype(x.dtype)
        else:
            wy = None
        self.idx, self.wy, self.code, self.xdtype = idx, wy, code, x.dtype
        self.view_shape = x3.shape
        loss = -x3[idx]
        self.lshape = loss.shape
        if wy is not None:
            loss *= wy
        denom = (wy.sum() if wy is not None else loss.size) if code == _MEAN else 1
        self.denom = denom
        if code == _MEAN and not denom:
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.asarray(loss.sum() / denom, x.dtype)
        out = _reduce_out(loss, code, denom, x.dtype)
        return out.reshape(shape[:1] + shape[2:]) if code == _NONE else out

    def backward(self, grad):
        if not self.needs_input_grad[0]:
            return None, None, None, None, None
        if self.code == _NONE:
            gi = -grad.reshape(self.lshape)
        elif self.code == _MEAN:
            gi = np.full(self.lshape, -grad / self.denom if self.denom else grad * 0,
                         self.xdtype)
        else:
            gi = np.full(self.lshape, -grad, self.xdtype)
        if self.wy is not None:
            gi = gi * self.wy
        gx = np.zeros(self.view_shape, self.xdtype)
        gx[self.idx] = gi
        return gx.reshape(self.shape), None, None, None, None


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
             ignore_index: int = -100, reduce=None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities ``input`` at the class indices ``target``.

    Shape:
        input ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``; target ``(N,)``, ``(N, d1, ...)`` or
        ``()``.
    """
    t, probs, code = _class_loss_args("nll_loss", input, target, weight, reduction,
                                      size_average, reduce)
    if probs:
        raise TypeError(
            f"nll_loss: expected integer class indices of shape "
            f"{input.data.shape[:1] + input.data.shape[2:]} for input of shape "
            f"{input.data.shape}, got float target of shape {t.shape}")
    unbatched = input.data.ndim == 1
    if unbatched:
        input = reshape(input, 1, -1)
        t = t.reshape(1)
    out = NllLoss.apply(input, t, weight, code, ignore_index)
    if unbatched and code == _NONE:
        out = reshape(out, ())
    return out


class BinaryCrossEntropy(Function):
    def forward(self, x, t, w, code):
        if x.size:
            lo = np.minimum.reduce(x, None)
            hi = np.maximum.reduce(x, None)
            if not (lo >= 0 and hi <= 1):  # also catches nan
                raise ValueError(
                    "binary_cross_entropy: all elements of input should be between 0 and 1 "
                    "(apply sigmoid first, or use binary_cross_entropy_with_logits)")
        else:
            lo, hi = 1.0, 0.0
        # logs are clamped at -100 as in PyTorch, so x = 0 or 1 gives a finite loss. Clamping
        # x at the smallest subnormal first keeps log away from -inf (and its warning); both
        # clamps are only needed when the extremes come that close to 0 or 1
        tiny = 1e-45 if x.dtype.itemsize <= 4 else 5e-324
        if lo < 1e-43:
            log_x = np.maximum(x, tiny)
            np.log(log_x, out=log_x)
            np.maximum(log_x, -100.0, out=log_x)
        else:
            log_x = np.log(x)
        log_1mx = np.subtract(1.0, x)
        if hi == 1:  # below 1, 1 - x >= 6e-8 (float32): its log is above -100
            np.maximum(log_1mx, tiny, out=log_1mx)
            np.log(log_1mx, out=log_1mx)
            np.maximum(log_1mx, -100.0, out=log_1mx)
        else:
            np.log(log_1mx, out=log_1mx)
        self.x, self.t, self.w, self.code = x, t, w, code
        if self.needs_input_grad[1]:
            self.log_x, self.log_1mx = log_x, log_1mx
        # -(t log x + (1 - t) log(1 - x)) = -(log(1 - x) + t (log x - log(1 - x)))
        loss = log_x - log_1mx
        loss *= t
        loss += log_1mx
        np.negative(loss, out=loss)
        if w is not None:
            if self.needs_input_grad[2]:
                self.raw = loss.copy()
            loss *= w
        self.n = loss.size
        out = _reduce_out(loss, code, loss.size, x.dtype)
        return out

    def backward(self, grad):
        nx, nt, nw, _ = self.needs_input_grad
        x, t, w, code = self.x, self.t, self.w, self.code
        c = grad / self.n if code == _MEAN else grad
        gx = gt = gw = None
        if nx:
            # (x - t) / max(x (1 - x), 1e-12), PyTorch's clamp of the denominator
            den = 1.0 - x
            den *= x
            np.maximum(den, 1e-12, out=den)
            gx = x - t
            gx /= den
            gx *= c
            if w is not None:
                gx *= w
        if nt:
            gt = self.log_1mx - self.log_x
            gt *= c
            if w is not None:
                gt *= w
        if nw:
            gw = self.raw * c
        return gx, gt, gw, None


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """``-w (t log x + (1 - t) log(1 - x))`` for probabilities ``x``; logs clamped at -100."""
    code = _reduction("binary_cross_entropy", reduction, size_average, reduce)
    _check_float("binary_cross_entropy", input)
    if not isinstance(target, Tensor):
        raise TypeError(f"binary_cross_entropy: expected a Tensor target, got "
                        f"{type(target).__name__}")
    sx, st = input.data.shape, target.data.shape
    if sx != st:
        raise ValueError(
            f"binary_cross_entropy: target of shape {st} must have the input's shape {sx}")
    if target.data.dtype != input.data.dtype:
        target = cast(target, input.data.dtype)
    if weight is not None:
        try:
            np.broadcast_shapes(weight.data.shape, sx)
        except ValueError:
            raise ValueError(
                f"binary_cross_entropy: weight of shape {weight.data.shape} does not broadcast "
                f"to input of shape {sx}") from None
    return BinaryCrossEntropy.apply(input, target, weight, code)


class BinaryCrossEntropyWithLogits(Function):
    def forward(self, x, t, w, pw, code):
        # log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), stable for any x
        ls = np.abs(x)
        np.negative(ls, out=ls)
        np.exp(ls, out=ls)
        np.log1p(ls, out=ls)
        np.subtract(np.minimum(x, 0), ls, out=ls)
        self.ls = ls
        self.x, self.t, self.w, self.pw, self.code = x, t, w, pw, code
        # loss = (1 - t) x - (1 + (pw - 1) t) log(sigmoid(x))
        loss = x - t * x
        if pw is None:
            loss -= ls
        else:
            coef = (pw - 1.0) * t
            coef += 1.0
            self.coef = coef
            loss -= coef * ls
        if w is not None:
            if self.needs_input_grad[2]:
                self.raw = loss.copy()
            loss = loss * w
        self.n = loss.size
        return _reduce_out(loss, code, loss.size, x.dtype)

    def backward(self, grad):
        nx, nt, nw, npw, _ = self.needs_input_grad
        x, t, w, pw, code, ls = self.x, self.t, self.w, self.pw, self.code, self.ls
        c = grad / self.n if code == _MEAN else grad
        gx = gt = gw = gpw = None
        if nx:
            sig = np.exp(ls)  # sigmoid(x)
            if pw is None:
                gx = sig - t
            else:
                # (1 - t) - coef * (1 - sigmoid(x))
                gx = sig - 1.0
                gx *= self.coef
                gx += 1.0
                gx -= t
            gx *= c
            if w is not None:
                gx *= w
        if nt:
            # d/dt: -x - (pw - 1) log(sigmoid(x))
            gt = -x if pw is None else -x - (pw - 1.0) * ls
            gt = gt * c
            if w is not None:
                gt *= w
        if nw:
            gw = self.raw * c
        if npw:
            gpw = t * ls
            gpw *= -c
            if w is not None:
                gpw *= w
        return gx, gt, gw, gpw, None


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,
                                     weight: Tensor | None = None, size_average=None,
                                     reduce=None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """``sigmoid`` and binary cross entropy in one stable op (no overflow for any logit).

    ``pos_weight`` scales the positive term and broadcasts along the last (class) dim.
    """
    code = _REDUCTIONS.get(reduction) if size_average is None and reduce is None else None
    if code is None:
        code = _reduction("binary_cross_entropy_with_logits", reduction, size_average, reduce)
    _check_float("binary_cross_entropy_with_logits", input)
    if not isinstance(target, Tensor):
        raise TypeError(f"binary_cross_entropy_with_logits: expected a Tensor target, got "
                        f"{type(target).__name__}")
    sx, st = input.data.shape, target.data.shape
    if sx != st:
        raise ValueError(
            f"binary_cross_entropy_with_logits: target of shape {st} must have the input's "
            f"shape {sx}")
    if target.data.dtype != input.data.dtype:
        target = cast(target, input.data.dtype)
    for name, t in (("weight", weight), ("pos_weight", pos_weight)):
        if t is None:
            continue
        try:
            np.broadcast_shapes(t.data.shape, sx)
        except ValueError:
            raise ValueError(
                f"binary_cross_entropy_with_logits: {name} of shape {t.data.shape} does not "
                f"broadcast to input of shape {sx}") from None
    return BinaryCrossEntropyWithLogits.apply(input, target, weight, pos_weight, code)


