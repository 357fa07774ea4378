"""Quantisation-aware training: synaptic weights (and biases) on the grid a Loihi 2 layer realises.

A layer's weights are trained as floats but used, in every forward pass, on a uniform grid of at
most ``top = 2^(bits-1) - 1`` steps per sign (straight-through estimator: the gradient computed with
the grid weights updates the float weights; BinaryConnect, Courbariaux et al. 2015; lava-dl trains
this way). Two grids:

- :func:`grid_quantize`, the plain grid ``delta = max|W| / top``, ``Q(W) = delta round(W / delta)``
  (layers the exporter has no fixed-point form for: a membrane readout, layers inside residual blocks);
- :func:`loihi_quantize`, the grid :func:`export.lava.fixed.quantize_layer` realises *exactly*. The
  exporter maps current onto integers with one scale ``S`` per layer: ``w_int = W S / s_in`` (8 bits,
  even), ``vth = theta S``, ``bias_mant = b S``, with ``s_in`` the input's integer units per unit (1 for
  spikes, ``2^m`` for graded input with ``m`` exact fractional bits) and ``c`` the pooling folded into
  the synapses (``1/k^2`` per ``k x k`` average pool before the layer). With ::

      delta = 2 theta / v0   (v0 a positive integer),     S = 2 s_in / (c delta) = s_in v0 / (c theta)
      Q(W) = delta clip(round(W / delta), -top, top),      Q(b) = (delta / 2) round(2 b / delta)

  every one of them is an integer: ``w_int = 2 n``, ``vth = s_in v0 / c``, ``bias_mant = s_in k / c``.
  ``v0`` is a power of two: the largest with ``max|W| <= top delta`` (so between ``top / 2`` and ``top``
  steps are used), halved until the exporter's own limits hold at ``S`` (:mod:`esl_deploy.loihi2`):
  ``vth <= VTH_TARGET``, ``|bias_mant| <= 4095`` and, for every input the layer can receive, the
  integer ``|a_in| <= 32767``. A power of two makes ``delta`` (for a threshold of 1, or any power of
  two) exact in float32, so the trained network's synaptic sums are the chip's integers exactly and a
  membrane that lands exactly on the threshold does not spike in either (``v > theta``); with
  ``delta = 2 theta / v0`` for other ``v0`` float32 rounding decides such ties. The exported network
  then differs from the trained one only in Lava's truncation of the decayed membrane
  (``v (4096 - dv) >> 12``) against float32's rounding of ``beta v``.

The membrane decay is put on Loihi's 12-bit decay grid as well (:func:`hardware_beta`). Zeros stay
zeros, so masks are kept.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Tuple

import torch
from torch import nn

from esl_deploy.loihi2 import A_IN_MAX, BIAS_MANT_MAX, DECAY_UNITY, VTH_TARGET
from esl_deploy.models import synapse_layers
from esl_deploy.neurons import LIF


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


def hardware_beta(beta: float) -> float:
    """``1 - round((1 - beta) 4096) / 4096``: the nearest decay a Loihi 2 neuron realises (0.9 -> 3686/4096)."""
    return 1.0 - round((1.0 - beta) * DECAY_UNITY) / DECAY_UNITY


@dataclass(frozen=True)
class LoihiView:
    """How the exporter sees one synapse layer (see the module docstring).

    ``threshold``: of the LIF neurons it drives; ``gain``: ``c``, the pooling folded into its synapses;
    ``input_scale``: ``s_in`` (1 for spikes, ``2^m`` for graded input held exactly in ``m`` bits), or
    None when the input's integer form is not known at training time (then only the threshold and bias
    grid is kept, no width limit); ``x_lo``, ``x_hi``: the range of its inputs.
    """

    threshold: float
    gain: float = 1.0
    input_scale: Optional[float] = 1.0
    x_lo: float = 0.0
    x_hi: float = 1.0


def _row_sums(n: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per output neuron (conv: per output channel) the sums of the positive and of the negative entries."""
    rows = n.reshape(n.shape[0], -1)
    return rows.clamp(min=0).sum(1), rows.clamp(max=0).sum(1)


def _a_in_bound(n: torch.Tensor, view: LoihiView) -> float:
    """The largest integer ``|a_in|`` of the exported layer over all its inputs: ``w_int = 2 n`` on each of the
    ``1 / c`` folded copies, inputs ``round(x s_in)`` in ``[round(x_lo s_in), round(x_hi s_in)]``."""
    s = view.input_scale
    xh, xl = round(view.x_hi * s), round(view.x_lo * s)
    pos, neg = _row_sums(n.double())
    top = torch.maximum(pos * xh + neg * xl, -(pos * xl + neg * xh))
    return float(top.max()) * 2.0 / view.gain


def loihi_steps(w: torch.Tensor, b: Optional[torch.Tensor], view: LoihiView, bits: int) -> int:
    """``v0`` of :func:`loihi_quantize`: the grid ``delta = 2 threshold / v0`` of this layer (module docstring)."""
    top = 2 ** (bits - 1) - 1
    peak = float(w.detach().abs().max())
    theta = float(view.threshold)
    v0 = _pow2_floor(2.0 * theta * top / peak)
    s, c = view.input_scale, float(view.gain)
    if s is None or bits > 8:  # no single 8-bit synapse group: the exporter cannot be exact anyway
        return v0
    caps = [VTH_TARGET * c / s]  # vth = s v0 / c
    bmax = float(b.detach().abs().max()) if b is not None and b.numel() else 0.0
    if bmax > 0:
        caps.append(BIAS_MANT_MAX * c * theta / (s * bmax))  # |bias_mant| = |b| S
    pos, neg = _row_sums(w.detach().double())
    reach = float(torch.maximum(pos * view.x_hi + neg * view.x_lo, -(pos * view.x_lo + neg * view.x_hi)).max())
    if reach > 0:
        caps.append(A_IN_MAX * c * theta / (s * reach))  # |a_in| ~ S reach before rounding
    v0 = min(v0, _pow2_floor(min(caps)))
    while v0 > 1:  # the rounded integers decide: lower v0 until a_in and bias_mant fit exactly
        delta = 2.0 * theta / v0
        n = torch.round(w.detach().double() / delta).clamp(-top, top)
        kb = float(torch.round(2.0 * b.detach().double() / delta).abs().max()) if bmax > 0 else 0.0
        if _a_in_bound(n, view) <= A_IN_MAX and kb * s / c <= BIAS_MANT_MAX:
            break
        v0 //= 2
    return v0


def _pow2_floor(x: float) -> int:
    """The largest power of two ``<= x`` (at least 1)."""
    return 2 ** max(0, math.floor(math.log2(x))) if x >= 1 else 1


def loihi_quantize(w: torch.Tensor, b: Optional[torch.Tensor], view: LoihiView,
                   bits: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(Q(W), Q(b))`` on the grid the exporter realises exactly (module docstring); all-zero ``w``: unchanged."""
    if bits < 2:
        raise ValueError(f"weight bits must be at least 2, got {bits}")
    if not view.threshold > 0:
        raise ValueError(f"the threshold must be positive, got {view.threshold}")
    if float(w.detach().abs().max()) == 0:
        return w.clone(), (b.clone() if b is not None else None)
    top = 2 ** (bits - 1) - 1
    delta = 2.0 * float(view.threshold) / loihi_steps(w, b, view, bits)
    wq = torch.round(w / delta).clamp(-top, top) * delta
    bq = torch.round(b * (2.0 / delta)) * (delta / 2.0) if b is not None else None
    return wq, bq


def loihi_views(model: nn.Module, *, input_frac_bits: Optional[int], x_lo: float = 0.0,
                x_hi: float = 1.0, graded_input: bool = True) -> Dict[str, LoihiView]:
    """The :class:`LoihiView` of every top-level synapse layer of a :class:`~esl_deploy.models.SpikingNet`
    that drives LIF neurons (the layers the exporter quantises), by qualified name.

    The first synapse layer reads the input: graded (``graded_input``, direct encoding) with
    ``input_frac_bits`` exact bits (None: not exact) in ``[x_lo, x_hi]``, else spikes; later ones read
    spikes. Average pools between two neuron layers multiply the gain by ``1/k^2``. Layers inside
    multi-step blocks and a membrane readout's synapses have no view (the plain grid).
    """
    layers = list(getattr(model, "layers", []))
    views: Dict[str, LoihiView] = {}
    gain, first = 1.0, True
    pending: Optional[Tuple[str, float, bool]] = None  # (name, gain, reads the input)
    for i, layer in enumerate(layers):
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            pending = (f"layers.{i}", gain, first) if pending is None else None  # two synapses in a row: skip
            first = False
        elif isinstance(layer, nn.AvgPool2d) and layer.divisor_override is None:
            k = layer.kernel_size if isinstance(layer.kernel_size, tuple) else (layer.kernel_size,) * 2
            gain /= k[0] * k[1]
        elif isinstance(layer, LIF):
            if pending is not None:
                name, g, reads_input = pending
                theta = float(layer.threshold.flatten()[0])
                if reads_input and graded_input:
                    scale = None if input_frac_bits is None else float(2 ** int(input_frac_bits))
                    views[name] = LoihiView(theta, g, scale, float(min(x_lo, 0.0)), float(max(x_hi, 1.0)))
                else:
                    views[name] = LoihiView(theta, g)
            pending, gain, first = None, 1.0, False
        elif not isinstance(layer, (nn.Flatten, nn.Identity, nn.Dropout)):
            pending, gain, first = None, 1.0, False  # anything else (a block, BatchNorm, a readout) ends the chain
    return views


@contextmanager
def quantized_weights(model: nn.Module, bits: Optional[int],
                      views: Optional[Dict[str, LoihiView]] = None) -> Iterator[None]:
    """Inside the block every synapse weight holds its grid value: :func:`loihi_quantize` (weight and bias)
    for the layers in ``views``, :func:`grid_quantize` for the others; the floats come back on exit.
    Gradients computed inside are with respect to the grid values (straight-through)."""
    if not bits:
        yield
        return
    views = views or {}
    saved = []
    with torch.no_grad():
        for name, m in synapse_layers(model):
            view = views.get(name)
            params = [m.weight] + ([m.bias] if view is not None and m.bias is not None else [])
            saved.extend((p, p.detach().clone()) for p in params)
            if view is None:
                m.weight.copy_(grid_quantize(m.weight, bits))
                continue
            wq, bq = loihi_quantize(m.weight, m.bias, view, bits)
            m.weight.copy_(wq)
            if bq is not None:
                m.bias.copy_(bq)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, w in saved:
                p.copy_(w)


def quantized_state(model: nn.Module, bits: Optional[int], views: Optional[Dict[str, LoihiView]] = None) -> dict:
    """``model.state_dict()`` (copied) with the synapse weights (and the biases of ``views``' layers) on the grid."""
    with quantized_weights(model, bits, views):
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
