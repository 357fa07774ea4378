"""Loihi 2 fixed-point limits (lava-nc 0.10.0 ``lava.proc.lif.models.AbstractPyLifModelFixed``,
``PyLifModelBitAcc``, ``Dense``/``Sparse`` bit-accurate models; lava-dl 0.6.0 netx).

Shared by the exporter (:mod:`export.lava.fixed`, which maps a float network onto them) and the
trainer (:mod:`train.quant`, whose quantisation-aware grid is the one the exporter realises exactly).
Where each width is declared in Lava is tabulated in :mod:`export.lava.fixed`.
"""
from __future__ import annotations

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
