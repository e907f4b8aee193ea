"""The input pipeline of each model: datasets, transforms and loaders for a training run.

MNIST images arrive as uint8 ``(N, 28, 28)`` batches; the transforms run on whole batches.

- ``lenet5`` (the 1998 network) takes 32x32 inputs: the digits are padded by 2 pixels and
  the pixel values mapped so that the background (white paper, 0) is -0.1 and the foreground
  (black ink, 1) is 1.175, which makes the mean input roughly 0 and the variance roughly 1
  (LeCun et al. 1998, section II-B). That is ``Normalize(mean, std)`` with
  ``std = 1 / 1.275`` and ``mean = 0.1 * std``.
- Every other model sees the 28x28 digits standardised with MNIST's training mean and standard
  deviation: ``Normalize(0.1307, 0.3081)``.
- ``distort=True`` adds random affine maps (rotation, scale, shear, translation) to the
  training batches only, before padding and normalisation, so that the area they expose is
  background.
"""
from __future__ import annotations

import numpy as np

from ..data import transforms as T
from ..random import Generator
from .config import TrainConfig

__all__ = ["LENET_RANGE", "MNIST_MEAN", "MNIST_STD", "input_transform", "train_transform",
           "distortion", "load_mnist", "DatasetError", "derive_seed", "make_generators"]

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
# background and foreground values of LeNet-5's input (paper, section II-B)
LENET_RANGE = (-0.1, 1.175)


def _normalize(model: str) -> T.Normalize:
    if model == "lenet5":
        lo, hi = LENET_RANGE
        std = 1.0 / (hi - lo)
        return T.Normalize((-lo * std,), (std,))
    return T.Normalize((MNIST_MEAN,), (MNIST_STD,))


def _geometry(model: str) -> list:
    return [T.Pad(2)] if model == "lenet5" else []


def input_transform(model: str) -> T.Compose:
    """The evaluation pipeline of ``model``: uint8 ``(N, 28, 28)`` (or floats in [0, 1],
    ``(N, 1, 28, 28)``) to the model's input, float32 ``(N, *MODELS[model].input_shape)``."""
    return T.Compose([T.ToTensor()] + _geometry(model) + [_normalize(model)])


def distortion(generator: Generator | None = None) -> T.RandomAffine:
    """Small random affine maps of 28x28 digits: rotation up to 8 degrees, scale 0.9-1.1,
    shear up to 8 degrees, shifts up to 2 pixels; bilinear, background fill."""
    return T.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.9, 1.1), shear=8,
                          interpolation="bilinear", fill=0.0, generator=generator)


def train_transform(model: str, distort: bool = False,
                    generator: Generator | None = None) -> T.Compose:
    """The training pipeline: ``input_transform`` with ``distortion`` first if ``distort``."""
    steps: list = [T.ToTensor()]
    if distort:
        steps.append(distortion(generator))
    return T.Compose(steps + _geometry(model) + [_normalize(model)])


class DatasetError(RuntimeError):
    """A dataset cannot be loaded (missing or damaged files)."""


def load_mnist(dataset: str, train: bool, transform=None):
    """``'mnist'`` (from ``$DEEPGRAD_DATA``) or ``'mnist-sample'`` (shipped with deepgrad).

    Raises:
        DatasetError: the files are missing or damaged.
    """
    from ..data.datasets import MNIST

    if dataset not in ("mnist", "mnist-sample"):
        raise ValueError(f"load_mnist: unknown dataset {dataset!r}; expected 'mnist' or "
                         f"'mnist-sample'")
    try:
        return MNIST(train=train, transform=transform, sample=dataset == "mnist-sample")
    except (OSError, RuntimeError, ValueError) as e:
        raise DatasetError(str(e)) from e


def derive_seed(seed: int, stream: int) -> int:
    """An independent seed for random stream number ``stream`` of a run seeded with ``seed``."""
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def make_generators(seed: int) -> dict[str, Generator]:
    """The run's own generators: ``'loader'`` (data order) and ``'distort'`` (distortions)."""
    return {"loader": Generator().manual_seed(derive_seed(seed, 1)),
            "distort": Generator().manual_seed(derive_seed(seed, 2))}


def make_loaders(config: TrainConfig, generators: dict[str, Generator]) -> tuple:
    """Training and test ``DataLoader``s of a run (the test one in order, undistorted)."""
    from ..data import DataLoader

    train_set = load_mnist(config.dataset, True,
                           train_transform(config.model, config.distort, generators["distort"]))
    test_set = load_mnist(config.dataset, False, input_transform(config.model))
    train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                              generator=generators["loader"])
    test_loader = DataLoader(test_set, batch_size=config.test_batch_size)
    return train_loader, test_loader
