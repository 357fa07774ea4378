"""GraphNet: a spiking network that is a graph, not a chain, run as a torch module beside :class:`SpikingNet`.

:class:`SpikingNet` keeps running every chain of LIF/LI layers (all results of chains are its). A NIR
graph that branches, merges (residual adds), loops (recurrent edges), delays, or holds neuron kinds
SpikingNet has no layer for (``CubaLIF``, ``CubaLI``, ``Threshold``, ``v_leak``/``v_reset`` other than 0)
is read (``export.nir.read.from_nir``) into a GraphNet: one module per node, run in a topological order.

Semantics, per step ``t`` (input and outputs ``(T, B, ...)``):

- A node's input is the SUM of its inputs' outputs, in the order the graph lists the edges; a recurrent
  input (``Edge.recurrent``) is the source's output at ``t - 1``, at ``t = 0`` its output on zero input
  (0 for a neuron, the bias for an ``Affine``): NIR's one-step delay, what snnTorch's ``RLeaky`` computes.
- Linear nodes (``nn.Linear``, ``nn.Conv2d``, ``nn.AvgPool2d``, :class:`ScaleLayer`, ``nn.Flatten``) apply
  to one step; :class:`Shift` (NIR ``Delay``) gives its input of ``steps`` steps earlier (zeros before).
- :class:`Neuron` holds every neuron kind; its update is in its docstring.
- A neuron fed directly by another neuron (no synapse between them, e.g. the identity shortcut of a
  residual block) gets the spikes through an :class:`IdentityEdge`: an identity, present so that the cost
  model sees and charges that connection (``hw_models.sops``, ``hw_models.shortcuts``).

A graph without recurrent edges and ``Delay`` runs node by node over all ``T`` steps at once (linear
nodes see the steps folded into the batch, as in SpikingNet); otherwise step by step.
:meth:`GraphNet.forward` returns the Output's input; ``observe`` sees every node's input and output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .loihi2 import ACT_SHIFT, DECAY_UNITY, UV_LIMIT
from .neurons import RESET_MECHANISMS, lava_decay


def _buffer(value, shape) -> Optional[torch.Tensor]:
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float64)  # the float64 parameters the Lava converter uses too
    return t.expand(tuple(shape)).clone() if t.dim() == 0 else t.reshape(tuple(shape)).clone()


class Neuron(nn.Module):
    """A layer of neurons of shape ``neuron_shape``; every parameter is one value per neuron (``None``: absent).

    Per neuron, step ``t``, from rest (``I[-1] = U'[-1] = 0``)::

        x'[t]  = gain x[t]                        (gain absent: x'[t] = x[t])
        I[t]   = alpha I[t-1] + x'[t]             (a synaptic current: CubaLIF, CubaLI; absent: I[t] = x'[t])
        U[t]   = beta U'[t-1] + I[t] (+ leak)
        S[t]   = H(U[t] - theta)                  (spiking; a readout has no threshold: its output is U)
        U'[t]  = v_reset where S[t] else U[t]     (NIR: reset to v_reset; snnTorch's "zero": v_reset = 0)

    and snnTorch's other resets (``reset_mechanism`` subtract/none, ``reset_delay``) as in
    :mod:`esl_deploy.neurons` (reset signal ``r = H(U'[t-1] - theta)`` from the stored membrane). The ops
    and their order are snnTorch's ``Leaky``/``Synaptic`` (``beta * mem + input``, ``mem - S mem``), so a
    plain LIF steps exactly as :class:`esl_deploy.neurons.LIF`.

    ``fixed_point_scale`` (NIR metadata of a ``--weight-bits`` network's LIF, :func:`export.nir.write.lif_node`):
    the membrane is Loihi 2's integer membrane at that scale, stepped exactly as
    :class:`esl_deploy.neurons.FixedPointLIF` (``V = clip(lava_decay(V', dv) + 2^6 round(x S))``, spike when
    ``V > 2^6 round(theta S)``, reset to 0), the state ``U'`` holding the integer ``V``. Only a plain LIF (reset to
    zero without delay, no synaptic current, gain, leak or ``v_reset``) has this form.
    """

    def __init__(self, neuron_shape: Sequence[int], *, beta, threshold=None, alpha=None, gain=None, leak=None,
                 v_reset=None, reset_mechanism: str = "zero", reset_delay: bool = False,
                 fixed_point_scale: Optional[float] = None):
        super().__init__()
        self.neuron_shape = tuple(int(s) for s in neuron_shape)
        if reset_mechanism not in RESET_MECHANISMS:
            raise ValueError(f"unknown reset_mechanism {reset_mechanism!r}")
        if v_reset is not None and (reset_mechanism != "zero" or reset_delay):
            raise ValueError("v_reset other than 0 needs reset_mechanism 'zero' without reset_delay")
        self.reset_mechanism, self.reset_delay = reset_mechanism, bool(reset_delay)
        for name, value in (("beta", beta), ("threshold", threshold), ("alpha", alpha), ("gain", gain),
                            ("leak", leak), ("v_reset", v_reset)):
            self.register_buffer(name, _buffer(value, self.neuron_shape))
        self.fixed_point_scale = None if fixed_point_scale is None else float(fixed_point_scale)
        if self.fixed_point_scale is not None and (
                threshold is None or reset_mechanism != "zero" or reset_delay
                or any(v is not None for v in (alpha, gain, leak, v_reset))):
            raise ValueError("only a LIF that resets to zero without delay (no synaptic current, gain, leak or "
                             "v_reset) runs Loihi 2's integer membrane (fixed_point_scale)")

    def _fixed_step(self, x: torch.Tensor, state):
        """One step of the integer membrane (:class:`esl_deploy.neurons.FixedPointLIF`'s arithmetic, float64)."""
        scale = self.fixed_point_scale
        v = torch.zeros(x.shape, dtype=torch.float64, device=x.device) if state is None else state[1]
        dv = torch.clamp(torch.round((1.0 - self.beta.clamp(0, 1).double()) * DECAY_UNITY), max=DECAY_UNITY - 1)
        vth = torch.round(self.threshold.double() * scale) * 2 ** ACT_SHIFT
        v = lava_decay(v, dv) + torch.round(x.double() * scale) * 2 ** ACT_SHIFT
        v = v.clamp(-UV_LIMIT + 1, UV_LIMIT - 1)
        s = v > vth
        v = torch.where(s, torch.zeros_like(v), v)
        return s.to(x.dtype), (None, v)

    @property
    def spiking(self) -> bool:
        return self.threshold is not None

    def step(self, x: torch.Tensor, state: Optional[Tuple[torch.Tensor, torch.Tensor]]):
        """One step: ``x`` (B, *shape) -> (spikes, or the membrane of a readout; new state ``(I, U')``)."""
        if self.fixed_point_scale is not None:
            return self._fixed_step(x, state)
        if state is None:
            zeros = torch.zeros_like(x)
            state = (zeros, zeros)
        syn, mem = state
        dtype = x.dtype
        if self.gain is not None:
            x = x * self.gain.to(dtype)
        if self.alpha is not None:
            syn = self.alpha.to(dtype) * syn + x
            x = syn
        beta = self.beta.to(dtype)
        if not self.spiking:
            u = beta * mem + x
            if self.leak is not None:
                u = u + self.leak.to(dtype)
            return u, (syn, u)
        theta = self.threshold.to(dtype)
        mechanism, delay = self.reset_mechanism, self.reset_delay
        if mechanism == "zero" and not delay:
            u = beta * mem + x
            if self.leak is not None:
                u = u + self.leak.to(dtype)
            s = torch.gt(u, theta).to(dtype)
            if self.v_reset is not None:
                return s, (syn, torch.where(s > 0, self.v_reset.to(dtype), u))
            return s, (syn, torch.addcmul(u, s, u, value=-1.0))
        r = torch.gt(mem, theta).to(dtype)
        if mechanism == "zero":
            mem = mem - r * mem
        p = beta * mem + x
        if self.leak is not None:
            p = p + self.leak.to(dtype)
        if mechanism == "subtract":
            p = p - r * theta
        s = torch.gt(p, theta).to(dtype)
        if delay or mechanism == "none":
            return s, (syn, p)
        if mechanism == "subtract":
            return s, (syn, p - (s - r) * theta)
        return s, (syn, p - (s - r) * p)

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """All ``T`` steps from rest: ``current`` (T, B, *shape) -> spikes (or membrane) (T, B, *shape)."""
        state, out = None, []
        for t in range(current.shape[0]):
            y, state = self.step(current[t], state)
            out.append(y)
        return torch.stack(out)

    def extra_repr(self) -> str:
        kind = "spiking" if self.spiking else "readout"
        parts = [k for k in ("alpha", "gain", "leak", "v_reset") if getattr(self, k) is not None]
        fixed = "" if self.fixed_point_scale is None else f", fixed_point_scale={self.fixed_point_scale:g}"
        return f"neuron_shape={self.neuron_shape}, {kind}" + (f", with {', '.join(parts)}" if parts else "") + fixed


class Shift(nn.Module):
    """NIR ``Delay`` of ``steps`` time steps: ``y[t] = x[t - steps]``, zeros before."""

    def __init__(self, steps: int):
        super().__init__()
        if steps < 0:
            raise ValueError(f"a delay must be at least 0 steps, got {steps}")
        self.steps = int(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.steps == 0:
            return x
        pad = torch.zeros_like(x[: self.steps])
        return torch.cat([pad, x[: max(0, x.shape[0] - self.steps)]])[: x.shape[0]]

    def step(self, x: torch.Tensor, state: Optional[List[torch.Tensor]]):
        buf = list(state) if state is not None else [torch.zeros_like(x)] * self.steps
        buf.append(x)
        return buf[0], buf[1:]


class ScaleLayer(nn.Module):
    """NIR ``Scale``: ``y = x * s`` with ``s`` broadcast to one sample."""

    def __init__(self, scale):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.dtype)


class IdentityEdge(nn.Module):
    """A neuron's spikes sent straight into another neuron (no synapse): an identity. It exists so that the
    cost model counts the connection: one synaptic event per spike (``hw_models.sops``) and, on TrueNorth,
    relay neurons and axons (``hw_models.shortcuts``)."""

    def __init__(self, shape: Sequence[int], source: str, target: str):
        super().__init__()
        self.neuron_shape = tuple(int(s) for s in shape)
        self.source, self.target = source, target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


STATEFUL = (Neuron, Shift)


@dataclass(frozen=True)
class Node:
    """One node of a :class:`GraphNet`: its name, its module's key and its inputs ``(source, recurrent)``."""

    name: str
    key: str
    inputs: Tuple[Tuple[str, bool], ...]


class GraphNet(nn.Module):
    """A network whose nodes run in the topological order ``plan`` (module docstring).

    ``modules`` maps each node's key to its module; ``input_name`` is the graph's Input, whose value is
    the network input; ``output`` the names summed into the output. ``spec`` is the
    :class:`esl_deploy.models.ModelSpec` describing it (input shape, number of outputs, readout).
    """

    def __init__(self, *, spec, input_name: str, plan: Sequence[Node], modules: Dict[str, nn.Module],
                 output: Sequence[str], stepwise: bool):
        super().__init__()
        self.spec = spec
        self.input_name = input_name
        self.plan = list(plan)
        self.nodes = nn.ModuleDict(modules)
        self.output = list(output)
        self.stepwise = bool(stepwise)
        known = {input_name} | {n.name for n in self.plan}
        for node in self.plan:
            if node.key not in self.nodes:
                raise ValueError(f"node {node.name!r} has no module {node.key!r}")
            for src, _ in node.inputs:
                if src not in known:
                    raise ValueError(f"node {node.name!r} reads {src!r}, which is not a node")

    def module_of(self, name: str) -> nn.Module:
        for node in self.plan:
            if node.name == name:
                return self.nodes[node.key]
        raise KeyError(name)

    def neuron_names(self) -> List[str]:
        """Names of the neuron nodes in the order they run (the order of the Lava layers)."""
        return [n.name for n in self.plan if isinstance(self.nodes[n.key], Neuron)]

    def forward(self, x: torch.Tensor, T: Optional[int] = None,
                observe: Optional[Callable[[str, nn.Module, torch.Tensor, torch.Tensor], None]] = None) -> torch.Tensor:
        """``x`` (T, B, *input_shape) -> the Output's input (T, B, ...). ``x`` (B, ...) with ``T``: the same
        input at every step. ``observe(name, module, input, output)`` is called once per node with its
        whole (T, B, ...) input and output."""
        if T is not None:
            x = x.unsqueeze(0).expand(T, *x.shape)
        values = self._stepwise(x, observe) if self.stepwise else self._multistep(x, observe)
        return _sum([values[n] for n in self.output])

    def _multistep(self, x, observe):
        values = {self.input_name: x}
        for node in self.plan:
            module = self.nodes[node.key]
            h = _sum([values[src] for src, _ in node.inputs]).to(x.dtype)
            if isinstance(module, STATEFUL) or isinstance(module, IdentityEdge):
                y = module(h)
            else:
                T, B = h.shape[:2]
                y = module(h.reshape(T * B, *h.shape[2:]))
                y = y.reshape(T, B, *y.shape[1:])
            if observe is not None:
                observe(node.name, module, h, y)
            values[node.name] = y
        return values

    def _rest(self, x0: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Every node's output at rest (zero input, no state): what a recurrent edge carries at step 0."""
        rest = {self.input_name: torch.zeros_like(x0)}
        for node in self.plan:
            module = self.nodes[node.key]
            ins = [rest[src] for src, _ in node.inputs if src in rest]
            h = _sum(ins)
            if isinstance(module, Neuron) or isinstance(module, Shift):
                rest[node.name] = torch.zeros_like(h)
            else:
                rest[node.name] = module(h)
        return rest

    def _stepwise(self, x, observe):
        prev = self._rest(x[0])
        states: Dict[str, object] = {}
        seen: Dict[str, Tuple[List[torch.Tensor], List[torch.Tensor]]] = {}
        outs: Dict[str, List[torch.Tensor]] = {}
        for t in range(x.shape[0]):
            cur = {self.input_name: x[t]}
            for node in self.plan:
                module = self.nodes[node.key]
                h = _sum([prev[src] if rec else cur[src] for src, rec in node.inputs]).to(x.dtype)
                if isinstance(module, STATEFUL):
                    y, states[node.name] = module.step(h, states.get(node.name))
                else:
                    y = module(h)
                cur[node.name] = y
                if observe is not None:
                    rec = seen.setdefault(node.name, ([], []))
                    rec[0].append(h)
                    rec[1].append(y)
            for name in self.output:
                outs.setdefault(name, []).append(cur[name])
            prev = cur
        if observe is not None:
            for node in self.plan:
                h, y = seen[node.name]
                observe(node.name, self.nodes[node.key], torch.stack(h), torch.stack(y))
        return {name: torch.stack(v) for name, v in outs.items()}

    @torch.no_grad()
    def neuron_outputs(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The output (T, B, *shape) of every neuron node, in :meth:`neuron_names` order: spikes, or the
        membrane of a readout."""
        out: Dict[str, torch.Tensor] = {}

        def keep(name, module, h, y):
            if isinstance(module, Neuron):
                out[name] = y

        self.forward(x, observe=keep)
        return {name: out[name] for name in self.neuron_names()}


def _sum(values: List[torch.Tensor]) -> torch.Tensor:
    acc = values[0]
    for v in values[1:]:
        acc = acc + v
    return acc


__all__ = ["GraphNet", "IdentityEdge", "Neuron", "Node", "ScaleLayer", "Shift"]
