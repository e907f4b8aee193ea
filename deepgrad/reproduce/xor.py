"""XOR: a single threshold unit cannot compute it; one hidden layer can.

Rosenblatt's perceptron rule converges whenever the classes are linearly separable; XOR's are
not (no line puts (0,1) and (1,0) on one side and (0,0) and (1,1) on the other), so it cycles
forever with at most 3 of the 4 points right. A 2-2-1 network trained by backpropagation
learns it.
"""
from __future__ import annotations

import numpy as np

from .report import Report, Table, figure_path, pyplot

NAME = "xor"
TITLE = "XOR: a perceptron fails, a two-layer network learns it"
CLAIM = ("A single-layer perceptron cannot learn XOR; a network with one hidden layer trained "
         "by backpropagation learns it.")
SOURCE = ("Minsky & Papert (1969), as recalled in LeCun, Bengio & Hinton, \"Deep learning\", "
          "Nature 521 (2015), section on backpropagation; Rumelhart, Hinton & Williams (1986)")
PAPER_FIGURE = "Nature 2015, Fig. 1a (hidden units make classes separable)"
MAIN_FIGURE = "xor_boundaries.png"

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
Y = np.array([0, 1, 1, 0], np.float32)


def perceptron(epochs: int, lr: float = 0.1):
    """Rosenblatt's rule on the 4 points; returns weights, bias and accuracy per epoch."""
    w = np.zeros(2)
    b = 0.0
    history = []
    for _ in range(epochs):
        for x, t in zip(X, Y):
            pred = float(w @ x + b > 0)
            w = w + lr * (t - pred) * x
            b = b + lr * (t - pred)
        history.append(float(np.mean((X @ w + b > 0) == Y.astype(bool))))
    return w, b, history


def two_layer(seed: int, steps: int, hidden: int = 2, lr: float = 0.5):
    """A 2-hidden-1 tanh/sigmoid network trained by full-batch gradient descent on MSE."""
    import deepgrad as dg
    from deepgrad import nn, optim

    dg.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 1), nn.Sigmoid())
    opt = optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    x, y = dg.tensor(X), dg.tensor(Y[:, None])
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with dg.no_grad():
        accuracy = float(np.mean((net(x).numpy()[:, 0] > 0.5) == Y.astype(bool)))
    return net, losses, accuracy


def run(out_dir: str, quick: bool) -> Report:
    import deepgrad as dg

    epochs = 100 if quick else 1000
    steps = 1000 if quick else 3000
    seeds = range(3) if quick else range(20)
    w, b, history = perceptron(epochs)
    runs = [two_layer(seed, steps) for seed in seeds]
    solved = [acc == 1.0 for _, _, acc in runs]
    best = next(i for i, ok in enumerate(solved) if ok) if any(solved) else 0
    net = runs[best][0]

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    grid = np.linspace(-0.5, 1.5, 201, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    points = np.stack([gx.ravel(), gy.ravel()], 1)
    with dg.no_grad():
        net_out = net(dg.tensor(points)).numpy()[:, 0].reshape(gx.shape)
    perc_out = (points @ w + b > 0).reshape(gx.shape).astype(float)
    for ax, field, title in ((axes[0], perc_out, f"perceptron after {epochs} epochs"),
                             (axes[1], net_out, f"2-2-1 network after {steps} steps")):
        ax.contourf(gx, gy, field, levels=[-0.01, 0.5, 1.01], colors=["#cfe0f5", "#f7d3cf"])
        ax.contour(gx, gy, field, levels=[0.5], colors="k", linewidths=1)
        for (px, py), t in zip(X, Y):
            ax.scatter(px, py, s=120, c="#c0392b" if t else "#2e6eb5", edgecolors="k", zorder=3)
        ax.set_title(title)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.set_aspect("equal")
    fig.suptitle("XOR decision regions (red: output 1, blue: output 0)")
    fig.tight_layout()
    fig.savefig(figure_path(out_dir, MAIN_FIGURE), dpi=110)
    plt.close(fig)

    table = Table(["model", "training", "best accuracy on the 4 points",
                   "final accuracy on the 4 points"])
    table.add("perceptron (Rosenblatt rule)", f"{epochs} epochs", max(history), history[-1])
    accs = [acc for _, _, acc in runs]
    table.add(f"2-2-1 network, {len(accs)} seeds", f"{steps} steps of SGD, momentum 0.9",
              max(accs), float(np.mean(accs)))
    report = Report(
        NAME, TITLE, CLAIM, SOURCE,
        setup=(f"The 4 XOR points. Perceptron: one threshold unit, Rosenblatt's rule, learning "
               f"rate 0.1, {epochs} epochs. Network: 2 tanh hidden units and a sigmoid output, "
               f"MSE, full-batch SGD (lr 0.5, momentum 0.9), {steps} steps, seeds "
               f"0-{len(accs) - 1}."),
        tables=[table],
        figures=[(MAIN_FIGURE, "Decision regions: the perceptron's line cannot separate XOR; "
                               "the hidden layer bends the boundary around it.")],
        findings=[f"The perceptron never exceeded {max(history):.0%} of the points.",
                  f"The 2-2-1 network classified all 4 points in {sum(solved)} of {len(accs)} "
                  "runs (a 2-2-1 net can stall in a local minimum from some starts, as "
                  "Rumelhart et al. noted)."],
        results={"perceptron_best": max(history), "network_solved": sum(solved),
                 "network_runs": len(accs)})
    return report
