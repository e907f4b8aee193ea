"""The outputs of every layer of a trained LeNet-5 for one test digit, drawn as grey images.

A ConvNet's layer is a stack of feature maps, each the output of one learned feature detector
applied at every position of the layer below. Going up, the maps get smaller (subsampling)
and more numerous, until C5 and F6 hold single units and the output layer a score per class.
This draws each layer's maps for one digit, as the Nature review's Fig. 2 does for a ConvNet
looking at a photograph (LeCun et al. 1998 draw LeNet-5's maps only as planes of its
architecture, their Fig. 2), and the six learned 5x5 kernels of C1.

The network drawn is, in order of preference: the file given as ``checkpoint``
(``deepgrad reproduce feature-maps --checkpoint PATH``: a ``lenet5.safetensors`` written by
``deepgrad reproduce lenet5``, a checkpoint of ``deepgrad train lenet5``, or a folder holding
one); else, in a full run, the network ``deepgrad reproduce lenet5`` kept in its report folder
``docs/reproductions/lenet5/`` (relative to the working directory, where full runs write);
else, in a quick run, a LeNet-5 trained here for two epochs on the embedded MNIST sample, so
that the quick run works in a fresh clone. A full run without a trained network stops with an
error naming the command that makes one, rather than drawing a barely trained network.
"""
from __future__ import annotations

import os

import numpy as np

from .report import Report, Table, figure_path, log, pyplot

NAME = "feature-maps"
TITLE = "Inside LeNet-5: the feature maps of every layer for one digit"
CLAIM = ("Each layer of a convolutional network is a set of feature maps, the outputs of "
         "learned feature detectors applied at every position; going up, the maps become "
         "coarser and more numerous, and the top layers give a score per class.")
SOURCE = ("LeCun, Bengio & Hinton, \"Deep learning\", Nature 521 (2015), Fig. 2 and section "
          "\"Convolutional neural networks\"; LeCun, Bottou, Bengio & Haffner, Proc. IEEE 86 "
          "(1998), LeNet-5")
PAPER_FIGURE = ("Nature 2015, Fig. 2 (the outputs of every layer of a ConvNet for one image); "
                "LeCun et al. 1998, Fig. 2 (LeNet-5's architecture, its maps as planes)")
MAIN_FIGURE = "feature_maps.png"
KERNELS_FIGURE = "c1_kernels.png"

OPTIONS = ("checkpoint",)  # `deepgrad reproduce feature-maps --checkpoint PATH`
DIGIT_INDEX = 0       # the test digit drawn: the first of the test set
BRIEF_EPOCHS = 2      # the quick run's own training, on the embedded sample
LAYERS = ("c1", "s2", "c3", "s4", "c5", "f6", "output")
AMPLITUDE = 1.7159    # the range of the scaled tanh, +-1.7159


def default_checkpoint() -> str:
    """Where a full run looks for the network: the file ``deepgrad reproduce lenet5`` writes
    into its default report folder, relative to the working directory."""
    from . import default_out, lenet5

    return os.path.join(default_out("lenet5", quick=False), lenet5.CHECKPOINT_NAME)


def _resolve(path: str) -> str:
    """``path`` itself if it is a file; in a folder, the first of lenet5.safetensors (from
    ``deepgrad reproduce lenet5``), best.safetensors and last.safetensors (from ``deepgrad
    train lenet5``)."""
    from . import lenet5

    if os.path.isdir(path):
        for name in (lenet5.CHECKPOINT_NAME, "best.safetensors", "last.safetensors"):
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate):
                return candidate
        raise FileNotFoundError(
            f"feature-maps: the folder {path} holds no {lenet5.CHECKPOINT_NAME} (written by "
            f"'deepgrad reproduce lenet5') nor best.safetensors / last.safetensors (written by "
            f"'deepgrad train lenet5'); pass one of those files with --checkpoint")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"feature-maps: checkpoint {path} not found; pass --checkpoint a lenet5.safetensors "
            f"written by 'deepgrad reproduce lenet5' or a checkpoint of 'deepgrad train lenet5'")
    return path


def load_network(path: str):
    """The LeNet-5 saved at ``path`` (see ``_resolve``) and a phrase saying what it is.

    Reads both the file of ``deepgrad reproduce lenet5`` (weights plus metadata) and a
    training checkpoint of ``deepgrad train lenet5`` (weights plus its ``TrainConfig``)."""
    from ..io import load
    from ._mnist import load_lenet5

    path = _resolve(path)
    state = load(path)
    if isinstance(state, dict) and isinstance(state.get("config"), dict):
        from ..train import load_checkpoint
        from ..train.loop import saved_config

        config = saved_config(path)
        if config.model != "lenet5":
            raise ValueError(
                f"feature-maps: {path} is a checkpoint of model {config.model!r}; feature-maps "
                f"draws the layers of 'lenet5' (train one with 'deepgrad train lenet5')")
        model, config, _ = load_checkpoint(path)
        done = state.get("epoch", config.epochs)
        return model, (f"a LeNet-5 trained by `deepgrad train lenet5` ({done} epochs on "
                       f"{config.dataset}{', with distortions' if config.distort else ''}), "
                       f"loaded from {path}")
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(
            f"feature-maps: {path} holds no LeNet-5 weights; expected a lenet5.safetensors "
            f"written by 'deepgrad reproduce lenet5' or a checkpoint of 'deepgrad train lenet5'")
    try:
        model, meta = load_lenet5(path)
    except (RuntimeError, KeyError) as e:
        raise ValueError(f"feature-maps: {path} does not hold LeNet-5 weights ({e})") from None
    return model, (f"the LeNet-5 trained by `deepgrad reproduce lenet5` "
                   f"({meta.get('epochs')} epochs on {meta.get('dataset')}"
                   f"{', with distortions' if meta.get('distort') else ''}), loaded from "
                   f"{path}")


def _model(quick: bool, checkpoint: str | None):
    """The trained LeNet-5 and a sentence saying where it came from."""
    from . import lenet5
    from ._mnist import train

    if checkpoint is not None:
        return load_network(checkpoint)
    if not quick:
        path = default_checkpoint()
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"feature-maps: no trained LeNet-5 at {path}; run 'deepgrad reproduce lenet5' "
                f"first from this folder (it writes that file), or pass --checkpoint PATH (a "
                f"lenet5.safetensors of 'deepgrad reproduce lenet5 --out DIR' or a checkpoint "
                f"of 'deepgrad train lenet5'), or use --quick to train a small LeNet-5 here")
        return load_network(path)
    epochs = BRIEF_EPOCHS
    cfg = lenet5.config(quick, distort=False, epochs=epochs)
    log(f"feature-maps: no checkpoint used; training LeNet-5 for {epochs} epochs on "
        f"{cfg.dataset}")
    trainer = train(cfg, label="lenet5")
    return trainer.model, (f"a LeNet-5 trained here for {epochs} epochs on {cfg.dataset} "
                           f"(SGD, momentum 0.9, batch {cfg.batch_size}, learning rate "
                           f"{cfg.lr}, seed {cfg.seed})")


def _draw_maps(features: dict, image32: np.ndarray, label: int, out_dir: str) -> None:
    plt = pyplot()
    width = 12.0
    left = 1.35        # inches for the row labels
    gap = 0.06
    rows = [("input", "input\n1@32x32"), ("c1", "C1\n6@28x28"), ("s2", "S2\n6@14x14"),
            ("c3", "C3\n16@10x10"), ("s4", "S4\n16@5x5"), ("c5", "C5\n120 units"),
            ("f6", "F6\n84 units"), ("output", "output\n10 classes")]
    heights = {"input": 1.25, "c1": 1.0, "s2": 0.8, "c3": 0.58, "s4": 0.58, "c5": 0.3,
               "f6": 0.3, "output": 0.42}
    pad = 0.3
    total = sum(heights[k] for k, _ in rows) + pad * (len(rows) + 1) + 0.5
    fig = plt.figure(figsize=(width, total))
    y = total - 0.55 - pad
    gray = dict(cmap="gray_r", vmin=-AMPLITUDE, vmax=AMPLITUDE, interpolation="nearest")
    probabilities = None
    for key, name in rows:
        h = heights[key]
        y -= h
        fig.text(0.15 / width, (y + h / 2) / total, name, va="center", ha="left", fontsize=9)
        if key in ("input", "c1", "s2", "c3", "s4"):
            maps = [image32] if key == "input" else list(features[key].numpy()[0])
            for j, m in enumerate(maps):
                ax = fig.add_axes([(left + j * (h + gap)) / width, y / total, h / width,
                                   h / total])
                ax.imshow(m, **gray)
                ax.set_xticks([])
                ax.set_yticks([])
        elif key in ("c5", "f6"):
            units = features[key].numpy().reshape(1, -1)
            ax = fig.add_axes([left / width, y / total, (width - left - 0.3) / width,
                               h / total])
            ax.imshow(units, aspect="auto", **gray)
            ax.set_yticks([])
            n = units.shape[1]
            ax.set_xticks(np.arange(0, n, 10 if n > 90 else 12))
            ax.tick_params(labelsize=6, length=2)
        else:
            logits = features["output"].numpy()[0].astype(np.float64)
            probabilities = np.exp(logits - logits.max())
            probabilities /= probabilities.sum()
            w = 10 * (h + gap)
            ax = fig.add_axes([left / width, y / total, w / width, h / total])
            ax.imshow(probabilities.reshape(1, -1), aspect="auto", cmap="gray_r", vmin=0,
                      vmax=1, interpolation="nearest")
            ax.set_yticks([])
            ax.set_xticks(range(10))
            ax.tick_params(labelsize=8, length=0)
            fig.text((left + w + 0.2) / width, (y + h / 2) / total,
                     f"softmax probability, white 0 to black 1; predicted "
                     f"{int(probabilities.argmax())} ({probabilities.max():.2%}), true {label}",
                     va="center", fontsize=8)
        y -= pad
    fig.suptitle("LeNet-5's layers for one test digit: each small image is one feature map "
                 f"(grey scale -{AMPLITUDE} white to +{AMPLITUDE} black; the input: background "
                 "-0.1, ink 1.175)", fontsize=9.5, y=1 - 0.2 / total)
    fig.savefig(figure_path(out_dir, MAIN_FIGURE), dpi=110)
    plt.close(fig)


def _draw_kernels(weight: np.ndarray, bias: np.ndarray, out_dir: str) -> None:
    plt = pyplot()
    bound = float(np.abs(weight).max())
    fig, axes = plt.subplots(1, 6, figsize=(9.5, 2.3))
    for k, ax in enumerate(axes):
        im = ax.imshow(weight[k, 0], cmap="RdBu_r", vmin=-bound, vmax=bound,
                       interpolation="nearest")
        ax.set_title(f"kernel {k}\nbias {bias[k]:+.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    cbar = fig.colorbar(im, ax=list(axes), shrink=0.8, pad=0.02)
    cbar.set_label("weight", fontsize=8)
    fig.suptitle("The six learned 5x5 kernels of C1 (red positive, blue negative)",
                 fontsize=10)
    fig.savefig(figure_path(out_dir, KERNELS_FIGURE), dpi=110, bbox_inches="tight")
    plt.close(fig)


def run(out_dir: str, quick: bool, checkpoint: str | None = None) -> Report:
    """Draw the layers of a LeNet-5: the one in ``checkpoint`` if given, else (full run) the
    one ``deepgrad reproduce lenet5`` wrote, else (quick run) one trained here."""
    import deepgrad as dg
    from ..train.pipeline import input_transform
    from ._mnist import dataset_name, digits, predict

    model, origin = _model(quick, checkpoint)
    model.eval()
    dataset = dataset_name(quick)
    x_test, y_test = digits(dataset, False)
    test_error = float(np.mean(predict(model, "lenet5", x_test).argmax(1) != y_test))
    x = input_transform("lenet5")(x_test[DIGIT_INDEX:DIGIT_INDEX + 1])
    label = int(y_test[DIGIT_INDEX])
    with dg.no_grad():
        features = model.features(x)
    image32 = x.numpy()[0, 0]
    _draw_maps(features, image32, label, out_dir)
    weight = model.c1.weight.detach().numpy()
    bias = model.c1.bias.detach().numpy()
    _draw_kernels(weight, bias, out_dir)

    logits = features["output"].numpy()[0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    predicted = int(probs.argmax())

    table = Table(["layer", "maps", "map size", "units", "mean absolute output",
                   "units near saturation (absolute output > 1.5)"],
                  caption=f"The layer outputs drawn above, for test digit {DIGIT_INDEX} "
                          f"(a {label}).")
    shapes = {}
    table.add("input", 1, "32x32", 1024, float(np.abs(image32).mean()), "-")
    for name in LAYERS:
        a = features[name].numpy()[0]
        shapes[name] = tuple(a.shape)
        maps = a.shape[0]
        map_size = "x".join(str(s) for s in a.shape[1:]) if a.ndim == 3 else "1"
        saturated = f"{np.mean(np.abs(a) > 1.5):.1%}" if name != "output" else "-"
        table.add(name.upper() if name != "output" else "output (logits)", maps, map_size,
                  int(a.size), float(np.abs(a).mean()), saturated)

    n_test = len(y_test)
    size = {n: "x".join(map(str, shapes[n][1:])) for n in ("c1", "s2", "c3", "s4")}
    findings = [
        f"The network drawn is {origin}; its test error is {100 * test_error:.2f}% on the "
        f"{n_test:,} test digits of {dataset}.",
        f"Test digit {DIGIT_INDEX} is a {label}; the network predicts {predicted} with "
        f"probability {probs[predicted]:.2%}.",
        f"The maps shrink from {size['c1']} (C1) through {size['s2']} (S2) and {size['c3']} "
        f"(C3) to {size['s4']} (S4) while their number grows from {shapes['c1'][0]} to "
        f"{shapes['s4'][0]}; C5 has {int(np.prod(shapes['c5']))} units and F6 "
        f"{shapes['f6'][0]}, each seeing the whole digit.",
    ]
    setup = (
        f"Network: {origin}. Digit: test digit {DIGIT_INDEX} of {dataset}, padded to 32x32 "
        f"with background -0.1 and ink 1.175 as LeNet-5 is trained. Drawn: the output of every "
        f"layer after its squashing function (C1 to F6, range +-{AMPLITUDE}), each feature map "
        f"as a small grey image on one common scale (darker = larger), C5 and F6 as strips of "
        f"units, and the output layer's softmax probabilities; and the weights of C1's six "
        f"5x5 kernels.")
    return Report(
        NAME, TITLE, CLAIM, SOURCE, setup=setup, tables=[table],
        figures=[(MAIN_FIGURE, "Every layer of LeNet-5 for one test digit, input at the top, "
                               "output at the bottom."),
                 (KERNELS_FIGURE, "C1's six learned 5x5 kernels: each C1 map above is the "
                                  "input convolved with one of them, plus its bias, squashed.")],
        findings=findings,
        results={"shapes": shapes, "label": label, "predicted": predicted,
                 "probability": float(probs[predicted]), "test_error": test_error,
                 "c1_kernels_shape": tuple(weight.shape), "from_checkpoint": "loaded" in origin,
                 "origin": origin})
