"""Quantisation-aware training: synaptic weights on the grid a Loihi 2 synapse holds.

A layer's weights are trained as floats but used, in every forward pass, on a uniform grid of
``2^(bits-1) - 1`` steps per sign (straight-through estimator: the gradient computed with the grid
weights updates the float weights; BinaryConnect, Courbariaux et al. 2015; lava-dl trains this way)::

    delta = max|W| / (2^(bits-1) - 1),      Q(W) = delta * round(W / delta)

With ``bits = 8`` this is exactly the grid :func:`export.lava.fixed.quantize` maps the layer onto for
one 8-bit mixed-sign synapse (netx): ``max|W| -> 254`` in steps of 2, so an exported network is
bit-exact in its weights. The membrane decay is put on Loihi's 12-bit decay grid as well
(:func:`hardware_beta`), and the exporter makes the threshold exact, so what remains between the
exported network and snnTorch is the integer truncation of the decayed membrane. Zeros stay zeros,
so masks are kept.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Optional

import torch
from torch import nn

from esl_deploy.models import synapse_layers


def grid_quantize(w: torch.Tensor, bits: int) -> torch.Tensor:
    """``delta * round(w / delta)`` with ``delta = max|w| / (2^(bits-1) - 1)`` (all-zero ``w``: unchanged)."""
    if bits < 2:
        raise ValueError(f"weight bits must be at least 2, got {bits}")
    top = float(2 ** (bits - 1) - 1)
    peak = w.detach().abs().max()
    if peak == 0:
        return w.clone()
    delta = peak / top
    return torch.round(w / delta) * delta


DECAY_UNITY = 4096  # Loihi 2's 12-bit decay: v <- v (4096 - dv) / 4096 (export.lava.fixed.DECAY_UNITY)


def hardware_beta(beta: float) -> float:
    """``1 - round((1 - beta) 4096) / 4096``: the nearest decay a Loihi 2 neuron realises (0.9 -> 3686/4096)."""
    return 1.0 - round((1.0 - beta) * DECAY_UNITY) / DECAY_UNITY


def synapse_weights(model: nn.Module) -> Iterable[nn.Parameter]:
    """The weight of every Linear and Conv2d layer (the synapses an exporter quantises)."""
    return [m.weight for _, m in synapse_layers(model)]


@contextmanager
def quantized_weights(model: nn.Module, bits: Optional[int]) -> Iterator[None]:
    """Inside the block every synapse weight holds ``grid_quantize(W, bits)``; the float weights come back
    on exit. Gradients computed inside are with respect to the grid weights (straight-through)."""
    if not bits:
        yield
        return
    saved = []
    with torch.no_grad():
        for p in synapse_weights(model):
            saved.append((p, p.detach().clone()))
            p.copy_(grid_quantize(p, bits))
    try:
        yield
    finally:
        with torch.no_grad():
            for p, w in saved:
                p.copy_(w)


def quantized_state(model: nn.Module, bits: Optional[int]) -> dict:
    """``model.state_dict()`` (copied) with the synapse weights on the grid."""
    with quantized_weights(model, bits):
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
