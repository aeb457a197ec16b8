"""The global random state: parameter initialisation, random tensors, DataLoader shuffling and
the seeds of dropout masks, all drawn from one generator that ``manual_seed`` resets."""
from __future__ import annotations

import numpy as np


class Generator:
    """A random number generator (``torch.Generator``): pass it as ``generator=`` to random
    factories, ``randperm``, ``random_split`` or a DataLoader to draw apart from the global one."""

    def __init__(self, device: str = "cpu") -> None:
        self._seed = int(np.random.SeedSequence().entropy % 2**63)
        self.numpy = np.random.default_rng(self._seed)
        self.device = device

    def manual_seed(self, seed: int) -> "Generator":
        self._seed = int(seed)
        self.numpy = np.random.default_rng(self._seed)
        return self

    def seed(self) -> int:
        return self.manual_seed(int(np.random.SeedSequence().entropy % 2**63)).initial_seed()

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self):
        return self.numpy.bit_generator.state

    def set_state(self, state) -> "Generator":
        self.numpy.bit_generator.state = state
        return self


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Make initialisation, random tensors, shuffling and dropout reproducible, like
    ``torch.manual_seed``."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def generator() -> np.random.Generator:
    """The numpy generator behind the global state."""
    return default_generator.numpy


_SEEDS = 2**63 - 1
"""next_seed draws from [0, _SEEDS)."""


def next_seed() -> int:
    """A fresh 63-bit seed for a compiled program's dropout stream: ``integers(0, 2**63 - 1)``
    of the global generator, computed as numpy's Lemire method computes it from one 64-bit draw
    (a recorded loop asks once per iteration; the numpy call costs several times more)."""
    bits = generator().bit_generator
    if not isinstance(bits, np.random.PCG64):  # (a generator whose raw draws are not 64-bit)
        return int(generator().integers(0, _SEEDS))
    while True:
        product = bits.random_raw() * _SEEDS
        if product & 0xFFFFFFFFFFFFFFFF >= 2:  # numpy's threshold, (2**64 - _SEEDS) % _SEEDS
            return product >> 64
