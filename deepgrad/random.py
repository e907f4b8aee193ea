"""Random numbers: one global generator, seeded by ``manual_seed``, and ``Generator`` objects.

Streams come from NumPy's PCG64. They are reproducible for a given seed on any machine, but they
are not PyTorch's streams: the same seed gives different numbers than in PyTorch.
"""
from __future__ import annotations

import numpy as np

_DEFAULT_SEED = 67280421310721  # PyTorch's default seed, so an unseeded run is reproducible too


class Generator:
    """A source of random numbers with its own state.

    Example:
        >>> g = deepgrad.Generator().manual_seed(0)
        >>> deepgrad.rand(3, generator=g)
    """

    def __init__(self, device: str = "cpu") -> None:
        self._seed = _DEFAULT_SEED
        self.rng = np.random.Generator(np.random.PCG64(self._seed))

    def manual_seed(self, seed: int) -> Generator:
        seed = int(seed)
        if seed < 0:
            raise ValueError(f"manual_seed: seed must be non-negative, got {seed}")
        self._seed = seed
        self.rng = np.random.Generator(np.random.PCG64(seed))
        return self

    def seed(self) -> int:
        """Seed from the operating system's entropy and return the seed used."""
        entropy = np.random.SeedSequence().entropy
        s = int(entropy) % (2**63)  # type: ignore[arg-type]
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        return dict(self.rng.bit_generator.state)

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the global generator; the same seed gives the same numbers, bit for bit."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> dict:
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    default_generator.set_state(state)


def _generator(generator: Generator | None) -> np.random.Generator:
    return (generator or default_generator).rng
