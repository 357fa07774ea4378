"""Loihi 2 fixed point for a :class:`~export.lava_convert.LavaNet`: scales, 8-bit weights, and an emulator.

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
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Union

import numpy as np
import scipy.sparse as sp

from esl_deploy.errors import EslError

from .lava_convert import LavaLayer, LavaNet, conv_matrix

# --- Loihi 2 fixed-point limits (lava.proc.lif.models.AbstractPyLifModelFixed, PyLifModelBitAcc) ---
DECAY_UNITY = 4096        # du, dv are 12-bit: decay factor (4096 - dv) / 4096; u uses du + 1 (ds_offset)
ACT_SHIFT = 6             # a_in and vth are left-shifted by 6 bits into the 24-bit u, v
UV_LIMIT = 2 ** 23        # u, v are 24-bit signed
VTH_MAX = 2 ** 17 - 1     # vth is 17-bit unsigned
BIAS_MANT_MAX = 4095      # bias_mant is 13-bit signed
BIAS_EXP = 6              # bias = bias_mant << 6: one bias unit = one a_in unit (as lava-dl netx writes it)
WEIGHT_MIXED_MAX = 254    # 8-bit mixed-sign weights: even values in [-256, 254] (Dense truncates the LSB)
WEIGHT_SIGNED_MAX = 255   # one-signed weights: |w| <= 255
VTH_TARGET = 2 ** 14      # largest vth we choose: v then has 8x threshold of headroom in 24 bits
A_IN_MAX = 2 ** 17 - 1    # |a_in| < 2^17 keeps u = a_in << 6 inside 24 bits (no wrap-around)
INPUT_FRAC_BITS_MAX = 8   # graded input x is sent as round(x * 2^m), m <= 8
SPLIT_EXP_MAX = 7         # split weights: hi * 2^k + lo with k <= 7 keeps |lo| <= 128 inside 8 bits


@dataclass(kw_only=True)
class FixedLayer:
    """Loihi 2 fixed-point parameters of one layer (see :func:`quantize`).

    A float current ``I`` is the integer activation ``a_in = I * scale``; the first layer's graded
    input ``x`` is sent as ``round(x * input_scale)``; so ``weight = W * scale / input_scale`` rounded
    to 8 bits (``weight_exp = 0``). ``vth = round(threshold * scale)``, ``dv = round((1 - beta) * 4096)``,
    ``du = 4095`` (with Lava's ``ds_offset = 1`` the current decays fully: ``u = a_in << 6``),
    ``bias_mant = round(bias * scale)`` with ``bias_exp = 6``. ``split_exp = k > 0``: the weights are
    realised as two 8-bit synapse groups, ``weight = hi * 2^k + lo`` (:func:`split_weights`).
    """

    scale: float
    input_scale: float
    weight: Union[sp.csr_matrix, np.ndarray]
    vth: int
    dv: int
    bias_mant: np.ndarray
    du: int = DECAY_UNITY - 1
    bias_exp: int = BIAS_EXP
    split_exp: int = 0
    errors: Dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if not (self.scale > 0 and self.input_scale > 0):
            raise ValueError(f"scale and input_scale must be positive, got {self.scale}, {self.input_scale}")
        if not 0 <= self.vth <= VTH_MAX:
            raise ValueError(f"vth must fit 17 bits, got {self.vth}")
        if not (0 <= self.dv < DECAY_UNITY and 0 <= self.du < DECAY_UNITY):
            raise ValueError(f"du and dv must fit 12 bits, got {self.du}, {self.dv}")
        if not (0 <= self.bias_exp <= 7 and 0 <= self.split_exp <= SPLIT_EXP_MAX):
            raise ValueError(f"bias_exp must lie in 0..7 and split_exp in 0..{SPLIT_EXP_MAX}")
        self.bias_mant = np.asarray(self.bias_mant, dtype=np.int64)
        if np.abs(self.bias_mant).max(initial=0) > BIAS_MANT_MAX + 1:
            raise ValueError("bias_mant must fit 13 bits")


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
    return np.round(x.astype(np.float64) * first.input_scale).astype(np.int32)


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


def quantize_layer(layer: LavaLayer, *, input_max: float = 1.0, input_min: float = 0.0,
                   groups: int = 1, input_frac_bits: Optional[int] = None) -> FixedLayer:
    """Choose the scale of one layer and round its parameters (see :class:`FixedLayer`).

    The scale ``S`` (integer activation per unit of current) is the largest that keeps

    - ``vth = threshold * S <= 2^14`` (24-bit ``v`` keeps 8x threshold of headroom),
    - ``|I| <= (2^17 - 1) / S`` for every current ``I = W x + b`` the inputs can produce (spikes in
      {0, 1}; graded input in [input_min, input_max]): ``u = a_in << 6`` never wraps in 24 bits,
    - ``|b| S <= 4095`` (13-bit ``bias_mant`` with ``bias_exp = 6``; with ``groups == 2``, 8190 and
      ``bias_exp = 7`` where needed),
    - with ``groups == 1``: ``max|W| S / input_scale <= 254`` (8-bit weights).

    ``groups == 2`` splits every weight over two 8-bit synapse groups into the same neurons,
    ``w = hi * 2^k + lo`` (``hi`` with weight exponent ``k <= 7``, ``lo`` with exponent 0), so the
    weights get up to 15 bits and ``S`` only obeys the first three limits; twice the synapses.
    Graded input is sent as ``round(x * 2^m)``: ``m = input_frac_bits`` when given (the fewest bits
    that hold the data exactly is best: every further input bit is a bit less for the weights),
    else ``m <= 8`` the smallest that lets single-group weights use their 8 bits at the largest
    scale. Rounding is sum-preserving per neuron (:func:`quantize_weights`). Errors: relative
    Frobenius weight error, largest weight error relative to ``max|W|``, relative threshold error,
    absolute beta error, largest bias error, weights rounded to zero, scale, input fractional bits,
    synapse groups.
    """
    if groups not in (1, 2):
        raise EslError(f"synapse groups must be 1 or 2, got {groups}")
    syn, neuron = layer.synapse, layer.neuron
    vals = syn.weights_flat()
    vals = vals[vals != 0]
    wmax = float(np.abs(vals).max()) if vals.size else 0.0
    mixed = bool(vals.size and vals.min() < 0 < vals.max())
    grid = WEIGHT_MIXED_MAX if mixed else WEIGHT_SIGNED_MAX
    x_lo, x_hi = (float(input_min), float(input_max)) if syn.graded else (0.0, 1.0)
    if syn.kind == "conv":
        w2 = syn.weight.reshape(syn.weight.shape[0], -1)
        pos, neg = np.clip(w2, 0, None).sum(axis=1), np.clip(w2, None, 0).sum(axis=1)
        bias_c = neuron.bias.reshape(neuron.bias.shape[0], -1)
        b_hi, b_lo = bias_c.max(axis=1), bias_c.min(axis=1)
    else:
        w2 = syn.weight
        pos = np.asarray(w2.maximum(0).sum(axis=1)).ravel()
        neg = np.asarray(w2.minimum(0).sum(axis=1)).ravel()
        b_hi = b_lo = neuron.bias.ravel()
    # extreme currents over inputs x in [x_lo, x_hi]: I = sum_j w_j x_j + b
    i_max = np.maximum(pos * x_hi, pos * x_lo) + np.maximum(neg * x_lo, neg * x_hi) + b_hi
    i_min = np.minimum(pos * x_hi, pos * x_lo) + np.minimum(neg * x_lo, neg * x_hi) + b_lo
    reach = float(max(np.abs(i_max).max(initial=0.0), np.abs(i_min).max(initial=0.0)))
    bmax = float(np.abs(neuron.bias).max(initial=0.0))
    limits = [VTH_TARGET / neuron.threshold if neuron.threshold > 0 else math.inf]
    if reach > 0:
        limits.append(A_IN_MAX / reach)
    if bmax > 0:
        limits.append(BIAS_MANT_MAX * (2 if groups == 2 else 1) / bmax)
    s_budget = min(limits)
    if not math.isfinite(s_budget):
        s_budget = float(VTH_TARGET)
    input_scale = 1.0
    if syn.graded and input_frac_bits is not None:
        if not 0 <= input_frac_bits <= INPUT_FRAC_BITS_MAX:
            raise EslError(f"input_frac_bits must lie in 0..{INPUT_FRAC_BITS_MAX}, got {input_frac_bits}")
        input_scale = float(2 ** int(input_frac_bits))
    elif syn.graded and wmax > 0:
        m = math.ceil(math.log2(max(s_budget * wmax / grid, 1e-300)))
        input_scale = float(2 ** min(max(m, 0), INPUT_FRAC_BITS_MAX))
    top = WEIGHT_MIXED_MAX * 2 ** SPLIT_EXP_MAX if groups == 2 else grid
    scale = min(s_budget, top * input_scale / wmax) if wmax > 0 else s_budget
    if syn.kind == "conv":
        c_out = syn.weight.shape[0]
        rows = np.arange(c_out + 1) * (syn.weight.size // c_out)
        flat = quantize_weights((syn.weight * scale / input_scale).ravel(), mixed, rows=rows, top=top)
        w_int = flat.reshape(syn.weight.shape)
        ref, back = syn.weight, w_int * input_scale / scale
        zeroed = int(np.count_nonzero((w_int == 0) & (syn.weight != 0)))
        peak = int(np.abs(w_int).max(initial=0))
    else:
        data = quantize_weights(syn.weight.data * scale / input_scale, mixed, rows=syn.weight.indptr, top=top)
        w_int = sp.csr_matrix((data.copy(), syn.weight.indices.copy(), syn.weight.indptr.copy()),
                              shape=syn.weight.shape)
        zeroed = int(np.count_nonzero(data == 0))
        w_int.eliminate_zeros()
        ref, back = syn.weight.data, data * input_scale / scale
        peak = int(np.abs(data).max(initial=0))
    # split so that hi = w / 2^k rounded to even stays within the mixed-sign 8-bit range [-254, 254]
    split = math.ceil(math.log2(peak / WEIGHT_MIXED_MAX)) if groups == 2 and peak > WEIGHT_MIXED_MAX else 0
    vth = int(round(neuron.threshold * scale))
    if vth > VTH_MAX:
        raise EslError(f"layer {neuron.name!r}: threshold does not fit Loihi's 17-bit vth")
    dv = int(min(round((1.0 - neuron.beta) * DECAY_UNITY), DECAY_UNITY - 1))
    # bias_exp 6 (netx's fixed choice): one bias unit is one a_in unit; 7 doubles the range (groups == 2)
    bias_exp = BIAS_EXP if bmax * scale <= BIAS_MANT_MAX else BIAS_EXP + 1
    bias_units = scale / 2 ** (bias_exp - BIAS_EXP)
    bias_mant = np.clip(np.round(neuron.bias * bias_units), -BIAS_MANT_MAX - 1, BIAS_MANT_MAX).astype(np.int64)
    norm = float(np.linalg.norm(ref))
    errors = {
        "weight_rel": float(np.linalg.norm(back - ref) / norm) if norm > 0 else 0.0,
        "weight_max_rel": float(np.abs(back - ref).max() / wmax) if wmax > 0 else 0.0,
        "threshold_rel": abs(vth / scale - neuron.threshold) / neuron.threshold if neuron.threshold > 0 else 0.0,
        "beta_abs": abs((1.0 - dv / DECAY_UNITY) - neuron.beta),
        "bias_abs": float(np.abs(bias_mant / bias_units - neuron.bias).max(initial=0.0)),
        "weights_zeroed": float(zeroed),
        "scale": float(scale),
        "input_frac_bits": float(math.log2(input_scale)),
        "synapse_groups": float(2 if split else 1),
    }
    return FixedLayer(scale=float(scale), input_scale=input_scale, weight=w_int, vth=vth, dv=dv,
                      bias_mant=bias_mant.reshape(neuron.shape), bias_exp=bias_exp, split_exp=split, errors=errors)


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


def exact_frac_bits(x: np.ndarray, max_bits: int = INPUT_FRAC_BITS_MAX) -> Optional[int]:
    """The fewest fractional bits ``m <= max_bits`` with every ``x * 2^m`` an integer, or None.

    8x8 digits (pixel / 16) give 4; binary spikes give 0; data that no ``m`` holds exactly give None.
    """
    x = np.asarray(x, dtype=np.float64)
    for m in range(max_bits + 1):
        scaled = x * 2.0 ** m
        if np.array_equal(scaled, np.round(scaled)):
            return m
    return None


def quantize(net: LavaNet, *, input_max: float = 1.0, input_min: float = 0.0, groups: int = 1,
             input_frac_bits: Optional[int] = None) -> LavaNet:
    """A copy of ``net`` with :class:`FixedLayer` parameters on every layer.

    The graded input must lie in ``[input_min, input_max]`` ([0, 1] for images); other inputs are
    refused when the network runs in fixed point. ``groups``: 1 (8-bit weights, what netx holds) or 2 (each
    weight split over two 8-bit synapse groups, see :func:`quantize_layer`).
    """
    if not (input_max > 0 and input_min <= 0):
        raise EslError(f"the input range [{input_min}, {input_max}] must contain 0 and a positive value")
    layers = [replace(layer, fixed=quantize_layer(layer, input_max=input_max, input_min=input_min, groups=groups,
                                                  input_frac_bits=input_frac_bits))
              for layer in net.layers]
    return replace(net, layers=layers, input_max=float(input_max), input_min=float(input_min))


def emulate_fixed(net: LavaNet, x: np.ndarray) -> List[np.ndarray]:
    """Loihi 2 fixed-point dynamics in numpy, the arithmetic of Lava's bit-accurate models, per layer::

        a[t] = W_int x[t]                           (Conv: wrapped to 24 bits)
        u[t] = a[t] << 6                            (du = 4095: the current decays fully)
        v[t] = sign(d) (|d| >> 12) + u[t] + (bias_mant << 6),  d = v[t-1] (4096 - dv);  clipped to 24 bits
        s[t] = v[t] > (vth << 6);   v[t] = 0 where s[t]

    ``x`` is (T, B, *input_shape) floats; returns the spikes of every layer, (T, B, *shape), without
    Lava's one-step synaptic delay. A fast check of the Lava fixed-point run (they must agree exactly).
    """
    if not net.quantized:
        raise EslError("this network has no fixed-point parameters: quantize it first")
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
        bias = f.bias_mant.reshape(-1).astype(np.int64) << f.bias_exp
        vth = np.int64(f.vth) << ACT_SHIFT
        v = np.zeros((B, w.shape[0]), dtype=np.int64)
        spikes = np.zeros((T, B, w.shape[0]), dtype=np.uint8)
        for t in range(T):
            a = (w @ h[t].T).T
            if syn.kind == "conv":
                a = (a + UV_LIMIT) % (2 * UV_LIMIT) - UV_LIMIT
            u = a << ACT_SHIFT
            u = np.where(u > UV_LIMIT, u - 2 * UV_LIMIT, u)
            u = np.where(u <= -UV_LIMIT, u + 2 * UV_LIMIT, u)
            d = v * (DECAY_UNITY - f.dv)
            v = np.sign(d) * (np.abs(d) >> 12) + u + bias
            v = np.clip(v, -UV_LIMIT + 1, UV_LIMIT - 1)
            s = v > vth
            v[s] = 0
            spikes[t] = s
        out.append(spikes.reshape((T, B) + n.shape))
        h = spikes.reshape(T, B, -1).astype(np.int64)
    return out


__all__ = ["A_IN_MAX", "BIAS_EXP", "DECAY_UNITY", "FixedLayer", "VTH_TARGET", "emulate_fixed", "encode_input",
           "exact_frac_bits", "quantize", "quantize_layer", "quantize_weights", "split_weights"]
