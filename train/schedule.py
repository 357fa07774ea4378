"""Schedules of the rewiring fraction f(t), each a small object with ``__call__`` and ``state_dict``.

- cosine (RigL, Evci et al. 2020; used here for ESL-SNNs, whose paper says the fraction decays):
  f(t) = alpha/2 * (1 + cos(pi * t / T_end)) for t < T_end, else 0.
- constant (SET, Mocanu et al. 2018): f(t) = alpha for t < T_end, else 0.

t counts optimizer steps; at each rewiring every sparse layer prunes and regrows floor(f(t) * nnz_l).

When a rewiring happens (:func:`rewire_timing`): a rewiring falls due at t = T_iter, 2 T_iter, ... while
t < T_end (magnitude pruning: once, at prune_at of the run). A trainer that says where epochs start
has it carried out on the first step of the next epoch, after the validation that ended the previous
one (SET's reference code: evaluate, then rewire), so a kept model never holds connections regrown a
moment ago. That only works when some epoch after the first starts at or after the first due step:
otherwise (a 1-epoch run, or T_iter longer than the run's epochs allow) no rewiring would ever happen,
and the engine rewires mid-epoch, when due (``step`` timing), never at or after T_end, so the last
rewiring leaves (1 - t_end) of the run, a quarter by default, for the regrown weights to learn. Runs
where epoch-boundary rewiring happens keep it unchanged (``epoch`` timing). T_iter is at least
MIN_EVIDENCE_STEPS (:meth:`train.masking.SparsityConfig.effective_t_iter`): regrowth prefers positions
whose gradient was not 0 since the last rewiring, which one batch alone says little about.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

SCHEDULES = ("cosine", "constant")
TIMINGS = ("epoch", "step", "immediate")
MIN_EVIDENCE_STEPS = 2  # step timing: steps of gradient evidence (grad_seen) at least between two rewirings


def rewire_timing(total_steps: int, first_due: int, t_end: int, steps_per_epoch: Optional[int]) -> str:
    """How rewirings are timed (module docstring): ``immediate`` without epoch information (a rewiring
    happens when due, or when the caller's ``epoch_start`` says so); ``epoch`` when deferring a due
    rewiring to the next epoch's first step rewires at all: ``first_due < t_end`` and some epoch after
    the first starts at step ``k * steps_per_epoch + 1 >= first_due`` within the run; ``step`` otherwise
    (rewire mid-epoch, when due)."""
    if not steps_per_epoch:
        return "immediate"
    if total_steps < 1 or steps_per_epoch < 1:
        raise ValueError(f"total_steps and steps_per_epoch must be positive, got {total_steps}, {steps_per_epoch}")
    epochs = -(-total_steps // steps_per_epoch)
    last_start = (epochs - 1) * steps_per_epoch + 1
    if first_due >= t_end or (epochs >= 2 and first_due <= last_start):
        return "epoch"
    return "step"


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
