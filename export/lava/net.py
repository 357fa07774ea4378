"""The records of a Lava network and the linear maps they hold: :class:`LavaNet` (layers of one
:class:`SynapseLayer` and one :class:`NeuronLayer`, see :mod:`export.lava.convert`) with, once
quantised, a :class:`FixedLayer` per layer (:mod:`export.lava.fixed`), and the Loihi 2 fixed-point
limits those parameters must fit. Every other module of :mod:`export.lava` depends on this one.

Graphs. A layer's synapse reads the previous layer (or, for the first, the input) unless it lists
:class:`Part` s: then its weight's columns are the concatenation of several sources' outputs (other
layers, the input, the layer itself), each read ``shift`` steps late (a recurrent edge: 1; a NIR
``Delay``: its steps). :meth:`LavaNet.depths` places every layer in Lava's pipeline: layer ``l`` handles
input column ``j`` at step ``j + d(l) + 1`` (its depth ``d``: the synapses on its longest path from the
input); a part from a layer of depth ``d(s)`` reaches it after ``d(l) - d(s) - 1 + shift`` extra steps
(:meth:`LavaNet.delay`), realised by Lava's ``DelaySparse``/``DelayDense`` (a residual shortcut that skips
one layer: 1 step). A loop (a part with ``shift > 0`` from a layer of the same or greater depth) is
possible only where ``d(s) <= d(l) - 1 + shift``: a neuron's recurrent synapse onto itself, not a loop
through several layers whose NIR delay is one step while Lava's pipeline takes one step per synapse.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.sparse as sp

from esl_deploy.loihi2 import (A_IN_MAX, ACT_SHIFT, BIAS_EXP, BIAS_MANT_MAX, DECAY_UNITY,  # noqa: F401
                               INPUT_FRAC_BITS_MAX, INPUT_INT_MAX, SPLIT_EXP_MAX, UV_LIMIT, VTH_MAX, VTH_MIN,
                               VTH_TARGET, WEIGHT_MIXED_MAX, WEIGHT_SIGNED_MAX)

from ..nir.graph import conv_output_hw, pair, size
from .leaky import RESET_MECHANISMS, check_mode  # noqa: F401

DEFAULT_DT = 1e-4  # snnTorch's export_nir constant, used when the graph's metadata has no "dt"
READOUT_NODE_TYPES = ("LI", "I")  # non-spiking readout neurons: a Lava LIF with vth = inf, voltage recorded
READOUT_VTH = math.inf  # the threshold of a readout population: never reached
SYNAPSE_KINDS = ("sparse", "dense")

# Loihi 2 fixed-point limits: esl_deploy.loihi2 (shared with the trainer's quantisation-aware grid)
# quantity -> (lowest, highest, where Lava declares it); see the docstring of export.lava.fixed
WIDTHS: Dict[str, tuple] = {
    "a_in": (-A_IN_MAX - 1, A_IN_MAX, "16-bit signed: LIF a_in, Dense/Sparse a_out (precision=16)"),
    "u": (-UV_LIMIT + 1, UV_LIMIT - 1, "24-bit signed: LIF u (precision=24)"),
    "du": (0, DECAY_UNITY - 1, "12-bit unsigned: LIF du (precision=12)"),
    "dv": (0, DECAY_UNITY - 1, "12-bit unsigned: LIF dv (precision=12)"),
    "vth": (0, VTH_MAX, "17-bit unsigned: LIF vth (precision=17)"),
    "bias_mant": (-BIAS_MANT_MAX - 1, BIAS_MANT_MAX, "13-bit signed: LIF bias_mant (precision=13)"),
    "bias_exp": (0, 7, "3-bit: LIF bias_exp (precision=3)"),
    "weight": (-256, WEIGHT_SIGNED_MAX, "8 bits + sign: Dense/Sparse/Conv weights (precision=8, clip_weights)"),
    "input": (-INPUT_INT_MAX - 1, INPUT_INT_MAX, "16-bit graded input message (num_message_bits=16)"),
}


@dataclass(kw_only=True)
class FixedLayer:
    """Loihi 2 fixed-point parameters of one layer (see :func:`quantize`).

    A float current ``I`` is the integer activation ``a_in = I * scale``; the first layer's graded
    input ``x`` is sent as ``round(x * input_scale)``; so ``weight = W * scale / input_scale`` rounded
    to 8 bits (``weight_exp = 0``). ``vth = round(threshold * scale)``, ``dv = round((1 - beta) * 4096)``,
    ``du = 4095`` (with Lava's ``ds_offset = 1`` the current decays fully: ``u = a_in << 6``),
    ``bias_mant = round(bias * scale)`` with ``bias_exp = 6``. ``split_exp = k > 0``: the weights are
    realised as two 8-bit synapse groups, ``weight = hi * 2^k + lo`` (:func:`split_weights`).
    ``vth`` and ``dv`` are ints, or int64 arrays of the neuron shape where the layer's threshold or
    beta is per neuron.
    """

    scale: float
    input_scale: float
    weight: Union[sp.csr_matrix, np.ndarray]
    vth: Union[int, np.ndarray]
    dv: Union[int, np.ndarray]
    bias_mant: np.ndarray
    du: int = DECAY_UNITY - 1
    bias_exp: int = BIAS_EXP
    split_exp: int = 0
    errors: Dict[str, float] = field(default_factory=dict)
    v_reset: Union[int, np.ndarray] = 0  # round(v_reset * scale): a spike sets v to v_reset << 6
    current_bias: Optional[np.ndarray] = None  # round(current_bias * scale): added to a_in every step

    def __post_init__(self):
        if not (self.scale > 0 and self.input_scale > 0):
            raise ValueError(f"scale and input_scale must be positive, got {self.scale}, {self.input_scale}")
        self.vth, self.dv, self.v_reset = _ints(self.vth), _ints(self.dv), _ints(self.v_reset)
        if not np.all((0 <= self.vth) & (self.vth <= VTH_MAX)):
            raise ValueError(f"vth must fit 17 bits, got {_span(self.vth)}")
        if not (np.all((0 <= self.dv) & (self.dv < DECAY_UNITY)) and 0 <= self.du < DECAY_UNITY):
            raise ValueError(f"du and dv must fit 12 bits, got {self.du}, {_span(self.dv)}")
        if not (0 <= self.bias_exp <= 7 and 0 <= self.split_exp <= SPLIT_EXP_MAX):
            raise ValueError(f"bias_exp must lie in 0..7 and split_exp in 0..{SPLIT_EXP_MAX}")
        self.bias_mant = np.asarray(self.bias_mant, dtype=np.int64)
        if self.bias_mant.size and not (-BIAS_MANT_MAX - 1 <= self.bias_mant.min() <= self.bias_mant.max()
                                        <= BIAS_MANT_MAX):
            raise ValueError(f"bias_mant must fit 13 bits (-4096..4095), got {self.bias_mant.min()}.."
                             f"{self.bias_mant.max()}")


def _ints(value) -> Union[int, np.ndarray]:
    """An int, or an int64 array when ``value`` holds more than one value."""
    a = np.asarray(value)
    if a.size == 1:
        return int(a.ravel()[0])
    if not np.all(a == np.round(a)):
        raise ValueError(f"expected integers, got {_span(a)}")
    return a.astype(np.int64)


# ----------------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------------

INPUT = -1  # Part.source of the network input


@dataclass(frozen=True)
class Part:
    """``size`` consecutive input columns of a synapse: the output of layer ``source`` (an index into
    ``LavaNet.layers``, or :data:`INPUT`) of ``shift`` steps earlier (0 before the sample's first step)."""

    source: int
    size: int
    shift: int = 0

    def __post_init__(self):
        if self.source < INPUT or self.size < 1 or self.shift < 0:
            raise ValueError(f"a synapse part needs source >= -1, size >= 1 and shift >= 0, got {self}")


@dataclass(frozen=True)
class ConvShape:
    """The geometry of a torch ``conv2d`` (cross-correlation, zero padding): ``kernel`` is the kernel's shape
    (C_out, C_in/groups, kH, kW); ``stride``/``padding``/``dilation`` are (H, W) pairs."""

    kernel: Tuple[int, int, int, int]
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self):
        for name in ("kernel", "stride", "padding", "dilation"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if len(self.kernel) != 4 or min(self.kernel) < 1 or self.groups < 1 or self.kernel[0] % self.groups:
            raise ValueError(f"a convolution needs a 4-d kernel shape whose C_out divides by groups, got {self}")
        if min(self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(f"a convolution needs stride, dilation >= 1 and padding >= 0, got {self}")

    @classmethod
    def of(cls, syn: "SynapseLayer") -> "ConvShape":
        """The geometry of a ``conv`` synapse."""
        return cls(kernel=np.shape(syn.weight), stride=syn.stride, padding=syn.padding, dilation=syn.dilation,
                   groups=syn.groups)


@dataclass(kw_only=True)
class SynapseLayer:
    """One Lava synapse process in torch order (the Lava layout is derived when processes are built).

    ``kind`` ``sparse``/``dense``: ``weight`` is a CSR matrix (n_out, n_in) over torch-flattened
    (C, H, W) indices. ``conv``: ``weight`` is a torch-layout kernel (C_out, C_in/groups, kH, kW) and
    ``stride``/``padding``/``dilation`` are (H, W) pairs. ``graded``: the input carries values, not
    binary spikes (Lava's ``num_message_bits > 0``), true for the first layer.

    ``convs`` (matrix kinds only; empty: none known) holds, per part (one for a layer without parts), the
    :class:`ConvShape` its block of ``weight`` was expanded from, or None: a hint that lets
    :mod:`export.lava.emulate` run the block as a convolution (plus a sparse correction where the rounded
    block is not one). The matrix stays the definition.
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
    parts: Tuple[Part, ...] = ()  # empty: one part, the previous layer (the input for the first), shift 0
    convs: Tuple[Optional[ConvShape], ...] = ()  # per part: the convolution its block came from (a hint)

    def __post_init__(self):
        self.in_shape = tuple(int(s) for s in self.in_shape)
        self.out_shape = tuple(int(s) for s in self.out_shape)
        self.parts = tuple(self.parts)
        self.convs = tuple(self.convs)
        if self.convs and (self.kind == "conv" or len(self.convs) != max(1, len(self.parts))):
            raise ValueError(f"a {self.kind} synapse of {max(1, len(self.parts))} parts cannot hold {len(self.convs)} "
                             "convolution hints")
        if self.parts and sum(p.size for p in self.parts) != size(self.in_shape):
            raise ValueError(f"synapse parts of {[p.size for p in self.parts]} inputs do not make its input "
                             f"{self.in_shape}")
        if self.kind == "conv" and len(self.parts) > 1:
            raise ValueError("a conv synapse reads one source")
        if self.kind not in SYNAPSE_KINDS + ("conv",):
            raise ValueError(f"synapse kind must be one of sparse, dense, conv; got {self.kind!r}")
        if self.kind == "conv":
            if self.weight.ndim != 4 or len(self.in_shape) != 3 or len(self.out_shape) != 3:
                raise ValueError("a conv synapse needs a 4-d kernel and (C, H, W) shapes")
        else:
            self.weight = sp.csr_matrix(self.weight)
            if self.weight.shape != (size(self.out_shape), size(self.in_shape)):
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
    """One LIF population: torch-order ``shape``, ``beta`` and ``threshold``, per-neuron ``bias``.

    ``beta`` and ``threshold`` are floats (one value for the population, what Lava's stock ``LIF``
    holds) or arrays of ``shape`` (one value per neuron); an array whose values are all equal becomes
    that float. ``reset_mechanism`` (``zero``/``subtract``/``none``) and ``reset_delay`` are snnTorch
    ``Leaky``'s (formulas in :mod:`export.lava.leaky`); the default, ``zero`` without delay, is Lava's LIF.

    ``node_type`` ``LI``/``I``: the non-spiking membrane readout (``threshold = inf``, see
    :mod:`export.lava.convert`); :attr:`spiking` is False and its voltage, not its spikes, is the output."""

    name: str
    node_type: str
    shape: Tuple[int, ...]
    beta: Union[float, np.ndarray]
    threshold: Union[float, np.ndarray]
    bias: np.ndarray
    reset_mechanism: str = "zero"
    reset_delay: bool = False
    du: float = 1.0  # the synaptic current's decay per step (CubaLIF: 1 - alpha); 1: u = a_in (no current state)
    v_reset: Union[float, np.ndarray] = 0.0  # the value a spike resets v to (reset_mechanism "zero" only)
    # a bias into the synaptic current u (CubaLIF, du < 1: an Affine's bias decays with the current);
    # None: every bias is in ``bias``, added to v (with du = 1 the two are the same)
    current_bias: Optional[np.ndarray] = None

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        self.bias = np.asarray(self.bias, dtype=np.float64).reshape(self.shape)
        self.du = float(self.du)
        if not 0.0 <= self.du <= 1.0:
            raise ValueError(f"{self.name}: du must lie in [0, 1], got {self.du}")
        self.v_reset = self._values("v_reset", self.v_reset)
        if self.current_bias is not None:
            self.current_bias = np.asarray(self.current_bias, dtype=np.float64).reshape(self.shape)
            if not np.any(self.current_bias != 0):
                self.current_bias = None
        if np.any(np.asarray(self.v_reset) != 0) and (self.reset_mechanism, self.reset_delay) != ("zero", False):
            raise ValueError(f"{self.name}: v_reset != 0 needs reset_mechanism 'zero' without reset_delay")
        self.beta = self._values("beta", self.beta)
        self.threshold = self._values("threshold", self.threshold)
        if isinstance(self.reset_delay, np.bool_):
            self.reset_delay = bool(self.reset_delay)
        try:
            check_mode(self.reset_mechanism, self.reset_delay)
        except ValueError as e:
            raise ValueError(f"{self.name}: {e}") from None
        if not np.all((0.0 <= self.beta) & (self.beta <= 1.0)):
            raise ValueError(f"{self.name}: beta must lie in [0, 1], got {_span(self.beta)}")
        if not np.all(self.threshold >= 0):
            raise ValueError(f"{self.name}: threshold must be non-negative, got {_span(self.threshold)}")
        if not self.spiking and (not self.stock or self.threshold != READOUT_VTH):
            raise ValueError(f"{self.name}: a {self.node_type} readout has threshold inf, one beta and no reset, "
                             f"got threshold {_span(self.threshold)}, reset {self.reset_mechanism!r}")

    def _values(self, what: str, value) -> Union[float, np.ndarray]:
        a = np.asarray(value, dtype=np.float64)
        if a.size == 1:
            return float(a.ravel()[0])
        if a.size != size(self.shape):
            raise ValueError(f"{self.name}: {what} has {a.size} values for neurons of shape {self.shape}")
        a = a.reshape(self.shape).copy()
        return float(a.flat[0]) if np.all(a == a.flat[0]) else a

    @property
    def spiking(self) -> bool:
        """False for the membrane readout (``LI``/``I``): it emits no spikes, its voltage is read."""
        return self.node_type not in READOUT_NODE_TYPES

    @property
    def uniform(self) -> bool:
        """One beta and one threshold for the whole population."""
        return not isinstance(self.beta, np.ndarray) and not isinstance(self.threshold, np.ndarray)

    @property
    def stock(self) -> bool:
        """Lava's own ``LIF``/``LIFReset`` runs this layer: uniform, reset to zero without delay."""
        return self.uniform and self.reset_mechanism == "zero" and not self.reset_delay and not np.any(
            np.asarray(self.v_reset) != 0) and self.current_bias is None

    def per_neuron(self, what: str) -> np.ndarray:
        """``beta`` or ``threshold`` as an array of :attr:`shape`."""
        return np.broadcast_to(np.asarray(getattr(self, what), dtype=np.float64), self.shape).copy()


def _span(values) -> str:
    a = np.asarray(values, dtype=np.float64)
    return f"{float(a.min()):g}" if a.size == 1 or a.min() == a.max() else f"{float(a.min()):g} .. {float(a.max()):g}"


@dataclass(kw_only=True)
class LavaLayer:
    synapse: SynapseLayer
    neuron: NeuronLayer
    fixed: Optional[FixedLayer] = None  # set by export.lava.fixed.quantize


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
    def is_chain(self) -> bool:
        """Every layer reads only the one before it (the input for the first), with no shift."""
        return all(not layer.synapse.parts for layer in self.layers)

    def parts(self, index: int) -> Tuple[Part, ...]:
        """The parts of layer ``index`` (0-based), the default one spelt out."""
        syn = self.layers[index].synapse
        return syn.parts or (Part(source=index - 1 if index else INPUT, size=size(syn.in_shape)),)

    def depths(self) -> List[int]:
        """Every layer's depth ``d`` (module docstring), 1 for a layer of the input only; :class:`EslError`
        (naming the layers) where a loop cannot be placed in Lava's pipeline."""
        from esl_deploy.errors import EslError

        n = len(self.layers)
        d = [1] * n
        for _ in range(n + 1):
            changed = False
            for l in range(n):
                for p in self.parts(l):
                    need = (0 if p.source == INPUT else d[p.source]) + 1 - p.shift
                    if need > d[l]:
                        d[l], changed = need, True
            if not changed:
                return d
        loop = [self.layers[l].neuron.name for l in range(n) for p in self.parts(l)
                if p.shift > 0 and p.source != INPUT and d[p.source] > d[l] - 1 + p.shift]
        raise EslError(f"a loop through {loop or 'several layers'} takes more steps in Lava's pipeline (one per "
                       "synapse) than its NIR delay: only a neuron's recurrent synapse onto itself (or a loop "
                       "with as many steps of Delay as synapses) can run in Lava")

    def delay(self, index: int, part: Part, depths: Optional[List[int]] = None) -> int:
        """The extra steps the synapse of ``part`` into layer ``index`` delays by (module docstring)."""
        d = depths if depths is not None else self.depths()
        return d[index] - (0 if part.source == INPUT else d[part.source]) - 1 + part.shift

    @property
    def output_shape(self) -> Tuple[int, ...]:
        return self.layers[-1].neuron.shape

    @property
    def readout(self) -> str:
        """``"membrane"`` when the last layer is a non-spiking LI/I readout, else ``"spikes"``."""
        return "spikes" if self.layers[-1].neuron.spiking else "membrane"

    def quant_errors(self) -> Dict[str, Dict[str, float]]:
        """Per-layer quantisation errors (empty before :func:`export.lava.fixed.quantize`)."""
        return {layer.neuron.name: dict(layer.fixed.errors) for layer in self.layers if layer.fixed is not None}


# ----------------------------------------------------------------------------------------------------
# Linear maps as matrices (torch order)
# ----------------------------------------------------------------------------------------------------

def lava_order(shape: Sequence[int]) -> np.ndarray:
    """``perm`` with ``x_lava.ravel() == x_torch.ravel()[perm]``: Lava stores a torch (C, H, W) tensor
    as (W, H, C), i.e. with all axes reversed."""
    shape = tuple(int(s) for s in shape)
    return np.arange(size(shape)).reshape(shape).transpose(tuple(reversed(range(len(shape))))).ravel()


def conv_matrix(weight: np.ndarray, in_shape: Sequence[int], stride, padding, dilation, groups: int) -> sp.csr_matrix:
    """torch ``conv2d`` (cross-correlation, zero padding) as a CSR matrix over flattened (C, H, W) indices.

    ``out[o, y, x] = sum_{i, a, b} W[o, i, a, b] * in[g*C_in/groups + i, y*s - p + a*d, x*s - p + b*d]``.
    """
    weight = np.asarray(weight, dtype=np.float64)
    c_in, h, w = (int(s) for s in in_shape)
    c_out, c_grp, kh, kw = weight.shape
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
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
    kh, kw = pair(kernel)
    ones = np.zeros((c, 1, kh, kw))
    ones[:] = scale
    return conv_matrix(ones, in_shape, stride, padding, (1, 1), c)


__all__ = ["ACT_SHIFT", "A_IN_MAX", "BIAS_EXP", "BIAS_MANT_MAX", "ConvShape", "DECAY_UNITY", "DEFAULT_DT", "FixedLayer",
           "INPUT", "INPUT_FRAC_BITS_MAX", "INPUT_INT_MAX", "LavaLayer", "LavaNet", "NeuronLayer", "Part",
           "READOUT_NODE_TYPES", "READOUT_VTH", "RESET_MECHANISMS", "SPLIT_EXP_MAX", "SYNAPSE_KINDS", "SynapseLayer", "UV_LIMIT",
           "VTH_MAX", "VTH_MIN", "VTH_TARGET", "WEIGHT_MIXED_MAX", "WEIGHT_SIGNED_MAX", "WIDTHS",
           "conv_matrix", "lava_order", "pool_matrix"]
