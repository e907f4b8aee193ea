"""Training curves as a PNG: loss and error per epoch, train and test.

matplotlib is optional (``pip install 'deepgrad[train]'``) and imported only when a plot is
drawn. The figure is rendered with the Agg canvas directly, without pyplot, so it needs no
display and leaves the user's matplotlib backend alone.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

__all__ = ["plot_curves"]


def _series(records: Sequence[dict], key: str, scale: float = 1.0) -> list[float]:
    values = []
    for r in records:
        v = r.get(key)
        values.append(math.nan if v is None else float(v) * scale)
    return values


def plot_curves(records: Sequence[dict], path: str | os.PathLike, title: str | None = None) -> None:
    """Write a PNG with two panels: loss, and error in percent, against the epoch.

    Args:
        records: one dict per epoch with ``epoch``, ``train_loss``, ``test_loss``,
            ``train_accuracy`` and ``test_accuracy`` (fractions), as in ``metrics.jsonl``.
            Missing or null values are left out of the lines.
        path: the PNG file, written atomically (a temporary file renamed over it).
        title: a title over both panels.

    Raises:
        ImportError: matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "plot_curves: plotting needs the optional package 'matplotlib'; install it with "
            "pip install 'deepgrad[train]'") from e
    epochs = [r["epoch"] for r in records]
    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_err = fig.subplots(1, 2)
    style = {"marker": "o", "markersize": 3}
    ax_loss.plot(epochs, _series(records, "train_loss"), label="train", **style)
    ax_loss.plot(epochs, _series(records, "test_loss"), label="test", **style)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (cross-entropy)")
    ax_loss.set_title("Loss")
    train_err = [100.0 - a for a in _series(records, "train_accuracy", 100.0)]
    test_err = [100.0 - a for a in _series(records, "test_accuracy", 100.0)]
    ax_err.plot(epochs, train_err, label="train", **style)
    ax_err.plot(epochs, test_err, label="test", **style)
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("error (%)")
    ax_err.set_title("Error")
    positive = [v for v in train_err + test_err if v > 0]
    if positive and max(positive) / min(positive) > 20:
        ax_err.set_yscale("log")
    for ax in (ax_loss, ax_err):
        ax.grid(True, alpha=0.3)
        ax.legend()
        if epochs:
            ax.set_xticks(_ticks(epochs))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _ticks(epochs: list) -> list:
    # whole epochs only, at most about ten of them
    last = max(epochs)
    step = max(1, math.ceil(last / 10))
    return list(range(step if step > 1 else 1, last + 1, step)) or [last]
