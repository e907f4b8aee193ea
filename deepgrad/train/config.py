"""``TrainConfig``: every setting of a training run, in one JSON-serialisable dataclass.

A run is reproducible from its config alone: checkpoints store it, ``--resume`` reads it back,
and the same config (seed included) gives the same weights bit for bit.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, TypeGuard

__all__ = ["TrainConfig", "DATASETS", "OPTIMIZERS", "SCHEDULES", "DEFAULT_LR",
           "DEFAULT_MOMENTUM", "default_lr", "lecun98_factor"]

DATASETS = ("mnist", "mnist-sample")
OPTIMIZERS = ("sgd", "adam")
# learning rates that train the registered models well on MNIST in a few epochs (measured on
# mnist-sample, 2 epochs, batch 64)
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3}
# LeNet-5 with SGD: `deepgrad reproduce lenet5` reaches 0.93% test error with batch 16 and lr
# 0.01; at the default batch 64 the same step per sample is 0.04 (lr scaled with the batch).
# One epoch on full MNIST at batch 64, momentum 0.9, seed 0: test error 2.83% at 0.04, 2.74% at
# 0.02, 6.69% at 0.1; three epochs: 1.33% at 0.04, 1.40% at 0.02.
MODEL_LR = {("lenet5", "sgd"): 0.04}
DEFAULT_MOMENTUM = 0.9  # SGD only
SCHEDULES = ("lecun98", "constant")


def lecun98_factor(epoch: int) -> float:
    """The learning-rate factor of 0-based ``epoch`` in the shape of LeCun et al. (1998),
    section V-B: the paper's 0.0005 for 2 passes, 0.0002 for 3, 0.0001 for 3, 0.00005 for 4
    and 0.00001 thereafter, relative to the first value."""
    if epoch < 2:
        return 1.0
    if epoch < 5:
        return 0.4
    if epoch < 8:
        return 0.2
    if epoch < 12:
        return 0.1
    return 0.02


def default_lr(model: str, optimizer: str) -> float:
    """The learning rate a run uses when none is given."""
    return MODEL_LR.get((model, optimizer), DEFAULT_LR[optimizer])


@dataclass
class TrainConfig:
    """The settings of one training run.

    Args:
        model: a name from ``deepgrad.models.MODELS`` (e.g. ``'lenet5'``, ``'mlp'``).
        dataset: ``'mnist'`` (the full set, found through ``$DEEPGRAD_DATA``) or
            ``'mnist-sample'`` (the 6,000 + 1,000 digits shipped with deepgrad).
        epochs: passes over the training set.
        batch_size: training samples per step.
        lr: initial learning rate; ``None`` picks ``default_lr(model, optimizer)``.
        optimizer: ``'sgd'`` or ``'adam'``.
        momentum: SGD momentum; ``None`` picks ``DEFAULT_MOMENTUM`` for SGD. Adam takes none.
        seed: seeds the global generator (weight init) and, derived from it, the generators of
            the data order and of the distortions.
        distort: random affine distortions of the training images (rotation, scale, shear,
            translation), drawn afresh every epoch.
        lr_schedule: ``'lecun98'`` lowers the learning rate after epochs 2, 5, 8 and 12 to
            0.4, 0.2, 0.1 and 0.02 of ``lr`` (``lecun98_factor``); ``'constant'`` keeps it.
        out: directory for checkpoints, metrics and curves; ``None`` gives ``runs/<model>``.
        test_batch_size: batch size of evaluation (does not change the results).

    Example:
        >>> cfg = TrainConfig("lenet5", dataset="mnist-sample", epochs=2)
        >>> TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
        True
    """

    model: str
    dataset: str = "mnist"
    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None
    optimizer: str = "sgd"
    momentum: float | None = None
    seed: int = 0
    distort: bool = False
    lr_schedule: str = "lecun98"
    out: str | None = None
    test_batch_size: int = 1000

    def __post_init__(self) -> None:
        if self.optimizer in DEFAULT_LR and self.lr is None:
            self.lr = default_lr(self.model, self.optimizer)
        if self.optimizer == "sgd" and self.momentum is None:
            self.momentum = DEFAULT_MOMENTUM
        if self.out is None:
            self.out = f"runs/{self.model}"
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` (or ``TypeError``) naming the first bad setting."""
        from ..models import MODELS

        if not isinstance(self.model, str) or self.model not in MODELS:
            raise ValueError(
                f"TrainConfig: unknown model {self.model!r}; expected one of "
                f"{', '.join(MODELS)}")
        if self.dataset not in DATASETS:
            raise ValueError(
                f"TrainConfig: unknown dataset {self.dataset!r}; expected one of "
                f"{', '.join(DATASETS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"TrainConfig: unknown optimizer {self.optimizer!r}; expected one of "
                f"{', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(
                f"TrainConfig: unknown lr_schedule {self.lr_schedule!r}; expected one of "
                f"{', '.join(SCHEDULES)}")
        for name in ("epochs", "batch_size", "test_batch_size"):
            _check_int(name, getattr(self, name), 1)
        _check_int("seed", self.seed, 0)
        if not _is_number(self.lr) or not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"TrainConfig: lr must be a positive number; got {self.lr!r}")
        if self.optimizer == "adam":
            if self.momentum is not None:
                raise ValueError(
                    f"TrainConfig: momentum applies to optimizer 'sgd' only; got "
                    f"momentum={self.momentum!r} with optimizer 'adam'")
        elif not _is_number(self.momentum) or not 0.0 <= self.momentum < 1.0:
            raise ValueError(
                f"TrainConfig: momentum must be a number in [0, 1); got {self.momentum!r}")
        if not isinstance(self.distort, bool):
            raise TypeError(f"TrainConfig: distort must be a bool; got {self.distort!r}")
        if not isinstance(self.out, str) or not self.out:
            raise ValueError(f"TrainConfig: out must be a directory path; got {self.out!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from ``to_dict()``; unknown keys raise ``ValueError``."""
        if not isinstance(d, dict):
            raise TypeError(f"TrainConfig.from_dict: expected a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"TrainConfig.from_dict: unknown settings {', '.join(map(repr, unknown))}; "
                f"expected some of {', '.join(sorted(known))}")
        if "model" not in d:
            raise ValueError("TrainConfig.from_dict: the setting 'model' is missing")
        return cls(**d)


def _is_number(x: Any) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"TrainConfig: {name} must be {what}; got {value!r}")
