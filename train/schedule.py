"""Schedules of the rewiring fraction f(t), each a small object with ``__call__`` and ``state_dict``.

- cosine (RigL, Evci et al. 2020; used here for ESL-SNNs, whose paper says the fraction decays):
  f(t) = alpha/2 * (1 + cos(pi * t / T_end)) for t < T_end, else 0.
- constant (SET, Mocanu et al. 2018): f(t) = alpha for t < T_end, else 0.

t counts optimizer steps; at each rewiring every sparse layer prunes and regrows floor(f(t) * nnz_l).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

SCHEDULES = ("cosine", "constant")


@dataclass
class RewireSchedule:
    kind: str = "cosine"
    alpha: float = 0.3
    t_end: int = 1

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; choose one of: {', '.join(SCHEDULES)}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if self.t_end < 0:
            raise ValueError(f"t_end must be >= 0, got {self.t_end}")

    def __call__(self, t: int) -> float:
        if t >= self.t_end:
            return 0.0
        if self.kind == "constant":
            return self.alpha
        return self.alpha / 2.0 * (1.0 + math.cos(math.pi * t / self.t_end))

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in RewireSchedule(**state).state_dict().items():
            setattr(self, key, value)
