"""How a NIR graph's neuron nodes are read: the writer's conventions, the time step, and one record of the
discrete parameters every runner uses (our torch reader, the Lava converter, fixed point).

NIR's neurons are ODEs without a time step. Explicit Euler at ``dt`` (``k = dt / tau``)::

    LIF      v[t] = (1 - k) v[t-1] + k r I[t] + k v_leak
    IF       v[t] = v[t-1] + dt r I[t]
    CubaLIF  i[t] = (1 - k_s) i[t-1] + k_s w_in I[t],   v[t] = (1 - k_m) v[t-1] + k_m r i[t] + k_m v_leak
    LI, CubaLI, I: the same without threshold;  Threshold: s = I > theta (no state)

and a spiking node fires ``s = v > v_threshold`` and resets to ``v_reset``. Every runner holds that as
:class:`NeuronParams` (per neuron, float64)::

    x'[t] = gain x[t];   I[t] = alpha I[t-1] + x'[t];   U[t] = beta U'[t-1] + I[t] + leak
    S[t] = U[t] > threshold;   U' = v_reset where S

with ``beta = 1 - k``, ``leak = k v_leak``; LIF: ``gain = k r``, ``alpha`` absent; CubaLIF: ``alpha = 1 - k_s``,
``gain = k_s w_in k_m r`` (the current is kept in the membrane's units: ``I = k_m r i``). In Lava ``gain``
multiplies the synapse rows, ``alpha = 1 - du``, ``beta = 1 - dv``, ``leak`` is the bias.

Writers do not all mean that (:data:`CONVENTIONS`; ``esl simulate --writer``, implied by ``--reference``):

==========  ==================================================================================================
``nir``     the spec as above at ``dt`` = ``--dt``, else the graph's ``metadata["dt"]``, else 1e-4, said in a
            warning (snnTorch's constant; a graph that records no dt could mean another)
``snntorch``  snnTorch 1.0.0 ``export_to_nir`` / ``import_from_nir``: NIR at ``dt = 1e-4``
``norse``   Norse 1.1.0 ``norse.torch.from_nir(graph, dt=1e-3)``: ``LIF``/``LI`` ignore ``r``
            (``v += dt/tau (v_leak - v + I)``, gain ``k``), ``IF`` ignores ``dt`` and ``r`` (``v += I``), ``CubaLIF``
            is NIR's (two Euler boxes, ``w_in`` and ``r`` used); its neurons start at ``v = v_leak``
``sinabs``  Sinabs 2.0.3 ``sinabs.from_nir``: ``tau`` counts steps of an exact decay ``beta = exp(-1/tau)``, no
            ``r``, no ``dt`` (``v = beta v + I``; ``IF``: ``v += I``). Its neuron fires ``floor(v / theta)`` spikes
            when ``v >= theta`` and subtracts ``theta`` per spike; ``IF`` also clamps ``v >= -theta``. We read it
            as one spike at ``v > theta`` with subtraction (snnTorch's ``subtract``): the same while ``v``
            stays below ``2 theta`` and off ``theta`` exactly and, for ``IF``, above ``-theta``; the rest is
            measured (:data:`DIFFERENCES`)
``esl_deploy``  our own files: NIR at their recorded ``dt``, resets from the node metadata
==========  ==================================================================================================

A layer whose input gain lies far from 1 under the assumed conventions (``gain < 0.02`` or ``> 50``: an
``IF`` with ``r = 1`` at ``dt = 1e-4`` needs 10,000 times its threshold) is reported by
:func:`gain_warnings`; ``export.simulate`` also warns of layers that never spike or always spike.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import nir
import numpy as np

from esl_deploy.errors import EslError

DEFAULT_DT = 1e-4  # snnTorch's export_nir constant
NORSE_DT = 1e-3    # norse.torch.from_nir's default dt
GAIN_LOW, GAIN_HIGH = 0.02, 50.0  # input gains outside this make a layer silent or saturated: warned about
_RTOL = 1e-9


@dataclass(frozen=True)
class Convention:
    """How one writer means its NIR neurons (module docstring)."""

    name: str
    dt: Optional[float]          # its time step (None: the graph's or --dt; sinabs: steps, dt = 1)
    tau_in_steps: bool = False   # sinabs: beta = exp(-1/tau)
    lif_ignores_r: bool = False  # norse: LIF/LI gain dt/tau
    if_ignores_dt: bool = False  # norse, sinabs: IF v += I
    reset: Tuple[str, bool] = ("zero", False)  # the reset of its spiking neurons (our names)
    starts_at_leak: bool = False  # norse: v[0] = v_leak


CONVENTIONS: Dict[str, Convention] = {
    "nir": Convention("nir", None),
    "esl_deploy": Convention("esl_deploy", None),
    "snntorch": Convention("snntorch", DEFAULT_DT),
    "norse": Convention("norse", NORSE_DT, lif_ignores_r=True, if_ignores_dt=True, starts_at_leak=True),
    "sinabs": Convention("sinabs", 1.0, tau_in_steps=True, lif_ignores_r=True, if_ignores_dt=True,
                         reset=("subtract", False)),
}
# what a writer's neuron does that ours cannot, said with every result read under its conventions
DIFFERENCES: Dict[str, str] = {
    "sinabs": "Sinabs' neuron fires floor(v/theta) spikes from v >= theta on and subtracts theta per spike, its IF "
              "clamps v >= -theta; read as one spike at v > theta, subtracting theta",
    "norse": "",
    "snntorch": "",
    "nir": "",
    "esl_deploy": "",
}


def writer_of(graph: nir.NIRGraph, writer: Optional[str] = None) -> Convention:
    """The conventions to read ``graph`` with: ``writer`` when given, ``esl_deploy`` for our own files, else ``nir``."""
    if writer is not None:
        if writer not in CONVENTIONS:
            raise EslError(f"unknown NIR writer {writer!r}; choose one of: {', '.join(CONVENTIONS)}")
        return CONVENTIONS[writer]
    producer = (graph.metadata or {}).get("producer")
    producer = producer.decode() if isinstance(producer, bytes) else producer
    return CONVENTIONS["esl_deploy" if producer == "esl_deploy" else "nir"]


def time_step(graph: nir.NIRGraph, convention: Convention, dt: Optional[float] = None, *,
              warn: bool = True) -> float:
    """The ``dt`` to read ``graph`` with: ``dt`` (``--dt``), else the writer's, else ``metadata["dt"]``, else
    1e-4 with a warning that it was assumed."""
    if dt is None and convention.dt is not None:
        dt = convention.dt
    if dt is None:
        recorded = (graph.metadata or {}).get("dt")
        if recorded is not None:
            dt = float(np.asarray(recorded))
        else:
            dt = DEFAULT_DT
            if warn:
                warnings.warn(f"the graph records no dt: read with dt = {DEFAULT_DT:g} (snnTorch's); if another tool "
                              "wrote it give --writer norse|sinabs or --dt", EslWarning, stacklevel=2)
    if not (dt > 0 and math.isfinite(dt)):
        raise EslError(f"dt must be a positive number, got {dt}")
    return float(dt)


class EslWarning(UserWarning):
    """A warning about how a graph is read or ran (printed by the command line)."""


@dataclass(frozen=True)
class NeuronParams:
    """One neuron node as the discrete update in the module docstring: arrays of one value per neuron
    (flat, torch order), ``alpha``/``leak``/``v_reset`` None when absent, ``threshold`` None for a readout."""

    beta: np.ndarray
    gain: np.ndarray
    threshold: Optional[np.ndarray] = None
    alpha: Optional[np.ndarray] = None
    leak: Optional[np.ndarray] = None
    v_reset: Optional[np.ndarray] = None
    reset_mechanism: str = "zero"
    reset_delay: bool = False

    @property
    def spiking(self) -> bool:
        return self.threshold is not None


def _flag(value: Any):
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.ravel()[0]
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        value = value.item()
    return value


def reset_from_metadata(name: str, node: nir.NIRNode, default: Tuple[str, bool]) -> Tuple[str, bool]:
    """``(reset_mechanism, reset_delay)`` from the node's metadata (our writer's), else ``default``; the one
    reading of that metadata (the reader and the Lava converter call it). Values may come back from HDF5
    as bytes, numpy scalars or 1-element arrays; ``reset_delay`` may be 0/1 or "true"/"false"."""
    meta = getattr(node, "metadata", None) or {}
    mechanism = _flag(meta.get("reset_mechanism", default[0]))
    if mechanism not in ("zero", "subtract", "none"):
        raise EslError(f"node {name!r} ({type(node).__name__}): unknown reset_mechanism {mechanism!r} "
                       "in its metadata (known: zero, subtract, none)")
    delay = _flag(meta.get("reset_delay", default[1]))
    if isinstance(delay, str) and delay.strip().lower() in ("true", "false", "1", "0"):
        delay = delay.strip().lower() in ("true", "1")
    if isinstance(delay, (int, float)) and not isinstance(delay, bool) and delay in (0, 1):
        delay = bool(delay)
    if not isinstance(delay, bool):
        raise EslError(f"node {name!r} ({type(node).__name__}): reset_delay {delay!r} in its metadata is not a bool")
    return str(mechanism), delay


def neuron_params(name: str, node: nir.NIRNode, n: int, dt: float, convention: Convention) -> NeuronParams:
    """The :class:`NeuronParams` of neuron node ``node`` of ``n`` neurons at ``dt`` under ``convention``."""
    label = f"node {name!r} of type {type(node).__name__}"

    def bc(value, what: str) -> np.ndarray:
        a = np.asarray(value if value is not None else 0.0, dtype=np.float64)
        if a.size == 1:
            return np.full(n, float(a.ravel()[0]))
        if a.size != n:
            raise EslError(f"{label}: {what} has {a.size} values for {n} neurons")
        return a.ravel().copy()

    def decay(tau) -> Tuple[np.ndarray, np.ndarray]:
        """(beta, k) of a time constant: k = dt/tau (or 1 - exp(-1/tau) for tau in steps)."""
        tau = bc(tau, "tau")
        if np.any(tau <= 0) and not convention.tau_in_steps:
            raise EslError(f"{label}: tau must be positive")
        if convention.tau_in_steps:
            with np.errstate(divide="ignore"):
                beta = np.where(tau > 0, np.exp(-1.0 / np.where(tau > 0, tau, 1.0)), 0.0)
            return beta, 1.0 - beta
        k = dt / tau
        if np.any(k > 1 + _RTOL):
            raise EslError(f"{label}: tau must be at least dt = {dt:g} (beta = 1 - dt/tau in [0, 1]); "
                           "if the graph was written with another dt give --dt or --writer")
        return 1.0 - np.minimum(k, 1.0), k

    def one(g: np.ndarray) -> np.ndarray:
        return np.where(np.abs(g - 1.0) <= _RTOL, 1.0, g)

    def snap32(x: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """A decay recovered through float64 as 1 - dt/(dt/(1 - beta)) is the float32 beta it came from (a
        network trained in float32) up to a few ulps: where a float32 lies within 1e-12, take it."""
        if x is None:
            return None
        x32 = x.astype(np.float32).astype(np.float64)
        return np.where(np.abs(x32 - x) <= 1e-12 * np.maximum(1.0, np.abs(x)), x32, x)

    threshold = v_reset = leak = alpha = None
    mechanism, delay = "zero", False
    if isinstance(node, nir.Threshold):
        return NeuronParams(beta=np.zeros(n), gain=np.ones(n), threshold=bc(node.threshold, "threshold"))
    if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
        threshold = bc(node.v_threshold, "v_threshold")
        mechanism, delay = reset_from_metadata(name, node, convention.reset)
        vr = getattr(node, "v_reset", None)
        if vr is not None and np.any(bc(vr, "v_reset") != 0) and mechanism == "zero":  # subtract/none: unused
            if delay:
                raise EslError(f"{label}: v_reset != 0 with reset_mechanism 'zero' and reset_delay: only a reset "
                               "to v_reset at once is supported")
            v_reset = bc(vr, "v_reset")
    if isinstance(node, (nir.IF, nir.I)):
        beta = np.ones(n)
        gain = np.ones(n) if convention.if_ignores_dt else bc(node.r, "r") * dt
    elif isinstance(node, (nir.LIF, nir.LI)):
        beta, k = decay(node.tau)
        r = np.ones(n) if convention.lif_ignores_r else bc(node.r, "r")
        gain = np.ones(n) * (r if convention.tau_in_steps else k * r)
        v_leak = bc(node.v_leak, "v_leak")
        if np.any(v_leak != 0):
            if convention.starts_at_leak:
                raise EslError(f"{label}: Norse starts a neuron at v = v_leak != 0; we start it at 0")
            leak = k * v_leak
    elif isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        alpha, k_s = decay(node.tau_syn)
        beta, k_m = decay(node.tau_mem)
        w_in = bc(getattr(node, "w_in", 1.0), "w_in")
        r = bc(node.r, "r")
        gain = (w_in * r) if convention.tau_in_steps else (k_s * w_in) * (k_m * r)
        v_leak = bc(node.v_leak, "v_leak")
        if np.any(v_leak != 0):
            if convention.starts_at_leak:
                raise EslError(f"{label}: Norse starts a neuron at v = v_leak != 0; we start it at 0")
            leak = k_m * v_leak
    else:
        raise EslError(f"{label}: not a neuron node")
    if threshold is not None and np.any(threshold < 0):
        raise EslError(f"{label}: negative thresholds are not supported")
    return NeuronParams(beta=snap32(beta), gain=one(gain), threshold=threshold, alpha=snap32(alpha), leak=leak,
                        v_reset=v_reset,
                        reset_mechanism=mechanism, reset_delay=delay)


def gain_warnings(params: Dict[str, NeuronParams], convention: Convention, dt: float) -> List[str]:
    """One line per spiking neuron node whose input gain lies outside [GAIN_LOW, GAIN_HIGH] (module docstring)."""
    out = []
    for name, p in params.items():
        if not p.spiking:
            continue
        g = float(np.median(p.gain))
        if g < GAIN_LOW or g > GAIN_HIGH:
            out.append(f"node {name!r}: input gain {g:.3g} under the {convention.name} conventions at dt = {dt:g} "
                       f"(its threshold is in effect {1 / g:.3g} x): the layer will likely be "
                       f"{'silent' if g < 1 else 'saturated'}; if another tool wrote the graph give --writer "
                       "snntorch|norse|sinabs or --dt")
    return out


__all__ = ["CONVENTIONS", "Convention", "DEFAULT_DT", "DIFFERENCES", "EslWarning", "GAIN_HIGH", "GAIN_LOW",
           "NORSE_DT", "NeuronParams", "gain_warnings", "neuron_params", "reset_from_metadata", "time_step",
           "writer_of"]
