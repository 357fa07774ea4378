"""NIR graph (not a chain) -> :class:`~export.lava.net.LavaNet`: one Lava layer per neuron node, each with
one synapse whose :class:`~export.lava.net.Part` s are its sources.

:func:`export.lava.convert.convert` keeps converting chains as it did (one synapse from the previous
layer); :func:`convert_graph` converts every other graph :func:`export.nir.graph.walk` accepts.

A neuron node's input is a sum over paths of linear nodes from spike sources (neuron nodes or the
input): every path contributes ``M_path x_source`` with ``M_path`` the product of its nodes' matrices,
read ``shift`` steps late (its recurrent edges, 1 each, and its ``Delay`` nodes). Paths are grouped by
(source, shift) into parts; a part of one path of one convolution (with a foldable pool) stays a Lava
``Conv`` when it is the layer's only part and needs no delay, otherwise it is a matrix (``Sparse`` or
``Dense``; ``DelaySparse``/``DelayDense`` where :meth:`~export.lava.net.LavaNet.delay` is positive). The
biases are the input's value at rest (every source 0, recurrent sources too: what a recurrent
``Affine`` gives before its source's first spike), computed once through the linear nodes, so a bias
after a merge counts once. Each neuron's gain (:class:`export.nir.conventions.NeuronParams`) multiplies
its rows, its leak joins the bias, its ``alpha`` is Lava's ``du = 1 - alpha`` (one per population); with a
synaptic current (``du < 1``) the synapses' biases go into the current ``u`` (``NeuronLayer.current_bias``,
run by :class:`~export.lava.procs.leaky_reset.LeakyReset`), where NIR's ``CubaLIF`` integrates them.

Timing and resets (:mod:`export.lava.run`): layers sit in Lava's pipeline at their depth; the per-sample
reset of a layer zeroes ``u`` and ``v`` when the first column of a sample reaches it; a part with
``shift > 0`` enters the neuron's second port (``a_rec`` of
:class:`~export.lava.procs.leaky_reset.LeakyReset`), whose first ``shift`` steps after each reset are
dropped: they carry the previous sample.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import nir
import numpy as np
import scipy.sparse as sp

from esl_deploy.errors import EslError

from ..nir.conventions import Convention, neuron_params
from ..nir.graph import Graph, Segment, Step, delay_steps, size
from .net import INPUT, READOUT_VTH, ConvShape, LavaLayer, LavaNet, NeuronLayer, Part, SynapseLayer

Path = Tuple[str, int, Tuple[Step, ...]]  # (source node, shift in steps, linear steps from it, in order)


def _paths(g: Graph, dt: float) -> Dict[str, List[Path]]:
    """Every node's paths back to its spike sources (module docstring); EslError for a loop of linear nodes."""
    steps = {s.name: s for s in g.steps}
    memo: Dict[str, List[Path]] = {g.input_name: [(g.input_name, 0, ())]}
    busy = set()

    def of(name: str) -> List[Path]:
        if name in memo:
            return memo[name]
        step = steps[name]
        if step.is_neuron:
            memo[name] = [(name, 0, ())]
            return memo[name]
        if name in busy:
            raise EslError(f"{step.label} is on a loop without a neuron node: not supported in Lava")
        busy.add(name)
        out: List[Path] = []
        for e in step.inputs:
            for src, shift, ops in of(e.source):
                shift += int(e.recurrent)
                if isinstance(step.node, nir.Delay):
                    out.append((src, shift + delay_steps(name, step.node, dt), ops))
                else:
                    out.append((src, shift, ops + (step,)))
        busy.discard(name)
        memo[name] = out
        return out

    for s in g.steps:
        of(s.name)
    return memo


def _rest(g: Graph, _matrix: Callable) -> Dict[str, np.ndarray]:
    """Every node's output at rest (flat, torch order): 0 for the input and neurons, linear nodes their bias
    (``_matrix(step) -> (M, b)``: :func:`export.lava.convert._matrix`)."""
    steps = {s.name: s for s in g.steps}
    memo: Dict[str, np.ndarray] = {g.input_name: np.zeros(size(g.input_shape))}

    def of(name: str) -> np.ndarray:
        if name in memo:
            return memo[name]
        step = steps[name]
        memo[name] = np.zeros(size(step.out_shape))  # a loop sees 0 (a neuron always breaks it: _paths)
        if step.is_neuron:
            return memo[name]
        h = sum((of(e.source) for e in step.inputs), np.zeros(size(step.in_shape)))
        if isinstance(step.node, nir.Delay):
            if np.any(h != 0):
                raise EslError(f"{step.label}: a bias through a Delay is not supported in Lava")
            return memo[name]
        m, b = _matrix(step)
        memo[name] = m @ h + (b if b is not None else 0.0)
        return memo[name]

    for s in g.steps:
        of(s.name)
    return memo


def _uniform_du(step: Step, alpha: Optional[np.ndarray]) -> float:
    if alpha is None:
        return 1.0
    if np.ptp(alpha) > 1e-12:
        raise EslError(f"{step.label}: its synaptic time constant varies across neurons; Lava's LIF has one du per "
                       "population")
    return float(1.0 - alpha[0])


def convert_graph(g: Graph, dt: float, convention: Convention, *, synapse: str, conv: str, matrix: Callable,
                  segment_synapse: Callable) -> LavaNet:
    """The :class:`LavaNet` of a walked graph ``g`` at ``dt`` under ``convention`` (module docstring), with the
    chain converter's ``matrix(step)`` and ``segment_synapse(segment, gain, ...)`` (:mod:`export.lava.convert`,
    which calls this module)."""
    _segment_synapse = segment_synapse
    neurons = [s for s in g.steps if s.is_neuron]
    index = {s.name: i for i, s in enumerate(neurons)}
    paths, rest = _paths(g, dt), _rest(g, matrix)
    for s in neurons[:-1]:
        if not s.is_spiking:
            raise EslError(f"{s.label}: a non-spiking readout must be the last neuron node")
    layers: List[LavaLayer] = []
    for l, step in enumerate(neurons):
        p = neuron_params(step.name, step.node, size(step.in_shape), dt, convention)
        gain = p.gain
        groups: Dict[Tuple[str, int], List[Tuple[Step, ...]]] = {}
        for e in step.inputs:
            for src, shift, ops in paths[e.source]:
                groups.setdefault((src, shift + int(e.recurrent)), []).append(ops)
        bias = sum((rest[e.source] for e in step.inputs), np.zeros(size(step.in_shape)))
        pieces: List[Tuple[Part, SynapseLayer]] = []
        for (src, shift), ops_list in groups.items():
            source = INPUT if src == g.input_name else index[src]
            src_shape = g.shape_of(src)
            part = Part(source=source, size=size(src_shape), shift=shift)
            mode = conv if len(groups) == 1 and len(ops_list) == 1 else "matrix"
            syns = [_segment_synapse(Segment(ops=ops, neuron=step, in_shape=src_shape), gain, graded=source == INPUT,
                                     synapse=synapse, conv=mode)[0] for ops in ops_list]
            if len(syns) == 1:
                pieces.append((part, syns[0]))
            else:  # several paths from one source: their sum is no convolution (no hint)
                m = sum((s.matrix() for s in syns[1:]), syns[0].matrix()).tocsr()
                m.eliminate_zeros()
                pieces.append((part, SynapseLayer(kind=synapse, in_shape=src_shape, out_shape=step.in_shape, weight=m,
                                                  graded=source == INPUT,
                                                  nodes=tuple(dict.fromkeys(o.name for ops in ops_list for o in ops)))))
        default = Part(source=l - 1 if l else INPUT, size=pieces[0][0].size) if pieces else None
        if len(pieces) == 1 and pieces[0][0] == default:
            syn = pieces[0][1]
        elif len(pieces) == 1:
            part, one = pieces[0]
            syn = SynapseLayer(kind=one.kind, in_shape=one.in_shape, out_shape=one.out_shape, weight=one.weight,
                               graded=one.graded, stride=one.stride, padding=one.padding, dilation=one.dilation,
                               groups=one.groups, nodes=one.nodes, parts=(part,), convs=one.convs)
        else:
            m = sp.hstack([piece.matrix() for _, piece in pieces], format="csr")
            hints = tuple(_conv_hint(piece) for _, piece in pieces)
            syn = SynapseLayer(kind=synapse, in_shape=(m.shape[1],), out_shape=step.in_shape, weight=m,
                               graded=any(part.source == INPUT for part, _ in pieces),
                               nodes=tuple(dict.fromkeys(n for _, piece in pieces for n in piece.nodes)),
                               parts=tuple(part for part, _ in pieces), convs=hints if any(hints) else ())
        du = _uniform_du(step, p.alpha)
        leak = p.leak if p.leak is not None else 0.0
        neuron = NeuronLayer(name=step.name, node_type=step.kind if p.spiking else _readout_kind(step),
                             shape=step.in_shape, beta=p.beta,
                             threshold=p.threshold if p.spiking else READOUT_VTH,
                             bias=(gain * bias + leak) if du == 1.0 else leak + np.zeros_like(bias),
                             current_bias=None if du == 1.0 else gain * bias,
                             reset_mechanism=p.reset_mechanism, reset_delay=p.reset_delay,
                             du=du, v_reset=p.v_reset if p.v_reset is not None else 0.0)
        if not p.spiking and not neuron.uniform:
            raise EslError(f"{step.label}: a readout's decay varies across neurons; Lava's LIF has one per population")
        layers.append(LavaLayer(synapse=syn, neuron=neuron))
    net = LavaNet(input_shape=g.input_shape, layers=layers, dt=dt)
    depths = net.depths()
    for l, layer in enumerate(layers):  # a convolution cannot be delayed: Lava has no DelayConv
        syn = layer.synapse
        if syn.kind == "conv" and any(net.delay(l, part, depths) for part in net.parts(l)):
            layer.synapse = SynapseLayer(kind=synapse, in_shape=syn.in_shape, out_shape=syn.out_shape,
                                         weight=syn.matrix(), graded=syn.graded, nodes=syn.nodes, parts=syn.parts,
                                         convs=(ConvShape.of(syn),) * max(1, len(syn.parts)))
    return net


def _conv_hint(piece: SynapseLayer) -> Optional[ConvShape]:
    """The convolution one part's synapse was built from (its geometry; :attr:`SynapseLayer.convs`), or None."""
    if piece.kind == "conv":
        return ConvShape.of(piece)
    return piece.convs[0] if piece.convs else None


def _readout_kind(step: Step) -> str:
    """LI/I keep their names; a CubaLI readout is run as an LI (with du)."""
    return "LI" if isinstance(step.node, nir.CubaLI) else step.kind


__all__ = ["convert_graph"]
