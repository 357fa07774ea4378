"""Pure prune and regrow rules on masks. Each works row-wise on a (R, C) view with a per-row count.

A layer-wide rule uses one row (the flattened tensor); the neuron-wise PQ scope uses one row per output
neuron (a Linear row or a flattened conv filter). All functions return new masks and never touch
weights; the :class:`~train.masking.MaskEngine` applies them.

- prune by magnitude: drop the k_r active entries of row r with the smallest |w| (ties: lower index).
- grow by score: activate the k_r inactive entries of row r with the largest score. Entries just pruned
  in the same round are used only when there are not enough other candidates, so a rewiring really
  moves connections (SET / RigL convention). Scores: uniform random (SET, ESL-SNNs), |dL/dw| of the
  dense gradient (RigL), or |momentum| of the dense gradient (sparse momentum; PQ-index method).
  ``allowed`` restricts growth to permitted positions (core-aware training).
"""
from __future__ import annotations

from typing import Optional

import torch


def _rank_ascending(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each entry within its row, 0 = smallest (stable: ties keep index order)."""
    order = torch.sort(scores, dim=1, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    return ranks


def prune_magnitude(weight: torch.Tensor, mask: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Remove the ``k[r]`` smallest-|w| active entries of each row of the (R, C) ``mask``."""
    k = torch.minimum(k.to(mask.device), mask.sum(dim=1))
    mag = weight.detach().abs().float()
    mag = torch.where(torch.isnan(mag), torch.full_like(mag, -float("inf")), mag)  # NaN: no magnitude, pruned first
    scores = torch.where(mask, mag, torch.full_like(mag, float("inf")))
    drop = _rank_ascending(scores) < k[:, None]
    return mask & ~drop


def grow_by_score(mask: torch.Tensor, score: torch.Tensor, k: torch.Tensor,
                  just_pruned: Optional[torch.Tensor] = None, allowed: Optional[torch.Tensor] = None,
                  prefer: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Activate the ``k[r]`` inactive entries with the largest ``score`` in each row of the (R, C) ``mask``.

    ``score`` must be >= 0. Candidates are inactive (and ``allowed``) entries, taken in tiers: ``prefer``
    ones first (positions that can learn: their gradient was not 0 since the last rewiring), within a
    tier fresh ones (not in ``just_pruned``) before just-pruned ones, and by score within that. If a
    row has fewer candidates than ``k[r]``, all of them are grown.
    """
    s = score.detach().float().abs()
    s = s / (1.0 + s)  # monotone map of [0, inf) into [0, 1)
    candidate = ~mask if allowed is None else (~mask & allowed)
    fresh = candidate if just_pruned is None else candidate & ~just_pruned
    key = torch.where(fresh, 1.0 + s, s)
    if prefer is not None:
        key = key + 2.0 * prefer.to(key.dtype)
    key = torch.where(candidate, key, torch.full_like(key, -1.0))
    k = torch.minimum(k.to(mask.device), candidate.sum(dim=1))
    grow = _rank_ascending(-key) < k[:, None]
    return mask | (grow & candidate)


def random_scores(shape, generator: torch.Generator) -> torch.Tensor:
    """Uniform [0, 1) scores for random regrowth, from a seeded CPU generator."""
    return torch.rand(shape, generator=generator)
