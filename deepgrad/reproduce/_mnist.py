"""Shared pieces of the MNIST reproductions (lenet5, feature-maps, invariance): training through
``deepgrad.train``'s building blocks, the digits as arrays, and batched predictions.

Training reuses the trainer as ``deepgrad train`` does (``TrainConfig``, the model's input
pipeline, the optimizer and the 'lecun98' schedule, ``Trainer.fit``) but writes no checkpoints:
a reproduction keeps only what its report needs.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..train.loop import Callback
from .report import log

def dataset_name(quick: bool) -> str:
    """The embedded 6,000 + 1,000 digit sample for quick runs, full MNIST otherwise."""
    return "mnist-sample" if quick else "mnist"


def digits(dataset: str, train: bool) -> tuple:
    """The raw digits of a split: uint8 images ``(N, 28, 28)`` and int64 labels ``(N,)``."""
    from ..train.pipeline import load_mnist

    ds = load_mnist(dataset, train)
    return ds.data.numpy(), ds.targets.numpy()


def predict(model, model_name: str, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    """``model``'s class scores ``(N, 10)`` for uint8 digits ``(N, 28, 28)``, after the
    evaluation pipeline of the registered model ``model_name`` (padding, normalisation)."""
    import deepgrad as dg
    from ..train.pipeline import input_transform

    transform = input_transform(model_name)
    was_training = model.training
    model.eval()
    out = []
    try:
        with dg.no_grad():
            for i in range(0, len(images), batch):
                out.append(model(transform(images[i:i + batch])).numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


class _EpochLog(Callback):
    """Log one line per epoch to stderr, and measure the training error after each epoch on a
    fixed subset of the undistorted training digits (``record['train_subset_error']``)."""

    def __init__(self, label: str, subset_loader=None) -> None:
        self.label = label
        self.subset_loader = subset_loader

    def on_epoch_end(self, trainer, record: dict) -> None:
        from ..train import format_record

        if self.subset_loader is not None:
            record["train_subset_error"] = trainer.evaluate(self.subset_loader)["error"]
        extra = (f" | train-subset error {100 * record['train_subset_error']:.2f}%"
                 if "train_subset_error" in record else "")
        log(f"  {self.label}: {format_record(record, trainer.target_epochs)}{extra}")


def train(config, model=None, label: str = "", train_subset: int = 0):
    """Train as ``config`` (a ``TrainConfig``) says, without writing checkpoints.

    Args:
        config: the run's settings (model name, dataset, epochs, optimizer, seed, distortions).
        model: a network to train instead of ``create(config.model)``; it then takes the input
            pipeline of ``config.model``.
        label: a name for the log lines.
        train_subset: if positive, measure the error on this many training digits (the first
            of a fixed permutation, undistorted, in eval mode) after every epoch.

    Returns:
        The ``Trainer`` after its last epoch; ``history`` holds one record per epoch.
    """
    import deepgrad as dg
    from ..data import DataLoader, Subset
    from ..models import create
    from ..train import Trainer
    from ..train.loop import build_optimizer, build_scheduler
    from ..train.pipeline import input_transform, load_mnist, make_generators, make_loaders

    dg.manual_seed(config.seed)
    if model is None:
        model = create(config.model)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    generators = make_generators(config.seed)
    train_loader, test_loader = make_loaders(config, generators)
    subset_loader = None
    if train_subset:
        plain = load_mnist(config.dataset, True, input_transform(config.model))
        order = np.random.default_rng(config.seed).permutation(len(plain))[:train_subset]
        subset_loader = DataLoader(Subset(plain, order.tolist()),
                                   batch_size=config.test_batch_size)
    trainer = Trainer(model, optimizer, train_loader, test_loader, scheduler=scheduler,
                      callbacks=[_EpochLog(label or config.model, subset_loader)],
                      generators=generators, config=config.to_dict())
    trainer.fit(config.epochs)
    return trainer


def save_model(model, path: str, metadata: dict[str, Any]) -> None:
    """Save the weights and a few facts about them (``metadata``) as safetensors."""
    from ..io import save

    save({"model": model.state_dict(), "metadata": metadata}, path)


def load_lenet5(path: str):
    """The ``LeNet5`` saved by ``save_model`` at ``path`` and its metadata, in eval mode."""
    from ..io import load
    from ..models import LeNet5

    state = load(path)
    model = LeNet5()
    model.load_state_dict(state["model"])
    model.eval()
    return model, state.get("metadata", {})
