"""The neurosynaptic core and chip, and the balanced axon blocks that both the mapper and core-aware
training use (the bottom of ``hw_models``: :mod:`hw_models.truenorth`, :mod:`hw_models.packing` and
:mod:`hw_models.core_aware` import from here, never the other way round).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CoreSpec:
    """One neurosynaptic core and chip (defaults: IBM TrueNorth)."""

    axons: int = 256            # axons per core: Merolla et al. 2014 / Akopyan et al. 2015, 256x256 crossbar
    neurons: int = 256          # neurons per core: Merolla et al. 2014 / Akopyan et al. 2015
    cores_per_chip: int = 4096  # cores per chip (64 x 64): Merolla et al. 2014

    def __post_init__(self):
        for k in ("axons", "neurons", "cores_per_chip"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        # adder and splitter trees merge / fan out at most `axons` / `neurons` per level: with 1 a level
        # makes no progress (the trees would never end), so a core needs at least 2 of each
        for k in ("axons", "neurons"):
            if getattr(self, k) < 2:
                raise ValueError(f"{k} per core must be at least 2 (partial-sum and splitter trees need a fan "
                                 f"of 2 or more), got {getattr(self, k)}")

    @property
    def synapses(self) -> int:
        return self.axons * self.neurons


def ceil_div(a, b):
    """ceil(a / b) for non-negative integers (and integer arrays)."""
    return -(-a // b)


def axon_blocks(in_features: int, axons: int = 256) -> np.ndarray:
    """Boundaries (b + 1,) of b = ceil(in / axons) contiguous axon blocks of balanced size (<= axons).

    Block k is ``[bounds[k], bounds[k+1])``; the first ``in % b`` blocks hold one axon more.
    """
    if in_features < 1 or axons < 1:
        raise ValueError(f"in_features and axons must be positive, got {in_features}, {axons}")
    b = -(-in_features // axons)
    sizes = np.full(b, in_features // b, dtype=np.int64)
    sizes[: in_features % b] += 1
    return np.concatenate([[0], np.cumsum(sizes)])
