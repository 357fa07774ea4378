"""Loihi 2 fixed point for a :class:`~export.lava.convert.LavaNet`: scales, 8-bit weights, and an emulator.

Lava's bit-accurate LIF (``lava.proc.lif.models.PyLifModelBitAcc``) computes, with 24-bit ``u``, ``v``::

    u = sign(u (4096 - (du + 1))) (|u (4096 - (du + 1))| >> 12) + (a_in << 6)     wraps at 2^23
    v = sign(v (4096 - dv)) (|v (4096 - dv)| >> 12) + u + (bias_mant << bias_exp)  clipped to 24 bits
    s = v > (vth << 6);  v[s] = 0

and its ``Dense``/``Sparse`` clip mixed-sign weights to [-256, 255], drop their lowest bit (8 bits with
the sign) and shift the sum by ``weight_exp``. :func:`quantize` maps a float layer onto this: one
scale ``S`` per layer (integer activation per unit of current), ``du = 4095`` (no synaptic current
state: ``u = a_in << 6``, snnTorch's Leaky), ``dv = round((1 - beta) 4096)``, ``vth = round(theta S)``,
``bias_mant = round(b S)`` with ``bias_exp = 6`` (lava-dl netx's convention), weights
``round(W S / input_scale)`` on the 8-bit grid, or split over two 8-bit synapse groups for ~15-bit
weights. :func:`emulate_fixed` runs exactly that arithmetic in numpy (tests check Lava against it).

Per-neuron beta or threshold give per-neuron ``dv = round((1 - beta_i) 4096)`` and ``vth = round(theta_i S)``
(one scale per layer, set by the largest threshold); such layers, and those with snnTorch's
``subtract``/``none`` resets or ``reset_delay``, run as :class:`~export.lava.procs.leaky_reset.LeakyReset`,
whose fixed-point step (:func:`export.lava.leaky.fixed_step`) subtracts exactly ``vth << 6`` and decides
a delayed reset from the stored ``v``.

Widths (lava-nc 0.10.0 / lava-dl 0.6.0 as installed; :data:`WIDTHS` holds them, :func:`layer_ranges`
computes every layer's worst case and :func:`check_widths` refuses a layer outside them):

=============  ===========================  ==================================================================
quantity       width, range                 declared in
=============  ===========================  ==================================================================
a_in           16-bit signed,               ``lif/models.py`` ``AbstractPyLifModelFixed.a_in``
               [-32768, 32767]              ``LavaPyType(PyInPort.VEC_DENSE, np.int16, precision=16)``; what
                                            every synapse port sends: ``dense/models.py``
                                            ``AbstractPyDenseModelBitAcc.a_out``/``a_buff`` and
                                            ``sparse/models.py`` ``AbstractPySparseModelBitAcc.a_out``/``a_buff``
                                            (``np.int32, precision=16``, the sum after the ``weight_exp``
                                            shift). ``conv/models.py`` ``PyConvModelFixed.a_out`` is
                                            ``precision=24`` (``signed_clamp(x, bits=24)`` wraps), but it feeds
                                            the same 16-bit ``a_in``. Lava's CPU models do not enforce the 16
                                            bits (numpy int32/int64 throughout), so we do: with two synapse
                                            groups each port (``hi << k`` and ``lo``) and their sum at ``a_in``
                                            stay inside.
u, v           24-bit signed                ``AbstractPyLifModelFixed.u``/``v`` ``np.int32, precision=24``;
                                            ``uv_bitwidth = 24``: ``u`` wraps modulo 2^24, ``v`` is clipped to
                                            +-(2^23 - 1) in ``subthr_dynamics``
du, dv         12-bit unsigned, 0..4095     ``AbstractPyLifModelFixed.du``/``dv`` ``np.uint16, precision=12``
vth            17-bit unsigned, 0..131071   ``PyLifModelBitAcc.vth``/``PyLifResetModelBitAcc.vth``
                                            ``np.int32, precision=17`` (used as ``vth << 6``)
bias_mant      13-bit signed, -4096..4095   ``AbstractPyLifModelFixed.bias_mant`` ``np.int16, precision=13``
bias_exp       3 bits, 0..7                 ``AbstractPyLifModelFixed.bias_exp`` ``precision=3``; netx always 6
weights        8 bits + sign                ``Dense``/``Sparse`` ``weights`` ``precision=8``,
                                            ``utils/weightutils.py`` ``clip_weights(num_bits=8)`` (mixed sign:
                                            [-256, 255], then ``truncate_weights`` drops the LSB, so even
                                            values; one sign: abs(w) <= 255); ``PyConvModelFixed.weight``
                                            ``precision=8`` (not clipped by Lava: we use the Dense grid);
                                            netx: ``netx/utils.py`` ``optimize_weight_bits`` clips mixed-sign
                                            weights to [-256, 254] and keeps 8-bit values exactly
graded input   16-bit signed message        our ``num_message_bits = 16`` (``export.lava.run.INPUT_MESSAGE_BITS``,
                                            netx ``input_message_bits``)
=============  ===========================  ==================================================================

Every width is guaranteed for ALL inputs, not calibrated on data: :func:`quantize_layer` bounds the
synaptic sum of each port by the per-neuron sums of the positive and of the negative integer weights
times the extreme inputs (spikes {0, 1}; graded input in [round(input_min 2^m), round(input_max 2^m)]),
and lowers the scale until that bound is <= 32767. So ``|u| = |a_in| << 6 <= 2^21`` never wraps, and
``v <= (vth << 6) + u + bias < 2^23`` from above (``vth <= 2^14``). Only a strongly inhibited leaky
neuron can drive ``v`` below -2^23 + 1, where Lava clips it as the chip saturates, and
:func:`emulate_fixed` clips identically (``errors["v_saturates"]`` flags layers where this is possible).
With the ``none`` and ``subtract`` resets ``v`` is not held below the threshold, and a neuron driven
harder than it leaks can also reach +2^23 - 1 and saturate there (:func:`layer_ranges`, ``v_ceiling``).
A layer that cannot fit (the scale the widths allow leaves fewer than :data:`VTH_MIN` integer steps
per threshold) raises :class:`~esl_deploy.errors.EslError` naming the layer and the quantity.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Dict, List, Optional

import numpy as np
import scipy.sparse as sp

from esl_deploy.errors import EslError

from esl_deploy.loihi2 import (INPUT_DENOMINATORS, auto_input_scale, exact_frac_bits,  # noqa: F401  (re-exported)
                                exact_input_scale)

from .leaky import fixed_current, fixed_step

from .net import (A_IN_MAX, ACT_SHIFT, BIAS_EXP, BIAS_MANT_MAX, DECAY_UNITY, INPUT_FRAC_BITS_MAX,  # noqa: F401
                  INPUT_INT_MAX, SPLIT_EXP_MAX, UV_LIMIT, VTH_MAX, VTH_MIN, VTH_TARGET, WEIGHT_MIXED_MAX,
                  WEIGHT_SIGNED_MAX, WIDTHS, INPUT, FixedLayer, LavaLayer, LavaNet, conv_matrix)


def encode_input(net: LavaNet, x: np.ndarray, mode: str) -> np.ndarray:
    """Check ``x`` (T, B, *input_shape) and return what the source sends: floats, or in fixed point
    the integers ``round(x * input_scale)``."""
    x = np.asarray(x)
    if x.ndim < 3 or tuple(x.shape[2:]) != net.input_shape:
        raise EslError(f"input of shape {tuple(x.shape)} does not match the network: expected "
                       f"(T, B, {', '.join(map(str, net.input_shape))})")
    if mode == "float":
        return x.astype(np.float64)
    first = net.layers[0].fixed
    hi = net.input_max if net.input_max is not None else 1.0
    lo = net.input_min
    x_min, x_max = float(x.min(initial=0.0)), float(x.max(initial=0.0))
    if x_max > hi * (1 + 1e-9) or x_min < lo - 1e-9 * abs(lo):
        raise EslError(f"input values in [{x_min:g}, {x_max:g}] leave the fixed-point input range "
                       f"[{lo:g}, {hi:g}]; quantize with a wider input range")
    check_net_widths(net)
    return np.round(x.astype(np.float64) * first.input_scale).astype(np.int32)


def _input_ints(x_lo: float, x_hi: float, input_scale: float) -> tuple:
    """The integer input range ``[round(x_lo s), round(x_hi s)]`` (with :func:`encode_input`'s slack)."""
    return (-math.floor(-x_lo * input_scale * (1 + 1e-9) + 0.5), math.floor(x_hi * input_scale * (1 + 1e-9) + 0.5))


def _row_sums(weight) -> tuple:
    """Per output neuron the sum of its positive and the sum of its negative weights (a conv kernel:
    per output channel, which bounds every position of the channel; padding only drops terms)."""
    if sp.issparse(weight):
        w = sp.csr_matrix(weight)
        return np.asarray(w.maximum(0).sum(axis=1)).ravel(), np.asarray(w.minimum(0).sum(axis=1)).ravel()
    w2 = np.asarray(weight).reshape(np.shape(weight)[0], -1)
    return np.clip(w2, 0, None).sum(axis=1), np.clip(w2, None, 0).sum(axis=1)


def _extremes(weight, x_lo, x_hi) -> tuple:
    """Lowest and highest ``sum_j w_j x_j`` of any neuron over all inputs ``x_j`` in ``[x_lo, x_hi]``
    (``x_lo <= 0 <= x_hi``): ``pos x_hi + neg x_lo`` and ``pos x_lo + neg x_hi``."""
    pos, neg = _row_sums(weight)
    top = pos * x_hi + neg * x_lo
    low = pos * x_lo + neg * x_hi
    return low.min(initial=0), top.max(initial=0)


def layer_ranges(layer: LavaLayer, fixed: Optional["FixedLayer"] = None, *, input_max: float = 1.0,
                 input_min: float = 0.0) -> Dict[str, tuple]:
    """Worst case over ALL inputs: ``quantity -> (lowest, highest)`` integer value of every fixed-point
    quantity of ``layer`` (graded input in ``[input_min, input_max]``, spikes in {0, 1}).

    ``a_in`` is the sum at the LIF's input; with split weights also ``a_out hi`` (``(sum hi x) << k``)
    and ``a_out lo``, the two synapse ports, and ``weight hi``/``weight lo``; ``u`` is ``a_in << 6``
    accumulated with ``du``; ``v`` is bounded above by ``(vth << 6) + u + bias`` (v was at most the
    threshold before the step) and below by the leaky steady state of the most negative input, both
    clipped to 24 bits as Lava (and the chip) saturates ``v``; ``v_floor`` is that floor unclipped.
    Per-neuron ``vth``/``dv``: the largest ``vth`` and smallest ``dv`` bound them all.

    Other reset mechanisms (:mod:`export.lava.leaky`; ``I = u + bias`` at most ``I+``, at least ``I-``,
    ``b = 1 - dv/4096``): ``none`` is the leaky integrator, ``v <= I+ / (1 - b)`` (unbounded for
    ``dv = 0``); ``subtract`` keeps ``v <= max(2 vth6 + I+, (I+ - vth6) / (1 - b))`` (below threshold the
    next ``v`` is at most ``b vth6 + I+``, or ``2 vth6`` when a crossing ``P`` is not spiked on; above it
    each step removes ``vth6``) and ``v >= min(floor, I- - vth6)``; ``v_ceiling`` is the upper bound
    unclipped.
    Compare with :data:`WIDTHS` (:func:`check_widths`).
    """
    f = fixed if fixed is not None else layer.fixed
    if f is None:
        raise EslError(f"layer {layer.neuron.name!r} has no fixed-point parameters: quantize it first")
    syn = layer.synapse
    x_lo, x_hi = _input_ints(input_min, input_max, f.input_scale) if syn.graded else (0, 1)
    out: Dict[str, tuple] = {}
    if syn.graded:
        out["input"] = (x_lo, x_hi)
    w = sp.csr_matrix(f.weight, dtype=np.int64) if sp.issparse(f.weight) else np.asarray(f.weight, dtype=np.int64)
    ports = {"a_in": w}
    weights = {"weight": w}
    if f.split_exp and syn.kind != "conv":
        hi, lo = split_weights(w, f.split_exp)
        ports.update({"a_out hi": hi * 2 ** f.split_exp, "a_out lo": lo})
        weights = {"weight hi": hi, "weight lo": lo}
    for name, m in ports.items():
        low, top = _extremes(m, x_lo, x_hi)
        out[name] = (int(low), int(top))
    for name, m in weights.items():
        vals = m.data if sp.issparse(m) else np.asarray(m).ravel()
        out[name] = (int(vals.min(initial=0)), int(vals.max(initial=0)))
    a_lo, a_hi = out["a_in"]
    gain = (DECAY_UNITY / (f.du + 1)) if f.du + 1 < DECAY_UNITY else 1  # u's steady state: a << 6 / (du+1)/4096
    out["u"] = (math.floor(a_lo * 2 ** ACT_SHIFT * gain), math.ceil(a_hi * 2 ** ACT_SHIFT * gain))
    bias = f.bias_mant.astype(np.int64) * 2 ** f.bias_exp
    b_lo, b_hi = int(bias.min(initial=0)), int(bias.max(initial=0))
    vth_lo, vth_hi = int(np.min(f.vth)), int(np.max(f.vth))
    dv_lo, dv_hi = int(np.min(f.dv)), int(np.max(f.dv))
    vth6, step_high = vth_hi << ACT_SHIFT, out["u"][1] + max(b_hi, 0)
    v_top = vth6 + step_high
    step_low = out["u"][0] + min(b_lo, 0)
    v_floor = step_low * DECAY_UNITY / dv_lo if dv_lo > 0 else (-math.inf if step_low < 0 else 0)
    mechanism = layer.neuron.reset_mechanism
    if mechanism == "none":
        v_top = max(step_high, 0) * DECAY_UNITY / dv_lo if dv_lo > 0 else (math.inf if step_high > 0 else 0)
    elif mechanism == "subtract":
        above = step_high - (vth_lo << ACT_SHIFT)
        climb = above * DECAY_UNITY / dv_lo if dv_lo > 0 else (math.inf if above > 0 else 0)
        v_top = max(2 * vth6 + step_high, climb)
        v_floor = min(v_floor, step_low - vth6)
    out["v_floor"] = (v_floor, v_floor)
    out["v_ceiling"] = (v_top, v_top)
    out["v"] = (int(max(v_floor, -UV_LIMIT + 1)), int(min(v_top, UV_LIMIT - 1)))
    out["vth"] = (vth_lo, vth_hi)
    out["du"] = (f.du, f.du)
    out["dv"] = (dv_lo, dv_hi)
    out["bias_mant"] = (int(f.bias_mant.min(initial=0)), int(f.bias_mant.max(initial=0)))
    out["bias_exp"] = (f.bias_exp, f.bias_exp)
    return out


def check_widths(name: str, ranges: Dict[str, tuple]) -> None:
    """Raise :class:`EslError` (one line naming layer ``name`` and the quantity) if any range of
    :func:`layer_ranges` leaves its Loihi 2 width (:data:`WIDTHS`)."""
    for quantity, (low, top) in ranges.items():
        key = "a_in" if quantity.startswith("a_out") else quantity.split()[0]
        if key not in WIDTHS:
            continue
        lo, hi, where = WIDTHS[key]
        if low < lo or top > hi:
            raise EslError(f"layer {name!r}: {quantity} can reach [{low}, {top}], outside Loihi 2's [{lo}, {hi}] "
                           f"({where}); re-quantize it (esl export / simulate choose scales that fit)")


def check_net_widths(net: LavaNet) -> Dict[str, Dict[str, tuple]]:
    """:func:`check_widths` for every layer of a quantised ``net``; returns the ranges per layer."""
    hi = net.input_max if net.input_max is not None else 1.0
    out = {}
    for layer in net.layers:
        ranges = layer_ranges(layer, input_max=hi, input_min=net.input_min)
        check_widths(layer.neuron.name, ranges)
        out[layer.neuron.name] = ranges
    return out


def quantize_weights(values: np.ndarray, mixed: bool, rows: Optional[np.ndarray] = None,
                     top: Optional[int] = None) -> np.ndarray:
    """Round scaled weights to Loihi's 8-bit grid: even integers in [-256, 254] when signs are mixed
    (Lava's Dense/Sparse drop the LSB of mixed-sign weights), else integers with |w| <= 255.
    ``top`` (for split weights, :func:`quantize_layer`) replaces 254/255 as the largest magnitude;
    split weights always use the even grid.

    ``rows`` (group boundaries, like a CSR ``indptr``) turns on sum-preserving rounding: within each
    group (the weights of one neuron) exactly ``k = round(sum(frac))`` values are rounded up, those
    with the largest fractional parts, so the group's rounding errors sum to less than one step and
    the neuron's mean input stays right for non-negative inputs (spikes, images). Every value still
    moves by less than one step; most move by less than half a step, as with nearest rounding.
    """
    if top is not None and top > WEIGHT_SIGNED_MAX:
        mixed = True
    step = 2.0 if mixed else 1.0
    lo, hi = (-256, WEIGHT_MIXED_MAX) if mixed else (-WEIGHT_SIGNED_MAX, WEIGHT_SIGNED_MAX)
    if top is not None and top > WEIGHT_SIGNED_MAX:
        lo, hi = -top, top
    units = np.asarray(values, dtype=np.float64) / step
    if rows is None:
        q = np.round(units)
    else:
        base = np.floor(units)
        frac = units - base
        q = base.copy()
        for a, b in zip(rows[:-1], rows[1:]):
            if b <= a:
                continue
            k = int(round(float(frac[a:b].sum())))
            if k > 0:
                up = a + np.argsort(-frac[a:b], kind="stable")[:k]
                q[up] += 1
    return np.clip(q * step, lo, hi).astype(np.int64)


def _round_layer_weights(syn, scale: float, input_scale: float, mixed: bool, top: int):
    """Integer weights of ``syn`` at ``scale`` (:func:`quantize_weights`, sum-preserving per neuron):
    ``(w_int, float reference, float weights back from w_int, weights rounded to zero, max |w_int|)``."""
    if syn.kind == "conv":
        c_out = syn.weight.shape[0]
        rows = np.arange(c_out + 1) * (syn.weight.size // c_out)
        flat = quantize_weights((syn.weight * scale / input_scale).ravel(), mixed, rows=rows, top=top)
        w_int = flat.reshape(syn.weight.shape)
        zeroed = int(np.count_nonzero((w_int == 0) & (syn.weight != 0)))
        return w_int, syn.weight, w_int * input_scale / scale, zeroed, int(np.abs(w_int).max(initial=0))
    data = quantize_weights(syn.weight.data * scale / input_scale, mixed, rows=syn.weight.indptr, top=top)
    w_int = sp.csr_matrix((data.copy(), syn.weight.indices.copy(), syn.weight.indptr.copy()), shape=syn.weight.shape)
    zeroed = int(np.count_nonzero(data == 0))
    w_int.eliminate_zeros()
    return w_int, syn.weight.data, data * input_scale / scale, zeroed, int(np.abs(data).max(initial=0))


def _port_peak(w_int, split: int, kind: str, x_lo: int, x_hi: int) -> int:
    """Worst-case ``|a|`` over the synapse ports of a layer and their sum (see :func:`layer_ranges`)."""
    ports = [w_int]
    if split and kind != "conv":
        hi, lo = split_weights(w_int, split)
        ports += [hi * 2 ** split, lo]
    return int(max(max(-low, top) for low, top in (_extremes(p, x_lo, x_hi) for p in ports)))


def quantize_layer(layer: LavaLayer, *, input_max: float = 1.0, input_min: float = 0.0,
                   groups: int = 1, input_frac_bits: Optional[int] = None,
                   input_scale: Optional[float] = None, trained_scale: Optional[float] = None) -> FixedLayer:
    """Choose the scale of one layer and round its parameters (see :class:`FixedLayer`).

    The scale ``S`` (integer activation per unit of current) is the largest that keeps, for every
    input the layer can receive (spikes in {0, 1}; graded input in [input_min, input_max]):

    - ``vth = threshold * S <= 2^14`` (24-bit ``v`` keeps 8x threshold of headroom),
    - ``|a_in| <= 32767`` (16-bit ``a_in``): per neuron, the sum of its positive integer weights times
      the largest input plus the sum of its negative ones times the smallest (and vice versa) stays
      inside 16 bits, for each synapse port (with split weights ``hi << k`` and ``lo``) and for their
      sum at the LIF's ``a_in``; the float bound sets a first ``S``, which is then lowered until the
      rounded integer weights satisfy it exactly. So ``u = a_in << 6`` never wraps in 24 bits;
    - ``|b| S <= 4095`` (13-bit ``bias_mant`` with ``bias_exp = 6``; with ``groups == 2``, 8190 and
      ``bias_exp = 7`` where needed),
    - with one group: ``max|W| S / input_scale <= 254`` (8-bit weights).

    ``groups == 2`` splits every weight of a ``Dense``/``Sparse`` layer over two 8-bit synapse groups
    into the same neurons, ``w = hi * 2^k + lo`` (``hi`` with weight exponent ``k <= 7``, ``lo`` with
    exponent 0), so the weights get up to 15 bits and ``S`` only obeys the first three limits; twice
    the synapses. A ``Conv`` layer keeps one 8-bit group: Lava's ``PyConvModelFixed`` has no weight
    exponent and 8-bit weights (``conv="matrix"`` gives convolutions split weights).
    Graded input is sent as ``round(x * 2^m)`` in a 16-bit message: ``m = input_frac_bits`` when given
    (the fewest bits that hold the data exactly is best: every further input bit is a bit less for the
    weights), else ``m <= 8`` the smallest that lets single-group weights use their 8 bits at the
    largest scale (:func:`esl_deploy.loihi2.auto_input_scale`); ``max|x| 2^m <= 32767`` either way.
    ``input_scale`` (instead of ``m``) sends ``round(x s)`` at any scale ``s``: 255 sends 8-bit images' ``k / 255``
    as ``k`` exactly (:func:`esl_deploy.loihi2.exact_input_scale` picks it for such data). Rounding is sum-preserving per neuron
    (:func:`quantize_weights`).

    Lossless first: with one group, a layer whose weights, threshold and biases are already integers at
    some scale inside these limits (trained on :func:`train.quant.loihi_quantize`'s grid) is mapped at
    that scale, with no rounding at all (:func:`_lossless_scale`; ``errors["lossless"] = 1``). ``trained_scale``
    (the scale a ``--weight-bits`` network's integer membrane trained at, NIR metadata ``fixed_point_scale``) is
    taken first where the layer is lossless at it, so Lava truncates the decayed membrane in the units the
    training did (:class:`esl_deploy.neurons.FixedPointLIF`).

    Raises :class:`EslError` (one line: layer, quantity) when the layer cannot fit: the input does not
    fit 16 bits, or the scale the widths allow leaves ``vth < 16`` integer steps (a threshold error of
    up to 3 %, weights below 1/32 of the threshold lost).

    Errors: relative Frobenius weight error, largest weight error relative to ``max|W|``, relative
    threshold error, absolute beta error, largest bias error, weights rounded to zero, scale, input
    fractional bits, synapse groups, ``a_in_bound`` (the worst-case ``|a_in|`` of any port, <= 32767),
    ``v_saturates`` (1 where a leaky neuron's most negative steady state lies below the 24-bit floor,
    or with the ``none``/``subtract`` resets its largest above the 24-bit ceiling, at which Lava and
    :func:`emulate_fixed` clip ``v``). With per-neuron values the threshold and beta errors are the
    largest over the neurons.
    """
    if groups not in (1, 2):
        raise EslError(f"synapse groups must be 1 or 2, got {groups}")
    syn, neuron = layer.synapse, layer.neuron
    name = neuron.name
    if not getattr(neuron, "spiking", True) or np.any(np.isinf(neuron.threshold)):
        raise EslError(f"layer {name!r}: the non-spiking {neuron.node_type} readout has no Loihi 2 fixed-point "
                       f"form (it runs in floating point only)")
    split_ok = groups == 2 and syn.kind != "conv"  # Lava's Conv: no weight exponent, 8-bit weights
    vals = syn.weights_flat()
    vals = vals[vals != 0]
    wmax = float(np.abs(vals).max()) if vals.size else 0.0
    mixed = bool(vals.size and vals.min() < 0 < vals.max())
    grid = WEIGHT_MIXED_MAX if mixed else WEIGHT_SIGNED_MAX
    x_lo, x_hi = (float(input_min), float(input_max)) if syn.graded else (0.0, 1.0)
    # extreme synaptic currents over inputs x in [x_lo, x_hi] (the bias goes into v, not a_in)
    a_lo, a_hi = _extremes(syn.weight, x_lo, x_hi)
    if neuron.current_bias is not None:  # a bias into the current joins a_in every step
        a_lo, a_hi = a_lo + min(0.0, float(neuron.current_bias.min())), a_hi + max(0.0, float(neuron.current_bias.max()))
    reach = float(max(-a_lo, a_hi))
    bmax = float(np.abs(neuron.bias).max(initial=0.0))
    theta = float(np.max(neuron.threshold))  # the largest threshold sets the scale (vth <= 2^14)
    limits = {"vth": VTH_TARGET / theta if theta > 0 else math.inf}
    if reach > 0:
        limits["a_in"] = A_IN_MAX / reach
    du = min(max(int(round(neuron.du * DECAY_UNITY)) - 1, 0), DECAY_UNITY - 1)  # Lava decays u by (du + 1) / 4096
    if du < DECAY_UNITY - 1 and reach > 0:  # a synaptic current (CubaLIF) builds up to a_in << 6 * 4096 / (du + 1)
        limits["u"] = (UV_LIMIT - 1) * (du + 1) / (DECAY_UNITY * 2 ** ACT_SHIFT * reach)
    if bmax > 0:
        limits["bias_mant"] = BIAS_MANT_MAX * (2 if groups == 2 else 1) / bmax
    s_budget = min(limits.values())
    if not math.isfinite(s_budget):
        s_budget = float(VTH_TARGET)
    given, input_scale = input_scale, 1.0
    if syn.graded:
        x_peak = max(x_hi, -x_lo)
        if x_peak > INPUT_INT_MAX:
            raise EslError(f"layer {name!r}: graded input up to {x_peak:g} does not fit Loihi's 16-bit input "
                           f"message (|x| <= {INPUT_INT_MAX})")
        m_max = min(INPUT_FRAC_BITS_MAX, math.floor(math.log2(INPUT_INT_MAX / x_peak))) if x_peak > 0 \
            else INPUT_FRAC_BITS_MAX
        if given is not None:
            if not given > 0 or x_peak * given > INPUT_INT_MAX:
                raise EslError(f"layer {name!r}: input up to {x_peak:g} at input scale {given:g} does not fit "
                               f"Loihi's 16-bit input message (|x s| <= {INPUT_INT_MAX})")
            input_scale = float(given)
        elif input_frac_bits is not None:
            if not 0 <= input_frac_bits <= INPUT_FRAC_BITS_MAX:
                raise EslError(f"input_frac_bits must lie in 0..{INPUT_FRAC_BITS_MAX}, got {input_frac_bits}")
            if input_frac_bits > m_max:
                raise EslError(f"layer {name!r}: input up to {x_peak:g} with {input_frac_bits} fractional bits "
                               f"does not fit Loihi's 16-bit input message (at most {m_max} bits)")
            input_scale = float(2 ** int(input_frac_bits))
        elif wmax > 0:
            input_scale = auto_input_scale(s_budget, wmax, grid, x_peak)
    xi_lo, xi_hi = _input_ints(x_lo, x_hi, input_scale) if syn.graded else (0, 1)
    top = WEIGHT_MIXED_MAX * 2 ** SPLIT_EXP_MAX if split_ok else grid
    exact = None
    if groups == 1 and trained_scale is not None and _lossless_at(syn, neuron, trained_scale, input_scale, xi_lo, xi_hi):
        exact = float(trained_scale)
    elif groups == 1:
        exact = _lossless_scale(syn, neuron, input_scale, xi_lo, xi_hi)
    if exact is not None:  # the layer already lies on a grid one synapse group holds (train.quant): no rounding
        scale, binding = exact, "lossless"
    else:
        scale = min(s_budget, top * input_scale / wmax) if wmax > 0 else s_budget
        binding = min(limits, key=limits.get) if scale >= s_budget else "weight"
    for _ in range(200):
        w_int, ref, back, zeroed, peak = _round_layer_weights(syn, scale, input_scale, mixed, top)
        # split so that hi = w / 2^k rounded to even stays within the mixed-sign 8-bit range [-254, 254]
        split = math.ceil(math.log2(peak / WEIGHT_MIXED_MAX)) if split_ok and peak > WEIGHT_MIXED_MAX else 0
        a_bound = _port_peak(w_int, split, syn.kind, xi_lo, xi_hi)
        if a_bound <= A_IN_MAX:
            break
        scale *= min(A_IN_MAX / a_bound, 1 - 2 ** -10)  # rounding pushed a port past 16 bits: a bit less
        binding = "a_in"
    else:  # pragma: no cover - each pass lowers the scale; 200 passes lower it far below VTH_MIN
        raise EslError(f"layer {name!r}: no scale keeps a_in inside Loihi 2's 16 bits")
    per_neuron = isinstance(neuron.threshold, np.ndarray)
    vth = np.round(neuron.threshold * scale).astype(np.int64) if per_neuron else int(round(neuron.threshold * scale))
    if np.max(vth) > VTH_MAX:
        raise EslError(f"layer {name!r}: threshold does not fit Loihi's 17-bit vth")
    positive = np.asarray(neuron.threshold) > 0
    if np.any(positive) and np.min(np.asarray(vth)[positive]) < VTH_MIN:
        low = float(np.min(np.asarray(neuron.threshold)[positive]))  # the smallest threshold has the fewest steps
        its = "its smallest threshold" if per_neuron else "its threshold"
        why = {"a_in": f"16-bit a_in: its synaptic input can reach {reach / low:.4g} x {its}",
               "bias_mant": f"13-bit bias_mant: its bias reaches {bmax / low:.4g} x {its}",
               "weight": f"8-bit weights: its largest weight is {wmax / low:.4g} x {its}"}
        why["vth"] = f"vth range: its thresholds span {theta / low:.4g} x (the largest gets vth <= {VTH_TARGET})"
        why["u"] = f"24-bit u: its synaptic current builds up to {reach / low / max(neuron.du, 1e-12):.4g} x {its}"
        raise EslError(f"layer {name!r} does not fit Loihi 2's {why.get(binding, why['a_in'])}, which leaves "
                       f"vth = {int(np.min(np.asarray(vth)[positive]))} < {VTH_MIN} integer steps (scale {scale:.4g})")
    if isinstance(neuron.beta, np.ndarray):
        dv = np.minimum(np.round((1.0 - neuron.beta) * DECAY_UNITY), DECAY_UNITY - 1).astype(np.int64)
    else:
        dv = int(min(round((1.0 - neuron.beta) * DECAY_UNITY), DECAY_UNITY - 1))
    # bias_exp 6 (netx's fixed choice): one bias unit is one a_in unit; 7 doubles the range (groups == 2)
    # (the bias limit may bind the scale at exactly 4095 / bmax: compare with a rounding tolerance)
    bias_exp = BIAS_EXP if groups == 1 or bmax * scale <= BIAS_MANT_MAX * (1 + 1e-9) else BIAS_EXP + 1
    bias_units = scale / 2 ** (bias_exp - BIAS_EXP)
    bias_mant = np.clip(np.round(neuron.bias * bias_units), -BIAS_MANT_MAX - 1, BIAS_MANT_MAX).astype(np.int64)
    norm = float(np.linalg.norm(ref))
    v_reset = np.round(np.asarray(neuron.v_reset, dtype=np.float64) * scale).astype(np.int64)
    current_bias = None if neuron.current_bias is None else np.round(neuron.current_bias * scale).astype(np.int64)
    fixed = FixedLayer(scale=float(scale), input_scale=input_scale, weight=w_int, vth=vth, dv=dv, du=du,
                       bias_mant=bias_mant.reshape(neuron.shape), bias_exp=bias_exp, split_exp=split,
                       v_reset=v_reset if v_reset.size > 1 else int(v_reset.ravel()[0]), current_bias=current_bias)
    ranges = layer_ranges(layer, fixed, input_max=x_hi, input_min=x_lo)
    check_widths(name, ranges)  # a guard: the choices above keep every quantity inside
    fixed.errors = {
        "weight_rel": float(np.linalg.norm(back - ref) / norm) if norm > 0 else 0.0,
        "weight_max_rel": float(np.abs(back - ref).max() / wmax) if wmax > 0 else 0.0,
        "threshold_rel": _threshold_rel(vth, scale, neuron.threshold),
        "beta_abs": float(np.max(np.abs((1.0 - np.asarray(dv) / DECAY_UNITY) - neuron.beta))),
        "bias_abs": float(np.abs(bias_mant / bias_units - neuron.bias).max(initial=0.0)),
        "weights_zeroed": float(zeroed),
        "scale": float(scale),
        "input_frac_bits": float(math.log2(input_scale)),
        "input_scale": float(input_scale),
        "synapse_groups": float(2 if split else 1),
        "a_in_bound": float(a_bound),
        "v_saturates": float(ranges["v_floor"][0] < -UV_LIMIT + 1 or ranges["v_ceiling"][0] > UV_LIMIT - 1),
        "lossless": float(binding == "lossless"),
    }
    return fixed


def _threshold_rel(vth, scale: float, threshold) -> float:
    """The largest relative threshold error ``|vth / S - theta| / theta`` over neurons with ``theta > 0``."""
    if not isinstance(threshold, np.ndarray):
        return abs(vth / scale - threshold) / threshold if threshold > 0 else 0.0
    keep = threshold > 0
    return float(np.max(np.abs(vth[keep] / scale - threshold[keep]) / threshold[keep], initial=0.0))


def _lossless_scale(syn, neuron, input_scale: float, xi_lo: int, xi_hi: int) -> Optional[float]:
    """The largest scale ``S`` at which the layer's weights, threshold and biases are all integers already
    (a layer trained on :func:`train.quant.loihi_quantize`'s grid), inside every limit
    :func:`quantize_layer` keeps; None when there is none.

    Candidates: the largest weight is ``n_max`` steps of ``unit = 2 theta / v`` (``v`` an integer,
    ``n_max <= 127``), so ``S = 2 input_scale / unit`` gives even weights ``2 W / unit`` up to 254,
    ``vth = v input_scale`` and ``bias_mant = b S``; each must be an integer to within float32 rounding
    (1e-3 of a step), with ``VTH_MIN <= vth <= VTH_TARGET``, ``|bias_mant| <= 4095`` and the worst-case
    ``|a_in| <= 32767``. Per-neuron thresholds: ``theta`` is the largest, and every ``theta_i S`` must be
    an integer too, at least ``VTH_MIN`` where ``theta_i > 0``.
    """
    thetas = neuron.threshold if isinstance(neuron.threshold, np.ndarray) else None
    theta = float(neuron.threshold) if thetas is None else float(thetas.max())
    signed = np.asarray(syn.weights_flat(), dtype=np.float64)
    nonzero = np.abs(signed[signed != 0])
    if not nonzero.size or not (theta > 0 and math.isfinite(theta)):
        return None
    peak = float(nonzero.max())
    bias = np.asarray(neuron.bias, dtype=np.float64).ravel()
    for n_max in range(WEIGHT_MIXED_MAX // 2, 0, -1):
        v = 2.0 * theta * n_max / peak
        v_int = round(v)
        if v_int < 1 or abs(v - v_int) > 1e-5 * v:
            continue
        unit = 2.0 * theta / v_int
        steps = signed / unit
        n = np.round(steps)
        if np.abs(steps - n).max() > 1e-3:
            continue
        scale = 2.0 * input_scale / unit
        vth = v_int * input_scale
        mant = bias * scale
        if not VTH_MIN <= vth <= VTH_TARGET or np.abs(mant - np.round(mant)).max(initial=0.0) > 1e-3 \
                or np.abs(np.round(mant)).max(initial=0.0) > BIAS_MANT_MAX:
            continue
        if thetas is not None:
            each = thetas * scale
            if np.abs(each - np.round(each)).max() > 1e-3 or np.any((thetas > 0) & (np.round(each) < VTH_MIN)):
                continue
        if syn.kind == "conv":
            w_int = (2 * n).astype(np.int64).reshape(syn.weight.shape)
        else:
            w = syn.weight
            w_int = sp.csr_matrix(((2 * n).astype(np.int64), w.indices, w.indptr), shape=w.shape)
        if _port_peak(w_int, 0, syn.kind, xi_lo, xi_hi) <= A_IN_MAX:
            return scale
    return None


def _lossless_at(syn, neuron, scale: float, input_scale: float, xi_lo: int, xi_hi: int) -> bool:
    """True when every weight ``W S / s_in`` is an even integer (|w| <= 254), ``theta S`` and ``b S`` integers (to
    1e-3 of a step) inside ``VTH_MIN..VTH_TARGET`` and 4095, and the worst-case ``|a_in| <= 32767`` at ``S``."""
    def whole(v):
        return np.abs(v - np.round(v)).max(initial=0.0) <= 1e-3
    w = np.asarray(syn.weights_flat(), dtype=np.float64) * scale / input_scale / 2.0
    thr = np.asarray(neuron.threshold, dtype=np.float64) * scale
    mant = np.asarray(neuron.bias, dtype=np.float64) * scale
    if not (whole(w) and whole(thr) and whole(mant)) or np.abs(np.round(w)).max(initial=0.0) > WEIGHT_MIXED_MAX // 2:
        return False
    if np.round(thr).max() > VTH_TARGET or np.round(thr[thr > 0]).min(initial=VTH_MIN) < VTH_MIN \
            or np.abs(np.round(mant)).max(initial=0.0) > BIAS_MANT_MAX:
        return False
    if syn.kind == "conv":
        w_int = (2 * np.round(np.asarray(syn.weight, dtype=np.float64) * scale / input_scale / 2)).astype(np.int64)
    else:
        sw = syn.weight
        w_int = sp.csr_matrix(((2 * np.round(sw.data * scale / input_scale / 2)).astype(np.int64), sw.indices,
                               sw.indptr), shape=sw.shape)
    return _port_peak(w_int, 0, syn.kind, xi_lo, xi_hi) <= A_IN_MAX


def split_weights(weight, k: int):
    """``(hi, lo)`` with ``weight == hi * 2^k + lo``, both on the 8-bit mixed-sign grid (even values):
    ``hi`` is ``weight / 2^k`` rounded to an even integer, ``lo`` the remainder (``|lo| <= 2^k``)."""
    if sp.issparse(weight):
        hi = weight.copy()
        hi.data = 2 * np.round(weight.data / 2 ** (k + 1)).astype(np.int64)
        lo = weight.copy()
        lo.data = weight.data - hi.data * 2 ** k
        hi.eliminate_zeros()
        lo.eliminate_zeros()
        return hi, lo
    hi = 2 * np.round(np.asarray(weight) / 2 ** (k + 1)).astype(np.int64)
    return hi, np.asarray(weight) - hi * 2 ** k


def quantize(net: LavaNet, *, input_max: float = 1.0, input_min: float = 0.0, groups: int = 1,
             input_frac_bits: Optional[int] = None, input_scale: Optional[float] = None,
             trained_scales: Optional[Dict[str, float]] = None) -> LavaNet:
    """A copy of ``net`` with :class:`FixedLayer` parameters on every layer.

    The graded input must lie in ``[input_min, input_max]`` ([0, 1] for images); other inputs are
    refused when the network runs in fixed point. ``groups``: 1 (8-bit weights, what netx holds) or 2 (each
    weight of a ``Dense``/``Sparse`` layer split over two 8-bit synapse groups; ``Conv`` layers keep 8 bits,
    see :func:`quantize_layer`). Every quantity stays inside Loihi 2's widths for every input in range
    (module docstring); a layer that cannot fit raises :class:`EslError`. Graded input travels as
    ``round(x input_scale)`` (:func:`quantize_layer`; default ``2^input_frac_bits``, or chosen from the weights).
    ``trained_scales``: layer name -> the scale its integer membrane trained at (:func:`trained_scales`).
    """
    if not (input_max > 0 and input_min <= 0):
        raise EslError(f"the input range [{input_min}, {input_max}] must contain 0 and a positive value")
    readers = [(i, net.parts(i)) for i in range(len(net.layers)) if any(p.source == INPUT for p in net.parts(i))]
    if readers and (len(readers) > 1 or readers[0][0] != 0 or len(readers[0][1]) > 1) \
            and input_frac_bits != 0 and input_scale != 1:
        names = [net.layers[i].neuron.name for i, _ in readers]
        raise EslError(f"layers {names} read the input beside other sources (a recurrent, residual or branching "
                       "graph): fixed point then sends the input as whole numbers (spikes, counts; input_frac_bits 0, "
                       "what esl simulate --backend lava-fixed does for spike inputs), not fractions")
    layers = [replace(layer, fixed=quantize_layer(layer, input_max=input_max, input_min=input_min, groups=groups,
                                                  input_frac_bits=input_frac_bits, input_scale=input_scale,
                                                  trained_scale=(trained_scales or {}).get(layer.neuron.name)))
              for layer in net.layers]
    return replace(net, layers=layers, input_max=float(input_max), input_min=float(input_min))


def trained_scales(graph) -> Dict[str, float]:
    """Node name -> ``fixed_point_scale`` of every neuron node of a NIR graph that records one (a ``--weight-bits``
    network's integer membrane, :func:`export.nir.write.lif_node`): what :func:`quantize` takes."""
    return {name: float(node.metadata["fixed_point_scale"]) for name, node in graph.nodes.items()
            if "fixed_point_scale" in (getattr(node, "metadata", None) or {})}


def trained_input_scale(net: LavaNet, scales: Dict[str, float], *, input_max: float = 1.0,
                        input_min: float = 0.0) -> Optional[float]:
    """The input scale a ``--weight-bits`` network was trained at, read off its first layer: the one of ``255``
    (8-bit images sent as their bytes, :data:`esl_deploy.loihi2.INPUT_DENOMINATORS`) and ``2^m`` (``m = 0..8``) at
    which the graded input layer is lossless at its trained scale ``scales[name]`` (:func:`trained_scales`; the
    grid :func:`train.quant.loihi_views` trained it on, ``W S / s_in`` even integers), or None (no graded input
    layer with a trained scale, or no such input scale). What to quantize with when no data say it (``esl export``):
    quantised at another input scale, the first layer is rounded and its membrane truncated in other units."""
    if not net.layers:
        return None
    layer = net.layers[0]
    scale = scales.get(layer.neuron.name)
    if scale is None or not layer.synapse.graded or not np.any(np.asarray(layer.synapse.weights_flat()) != 0):
        return None
    for s_in in [float(d) for d in INPUT_DENOMINATORS] + [2.0 ** m for m in range(INPUT_FRAC_BITS_MAX + 1)]:
        if max(input_max, -input_min) * s_in > INPUT_INT_MAX:
            continue
        xi_lo, xi_hi = _input_ints(input_min, input_max, s_in)
        if _lossless_at(layer.synapse, layer.neuron, scale, s_in, xi_lo, xi_hi):
            return s_in
    return None


def emulate_fixed(net: LavaNet, x: np.ndarray, peaks: Optional[Dict[str, Dict[str, tuple]]] = None) -> List[np.ndarray]:
    """Loihi 2 fixed-point dynamics in numpy, the arithmetic of Lava's bit-accurate models, per layer::

        a[t] = W_int x[t]                           (Conv: wrapped to 24 bits)
        u[t] = a[t] << 6                            (du = 4095: the current decays fully)
        v[t] = sign(d) (|d| >> 12) + u[t] + (bias_mant << 6),  d = v[t-1] (4096 - dv);  clipped to 24 bits
        s[t] = v[t] > (vth << 6);   v[t] = 0 where s[t]

    for layers that reset to zero without delay; the other reset mechanisms (per-neuron ``dv``/``vth``
    allowed) step by :func:`export.lava.leaky.fixed_step`, the function the Lava model
    :class:`~export.lava.procs.leaky_reset.LeakyReset` runs (which reduces to the lines above for zero
    without delay), with :func:`export.lava.leaky.fixed_current` for ``u``.

    ``x`` is (T, B, *input_shape) floats; returns the spikes of every layer, (T, B, *shape), without
    Lava's one-step synaptic delay. A fast check of the Lava fixed-point run (they must agree exactly).
    ``peaks`` (a dict) receives per layer name the observed ``(lowest, highest)`` of ``a_in``, of each
    synapse port with split weights (``a_out hi``, ``a_out lo``), of ``u`` and of ``v`` (before the reset).
    """
    if not net.quantized:
        raise EslError("this network has no fixed-point parameters: quantize it first")
    if not net.is_chain or any(l.fixed.current_bias is not None or np.any(np.asarray(l.fixed.v_reset) != 0)
                               for l in net.layers):
        return _emulate_graph(net, x, peaks)
    h = encode_input(net, x, "fixed").astype(np.int64)
    T, B = h.shape[:2]
    h = h.reshape(T, B, -1)
    out = []
    for layer in net.layers:
        f, n = layer.fixed, layer.neuron
        syn = layer.synapse
        if syn.kind == "conv":
            w = conv_matrix(f.weight, syn.in_shape, syn.stride, syn.padding, syn.dilation, syn.groups)
        else:
            w = f.weight
        w = sp.csr_matrix(w, dtype=np.int64)
        ports = {}
        if peaks is not None and f.split_exp and syn.kind != "conv":
            hi, lo = split_weights(w, f.split_exp)
            ports = {"a_out hi": hi * 2 ** f.split_exp, "a_out lo": lo}
        seen: Dict[str, list] = {}
        bias = f.bias_mant.reshape(-1).astype(np.int64) << f.bias_exp
        vth = np.asarray(f.vth, dtype=np.int64).reshape(-1) << ACT_SHIFT  # one value, or one per neuron
        dv = np.asarray(f.dv, dtype=np.int64).reshape(-1)
        v = np.zeros((B, w.shape[0]), dtype=np.int64)
        u = np.zeros((B, w.shape[0]), dtype=np.int64)
        spikes = np.zeros((T, B, w.shape[0]), dtype=np.uint8)
        for t in range(T):
            a = (w @ h[t].T).T
            if syn.kind == "conv":
                a = (a + UV_LIMIT) % (2 * UV_LIMIT) - UV_LIMIT
            u = fixed_current(u, a, f.du)
            v, p, s = fixed_step(v, u, bias, dv, vth, n.reset_mechanism, n.reset_delay)
            if peaks is not None:
                vals = {"a_in": a, "u": u, "v": p}
                vals.update({k: (p @ h[t].T).T for k, p in ports.items()})
                for k, arr in vals.items():
                    lo_hi = seen.setdefault(k, [0, 0])
                    lo_hi[0], lo_hi[1] = min(lo_hi[0], int(arr.min(initial=0))), max(lo_hi[1], int(arr.max(initial=0)))
            spikes[t] = s
        out.append(spikes.reshape((T, B) + n.shape))
        if peaks is not None:
            peaks[n.name] = {k: tuple(r) for k, r in seen.items()}
        h = spikes.reshape(T, B, -1).astype(np.int64)
    return out


def _emulate_graph(net: LavaNet, x: np.ndarray, peaks: Optional[Dict[str, Dict[str, tuple]]]) -> List[np.ndarray]:
    """:func:`emulate_fixed` for a network whose layers read several sources (:class:`~export.lava.net.Part`),
    step by step: layer ``l`` at step ``t`` reads each part's source at ``t - shift`` (0 before the first step),
    the same integer arithmetic per layer; ``v_reset`` and ``du`` as the Lava models run them."""
    h_in = encode_input(net, x, "fixed").astype(np.int64)
    T, B = h_in.shape[:2]
    h_in = h_in.reshape(T, B, -1)
    state = []
    for layer in net.layers:
        f, n, syn = layer.fixed, layer.neuron, layer.synapse
        w = conv_matrix(f.weight, syn.in_shape, syn.stride, syn.padding, syn.dilation, syn.groups) \
            if syn.kind == "conv" else f.weight
        size = int(np.prod(n.shape))
        state.append(dict(w=sp.csr_matrix(w, dtype=np.int64), bias=f.bias_mant.reshape(-1).astype(np.int64) << f.bias_exp,
                          vth=np.asarray(f.vth, dtype=np.int64).reshape(-1) << ACT_SHIFT,
                          v_reset=np.asarray(f.v_reset, dtype=np.int64).reshape(-1) << ACT_SHIFT,
                          dv=np.asarray(f.dv, dtype=np.int64).reshape(-1), v=np.zeros((B, size), np.int64),
                          u=np.zeros((B, size), np.int64), out=np.zeros((T, B, size), np.uint8), seen={}))
    for t in range(T):
        for l, layer in enumerate(net.layers):
            st, n = state[l], layer.neuron
            cols = []
            for part in net.parts(l):
                src = h_in if part.source == INPUT else state[part.source]["out"]
                cols.append(src[t - part.shift].astype(np.int64) if t >= part.shift else
                            np.zeros((B, part.size), np.int64))
            a = (st["w"] @ np.concatenate(cols, axis=1).T).T
            if layer.synapse.kind == "conv":
                a = (a + UV_LIMIT) % (2 * UV_LIMIT) - UV_LIMIT
            if layer.fixed.current_bias is not None:
                a = a + layer.fixed.current_bias.reshape(-1).astype(np.int64)
            st["u"] = fixed_current(st["u"], a, layer.fixed.du)
            st["v"], p, s = fixed_step(st["v"], st["u"], st["bias"], st["dv"], st["vth"], n.reset_mechanism,
                                       n.reset_delay, st["v_reset"])
            st["out"][t] = s
            if peaks is not None:
                for k, arr in (("a_in", a), ("u", st["u"]), ("v", p)):
                    lo_hi = st["seen"].setdefault(k, [0, 0])
                    lo_hi[0], lo_hi[1] = min(lo_hi[0], int(arr.min(initial=0))), max(lo_hi[1], int(arr.max(initial=0)))
    if peaks is not None:
        for st, layer in zip(state, net.layers):
            peaks[layer.neuron.name] = {k: tuple(r) for k, r in st["seen"].items()}
    return [st["out"].reshape((T, B) + layer.neuron.shape) for st, layer in zip(state, net.layers)]


__all__ = ["A_IN_MAX", "BIAS_EXP", "DECAY_UNITY", "FixedLayer", "VTH_MIN", "VTH_TARGET", "WIDTHS", "check_net_widths",
           "check_widths", "emulate_fixed", "encode_input", "exact_frac_bits", "exact_input_scale", "layer_ranges", "trained_input_scale", "trained_scales", "quantize",
           "quantize_layer", "quantize_weights", "split_weights"]
