"""Core-aware structure learning: keep a layer's sparse connectivity inside core-sized groups.

``esl train --core-aware truenorth`` restricts ESL's and PQ-index's rewiring of every Linear layer to an
``allowed`` pattern from :func:`core_groups`: each output neuron belongs to one *core group*, the group
owns a window of axon blocks, and a neuron may only hold (and regrow) synapses from its group's window.
A mask inside the pattern then maps onto (close to) the lower bound of cores of
:mod:`hw_models.truenorth`, because the mapper's balanced segments are exactly these blocks.

The trainer (``train.masking.MaskEngine``) calls :func:`hw_models.truenorth.core_allowed_mask` once per
sparse weight with its target density (Linear: :func:`core_groups`; a conv kernel: all True, no
constraint), initialises each mask inside its pattern and passes the pattern as ``allowed`` to the
regrowth, so nothing outside it can grow (pruning needs no change: it only removes synapses). The
helpers below do the same for other code: :func:`core_aware_allowed` (every sparsifiable weight of a
model), :func:`random_mask_within`, :func:`restrict_scores` (-inf outside the pattern before a top-k)
and :func:`check_within` (the invariant, for tests).
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional

import numpy as np
import torch
from torch import nn

from esl_deploy.masks import random_mask_within  # noqa: F401  (re-exported: core-aware helpers)

from .cores import CoreSpec, axon_blocks  # noqa: F401  (axon_blocks re-exported)
from .packing import PackLayer, pack_network
from .truenorth import as_csr


def _group_sizes(out_features: int, blocks: int, neurons: int) -> np.ndarray:
    """Output neurons per group: balanced when every group fits one core, else whole cores round-robin."""
    if out_features <= neurons * blocks:
        g = np.full(blocks, out_features // blocks, dtype=np.int64)
        g[: out_features % blocks] += 1
        return g
    chunks = -(-out_features // neurons)
    sizes = np.full(chunks, neurons, dtype=np.int64)
    sizes[-1] = out_features - neurons * (chunks - 1)
    g = np.zeros(blocks, dtype=np.int64)
    np.add.at(g, np.arange(chunks) % blocks, sizes)
    return g


def _window_pattern(out_features: int, bounds: np.ndarray, groups: np.ndarray, c: int) -> np.ndarray:
    """Group k (rows ``starts[k]:starts[k]+groups[k]``) may use blocks k, k+1, ..., k+c-1 (mod b)."""
    b = bounds.size - 1
    starts = np.cumsum(groups) - groups
    allowed = np.zeros((out_features, int(bounds[-1])), dtype=bool)
    for k in range(b):
        if groups[k] == 0:
            continue
        rows = slice(int(starts[k]), int(starts[k] + groups[k]))
        for w in range(c):
            blk = (k + w) % b
            allowed[rows, bounds[blk]:bounds[blk + 1]] = True
    return allowed


def core_groups(out_features: int, in_features: int, *, axons: int = 256, neurons: int = 256,
                density: Optional[float] = None, max_fill: float = 0.9,
                window: Optional[int] = None) -> torch.Tensor:
    """The allowed (out, in) bool pattern of a core-aware Linear layer.

    Construction, with A = ``axons`` and N = ``neurons`` per core:

    1. The inputs are cut into b = ceil(in / A) contiguous balanced blocks (:func:`axon_blocks`), each
       <= A axons: one core's axon set.
    2. The outputs are cut into b contiguous groups (group k starts at block k). If every group fits one
       core (out <= N * b) the groups are balanced (out / b neurons each); otherwise whole cores of N
       neurons are dealt round-robin, so every group is a whole number of full cores but the last.
    3. Group k may use the window of c consecutive blocks k, k+1, ..., k+c-1 (mod b). c is the smallest
       number such that a mask of ``density`` fills at most ``max_fill`` of the pattern (room is left for
       regrowth), and such that every input is in some group's window (c >= ceil(b / #groups)).
       ``window`` asks for a wider window (it is raised to that minimum if smaller, capped at b).

    Why this maps onto ~lower-bound cores: with c = 1 every neuron's inputs lie in one block, so it needs
    no partial sum, and block k's g_k neurons fill ceil(g_k / N) cores that all share that block's axons.
    In total sum_k ceil(g_k / N) = max(b, ceil(out / N)) cores, which is the axon bound (every input
    needs an axon: ceil(in / A) = b) or the neuron bound (ceil(out / N)) of the lower bound, whatever the
    density d <= max_fill / b. A denser layer (d * in > A, more inputs per neuron than one core has
    axons) cannot avoid partial sums; c > 1 then gives each neuron exactly c partial sums, in c
    blocks' cores, plus adders: about c times the neuron bound instead of a partial sum in every block.
    ``density=None`` means c = 1 (apart from the coverage rule). :func:`relaxed_window` finds how much
    wider the window can be made without costing a core.
    """
    if out_features < 1 or in_features < 1:
        raise ValueError(f"layer size must be positive, got ({out_features}, {in_features})")
    if axons < 1 or neurons < 1:
        raise ValueError(f"axons and neurons per core must be positive, got {axons}, {neurons}")
    if density is not None and not 0.0 < density <= 1.0:
        raise ValueError(f"density must lie in (0, 1], got {density}")
    if not 0.0 < max_fill <= 1.0:
        raise ValueError(f"max_fill must lie in (0, 1], got {max_fill}")
    if window is not None and window < 1:
        raise ValueError(f"window must be a positive number of axon blocks, got {window}")
    bounds = axon_blocks(in_features, axons)
    b = bounds.size - 1
    groups = _group_sizes(out_features, b, neurons)
    c = max(1, -(-b // int((groups > 0).sum())))
    allowed = _window_pattern(out_features, bounds, groups, c)
    if density is not None:
        need = int(round(density * out_features * in_features))
        while c < b and need > max_fill * allowed.sum():
            c += 1
            allowed = _window_pattern(out_features, bounds, groups, c)
    if window is not None and window > c:
        c = min(int(window), b)
        allowed = _window_pattern(out_features, bounds, groups, c)
    return torch.from_numpy(allowed)


def window_of(allowed: torch.Tensor, axons: int = 256) -> int:
    """The window c (axon blocks per neuron) of a :func:`core_groups` pattern: max over neurons."""
    bounds = axon_blocks(allowed.shape[1], axons)
    first_cols = torch.as_tensor(bounds[:-1], dtype=torch.long)
    return int(allowed[:, first_cols].sum(1).max())


def relaxed_window(out_features: int, in_features: int, density: float, core: CoreSpec = CoreSpec(), *,
                   max_fill: float = 0.9, seed: int = 0) -> int:
    """The widest window c whose masks pack onto no more cores than the narrowest pattern's.

    A narrow window exists only to save cores. Where it saves none (a small layer such as a 10-neuron
    output layer, whose partial sums all fit in the cores its inputs need anyway) it only takes freedom
    from the rewiring. This picks, by bisection over c in [c_min, b], the largest c for which a random
    mask of ``density`` inside ``core_groups(..., window=c)`` packs (:func:`hw_models.packing.pack_network`,
    the placement ``esl energy`` reports; seeded, so the choice is deterministic) onto at most the cores
    of one inside the c_min pattern. Cores grow with c (more partial sums), which is what the bisection assumes.
    """
    kw = dict(axons=core.axons, neurons=core.neurons, density=density, max_fill=max_fill)
    narrow = core_groups(out_features, in_features, **kw)
    lo, hi = window_of(narrow, core.axons), axon_blocks(in_features, core.axons).size - 1

    def cores(c: int) -> int:
        allowed = core_groups(out_features, in_features, window=c, **kw)
        mask = random_mask_within(allowed, density, torch.Generator().manual_seed(seed))
        layer = PackLayer("layer", as_csr(mask.numpy()), source_on_chip=True)
        return pack_network([layer], core).cores

    target = cores(lo)
    while lo < hi:  # invariant: cores(lo) <= target
        mid = (lo + hi + 1) // 2
        if cores(mid) <= target:
            lo = mid
        else:
            hi = mid - 1
    return lo


def max_density(allowed: torch.Tensor) -> float:
    """The highest density a mask inside ``allowed`` can have: allowed.sum() / allowed.numel()."""
    return float(allowed.sum()) / allowed.numel()


def core_aware_allowed(model: nn.Module, densities: Mapping[str, float], core: CoreSpec = CoreSpec(),
                       *, max_fill: float = 0.9) -> Dict[str, torch.Tensor]:
    """Allowed patterns for every sparsifiable weight of ``model`` (names as in ``esl_deploy.masks.sparsifiable``).

    Linear weights get :func:`core_groups` at their density from ``densities`` (keyed by the same names,
    e.g. ``"layers.0.weight"``); convolution weights get all True: a kernel tap is shared by every output
    position, so a core group cannot be expressed on the kernel.
    """
    from esl_deploy.masks import sparsifiable

    out: Dict[str, torch.Tensor] = {}
    for pname, w in sparsifiable(model):
        if w.dim() == 2 and pname not in densities:
            raise ValueError(f"no density given for {pname}")
        out[pname] = core_allowed_mask(tuple(w.shape), densities.get(pname), core, max_fill=max_fill)
    return out


def restrict_scores(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Regrowth scores with every position outside ``allowed`` set to -inf (never among the top k)."""
    if scores.shape != allowed.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and pattern {tuple(allowed.shape)} differ in shape")
    return scores.masked_fill(~allowed.to(scores.device), -math.inf)


def check_within(mask: torch.Tensor, allowed: torch.Tensor) -> None:
    """Raise ValueError if ``mask`` has a synapse outside ``allowed``."""
    if mask.shape != allowed.shape:
        raise ValueError(f"mask {tuple(mask.shape)} and pattern {tuple(allowed.shape)} differ in shape")
    outside = int((mask.bool() & ~allowed.to(mask.device)).sum())
    if outside:
        raise ValueError(f"{outside} synapses lie outside the core-aware pattern")


def core_allowed_mask(shape: Sequence[int], density: Optional[float] = None, core: CoreSpec = CoreSpec(), *,
                      max_fill: float = 0.9, relax: bool = True) -> torch.Tensor:
    """Core-aware pattern for a weight of ``shape`` (``esl train --core-aware truenorth``).

    A Linear weight (out, in) gets :func:`hw_models.core_aware.core_groups` at ``density`` for this
    core's axons and neurons (see there for how the groups are chosen), with the window widened by
    :func:`hw_models.core_aware.relaxed_window` as far as it costs no core (``relax=False``: the
    narrowest window). Any other shape (a conv kernel, whose taps are shared by every output position)
    gets all True: no constraint.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        window = None
        if relax and density is not None:
            window = relaxed_window(shape[0], shape[1], density, core, max_fill=max_fill)
        return core_groups(shape[0], shape[1], axons=core.axons, neurons=core.neurons, density=density,
                           max_fill=max_fill, window=window)
    return torch.ones(shape, dtype=torch.bool)
