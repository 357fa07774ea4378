"""The PQ index of a weight vector and the prune count it implies (Stage I of Shen et al., ICLR 2025).

PQ index (Diao et al., "Pruning Deep Neural Networks from a Sparsity Perspective", ICLR 2023,
``src/modules/sparsity_index.py``), over the d active (unmasked) weights of one scope, 0 < p < q::

    I_{p,q}(w) = 1 - d^(1/q - 1/p) * ||w||_p / ||w||_q,     ||w||_p = (sum_i |w_i|^p)^(1/p)

I = 0 when all |w_i| are equal; I = 1 - 1/d for a one-hot w (p = 1/2, q = 1). Larger I means the weights
are more compressible.

Retained-parameter bound (Diao et al., ``make_bound_si``; Shen et al. Eq. 3) and prune count (Eq. 4)::

    r = ceil( d * (1 + eta)^(-q/(q-p)) * (1 - I)^(q p / (q - p)) )
    c = floor( d * min(gamma * (1 - r/d), beta) )          (and c >= 0)

Defaults p = 0.5, q = 1, eta = 0.001 (the paper's alpha_r), gamma = 1, beta = 0.9. For Gaussian weights
I ~ 0.152, so about 15.4 % of the active weights are pruned per round.

Scopes: ``neuron`` (one index per output row: a Linear row or a flattened conv filter), ``layer`` (one
per weight tensor) and ``global`` (one over all sparse tensors).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch

SCOPES = ("neuron", "layer", "global")


@dataclass(frozen=True)
class PQConfig:
    """Hyper-parameters of PQ-index rewiring (names as in the papers)."""

    p: float = 0.5
    q: float = 1.0
    eta: float = 0.001
    gamma: float = 1.0
    beta: float = 0.9
    rho: float = 0.25
    scope: str = "layer"

    def __post_init__(self):
        for name in ("p", "q", "eta", "gamma", "beta", "rho"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"PQ {name} must be a finite number, got {getattr(self, name)}")
        if not 0 < self.p < self.q:
            raise ValueError(f"PQ index needs 0 < p < q, got p={self.p}, q={self.q}")
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")
        if not self.gamma > 0:
            raise ValueError(f"gamma must be positive, got {self.gamma}")
        if not 0 <= self.beta <= 1:
            raise ValueError(f"beta must lie in [0, 1], got {self.beta}")
        if not 0 <= self.rho <= 1:
            raise ValueError(f"rho (regrowth per pruned weight) must lie in [0, 1], got {self.rho}")
        if self.scope not in SCOPES:
            raise ValueError(f"unknown PQ scope {self.scope!r}; choose one of: {', '.join(SCOPES)}")

    def to_dict(self) -> dict:
        return asdict(self)


def pq_index(w: torch.Tensor, mask: Optional[torch.Tensor] = None, p: float = 0.5, q: float = 1.0,
             dim: Optional[int] = None) -> torch.Tensor:
    """PQ index of the active entries of ``w`` (all of ``w`` if ``mask`` is None), reduced over ``dim``.

    Returns a 0-d tensor for ``dim=None``, else one value per slice. Empty or all-zero scopes give 0.
    """
    a = w.detach().abs().double()
    m = torch.ones_like(a, dtype=torch.bool) if mask is None else mask.bool()
    a = a * m
    dims = tuple(range(a.dim())) if dim is None else (dim,)
    d = m.double().sum(dim=dims)
    norm_p = (a ** p).sum(dim=dims) ** (1.0 / p)
    norm_q = (a ** q).sum(dim=dims) ** (1.0 / q)
    ok = (d > 0) & (norm_q > 0)
    safe_d = torch.where(ok, d, torch.ones_like(d))
    safe_q = torch.where(ok, norm_q, torch.ones_like(norm_q))
    index = 1.0 - safe_d ** (1.0 / q - 1.0 / p) * norm_p / safe_q
    return torch.where(ok, index, torch.zeros_like(index)).clamp_min(0.0)


def retained_bound(index: torch.Tensor, d: torch.Tensor, p: float, q: float, eta: float) -> torch.Tensor:
    """r = ceil(d (1+eta)^(-q/(q-p)) (1-I)^(qp/(q-p))): the lower bound of weights worth keeping."""
    d = d.double()
    r = d * (1.0 + eta) ** (-q / (q - p)) * (1.0 - index.double()) ** (q * p / (q - p))
    return torch.ceil(r - 1e-9)


def prune_count(index: torch.Tensor, d: torch.Tensor, cfg: PQConfig) -> torch.Tensor:
    """c = floor(d * clamp(gamma (1 - r/d), 0, beta)): how many active weights to prune (LongTensor)."""
    d = d.double()
    r = retained_bound(index, d, cfg.p, cfg.q, cfg.eta)
    ratio = torch.where(d > 0, 1.0 - r / d.clamp_min(1.0), torch.zeros_like(d))
    ratio = (cfg.gamma * ratio).clamp(0.0, cfg.beta)
    return torch.floor(d * ratio + 1e-9).long()
