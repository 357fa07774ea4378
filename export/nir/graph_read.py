"""NIR graph -> :class:`esl_deploy.graphnet.GraphNet`, for the graphs a :class:`SpikingNet` cannot hold.

:func:`export.nir.read.from_nir` keeps reading a chain of ``Affine``/``Linear``/``Conv2d``/pooling/``Flatten``
and ``LIF``/``IF``/``LI``/``I`` nodes (``v_leak = v_reset = 0``, NIR's or snnTorch's conventions) into a
SpikingNet, exactly as before. Every other graph (:func:`needs_graph`) becomes a GraphNet: branches and
residual merges, recurrent edges, nested graphs (flattened by :func:`export.nir.graph.walk`), ``CubaLIF``,
``CubaLI``, ``Threshold``, ``Scale``, ``Delay``, ``v_leak``/``v_reset``, an output of any shape, and graphs
read under another writer's conventions (``writer="norse"``/``"sinabs"``,
:mod:`export.nir.conventions`). Nodes map to modules:

================================  ===============================================================
NIR node                          GraphNet module
================================  ===============================================================
``Affine``/``Linear``/``Conv2d``  ``nn.Linear``/``nn.Conv2d`` (as the chain reader builds them)
``AvgPool2d``/``SumPool2d``       ``nn.AvgPool2d`` (a sum pool: ``divisor_override = 1``)
``Flatten``                       ``nn.Flatten``
``Scale``                         :class:`~esl_deploy.graphnet.ScaleLayer`
``Delay``                         :class:`~esl_deploy.graphnet.Shift` of ``delay / dt`` steps
neurons                           :class:`~esl_deploy.graphnet.Neuron` with the
                                  :class:`~export.nir.conventions.NeuronParams` of the node
================================  ===============================================================

A neuron fed straight by a spiking neuron (a residual identity shortcut) gets an
:class:`~esl_deploy.graphnet.IdentityEdge` between them, named ``"<source>><target>"``.
"""
from __future__ import annotations

import re
import warnings
from typing import Any, Callable, Dict, List, Optional

import nir
import numpy as np
import torch

from esl_deploy.errors import EslError
from esl_deploy.graphnet import GraphNet, IdentityEdge, Neuron, Node, ScaleLayer, Shift
from esl_deploy.models import ModelSpec

from .conventions import Convention, EslWarning, gain_warnings, neuron_params, time_step
from .graph import SUPPORTED, Graph, delay_steps, size


def needs_graph(g: Graph, convention: Convention) -> bool:
    """True when the chain reader (a :class:`SpikingNet`) cannot hold ``g`` as ``convention`` means it."""
    if not g.is_chain or convention.name not in ("nir", "esl_deploy", "snntorch"):
        return True
    if len(g.output_shape) != 1 or g.output_shape[0] < 2:
        return True
    for s in g.steps:
        if not isinstance(s.node, SUPPORTED):
            return True
        if isinstance(s.node, (nir.LIF, nir.LI)) and np.any(np.asarray(s.node.v_leak) != 0):
            return True
        if isinstance(s.node, (nir.LIF, nir.IF)) and s.node.v_reset is not None and np.any(
                np.asarray(s.node.v_reset) != 0):
            return True
    return False


def _key(name: str, taken: set) -> str:
    key = re.sub(r"[^0-9A-Za-z_]", "_", name) or "node"
    base, i = key, 1
    while key in taken:
        key, i = f"{base}_{i}", i + 1
    taken.add(key)
    return key


def _neuron(p, shape, node: nir.NIRNode) -> Neuron:
    scale = (getattr(node, "metadata", None) or {}).get("fixed_point_scale")  # a --weight-bits network's LIF
    return Neuron(shape, beta=p.beta, threshold=p.threshold, alpha=p.alpha,
                  gain=None if np.all(p.gain == 1.0) else p.gain, leak=p.leak, v_reset=p.v_reset,
                  reset_mechanism=p.reset_mechanism, reset_delay=p.reset_delay,
                  fixed_point_scale=None if scale is None else float(scale))


def graph_net(graph: nir.NIRGraph, g: Graph, metadata: Dict[str, Any], convention: Convention,
              dt: Optional[float] = None, *, layer: Callable, meta: Callable) -> GraphNet:
    """The GraphNet of ``graph`` (walked as ``g``) read under ``convention`` at ``dt`` (module docstring), its
    linear nodes built by the chain reader's ``layer(node, name, shape, dt)`` and ``model.meta`` by its
    ``meta(model, metadata, node_index, rename=...)`` (:mod:`export.nir.read`, which calls this module), plus
    ``writer`` and ``dt``."""
    _layer, nir_meta = layer, meta
    dt = time_step(graph, convention, dt)
    taken: set = set()
    modules: Dict[str, torch.nn.Module] = {}
    plan: List[Node] = []
    params = {}
    spiking = {s.name for s in g.steps if s.is_spiking}
    keys: Dict[str, str] = {}
    for step in g.steps:
        key = _key(step.name, taken)
        keys[step.name] = key
        node = step.node
        if step.is_neuron:
            p = neuron_params(step.name, node, size(step.in_shape), dt, convention)
            params[step.name] = p
            modules[key] = _neuron(p, step.in_shape, node)
        elif isinstance(node, nir.Delay):
            modules[key] = Shift(delay_steps(step.name, node, dt))
        elif isinstance(node, nir.Scale):
            modules[key] = ScaleLayer(np.broadcast_to(np.asarray(node.scale, dtype=np.float32), step.in_shape).copy())
        else:
            modules[key] = _layer(node, step.name, step.in_shape, dt)
        inputs = []
        for e in step.inputs:
            if step.is_neuron and e.source in spiking:
                edge = f"{e.source}>{step.name}"
                ekey = _key(edge, taken)
                modules[ekey] = IdentityEdge(step.in_shape, e.source, step.name)
                plan.append(Node(edge, ekey, ((e.source, e.recurrent),)))
                inputs.append((edge, False))
            else:
                inputs.append((e.source, e.recurrent))
        plan.append(Node(step.name, key, tuple(inputs)))
    for line in gain_warnings(params, convention, dt):
        warnings.warn(line, EslWarning, stacklevel=3)
    stepwise = g.recurrent or any(isinstance(s.node, nir.Delay) for s in g.steps)
    spec = graph_spec(metadata, g, modules, keys)
    model = GraphNet(spec=spec, input_name=g.input_name, plan=plan, modules=modules,
                     output=[e.source for e in g.output_inputs], stepwise=stepwise).eval()
    rename = {f"layers.{name}.weight": f"nodes.{key}.weight" for name, key in keys.items()}
    model.meta = nir_meta(model, metadata, {}, rename=rename)
    model.meta["writer"] = convention.name
    model.meta["dt"] = dt
    return model


def graph_spec(metadata: Dict[str, Any], g: Graph, modules: Dict[str, torch.nn.Module],
               keys: Dict[str, str]) -> ModelSpec:
    """The recorded ModelSpec (checked against the graph), or a nominal one: ``resnet19`` is recorded by our
    writer; otherwise ``convnet`` if the graph has a convolution else ``mlp``, the first spiking neuron's mean
    beta and threshold, ``num_classes`` the size of the output and the readout of the output node."""
    out_neuron = modules.get(keys.get(g.output_inputs[0].source, ""), None) if g.output_inputs else None
    readout = "membrane" if isinstance(out_neuron, Neuron) and not out_neuron.spiking else "spikes"
    n_out = size(g.output_shape)
    if isinstance(metadata.get("model_spec"), dict):
        try:
            spec = ModelSpec.from_dict(metadata["model_spec"])
        except (TypeError, ValueError, KeyError) as e:
            raise EslError(f"graph metadata model_spec is invalid: {e}") from e
        if spec.input_shape != g.input_shape or spec.num_classes != n_out:
            raise EslError(f"graph metadata model_spec ({spec.input_shape} -> {spec.num_classes}) does not match "
                           f"the graph ({g.input_shape} -> {n_out})")
        return spec
    first = next((m for m in modules.values() if isinstance(m, Neuron) and m.spiking), None)
    beta = float(first.beta.double().mean().clamp(0, 1)) if first is not None else 0.9
    threshold = float(first.threshold.double().mean()) if first is not None else 1.0
    name = "convnet" if any(isinstance(m, torch.nn.Conv2d) for m in modules.values()) else "mlp"
    try:
        return ModelSpec(name, g.input_shape, n_out, beta=beta, threshold=threshold if threshold > 0 else 1.0,
                         readout=readout)
    except ValueError as e:
        raise EslError(f"cannot describe this graph as a model: {e}") from e


__all__ = ["graph_net", "graph_spec", "needs_graph"]
