"""NIR graph -> Lava (lava-nc 0.10.0) network: description, fixed-point quantisation, and runner.

No public tool converts a general NIR graph into ``lava.proc`` processes (the NIR paper's
``nir_to_lava.py`` handles single-neuron LIF/Affine toys), so this module does it. It has three parts:

1. :func:`convert` reads a feed-forward NIR chain into a :class:`LavaNet`: a list of layers, each one
   synapse process and one LIF population. Every run of linear nodes between two neuron nodes
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

2. :func:`export.lava_fixed.quantize` adds Loihi 2 fixed-point parameters to every layer;
   :func:`export.lava_fixed.emulate_fixed` is the same integer arithmetic in numpy.

3. :func:`export.lava_run.run` builds the processes for a whole evaluation set, runs them once with
   ``Loihi2SimCfg(select_tag="floating_pt")`` or ``"fixed_pt"``, and returns the spikes of every
   layer, recorded by :class:`export.lava_procs.spike_recorder.SpikeRecorder` (Lava's own sink
   hands its buffer back one value per message, far too slow for a test set).

Neuron mapping. Explicit Euler of the NIR ``LIF`` (``tau dv/dt = v_leak - v + r I``) at the graph's
``dt`` (``graph.metadata["dt"]``, else snnTorch's ``1e-4``) is::

    v[t] = beta v[t-1] + g I[t] + (1 - beta) v_leak,    beta = 1 - dt/tau,   g = r dt / tau

and Lava's float ``LIF`` with ``du = 1`` is ``u[t] = a_in[t]``, ``v[t] = (1 - dv) v[t-1] + u[t] + bias``,
spike ``v > vth``, ``v <- 0``. So ``dv = 1 - beta``, ``vth = v_threshold``, the gain ``g`` multiplies
the synapse rows (``g = 1`` for snnTorch exports, ``r = tau/dt``), and the synapse bias times ``g``
plus ``(1 - beta) v_leak`` is the neuron bias. ``IF`` is the same with ``beta = 1``, ``g = r dt``.
Lava's ``du``, ``dv`` and ``vth`` are one value per population: beta and threshold must be uniform
within each layer, and ``v_reset`` must be 0 (Lava resets to zero).

Membrane readout. A NIR ``LI`` node (``tau dv/dt = v_leak - v + r I``, no threshold) as the LAST neuron
node becomes the same Lava float ``LIF`` (``du = 1``, ``dv = 1 - beta``, gain and bias as above; ``I``
is ``beta = 1``, gain ``r dt``) whose threshold is never reached: ``vth = +inf`` (``NeuronLayer.threshold``
is ``math.inf``), so the float model's ``v > vth`` is always false, nothing is reset and ``v`` is exactly
the leaky integrator ``v[t] = beta v[t-1] + I[t] + bias``. Its voltage ``v`` is read every step by
:class:`export.lava_procs.voltage_recorder.VoltageLIFReset` (a ``LIFReset`` that also writes ``v`` to a
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
neuron is a ``LIFReset`` with ``reset_interval = T`` and ``reset_offset = (1 + l) mod T``: it zeroes
``u`` and ``v`` at the start of exactly the step in which the first column of a new sample reaches
layer ``l``. The synapse buffers need no reset: the value a synapse delivers at that step is already
computed from the new sample (the pipeline carries each column through the layers in lock-step), so
nothing of the previous sample leaks in. One compiled network runs the whole set; this is exact
(tested against per-sample runs) and costs no extra steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

import nir
import numpy as np
import scipy.sparse as sp

from esl_deploy.errors import EslError

if TYPE_CHECKING:
    from .lava_fixed import FixedLayer

DEFAULT_DT = 1e-4  # snnTorch's export_nir constant, used when the graph's metadata has no "dt"

SUPPORTED_NODES = ("Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "SumPool2d", "Scale",
                   "Flatten", "LIF", "IF", "LI", "I")
READOUT_NODE_TYPES = ("LI", "I")  # non-spiking readout neurons: a Lava LIF with vth = inf, voltage recorded
READOUT_VTH = math.inf  # the threshold of a readout population: never reached
SYNAPSE_KINDS = ("sparse", "dense")
CONV_MODES = ("conv", "matrix")
MODES = ("float", "fixed")


# ----------------------------------------------------------------------------------------------------
# Description
# ----------------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class SynapseLayer:
    """One Lava synapse process in torch order (the Lava layout is derived when processes are built).

    ``kind`` ``sparse``/``dense``: ``weight`` is a CSR matrix (n_out, n_in) over torch-flattened
    (C, H, W) indices. ``conv``: ``weight`` is a torch-layout kernel (C_out, C_in/groups, kH, kW) and
    ``stride``/``padding``/``dilation`` are (H, W) pairs. ``graded``: the input carries values, not
    binary spikes (Lava's ``num_message_bits > 0``), true for the first layer.
    """

    kind: str
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    weight: Union[sp.csr_matrix, np.ndarray]
    graded: bool = False
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    nodes: Tuple[str, ...] = ()

    def __post_init__(self):
        self.in_shape = tuple(int(s) for s in self.in_shape)
        self.out_shape = tuple(int(s) for s in self.out_shape)
        if self.kind not in SYNAPSE_KINDS + ("conv",):
            raise ValueError(f"synapse kind must be one of sparse, dense, conv; got {self.kind!r}")
        if self.kind == "conv":
            if self.weight.ndim != 4 or len(self.in_shape) != 3 or len(self.out_shape) != 3:
                raise ValueError("a conv synapse needs a 4-d kernel and (C, H, W) shapes")
        else:
            self.weight = sp.csr_matrix(self.weight)
            if self.weight.shape != (_size(self.out_shape), _size(self.in_shape)):
                raise ValueError(f"weight {self.weight.shape} does not map {self.in_shape} to {self.out_shape}")

    def matrix(self) -> sp.csr_matrix:
        """The synapse as a (n_out, n_in) matrix in torch order (a conv is expanded)."""
        if self.kind != "conv":
            return self.weight
        return conv_matrix(self.weight, self.in_shape, self.stride, self.padding, self.dilation, self.groups)

    def weights_flat(self) -> np.ndarray:
        """All stored weight values (CSR data or the whole kernel)."""
        return self.weight.ravel() if self.kind == "conv" else self.weight.data


@dataclass(kw_only=True)
class NeuronLayer:
    """One LIF population: torch-order ``shape``, one ``beta`` and ``threshold``, per-neuron ``bias``.

    ``node_type`` ``LI``/``I``: the non-spiking membrane readout (``threshold = inf``, see the module
    docstring); :attr:`spiking` is False and its voltage, not its spikes, is the output."""

    name: str
    node_type: str
    shape: Tuple[int, ...]
    beta: float
    threshold: float
    bias: np.ndarray

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        self.bias = np.asarray(self.bias, dtype=np.float64).reshape(self.shape)
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"{self.name}: beta must lie in [0, 1], got {self.beta}")
        if not self.threshold >= 0:
            raise ValueError(f"{self.name}: threshold must be non-negative, got {self.threshold}")
        if not self.spiking and self.threshold != READOUT_VTH:
            raise ValueError(f"{self.name}: a {self.node_type} readout has threshold inf, got {self.threshold}")

    @property
    def spiking(self) -> bool:
        """False for the membrane readout (``LI``/``I``): it emits no spikes, its voltage is read."""
        return self.node_type not in READOUT_NODE_TYPES


@dataclass(kw_only=True)
class LavaLayer:
    synapse: SynapseLayer
    neuron: NeuronLayer
    fixed: Optional["FixedLayer"] = None  # set by export.lava_fixed.quantize


@dataclass(kw_only=True)
class LavaNet:
    """A feed-forward Lava network: ``layers[l]`` = synapse then LIF; input shape in torch order."""

    input_shape: Tuple[int, ...]
    layers: List[LavaLayer]
    dt: float = DEFAULT_DT
    input_max: Optional[float] = None
    input_min: float = 0.0

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        if not self.layers:
            raise ValueError("a Lava network needs at least one layer")

    @property
    def quantized(self) -> bool:
        return all(layer.fixed is not None for layer in self.layers)

    @property
    def output_shape(self) -> Tuple[int, ...]:
        return self.layers[-1].neuron.shape

    @property
    def readout(self) -> str:
        """``"membrane"`` when the last layer is a non-spiking LI/I readout, else ``"spikes"``."""
        return "spikes" if self.layers[-1].neuron.spiking else "membrane"

    def quant_errors(self) -> Dict[str, Dict[str, float]]:
        """Per-layer quantisation errors (empty before :func:`export.lava_fixed.quantize`)."""
        return {layer.neuron.name: dict(layer.fixed.errors) for layer in self.layers if layer.fixed is not None}


# ----------------------------------------------------------------------------------------------------
# Linear maps as matrices (torch order)
# ----------------------------------------------------------------------------------------------------

def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _pair(v) -> Tuple[int, int]:
    a = np.asarray(v).astype(np.int64).ravel()
    if a.size == 1:
        return int(a[0]), int(a[0])
    if a.size != 2:
        raise ValueError(f"expected one or two integers, got {v!r}")
    return int(a[0]), int(a[1])


def lava_order(shape: Sequence[int]) -> np.ndarray:
    """``perm`` with ``x_lava.ravel() == x_torch.ravel()[perm]``: Lava stores a torch (C, H, W) tensor
    as (W, H, C), i.e. with all axes reversed."""
    shape = tuple(int(s) for s in shape)
    return np.arange(_size(shape)).reshape(shape).transpose(tuple(reversed(range(len(shape))))).ravel()


def conv_output_hw(hw: Tuple[int, int], kernel: Tuple[int, int], stride: Tuple[int, int],
                   padding: Tuple[int, int], dilation: Tuple[int, int]) -> Tuple[int, int]:
    return tuple((hw[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2))


def conv_matrix(weight: np.ndarray, in_shape: Sequence[int], stride, padding, dilation, groups: int) -> sp.csr_matrix:
    """torch ``conv2d`` (cross-correlation, zero padding) as a CSR matrix over flattened (C, H, W) indices.

    ``out[o, y, x] = sum_{i, a, b} W[o, i, a, b] * in[g*C_in/groups + i, y*s - p + a*d, x*s - p + b*d]``.
    """
    weight = np.asarray(weight, dtype=np.float64)
    c_in, h, w = (int(s) for s in in_shape)
    c_out, c_grp, kh, kw = weight.shape
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    ho, wo = conv_output_hw((h, w), (kh, kw), stride, padding, dilation)
    o, i, y, x = np.meshgrid(np.arange(c_out), np.arange(c_grp), np.arange(ho), np.arange(wo), indexing="ij")
    cin = (o // (c_out // groups)) * c_grp + i
    rows_all, cols_all, vals_all = [], [], []
    for a in range(kh):  # one kernel tap at a time keeps memory at C_out * C_in/groups * H_out * W_out
        for b in range(kw):
            iy = y * stride[0] - padding[0] + a * dilation[0]
            ix = x * stride[1] - padding[1] + b * dilation[1]
            vals = weight[o, i, a, b]
            keep = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w) & (vals != 0)
            rows_all.append(((o * ho + y) * wo + x)[keep])
            cols_all.append(((cin * h + iy) * w + ix)[keep])
            vals_all.append(vals[keep])
    return sp.csr_matrix((np.concatenate(vals_all), (np.concatenate(rows_all), np.concatenate(cols_all))),
                         shape=(c_out * ho * wo, c_in * h * w))


def pool_matrix(in_shape: Sequence[int], kernel, stride, padding, scale: float) -> sp.csr_matrix:
    """Sum pooling times ``scale`` (``1/(kh*kw)`` for average pooling, padding counted) as a matrix."""
    c = int(in_shape[0])
    kh, kw = _pair(kernel)
    ones = np.zeros((c, 1, kh, kw))
    ones[:] = scale
    return conv_matrix(ones, in_shape, stride, padding, (1, 1), c)


# ----------------------------------------------------------------------------------------------------
# NIR graph -> LavaNet
# ----------------------------------------------------------------------------------------------------

@dataclass
class _Op:
    """One linear NIR node with its per-sample input/output shapes (torch order)."""

    name: str
    node: nir.NIRNode
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]

    @property
    def type(self) -> str:
        return type(self.node).__name__

    def matrix(self) -> Tuple[sp.csr_matrix, Optional[np.ndarray]]:
        """(M, b) with ``y = M x + b`` over torch-flattened indices."""
        n = self.node
        if isinstance(n, (nir.Affine, nir.Linear)):
            bias = np.asarray(n.bias, dtype=np.float64).ravel() if isinstance(n, nir.Affine) else None
            return sp.csr_matrix(np.asarray(n.weight, dtype=np.float64)), bias
        if isinstance(n, nir.Conv2d):
            stride, padding, dilation = _conv_geometry(self.name, n)
            m = conv_matrix(n.weight, self.in_shape, stride, padding, dilation, int(n.groups))
            bias = np.repeat(np.asarray(n.bias, dtype=np.float64).ravel(), _size(self.out_shape[1:]))
            return m, bias
        if isinstance(n, (nir.AvgPool2d, nir.SumPool2d)):
            return pool_matrix(self.in_shape, n.kernel_size, n.stride, n.padding, _pool_scale(n)), None
        if isinstance(n, nir.Scale):
            s = np.broadcast_to(np.asarray(n.scale, dtype=np.float64), self.in_shape).ravel()
            return sp.diags(s, format="csr"), None
        if isinstance(n, nir.Flatten):
            return sp.identity(_size(self.in_shape), format="csr"), None
        raise AssertionError(f"not a linear node: {self.type}")


def _pool_scale(node) -> float:
    return 1.0 / float(np.prod(_pair(node.kernel_size))) if isinstance(node, nir.AvgPool2d) else 1.0


def _conv_geometry(name: str, node: nir.Conv2d):
    stride, dilation = _pair(node.stride), _pair(node.dilation)
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, np.ndarray) and padding.dtype.kind in "SUO":
        padding = str(padding.ravel()[0].decode() if isinstance(padding.ravel()[0], bytes) else padding.ravel()[0])
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            k = node.weight.shape[2:]
            if any((dilation[i] * (k[i] - 1)) % 2 for i in range(2)):
                raise EslError(f"node {name!r} (Conv2d): padding 'same' with an even kernel is asymmetric; "
                               "Lava's Conv pads symmetrically")
            padding = tuple(dilation[i] * (k[i] - 1) // 2 for i in range(2))
        else:
            raise EslError(f"node {name!r} (Conv2d): unknown padding {padding!r}")
    return stride, _pair(padding), dilation


def _graph_parts(graph: nir.NIRGraph):
    """Validate the graph and return (input name, its shape, ordered list of (name, node)) of the chain."""
    if not isinstance(graph, nir.NIRGraph):
        raise EslError(f"expected a NIR graph, got {type(graph).__name__}")
    nodes = graph.nodes
    for name, node in nodes.items():
        kind = type(node).__name__
        if kind not in SUPPORTED_NODES:
            raise EslError(f"node {name!r} of type {kind} is not supported by the Lava converter "
                           f"(supported: {', '.join(SUPPORTED_NODES)})")
    succ: Dict[str, List[str]] = {n: [] for n in nodes}
    pred: Dict[str, List[str]] = {n: [] for n in nodes}
    for a, b in graph.edges:
        if a not in nodes or b not in nodes:
            raise EslError(f"edge {a!r} -> {b!r} names a node that is not in the graph")
        succ[a].append(b)
        pred[b].append(a)
    cycle = _find_cycle(succ)
    if cycle is not None:
        a, b = cycle
        raise EslError(f"recurrent edge {a!r} ({type(nodes[a]).__name__}) -> {b!r} ({type(nodes[b]).__name__}): "
                       "the Lava converter supports feed-forward graphs only")
    inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise EslError(f"the Lava converter needs exactly one Input and one Output node, found "
                       f"{len(inputs)} and {len(outputs)}")
    for n in nodes:
        if len(succ[n]) > 1:
            raise EslError(f"node {n!r} ({type(nodes[n]).__name__}) feeds {len(succ[n])} nodes; "
                           "the Lava converter supports chains without branches")
        if len(pred[n]) > 1:
            raise EslError(f"node {n!r} ({type(nodes[n]).__name__}) has {len(pred[n])} inputs; "
                           "the Lava converter supports chains without merges")
    chain = [inputs[0]]
    while succ[chain[-1]]:
        chain.append(succ[chain[-1]][0])
    if chain[-1] != outputs[0]:
        raise EslError(f"node {chain[-1]!r} ({type(nodes[chain[-1]]).__name__}) does not lead to the Output node")
    if len(chain) != len(nodes):
        left = sorted(set(nodes) - set(chain))
        raise EslError(f"nodes not on the input -> output chain: {', '.join(map(repr, left))}")
    shape = _io_shape(nodes[inputs[0]].input_type, inputs[0])
    return inputs[0], shape, [(n, nodes[n]) for n in chain[1:-1]], outputs[0]


def _find_cycle(succ: Dict[str, List[str]]) -> Optional[Tuple[str, str]]:
    """An edge that closes a cycle, or None (iterative DFS)."""
    state: Dict[str, int] = {}
    for start in succ:
        if state.get(start):
            continue
        stack = [(start, iter(succ[start]))]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return node, nxt
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return None


def _io_shape(types, name: str) -> Tuple[int, ...]:
    value = types.get("input") if isinstance(types, dict) else types
    if value is None and isinstance(types, dict) and types:
        value = next(iter(types.values()))
    if value is None:
        raise EslError(f"node {name!r} (Input) has no shape")
    shape = tuple(int(s) for s in np.asarray(value).ravel())
    if not shape or any(s <= 0 for s in shape):
        raise EslError(f"node {name!r} (Input) has an invalid shape {shape}")
    return shape


def _out_shape(name: str, node: nir.NIRNode, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """Per-sample output shape of a linear node, or EslError when ``shape`` is a wrong input for it."""
    kind = type(node).__name__
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight)
        if w.ndim != 2 or len(shape) != 1 or shape[0] != w.shape[1]:
            raise EslError(f"node {name!r} ({kind}) expects input of shape ({w.shape[-1]},), got {shape}")
        if isinstance(node, nir.Affine) and np.asarray(node.bias).size != w.shape[0]:
            raise EslError(f"node {name!r} ({kind}) has {np.asarray(node.bias).size} biases for {w.shape[0]} outputs")
        return (int(w.shape[0]),)
    if isinstance(node, nir.Conv2d):
        w = np.asarray(node.weight)
        groups = int(node.groups)
        if w.ndim != 4 or len(shape) != 3 or shape[0] != w.shape[1] * groups:
            raise EslError(f"node {name!r} ({kind}) expects input of shape ({w.shape[1] * groups}, H, W), got {shape}")
        stride, padding, dilation = _conv_geometry(name, node)
        hw = conv_output_hw(shape[1:], w.shape[2:], stride, padding, dilation)
        if min(hw) < 1:
            raise EslError(f"node {name!r} ({kind}): input {shape} is too small for its kernel")
        return (int(w.shape[0]),) + tuple(int(v) for v in hw)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        if len(shape) != 3:
            raise EslError(f"node {name!r} ({kind}) expects input of shape (C, H, W), got {shape}")
        k, s, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
        hw = conv_output_hw(shape[1:], k, s, p, (1, 1))
        if min(hw) < 1:
            raise EslError(f"node {name!r} ({kind}): input {shape} is too small for kernel {k}")
        return (shape[0],) + tuple(int(v) for v in hw)
    if isinstance(node, nir.Scale):
        try:
            np.broadcast_to(np.asarray(node.scale), shape)
        except ValueError:
            raise EslError(f"node {name!r} ({kind}) of shape {np.shape(node.scale)} got input of shape "
                           f"{shape}") from None
        return shape
    if isinstance(node, nir.Flatten):
        nd = len(shape)
        start, end = int(node.start_dim) % nd, int(node.end_dim) % nd
        if end < start:
            raise EslError(f"node {name!r} ({kind}): start_dim {node.start_dim} after end_dim {node.end_dim}")
        return shape[:start] + (_size(shape[start:end + 1]),) + shape[end + 1:]
    raise AssertionError(kind)


def _snap32(x: float) -> float:
    """Round a value recovered through float64 arithmetic back to the float32 it came from.

    ``1 - dt/(dt/(1 - beta))`` is ``beta`` only up to a few float64 ulps; the networks are trained in
    float32, so when a float32 lies within 1e-12 we take it, and the Lava neuron decays by exactly
    the trained beta.
    """
    x32 = float(np.float32(x))
    return x32 if abs(x32 - x) <= 1e-12 * max(1.0, abs(x)) else float(x)


def _snap_one(gain: np.ndarray) -> np.ndarray:
    """Input gains within 1e-12 of 1 are float64 round-off of ``r = tau/dt`` (or ``r = 1/dt``): make
    them exactly 1, so the weights are used as they are."""
    return np.where(np.abs(gain - 1.0) <= 1e-12, 1.0, gain)


def _uniform(name: str, kind: str, what: str, values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if hi - lo > 1e-12 * max(1.0, abs(hi)):
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


def _leaky_params(name: str, kind: str, node, bc, dt: float):
    """(beta, gain, leak bias) of the Euler step of a leaky node: k = dt/tau, beta = 1 - k (uniform),
    gain = k r, leak = k v_leak."""
    tau = bc(node.tau)
    if np.any(tau <= 0):
        raise EslError(f"node {name!r} ({kind}): tau must be positive")
    k = dt / tau
    if np.any(k > 1):
        raise EslError(f"node {name!r} ({kind}): dt/tau > 1 (tau < dt = {dt:g}); the Euler step is unstable")
    beta = _snap32(_uniform(name, kind, "beta (1 - dt/tau)", 1.0 - k))
    return beta, _snap_one(k * bc(node.r)), k * bc(node.v_leak)


def _neuron_params(name: str, node, shape: Tuple[int, ...], dt: float):
    """(beta, threshold, gain per neuron, leak bias per neuron) of a LIF/IF node whose input is ``shape``."""
    kind = type(node).__name__
    thr = np.asarray(node.v_threshold, dtype=np.float64)
    if thr.size != _size(shape) and thr.size != 1:
        raise EslError(f"node {name!r} ({kind}) has {thr.size} neurons but its input has shape {shape}")
    bc = _per_neuron(name, kind, _size(shape))

    v_reset = node.v_reset if node.v_reset is not None else 0.0
    if np.any(bc(v_reset) != 0):
        raise EslError(f"node {name!r} ({kind}): v_reset must be 0 (Lava's LIF resets to zero)")
    threshold = _uniform(name, kind, "threshold", bc(node.v_threshold))
    if threshold < 0:
        raise EslError(f"node {name!r} ({kind}): negative threshold {threshold:g} is not supported")
    if isinstance(node, nir.IF):
        return 1.0, threshold, _snap_one(bc(node.r) * dt), np.zeros(_size(shape))
    beta, gain, leak = _leaky_params(name, kind, node, bc, dt)
    return beta, threshold, gain, leak


def _readout_params(name: str, node, shape: Tuple[int, ...], dt: float):
    """(beta, gain per neuron, leak bias per neuron) of a LI/I readout node whose input is ``shape``."""
    kind = type(node).__name__
    n = _size(shape)
    bc = _per_neuron(name, kind, n)
    if isinstance(node, nir.I):
        return 1.0, _snap_one(bc(node.r) * dt), np.zeros(n)
    return _leaky_params(name, kind, node, bc, dt)


def _fold_conv(ops: List[_Op]):
    """(kernel, bias per channel, stride, padding, dilation, groups) when ``ops`` is one convolution,
    possibly preceded by a foldable pool (and a uniform Scale); else None. Torch layout and order."""
    scale, pool = 1.0, None
    for op in ops[:-1]:
        n = op.node
        if isinstance(n, (nir.AvgPool2d, nir.SumPool2d)) and pool is None:
            k, s, p = _pair(n.kernel_size), _pair(n.stride), _pair(n.padding)
            if k != s or p != (0, 0) or op.in_shape[1] % k[0] or op.in_shape[2] % k[1]:
                return None
            pool = k
            scale *= _pool_scale(n)
        elif isinstance(n, nir.Scale) and np.ptp(np.asarray(n.scale, dtype=np.float64)) == 0:
            scale *= float(np.asarray(n.scale, dtype=np.float64).ravel()[0])
        else:
            return None
    conv = ops[-1].node if ops else None
    if not isinstance(conv, nir.Conv2d):
        return None
    stride, padding, dilation = _conv_geometry(ops[-1].name, conv)
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


def _segment_synapse(ops: List[_Op], in_shape, out_shape, gain: np.ndarray, graded: bool,
                     synapse: str, conv: str) -> Tuple[SynapseLayer, np.ndarray]:
    """One synapse layer for the linear nodes ``ops`` and its bias (torch order), both times ``gain``."""
    names = tuple(op.name for op in ops)
    if conv == "conv" and len(in_shape) == 3 and len(out_shape) == 3 and np.all(gain == 1.0):
        folded = _fold_conv(ops)
        if folded is not None:
            kernel, bias_c, stride, padding, dilation, groups = folded
            syn = SynapseLayer(kind="conv", in_shape=in_shape, out_shape=out_shape, weight=kernel, graded=graded,
                               stride=stride, padding=padding, dilation=dilation, groups=groups, nodes=names)
            if conv_output_hw(in_shape[1:], kernel.shape[2:], stride, padding, dilation) == tuple(out_shape[1:]):
                return syn, np.repeat(bias_c, _size(out_shape[1:]))
    m = sp.identity(_size(in_shape), format="csr", dtype=np.float64)
    b = np.zeros(_size(in_shape))
    for op in ops:
        m_op, b_op = op.matrix()
        m = (m_op @ m).tocsr()
        b = m_op @ b + (b_op if b_op is not None else 0.0)
    if not np.all(gain == 1.0):
        m = (sp.diags(gain) @ m).tocsr()
        b = gain * b
    m.eliminate_zeros()
    m.sort_indices()
    return SynapseLayer(kind=synapse, in_shape=in_shape, out_shape=out_shape, weight=m, graded=graded,
                        nodes=names), np.asarray(b, dtype=np.float64)


def convert(graph: nir.NIRGraph, *, synapse: str = "sparse", conv: str = "conv",
            dt: Optional[float] = None) -> LavaNet:
    """Read a feed-forward NIR chain into a :class:`LavaNet` (float parameters; see the module docstring).

    ``synapse``: ``sparse`` (Lava ``Sparse``, zeros dropped) or ``dense`` for matrix layers.
    ``conv``: ``conv`` realises convolutions (with pooling folded in) as Lava ``Conv``; ``matrix``
    expands them into matrices too. ``dt`` overrides ``graph.metadata["dt"]``.
    Unsupported nodes, recurrent edges, branches and shape mismatches raise :class:`EslError`.
    """
    if synapse not in SYNAPSE_KINDS:
        raise EslError(f"unknown synapse kind {synapse!r}; choose one of: {', '.join(SYNAPSE_KINDS)}")
    if conv not in CONV_MODES:
        raise EslError(f"unknown conv mode {conv!r}; choose one of: {', '.join(CONV_MODES)}")
    _, input_shape, chain, _ = _graph_parts(graph)
    if dt is None:
        dt = float(np.asarray((graph.metadata or {}).get("dt", DEFAULT_DT)))
    if not (dt > 0 and math.isfinite(dt)):
        raise EslError(f"dt must be a positive number, got {dt}")
    layers: List[LavaLayer] = []
    shape = seg_in = input_shape
    ops: List[_Op] = []
    for name, node in chain:
        if layers and not layers[-1].neuron.spiking:
            last = layers[-1].neuron
            raise EslError(f"node {name!r} ({type(node).__name__}) follows the non-spiking {last.node_type} node "
                           f"{last.name!r}; the Lava converter supports LI/I only as the last (readout) layer")
        if isinstance(node, (nir.LIF, nir.IF, nir.LI, nir.I)):
            if isinstance(node, (nir.LI, nir.I)):
                beta, gain, leak = _readout_params(name, node, shape, dt)
                threshold = READOUT_VTH
            else:
                beta, threshold, gain, leak = _neuron_params(name, node, shape, dt)
            syn, bias = _segment_synapse(ops, seg_in, shape, gain, graded=not layers, synapse=synapse, conv=conv)
            if not np.all(gain == 1.0) and syn.kind == "conv":
                raise AssertionError("gain must be folded into a matrix")
            neuron = NeuronLayer(name=name, node_type=type(node).__name__, shape=shape, beta=beta,
                                 threshold=threshold, bias=bias + leak)
            layers.append(LavaLayer(synapse=syn, neuron=neuron))
            ops, seg_in = [], shape
        else:
            out = _out_shape(name, node, shape)
            ops.append(_Op(name=name, node=node, in_shape=shape, out_shape=out))
            shape = out
    if not layers:
        raise EslError("the graph has no LIF, IF, LI or I node: a Lava network needs at least one neuron layer")
    if ops:
        op = ops[0]
        raise EslError(f"node {op.name!r} ({op.type}) comes after the last spiking layer; "
                       "a Lava network must end in a LIF/IF layer (or an LI/I readout)")
    return LavaNet(input_shape=input_shape, layers=layers, dt=dt)


__all__ = ["CONV_MODES", "DEFAULT_DT", "LavaLayer", "LavaNet", "MODES", "NeuronLayer", "READOUT_NODE_TYPES",
           "READOUT_VTH", "SUPPORTED_NODES",
           "SYNAPSE_KINDS", "SynapseLayer", "conv_matrix", "conv_output_hw", "convert", "lava_order", "pool_matrix"]
