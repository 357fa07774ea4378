"""Losses on the output spike train O (T, B, C) of the last LIF layer.

- ``ce``: cross-entropy on the time-averaged output scaled by T, i.e. on the spike counts,
  L = CE(T * mean_t O[t], y) = CE(sum_t O[t], y). (Unscaled rates span only [0, 1], so the softmax
  saturates near CE = 1.46 for 10 classes and training stalls; counts span [0, T].)
- ``tet``: Temporal Efficient Training (Deng et al., ICLR 2022),
  L = (1 - lambda) * (1/T) sum_t CE(O[t], y) + lambda * MSE(O, phi), with phi = 1 and lambda = 1e-3
  by default (the values of the ESL lineage code).

The prediction is argmax of the spike count, sum_t O[t] (ties go to the lower class index).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ce", "tet")


def ce_count_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.sum(0), y)


def tet_loss(out: torch.Tensor, y: torch.Tensor, lam: float = 1e-3, phi: float = 1.0) -> torch.Tensor:
    T = out.shape[0]
    ce = F.cross_entropy(out.flatten(0, 1), y.repeat(T))
    mse = F.mse_loss(out, torch.full_like(out, phi)) if lam > 0 else out.new_zeros(())
    return (1.0 - lam) * ce + lam * mse


def compute_loss(name: str, out: torch.Tensor, y: torch.Tensor, tet_lambda: float = 1e-3,
                 readout: str = "spikes") -> torch.Tensor:
    if name == "ce":
        return ce_count_loss(out, y)
    if name == "tet":
        return tet_loss(out, y, tet_lambda)
    raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")


def predict(out: torch.Tensor) -> torch.Tensor:
    """Class with the most output spikes."""
    return out.sum(0).argmax(-1)
