"""The synaptic layers of a graph network for the TrueNorth mapper.

:func:`graph_synaptic_layers` unrolls a :class:`esl_deploy.graphnet.GraphNet` (any graph read from NIR: residual,
recurrent, branching) into the :class:`hw_models.unroll.SynapticLayer` s the mapper takes: one per
``Linear``/``Conv2d`` node (its crossbar mask; a recurrent synapse is an ordinary layer of connections), with
the pooling between it and its spike source folded in as :mod:`hw_models.unroll` does for chains, and one
layer of relay neurons per :class:`esl_deploy.graphnet.IdentityEdge` (what an identity shortcut costs:
:mod:`hw_models.shortcuts`). A synapse whose input sums several sources has no single crossbar and is refused.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from esl_deploy.errors import EslError
from esl_deploy.graphnet import GraphNet, IdentityEdge, Neuron, ScaleLayer, Shift

from .shortcuts import identity_mask
from .unroll import PASS_THROUGH, SynapticLayer, _bool_product, pool_matrix, unroll_conv2d, unroll_linear


def _shapes(model: GraphNet) -> Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]]:
    """Per-sample (input, output) shape of every node, from one step of one sample of zeros."""
    shapes = {}

    def keep(name, module, h, y):
        shapes[name] = (tuple(h.shape[2:]), tuple(y.shape[2:]))

    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    with torch.no_grad():
        model(torch.zeros(1, 1, *model.spec.input_shape, dtype=dtype), observe=keep)
    return shapes


def graph_synaptic_layers(model: GraphNet) -> List[SynapticLayer]:
    """Every synapse of ``model`` as a :class:`~hw_models.unroll.SynapticLayer` (module docstring), in the order
    the nodes run; :class:`EslError` for a synapse whose input sums several sources (a merge before a synapse
    has no one crossbar) or passes a node the mapper cannot see through."""
    shapes = _shapes(model)
    plan = {n.name: n for n in model.plan}
    out: List[SynapticLayer] = []

    def source_of(name: str, seen: frozenset) -> Tuple[str, object]:
        """The spike source feeding ``name`` and the pooling folded on the way (None: none)."""
        node = plan[name]
        if len(node.inputs) != 1:
            raise EslError(f"cannot cost node {name!r}: it sums {len(node.inputs)} inputs before a synapse")
        src = node.inputs[0][0]
        if src == model.input_name or isinstance(model.nodes[plan[src].key], Neuron):
            return src, None
        if src in seen:
            raise EslError(f"cannot cost node {name!r}: a loop without a neuron")
        module = model.nodes[plan[src].key]
        root, pre = source_of(src, seen | {src})
        if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            s_in, s_out = shapes[src]
            p = pool_matrix(module, s_in, s_out[1:])
            return root, p if pre is None else _bool_product(p, pre)
        if isinstance(module, PASS_THROUGH + (ScaleLayer, Shift)):
            return root, pre
        raise EslError(f"cannot cost node {src!r} ({type(module).__name__}) between a spike source and a synapse")

    for node in model.plan:
        module = model.nodes[node.key]
        if isinstance(module, IdentityEdge):
            n = int(np.prod(module.neuron_shape))
            out.append(SynapticLayer(node.name, "linear", identity_mask(n), module.source != model.input_name))
            continue
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        src, pre = source_of(node.name, frozenset({node.name}))
        s_in, s_out = shapes[node.name]
        if isinstance(module, nn.Linear):
            m, kind = unroll_linear(module.weight), "linear"
        else:
            m, kind = unroll_conv2d(module, s_in, s_out[1:]), "conv2d"
        out.append(SynapticLayer(node.name, kind, m if pre is None else _bool_product(m, pre),
                                 src != model.input_name))
    if not out:
        raise EslError("the model has no Linear or Conv2d layer to map")
    return out


__all__ = ["graph_synaptic_layers"]
