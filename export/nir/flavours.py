"""NIR graphs written for one reader (``esl export --to nir --for READER``): the same network in the
conventions that reader's ``from_nir`` implements, where they differ from NIR's.

Our default graph (:func:`export.nir.write.to_nir`) is NIR as its spec reads: explicit Euler at
``graph.metadata["dt"]`` of ``tau dv/dt = v_leak - v + r I``, average pooling as ``AvgPool2d``. Each
flavour below starts from that graph (walked with :func:`export.nir.graph.walk`) and rewrites only
what its reader reads differently (readers as installed: snnTorch 1.0.0, Norse 1.1.0, Sinabs 2.0.3):

``snntorch``  ``snntorch.import_nir.import_from_nir`` reads LIF with its own ``dt = 1e-4`` (taus are
              rescaled to it: ``tau' = tau * 1e-4 / dt`` keeps ``beta = 1 - dt/tau``), one threshold per
              layer, ``IF`` as a leaky neuron with ``beta = 0.9`` and no ``LI``: the last two are refused.
              For our default graph (``dt = 1e-4``) this flavour is that graph unchanged.
``norse``     ``norse.torch.from_nir(graph, dt=1e-3)`` (Norse's default ``dt``) integrates
              ``v += dt/tau (v_leak - v + I)``: it ignores ``r``. The flavour records ``dt = 1e-3``
              with ``tau' = tau * 1e-3 / dt`` and ``r' = 1``, and multiplies the weights and bias of the
              synapse node before each LIF by that LIF's ``r`` (per output neuron, per channel for a
              ``Conv2d``). Norse has no ``AvgPool2d``: each becomes ``SumPool2d`` and its ``1/(kh kw)`` is
              multiplied into the weights of the next ``Affine``/``Conv2d`` (see :func:`fold_pools`; exact
              in float32 when ``kh kw`` is a power of two). ``Linear`` becomes ``Affine`` with a zero bias
              (Norse 1.1.0 builds ``Linear`` with its dimensions swapped). The NIR meaning is unchanged
              (our readers read it); the arithmetic is not Norse's bit for bit: Norse computes
              ``v + (dt/tau)(I r - v)``, we compute ``beta v + I``.
``sinabs``    ``sinabs.from_nir`` reads ``LIF.tau`` in time steps of an exact exponential decay,
              ``v <- exp(-1/tau) v + I`` (``norm_input=False``: no ``r``, no ``dt``): the flavour writes
              ``tau = -1 / ln(beta)`` (``beta = 1 - dt/tau`` of the default graph), ``r = 1``, and
              ``dt = 1`` (steps). Pooling as for Norse. Sinabs 2.0.3 rejects a ``v_leak`` of more than one
              dimension (its check ``any(node.v_leak)`` iterates over the first axis), so a convolutional
              layer's LIF parameters are written once per channel, shape ``(C, 1, 1)``, broadcast over
              ``H, W`` (requires them uniform per channel); NIR's type check refuses that shape, so
              such a file is read with ``nir.read(path, type_check=False)``. Sinabs' neuron itself
              cannot be ours: it fires ``floor(v / theta)`` spikes when ``v >= theta`` and subtracts
              ``theta`` per spike, ours fires one spike when ``v > theta`` and resets to 0; the
              agreement that leaves is measured (``benchmarks/nir_interop.py``). The graph's NIR
              meaning is not ours: :func:`export.nir.graph.walk` refuses it.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import nir
import numpy as np

from esl_deploy.errors import EslError

from .graph import SUPPORTED, Chain, Step, pool_scale, walk
from .write import storable_metadata

NORSE_DT = 1e-3  # norse.torch.from_nir's default dt
SNNTORCH_DT = 1e-4  # the dt snntorch.import_nir hard-codes
_WEIGHTED = (nir.Affine, nir.Linear, nir.Conv2d)


def fold_pools(chain: Chain) -> Dict[str, nir.NIRNode]:
    """The chain's nodes with every ``AvgPool2d`` written as ``SumPool2d`` and its factor ``1/(kh kw)``
    multiplied into the weights (not the bias) of the next ``Affine``/``Linear``/``Conv2d``: ``W (sum/k) =
    (W/k) sum``; every ``Linear`` as an ``Affine`` with a zero bias (Norse builds ``Linear`` transposed,
    Sinabs not at all). Refused: a pooling that no weighted node follows before the next neuron node, and
    a padded one (Norse's and Sinabs' ``SumPool2d`` drop the padding)."""
    nodes: Dict[str, nir.NIRNode] = {}
    pending, pool_name = 1.0, None
    for step in chain.steps:
        node = step.node
        if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)) and np.any(np.asarray(node.padding) != 0):
            raise EslError(f"{step.label}: padded pooling is not supported by the reader flavours")
        if isinstance(node, nir.Linear):
            node = _scaled(node, np.float64(1.0), bias=False)
        if isinstance(node, nir.AvgPool2d):
            nodes[step.name] = nir.SumPool2d(kernel_size=np.asarray(node.kernel_size), stride=np.asarray(node.stride),
                                             padding=np.asarray(node.padding))
            pending, pool_name = pending * pool_scale(node), step.name
            continue
        if isinstance(node, _WEIGHTED) and pending != 1.0:
            node = _scaled(node, np.float64(pending), bias=False)
            pending = 1.0
        elif step.is_neuron and pending != 1.0:
            raise EslError(f"node {pool_name!r} of type AvgPool2d: no Affine or Conv2d follows it before "
                           f"{step.label}, so its 1/k^2 cannot be moved into weights")
        nodes[step.name] = node
    return nodes


def _scaled(node: nir.NIRNode, factor: np.ndarray, bias: bool) -> nir.NIRNode:
    """A copy of a weighted node with its weights (and, when ``bias``, its bias) times ``factor``: one value,
    or one per output (row of an Affine, output channel of a Conv2d). Computed in float64, stored float32."""
    w = np.asarray(node.weight, dtype=np.float64)
    f = np.asarray(factor, dtype=np.float64)
    fw = f.reshape((-1,) + (1,) * (w.ndim - 1)) if f.ndim else f
    weight = (w * fw).astype(np.float32)
    b = np.asarray(getattr(node, "bias", np.zeros(w.shape[0])), dtype=np.float64)
    b = ((b * f) if bias else b).astype(np.float32)
    if isinstance(node, nir.Conv2d):
        return nir.Conv2d(input_shape=node.input_shape, weight=weight, stride=node.stride, padding=node.padding,
                          dilation=node.dilation, groups=node.groups, bias=b, metadata=dict(node.metadata or {}))
    return nir.Affine(weight=weight, bias=b, metadata=dict(node.metadata or {}))


def _per_channel(step: Step, values: np.ndarray, what: str) -> np.ndarray:
    """One value per output channel of a (C, H, W) neuron parameter, or :class:`EslError` if it varies in H, W."""
    v = np.asarray(values, dtype=np.float64).reshape(step.in_shape)
    flat = v.reshape(v.shape[0], -1)
    if np.ptp(flat, axis=1).max(initial=0.0) > 0:
        raise EslError(f"{step.label}: {what} varies within a channel; it cannot be moved into the Conv2d before it")
    return flat[:, 0]


def _lif_only(chain: Chain, reader: str) -> None:
    for step in chain.steps:
        if step.is_neuron and not isinstance(step.node, nir.LIF):
            raise EslError(f"{step.label}: not supported by the {reader} flavour ({reader} reads LIF neurons only: "
                           "a network trained with beta < 1 and a spike readout)")


def _graph(graph: nir.NIRGraph, chain: Chain, nodes: Dict[str, nir.NIRNode], reader: str, dt: float,
           type_check: bool = True) -> nir.NIRGraph:
    all_nodes = {chain.input_name: graph.nodes[chain.input_name], **nodes,
                 chain.output_name: graph.nodes[chain.output_name]}
    metadata = dict(graph.metadata or {})
    metadata.update({"flavour": reader, "dt": float(dt)})
    try:
        return nir.NIRGraph(nodes=all_nodes, edges=list(graph.edges), metadata=storable_metadata(metadata),
                            type_check=type_check)
    except (ValueError, AssertionError) as e:
        raise EslError(f"the {reader} flavour of the graph does not type-check: {e}") from e


def _dt(graph: nir.NIRGraph) -> float:
    return float(np.asarray((graph.metadata or {}).get("dt", SNNTORCH_DT)))


def for_snntorch(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The graph as ``snntorch.import_nir.import_from_nir`` reads it (see the module docstring)."""
    chain, dt = walk(graph, SUPPORTED).require_chain("esl export --for"), _dt(graph)
    _lif_only(chain, "snntorch")
    nodes: Dict[str, nir.NIRNode] = {}
    for step in chain.steps:
        node = step.node
        if isinstance(node, nir.LIF):
            if np.ptp(np.asarray(node.v_threshold, dtype=np.float64)) > 0:
                raise EslError(f"{step.label}: snnTorch needs one threshold per layer")
            k = SNNTORCH_DT / dt
            node = nir.LIF(tau=np.asarray(node.tau) * k, r=np.asarray(node.r), v_leak=np.asarray(node.v_leak),
                           v_threshold=np.asarray(node.v_threshold), v_reset=np.asarray(node.v_reset),
                           metadata=dict(node.metadata or {})) if k != 1.0 else node
        nodes[step.name] = node
    return _graph(graph, chain, nodes, "snntorch", SNNTORCH_DT)


def for_norse(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The graph as ``norse.torch.from_nir(graph, dt=1e-3)`` reads it (see the module docstring)."""
    chain, dt = walk(graph, SUPPORTED).require_chain("esl export --for"), _dt(graph)
    _lif_only(chain, "norse")
    nodes = fold_pools(chain)
    for seg in chain.segments():
        lif = seg.neuron
        r = np.asarray(lif.node.r, dtype=np.float64).reshape(lif.in_shape)
        if not seg.ops or not isinstance(nodes[seg.ops[-1].name], _WEIGHTED):
            raise EslError(f"{lif.label}: the norse flavour moves r into the Affine/Conv2d just before a LIF; "
                           "this one has none")
        syn = seg.ops[-1].name
        factor = _per_channel(lif, r, "r") if isinstance(nodes[syn], nir.Conv2d) else r.ravel()
        nodes[syn] = _scaled(nodes[syn], factor, bias=True)
        node = lif.node
        tau = np.asarray(node.tau, dtype=np.float64) * (NORSE_DT / dt)
        nodes[lif.name] = nir.LIF(tau=tau, r=np.ones_like(tau), v_leak=np.asarray(node.v_leak, dtype=np.float64),
                                  v_threshold=np.asarray(node.v_threshold, dtype=np.float64),
                                  v_reset=np.asarray(node.v_reset, dtype=np.float64), metadata=dict(node.metadata or {}))
    return _graph(graph, chain, nodes, "norse", NORSE_DT)


def sinabs_tau(beta: np.ndarray) -> np.ndarray:
    """Sinabs' time constant in steps for a decay ``beta``: ``exp(-1/tau) = beta``, so ``tau = -1/ln(beta)``
    (``beta = 0``: ``tau = 0``, Sinabs' decay ``exp(-inf) = 0``)."""
    beta = np.asarray(beta, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(beta > 0, -1.0 / np.log(np.where(beta > 0, beta, 0.5)), 0.0)


def for_sinabs(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The graph as ``sinabs.from_nir`` reads it (see the module docstring)."""
    chain, dt = walk(graph, SUPPORTED).require_chain("esl export --for"), _dt(graph)
    _lif_only(chain, "sinabs")
    nodes = fold_pools(chain)
    channel_shaped = False
    for step in chain.steps:
        if not isinstance(step.node, nir.LIF):
            continue
        node = step.node
        beta = 1.0 - dt / np.asarray(node.tau, dtype=np.float64)
        if np.any(np.asarray(node.v_leak) != 0) or np.any(np.asarray(node.v_reset) != 0):
            raise EslError(f"{step.label}: the sinabs flavour needs v_leak = 0 and v_reset = 0")
        gain = np.asarray(node.r, dtype=np.float64) * dt / np.asarray(node.tau, dtype=np.float64)
        if np.any(np.abs(gain - 1.0) > 1e-9):
            raise EslError(f"{step.label}: the sinabs flavour needs an input gain r dt/tau of 1 (our own export)")
        params = {"tau": sinabs_tau(beta), "v_threshold": np.asarray(node.v_threshold, dtype=np.float64)}
        if len(step.in_shape) > 1:
            params = {k: _per_channel(step, v, k).reshape(-1, *([1] * (len(step.in_shape) - 1)))
                      for k, v in params.items()}
            channel_shaped = True
        zeros = np.zeros_like(params["tau"])
        nodes[step.name] = nir.LIF(tau=params["tau"], r=np.ones_like(zeros), v_leak=zeros,
                                   v_threshold=params["v_threshold"], v_reset=zeros.copy(),
                                   metadata=dict(node.metadata or {}))
    return _graph(graph, chain, nodes, "sinabs", 1.0, type_check=not channel_shaped)


READERS: Dict[str, Callable[[nir.NIRGraph], nir.NIRGraph]] = {
    "snntorch": for_snntorch, "norse": for_norse, "sinabs": for_sinabs}


def flavour(graph: nir.NIRGraph, reader: str) -> nir.NIRGraph:
    """``graph`` rewritten for ``reader`` (one of :data:`READERS`)."""
    if reader not in READERS:
        raise EslError(f"unknown NIR reader {reader!r}; choose one of: {', '.join(READERS)}")
    return READERS[reader](graph)


def reader_read_hint(reader: str, graph: nir.NIRGraph) -> Tuple[str, bool]:
    """How the reader's user loads the file: the call, and whether NIR's type check must be off."""
    off = reader == "sinabs" and any(np.ndim(n.tau) > 1 for n in graph.nodes.values() if isinstance(n, nir.LIF))
    calls = {"snntorch": "snntorch.import_nir.import_from_nir(nir.read(path))",
             "norse": f"norse.torch.from_nir(nir.read(path), dt={NORSE_DT:g})",
             "sinabs": f"sinabs.from_nir(nir.read(path{', type_check=False' if off else ''}), batch_size=B)"}
    return calls[reader], off


__all__ = ["NORSE_DT", "READERS", "SNNTORCH_DT", "flavour", "fold_pools", "for_norse", "for_sinabs", "for_snntorch",
           "reader_read_hint", "sinabs_tau"]
