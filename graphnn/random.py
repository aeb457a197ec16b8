"""The global random state: parameter initialisation and the seeds of dropout masks."""
from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Make initialisation and dropout reproducible, like ``torch.manual_seed``."""
    global _generator
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator() -> np.random.Generator:
    return _generator


def next_seed() -> int:
    """A fresh 63-bit seed for a compiled program's dropout stream."""
    return int(_generator.integers(0, 2**63 - 1))
