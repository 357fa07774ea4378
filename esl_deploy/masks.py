"""Binary connectivity masks: which layers are sparse, how dense each one is, and random masks.

Layer densities follow the Erdős–Rényi rule of SET (Mocanu et al. 2018), used by ESL-SNNs (Shen et al.
2023) for its "Erdős–Rényi random initialization", and its kernel version ERK (Evci et al. 2020, RigL)
for convolutions. For a layer l with n_in inputs, n_out outputs and a k_h x k_w kernel::

    p_l = eps * (n_in + n_out) / (n_in * n_out)                                   (ER, Linear)
    p_l = eps * (n_in + n_out + k_h + k_w) / (n_in * n_out * k_h * k_w)           (ERK, Conv2d)

eps is solved so that the global density sum_l p_l N_l / sum_l N_l equals the target D. A layer whose
p_l would exceed 1 is made dense and eps is solved again over the rest (RigL's redistribution).

Convention (the papers leave it open): every Linear and Conv2d weight is sparse except the first
convolution of a convolutional net, which stays dense (it sees the raw image and holds few weights).
Biases and BatchNorm are never masked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from .models import synapse_layers

DENSITY_MODES = ("erk", "uniform")


@dataclass(frozen=True)
class LayerShape:
    """The weight shape of one sparsifiable layer: (out, in) or (out, in, kh, kw)."""

    name: str
    shape: Tuple[int, ...]

    def __post_init__(self):
        if len(self.shape) not in (2, 4) or any(s <= 0 for s in self.shape):
            raise ValueError(f"layer {self.name}: weight shape must be (out, in) or (out, in, kh, kw), got {self.shape}")

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def er_score(self) -> float:
        """(n_in + n_out [+ k_h + k_w]) / numel: the ER / ERK density per unit eps."""
        return sum(self.shape) / self.numel


def sparsifiable(model: nn.Module) -> List[Tuple[str, nn.Parameter]]:
    """``(name, weight)`` of each layer the sparsity engine masks (see the module docstring)."""
    layers = synapse_layers(model)
    convs = [n for n, m in layers if isinstance(m, nn.Conv2d)]
    skip = {convs[0]} if convs else set()
    return [(f"{n}.weight", m.weight) for n, m in layers if n not in skip]


def weights_of(model: nn.Module, exclude: Sequence[str] = ()) -> List[Tuple[str, nn.Parameter]]:
    """``(name, weight)`` of every Linear and Conv2d layer of any ``nn.Module`` (a user's snnTorch network
    included), except the layers named in ``exclude`` (module names such as ``"0"`` or ``"fc1"``, or
    their weight names ``"fc1.weight"``): the library API's default choice of sparse layers.
    ValueError for a name in ``exclude`` that is no such layer."""
    layers = synapse_layers(model)
    names = {n for n, _ in layers}
    wanted = {e[: -len(".weight")] if e.endswith(".weight") else e for e in exclude}
    unknown = sorted(wanted - names)
    if unknown:
        raise ValueError(f"exclude names {unknown}, which are not Linear/Conv2d layers of the model "
                         f"(those are: {', '.join(sorted(names)) or 'none'})")
    return [(f"{n}.weight", m.weight) for n, m in layers if n not in wanted]


def layer_densities(layers: Sequence[LayerShape], density: float, mode: str = "erk") -> Dict[str, float]:
    """Per-layer densities whose parameter-weighted mean is ``density`` (see the module docstring).

    ``mode="uniform"`` gives every layer ``density``. Densities are capped at 1.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must lie in (0, 1], got {density}")
    if mode not in DENSITY_MODES:
        raise ValueError(f"unknown density mode {mode!r}; choose one of: {', '.join(DENSITY_MODES)}")
    if mode == "uniform" or density == 1.0:
        return {l.name: density for l in layers}
    total = sum(l.numel for l in layers)
    dense: set = set()
    while True:
        budget = density * total - sum(l.numel for l in layers if l.name in dense)
        rest = [l for l in layers if l.name not in dense]
        eps = budget / sum(l.er_score * l.numel for l in rest)
        over = [l.name for l in rest if eps * l.er_score > 1.0]
        if not over:
            break
        dense.update(over)
    return {l.name: (1.0 if l.name in dense else eps * l.er_score) for l in layers}


def random_mask(shape: Sequence[int], density: float, generator: torch.Generator) -> torch.Tensor:
    """A bool mask with exactly ``round(density * numel)`` ones at uniformly random positions
    (:func:`random_mask_within` with every position allowed: the same draws, the same mask)."""
    return random_mask_within(torch.ones(tuple(shape), dtype=torch.bool), density, generator)


def random_mask_within(allowed: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """A bool mask with exactly ``round(density * numel)`` ones at uniformly random ``allowed`` positions.

    The budget is counted over the whole tensor, so a pattern that forbids some positions (core groups,
    inputs that are always 0) concentrates the same number of connections on the allowed ones.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must lie in (0, 1], got {density}")
    k = int(round(density * allowed.numel()))
    idx = torch.nonzero(allowed.reshape(-1), as_tuple=False).reshape(-1)
    if k > idx.numel():
        raise ValueError(f"density {density:g} needs {k} synapses but the pattern allows only {idx.numel()} "
                         f"(max density {idx.numel() / allowed.numel():.4f})")
    mask = torch.zeros(allowed.numel(), dtype=torch.bool)
    mask[idx[torch.randperm(idx.numel(), generator=generator)[:k]]] = True
    return mask.view(allowed.shape)


def nonzero_density(weights: Dict[str, torch.Tensor]) -> Tuple[float, Dict[str, float]]:
    """Global and per-layer density of weights that are not exactly 0: what a chip has to store."""
    nnz = {n: int(torch.count_nonzero(w)) for n, w in weights.items()}
    total = sum(w.numel() for w in weights.values())
    layer = {n: nnz[n] / weights[n].numel() for n in weights}
    return (sum(nnz.values()) / total if total else 1.0), layer

