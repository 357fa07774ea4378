"""NIR graph -> Lava (lava-nc 0.10.0) network: description, fixed-point quantisation, and runner.

No public tool converts a general NIR graph into ``lava.proc`` processes (the NIR paper's
``nir_to_lava.py`` handles single-neuron LIF/Affine toys), so this module does it. It has three parts:

1. :func:`convert` reads a NIR graph (walked by :func:`export.nir.graph.walk`) into a :class:`LavaNet`:
   a chain as below, one :class:`~export.nir.graph.Segment` per layer; every other graph (residual,
   branching, recurrent, CubaLIF, ...) by :func:`export.lava.graph_convert.convert_graph` (records in
   :mod:`export.lava.net`): a list of layers, each one synapse process and one LIF population. Every run of linear nodes between two neuron nodes
   (``Affine``/``Linear``, ``Conv2d``, ``AvgPool2d``/``SumPool2d``, ``Scale``, ``Flatten``) becomes
   ONE synapse: pooling is folded exactly into the following synapse layer, so no layer ever sends
   graded pooled values and no extra timestep of latency is added.

   - ``Conv2d`` (optionally preceded by a non-overlapping pool, ``stride == kernel``, no padding,
     spatial size divisible by the kernel) becomes a Lava ``Conv``. Folding ``k x k`` pooling (scale
     ``c``: ``1/k^2`` for average, ``1`` for sum) into a ``kh x kw`` convolution of stride ``s`` and
     padding ``p`` gives one convolution with kernel ``K[o, i, k*a + u, k*b + v] = c * W[o, i, a, b]``,
     stride ``k*s`` and padding ``k*p``.
   - Anything else (``Affine``, ``Flatten``, pooling before an ``Affine``, ...) is composed into one
     matrix ``M`` (torch ``C, H, W`` order) and becomes a Lava ``Sparse`` (a CSR matrix, zeros
     dropped) or ``Dense``. ``Flatten`` is only an index permutation: Lava stores images as
     ``(W, H, C)``, so ``M`` is permuted to Lava order when the processes are built.

2. :func:`export.lava.fixed.quantize` adds Loihi 2 fixed-point parameters to every layer;
   :func:`export.lava.fixed.emulate_fixed` is the same integer arithmetic in numpy.

3. :func:`export.lava.run.run` builds the processes for a whole evaluation set, runs them once with
   ``Loihi2SimCfg(select_tag="floating_pt")`` or ``"fixed_pt"``, and returns the spikes of every
   layer, recorded by :class:`export.lava.procs.spike_recorder.SpikeRecorder` (Lava's own sink
   hands its buffer back one value per message, far too slow for a test set).

Neuron mapping. Explicit Euler of the NIR ``LIF`` (``tau dv/dt = v_leak - v + r I``) at the graph's
``dt`` (``graph.metadata["dt"]``, else snnTorch's ``1e-4``) is::

    v[t] = beta v[t-1] + g I[t] + (1 - beta) v_leak,    beta = 1 - dt/tau,   g = r dt / tau

and Lava's float ``LIF`` with ``du = 1`` is ``u[t] = a_in[t]``, ``v[t] = (1 - dv) v[t-1] + u[t] + bias``,
spike ``v > vth``, ``v <- 0``. So ``dv = 1 - beta``, ``vth = v_threshold``, the gain ``g`` multiplies
the synapse rows (``g = 1`` for snnTorch exports, ``r = tau/dt``), and the synapse bias times ``g``
plus ``(1 - beta) v_leak`` is the neuron bias. ``IF`` is the same with ``beta = 1``, ``g = r dt``.

Reset mechanisms and per-neuron parameters. A ``LIF``/``IF`` node's metadata may carry snnTorch's
``reset_mechanism`` (``zero``, ``subtract``, ``none``; absent: ``zero``) and ``reset_delay`` (absent:
False); values read back from HDF5 as bytes or numpy scalars are normalised, anything else is an
:class:`EslError` naming the node. ``v_reset`` must be 0 for ``zero`` (snnTorch resets to zero) and is
not used by ``subtract``/``none``. Beta and threshold may vary across neurons (kept as arrays in the
:class:`NeuronLayer`; values that agree to 1e-12 stay one float). A layer that is uniform and resets to zero
without delay runs as Lava's own ``LIFReset`` (one ``du``/``dv``/``vth`` per population, exactly what
ran before these options existed); every other layer runs as
:class:`export.lava.procs.leaky_reset.LeakyReset`, snnTorch's update with per-neuron ``dv`` and ``vth``
(formulas in :mod:`export.lava.leaky`). The ``LI``/``I`` readout keeps one beta per population.

Membrane readout. A NIR ``LI`` node (``tau dv/dt = v_leak - v + r I``, no threshold) as the LAST neuron
node becomes the same Lava float ``LIF`` (``du = 1``, ``dv = 1 - beta``, gain and bias as above; ``I``
is ``beta = 1``, gain ``r dt``) whose threshold is never reached: ``vth = +inf`` (``NeuronLayer.threshold``
is ``math.inf``), so the float model's ``v > vth`` is always false, nothing is reset and ``v`` is exactly
the leaky integrator ``v[t] = beta v[t-1] + I[t] + bias``. Its voltage ``v`` is read every step by
:class:`export.lava.procs.voltage_recorder.VoltageLIFReset` (a ``LIFReset`` that also writes ``v`` to a
memory-mapped file, the way the spike recorder does), with the same timing and per-sample reset as
the spikes. Such a layer has ``NeuronLayer.spiking == False``; it exists in floating point only (the
fixed-point and netx paths refuse it). An ``LI`` node anywhere but last is refused (it would send
graded values, not spikes, to the next layer).

Timing. Every Lava synapse sends at step ``t`` what it received at ``t - 1`` (``Dense``/``Sparse``/
``Conv`` ``run_spk``), LIF spikes in the step it integrates, and the source ``RingBuffer`` sends
column ``t - 1`` at step ``t`` (steps count from 1). So layer ``l`` (1-based) integrates input column
``j`` at step ``j + 1 + l``: with ``L`` layers we run ``B*T + L`` steps and read layer ``l``'s spikes
for column ``j`` at buffer index ``j + l``.

Reset between samples. Samples are fed back to back, ``T`` columns each, with no quiet steps. Every
neuron is a ``LIFReset`` (or ``LeakyReset``, which resets the same way and keeps no other state) with
``reset_interval = T`` and ``reset_offset = (1 + l) mod T``: it zeroes ``u`` and ``v`` at the start
of exactly the step in which the first column of a new sample reaches layer ``l``. The synapse buffers
need no reset: the value a synapse delivers at that step is already computed from the new sample (the
pipeline carries each column through the layers in lock-step), so nothing of the previous sample
leaks in. One compiled network runs the whole set; this is exact
(tested against per-sample runs) and costs no extra steps.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import nir
import numpy as np
import scipy.sparse as sp

from esl_deploy.errors import EslError

from ..nir.conventions import reset_from_metadata
from ..nir.graph import ALL_TYPES, Segment, Step, conv_geometry, conv_output_hw, pair, pool_scale, size, walk
from .net import (DEFAULT_DT, READOUT_NODE_TYPES, READOUT_VTH, RESET_MECHANISMS, SYNAPSE_KINDS,  # noqa: F401
                  ConvShape, LavaLayer, LavaNet, NeuronLayer, SynapseLayer, conv_matrix, lava_order, pool_matrix)

SUPPORTED_NODES = ("Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "SumPool2d", "Scale",
                   "Flatten", "LIF", "IF", "LI", "I")
CONV_MODES = ("conv", "matrix")
MODES = ("float", "fixed")


# ----------------------------------------------------------------------------------------------------
# NIR graph -> LavaNet
# ----------------------------------------------------------------------------------------------------

def _chain_path(g, convention) -> bool:
    """True for the chains this module converts itself (as before graphs): :data:`SUPPORTED_NODES` only, read
    with NIR's (or snnTorch's) conventions, no ``v_reset`` other than 0."""
    if not g.is_chain or convention.name not in ("nir", "esl_deploy", "snntorch"):
        return False
    for s in g.steps:
        if type(s.node).__name__ not in SUPPORTED_NODES:
            return False
        if isinstance(s.node, (nir.LIF, nir.IF)) and s.node.v_reset is not None and np.any(
                np.asarray(s.node.v_reset) != 0) and _reset_mode(s.name, s.kind, s.node)[0] == "zero":
            return False
    return True


def _matrix(op: Step) -> Tuple[sp.csr_matrix, Optional[np.ndarray]]:
    """(M, b) with ``y = M x + b`` over torch-flattened indices of one linear step."""
    n = op.node
    if isinstance(n, (nir.Affine, nir.Linear)):
        bias = np.asarray(n.bias, dtype=np.float64).ravel() if isinstance(n, nir.Affine) else None
        return sp.csr_matrix(np.asarray(n.weight, dtype=np.float64)), bias
    if isinstance(n, nir.Conv2d):
        stride, padding, dilation = conv_geometry(op.name, n)
        m = conv_matrix(n.weight, op.in_shape, stride, padding, dilation, int(n.groups))
        bias = np.repeat(np.asarray(n.bias, dtype=np.float64).ravel(), size(op.out_shape[1:]))
        return m, bias
    if isinstance(n, (nir.AvgPool2d, nir.SumPool2d)):
        return pool_matrix(op.in_shape, n.kernel_size, n.stride, n.padding, pool_scale(n)), None
    if isinstance(n, nir.Scale):
        s = np.broadcast_to(np.asarray(n.scale, dtype=np.float64), op.in_shape).ravel()
        return sp.diags(s, format="csr"), None
    if isinstance(n, nir.Flatten):
        return sp.identity(size(op.in_shape), format="csr"), None
    raise AssertionError(f"not a linear node: {op.kind}")


def _snap32(x: float) -> float:
    """Round a value recovered through float64 arithmetic back to the float32 it came from.

    ``1 - dt/(dt/(1 - beta))`` is ``beta`` only up to a few float64 ulps; the networks are trained in
    float32, so when a float32 lies within 1e-12 we take it, and the Lava neuron decays by exactly
    the trained beta.
    """
    x32 = float(np.float32(x))
    return x32 if abs(x32 - x) <= 1e-12 * max(1.0, abs(x)) else float(x)


def _snap32_all(x: np.ndarray) -> np.ndarray:
    """:func:`_snap32` of every value of an array."""
    x = np.asarray(x, dtype=np.float64)
    x32 = x.astype(np.float32).astype(np.float64)
    return np.where(np.abs(x32 - x) <= 1e-12 * np.maximum(1.0, np.abs(x)), x32, x)


def _snap_one(gain: np.ndarray) -> np.ndarray:
    """Input gains within 1e-12 of 1 are float64 round-off of ``r = tau/dt`` (or ``r = 1/dt``): make
    them exactly 1, so the weights are used as they are."""
    return np.where(np.abs(gain - 1.0) <= 1e-12, 1.0, gain)


def _uniform(name: str, kind: str, what: str, values: np.ndarray, per_neuron: bool = False):
    """One float when ``values`` agree to 1e-12 (their minimum, as before per-neuron values were
    supported), else: the array of values if ``per_neuron`` (the layer runs as
    :class:`~export.lava.procs.leaky_reset.LeakyReset`), or :class:`EslError`."""
    values = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if hi - lo > 1e-12 * max(1.0, abs(hi)):
        if per_neuron:
            return values.copy()
        raise EslError(f"node {name!r} ({kind}): {what} varies across neurons ({lo:g} .. {hi:g}); "
                       f"Lava's LIF has one {what} per population")
    return lo


def _per_neuron(name: str, kind: str, n: int):
    """A function broadcasting a node parameter (scalar or one value per neuron) to ``n`` float64 values."""
    def bc(a) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        if a.size == 1:
            return np.full(n, float(a.ravel()[0]))
        if a.size != n:
            raise EslError(f"node {name!r} ({kind}): a parameter has {a.size} values for {n} neurons")
        return a.ravel().copy()
    return bc


def _leaky_params(name: str, kind: str, node, bc, dt: float, per_neuron: bool = False):
    """(beta, gain, leak bias) of the Euler step of a leaky node: k = dt/tau, beta = 1 - k (one float,
    or with ``per_neuron`` an array where it varies), gain = k r, leak = k v_leak."""
    tau = bc(node.tau)
    if np.any(tau <= 0):
        raise EslError(f"node {name!r} ({kind}): tau must be positive")
    k = dt / tau
    if np.any(k > 1):
        raise EslError(f"node {name!r} ({kind}): dt/tau > 1 (tau < dt = {dt:g}); the Euler step is unstable")
    beta = _uniform(name, kind, "beta (1 - dt/tau)", 1.0 - k, per_neuron)
    beta = _snap32_all(beta) if isinstance(beta, np.ndarray) else _snap32(beta)
    return beta, _snap_one(k * bc(node.r)), k * bc(node.v_leak)


def _reset_mode(name: str, kind: str, node) -> Tuple[str, bool]:
    """(reset_mechanism, reset_delay) from the node's metadata (absent: ``zero``, False):
    :func:`export.nir.conventions.reset_from_metadata`."""
    return reset_from_metadata(name, node, ("zero", False))


def _neuron_params(name: str, node, shape: Tuple[int, ...], dt: float, mechanism: str):
    """(beta, threshold, gain per neuron, leak bias per neuron) of a LIF/IF node whose input is ``shape``;
    beta and threshold are floats, or arrays (torch order, flat) where they vary across neurons.

    ``v_reset`` must be 0 for ``mechanism`` ``zero`` (snnTorch resets to zero); ``subtract`` and ``none``
    do not use it."""
    kind = type(node).__name__
    thr = np.asarray(node.v_threshold, dtype=np.float64)
    if thr.size != size(shape) and thr.size != 1:
        raise EslError(f"node {name!r} ({kind}) has {thr.size} neurons but its input has shape {shape}")
    bc = _per_neuron(name, kind, size(shape))

    v_reset = node.v_reset if node.v_reset is not None else 0.0
    if mechanism == "zero" and np.any(bc(v_reset) != 0):
        raise EslError(f"node {name!r} ({kind}): v_reset must be 0 (Lava's LIF resets to zero)")
    threshold = _uniform(name, kind, "threshold", bc(node.v_threshold), per_neuron=True)
    if np.min(threshold) < 0:
        raise EslError(f"node {name!r} ({kind}): negative threshold {float(np.min(threshold)):g} is not supported")
    if isinstance(node, nir.IF):
        return 1.0, threshold, _snap_one(bc(node.r) * dt), np.zeros(size(shape))
    beta, gain, leak = _leaky_params(name, kind, node, bc, dt, per_neuron=True)
    return beta, threshold, gain, leak


def _readout_params(name: str, node, shape: Tuple[int, ...], dt: float):
    """(beta, gain per neuron, leak bias per neuron) of a LI/I readout node whose input is ``shape``."""
    kind = type(node).__name__
    n = size(shape)
    bc = _per_neuron(name, kind, n)
    if isinstance(node, nir.I):
        return 1.0, _snap_one(bc(node.r) * dt), np.zeros(n)
    return _leaky_params(name, kind, node, bc, dt)


def _fold_conv(ops: Tuple[Step, ...]):
    """(kernel, bias per channel, stride, padding, dilation, groups) when ``ops`` is one convolution,
    possibly preceded by a foldable pool (and a uniform Scale); else None. Torch layout and order."""
    scale, pool = 1.0, None
    for op in ops[:-1]:
        n = op.node
        if isinstance(n, (nir.AvgPool2d, nir.SumPool2d)) and pool is None:
            k, s, p = pair(n.kernel_size), pair(n.stride), pair(n.padding)
            if k != s or p != (0, 0) or op.in_shape[1] % k[0] or op.in_shape[2] % k[1]:
                return None
            pool = k
            scale *= pool_scale(n)
        elif isinstance(n, nir.Scale) and np.ptp(np.asarray(n.scale, dtype=np.float64)) == 0:
            scale *= float(np.asarray(n.scale, dtype=np.float64).ravel()[0])
        else:
            return None
    conv = ops[-1].node if ops else None
    if not isinstance(conv, nir.Conv2d):
        return None
    stride, padding, dilation = conv_geometry(ops[-1].name, conv)
    w = np.asarray(conv.weight, dtype=np.float64)
    bias = np.asarray(conv.bias, dtype=np.float64).ravel()
    if pool is None:
        return w * scale if scale != 1.0 else w, bias, stride, padding, dilation, int(conv.groups)
    if dilation != (1, 1):
        return None
    kh, kw = pool
    kernel = np.repeat(np.repeat(w, kh, axis=2), kw, axis=3) * scale
    return (kernel, bias, (kh * stride[0], kw * stride[1]), (kh * padding[0], kw * padding[1]), (1, 1),
            int(conv.groups))


def _segment_synapse(seg: Segment, gain: np.ndarray, graded: bool, synapse: str,
                     conv: str) -> Tuple[SynapseLayer, np.ndarray]:
    """One synapse layer for the linear nodes of ``seg`` and its bias (torch order), both times ``gain``."""
    ops, in_shape, out_shape = seg.ops, seg.in_shape, seg.neuron.in_shape
    names = tuple(op.name for op in ops)
    folded = None
    if len(in_shape) == 3 and len(out_shape) == 3 and np.all(gain == 1.0):
        folded = _fold_conv(ops)
        if folded is not None and conv_output_hw(in_shape[1:], folded[0].shape[2:], *folded[2:5]) != tuple(out_shape[1:]):
            folded = None
    if conv == "conv" and folded is not None:
        kernel, bias_c, stride, padding, dilation, groups = folded
        syn = SynapseLayer(kind="conv", in_shape=in_shape, out_shape=out_shape, weight=kernel, graded=graded,
                           stride=stride, padding=padding, dilation=dilation, groups=groups, nodes=names)
        return syn, np.repeat(bias_c, size(out_shape[1:]))
    m = sp.identity(size(in_shape), format="csr", dtype=np.float64)
    b = np.zeros(size(in_shape))
    for op in ops:
        m_op, b_op = _matrix(op)
        m = (m_op @ m).tocsr()
        b = m_op @ b + (b_op if b_op is not None else 0.0)
    if not np.all(gain == 1.0):
        m = (sp.diags(gain) @ m).tocsr()
        b = gain * b
    m.eliminate_zeros()
    m.sort_indices()
    hint = () if folded is None else (ConvShape(kernel=folded[0].shape, stride=folded[2], padding=folded[3],
                                                dilation=folded[4], groups=folded[5]),)
    return SynapseLayer(kind=synapse, in_shape=in_shape, out_shape=out_shape, weight=m, graded=graded,
                        nodes=names, convs=hint), np.asarray(b, dtype=np.float64)


def convert(graph: nir.NIRGraph, *, synapse: str = "sparse", conv: str = "conv",
            dt: Optional[float] = None, writer: Optional[str] = None) -> LavaNet:
    """Read a NIR graph into a :class:`LavaNet` (float parameters; see the module docstring).

    ``synapse``: ``sparse`` (Lava ``Sparse``, zeros dropped) or ``dense`` for matrix layers.
    ``conv``: ``conv`` realises convolutions (with pooling folded in) as Lava ``Conv``; ``matrix``
    expands them into matrices too. ``dt`` overrides ``graph.metadata["dt"]``; ``writer`` names the
    conventions the graph is read with (:mod:`export.nir.conventions`). A chain of the nodes this module
    lists converts as below; every other graph (branches, merges, loops, CubaLIF, ...) by
    :func:`export.lava.graph_convert.convert_graph`. Unsupported nodes and shape mismatches raise
    :class:`EslError`.
    """
    from ..nir.conventions import time_step, writer_of
    from .graph_convert import convert_graph

    if synapse not in SYNAPSE_KINDS:
        raise EslError(f"unknown synapse kind {synapse!r}; choose one of: {', '.join(SYNAPSE_KINDS)}")
    if conv not in CONV_MODES:
        raise EslError(f"unknown conv mode {conv!r}; choose one of: {', '.join(CONV_MODES)}")
    whole = walk(graph, ALL_TYPES, "the Lava converter")
    convention = writer_of(graph, writer)
    dt = time_step(graph, convention, dt)
    if not _chain_path(whole, convention):
        return convert_graph(whole, dt, convention, synapse=synapse, conv=conv, matrix=_matrix,
                             segment_synapse=_segment_synapse)
    chain = whole
    layers: List[LavaLayer] = []
    for seg in chain.segments():
        name, node, shape = seg.neuron.name, seg.neuron.node, seg.neuron.in_shape
        mechanism, delay = "zero", False
        if isinstance(node, (nir.LI, nir.I)):
            beta, gain, leak = _readout_params(name, node, shape, dt)
            threshold = READOUT_VTH
        else:
            mechanism, delay = _reset_mode(name, type(node).__name__, node)
            beta, threshold, gain, leak = _neuron_params(name, node, shape, dt, mechanism)
        syn, bias = _segment_synapse(seg, gain, graded=not layers, synapse=synapse, conv=conv)
        if not np.all(gain == 1.0) and syn.kind == "conv":
            raise AssertionError("gain must be folded into a matrix")
        neuron = NeuronLayer(name=name, node_type=seg.neuron.kind, shape=shape, beta=beta,
                             threshold=threshold, bias=bias + leak, reset_mechanism=mechanism, reset_delay=delay)
        layers.append(LavaLayer(synapse=syn, neuron=neuron))
    input_shape = chain.input_shape
    return LavaNet(input_shape=input_shape, layers=layers, dt=dt)


__all__ = ["CONV_MODES", "DEFAULT_DT", "LavaLayer", "LavaNet", "MODES", "NeuronLayer", "READOUT_NODE_TYPES",
           "READOUT_VTH", "SUPPORTED_NODES", "SYNAPSE_KINDS", "SynapseLayer", "conv_matrix", "conv_output_hw",
           "convert", "lava_order", "pool_matrix"]
