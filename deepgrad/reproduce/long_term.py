"""Long-term dependencies: the adding problem defeats a vanilla RNN but not an LSTM.

Each input sequence carries a random number in [0, 1] per time step and a marker channel that
is 1 at exactly two steps, one in each half of the sequence; the target is the sum of the two
marked numbers. Predicting the constant 1.0 (the mean of the sum) scores a mean squared error
of Var(U1 + U2) = 2/12 = 1/6 = 0.167; doing better needs information from at least T/2 steps
back. A tanh RNN's backpropagated gradient shrinks geometrically with the distance in time
(Bengio, Simard & Frasconi 1994), so it stays at the baseline; an LSTM's cell carries the
gradient and it learns the task (Hochreiter & Schmidhuber 1997).
"""
from __future__ import annotations

import numpy as np

from .report import Report, Table, figure_path, log, pyplot

NAME = "long-term"
TITLE = "Long-term dependencies: an LSTM learns the adding problem, a vanilla RNN does not"
CLAIM = ("Backpropagated gradients in a conventional RNN shrink at each time step and vanish "
         "over many steps, so it cannot learn long-range dependencies; LSTM units, with a "
         "memory cell, learn them.")
SOURCE = ("LeCun, Bengio & Hinton, \"Deep learning\", Nature 521 (2015), section \"Recurrent "
          "neural networks\"; Bengio, Simard & Frasconi, IEEE Trans. Neural Networks 5 (1994); "
          "Hochreiter & Schmidhuber, Neural Computation 9 (1997), experiment 4 (adding problem)")
PAPER_FIGURE = "Nature 2015, Fig. 5 (an RNN unfolded in time) and the text on LSTM"
MAIN_FIGURE = "adding_mse.png"
GRAD_FIGURE = "gradient_vs_distance.png"

BASELINE_MSE = 1.0 / 6.0  # Var(U1 + U2) for independent U(0, 1): predicting 1.0 scores this


def adding_batch(rng: np.random.Generator, n: int, T: int) -> tuple:
    """``n`` adding-problem sequences of length ``T``: inputs ``(n, T, 2)``, targets ``(n, 1)``.

    Channel 0 holds U(0, 1) numbers, channel 1 marks one step drawn uniformly from the first
    half ``[0, T/2)`` and one from the second half ``[T/2, T)``; the target is the sum of the
    two marked numbers.
    """
    values = rng.random((n, T))
    half = T // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, T, n)
    marks = np.zeros((n, T))
    rows = np.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    x = np.stack([values, marks], 2)
    y = (values[rows, first] + values[rows, second])[:, None]
    return x, y


class Regressor:
    """A recurrent layer (``nn.RNN`` with tanh or ``nn.LSTM``) read out by a linear unit at
    the last time step."""

    def __init__(self, kind: str, hidden: int, dtype) -> None:
        from deepgrad import nn

        cls = nn.LSTM if kind == "LSTM" else nn.RNN
        self.rnn = cls(2, hidden, batch_first=True, dtype=dtype)
        self.head = nn.Linear(hidden, 1, dtype=dtype)

    def parameters(self) -> list:
        return list(self.rnn.parameters()) + list(self.head.parameters())

    def __call__(self, x):
        out = self.rnn(x)[0]
        return self.head(out[:, -1])


def test_mse(model: Regressor, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    import deepgrad as dg

    total = 0.0
    with dg.no_grad():
        for i in range(0, len(x), batch):
            pred = model(dg.tensor(x[i:i + batch])).numpy()
            total += float(np.sum((pred - y[i:i + batch]) ** 2))
    return total / len(x)


def input_gradient_norms(model: Regressor, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean over sequences of ``|dL_i / dx_{i,t}|`` for every step t, with L_i the squared
    error of sequence i (x_{i,t} reaches only L_i, so one backward of the sum gives them all)."""
    import deepgrad as dg
    from deepgrad import nn

    xt = dg.tensor(x, requires_grad=True)
    loss = nn.functional.mse_loss(model(xt), dg.tensor(y), reduction="sum")
    loss.backward()
    grad = xt.grad
    assert grad is not None  # backward() filled it: xt requires grad and the loss uses it
    return np.sqrt(np.sum(grad.numpy() ** 2, axis=2)).mean(axis=0)


def train(kind: str, T: int, hidden: int, steps: int, batch: int, lr: float, seed: int,
          test: tuple, eval_every: int, dtype) -> dict:
    """Train one model on fresh batches; returns the test-MSE curve and the gradient norms
    of the loss w.r.t. each input step, at initialisation and after training."""
    import deepgrad as dg
    from deepgrad import nn, optim

    dg.manual_seed(seed)
    model = Regressor(kind, hidden, dtype)
    rng = np.random.default_rng([seed, T, 1])  # training data: its own stream per (seed, T)
    x_test, y_test = test
    probe = (x_test[:200], y_test[:200])
    grad_init = input_gradient_norms(model, *probe)
    opt = optim.Adam(model.parameters(), lr=lr)
    curve = [(0, test_mse(model, x_test, y_test))]
    for step in range(1, steps + 1):
        x, y = adding_batch(rng, batch, T)
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(dg.tensor(x)), dg.tensor(y))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % eval_every == 0 or step == steps:
            curve.append((step, test_mse(model, x_test, y_test)))
    grad_trained = input_gradient_norms(model, *probe)
    log(f"  {kind} T={T}: test MSE {curve[-1][1]:.4f} after {steps} steps")
    return {"curve": curve, "mse": curve[-1][1], "best": min(m for _, m in curve),
            "grad_init": grad_init, "grad_trained": grad_trained}


def solved_step(curve: list, threshold: float) -> int | None:
    """The first evaluated step whose test MSE is below ``threshold`` (None if never)."""
    for step, mse in curve:
        if mse < threshold:
            return step
    return None


def run(out_dir: str, quick: bool) -> Report:
    import deepgrad as dg

    lengths = (50,) if quick else (50, 100, 200)
    hidden = 32 if quick else 64
    steps = 1000 if quick else 3000
    batch = 64
    lr = 1e-2
    n_test = 500 if quick else 2000
    eval_every = 25 if quick else 100
    seed = 0
    dtype = dg.float64
    results: dict[str, float | None] = {}  # lstm_solved_step_T*: None if never solved
    runs = {}
    for T in lengths:
        test = adding_batch(np.random.default_rng([seed, T, 2]), n_test, T)
        baseline = float(np.mean((test[1] - 1.0) ** 2))
        results[f"baseline_T{T}"] = baseline
        for kind in ("RNN", "LSTM"):
            r = train(kind, T, hidden, steps, batch, lr, seed, test, eval_every, dtype)
            runs[kind, T] = r
            key = kind.lower()
            results[f"{key}_mse_T{T}"] = r["mse"]
            g0, g1 = r["grad_init"], r["grad_trained"]
            # gradient at the first step over the gradient at the last (distance T-1 vs 0)
            results[f"{key}_grad_ratio_init_T{T}"] = float(g0[0] / g0[-1])
            results[f"{key}_grad_ratio_trained_T{T}"] = float(g1[0] / g1[-1])
    results["baseline_exact"] = BASELINE_MSE
    threshold = 0.1 * BASELINE_MSE

    plt = pyplot()
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.6 * len(lengths) + 0.6, 4.2),
                             squeeze=False)
    for ax, T in zip(axes[0], lengths):
        for kind, color in (("RNN", "#c0392b"), ("LSTM", "#2e6eb5")):
            steps_, mses = zip(*runs[kind, T]["curve"])
            ax.plot(steps_, mses, color=color, label=f"{kind} (tanh)" if kind == "RNN" else kind)
        ax.axhline(BASELINE_MSE, color="0.3", linestyle="--", linewidth=1,
                   label="predict 1.0 (MSE 1/6)")
        ax.set_yscale("log")
        ax.set_xlabel("training step (batches of %d)" % batch)
        ax.set_ylabel("test mean squared error")
        ax.set_title(f"adding problem, T = {T}")
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(figure_path(out_dir, MAIN_FIGURE), dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(lengths), figsize=(4.6 * len(lengths) + 0.6, 4.2),
                             squeeze=False)
    for ax, T in zip(axes[0], lengths):
        distance = np.arange(T)[::-1]  # step t is T-1-t steps from the end
        for kind, color in (("RNN", "#c0392b"), ("LSTM", "#2e6eb5")):
            r = runs[kind, T]
            ax.plot(distance, r["grad_init"], color=color, linestyle="--",
                    label=f"{kind}, at initialisation")
            ax.plot(distance, r["grad_trained"], color=color, label=f"{kind}, after training")
        ax.axvspan(T // 2, T - 1, color="0.92", zorder=0, label="where the first mark is")
        ax.set_yscale("log")
        ax.set_xlabel("distance from the last step, T-1-t (steps)")
        ax.set_ylabel("mean |dL/dx_t| over 200 test sequences")
        ax.set_title(f"gradient of the loss w.r.t. input step t, T = {T}")
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(figure_path(out_dir, GRAD_FIGURE), dpi=110)
    plt.close(fig)

    table = Table(["T", "predict 1.0 (test MSE)", "RNN test MSE", "LSTM test MSE",
                   "LSTM first below 0.1 x baseline (step)",
                   "RNN gradient ratio, first / last step (init; trained)",
                   "LSTM gradient ratio, first / last step (init; trained)"],
                  caption="Test MSE after training; the step at which the LSTM's test MSE "
                          "first fell below a tenth of the baseline; and the gradient ratio "
                          "mean |dL/dx_0| / mean |dL/dx_T-1| (how much the gradient reaching "
                          "the first input step has shrunk relative to the last).")
    findings = []
    for T in lengths:
        rnn, lstm = runs["RNN", T], runs["LSTM", T]
        hit = solved_step(lstm["curve"], threshold)
        table.add(T, results[f"baseline_T{T}"], rnn["mse"], lstm["mse"],
                  "never" if hit is None else hit,
                  f"{results[f'rnn_grad_ratio_init_T{T}']:.2g}; "
                  f"{results[f'rnn_grad_ratio_trained_T{T}']:.2g}",
                  f"{results[f'lstm_grad_ratio_init_T{T}']:.2g}; "
                  f"{results[f'lstm_grad_ratio_trained_T{T}']:.2g}")
        results[f"lstm_solved_step_T{T}"] = hit
        findings.append(
            f"T = {T}: the RNN ends at test MSE {rnn['mse']:.4f} "
            f"({rnn['mse'] / results[f'baseline_T{T}']:.0%} of the predict-1.0 baseline "
            f"{results[f'baseline_T{T}']:.4f}), the LSTM at {lstm['mse']:.4f} "
            f"({lstm['mse'] / results[f'baseline_T{T}']:.1%}).")
    T = lengths[-1]
    findings.append(
        f"At T = {T} the RNN's gradient w.r.t. the first input step is "
        f"{results[f'rnn_grad_ratio_init_T{T}']:.1e} times its gradient w.r.t. the last at "
        f"initialisation and {results[f'rnn_grad_ratio_trained_T{T}']:.1e} after training; "
        f"the LSTM's: {results[f'lstm_grad_ratio_init_T{T}']:.1e} and "
        f"{results[f'lstm_grad_ratio_trained_T{T}']:.1e}.")
    setup = (
        f"Adding problem as commonly set up since Le, Jaitly & Hinton (2015) and Arjovsky et al. "
        f"(2016): each step has two inputs, a number drawn from U(0, 1) and a marker that is 1 "
        f"at one step drawn uniformly from [0, T/2) and one from [T/2, T) and 0 elsewhere; the "
        f"target is the sum of the two marked numbers. (Hochreiter & Schmidhuber's original "
        f"experiment 4 used numbers in [-1, 1] and a scaled target.) Predicting the mean, "
        f"1.0, scores MSE Var(U1 + U2) = 1/12 + 1/12 = 1/6 = {BASELINE_MSE:.4f}; the table "
        f"gives its value on each test set. Lengths T = {', '.join(map(str, lengths))}. "
        f"Models: nn.RNN (tanh) or nn.LSTM, {hidden} hidden units, PyTorch's default "
        f"initialisation, then a linear unit on the last hidden state. Training: MSE loss, "
        f"Adam (lr {lr:g}), batches of {batch} fresh sequences, {steps} steps, gradient norm "
        f"clipped at 1.0; test MSE on {n_test} held-out sequences every {eval_every} steps. "
        f"Gradient norms: the Euclidean norm of dL_i/dx_t over both input channels, with L_i "
        f"the squared error of sequence i, averaged over 200 test sequences. All in float64: "
        f"in float32 the RNN's gradients beyond about 150 steps underflow to subnormal numbers "
        f"and zero, which would hide the decay in the plot. Seeds: deepgrad.manual_seed({seed}) "
        f"for the weights, NumPy generators seeded ({seed}, T, 1) for training data and "
        f"({seed}, T, 2) for test data.")
    return Report(
        NAME, TITLE, CLAIM, SOURCE, setup=setup, tables=[table],
        figures=[(MAIN_FIGURE, "Test mean squared error during training; dashed: the MSE of "
                               "always predicting 1.0."),
                 (GRAD_FIGURE, "Mean norm of the gradient of the loss with respect to the "
                               "input at step t against its distance from the end, at "
                               "initialisation (dashed) and after training (solid); log "
                               "scale. Shaded: where the first marked number lies.")],
        findings=findings, results=results)
