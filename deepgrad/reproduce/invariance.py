"""Pooling makes a ConvNet's output nearly invariant to small shifts; a fully connected network
has no such built-in invariance.

Both networks are trained on the MNIST digits as they come (centred by their centre of mass,
no augmentation), then tested on the test digits shifted by 0 to 6 pixels. A fully connected
network's weights are tied to absolute pixel positions, so a shifted digit is, to it, a new
pattern. A ConvNet applies the same detectors at every position, and each 2x2 max-pooling layer
keeps the strongest response in its window whatever its position within it. A third network,
the ConvNet with the pooling replaced by stride-2 subsampling (same layers and parameters),
separates the part played by the pooling from that of the convolutions.
"""
from __future__ import annotations

import numpy as np

from .report import Report, Table, figure_path, log, pyplot

NAME = "invariance"
TITLE = "Shift invariance: a ConvNet with pooling against a fully connected network"
CLAIM = ("Pooling merges nearby detections of the same feature, which makes a ConvNet's "
         "representation vary little when the input shifts by a few pixels; a fully connected "
         "network trained on centred digits loses accuracy quickly when they are shifted.")
SOURCE = ("LeCun, Bengio & Hinton, \"Deep learning\", Nature 521 (2015), section "
          "\"Convolutional neural networks\" (pooling creates \"an invariance to small shifts "
          "and distortions\"); LeCun, Bottou, Bengio & Haffner, Proc. IEEE 86 (1998), "
          "section II-A")
PAPER_FIGURE = "none (a claim of the text); ours: accuracy against shift"
MAIN_FIGURE = "accuracy_vs_shift.png"
EXAMPLES_FIGURE = "shifted_examples.png"

SEED = 0
SHIFTS = tuple(range(7))
DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}
EPOCHS = {True: 3, False: 5}  # quick, full
EXAMPLE_INDEX = 0


def shift_images(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Each digit ``images[i]`` (uint8 ``(N, 28, 28)``) moved by ``dy[i]`` rows and ``dx[i]``
    columns; pixels that enter the frame are background (0), pixels that leave it are lost."""
    n, h, w = images.shape
    out = np.zeros_like(images)
    for i in range(n):
        y, x = int(dy[i]), int(dx[i])
        src = images[i, max(0, -y):h - max(0, y), max(0, -x):w - max(0, x)]
        out[i, max(0, y):max(0, y) + src.shape[0], max(0, x):max(0, x) + src.shape[1]] = src
    return out


def directions(n: int, seed: int) -> tuple:
    """One direction per test digit, drawn uniformly from right, left, down and up: unit
    steps ``(dy, dx)`` and the direction names."""
    names = list(DIRECTIONS)
    pick = np.random.default_rng(seed).integers(0, len(names), n)
    steps = np.array([DIRECTIONS[names[k]] for k in pick])
    return steps[:, 0], steps[:, 1], [names[k] for k in pick]


def convnet_no_pooling():
    """``lenet5-modern`` with each 2x2 max pooling replaced by a stride of 2 in the
    convolution before it: the same layers, parameters and map sizes, no pooling."""
    from .. import nn

    return nn.Sequential(
        nn.Conv2d(1, 6, 5, stride=2, padding=2), nn.ReLU(),
        nn.Conv2d(6, 16, 5, stride=2, padding=0), nn.ReLU(),
        nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def _models(quick: bool) -> list:
    """(key, label, registered model whose input pipeline it takes, builder or None)."""
    from ..models import mlp

    fc = (lambda: mlp((784, 256, 10))) if quick else None
    fc_label = "fully connected 784-256-10" if quick else "fully connected 784-512-512-10"
    return [("mlp", fc_label, "mlp", fc),
            ("convnet", "ConvNet, 2x2 max pooling", "lenet5-modern", None),
            ("convnet_no_pool", "ConvNet, stride 2, no pooling", "lenet5-modern",
             convnet_no_pooling)]


def run(out_dir: str, quick: bool) -> Report:
    from ..train import TrainConfig
    from ._mnist import dataset_name, digits, predict, train

    dataset = dataset_name(quick)
    epochs = EPOCHS[quick]
    x_test, y_test = digits(dataset, False)
    dy, dx, names = directions(len(y_test), SEED)
    shifted = {s: shift_images(x_test, dy * s, dx * s) for s in SHIFTS}
    ink = x_test.reshape(len(x_test), -1).astype(np.float64).sum(1)
    ink_kept = {s: float(np.mean(shifted[s].reshape(len(x_test), -1).sum(1) / ink))
                for s in SHIFTS}

    accuracy: dict[str, dict[int, float]] = {}
    predictions: dict[str, dict[int, np.ndarray]] = {}
    params = {}
    labels = {}
    for key, label, pipeline, build in _models(quick):
        cfg = TrainConfig(pipeline, dataset=dataset, epochs=epochs, batch_size=64,
                          optimizer="sgd", seed=SEED, lr_schedule="lecun98", out="unused")
        log(f"invariance: training {label} for {epochs} epochs on {dataset}")
        model = build() if build is not None else None
        trainer = train(cfg, model=model, label=key)
        model = trainer.model
        params[key] = sum(p.data.size for p in model.parameters())
        labels[key] = label
        accuracy[key] = {}
        predictions[key] = {}
        for s in SHIFTS:
            pred = predict(model, pipeline, shifted[s]).argmax(1)
            predictions[key][s] = pred
            accuracy[key][s] = float(np.mean(pred == y_test))
        log(f"  {key}: accuracy by shift " +
            ", ".join(f"{s}px {100 * accuracy[key][s]:.1f}%" for s in SHIFTS))
    lr = cfg.lr

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    styles = {"mlp": ("#c0392b", "o"), "convnet": ("#2e6eb5", "s"),
              "convnet_no_pool": ("#7f8c8d", "^")}
    for key in accuracy:
        color, marker = styles[key]
        ax.plot(SHIFTS, [100 * accuracy[key][s] for s in SHIFTS], marker=marker, color=color,
                label=f"{labels[key]} ({params[key]:,} parameters)")
    ax.axhline(10, color="k", linestyle=":", linewidth=1, label="chance (10%)")
    ax.set_xlabel("shift of the test digits (pixels, random direction: left, right, up or "
                  "down)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks(SHIFTS)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower left", framealpha=1)
    ax.set_title(f"Trained on centred digits ({dataset}, {epochs} epochs), tested shifted",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(figure_path(out_dir, MAIN_FIGURE), dpi=110)
    plt.close(fig)

    i = EXAMPLE_INDEX
    fig, axes = plt.subplots(1, len(SHIFTS), figsize=(1.45 * len(SHIFTS), 2.9))
    short = {"mlp": "FC", "convnet": "pool", "convnet_no_pool": "no-pool"}
    for ax, s in zip(axes, SHIFTS):
        ax.imshow(255 - shifted[s][i], cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{s} px {names[i]}" if s else "0 px", fontsize=8)
        for line, k in enumerate(accuracy):
            guess = int(predictions[k][s][i])
            ax.text(0.5, -0.1 - 0.14 * line, f"{short[k]}: {guess}", transform=ax.transAxes,
                    ha="center", va="top", fontsize=7.5,
                    color="#1e8449" if guess == y_test[i] else "#c0392b")
    fig.suptitle(f"Test digit {i} (a {y_test[i]}) shifted, and each network's prediction, green "
                 "if right, red if wrong (FC: fully connected; pool, no-pool: the ConvNets)",
                 fontsize=8.5)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(figure_path(out_dir, EXAMPLES_FIGURE), dpi=110)
    plt.close(fig)

    table = Table(["shift (pixels)"] + [f"{labels[k]}" for k in accuracy] +
                  ["ink kept in the frame"],
                  caption=f"Test accuracy on the {len(y_test):,} test digits of {dataset}, "
                          "each shifted in its own random direction.")
    for s in SHIFTS:
        table.add(s, *[f"{100 * accuracy[k][s]:.1f}%" for k in accuracy],
                  f"{100 * ink_kept[s]:.1f}%")
    drop = {k: accuracy[k][0] - (accuracy[k][3] + accuracy[k][4]) / 2 for k in accuracy}
    counts = {n: names.count(n) for n in DIRECTIONS}
    findings = [
        f"Unshifted, the networks score {100 * accuracy['mlp'][0]:.1f}% (fully connected), "
        f"{100 * accuracy['convnet'][0]:.1f}% (ConvNet with pooling) and "
        f"{100 * accuracy['convnet_no_pool'][0]:.1f}% (ConvNet without pooling).",
        f"At 3-4 pixels the fully connected network loses {100 * drop['mlp']:.1f} points of "
        f"accuracy, the ConvNet with pooling {100 * drop['convnet']:.1f} and the ConvNet "
        f"without pooling {100 * drop['convnet_no_pool']:.1f}.",
        f"At 6 pixels: {100 * accuracy['mlp'][6]:.1f}%, {100 * accuracy['convnet'][6]:.1f}% "
        f"and {100 * accuracy['convnet_no_pool'][6]:.1f}% (and {100 - 100 * ink_kept[6]:.1f}% "
        f"of the ink has left the 28x28 frame).",
    ]
    keeps = {k: max(s for s in SHIFTS if all(accuracy[k][t] >= 0.9 * accuracy[k][0]
                                               for t in SHIFTS if t <= s)) for k in accuracy}

    def px(n: int) -> str:
        return f"{n} pixel" + ("" if n == 1 else "s")

    sentence = (f"Each network keeps at least 90% of its unshifted accuracy up to a shift of "
                f"{px(keeps['mlp'])} (fully connected), {px(keeps['convnet'])} (ConvNet with "
                f"pooling) and {px(keeps['convnet_no_pool'])} (ConvNet without pooling)")
    if accuracy["convnet"][4] < 0.8 * accuracy["convnet"][0]:
        sentence += (f"; even with pooling the accuracy at 4 pixels is "
                     f"{100 * accuracy['convnet'][4]:.1f}% (unshifted "
                     f"{100 * accuracy['convnet'][0]:.1f}%): it tolerates small shifts but is "
                     f"not invariant to shifts of 4 pixels")
    findings.append(sentence + ".")
    conv_gain = drop["mlp"] - drop["convnet_no_pool"]
    pool_gain = drop["convnet_no_pool"] - drop["convnet"]
    findings.append(
        f"At 3-4 pixels, against the fully connected network, the convolutions and subsampling "
        f"without pooling {'save' if conv_gain >= 0 else 'cost'} {100 * abs(conv_gain):.1f} "
        f"points of accuracy, and the pooling {'saves' if pool_gain >= 0 else 'costs'} "
        f"{100 * abs(pool_gain):.1f} more.")
    sizes = ("the embedded sample, 6,000 training and 1,000 test digits" if quick else
             "MNIST, 60,000 training and 10,000 test digits")
    setup = (
        f"Data: {dataset} ({sizes}), "
        f"28x28, standardised with MNIST's mean and deviation; training on the digits as they "
        f"are (centred), with no augmentation. Test: each test digit is given one direction "
        f"at random (right, left, down or up: {counts['right']}, {counts['left']}, "
        f"{counts['down']}, {counts['up']} digits; NumPy generator seeded {SEED}) and moved by "
        f"0 to 6 whole pixels that way, the uncovered pixels set to background. Networks: "
        f"{labels['mlp']} with ReLU (`deepgrad.models.mlp`); the ConvNet `lenet5-modern` "
        f"(conv 5x5 6 maps, ReLU, 2x2 max pooling, conv 5x5 16 maps, ReLU, 2x2 max pooling, "
        f"conv 5x5 120, FC 84, FC 10); and the same ConvNet with each pooling replaced by a "
        f"stride of 2 in the convolution before it (no pooling, same parameters and map "
        f"sizes). Training: `deepgrad.train`, SGD with momentum 0.9, batch 64, learning rate "
        f"{lr} with the 'lecun98' schedule, {epochs} epochs, cross-entropy; seed {SEED} "
        f"(`deepgrad.manual_seed` for the weights, the run's derived generator for the data "
        f"order).")
    return Report(
        NAME, TITLE, CLAIM, SOURCE, setup=setup, tables=[table],
        figures=[(MAIN_FIGURE, "Test accuracy against the shift of the test digits, for "
                               "networks trained on centred digits."),
                 (EXAMPLES_FIGURE, "One test digit shifted by 0 to 6 pixels, with each "
                                   "network's predicted class under it.")],
        findings=findings,
        results={"accuracy": accuracy, "drop_3_4": drop, "ink_kept": ink_kept,
                 "params": params, "tolerated_shift": keeps})
