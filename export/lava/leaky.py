"""snnTorch's ``Leaky`` reset mechanisms as one Lava step: pure numpy functions, floating and fixed point.

snnTorch 1.0.0 ``snn.Leaky`` (``_neurons/leaky.py``, ``neurons.py``) keeps one membrane ``M`` per neuron
(``M[0] = 0``). With input current ``I[t]``, ``b = clamp(beta, 0, 1)``, threshold ``th`` and
``H(x) = 1 if x > 0 else 0``, each step first computes the reset signal from the STORED membrane::

    r[t] = H(M[t-1] - th)

    reset_delay=True:   subtract  M[t] = (b M[t-1] + I[t]) - r[t] th
                        zero      M[t] = b ((1 - r[t]) M[t-1]) + I[t]
                        none      M[t] = b M[t-1] + I[t]
                        S[t] = H(M[t] - th)            (M is not changed by the spike: r[t+1] = S[t])
    reset_delay=False:  P[t] = the right-hand side above,  S[t] = H(P[t] - th)
                        subtract  M[t] = P[t] - (S[t] - r[t]) th
                        zero      M[t] = P[t] - (S[t] - r[t]) P[t]
                        none      M[t] = P[t]

``r[t]`` is a function of the stored membrane alone, so no state beyond Lava's ``u`` and ``v`` is
needed: zeroing ``u`` and ``v`` (``LIFReset``'s per-sample reset) also clears ``r``. With ``zero`` and
no delay ``M <= th`` after every step (it is ``0`` or a ``P`` that did not cross), so ``r = 0`` and the
update is ``M = P (1 - S)``: exactly Lava's ``LIF`` (``v > vth``, ``v <- 0``).

In Lava's terms ``M`` is ``v``, ``I[t]`` is ``u[t] + bias`` (``du = 1``: ``u[t] = a_in[t]``) and
``b = 1 - dv``; ``dv`` and ``vth`` are per neuron here.

Floating point (:func:`float_step`, the operations in the order snnTorch and Lava do them)::

    r = v > vth
    v' = v (1 - r)                                   zero only
    P = v' (1 - dv) + u + bias  [- r vth]            [subtract only]
    S = P > vth
    v = P                                            delay, or none
    v = P - (S - r) vth                              subtract, no delay
    v = P - (S - r) P                                zero, no delay

Loihi 2 fixed point (:func:`fixed_step`), extending the arithmetic of Lava's bit-accurate LIF
(``AbstractPyLifModelFixed.subthr_dynamics``): 24-bit ``v``, 12-bit ``dv`` (``dv = round((1 - beta) 4096)``),
threshold ``vth6 = vth << 6``, ``bias = bias_mant << bias_exp``, ``u`` from :func:`fixed_current`::

    r = v > vth6
    v' = 0 where r, else v                           zero only
    d = v' (4096 - dv)
    P = clip(sign(d) (|d| >> 12) + u + bias  [- r vth6],  -(2^23 - 1), 2^23 - 1)   [subtract only]
    S = P > vth6
    v = P                                            delay, or none
    v = clip(P - (S - r) vth6)                       subtract, no delay
    v = clip(P - (S - r) P)                          zero, no delay

so "subtract" removes exactly ``vth << 6``, the threshold as the comparison sees it, and the decay
truncates towards zero as Lava's does. For ``zero`` without delay this is Lava's ``PyLifModelBitAcc``
step bit for bit (``r = 0``: ``P`` clipped, ``v = P`` or ``0``).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from esl_deploy.loihi2 import ACT_SHIFT, DECAY_UNITY, UV_LIMIT

RESET_MECHANISMS = ("zero", "subtract", "none")  # snnTorch's names
DECAY_SHIFT = 12  # Lava's decay_shift: decays are (4096 - d) / 2^12


def check_mode(mechanism: str, delay: bool) -> None:
    """ValueError unless ``mechanism`` is one of :data:`RESET_MECHANISMS` and ``delay`` a bool."""
    if mechanism not in RESET_MECHANISMS:
        raise ValueError(f"reset_mechanism must be one of {', '.join(RESET_MECHANISMS)}, got {mechanism!r}")
    if not isinstance(delay, (bool, np.bool_)):
        raise ValueError(f"reset_delay must be a bool, got {delay!r}")


def float_step(v: np.ndarray, u: np.ndarray, bias, dv, vth, mechanism: str,
               delay: bool, v_reset=0.0) -> Tuple[np.ndarray, np.ndarray]:
    """One floating-point step (module docstring): stored membrane ``v``, this step's current ``u``
    (already updated), per-neuron (or scalar) ``bias``, ``dv``, ``vth``. Returns (new ``v``, spikes as bool).
    ``v_reset`` (zero mechanism without delay, NIR's reset value): a spike sets ``v = v_reset``."""
    if mechanism == "zero" and not delay and np.any(np.asarray(v_reset) != 0):
        p = v * (1 - dv) + u + bias
        s = p > vth
        return np.where(s, v_reset, p), s
    r = v > vth
    if mechanism == "zero":
        v = v * (1.0 - r)
    p = v * (1 - dv) + u + bias
    if mechanism == "subtract":
        p = p - r * vth
    s = p > vth
    if delay or mechanism == "none":
        return p, s
    if mechanism == "subtract":
        return p - (s.astype(np.float64) - r) * vth, s
    return p - (s.astype(np.float64) - r) * p, s


def fixed_current(u: np.ndarray, a_in: np.ndarray, du) -> np.ndarray:
    """Lava's fixed-point current update (``ds_offset = 1``; wraps in 24 bits), int64::

        u = sign(u (4096 - (du + 1))) (|u (4096 - (du + 1))| >> 12) + (a_in << 6)
    """
    d = np.asarray(u, dtype=np.int64) * (DECAY_UNITY - (np.asarray(du, dtype=np.int64) + 1))
    u = np.sign(d) * (np.abs(d) >> DECAY_SHIFT) + (np.asarray(a_in, dtype=np.int64) << ACT_SHIFT)
    u = np.where(u > UV_LIMIT, u - 2 * UV_LIMIT, u)
    return np.where(u <= -UV_LIMIT, u + 2 * UV_LIMIT, u)


def fixed_step(v: np.ndarray, u: np.ndarray, bias, dv, vth6, mechanism: str,
               delay: bool, v_reset6=0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Loihi 2 fixed-point step (module docstring), all int64: stored ``v``, this step's ``u``,
    ``bias = bias_mant << bias_exp``, 12-bit ``dv`` and ``vth6 = vth << 6`` (per neuron or scalar).
    Returns (new ``v``, ``P`` (the membrane the spike is decided on), spikes as bool). ``v_reset6``
    (``v_reset << 6``; zero mechanism without delay): a spike sets ``v`` to it."""
    lo, hi = -UV_LIMIT + 1, UV_LIMIT - 1
    v = np.asarray(v, dtype=np.int64)
    vth6 = np.asarray(vth6, dtype=np.int64)
    if mechanism == "zero" and not delay and np.any(np.asarray(v_reset6) != 0):
        d = v * (DECAY_UNITY - np.asarray(dv, dtype=np.int64))
        p = np.clip(np.sign(d) * (np.abs(d) >> DECAY_SHIFT) + u + bias, lo, hi)
        s = p > vth6
        return np.where(s, np.asarray(v_reset6, dtype=np.int64), p), p, s
    r = v > vth6
    if mechanism == "zero":
        v = np.where(r, 0, v)
    d = v * (DECAY_UNITY - np.asarray(dv, dtype=np.int64))
    p = np.sign(d) * (np.abs(d) >> DECAY_SHIFT) + u + bias
    if mechanism == "subtract":
        p = p - r * vth6
    p = np.clip(p, lo, hi)
    s = p > vth6
    if delay or mechanism == "none":
        return p, p, s
    if mechanism == "subtract":
        return np.clip(p - (s.astype(np.int64) - r) * vth6, lo, hi), p, s
    return np.clip(p - (s.astype(np.int64) - r) * p, lo, hi), p, s


__all__ = ["DECAY_SHIFT", "RESET_MECHANISMS", "check_mode", "fixed_current", "fixed_step", "float_step"]
