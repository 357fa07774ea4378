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
  spikes, ``2^m`` for graded input with ``m`` exact fractional bits, 255 for 8-bit images' ``k / 255``,
  :func:`esl_deploy.loihi2.exact_input_scale`) and ``c`` the pooling folded into
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

BatchNorm is folded into the convolution before it *during* training, as PyTorch's fused conv-bn QAT
(``torch.ao.nn.intrinsic.qat.ConvBn2d``) and TensorRT do (Jacob et al., CVPR 2018, section 3.2;
Krishnamoorthi 2018, section 3.2), because the exporter folds it (:func:`export.nir.write.fold_batchnorm`)
and a grid before BatchNorm is off the grid after it. With the running statistics,
``s = gamma / sqrt(running_var + eps)`` per output channel (:func:`fold_batchnorm`)::

    W' = W s,     b' = beta + (b - running_mean) s,     Wq = Q(W'),     bq = Q(b')

(``Q`` the Loihi grid above; straight-through gradients to ``W``, ``gamma`` and ``beta``). The layer then
runs as ``conv(x, Wq) + bq`` and the BatchNorm is not applied on its own. Gamma only scales, so zeros
stay zeros. Two phases (:func:`quantized_weights`, ``bn_frozen``):

- while the statistics are learned (training, not frozen): ``BN(conv(x, Wq) / s)`` with the batch's
  statistics, which also updates the running ones; the weights already sit on the grid of the running
  statistics, the batch normalisation only rescales by ``sigma_running / sigma_batch`` (the "correction
  factor" of Jacob et al.), so early training keeps BatchNorm's normalisation. The running statistics
  are updated with momentum ``max(momentum, 1 / n)`` at the ``n``-th batch (the plain mean of the first
  ``1 / momentum`` batches, then PyTorch's moving average): they are the deployed ones, and a short run
  would otherwise freeze them still leaning towards their initial 0 and 1 (0.9^10 = 35 % after 10 steps);
- evaluation, and training after the freeze (:data:`BN_FREEZE` of the steps, :mod:`train.trainer`):
  ``conv(x, Wq) + bq`` with the running statistics, no update: exactly the network the exporter writes,
  so the steps after the freeze train the deployed network itself.

We use the running statistics (not the batch's) for the grid because only they exist after training:
the exporter folds them, and an evaluated or kept network that used anything else would differ from the
exported one. :func:`quantized_state` stores the folded layer in the same modules: the conv holds ``Wq``
and its BatchNorm is left as the exact identity plus ``bq`` (``gamma = 1``, ``running_mean = 0``,
``running_var = 1 - eps`` with ``eps = 2^-17``, :data:`esl_deploy.models.BN_EPS`: ``var + eps = 1``
exactly, so ``1/sqrt(var + eps) = 1`` in float32 and float64 and the exporter's fold returns ``Wq`` and
``bq`` unchanged; with PyTorch's default ``eps = 1e-5`` it is ``1 + 7e-9`` and a membrane exactly at the
threshold would spike in float64).

A residual block's ``lif2`` sums ``conv2`` (with ``bn2``) and the shortcut: a 1x1 conv with its own
BatchNorm, or the identity (weight 1 from each input channel to the same channel). The exporter writes
that layer with two sources and quantises them with ONE scale (:mod:`export.lava.graph_convert` stacks
both matrices into one synapse; :func:`export.lava.fixed.quantize_layer` picks one scale from all its
weights and the summed bias), so both terms train on one grid (:func:`loihi_quantize_group`): ``v0`` from
the largest weight of either (the identity's 1 included) and from the per-neuron reach of both together,
one bias ``bq = Q(b'_conv2 + b'_shortcut)``, held by ``bn2`` (the shortcut's BatchNorm keeps 0). The
identity's weight 1 lies on the grid when ``1 / delta = v0 / (2 theta)`` is an integer: always for a
threshold that is a power of two (``v0 >= 2 theta``); other thresholds cannot be exact there.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from esl_deploy.loihi2 import (A_IN_MAX, BIAS_MANT_MAX, DECAY_UNITY, VTH_TARGET, WEIGHT_MIXED_MAX,
                               WEIGHT_SIGNED_MAX, auto_input_scale)
from esl_deploy.models import BasicBlock, synapse_layers
from esl_deploy.neurons import LIF

BN_FREEZE = 0.5  # fraction of the training steps after which BatchNorm statistics are frozen under --weight-bits
#                  (our choice; Jacob et al. 2018 and PyTorch's QAT recipe freeze them part-way through training)


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
    ``input_scale``: ``s_in`` (1 for spikes, ``2^m`` for graded input held exactly in ``m`` bits, 255 for 8-bit
    images), or None when no exact scale holds the input (event frames): the exporter then
    chooses ``m`` from the weights, and the grid is one at which its choice fits (:func:`exporter_input_scale`,
    for inputs in ``[x_lo, x_hi]``); ``x_lo``, ``x_hi``: the range of its inputs. ``batchnorm``: the qualified
    name of the BatchNorm after the layer, folded into it (module docstring); ``shortcut``: the (conv,
    BatchNorm) names of a projection shortcut summed into the same neurons, ``identity``: an identity
    shortcut summed into them (a residual block's ``conv2``): all on this layer's one grid. ``lif``: the
    qualified name of the LIF it drives, whose membrane then runs as Loihi 2's integers at the layer's scale
    (:class:`esl_deploy.neurons.FixedPointLIF`, :func:`quantized_weights`).
    """

    threshold: float
    gain: float = 1.0
    input_scale: Optional[float] = 1.0
    x_lo: float = 0.0
    x_hi: float = 1.0
    batchnorm: Optional[str] = None
    shortcut: Optional[Tuple[str, str]] = None
    identity: bool = False
    lif: Optional[str] = None

    def integer_scale(self, v0: int) -> Optional[float]:
        """``S = s_in v0 / (c theta)``: the exporter's integer units of current per unit on the grid ``v0``
        (module docstring), or None when the input scale is the exporter's choice (``input_scale`` None)."""
        return None if self.input_scale is None else self.input_scale * v0 / (self.gain * self.threshold)

    def __post_init__(self):
        if self.shortcut is not None and self.identity:
            raise ValueError("a layer has a projection shortcut or an identity shortcut, not both")
        if (self.shortcut is not None or self.identity) and self.batchnorm is None:
            raise ValueError("a shortcut is summed into a residual block's conv2, which has a BatchNorm")


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
    if bits > 8:  # no single 8-bit synapse group: the exporter cannot be exact anyway
        return v0
    if s is None:  # graded input held exactly by no 2^m (event frames): the exporter picks m itself
        return _steps_for_chosen_input_scale(w, b, view, bits, v0)
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


def _steps_for_chosen_input_scale(w: torch.Tensor, b: Optional[torch.Tensor], view: LoihiView, bits: int,
                                  v0: int) -> int:
    """``v0`` for a layer whose graded input no ``2^m`` holds exactly, where the exporter chooses ``m`` from the
    weights it is given (:func:`exporter_input_scale`): starting from ``v0``, lowered to ``loihi_steps`` at
    the exporter's ``s_in`` for the current grid until that grid fits every limit there (the fixed point of
    ``v0 -> loihi_steps(W, at s_in(Q_v0(W)))``; ``v0`` only falls, so it ends). The input itself is then rounded to ``m`` bits on export:
    the first layer's spikes can differ there, its weights are exact."""
    top = 2 ** (bits - 1) - 1
    theta = float(view.threshold)
    while True:
        delta = 2.0 * theta / v0
        wq = torch.round(w.detach().double() / delta).clamp(-top, top) * delta
        bq = torch.round(2.0 * b.detach().double() / delta) * (delta / 2.0) if b is not None else None
        s = exporter_input_scale(wq, bq, view)
        fits = loihi_steps(w, b, LoihiView(view.threshold, view.gain, s, view.x_lo, view.x_hi), bits)
        if fits >= v0 or v0 == 1:
            return v0
        v0 = fits


def exporter_input_scale(w: torch.Tensor, b: Optional[torch.Tensor], view: LoihiView) -> float:
    """The ``s_in = 2^m`` :func:`export.lava.fixed.quantize_layer` chooses for graded input in ``[x_lo, x_hi]``
    without ``input_frac_bits``, for a layer with weights ``W`` (pooling folded: ``W c``) and biases ``b``::

        S_budget = min(VTH_TARGET / theta, A_IN_MAX / reach, BIAS_MANT_MAX / max|b|)
        m = clip(ceil(log2(S_budget max|W c| / g)), 0, m_max),   g = 254 (mixed signs) or 255

    ``reach`` the largest ``|sum_j W_ij c x_j|`` over inputs in range, ``m_max = min(8, floor(log2(32767 /
    max|x|)))`` (the 16-bit input message): :func:`esl_deploy.loihi2.auto_input_scale`, the exporter's own rule."""
    wc = w.detach().double().reshape(w.shape[0], -1) * float(view.gain)
    vals = wc[wc != 0]
    if not vals.numel():
        return 1.0
    wmax = float(vals.abs().max())
    grid = WEIGHT_MIXED_MAX if float(vals.min()) < 0 < float(vals.max()) else WEIGHT_SIGNED_MAX
    pos, neg = _row_sums(wc)
    top = float((pos * view.x_hi + neg * view.x_lo).max().clamp(min=0))
    low = float((pos * view.x_lo + neg * view.x_hi).min().clamp(max=0))
    limits = [VTH_TARGET / float(view.threshold)]
    if max(-low, top) > 0:
        limits.append(A_IN_MAX / max(-low, top))
    bmax = float(b.detach().abs().max()) if b is not None and b.numel() else 0.0
    if bmax > 0:
        limits.append(BIAS_MANT_MAX / bmax)
    return auto_input_scale(min(limits), wmax, grid, max(view.x_hi, -view.x_lo))


def _pow2_floor(x: float) -> int:
    """The largest power of two ``<= x`` (at least 1)."""
    return 2 ** max(0, math.floor(math.log2(x))) if x >= 1 else 1


def loihi_quantize(w: torch.Tensor, b: Optional[torch.Tensor], view: LoihiView,
                   bits: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(Q(W), Q(b))`` on the grid the exporter realises exactly (module docstring); all-zero ``w``: unchanged."""
    if float(w.detach().abs().max()) == 0:
        return w.clone(), (b.clone() if b is not None else None)
    wq, bq, _ = _grid([w], b, view, bits)
    return wq[0], bq


def loihi_quantize_group(ws: Sequence[torch.Tensor], b: Optional[torch.Tensor], view: LoihiView, bits: int, *,
                         identity: bool = False) -> Tuple[List[torch.Tensor], Optional[torch.Tensor]]:
    """Weights ``ws`` summed into one layer of neurons (each ``(out, ...)``, the same ``out``) and their summed
    bias ``b``, on ONE grid ``delta = 2 theta / v0``, as the exporter quantises a layer with several sources
    with one scale (module docstring)::

        v0 = loihi_steps([W_1 | W_2 | ... | 1 if identity], b),   Q(W_i) = delta clip(round(W_i / delta), +-top)

    ``identity``: an identity shortcut adds each input channel to the same output channel with weight 1,
    which counts in the largest weight and in every neuron's reach. Rounding is a straight-through
    estimator, ``W + (Q(W) - W).detach()``: the values are the grid's, the gradients pass to ``W``.
    All-zero weights: returned unchanged.
    """
    wq, bq, _ = _grid(ws, b, view, bits, identity=identity)
    return wq, bq


def _grid(ws: Sequence[torch.Tensor], b: Optional[torch.Tensor], view: LoihiView, bits: int, *,
          identity: bool = False) -> Tuple[List[torch.Tensor], Optional[torch.Tensor], Optional[int]]:
    """:func:`loihi_quantize_group` and its ``v0`` (None for all-zero weights)."""
    if bits < 2:
        raise ValueError(f"weight bits must be at least 2, got {bits}")
    if not view.threshold > 0:
        raise ValueError(f"the threshold must be positive, got {view.threshold}")
    out = ws[0].shape[0]
    rows = [w.detach().reshape(out, -1) for w in ws]
    if identity:
        rows.append(torch.ones(out, 1, dtype=rows[0].dtype, device=rows[0].device))
    rows = torch.cat(rows, dim=1)
    if float(rows.abs().max()) == 0:
        return list(ws), b, None
    top = 2 ** (bits - 1) - 1
    v0 = loihi_steps(rows, b, view, bits)
    delta = 2.0 * float(view.threshold) / v0
    wq = [_ste(w, torch.round(w.detach() / delta).clamp(-top, top) * delta) for w in ws]
    bq = _ste(b, torch.round(b.detach() * (2.0 / delta)) * (delta / 2.0)) if b is not None else None
    return wq, bq, v0


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``q`` in the forward pass, the identity's gradient to ``x`` in the backward pass (straight-through);
    ``q`` itself where no gradient is recorded."""
    return x + (q - x).detach() if x.requires_grad and torch.is_grad_enabled() else q


def fold_batchnorm(w: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm,
                   b: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(W', b', s)``: ``bn(conv(x, W) + b)`` with BatchNorm's running statistics as one conv ``conv(x, W') + b'``::

        s = gamma / sqrt(running_var + eps),    W' = W s,    b' = beta + (b - running_mean) s

    per output channel (``gamma = 1``, ``beta = 0`` without affine parameters; ``b = 0`` without a conv
    bias); differentiable in ``W``, ``b``, ``gamma`` and ``beta``. :func:`export.nir.write.fold_batchnorm`
    computes the same in float64 on export. Zeros of ``W`` stay zeros.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics (track_running_stats=False) cannot be folded")
    ones = torch.ones_like(bn.running_var)
    gamma = bn.weight if bn.weight is not None else ones
    beta = bn.bias if bn.bias is not None else torch.zeros_like(ones)
    s = gamma / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1,) + (1,) * (w.dim() - 1)
    b0 = b if b is not None else torch.zeros_like(ones)
    return w * s.reshape(shape), beta + (b0 - bn.running_mean) * s, s


def loihi_views(model: nn.Module, *, input_frac_bits: Optional[int] = None, x_lo: float = 0.0,
                x_hi: float = 1.0, graded_input: bool = True,
                input_scale: Optional[float] = None) -> Dict[str, LoihiView]:
    """The :class:`LoihiView` of every synapse layer of a :class:`~esl_deploy.models.SpikingNet` that drives
    LIF neurons (the layers the exporter quantises), by qualified name.

    The first synapse layer reads the input: graded (``graded_input``, direct encoding) with
    ``input_scale`` (:func:`esl_deploy.loihi2.exact_input_scale`: 255 for 8-bit images) or else ``input_frac_bits``
    exact bits (both None: not exact) in ``[x_lo, x_hi]``, else spikes; later ones read
    spikes. Average pools between two neuron layers multiply the gain by ``1/k^2`` (an adaptive one by
    ``1/`` its window, found by running the model once on zeros). A BatchNorm right after a conv is
    folded into it (``batchnorm``). A residual block (:class:`~esl_deploy.models.BasicBlock`) reading spikes
    gives ``<i>.conv1`` (with ``bn1``, into ``lif1``) and ``<i>.conv2`` (with ``bn2`` and the shortcut, into
    ``lif2``). A membrane readout's synapses, a block reading the input itself and layers the exporter
    does not see as one synapse into LIF neurons have no view (the plain grid).
    """
    layers = list(getattr(model, "layers", []))
    pool_gain = _adaptive_pool_gains(model, layers)
    views: Dict[str, LoihiView] = {}
    gain, first = 1.0, True
    pending: Optional[Tuple[str, float, bool, Optional[str]]] = None  # (name, gain, reads the input, its BatchNorm)
    for i, layer in enumerate(layers):
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            pending = (f"layers.{i}", gain, first, None) if pending is None else None  # two synapses in a row: skip
            first = False
        elif (isinstance(layer, nn.BatchNorm2d) and pending is not None and pending[3] is None
              and isinstance(layers[i - 1], nn.Conv2d)):
            pending = pending[:3] + (f"layers.{i}",)
        elif isinstance(layer, nn.AvgPool2d) and layer.divisor_override is None:
            k = layer.kernel_size if isinstance(layer.kernel_size, tuple) else (layer.kernel_size,) * 2
            gain /= k[0] * k[1]
        elif isinstance(layer, nn.AdaptiveAvgPool2d) and i in pool_gain:
            gain *= pool_gain[i]
        elif isinstance(layer, LIF):
            if pending is not None:
                name, g, reads_input, bn = pending
                theta = float(layer.threshold.flatten()[0])
                if reads_input and graded_input:
                    scale = float(input_scale) if input_scale is not None else \
                        None if input_frac_bits is None else float(2 ** int(input_frac_bits))
                    views[name] = LoihiView(theta, g, scale, float(min(x_lo, 0.0)), float(max(x_hi, 1.0)), batchnorm=bn,
                                            lif=f"layers.{i}")
                else:
                    views[name] = LoihiView(theta, g, batchnorm=bn, lif=f"layers.{i}")
            pending, gain, first = None, 1.0, False
        elif isinstance(layer, BasicBlock):
            if not first and pending is None:
                views.update(_block_views(layer, f"layers.{i}"))
            pending, gain, first = None, 1.0, False
        elif not isinstance(layer, (nn.Flatten, nn.Identity, nn.Dropout)):
            pending, gain, first = None, 1.0, False  # anything else (a lone BatchNorm, a readout) ends the chain
    return views


def _block_views(block: BasicBlock, name: str) -> Dict[str, LoihiView]:
    """The views of a residual block reading spikes: ``conv1`` + ``bn1`` into ``lif1``; ``conv2`` + ``bn2`` and
    the shortcut (a 1x1 conv + BatchNorm, or the identity) into ``lif2``. Empty for other shortcuts."""
    subs = list(block.shortcut)
    if subs and not (len(subs) == 2 and isinstance(subs[0], nn.Conv2d) and isinstance(subs[1], nn.BatchNorm2d)):
        return {}
    theta1, theta2 = (float(lif.threshold.flatten()[0]) for lif in (block.lif1, block.lif2))
    return {f"{name}.conv1": LoihiView(theta1, batchnorm=f"{name}.bn1", lif=f"{name}.lif1"),
            f"{name}.conv2": LoihiView(theta2, batchnorm=f"{name}.bn2",
                                       shortcut=(f"{name}.shortcut.0", f"{name}.shortcut.1") if subs else None,
                                       identity=not subs, lif=f"{name}.lif2")}


def _adaptive_pool_gains(model: nn.Module, layers: List[nn.Module]) -> Dict[int, float]:
    """``{index: 1 / window}`` of the top-level ``AdaptiveAvgPool2d`` layers whose output divides their input
    (the exporter writes those as an ``AvgPool2d``), from one run of ``model`` in eval mode on zeros."""
    pools = {i: l for i, l in enumerate(layers) if isinstance(l, nn.AdaptiveAvgPool2d)}
    spec = getattr(model, "spec", None)
    if not pools or spec is None:
        return {}
    seen: Dict[int, Tuple[int, int]] = {}

    def record(i: int):
        def hook(module, inputs) -> None:
            seen.setdefault(i, tuple(inputs[0].shape[-2:]))
        return hook

    hooks = [pool.register_forward_pre_hook(record(i)) for i, pool in pools.items()]
    was_training = model.training
    param = next(model.parameters(), None)
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, *spec.input_shape, device=param.device if param is not None else None))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    gains = {}
    for i, (h, w) in seen.items():
        out = pools[i].output_size if isinstance(pools[i].output_size, (tuple, list)) else (pools[i].output_size,) * 2
        oh, ow = (h if out[0] is None else int(out[0])), (w if out[1] is None else int(out[1]))
        if h % oh == 0 and w % ow == 0:
            gains[i] = 1.0 / ((h // oh) * (w // ow))
    return gains


class _FoldedLayer:
    """One view's BatchNorm-folded synapses during :func:`quantized_weights`: its conv (and a projection
    shortcut's) run with the grid weights, its BatchNorms as the module docstring's two phases say."""

    def __init__(self, model: nn.Module, view: LoihiView, conv_name: str, bits: int, bn_frozen: bool):
        self.view, self.bits, self.bn_frozen, self.conv_name = view, bits, bn_frozen, conv_name
        terms = [(conv_name, view.batchnorm)] + ([view.shortcut] if view.shortcut is not None else [])
        self.terms = [(model.get_submodule(c), model.get_submodule(b)) for c, b in terms]
        self._grid: Optional[Tuple[List[torch.Tensor], torch.Tensor, List[torch.Tensor]]] = None
        self.v0: Optional[int] = None

    def grid(self) -> Tuple[List[torch.Tensor], torch.Tensor, List[torch.Tensor]]:
        """``([Wq_i], bq, [s_i])`` from the current weights and running statistics, computed once per block."""
        if self._grid is None:
            folded = [fold_batchnorm(conv.weight, bn, conv.bias) for conv, bn in self.terms]
            b = sum((f[1] for f in folded[1:]), folded[0][1])  # one bias for the neurons: the terms' sum
            wq, bq, self.v0 = _grid([f[0] for f in folded], b, self.view, self.bits, identity=self.view.identity)
            self._grid = (wq, bq, [f[2] for f in folded])
        return self._grid

    def learning(self, bn: nn.Module) -> bool:
        """True while ``bn`` normalises with the batch's statistics (training, before the freeze)."""
        return bn.training and not self.bn_frozen

    def install(self) -> None:
        for k, (conv, bn) in enumerate(self.terms):
            conv.forward = self._conv_forward(k)
            bn.forward = self._bn_forward(bn)

    def remove(self) -> None:
        for conv, bn in self.terms:
            del conv.forward
            del bn.forward

    def _conv_forward(self, k: int) -> Callable[[torch.Tensor], torch.Tensor]:
        conv, bn = self.terms[k]

        def forward(x: torch.Tensor) -> torch.Tensor:
            wq, bq, s = self.grid()
            y = conv._conv_forward(x, wq[k], None)
            if self.learning(bn):  # BN(conv(x, Wq) / s) with batch statistics (PyTorch's _ConvBnNd)
                return y / torch.where(s[k] == 0, torch.ones_like(s[k]), s[k]).reshape(-1, 1, 1)
            return y + bq.reshape(-1, 1, 1) if k == 0 else y  # the summed bias once, on the first term
        return forward

    def _bn_forward(self, bn: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        plain = type(bn).forward.__get__(bn)

        def forward(x: torch.Tensor) -> torch.Tensor:
            if not self.learning(bn):
                return x
            if bn.momentum is None or bn.num_batches_tracked is None:
                return plain(x)
            momentum = bn.momentum  # bias-corrected: the mean of the first 1 / momentum batches, then the EMA
            bn.momentum = max(momentum, 1.0 / (int(bn.num_batches_tracked) + 1))
            try:
                return plain(x)
            finally:
                bn.momentum = momentum
        return forward

    def state(self) -> Dict[int, torch.Tensor]:
        """The folded layer in its modules' state-dict entries: each conv holds ``Wq``, each BatchNorm the
        exact identity plus the bias (``bq`` on the first, 0 on a shortcut's): ``gamma = 1``,
        ``running_mean = 0``, ``running_var = 1 - eps`` (module docstring)."""
        with torch.no_grad():
            wq, bq, _ = self.grid()
            out: Dict[int, torch.Tensor] = {}  # by id() of the parameter or buffer
            for k, (conv, bn) in enumerate(self.terms):
                out[id(conv.weight)] = wq[k].detach().clone()
                if conv.bias is not None:
                    out[id(conv.bias)] = torch.zeros_like(conv.bias)
                if bn.weight is not None:
                    out[id(bn.weight)] = torch.ones_like(bn.weight)
                shift = bq.detach().clone() if k == 0 else torch.zeros_like(bq)
                if bn.bias is not None:
                    out[id(bn.bias)] = shift
                elif k == 0 and bool((shift != 0).any()):
                    raise ValueError("a BatchNorm without affine parameters cannot hold the folded bias")
                out[id(bn.running_mean)] = torch.zeros_like(bn.running_mean)
                out[id(bn.running_var)] = torch.full_like(bn.running_var, 1.0 - bn.eps)
            return out


def _integer_membranes(model: nn.Module, bits: int, views: Dict[str, LoihiView],
                       v0s: Dict[str, Optional[int]]) -> List[Tuple[LIF, Optional[float]]]:
    """Set every view's LIF to Loihi 2's integer membrane at the layer's scale ``S = s_in v0 / (c theta)``
    (:class:`esl_deploy.neurons.FixedPointLIF`: the exporter truncates the decayed membrane, so the trained
    network does too); returns ``(lif, previous scale)`` to restore. Skipped: more than 8 bits (the exporter is
    not exact there), an input scale of the exporter's choosing, and neurons other than the fused LIF."""
    out = []
    if bits > 8:
        return out
    for name, view in views.items():
        v0 = v0s.get(name)
        scale = None if v0 is None or view.lif is None else view.integer_scale(v0)
        if scale is None:
            continue
        lif = model.get_submodule(view.lif)
        if not isinstance(lif, LIF) or not lif.fused:
            continue
        out.append((lif, lif.fixed_scale))
        lif.set_fixed_scale(scale)
    return out


def _folded_layers(model: nn.Module, bits: int, views: Dict[str, LoihiView], bn_frozen: bool) -> List[_FoldedLayer]:
    return [_FoldedLayer(model, view, name, bits, bn_frozen) for name, view in views.items()
            if view.batchnorm is not None]


@contextmanager
def quantized_weights(model: nn.Module, bits: Optional[int], views: Optional[Dict[str, LoihiView]] = None, *,
                      bn_frozen: bool = False) -> Iterator[None]:
    """Inside the block every synapse weight holds its grid value: :func:`loihi_quantize` (weight and bias)
    for the layers in ``views``, :func:`grid_quantize` for the others; the floats come back on exit.
    Gradients computed inside are with respect to the grid values (straight-through).

    A view with a ``batchnorm`` runs folded (module docstring): its conv (and a projection shortcut's)
    computes with ``Wq`` from the running statistics; in training mode, unless ``bn_frozen``, its BatchNorm
    then normalises ``conv(x, Wq) / s`` with the batch's statistics (and updates the running ones), in
    evaluation mode or when ``bn_frozen`` the BatchNorm is skipped and the conv adds ``bq``. The mode is
    read at each call, so a block may hold an ``evaluate`` that switches the model to eval mode.
    """
    if not bits:
        yield
        return
    views = views or {}
    folds = _folded_layers(model, bits, views, bn_frozen)
    folded = {id(conv) for f in folds for conv, _ in f.terms}
    saved = []
    v0s: Dict[str, Optional[int]] = {}
    with torch.no_grad():
        for name, m in synapse_layers(model):
            if id(m) in folded:
                continue
            view = views.get(name)
            params = [m.weight] + ([m.bias] if view is not None and m.bias is not None else [])
            saved.extend((p, p.detach().clone()) for p in params)
            if view is None:
                m.weight.copy_(grid_quantize(m.weight, bits))
                continue
            if float(m.weight.abs().max()) == 0:
                continue
            wq, bq, v0s[name] = _grid([m.weight], m.bias, view, bits)
            wq = wq[0]
            m.weight.copy_(wq)
            if bq is not None:
                m.bias.copy_(bq)
    for f in folds:
        f.install()
        f.grid()  # the grid of the running statistics now, as the first forward pass would compute it
        v0s[f.conv_name] = f.v0
    lifs = _integer_membranes(model, bits, views, v0s)
    try:
        yield
    finally:
        for lif, scale in lifs:
            lif.set_fixed_scale(scale)
        for f in folds:
            f.remove()
        with torch.no_grad():
            for p, w in saved:
                p.copy_(w)


def quantized_state(model: nn.Module, bits: Optional[int], views: Optional[Dict[str, LoihiView]] = None) -> dict:
    """``model.state_dict()`` (copied) with the synapse weights (and the biases of ``views``' layers) on the grid,
    and every BatchNorm of a view folded into its conv (:meth:`_FoldedLayer.state`): loaded into the same
    architecture, evaluated or exported, it is the network :func:`quantized_weights` evaluates."""
    folds = _folded_layers(model, bits, views or {}, True) if bits else []
    replaced: Dict[int, torch.Tensor] = {}
    for f in folds:
        replaced.update(f.state())
    with quantized_weights(model, bits, views):
        return {k: replaced.get(id(v), v).detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
