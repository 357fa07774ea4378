"""Loihi 2 fixed-point limits (lava-nc 0.10.0 ``lava.proc.lif.models.AbstractPyLifModelFixed``,
``PyLifModelBitAcc``, ``Dense``/``Sparse`` bit-accurate models; lava-dl 0.6.0 netx).

Shared by the exporter (:mod:`export.lava.fixed`, which maps a float network onto them) and the
trainer (:mod:`train.quant`, whose quantisation-aware grid is the one the exporter realises exactly).
Where each width is declared in Lava is tabulated in :mod:`export.lava.fixed`.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

DECAY_UNITY = 4096        # du, dv are 12-bit: decay factor (4096 - dv) / 4096; u uses du + 1 (ds_offset)
ACT_SHIFT = 6             # a_in and vth are left-shifted by 6 bits into the 24-bit u, v
UV_LIMIT = 2 ** 23        # u, v are 24-bit signed
VTH_MAX = 2 ** 17 - 1     # vth is 17-bit unsigned
BIAS_MANT_MAX = 4095      # bias_mant is 13-bit signed
BIAS_EXP = 6              # bias = bias_mant << 6: one bias unit = one a_in unit (as lava-dl netx writes it)
WEIGHT_MIXED_MAX = 254    # 8-bit mixed-sign weights: even values in [-256, 254] (Dense truncates the LSB)
WEIGHT_SIGNED_MAX = 255   # one-signed weights: |w| <= 255
VTH_TARGET = 2 ** 14      # largest vth we choose: v then has 8x threshold of headroom in 24 bits
A_IN_MAX = 2 ** 15 - 1    # a_in and every synapse port's a_out are 16-bit signed: |a| <= 32767
INPUT_INT_MAX = 2 ** 15 - 1  # graded input round(x * 2^m) travels in a 16-bit message
INPUT_FRAC_BITS_MAX = 8   # graded input x is sent as round(x * 2^m), m <= 8
SPLIT_EXP_MAX = 7         # split weights: hi * 2^k + lo with k <= 7 keeps |lo| <= 128 inside 8 bits
VTH_MIN = 16              # fewer integer steps per threshold than this: the layer does not fit (EslError)
INPUT_DENOMINATORS = (255,)  # graded input k / d sent as the integer k: 8-bit images (MNIST, CIFAR-10; torchvision's
#                              ToTensor divides by 255); tried after the powers of two


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


def exact_input_scale(x: np.ndarray, max_bits: int = INPUT_FRAC_BITS_MAX) -> Optional[float]:
    """The input scale ``s`` at which graded input ``x`` is sent exactly as the integers ``x s``, or None.

    ``s = 2^m`` with the fewest ``m <= max_bits`` (:func:`exact_frac_bits`; digits' ``k / 16``: 16, spikes: 1),
    else a denominator of :data:`INPUT_DENOMINATORS` (``k / 255`` of 8-bit images: 255, so MNIST's pixels
    travel as their byte ``k``) when every ``x d`` is an integer to within float32's rounding of ``k / d``
    (``|x d - k| <= 1e-4``; the sender rounds ``x s`` to ``k``).
    """
    m = exact_frac_bits(x, max_bits)
    if m is not None:
        return float(2 ** m)
    x = np.asarray(x, dtype=np.float64)
    for d in INPUT_DENOMINATORS:
        scaled = x * d
        if np.abs(scaled - np.round(scaled)).max(initial=0.0) <= 1e-4:
            return float(d)
    return None


def join_input_scales(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """The input scale exact for two parts of one data set with exact scales ``a`` and ``b`` (see
    :func:`exact_input_scale`): their least common multiple where that is an allowed scale, else None."""
    if a is None or b is None:
        return None
    lcm = float(math.lcm(int(a), int(b)))
    allowed = [2.0 ** m for m in range(INPUT_FRAC_BITS_MAX + 1)] + [float(d) for d in INPUT_DENOMINATORS]
    return lcm if lcm in allowed else None


def auto_input_scale(s_budget: float, w_max: float, grid: int, x_peak: float) -> float:
    """The input scale ``2^m`` the exporter chooses for graded input that no exact scale holds, from the layer's
    scale budget ``S_budget`` (the limits of vth, a_in and bias_mant), its largest weight ``max|W|`` and weight
    grid ``g`` (254 mixed signs, 255 one sign)::

        m = clip(ceil(log2(S_budget max|W| / g)), 0, m_max),   m_max = min(8, floor(log2(32767 / max|x|)))

    the smallest ``m`` at which single-group weights use their 8 bits at the largest scale, inside the 16-bit
    input message. :func:`export.lava.fixed.quantize_layer` and :func:`train.quant.exporter_input_scale` use it.
    """
    m_max = min(INPUT_FRAC_BITS_MAX, math.floor(math.log2(INPUT_INT_MAX / x_peak))) if x_peak > 0 \
        else INPUT_FRAC_BITS_MAX
    m = math.ceil(math.log2(max(s_budget * w_max / grid, 1e-300)))
    return float(2 ** min(max(m, 0), m_max))
