"""Synaptic operations (SOPs) counted from real activity, and the FLOPs of the equivalent dense ANN.

Definitions (papers.md §3.1; NeuroBench ``SynapticOperations``, Yik et al. 2024):

- The **fan-out** of an input element j of a synaptic layer is its number of nonzero outgoing synapses.
  Linear ``W (out, in)``: ``fanout_j = #{i : W[i, j] != 0}``. Conv2d: the number of (output position,
  nonzero kernel tap) pairs that read input pixel j; zero padding is not an input, so taps that fall on
  padding are not counted ("nonzero taps times valid output positions").
- A layer's synaptic operations over one sample of T steps are
  ``ops = sum_t sum_j [x_j(t) != 0] * fanout_j``, i.e. one operation per (nonzero input, nonzero weight)
  pair, exactly NeuroBench's "effective" count (weight and activation sparsity both included).
- The operations are **accumulates (ACs = SOPs)** when the layer's input is binary (every value in
  {-1, 0, 1}, NeuroBench's rule), and **multiply-accumulates (MACs)** otherwise: the first layer on
  direct (analog) input, a layer after average pooling. The test is made per batch.
- All counts are **per-sample averages** over the data, summed over the T steps; ``ops_per_step`` keeps
  the per-step split.
- The **equivalent dense ANN** does one forward pass (no time steps) with every weight present:
  ``MACs_l = out_features * in_features`` (Linear) or ``C_out * H_out * W_out * (C_in / groups) * k_h *
  k_w`` (Conv2d, the conventional count that includes padding taps), and ``FLOPs = 2 * MACs`` (one
  multiply and one add). Biases, BatchNorm, pooling and activations are not counted (they are O(neurons),
  not O(synapses)).

Membrane readout (``readout="membrane"``): the last layer is a non-spiking leaky integrator
(``esl_deploy.neurons.LI``). Its synaptic layer receives spikes and is counted as above; the LI neurons
are counted as neurons (updated every step, so in ``neuron_updates``) that never spike (``spikes = 0``,
so never in ``active_updates``); their output is a membrane potential, not activity.

Residual shortcuts and other neuron-to-neuron edges (``kind = "identity"``): a spike sent straight into
another layer's neurons, with no synapse in between (the identity shortcut of
:class:`esl_deploy.models.BasicBlock`, or any :class:`esl_deploy.graphnet.IdentityEdge` of a graph read from
NIR), is one synaptic event per spike at its target: fan-out 1 per element, ``ops = sum_t sum_j [x_j(t) != 0]``,
counted as ACs, with as many synapses as elements (``synapses = weights = n``) and no MACs in the dense ANN
(its residual add is O(neurons), like a bias). The TrueNorth side is :mod:`hw_models.shortcuts`.
A projection shortcut (1x1 conv) is an ordinary ``conv2d`` layer. Graph networks
(:class:`esl_deploy.graphnet.GraphNet`) are counted from every node's whole input and output
(``GraphNet.forward(observe=...)``), in the order the nodes run, so recurrent graphs count too.

Pure counting functions (:func:`linear_fanout`, :func:`conv2d_fanout`, :func:`synaptic_ops`,
:func:`dense_macs`) take tensors; :class:`ActivityCounter` accumulates ``(name, layer, input, output)``
records (the format of ``SpikingNet.trace``) from any runner; :func:`count_activity` runs a PyTorch
model over data, feeding the counter from forward hooks, and returns an :class:`ActivityReport`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from esl_deploy.datasets import to_time_major
from esl_deploy.graphnet import GraphNet, IdentityEdge, Neuron
from esl_deploy.models import BasicBlock
from esl_deploy.neurons import LI, LIF

SYNAPSE_TYPES = (nn.Linear, nn.Conv2d)
SYNAPSE_KINDS = ("linear", "conv2d", "identity")  # identity: a neuron-to-neuron edge (module docstring)


# ----------------------------------------------------------------------------------------------
# Pure counting functions
# ----------------------------------------------------------------------------------------------

def is_binary(x: torch.Tensor) -> bool:
    """True iff every value of ``x`` is in {-1, 0, 1} (NeuroBench's test for spiking input)."""
    return bool(((x == 0) | (x == 1) | (x == -1)).all())


def linear_fanout(weight: torch.Tensor) -> torch.Tensor:
    """Nonzero outgoing synapses of each input of a Linear layer: ``(W != 0).sum(0)``, shape (in,)."""
    if weight.dim() != 2:
        raise ValueError(f"a Linear weight is (out, in), got shape {tuple(weight.shape)}")
    return (weight != 0).sum(0).to(torch.float64)


def conv2d_fanout(layer: nn.Conv2d, input_chw: Sequence[int]) -> torch.Tensor:
    """Nonzero outgoing synapses of each input pixel of ``layer`` for one (C, H, W) input, shape (C, H, W).

    ``fanout[c, y, x] = #{(o, oy, ox, ky, kx) : W[o, c', ky, kx] != 0 and the tap (ky, kx) of output
    (oy, ox) reads (y, x)}``. It is the gradient of ``sum(conv(x, W != 0))`` with respect to x, which is
    how it is computed (the layer's own stride, padding, padding mode, dilation and groups).
    """
    if len(input_chw) != 3:
        raise ValueError(f"a Conv2d input is (C, H, W), got {tuple(input_chw)}")
    wbin = (layer.weight.detach() != 0).to(torch.float64)
    x = torch.zeros(1, *input_chw, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        y = layer._conv_forward(x, wbin, None)
        (g,) = torch.autograd.grad(y.sum(), x)
    return g[0].round()


def synaptic_ops(x: torch.Tensor, fanout: torch.Tensor) -> torch.Tensor:
    """Operations per time step, summed over the batch: ``ops[t] = sum_b sum_j [x[t,b,j] != 0] * fanout_j``.

    ``x`` is (T, B, *in_shape) and ``fanout`` is (*in_shape); the result is a float64 tensor of shape (T,).
    """
    if tuple(x.shape[2:]) != tuple(fanout.shape):
        raise ValueError(f"input of shape {tuple(x.shape)} does not match fan-out of shape {tuple(fanout.shape)}")
    active = (x != 0).to(torch.float64).reshape(x.shape[0], x.shape[1], -1)
    return (active * fanout.reshape(1, 1, -1).to(torch.float64)).sum(dim=(1, 2))


def dense_macs(layer: nn.Module, input_shape: Sequence[int], output_shape: Sequence[int]) -> int:
    """MACs of one dense ANN forward pass of ``layer`` for one sample (see the module docstring).

    Linear: ``in * out``; Conv2d: ``C_out * H_out * W_out * (C_in / groups) * k_h * k_w``.
    """
    if isinstance(layer, nn.Linear):
        return layer.in_features * layer.out_features
    if isinstance(layer, nn.Conv2d):
        out = 1
        for s in output_shape:
            out *= int(s)
        kh, kw = layer.kernel_size
        return out * (layer.in_channels // layer.groups) * kh * kw
    raise ValueError(f"no MAC count for layer type {type(layer).__name__}")


def layer_fanout(layer: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    """Fan-out of every input element of a Linear or Conv2d layer, shaped like one sample's input."""
    if isinstance(layer, nn.Linear):
        if tuple(input_shape) != (layer.in_features,):
            raise ValueError(f"a Linear layer's input is ({layer.in_features},), got {tuple(input_shape)}")
        return linear_fanout(layer.weight.detach())
    if isinstance(layer, nn.Conv2d):
        return conv2d_fanout(layer, input_shape)
    if isinstance(layer, IdentityEdge):
        return torch.ones(tuple(input_shape), dtype=torch.float64)
    raise ValueError(f"no fan-out for layer type {type(layer).__name__}")


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SynapseActivity:
    """Per-sample activity of one synaptic layer (Linear or Conv2d), averaged over the data.

    ``acs`` / ``macs``: operations on binary / non-binary input, summed over the T steps;
    ``ops_per_step``: the same total split by step; ``input_rate``: fraction of the layer's input
    elements that are nonzero, per step (the firing rate of the layer's input);
    ``dense_macs``: MACs of one dense ANN forward pass of this layer.
    """

    name: str
    kind: str
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    synapses: int
    weights: int
    acs: float
    macs: float
    ops_per_step: Tuple[float, ...]
    input_rate: float
    dense_macs: int

    def __post_init__(self):
        object.__setattr__(self, "in_shape", tuple(int(s) for s in self.in_shape))
        object.__setattr__(self, "out_shape", tuple(int(s) for s in self.out_shape))
        object.__setattr__(self, "ops_per_step", tuple(float(v) for v in self.ops_per_step))
        if self.kind not in SYNAPSE_KINDS:
            raise ValueError(f"layer {self.name}: kind must be one of {', '.join(SYNAPSE_KINDS)}, got {self.kind!r}")
        if not 0 <= self.synapses <= self.weights or self.weights <= 0:
            raise ValueError(f"layer {self.name}: need 0 <= synapses <= weights and weights > 0, "
                             f"got {self.synapses}, {self.weights}")
        if self.acs < 0 or self.macs < 0 or self.dense_macs < 0:
            raise ValueError(f"layer {self.name}: operation counts must be non-negative")
        if not 0.0 <= self.input_rate <= 1.0:
            raise ValueError(f"layer {self.name}: input_rate must lie in [0, 1], got {self.input_rate}")
        if abs(sum(self.ops_per_step) - (self.acs + self.macs)) > 1e-6 * max(1.0, self.acs + self.macs):
            raise ValueError(f"layer {self.name}: ops_per_step must sum to acs + macs")

    @property
    def density(self) -> float:
        return self.synapses / self.weights

    @property
    def ops(self) -> float:
        """ACs + MACs per sample."""
        return self.acs + self.macs

    @property
    def flops(self) -> int:
        """FLOPs of one dense ANN forward pass: 2 * dense MACs."""
        return 2 * self.dense_macs

    @property
    def op_kind(self) -> str:
        """'AC' (binary input), 'MAC' (analog input), 'mixed' (both seen) or 'none' (no input activity)."""
        if self.acs > 0 and self.macs > 0:
            return "mixed"
        if self.macs > 0:
            return "MAC"
        return "AC" if self.acs > 0 else "none"


@dataclass(frozen=True)
class NeuronActivity:
    """Per-sample activity of one LIF layer: ``spikes`` summed over T; ``rate`` spikes per neuron per step.
    An LI readout layer is listed with ``spikes = rate = 0`` (it updates every step, it never spikes)."""

    name: str
    neurons: int
    spikes: float
    rate: float

    def __post_init__(self):
        if self.neurons <= 0:
            raise ValueError(f"layer {self.name}: neurons must be positive, got {self.neurons}")
        if self.spikes < 0 or not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"layer {self.name}: need spikes >= 0 and rate in [0, 1]")


@dataclass(frozen=True)
class ActivityReport:
    """What a network did on a data set, per sample: every synaptic layer's SOPs/MACs, every LIF layer's rate."""

    samples: int
    T: int
    encoding: str
    layers: Tuple[SynapseActivity, ...]
    neurons: Tuple[NeuronActivity, ...] = field(default_factory=tuple)
    accuracy: Optional[float] = None

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "neurons", tuple(self.neurons))
        if self.samples <= 0:
            raise ValueError(f"samples must be positive, got {self.samples}")
        if self.T < 1:
            raise ValueError(f"T must be at least 1, got {self.T}")
        if self.accuracy is not None and not 0.0 <= self.accuracy <= 1.0:
            raise ValueError(f"accuracy must lie in [0, 1], got {self.accuracy}")
        for l in self.layers:
            if len(l.ops_per_step) != self.T:
                raise ValueError(f"layer {l.name}: ops_per_step has {len(l.ops_per_step)} steps, T={self.T}")
        names = [l.name for l in self.layers]
        if len(set(names)) != len(names):
            raise ValueError("layer names must be unique")

    @property
    def acs(self) -> float:
        return sum(l.acs for l in self.layers)

    @property
    def macs(self) -> float:
        return sum(l.macs for l in self.layers)

    @property
    def sops(self) -> float:
        """Synaptic operations (ACs) per sample, NeuroBench's ``Effective_ACs``."""
        return self.acs

    @property
    def ops(self) -> float:
        return self.acs + self.macs

    @property
    def ann_macs(self) -> int:
        return sum(l.dense_macs for l in self.layers)

    @property
    def ann_flops(self) -> int:
        """FLOPs of one forward pass of the equivalent dense ANN (2 per MAC)."""
        return 2 * self.ann_macs

    @property
    def neuron_updates(self) -> int:
        """Neuron state updates per sample: every LIF neuron once per step."""
        return sum(n.neurons for n in self.neurons) * self.T

    @property
    def active_updates(self) -> float:
        """Neuron updates that emitted a spike, per sample."""
        return sum(n.spikes for n in self.neurons)

    def layer(self, name: str) -> SynapseActivity:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ActivityReport":
        return cls(samples=d["samples"], T=d["T"], encoding=d["encoding"],
                   layers=tuple(SynapseActivity(**l) for l in d["layers"]),
                   neurons=tuple(NeuronActivity(**n) for n in d.get("neurons", ())),
                   accuracy=d.get("accuracy"))


# ----------------------------------------------------------------------------------------------
# Running a model
# ----------------------------------------------------------------------------------------------

class _SynapseTally:
    """One synaptic layer's running totals."""

    def __init__(self, layer: nn.Module, in_shape: Tuple[int, ...], out_shape: Tuple[int, ...], device):
        self.layer, self.in_shape, self.out_shape = layer, in_shape, out_shape
        self.fanout = layer_fanout(layer, in_shape).to(device)
        self.acs = self.macs = self.nonzero = self.elements = 0.0
        self.per_step: Optional[torch.Tensor] = None


class ActivityCounter:
    """Accumulates activity records into an :class:`ActivityReport`; the stateful wrapper of the pure counts.

    A record is ``(name, module, input, output)`` with input and output time-major, (T, B, ...), the
    format of ``SpikingNet.trace``. Linear / Conv2d records add operations (:func:`synaptic_ops`, AC or
    MAC by :func:`is_binary` of the whole batch), LIF records add spikes, LI (readout) records add
    neurons without spikes; other records are ignored.
    :func:`count_activity` feeds it from forward hooks on a PyTorch run; any other runner (e.g. a Lava
    simulation whose recorded spikes are laid out the same way) can call :meth:`add` and
    :meth:`add_samples` itself.
    """

    def __init__(self, *, T: int, encoding: str):
        if T < 1:
            raise ValueError(f"T must be at least 1, got {T}")
        self.T, self.encoding = T, encoding
        self.synapses: Dict[str, _SynapseTally] = {}
        self.neurons: Dict[str, List[float]] = {}  # name -> [neurons, spikes, elements]
        self.samples = self.correct = self.labelled = 0

    def add(self, name: str, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add one layer's activity for one batch: ``x`` its input, ``y`` its output, both (T, B, ...)."""
        if x.shape[0] != self.T or y.shape[0] != self.T:
            raise ValueError(f"layer {name}: expected {self.T} time steps, got {x.shape[0]} and {y.shape[0]}")
        if isinstance(module, SYNAPSE_TYPES + (IdentityEdge,)):
            tally = self.synapses.get(name)
            if tally is None:
                tally = self.synapses[name] = _SynapseTally(module, tuple(x.shape[2:]), tuple(y.shape[2:]), x.device)
            ops = synaptic_ops(x, tally.fanout).cpu()
            total = float(ops.sum())
            if is_binary(x):
                tally.acs += total
            else:
                tally.macs += total
            tally.per_step = ops if tally.per_step is None else tally.per_step + ops
            tally.nonzero += float((x != 0).sum())
            tally.elements += x.numel()
        elif isinstance(module, (LIF, LI, Neuron)):
            n = 1
            for s in module.neuron_shape:
                n *= s
            rec = self.neurons.setdefault(name, [n, 0.0, 0.0])
            if isinstance(module, LIF) or (isinstance(module, Neuron) and module.spiking):
                rec[1] += float((y != 0).sum())  # an LI readout's output is its membrane: it never spikes
            rec[2] += y.numel()

    def add_samples(self, count: int, correct: Optional[int] = None) -> None:
        """Count ``count`` samples run (and ``correct`` right predictions among them, if labelled)."""
        if count < 0 or (correct is not None and not 0 <= correct <= count):
            raise ValueError(f"bad sample counts: {count}, {correct}")
        self.samples += count
        if correct is not None:
            self.correct += correct
            self.labelled += count

    def report(self) -> ActivityReport:
        """Per-sample averages of everything added so far."""
        if self.samples == 0:
            raise ValueError("no samples to count")
        n = self.samples
        layers = []
        for name, t in self.synapses.items():
            if isinstance(t.layer, IdentityEdge):
                kind, synapses = "identity", int(t.fanout.numel())
                weights, macs = synapses, 0
            else:
                w = t.layer.weight.detach()
                kind = "linear" if isinstance(t.layer, nn.Linear) else "conv2d"
                synapses, weights, macs = int((w != 0).sum()), w.numel(), dense_macs(t.layer, t.in_shape, t.out_shape)
            layers.append(SynapseActivity(
                name=name, kind=kind,
                in_shape=t.in_shape, out_shape=t.out_shape, synapses=synapses, weights=weights,
                acs=t.acs / n, macs=t.macs / n, ops_per_step=tuple(float(v) / n for v in t.per_step),
                input_rate=t.nonzero / t.elements if t.elements else 0.0, dense_macs=macs))
        neurons = tuple(NeuronActivity(name=k, neurons=int(v[0]), spikes=v[1] / n, rate=v[1] / v[2] if v[2] else 0.0)
                        for k, v in self.neurons.items())
        return ActivityReport(samples=n, T=self.T, encoding=self.encoding, layers=tuple(layers), neurons=neurons,
                              accuracy=(self.correct / self.labelled) if self.labelled else None)


def _time_major(x: torch.Tensor, T: int, B: int, sample_dims: int, name: str) -> torch.Tensor:
    """A hooked tensor as (T, B, ...): a folded (T*B, ...) tensor is unfolded (time-major folding)."""
    if x.dim() == sample_dims + 1 and x.shape[0] == T * B:
        return x.reshape(T, B, *x.shape[1:])
    if x.dim() == sample_dims + 2 and tuple(x.shape[:2]) == (T, B):
        return x
    raise RuntimeError(f"layer {name} saw a tensor of shape {tuple(x.shape)}, expected (T*B, ...) with "
                       f"T={T}, B={B}; is the model run in multi-step mode?")


def _sample_dims(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return 1
    if isinstance(module, nn.Conv2d):
        return 3
    if isinstance(module, BasicBlock):
        return 3
    return len(module.neuron_shape)


def _batches(data, batch_size: int) -> Iterable[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """(x, y-or-None) batches from a tensor, an (x, y) pair, a map-style data set (a torch or tonic
    Dataset) or an iterable (a list) of batches."""
    if isinstance(data, torch.Tensor):
        for i in range(0, len(data), batch_size):
            yield data[i:i + batch_size], None
        return
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data):
        x, y = data
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]
        return
    map_style = isinstance(data, torch.utils.data.Dataset) or (  # tonic's data sets are not torch Datasets
        hasattr(data, "__getitem__") and not isinstance(data, (list, tuple, dict)))
    if map_style and hasattr(data, "__len__"):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    for batch in data:
        if isinstance(batch, (list, tuple)):
            yield batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            yield batch, None


def count_activity(model: nn.Module, data, *, T: int, encoding: str, temporal: bool = False,
                   batch_size: int = 256, limit: Optional[int] = None, seed: int = 0,
                   progress: bool = False) -> ActivityReport:
    """Run ``model`` on ``data`` and count every synaptic layer's ACs/MACs and every LIF layer's spikes.

    ``data``: a tensor of inputs (B, ...), an ``(x, y)`` pair of tensors, a Dataset of ``(x, y)`` or an
    iterable of batches. Each batch goes through ``to_time_major(x, T, encoding, temporal)`` (rate
    encoding draws from a generator seeded with ``seed``) and then through ``model`` (T, B, ...) in
    eval mode without gradients. Forward hooks on every Linear / Conv2d / LIF / LI module (nested ones
    included, e.g. inside residual blocks) feed an :class:`ActivityCounter`. ``limit`` caps the number
    of samples. Counts are per-sample averages; ``accuracy`` is set when labels are given (prediction =
    most output spikes, or largest summed membrane of an LI readout).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    counter = ActivityCounter(T=T, encoding=encoding)
    batch = {"B": 0}
    handles = []
    graph = isinstance(model, GraphNet)
    for name, m in ([] if graph else model.named_modules()):
        if isinstance(m, SYNAPSE_TYPES + (LIF, LI)):
            def hook(module, inputs, output, name=name):
                dims = _sample_dims(module)
                counter.add(name, module, _time_major(inputs[0], T, batch["B"], dims, name),
                            _time_major(output, T, batch["B"], dims, name))
            handles.append(m.register_forward_hook(hook))
        elif isinstance(m, BasicBlock) and len(m.shortcut) == 0:  # the identity shortcut: see the docstring
            def block_hook(module, inputs, output, name=name):
                x = _time_major(inputs[0], T, batch["B"], 3, name)
                counter.add(f"{name}.shortcut", IdentityEdge(x.shape[2:], name, f"{name}.lif2"), x, x)
            handles.append(m.register_forward_hook(block_hook))
    if not any(isinstance(m, SYNAPSE_TYPES) for m in model.modules()):
        raise ValueError("the model has no Linear or Conv2d layer to count")
    observe = (lambda name, module, h, y: counter.add(name, module, h, y)) if graph else None
    generator = torch.Generator().manual_seed(seed)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    bar = None
    if progress:
        from tqdm import tqdm
        total = len(data) if hasattr(data, "__len__") and not isinstance(data, tuple) else None
        if limit is not None:
            total = limit if total is None else min(total, limit)
        bar = tqdm(total=total, unit="sample", desc="counting SOPs", leave=False)
    try:
        with torch.no_grad():
            for x, y in _batches(data, batch_size):
                if limit is not None:
                    if counter.samples >= limit:
                        break
                    x = x[: limit - counter.samples]
                    y = None if y is None else y[: limit - counter.samples]
                batch["B"] = x.shape[0]
                xt = to_time_major(x, T, encoding, temporal, generator).to(device)
                out = model(xt, observe=observe) if graph else model(xt)
                correct = None
                if y is not None:
                    correct = int((out.reshape(out.shape[0], out.shape[1], -1).sum(0).argmax(-1).cpu()
                                   == y.reshape(-1).cpu()).sum())
                counter.add_samples(x.shape[0], correct)
                if bar is not None:
                    bar.update(x.shape[0])
    finally:
        for h in handles:
            h.remove()
        if bar is not None:
            bar.close()
        model.train(was_training)
    return counter.report()


def dense_ann_flops(model: nn.Module, input_shape: Sequence[int]) -> Dict[str, int]:
    """FLOPs (2 * MACs) of one dense forward pass of each Linear/Conv2d layer, for one sample of ``input_shape``.

    Runs the model once on zeros (T=1, B=1) to learn every layer's input and output shape.
    """
    shapes: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, SYNAPSE_TYPES):
            def hook(module, inputs, output, name=name):
                shapes[name] = (tuple(inputs[0].shape[1:]), tuple(output.shape[1:]))
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            model(torch.zeros(1, 1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
    mods = dict(model.named_modules())
    return {n: 2 * dense_macs(mods[n], s_in, s_out) for n, (s_in, s_out) in shapes.items()}
