"""Losses on the network output O (T, B, C): spikes of the last LIF layer, or the membrane potential
V of the non-spiking leaky-integrator readout (``readout="membrane"``, ``esl_deploy.neurons.LI``).

Spike readout (``readout="spikes"``, O in {0, 1}):

- ``ce``: cross-entropy on the time-averaged output scaled by T, i.e. on the spike counts,
  L = CE(T * mean_t O[t], y) = CE(sum_t O[t], y). (Unscaled rates span only [0, 1], so the softmax
  saturates near CE = 1.46 for 10 classes and training stalls; counts span [0, T].)
- ``tet``: Temporal Efficient Training (Deng et al., ICLR 2022),
  L = (1 - lambda) * (1/T) sum_t CE(O[t], y) + lambda * MSE(O, phi), with phi = 1 and lambda = 1e-3
  by default (the values of the ESL lineage code). On 0/1 spikes each per-step CE is bounded below:
  the best logits are 1 for the class and 0 elsewhere, CE = log(1 + 9/e) = 1.461 for 10 classes.

Membrane readout (``readout="membrane"``, V real-valued, the form TET is defined on):

- ``ce``: cross-entropy of the time-mean membrane, L = CE(mean_t V[t], y).
- ``tet``: L = (1 - lambda) * (1/T) sum_t CE(V[t], y) + lambda * MSE(V, phi) (Deng et al. 2022 on the
  real-valued output, phi = 1, lambda = 1e-3), no lower bound above 0.

The prediction is argmax of the summed output, sum_t O[t] (the spike count, or T times the mean
membrane; ties go to the lower class index).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ce", "tet")
READOUTS = ("spikes", "membrane")


def ce_count_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE of the spike counts sum_t O[t]."""
    return F.cross_entropy(out.sum(0), y)


def ce_mean_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE of the time-mean output mean_t V[t] (the membrane readout's ``ce``)."""
    return F.cross_entropy(out.mean(0), y)


def tet_loss(out: torch.Tensor, y: torch.Tensor, lam: float = 1e-3, phi: float = 1.0) -> torch.Tensor:
    """(1 - lam) (1/T) sum_t CE(out[t], y) + lam MSE(out, phi), on spikes or on membrane potentials."""
    T = out.shape[0]
    ce = F.cross_entropy(out.flatten(0, 1), y.repeat(T))
    mse = F.mse_loss(out, torch.full_like(out, phi)) if lam > 0 else out.new_zeros(())
    return (1.0 - lam) * ce + lam * mse


def compute_loss(name: str, out: torch.Tensor, y: torch.Tensor, tet_lambda: float = 1e-3,
                 readout: str = "spikes") -> torch.Tensor:
    """The loss ``name`` of output ``out`` (T, B, C) for labels ``y`` (B,); see the module docstring."""
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; choose one of: {', '.join(READOUTS)}")
    if name == "ce":
        return ce_mean_loss(out, y) if readout == "membrane" else ce_count_loss(out, y)
    if name == "tet":
        return tet_loss(out, y, tet_lambda)
    raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")


def predict(out: torch.Tensor) -> torch.Tensor:
    """Class with the largest summed output: most spikes, or largest mean membrane potential."""
    return out.sum(0).argmax(-1)
