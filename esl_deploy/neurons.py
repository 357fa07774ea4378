"""Leaky integrate-and-fire neurons (snnTorch ``Leaky``) and a non-spiking leaky-integrator readout,
run over a whole time window at once.

Discrete dynamics of one neuron i (snnTorch ``Leaky`` with ``reset_mechanism="zero"`` and
``reset_delay=False``), for t = 1..T with U[0] = 0::

    U[t] = beta_i * U'[t-1] + I[t]          # leak, then integrate the synaptic input
    S[t] = H(U[t] - theta_i)                 # spike when strictly above threshold
    U'[t] = U[t] * (1 - S[t])                # reset to zero in the same step

That is :class:`LIF`'s default (``reset_mechanism="zero"``, ``reset_delay=False``), the fused fast path.
snnTorch's own default neuron, ``snn.Leaky(beta)``, resets by subtraction one step late
(``reset_mechanism="subtract"``, ``reset_delay=True``); :class:`LIF` runs every one of snnTorch's six
(mechanism, delay) combinations exactly, by running ``snn.Leaky`` itself. With the stored membrane
``M[t-1]`` and ``r[t] = H(M[t-1] - theta)`` (the reset signal snnTorch computes before the update)::

    reset_delay=True:  subtract  M[t] = (beta M[t-1] + I[t]) - r[t] theta
                       zero      M[t] = beta ((1 - r[t]) M[t-1]) + I[t]
                       none      M[t] = beta M[t-1] + I[t]
                       S[t] = H(M[t] - theta)                       (so r[t+1] = S[t])
    reset_delay=False: P[t] as above, S[t] = H(P[t] - theta), then
                       subtract  M[t] = P[t] - (S[t] - r[t]) theta
                       zero      M[t] = P[t] - (S[t] - r[t]) P[t]   (r = 0 always: the update above)
                       none      M[t] = P[t]

The zero-reset, no-delay neuron is the explicit-Euler discretisation of the NIR ``LIF`` node with ``tau = dt/(1-beta)``,
``r = tau/dt``, ``v_leak = 0``, ``v_reset = 0``, and Lava's ``LIF`` with ``du = 1``, ``dv = 1 - beta``,
``vth = theta``. ``beta`` and ``theta`` are per-neuron tensors (scalars give 0-d NIR parameters, which
fail NIR's type inference). NIR's LIF resets to ``v_reset``; the other mechanisms are written as NIR node
metadata (``reset_mechanism``, ``reset_delay``, see :mod:`esl_deploy.export.nir.write`).
The spike's backward pass uses snnTorch's arctan surrogate gradient,
dS/dU ~ (alpha/2) / (1 + (pi/2 alpha (U - theta))^2).

The T steps run as one fused autograd function (:class:`FusedLIF`): the forward loop builds no graph,
and the backward pass is the BPTT of exactly the ops snnTorch's ``Leaky`` records (its reset term
``U - S U`` is differentiated through the surrogate, as snnTorch does), in one loop backwards over
time. Forward values are bit-identical to calling ``snn.Leaky`` step by step; gradients equal them to
float rounding (the terms of dL/dU[t] are summed in a fixed order, autograd's order may differ in the
last bit). ``LIF(..., fused=False)`` runs snnTorch's ``Leaky`` itself.

:class:`LI` is the same membrane without threshold and reset, the non-spiking readout of
``ModelSpec(readout="membrane")``; its output is the membrane potential itself (see its docstring).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

from .loihi2 import ACT_SHIFT, DECAY_UNITY, UV_LIMIT

RESET_MECHANISMS = ("zero", "subtract", "none")  # snnTorch's names


def _checked(neuron_shape: Sequence[int], beta: float) -> tuple:
    """The neuron shape as a tuple of ints; ValueError for an empty/non-positive shape or beta outside [0, 1]."""
    shape = tuple(int(s) for s in neuron_shape)
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"neuron_shape must be non-empty and positive, got {neuron_shape}")
    if not 0.0 <= beta <= 1.0 or not math.isfinite(beta):
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    return shape


class FusedLIF(torch.autograd.Function):
    """All T steps of the LIF above: ``(current (T, B, *shape), beta, theta, alpha) -> (spikes, U')``.

    Every step writes into preallocated (T, ...) outputs (no per-step lists, no ``stack``). Spikes are
    made as 0./1. floats by the comparison itself and the reset is ``U - S U`` (exact for S in {0, 1}):
    float ops, several times faster on the CPU than bool masks (``masked_fill``, bool -> float copies).
    U[t] (before reset) and S[t] are saved; the backward pass computes the surrogate of each step from
    U[t] with the same elementwise ops, so its values equal computing them all up front.
    """

    @staticmethod
    def forward(ctx, current, beta, theta, alpha):
        ctx.set_materialize_grads(False)  # an output nobody uses (U' in forward()) brings no zero gradient
        b = beta.clamp(0, 1)
        pre = torch.empty_like(current, memory_format=torch.contiguous_format)
        spikes = torch.empty_like(pre)
        mems = torch.empty_like(pre)
        mem = torch.zeros_like(pre[0])
        for t in range(current.shape[0]):
            u = torch.mul(b, mem, out=pre[t]).add_(current[t])  # b U'[t-1] + I[t], rounded as snnTorch does
            s = torch.gt(u, theta, out=spikes[t])               # S = H(U - theta) as 0./1. floats
            mem = torch.addcmul(u, s, u, value=-1.0, out=mems[t])  # U - S U: exact, S is 0 or 1
        ctx.alpha = float(alpha)
        ctx.save_for_backward(pre, spikes, b, theta)
        return spikes, mems

    @staticmethod
    def backward(ctx, g_spikes, g_mems):
        pre, spikes, b, theta = ctx.saved_tensors
        alpha = ctx.alpha
        g_cur = torch.empty_like(pre)
        g_next = torch.zeros_like(pre[0])  # dL/dU[t+1], carried backwards
        for t in range(pre.shape[0] - 1, -1, -1):
            u = pre[t]
            g_r = b * g_next                       # U'[t] feeds U[t+1] = b U'[t] + I[t+1]
            if g_mems is not None:
                g_r = g_r + g_mems[t]
            u_g = u * g_r                          # U' = U - S U: dL/dS = -U g_r (+ the spike's own gradient)
            g_s = torch.neg(u_g) if g_spikes is None else g_spikes[t] - u_g
            # snnTorch's arctan surrogate dS/dU of this step
            surrogate = alpha / 2 / (1 + (torch.pi / 2 * alpha * (u - theta)).pow_(2))
            g_next = torch.addcmul(g_r, spikes[t], g_r, value=-1.0, out=g_cur[t])  # (1 - S) g_r
            g_next.add_(surrogate.mul_(g_s))                                      # + dS/dU g_s
        return g_cur, None, None, None


def lava_decay(v: torch.Tensor, dv: torch.Tensor) -> torch.Tensor:
    """Lava's fixed-point decay of integer-valued ``v`` (``PyLifModelBitAcc``): ``sign(d) (|d| >> 12)``,
    ``d = v (4096 - dv)``, i.e. ``d / 4096`` truncated towards zero. ``v`` must hold integers; computed in
    float64, exact while ``|d| < 2^53`` (``|v| < 2^23``, ``dv <= 4095``: ``|d| < 2^35``)."""
    d = v.double() * (DECAY_UNITY - dv.double())
    return torch.trunc(d / DECAY_UNITY)


class FixedPointLIF(FusedLIF):
    """:class:`FusedLIF` whose membrane is Loihi 2's integer membrane in float units: ``(current, beta, theta,
    alpha, scale) -> (spikes, U')``. With ``S`` the layer's integer units of current per float unit (the scale the
    exporter maps the layer with, ``a_in = round(I S)``) and ``V`` Lava's 24-bit ``v`` (``2^6`` steps per unit of
    ``a_in``, :mod:`export.lava.fixed`), each step is::

        V[t] = clip(lava_decay(V'[t-1], dv) + 2^6 round(I[t] S), +-(2^23 - 1)),  dv = round((1 - beta) 4096)
        S[t] = V[t] > 2^6 round(theta S);        V'[t] = V[t] (1 - S[t]);        U[t] = V[t] / (2^6 S)

    so the spikes are the exported layer's exactly (the bias is part of ``I``); ``round(I S)`` only removes the
    float rounding of sums that are integers on the trained grid. The integers are computed in float64 (exact
    below 2^53); ``U`` is returned in the current's dtype. The backward pass is :class:`FusedLIF`'s with these
    ``U`` (straight-through: ``dU[t]/dU'[t-1] = beta``, ``dU[t]/dI[t] = 1``). Reset to zero without delay only.
    """

    @staticmethod
    def forward(ctx, current, beta, theta, alpha, scale):
        ctx.set_materialize_grads(False)
        b = beta.clamp(0, 1)
        s64 = float(scale) * 2 ** ACT_SHIFT
        dv = torch.clamp(torch.round((1.0 - b.double()) * DECAY_UNITY), max=DECAY_UNITY - 1)
        vth = torch.round(theta.double() * float(scale)) * 2 ** ACT_SHIFT
        pre = torch.empty_like(current, memory_format=torch.contiguous_format)
        spikes = torch.empty_like(pre)
        mems = torch.empty_like(pre)
        v = torch.zeros(current.shape[1:], dtype=torch.float64, device=current.device)
        for t in range(current.shape[0]):
            v = lava_decay(v, dv) + torch.round(current[t].double() * float(scale)) * 2 ** ACT_SHIFT
            v = v.clamp(-UV_LIMIT + 1, UV_LIMIT - 1)
            s = v > vth
            spikes[t] = s
            pre[t] = v / s64
            v = torch.where(s, torch.zeros_like(v), v)
            mems[t] = v / s64
        ctx.alpha = float(alpha)
        ctx.save_for_backward(pre, spikes, b, theta)
        return spikes, mems

    @staticmethod
    def backward(ctx, g_spikes, g_mems):
        return FusedLIF.backward(ctx, g_spikes, g_mems) + (None,)


class LIF(nn.Module):
    """A layer of LIF neurons of shape ``neuron_shape``; input and output are ``(T, B, *neuron_shape)``.

    ``beta`` (membrane decay, 0..1) and ``threshold`` are buffers of shape ``neuron_shape``: one value per
    neuron, all equal at construction. They are not trained. ``reset_mechanism`` and ``reset_delay`` are
    snnTorch's (see the module docstring); the default, reset to zero at once, runs fused
    (:class:`FusedLIF`), the others step by step through ``snn.Leaky`` itself.
    """

    def __init__(self, neuron_shape: Sequence[int], *, beta: float = 0.9, threshold: float = 1.0,
                 surrogate_slope: float = 2.0, fused: bool = True, reset_mechanism: str = "zero",
                 reset_delay: bool = False):
        super().__init__()
        self.surrogate_slope = float(surrogate_slope)
        shape = _checked(neuron_shape, beta)
        if not threshold > 0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        if reset_mechanism not in RESET_MECHANISMS:
            raise ValueError(f"unknown reset_mechanism {reset_mechanism!r}; choose one of: {', '.join(RESET_MECHANISMS)}")
        self.reset_mechanism = reset_mechanism
        self.reset_delay = bool(reset_delay)
        self.fused = fused and reset_mechanism == "zero" and not self.reset_delay
        self.neuron_shape = shape
        self.leaky = snn.Leaky(
            beta=torch.full(shape, float(beta)),
            threshold=torch.full(shape, float(threshold)),
            spike_grad=surrogate.atan(alpha=surrogate_slope),
            reset_mechanism=reset_mechanism,
            reset_delay=self.reset_delay,
        )

    @property
    def beta(self) -> torch.Tensor:
        return self.leaky.beta

    @property
    def fixed_scale(self) -> Optional[float]:
        """The integer units per unit of current of Loihi 2's membrane (:class:`FixedPointLIF`), or None (float)."""
        buf = self._buffers.get("fixed_point_scale")
        return None if buf is None else float(buf)

    def set_fixed_scale(self, scale: Optional[float]) -> None:
        """Run the membrane as Loihi 2's integers at ``scale`` (:class:`FixedPointLIF`; ``--weight-bits`` training
        sets it, :func:`train.quant.quantized_weights`), or as floats (None). Only the fused neuron (reset to zero
        without delay) has the integer form. The scale is the buffer ``fixed_point_scale``, in the state dict only
        while it is set (so a float network's state is unchanged)."""
        if scale is None:
            self._buffers.pop("fixed_point_scale", None)
            return
        if not self.fused:
            raise ValueError("only the LIF that resets to zero without delay runs Loihi 2's integer membrane")
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"the fixed-point scale must be positive, got {scale}")
        self.register_buffer("fixed_point_scale", torch.tensor(float(scale), dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "fixed_point_scale"  # a kept --weight-bits network: its neurons run the integer membrane
        self.set_fixed_scale(float(state_dict[key]) if key in state_dict else None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @property
    def threshold(self) -> torch.Tensor:
        return self.leaky.threshold

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """Run all T steps from rest: ``current`` (T, B, *shape) -> spikes (T, B, *shape)."""
        spikes, _ = self.run(current)
        return spikes

    def run(self, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`forward`, also returning the membrane U'[t] after reset, (T, B, *shape)."""
        if tuple(current.shape[2:]) != self.neuron_shape:
            raise ValueError(f"LIF of shape {self.neuron_shape} got input of shape {tuple(current.shape)}")
        if self.fused and self.fixed_scale is not None:
            return FixedPointLIF.apply(current, self.beta, self.threshold, self.surrogate_slope, self.fixed_scale)
        if self.fused:
            return FusedLIF.apply(current, self.beta, self.threshold, self.surrogate_slope)
        mem = torch.zeros_like(current[0])
        spikes, mems = [], []
        for t in range(current.shape[0]):
            spk, mem = self.leaky(current[t], mem)
            spikes.append(spk)
            mems.append(mem)
        return torch.stack(spikes), torch.stack(mems)

    def extra_repr(self) -> str:
        reset = "" if (self.reset_mechanism, self.reset_delay) == ("zero", False) else \
            f", reset_mechanism={self.reset_mechanism!r}, reset_delay={self.reset_delay}"
        return f"neuron_shape={self.neuron_shape}, beta={float(self.beta.flatten()[0]):g}, " \
               f"threshold={float(self.threshold.flatten()[0]):g}{reset}"


class LI(nn.Module):
    """A layer of non-spiking leaky integrators of shape ``neuron_shape``: the membrane readout.

    Input and output are ``(T, B, *neuron_shape)``; the output is the membrane potential at every step,
    from rest ``U[0] = 0``::

        U[t] = beta_i * U[t-1] + I[t]           # no threshold, no reset

    It is :class:`LIF` without the spike (the LIF update with ``theta = inf``). Explicit Euler of the
    NIR ``LI`` node ``tau dv/dt = (v_leak - v) + r I`` at step ``dt`` is
    ``v[t] = (1 - dt/tau) v[t-1] + (dt/tau) r I[t] + (dt/tau) v_leak``, the same step exactly when
    ``tau = dt/(1-beta)``, ``r = tau/dt`` and ``v_leak = 0``; ``beta == 1`` (no leak) is NIR's
    ``I`` (integrator, ``dv/dt = r I``) with ``r = 1/dt``. ``beta`` is a per-neuron buffer, as in
    :class:`LIF`, all equal at construction and not trained. Gradients flow through the membrane
    directly (no surrogate is needed).
    """

    def __init__(self, neuron_shape: Sequence[int], *, beta: float = 0.9):
        super().__init__()
        shape = _checked(neuron_shape, beta)
        self.neuron_shape = shape
        self.register_buffer("beta", torch.full(shape, float(beta)))

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """Run all T steps from rest: ``current`` (T, B, *shape) -> membrane U (T, B, *shape)."""
        if tuple(current.shape[2:]) != self.neuron_shape:
            raise ValueError(f"LI of shape {self.neuron_shape} got input of shape {tuple(current.shape)}")
        beta = self.beta.to(current.dtype)
        mem = torch.zeros_like(current[0])
        mems = []
        for t in range(current.shape[0]):
            mem = beta * mem + current[t]
            mems.append(mem)
        return torch.stack(mems)

    def extra_repr(self) -> str:
        return f"neuron_shape={self.neuron_shape}, beta={float(self.beta.flatten()[0]):g}"
