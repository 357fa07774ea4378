"""The one walk over a NIR chain: every consumer of a NIR graph (our importer, the Lava converter, the
reader flavours, the simulator) reads the nodes in order through :func:`walk`.

A graph we run is a chain ``Input -> n_1 -> ... -> n_k -> Output`` (no cycle, branch or merge).
:func:`walk` checks that, once, with one wording of every error, and returns a :class:`Chain`: the
nodes in order as :class:`Step` records with their per-sample input and output shapes (torch order
``C, H, W``, no batch dimension). :meth:`Chain.segments` groups the steps into :class:`Segment` s: the
linear nodes (``Affine``/``Linear``, ``Conv2d``, ``AvgPool2d``/``SumPool2d``, ``Scale``, ``Flatten``)
feeding one neuron node (``LIF``, ``IF``, ``LI``, ``I``), with the pooling of the segment folded into one
factor (:attr:`Segment.pool_scale`), as a backend realises each segment as one synapse.

Shapes (NIR dims exclude the batch):

============================  ==========================================================================
node                          output shape for input shape ``s``
============================  ==========================================================================
``Affine(W, b)``/``Linear``   ``(W.shape[0],)``; needs ``s == (W.shape[1],)``
``Conv2d``                    ``(C_out, H', W')``, ``H' = (H + 2p - d (k - 1) - 1) // stride + 1``
``AvgPool2d``/``SumPool2d``   ``(C, H', W')`` with ``d = 1``
``Scale``                     ``s`` (the scale broadcasts to ``s``)
``Flatten(start, end)``       dims ``start..end`` of ``s`` (negative dims count from the end) multiplied
neurons                       ``s``
============================  ==========================================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import nir
import numpy as np

from esl_deploy.errors import EslError

LINEAR_TYPES = (nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d, nir.Scale, nir.Flatten)
NEURON_TYPES = (nir.LIF, nir.IF, nir.LI, nir.I)
READOUT_TYPES = (nir.LI, nir.I)  # non-spiking: only as the last neuron node (the membrane readout)
SUPPORTED = (nir.Input, nir.Output) + LINEAR_TYPES + NEURON_TYPES
# reader flavours (export.nir.flavours) whose graphs keep NIR's meaning of ours; others are refused
SAME_MEANING_FLAVOURS = ("snntorch", "norse")


def size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def pair(v) -> Tuple[int, int]:
    """One or two integers (a NIR kernel/stride/padding field) as an (H, W) pair."""
    a = np.asarray(v).astype(np.int64).ravel()
    if a.size == 1:
        return int(a[0]), int(a[0])
    if a.size != 2:
        raise ValueError(f"expected one or two integers, got {v!r}")
    return int(a[0]), int(a[1])


def conv_output_hw(hw: Tuple[int, int], kernel: Tuple[int, int], stride: Tuple[int, int],
                   padding: Tuple[int, int], dilation: Tuple[int, int]) -> Tuple[int, int]:
    return tuple((hw[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2))


def pool_scale(node: nir.NIRNode) -> float:
    """The factor of a pooling node over the window sum: ``1/(kh kw)`` for ``AvgPool2d``, 1 for ``SumPool2d``."""
    return 1.0 / float(np.prod(pair(node.kernel_size))) if isinstance(node, nir.AvgPool2d) else 1.0


def conv_geometry(name: str, node: nir.Conv2d) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
    """``(stride, padding, dilation)`` (H, W) pairs of a NIR Conv2d; ``"valid"``/``"same"`` padding as numbers."""
    stride, dilation = pair(node.stride), pair(node.dilation)
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, np.ndarray) and padding.dtype.kind in "SUO":
        first = padding.ravel()[0]
        padding = first.decode() if isinstance(first, bytes) else str(first)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            k = np.asarray(node.weight).shape[2:]
            if any((dilation[i] * (k[i] - 1)) % 2 for i in range(2)):
                raise EslError(f"node {name!r} of type Conv2d: padding 'same' with an even kernel is asymmetric")
            padding = tuple(dilation[i] * (k[i] - 1) // 2 for i in range(2))
        else:
            raise EslError(f"node {name!r} of type Conv2d: unknown padding {padding!r}")
    return stride, pair(padding), dilation


@dataclass(frozen=True)
class Step:
    """One node of the chain with its per-sample input and output shapes."""

    name: str
    node: nir.NIRNode
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]

    @property
    def kind(self) -> str:
        return type(self.node).__name__

    @property
    def label(self) -> str:
        return f"node {self.name!r} of type {self.kind}"

    @property
    def is_neuron(self) -> bool:
        return isinstance(self.node, NEURON_TYPES)


@dataclass(frozen=True)
class Segment:
    """The linear steps ``ops`` (possibly none) between the previous neuron node and ``neuron``.

    ``pool_scale`` is the product of the pooling factors in ``ops`` (:func:`pool_scale`): the window sums
    of the segment's pools times this factor are its average pools."""

    ops: Tuple[Step, ...]
    neuron: Step
    in_shape: Tuple[int, ...]

    @property
    def pool_scale(self) -> float:
        return float(np.prod([pool_scale(s.node) for s in self.ops if isinstance(s.node, (nir.AvgPool2d,
                                                                                          nir.SumPool2d))]))


@dataclass(frozen=True)
class Chain:
    """A checked chain: the Input and Output names, the input shape and the steps in between, in order."""

    input_name: str
    output_name: str
    input_shape: Tuple[int, ...]
    steps: Tuple[Step, ...]

    @property
    def output_shape(self) -> Tuple[int, ...]:
        return self.steps[-1].out_shape if self.steps else self.input_shape

    def neuron_names(self) -> List[str]:
        return [s.name for s in self.steps if s.is_neuron]

    def segments(self) -> List[Segment]:
        """The steps grouped as one :class:`Segment` per neuron node; :class:`EslError` when a linear node
        follows the last neuron node or a node follows a non-spiking LI/I readout."""
        out: List[Segment] = []
        ops: List[Step] = []
        seg_in = self.input_shape
        for step in self.steps:
            if out and isinstance(out[-1].neuron.node, READOUT_TYPES):
                last = out[-1].neuron
                raise EslError(f"{step.label} follows the non-spiking {last.kind} node {last.name!r}: LI/I is "
                               "supported only as the last (readout) layer")
            if step.is_neuron:
                out.append(Segment(ops=tuple(ops), neuron=step, in_shape=seg_in))
                ops, seg_in = [], step.out_shape
            else:
                ops.append(step)
        if not out:
            raise EslError("the graph has no LIF, IF, LI or I node: it needs at least one neuron layer")
        if ops:
            raise EslError(f"{ops[0].label} comes after the last neuron layer; the network must end in a "
                           "LIF/IF layer (or an LI/I readout)")
        return out


def walk(graph: nir.NIRGraph, supported: Sequence[type] = SUPPORTED, who: str = "esl_deploy") -> Chain:
    """Check that ``graph`` is a chain of ``supported`` nodes and return it with its shapes (:class:`Chain`).

    Checks, in order: the graph is not a reader flavour of another meaning (``metadata["flavour"]`` not in
    :data:`SAME_MEANING_FLAVOURS`); every node type is supported; edges name existing nodes; no cycle (recurrent
    edge); exactly one Input and one Output; no node feeds or sums more than one other; every node lies
    on the path from Input to Output; every node accepts the shape the one before it gives. ``who`` names
    the consumer in the messages.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise EslError(f"expected a NIR graph, got {type(graph).__name__}")
    flavour = (graph.metadata or {}).get("flavour")
    flavour = flavour.decode() if isinstance(flavour, bytes) else flavour
    if flavour is not None and str(flavour) not in SAME_MEANING_FLAVOURS:
        raise EslError(f"this graph was written for {flavour} (esl export --for {flavour}): its NIR meaning is "
                       f"{flavour}'s, not ours; export the default graph (no --for) for {who}")
    nodes = graph.nodes
    for name, node in nodes.items():
        if not isinstance(node, tuple(supported)):
            kinds = ", ".join(t.__name__ for t in supported)
            raise EslError(f"node {name!r} of type {type(node).__name__}: not supported by {who} "
                           f"(supported: {kinds})")
    succ: Dict[str, List[str]] = {n: [] for n in nodes}
    pred: Dict[str, List[str]] = {n: [] for n in nodes}
    for a, b in graph.edges:
        for n in (a, b):
            if n not in nodes:
                raise EslError(f"edge {a!r} -> {b!r} names a node {n!r} that is not in the graph")
        succ[a].append(b)
        pred[b].append(a)
    edge = _find_cycle(succ)
    if edge is not None:
        a, b = edge
        raise EslError(f"recurrent edge {a!r} -> {b!r} into node {b!r} of type {type(nodes[b]).__name__}: "
                       "recurrent graphs are not supported")
    inputs = [n for n, v in nodes.items() if isinstance(v, nir.Input)]
    outputs = [n for n, v in nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise EslError(f"graph must have exactly one Input and one Output node, has inputs {inputs} "
                       f"and outputs {outputs}")
    for name in nodes:
        kind = type(nodes[name]).__name__
        if len(succ[name]) > 1:
            raise EslError(f"node {name!r} of type {kind} feeds {len(succ[name])} nodes {succ[name]}: "
                           "branching graphs are not supported (only chains)")
        if len(pred[name]) > 1:
            raise EslError(f"node {name!r} of type {kind} sums {len(pred[name])} inputs {pred[name]}: "
                           "merging graphs (residual connections) are not supported (only chains)")
    names = [inputs[0]]
    while succ[names[-1]]:
        names.append(succ[names[-1]][0])
    if names[-1] != outputs[0]:
        raise EslError(f"the chain from Input {inputs[0]!r} ends at node {names[-1]!r}, not at Output {outputs[0]!r}")
    stray = [n for n in nodes if n not in set(names)]
    if stray:
        raise EslError(f"node {stray[0]!r} of type {type(nodes[stray[0]]).__name__} is not on the path from "
                       "Input to Output")
    shape = input_shape = _input_shape(nodes[inputs[0]], inputs[0])
    steps = []
    for name in names[1:-1]:
        out = output_shape(name, nodes[name], shape)
        steps.append(Step(name=name, node=nodes[name], in_shape=shape, out_shape=out))
        shape = out
    out_type = (nodes[outputs[0]].output_type or {}).get("output")
    if out_type is not None and np.asarray(out_type).size and tuple(int(s) for s in np.atleast_1d(out_type)) != shape:
        raise EslError(f"Output node {outputs[0]!r} has shape {tuple(np.atleast_1d(out_type))}, the network "
                       f"gives {shape}")
    return Chain(input_name=inputs[0], output_name=outputs[0], input_shape=input_shape, steps=tuple(steps))


def output_shape(name: str, node: nir.NIRNode, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """Per-sample output shape of one node (see the module docstring), or :class:`EslError` naming the node
    when ``shape`` is not an input it accepts."""
    label = f"node {name!r} of type {type(node).__name__}"
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight)
        if w.ndim != 2 or len(shape) != 1 or shape[0] != w.shape[1]:
            raise EslError(f"{label} expects input of shape ({w.shape[-1]},), got {shape}")
        if isinstance(node, nir.Affine) and np.asarray(node.bias).size != w.shape[0]:
            raise EslError(f"{label} has {np.asarray(node.bias).size} biases for {w.shape[0]} outputs")
        return (int(w.shape[0]),)
    if isinstance(node, nir.Conv2d):
        w = np.asarray(node.weight)
        groups = int(np.asarray(node.groups))
        if w.ndim != 4 or len(shape) != 3 or shape[0] != w.shape[1] * groups:
            raise EslError(f"{label} expects input of shape ({w.shape[1] * groups if w.ndim == 4 else '?'}, H, W), "
                           f"got {shape}")
        stride, padding, dilation = conv_geometry(name, node)
        hw = conv_output_hw(shape[1:], w.shape[2:], stride, padding, dilation)
        if min(hw) < 1:
            raise EslError(f"{label}: input {shape} is too small for its kernel")
        return (int(w.shape[0]),) + tuple(int(v) for v in hw)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        if len(shape) != 3:
            raise EslError(f"{label} expects input of shape (C, H, W), got {shape}")
        k, s, p = pair(node.kernel_size), pair(node.stride), pair(node.padding)
        hw = conv_output_hw(shape[1:], k, s, p, (1, 1))
        if min(hw) < 1:
            raise EslError(f"{label}: input {shape} is too small for kernel {k}")
        return (shape[0],) + tuple(int(v) for v in hw)
    if isinstance(node, nir.Scale):
        try:
            np.broadcast_to(np.asarray(node.scale), shape)
        except ValueError:
            raise EslError(f"{label} of shape {np.shape(node.scale)} got input of shape {shape}") from None
        return shape
    if isinstance(node, nir.Flatten):
        nd = len(shape)
        start, end = int(node.start_dim), int(node.end_dim)
        if not (-nd <= start < nd and -nd <= end < nd) or end % nd < start % nd:
            raise EslError(f"{label}: dims {start}..{end} do not fit an input of shape {shape}")
        start, end = start % nd, end % nd
        return shape[:start] + (size(shape[start:end + 1]),) + shape[end + 1:]
    if isinstance(node, NEURON_TYPES):
        return shape
    raise EslError(f"{label}: not supported")


def _input_shape(node: nir.Input, name: str) -> Tuple[int, ...]:
    types = node.input_type
    value = types.get("input") if isinstance(types, dict) else types
    if value is None and isinstance(types, dict) and types:
        value = next(iter(types.values()))
    if value is None:
        raise EslError(f"node {name!r} of type Input has no shape")
    shape = tuple(int(s) for s in np.asarray(value).ravel())
    if not shape or any(s <= 0 for s in shape):
        raise EslError(f"node {name!r} of type Input has an invalid shape {shape}")
    return shape


def _find_cycle(succ: Dict[str, List[str]]) -> Optional[Tuple[str, str]]:
    """An edge closing a cycle (a back edge of a depth-first search), or None for an acyclic graph."""
    state: Dict[str, int] = {}  # 1 on the current path, 2 done
    for root in succ:
        if state.get(root):
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
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


__all__ = ["Chain", "LINEAR_TYPES", "NEURON_TYPES", "READOUT_TYPES", "SAME_MEANING_FLAVOURS", "SUPPORTED",
           "Segment", "Step",
           "conv_geometry", "conv_output_hw", "output_shape", "pair", "pool_scale", "size", "walk"]
