"""The one walk over a NIR graph: every consumer of a NIR graph (our importer, the Lava converter, the
reader flavours, the simulator, the cost model) reads the nodes through :func:`walk`.

:func:`walk` flattens nested graphs (:func:`flatten`), checks the graph once, with one wording of every
error, and returns a :class:`Graph`: the nodes in a topological order as :class:`Step` records with
their per-sample input and output shapes (torch order ``C, H, W``, no batch dimension) and their
inputs (:class:`Edge`). A graph may branch, merge and loop:

- **Merges.** A node with several predecessors gets the SUM of their outputs (NIR's rule); all of them
  must give the same shape. A residual block is ``x -> conv1 -> lif1 -> conv2 -> lif2`` plus ``x -> lif2``
  (identity shortcut) or ``x -> shortcut conv -> lif2``.
- **Recurrent edges.** An edge that closes a cycle (a back edge of a depth-first search from the Input
  that follows every node's out-edges in the order the graph lists them) carries what its source
  computed one step earlier: NIR's one-step delay. At the first step a source has seen no input: a
  neuron node gives 0, a linear node its value on zero input (an ``Affine`` its bias), which is what
  snnTorch's ``RLeaky`` computes (``recurrent(spk)`` with the initial ``spk = 0``). snnTorch writes
  ``RLeaky``/``RSynaptic`` as ``lif -> w_rec -> lif``: the back edge is ``w_rec -> lif``.
- **Nested graphs** (``NIRGraph`` nodes, as snnTorch's importer and the NIR paper's RNN write them) are
  flattened: node ``n`` of subgraph ``g`` becomes ``g.n``; the subgraph's own Input and Output nodes
  are wired through (an edge into ``g`` goes to what ``g``'s Input feeds, an edge out of ``g`` leaves
  from what feeds ``g``'s Output). An edge may also name an inner node as ``g.n``.
- ``Delay`` shifts its input by ``delay / dt`` steps (zeros before); consumers convert it with their dt.

The graph must have exactly one Input and one Output, every node must lie on a path from the Input to
the Output, and exact duplicate edges count once. :attr:`Graph.is_chain` is true for the graphs the
project ran before graphs (``Input -> n_1 -> ... -> n_k -> Output``), and :meth:`Graph.segments` groups a
chain's steps into :class:`Segment` s: the linear nodes (``Affine``/``Linear``, ``Conv2d``,
``AvgPool2d``/``SumPool2d``, ``Scale``, ``Flatten``) feeding one neuron node (``LIF``, ``IF``, ``CubaLIF``,
``LI``, ``I``, ``CubaLI``, ``Threshold``), with the pooling of the segment folded into one factor
(:attr:`Segment.pool_scale`), as a backend realises each segment as one synapse.

Shapes (NIR dims exclude the batch):

============================  ==========================================================================
node                          output shape for input shape ``s``
============================  ==========================================================================
``Affine(W, b)``/``Linear``   ``(W.shape[0],)``; needs ``s == (W.shape[1],)``
``Conv2d``                    ``(C_out, H', W')``, ``H' = (H + 2p - d (k - 1) - 1) // stride + 1``
``AvgPool2d``/``SumPool2d``   ``(C, H', W')`` with ``d = 1``
``Scale``                     ``s`` (the scale broadcasts to ``s``)
``Flatten(start, end)``       dims ``start..end`` of ``s`` (negative dims count from the end) multiplied
neurons, ``Delay``            ``s``
============================  ==========================================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import nir
import numpy as np

from esl_deploy.errors import EslError

LINEAR_TYPES = (nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d, nir.Scale, nir.Flatten)
NEURON_TYPES = (nir.LIF, nir.IF, nir.CubaLIF, nir.LI, nir.I, nir.CubaLI, nir.Threshold)
READOUT_TYPES = (nir.LI, nir.I, nir.CubaLI)  # non-spiking: only as the last neuron node (the membrane readout)
# every node type the walker knows (nested NIRGraphs are flattened before this is checked)
ALL_TYPES = (nir.Input, nir.Output) + LINEAR_TYPES + NEURON_TYPES + (nir.Delay,)
# the node types the chain-only consumers read (what ran before graphs)
SUPPORTED = (nir.Input, nir.Output) + LINEAR_TYPES + (nir.LIF, nir.IF, nir.LI, nir.I)
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
class Edge:
    """One input of a node: its ``source`` node and whether the edge is recurrent (carries the source's
    value of the previous step, NIR's one-step delay)."""

    source: str
    recurrent: bool = False


@dataclass(frozen=True)
class Step:
    """One node with its per-sample input and output shapes and its inputs (summed), in edge order."""

    name: str
    node: nir.NIRNode
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    inputs: Tuple[Edge, ...] = ()

    @property
    def kind(self) -> str:
        return type(self.node).__name__

    @property
    def label(self) -> str:
        return f"node {self.name!r} of type {self.kind}"

    @property
    def is_neuron(self) -> bool:
        return isinstance(self.node, NEURON_TYPES)

    @property
    def is_spiking(self) -> bool:
        """A neuron node that emits spikes (not an ``LI``/``I``/``CubaLI`` readout)."""
        return self.is_neuron and not isinstance(self.node, READOUT_TYPES)


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
class Graph:
    """A checked graph: the Input and Output names, the input shape, the steps in a topological order
    of the non-recurrent edges (Input and Output excluded), and the Output's inputs."""

    input_name: str
    output_name: str
    input_shape: Tuple[int, ...]
    steps: Tuple[Step, ...]
    output_inputs: Tuple[Edge, ...] = ()

    @property
    def output_shape(self) -> Tuple[int, ...]:
        if not self.output_inputs:
            return self.steps[-1].out_shape if self.steps else self.input_shape
        return self.shape_of(self.output_inputs[0].source)

    def shape_of(self, name: str) -> Tuple[int, ...]:
        """The per-sample output shape of node ``name`` (the Input's shape for the Input)."""
        if name == self.input_name:
            return self.input_shape
        return self.step(name).out_shape

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def is_chain(self) -> bool:
        """``Input -> n_1 -> ... -> n_k -> Output``: one non-recurrent input per node, from the node before."""
        prev = self.input_name
        for s in self.steps:
            if s.inputs != (Edge(prev),):
                return False
            prev = s.name
        return self.output_inputs in ((), (Edge(prev),))

    @property
    def recurrent(self) -> bool:
        """True when some edge is recurrent."""
        return any(e.recurrent for s in self.steps for e in s.inputs)

    def neuron_names(self) -> List[str]:
        return [s.name for s in self.steps if s.is_neuron]

    def require_chain(self, who: str) -> "Graph":
        """``self``, or :class:`EslError` naming the first node that makes the graph not a chain."""
        prev = self.input_name
        for s in self.steps:
            if s.inputs != (Edge(prev),):
                rec = [e.source for e in s.inputs if e.recurrent]
                if rec:
                    what = f"a recurrent edge from {rec[0]!r}"
                elif len(s.inputs) > 1:
                    what = f"a merge of {[e.source for e in s.inputs]}"
                else:
                    what = f"an input from {s.inputs[0].source!r} instead of {prev!r} (a branch)"
                raise EslError(f"{s.label} has {what}: {who} runs chains only")
            prev = s.name
        return self

    def segments(self) -> List[Segment]:
        """The steps of a chain grouped as one :class:`Segment` per neuron node; :class:`EslError` when the
        graph is not a chain, a linear node follows the last neuron node or a node follows a non-spiking
        LI/I readout."""
        self.require_chain("this consumer")
        out: List[Segment] = []
        ops: List[Step] = []
        seg_in = self.input_shape
        for step in self.steps:
            if out and isinstance(out[-1].neuron.node, READOUT_TYPES):
                last = out[-1].neuron
                raise EslError(f"{step.label} follows the non-spiking {last.kind} node {last.name!r}: LI/I is "
                               "supported only as the last (readout) layer")
            if isinstance(step.node, nir.Delay):
                raise EslError(f"{step.label}: a Delay in a chain is run by the graph consumers only")
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


Chain = Graph  # the name of the record before graphs; a chain is a Graph with is_chain


class _Port:
    """A nested graph's own Input or Output node while flattening: wired through, then removed."""


def flatten(graph: nir.NIRGraph, prefix: str = "") -> Tuple[Dict[str, object], List[Tuple[str, str]]]:
    """The nodes and edges of ``graph`` with every nested ``NIRGraph`` replaced by its nodes (named
    ``<subgraph>.<node>``) and its Input/Output wired through (module docstring). Duplicate edges count once."""
    nodes: Dict[str, object] = {}
    edges: List[Tuple[str, str]] = []
    ports: Dict[str, Tuple[str, str]] = {}  # subgraph name -> (its input port, its output port), flat names
    for name, node in graph.nodes.items():
        full = prefix + str(name)
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = flatten(node, full + ".")
            ins = [n for n, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [n for n, v in node.nodes.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise EslError(f"subgraph {full!r} has Input nodes {ins} and Output nodes {outs}: a nested "
                               "NIRGraph needs exactly one of each")
            i_port, o_port = f"{full}.{ins[0]}", f"{full}.{outs[0]}"
            sub_nodes[i_port] = sub_nodes[o_port] = None  # replaced below
            nodes.update(sub_nodes)
            nodes[i_port], nodes[o_port] = _Port(), _Port()
            edges.extend(sub_edges)
            ports[full] = (i_port, o_port)
        else:
            nodes[full] = node
    for a, b in graph.edges:
        a, b = _decode(a), _decode(b)
        src, dst = prefix + a, prefix + b
        if src in ports:
            src = ports[src][1]
        if dst in ports:
            dst = ports[dst][0]
        edges.append((src, dst))
    if prefix:
        return nodes, edges
    return _remove_ports(nodes, _unique(edges))


def _decode(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def _unique(edges: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    seen, out = set(), []
    for e in edges:
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out


def _remove_ports(nodes: Dict[str, object], edges: List[Tuple[str, str]]):
    """Wire every :class:`_Port` through: each edge out of a port starts at the port's (real) sources."""
    ports = {n for n, v in nodes.items() if isinstance(v, _Port)}
    if not ports:
        return nodes, edges
    pred: Dict[str, List[str]] = {}
    for a, b in edges:
        pred.setdefault(b, []).append(a)

    def sources(port: str, seen: frozenset) -> List[str]:
        if port in seen:
            raise EslError(f"nested graph ports form a loop at {port!r}")
        out = []
        for a in pred.get(port, []):
            out.extend(sources(a, seen | {port}) if a in ports else [a])
        return out

    wired = []
    for a, b in edges:
        if b in ports:
            continue
        wired.extend((s, b) for s in (sources(a, frozenset()) if a in ports else [a]))
    return {n: v for n, v in nodes.items() if n not in ports}, _unique(wired)


def walk(graph: nir.NIRGraph, supported: Sequence[type] = ALL_TYPES, who: str = "esl_deploy") -> Graph:
    """Check ``graph`` (module docstring) and return it as a :class:`Graph` of ``supported`` nodes.

    Checks, in order: the graph is not a reader flavour of another meaning (``metadata["flavour"]`` not in
    :data:`SAME_MEANING_FLAVOURS`); nested graphs flatten; every node type is supported; edges name
    existing nodes; exactly one Input and one Output; every node lies on a path from the Input to the
    Output; the inputs of every node have one shape, one the node accepts. ``who`` names the consumer in
    the messages.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise EslError(f"expected a NIR graph, got {type(graph).__name__}")
    flavour = (graph.metadata or {}).get("flavour")
    flavour = flavour.decode() if isinstance(flavour, bytes) else flavour
    if flavour is not None and str(flavour) not in SAME_MEANING_FLAVOURS:
        raise EslError(f"this graph was written for {flavour} (esl export --for {flavour}): its NIR meaning is "
                       f"{flavour}'s, not ours; export the default graph (no --for) for {who}")
    nodes, edges = flatten(graph)
    for name, node in nodes.items():
        if not isinstance(node, tuple(supported)):
            kinds = ", ".join(t.__name__ for t in supported)
            raise EslError(f"node {name!r} of type {type(node).__name__}: not supported by {who} "
                           f"(supported: {kinds})")
    succ: Dict[str, List[str]] = {n: [] for n in nodes}
    pred: Dict[str, List[str]] = {n: [] for n in nodes}
    for a, b in edges:
        for n in (a, b):
            if n not in nodes:
                raise EslError(f"edge {a!r} -> {b!r} names a node {n!r} that is not in the graph")
        succ[a].append(b)
        pred[b].append(a)
    inputs = [n for n, v in nodes.items() if isinstance(v, nir.Input)]
    outputs = [n for n, v in nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise EslError(f"graph must have exactly one Input and one Output node, has inputs {inputs} "
                       f"and outputs {outputs}")
    source, sink = inputs[0], outputs[0]
    for name in (source, sink):
        bad = pred[name] if name == source else succ[name]
        if bad:
            raise EslError(f"node {name!r} of type {type(nodes[name]).__name__} has an edge "
                           f"{'from' if name == source else 'to'} {bad[0]!r}")
    back, order = _depth_first(source, succ)
    stray = [n for n in nodes if n not in order]
    if stray:
        raise EslError(f"node {stray[0]!r} of type {type(nodes[stray[0]]).__name__} is not on a path from "
                       f"Input {source!r}")
    reaches = _reaching(sink, pred)
    dead = [n for n in order if n not in reaches]
    if dead:
        raise EslError(f"node {dead[0]!r} of type {type(nodes[dead[0]]).__name__} does not lead to Output {sink!r}")
    input_shape = _batchless(_input_shape(nodes[source], source), source, [nodes[n] for n in succ[source]], succ[source])
    shapes: Dict[str, Tuple[int, ...]] = {source: input_shape}
    steps: List[Step] = []
    for name in order[1:]:
        ins = tuple(Edge(a, (a, name) in back) for a in pred[name])
        if name == sink:
            out_inputs = ins
            continue
        fwd = [shapes[e.source] for e in ins if not e.recurrent]
        in_shape = fwd[0]
        for e, s in zip([e for e in ins if not e.recurrent], fwd):
            if s != in_shape:
                raise EslError(f"node {name!r} of type {type(nodes[name]).__name__} sums inputs of shapes "
                               f"{in_shape} (from {ins[0].source!r}) and {s} (from {e.source!r})")
        out = output_shape(name, nodes[name], in_shape)
        shapes[name] = out
        steps.append(Step(name=name, node=nodes[name], in_shape=in_shape, out_shape=out, inputs=ins))
    for step in steps:
        for e in step.inputs:
            if e.recurrent and shapes[e.source] != step.in_shape:
                raise EslError(f"{step.label}: its recurrent input from {e.source!r} has shape "
                               f"{shapes[e.source]}, its other inputs {step.in_shape}")
    out_shapes = {shapes[e.source] for e in out_inputs}
    if len(out_shapes) != 1:
        raise EslError(f"Output node {sink!r} sums inputs of shapes {sorted(out_shapes)}")
    shape = out_shapes.pop()
    out_type = (nodes[sink].output_type or {}).get("output")
    if out_type is not None and np.asarray(out_type).size:
        declared = tuple(int(s) for s in np.atleast_1d(out_type))
        if declared != shape and size(declared) != size(shape):
            raise EslError(f"Output node {sink!r} has shape {declared}, the network gives {shape}")
    return Graph(input_name=source, output_name=sink, input_shape=input_shape, steps=tuple(steps),
                 output_inputs=out_inputs)


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
    if isinstance(node, NEURON_TYPES + (nir.Delay,)):
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


def _batchless(shape: Tuple[int, ...], name: str, consumers: list, names: List[str]) -> Tuple[int, ...]:
    """An Input shape ``(1, *s)`` that its consumers do not accept but accept as ``s``: the sample's batch
    dimension of 1, which exporters that trace a sample without dropping it write (Norse 1.1.0's ``to_nir``,
    snnTorch's without ``ignore_dims``). Read as ``s``, with a warning; any other shape is returned as it is."""
    if len(shape) < 2 or shape[0] != 1 or not consumers:
        return shape

    def fits(s) -> bool:
        try:
            for n, node in zip(names, consumers):
                output_shape(n, node, s)
            return True
        except EslError:
            return False

    if fits(shape) or not fits(shape[1:]):
        return shape
    import warnings

    from .conventions import EslWarning

    warnings.warn(f"Input {name!r} has shape {shape}: read as {shape[1:]} (a batch dimension of 1 written with the "
                  "sample)", EslWarning, stacklevel=3)
    return shape[1:]


def _depth_first(root: str, succ: Dict[str, List[str]]) -> Tuple[set, List[str]]:
    """``(back edges, order)`` of a depth-first search from ``root`` following out-edges in list order:
    the edges that close a cycle, and the reached nodes in reverse postorder (a topological order of the
    other edges)."""
    state: Dict[str, int] = {root: 1}  # 1 on the current path, 2 done
    back, post = set(), []
    stack = [(root, iter(succ[root]))]
    while stack:
        node, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            state[node] = 2
            post.append(node)
            stack.pop()
        elif state.get(nxt) == 1:
            back.add((node, nxt))
        elif not state.get(nxt):
            state[nxt] = 1
            stack.append((nxt, iter(succ[nxt])))
    return back, post[::-1]


def _reaching(sink: str, pred: Dict[str, List[str]]) -> set:
    """Every node with a path to ``sink``."""
    seen, todo = {sink}, [sink]
    while todo:
        for a in pred[todo.pop()]:
            if a not in seen:
                seen.add(a)
                todo.append(a)
    return seen


def delay_steps(name: str, node: nir.Delay, dt: float) -> int:
    """The steps of a ``Delay`` node at ``dt``: ``delay / dt``, one whole number for all its values."""
    d = np.unique(np.asarray(node.delay, dtype=np.float64)) / dt
    k = np.round(d)
    if d.size != 1 or abs(d[0] - k[0]) > 1e-6 * max(1.0, abs(d[0])) or k[0] < 0:
        raise EslError(f"node {name!r} of type Delay: delay {np.unique(node.delay)} is not one whole number of "
                       f"steps dt = {dt:g}")
    return int(k[0])


__all__ = ["ALL_TYPES", "Chain", "Edge", "Graph", "LINEAR_TYPES", "NEURON_TYPES", "READOUT_TYPES",
           "SAME_MEANING_FLAVOURS", "SUPPORTED", "Segment", "Step", "conv_geometry", "conv_output_hw", "delay_steps",
           "flatten", "output_shape", "pair", "pool_scale", "size", "walk"]
