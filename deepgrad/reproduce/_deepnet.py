"""Shared pieces of the ``activations`` and ``batchnorm`` reproductions: MNIST as float arrays,
a deep fully connected network, a plain-SGD training loop that records what both reports need
(losses, test error, per-layer gradient norms, pre-activation statistics)."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .report import log

# the usual MNIST pixel statistics (of the 60,000 training images, pixels scaled to [0, 1])
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


def load_mnist(sample: bool) -> tuple:
    """``(x_train, y_train, x_test, y_test, name)``: images as float32 ``(N, 784)``, normalised
    by the training set's pixel mean and std, labels int64. ``sample`` uses the embedded
    6,000 / 1,000-digit sample instead of the full 60,000 / 10,000."""
    from ..data.datasets import MNIST

    arrays = []
    for train in (True, False):
        ds = MNIST(train=train, sample=sample)
        x = ds.data.data.reshape(len(ds), -1).astype(np.float32)
        x *= np.float32(1 / 255)
        x -= np.float32(MNIST_MEAN)
        x *= np.float32(1 / MNIST_STD)
        arrays += [x, ds.targets.data.astype(np.int64)]
    name = "the embedded MNIST sample (6,000 train / 1,000 test)" if sample else \
        "MNIST (60,000 train / 10,000 test)"
    return (*arrays, name)


ACTIVATIONS = ("sigmoid", "tanh", "relu")


def build_mlp(depth: int, width: int, activation: str, batch_norm: bool = False,
              init: str = "xavier", init_scale: float = 1.0, seed: int = 0):
    """A ``depth``-layer fully connected net 784 -> width x (depth-1) -> 10.

    Every hidden ``Linear`` is followed by ``BatchNorm1d`` (if ``batch_norm``) and the
    activation. Weights: ``init`` ``'xavier'`` (Glorot & Bengio's normalised uniform init),
    ``'default'`` (PyTorch's U(+-1/sqrt(fan_in)), their "standard" init), ``'kaiming'`` (He et
    al. 2015: U(+-sqrt(6/fan_in)), variance 2/fan_in, which keeps a ReLU net's signal size from
    layer to layer) or ``'matched'`` (``'kaiming'`` for ReLU, ``'xavier'`` for sigmoid and
    tanh: each activation with the init derived for it), times ``init_scale``; biases zero.
    Returns ``(net, linears, activations)``.
    """
    import deepgrad as dg
    from .. import nn

    acts = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
    if activation not in acts:
        raise ValueError(f"build_mlp: activation must be one of {sorted(acts)}, got "
                         f"{activation!r}")
    dg.manual_seed(seed)
    gen = dg.Generator().manual_seed(seed)
    sizes = [784] + [width] * (depth - 1) + [10]
    layers: list[nn.Module] = []
    linears, act_modules = [], []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        fc = nn.Linear(n_in, n_out)
        scheme = init if init != "matched" else (
            "kaiming" if activation == "relu" else "xavier")
        if scheme == "xavier":
            nn.init.xavier_uniform_(fc.weight, generator=gen)
        elif scheme == "default":
            bound = 1 / math.sqrt(n_in)
            nn.init.uniform_(fc.weight, -bound, bound, generator=gen)
        elif scheme == "kaiming":
            nn.init.kaiming_uniform_(fc.weight, nonlinearity="relu", generator=gen)
        else:
            raise ValueError(f"build_mlp: init must be 'xavier', 'default', 'kaiming' or "
                             f"'matched', got {init!r}")
        if init_scale != 1.0:
            fc.weight.data *= np.float32(init_scale)
        nn.init.zeros_(fc.bias)
        layers.append(fc)
        linears.append(fc)
        if i < depth - 1:
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_out))
            act = acts[activation]()
            layers.append(act)
            act_modules.append(act)
    return nn.Sequential(*layers), linears, act_modules


def grad_norms(linears) -> np.ndarray:
    """The Frobenius norm of each Linear layer's weight gradient, input layer first."""
    return np.array([float(np.linalg.norm(fc.weight.grad.data)) for fc in linears])


class PreactivationProbe:
    """Records, on chosen forward passes, the inputs of the activation modules (the
    pre-activations): percentiles and the fraction beyond a saturation threshold."""

    def __init__(self, act_modules, saturation: float, percentiles=(15, 50, 85)) -> None:
        self.saturation = saturation
        self.percentiles = percentiles
        self.active = False
        self.last: list = [None] * len(act_modules)
        self.handles = [m.register_forward_hook(self._hook(i))
                        for i, m in enumerate(act_modules)]

    def _hook(self, i: int):
        def hook(module, args, output):
            if self.active:
                z = args[0].data
                self.last[i] = z.copy()
        return hook

    def stats(self) -> tuple:
        """``(percentiles (layers, len(percentiles)), saturated fraction (layers,))`` of the
        last recorded pass."""
        pct = np.array([np.percentile(z, self.percentiles) for z in self.last])
        sat = np.array([float(np.mean(np.abs(z) > self.saturation)) for z in self.last])
        return pct, sat

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@dataclass
class History:
    """What one training run recorded."""

    steps: list = field(default_factory=list)          # step of each loss-window mean
    train_loss: list = field(default_factory=list)     # mean training loss over the window
    eval_steps: list = field(default_factory=list)     # steps at which the test set was scored
    test_error: list = field(default_factory=list)
    grad_steps: list = field(default_factory=list)     # steps at which gradient norms were taken
    grad_norms: list = field(default_factory=list)     # (layers,) arrays, input layer first
    probe_steps: list = field(default_factory=list)
    percentiles: list = field(default_factory=list)    # (layers, 3) arrays
    saturation: list = field(default_factory=list)     # (layers,) arrays
    seconds: float = 0.0
    diverged: bool = False


@contextlib.contextmanager
def frozen_buffers(net):
    """Restore the net's buffers (batch norm's running statistics) on exit, so that measuring
    passes run in training mode leave no trace."""
    saved = [(b, b.data.copy()) for b in net.buffers()]
    try:
        yield
    finally:
        for b, value in saved:
            b.data[...] = value


def evaluate(net, x: np.ndarray, y: np.ndarray, batch: int = 2000) -> tuple:
    """``(error rate, mean cross-entropy)`` of ``net`` on ``x, y`` in eval mode."""
    import deepgrad as dg
    from .. import nn

    net.eval()
    wrong = 0
    total_loss = 0.0
    with dg.no_grad():
        for i in range(0, len(x), batch):
            logits = net(dg.tensor(x[i:i + batch]))
            target = dg.tensor(y[i:i + batch])
            total_loss += nn.functional.cross_entropy(logits, target).item() * len(target)
            wrong += int(np.sum(logits.data.argmax(1) != y[i:i + batch]))
    net.train()
    return wrong / len(x), total_loss / len(x)


def train(net, linears, data: tuple, *, lr: float, steps: int, batch_size: int, seed: int,
          loss_every: int, eval_every: int, grad_every: int, grad_batches: int = 4,
          probe: PreactivationProbe | None = None, probe_every: int = 0,
          eval_n: int | None = None, label: str = "", momentum: float = 0.0) -> History:
    """SGD on cross-entropy for ``steps`` minibatches (plain unless ``momentum``), reshuffling
    each epoch with a Generator seeded by ``seed``.

    Every ``grad_every`` steps (and at step 0, before any update) the per-layer weight-gradient
    norms are averaged over ``grad_batches`` fixed training batches without updating; every
    ``eval_every`` steps the test error is measured on the first ``eval_n`` test images.
    """
    import deepgrad as dg
    from .. import nn, optim

    x_train, y_train, x_test, y_test = data[:4]
    if eval_n is not None:
        x_test, y_test = x_test[:eval_n], y_test[:eval_n]
    rng = np.random.Generator(np.random.PCG64(seed))
    probe_rng = np.random.Generator(np.random.PCG64(10_000 + seed))
    probe_idx = probe_rng.choice(len(x_train), size=grad_batches * batch_size, replace=False)
    opt = optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    hist = History()
    start = time.perf_counter()
    order = rng.permutation(len(x_train))
    pos = 0
    window = []

    def measure_grads(step: int) -> None:
        total = np.zeros(len(linears))
        with frozen_buffers(net):
            for k in range(grad_batches):
                idx = probe_idx[k * batch_size:(k + 1) * batch_size]
                opt.zero_grad()
                loss = nn.functional.cross_entropy(net(dg.tensor(x_train[idx])),
                                                   dg.tensor(y_train[idx]))
                loss.backward()
                total += grad_norms(linears)
        opt.zero_grad()
        hist.grad_steps.append(step)
        hist.grad_norms.append(total / grad_batches)

    def measure_preacts(step: int, probe: PreactivationProbe) -> None:
        idx = probe_idx[:batch_size * grad_batches]
        probe.active = True
        with dg.no_grad(), frozen_buffers(net):
            # train mode: batch norm uses the batch statistics, as in training
            net(dg.tensor(x_train[idx]))
        probe.active = False
        pct, sat = probe.stats()
        hist.probe_steps.append(step)
        hist.percentiles.append(pct)
        hist.saturation.append(sat)

    for step in range(steps + 1):
        if grad_every and step % grad_every == 0:
            measure_grads(step)
        if probe is not None and probe_every and step % probe_every == 0:
            measure_preacts(step, probe)
        if eval_every and step % eval_every == 0:
            err, _ = evaluate(net, x_test, y_test)
            hist.eval_steps.append(step)
            hist.test_error.append(err)
        if step == steps:
            break
        if pos + batch_size > len(order):
            order = rng.permutation(len(x_train))
            pos = 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(dg.tensor(x_train[idx])),
                                           dg.tensor(y_train[idx]))
        loss.backward()
        opt.step()
        value = loss.item()
        if not math.isfinite(value):
            hist.diverged = True
            log(f"  {label}: loss is {value} at step {step + 1}; stopping this run")
            break
        window.append(value)
        if len(window) == loss_every:
            hist.steps.append(step + 1)
            hist.train_loss.append(float(np.mean(window)))
            window = []
    hist.seconds = time.perf_counter() - start
    if label:
        last = hist.test_error[-1] if hist.test_error else float("nan")
        log(f"  {label}: {hist.seconds:.0f} s, final test error {last:.2%}")
    return hist


def stack_runs(rows: list) -> np.ndarray:
    """Curves of several runs (possibly of different lengths) as one array padded with NaN."""
    n = max(len(r) for r in rows)
    out = np.full((len(rows), n), np.nan)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def curves(hists: list, field: str, x_field: str) -> tuple:
    """``(x, values)``: a recorded curve of every run, on the longest run's x (a run that
    diverged stops early)."""
    x = max((getattr(h, x_field) for h in hists), key=len)
    return x, stack_runs([getattr(h, field) for h in hists])


def final_loss(hist: History) -> float:
    """The last recorded training loss; infinite for a run that diverged."""
    if hist.diverged or not hist.train_loss:
        return float("inf")
    return hist.train_loss[-1]


def final_error(hist: History) -> float:
    """The last measured test error; NaN for a run that diverged."""
    return float("nan") if hist.diverged else hist.test_error[-1]


def band(ax, x, values: np.ndarray, color: str, label: str) -> None:
    """The mean of ``values`` (runs, points) over runs, with a min-max band if several."""
    x = np.asarray(x)[:values.shape[1]]
    values = values[:, :len(x)]
    ax.plot(x, np.nanmean(values, axis=0), color=color, label=label)
    if values.shape[0] > 1:
        ax.fill_between(x, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=color,
                        alpha=0.2, linewidth=0)


def percent_log_axis(ax) -> None:
    """A log-scale y axis from 1 % to 100 % with plain-number ticks, for error rates."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_yscale("log")
    ax.set_ylim(1, 100)
    ax.yaxis.set_major_locator(FixedLocator([1, 2, 5, 10, 20, 50, 100]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def plain_log_axis(ax) -> None:
    """A log-scale y axis ticked at 1, 2, 5 x 10^k with plain numbers (0.05, 0.1, 0.2 ...)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
