"""SpikingNet -> NIR graph (Neuromorphic Intermediate Representation, nir 1.0.8).

The network becomes a chain ``input -> 0 -> 1 -> ... -> output``; node names are the indices of the
layers in ``SpikingNet.layers`` (as snnTorch names ``nn.Sequential`` children), so the weight
``layers.3.weight`` lives in node ``"3"``; a residual block's nodes are named after its modules
(``layers.3.conv1.weight`` in node ``"3.conv1"``) and make the graph branch and merge. Layer mapping:

=====================  ============================================================================
torch / esl_deploy     NIR node
=====================  ============================================================================
``nn.Linear``          ``Affine(W, b)``; ``Linear(W)`` when the layer has no bias
``nn.Conv2d``          ``Conv2d(input_shape=(H, W), ...)``; a missing bias is written as zeros
``nn.BatchNorm2d``     folded into the preceding ``Conv2d`` (see :func:`fold_batchnorm`)
``nn.AvgPool2d``       ``AvgPool2d(kernel, stride, padding)`` (= ``SumPool2d ; Scale(1/k^2)``)
``nn.Flatten``         ``Flatten(input_type, start_dim - n, end_dim - n)`` (n = dims with the batch):
                       NIR dims exclude the batch; counted from the end they mean the same with it
``LIF``                ``LIF`` with per-neuron arrays (see :func:`lif_node`); ``IF`` when beta == 1
``LI`` (readout)       ``LI(tau, r, v_leak = 0)`` with per-neuron arrays (see :func:`li_node`); ``I`` when
                       beta == 1. The membrane-readout model's output is the LI node's state ``v``
``nn.AdaptiveAvgPool2d``  ``AvgPool2d`` with the whole window (global average pooling for output 1)
``BasicBlock``         nodes ``<i>.conv1``, ``<i>.lif1``, ``<i>.conv2``, ``<i>.lif2`` (BatchNorms folded) and
                       a projection shortcut ``<i>.shortcut``; ``<i>.lif2`` has two inputs, which NIR sums:
                       the residual add is the graph's merge (an identity shortcut: the edge from the
                       block's input straight into ``<i>.lif2``)
=====================  ============================================================================

NIR's ODEs are continuous-time and carry no dt. We discretise with ``dt = 1e-4`` (snnTorch's
``export_nir`` constant) and record it as ``graph.metadata["dt"]``. Explicit Euler of the NIR LIF
``tau dv/dt = (v_leak - v) + r I`` gives ``v[t+1] = (1 - dt/tau) v[t] + (dt/tau) r I[t]``, which is
the snnTorch update ``U[t] = beta U[t-1] + I[t]`` exactly when::

    tau = dt / (1 - beta),    r = tau / dt = 1 / (1 - beta),    v_leak = 0,
    v_threshold = theta,      v_reset = 0.

Graph metadata: ``producer``, ``esl_deploy_version``, ``dt``, ``model_spec`` and the training metadata
(``method``, ``dataset``, ``T``, ``encoding``, ``density``, ``layer_density`` and any other key of
``model.meta``). Node metadata: ``density`` (fraction of non-zero weights actually in the node).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import nir
import numpy as np
import torch
from torch import nn

import esl_deploy
from esl_deploy.errors import EslError
from esl_deploy.masks import sparsifiable
from esl_deploy.models import BasicBlock, SpikingNet
from esl_deploy.neurons import LI, LIF, RESET_MECHANISMS

from esl_deploy.atomic import atomic_write, check_free_space

from .graph import output_shape

__all__: List[str] = ["DT", "fold_batchnorm", "graph_metadata", "li_node", "lif_node", "storable_metadata",
                      "to_nir", "weight_density", "write_graph", "write_nir"]

DT = 1e-4  # seconds per step; the constant snnTorch's export_nir hard-codes (snntorch/export_nir.py)
PRODUCER = "esl_deploy"


def lif_node(beta: np.ndarray, threshold: np.ndarray, dt: float = DT, *, reset_mechanism: str = "zero",
             reset_delay: bool = False, fixed_point_scale: Optional[float] = None) -> nir.NIRNode:
    """The NIR neuron for snnTorch LIF parameters (per-neuron float64 arrays of one shape).

    ``0 <= beta < 1``: ``LIF(tau = dt/(1-beta), r = tau/dt, v_leak = 0, v_threshold = theta, v_reset = 0)``.
    ``beta == 1`` for every neuron (no leak): ``IF(r = 1/dt, v_threshold = theta, v_reset = 0)``, whose
    Euler step ``v += dt r I = I`` is the same update. A layer mixing ``beta == 1`` with ``beta < 1``
    has no NIR node and is refused.

    NIR's LIF/IF resets to ``v_reset`` at once. snnTorch's other resets (``reset_mechanism`` "subtract":
    ``v -= theta``, "none": no reset; ``reset_delay``: the reset lands one step late, see
    :mod:`esl_deploy.neurons`) have no NIR field, so every neuron node records its reset in its metadata,
    ``{"reset_mechanism": ..., "reset_delay": ...}``. Our reader and the Lava converter run it exactly;
    readers that look only at the NIR fields (snnTorch's ``import_from_nir``, Norse, Sinabs) run the
    node as reset to ``v_reset = 0`` (see the README).

    ``fixed_point_scale`` (a ``--weight-bits`` network, :class:`esl_deploy.neurons.FixedPointLIF`): the neurons
    run Loihi 2's integer membrane at that scale (integer units of current per unit), recorded in the metadata
    as ``fixed_point_scale``; our reader runs it so and the Lava exporter maps the layer at that scale.
    """
    beta = np.asarray(beta, dtype=np.float64)
    threshold = np.asarray(threshold, dtype=np.float64)
    if beta.shape != threshold.shape or beta.ndim == 0:
        raise ValueError(f"beta {beta.shape} and threshold {threshold.shape} must be per-neuron arrays of one shape")
    if not np.all((beta >= 0) & (beta <= 1)):
        raise EslError(f"LIF beta must lie in [0, 1], got values in [{beta.min():g}, {beta.max():g}]")
    if reset_mechanism not in RESET_MECHANISMS:
        raise EslError(f"unknown reset_mechanism {reset_mechanism!r}; choose one of: {', '.join(RESET_MECHANISMS)}")
    zeros = np.zeros_like(beta)
    meta = {"reset_mechanism": reset_mechanism, "reset_delay": np.bool_(reset_delay)}
    if fixed_point_scale is not None:
        meta["fixed_point_scale"] = np.float64(fixed_point_scale)
    if np.all(beta == 1.0):
        return nir.IF(r=np.full_like(beta, 1.0 / dt), v_threshold=threshold, v_reset=zeros, metadata=meta)
    if np.any(beta == 1.0):
        raise EslError("not supported: a LIF layer mixing beta == 1 (no leak) with beta < 1")
    tau = dt / (1.0 - beta)
    return nir.LIF(tau=tau, r=tau / dt, v_leak=zeros, v_threshold=threshold, v_reset=zeros, metadata=meta)


def li_node(beta: np.ndarray, dt: float = DT) -> nir.NIRNode:
    """The NIR node of a non-spiking leaky integrator ``U[t] = beta U[t-1] + I[t]`` (per-neuron float64 beta).

    ``0 <= beta < 1``: ``LI(tau = dt/(1-beta), r = tau/dt, v_leak = 0)``, whose Euler step
    ``v += (dt/tau) (v_leak - v + r I)`` is ``v = beta v + I``. ``beta == 1`` for every neuron:
    ``I(r = 1/dt)`` (NIR's integrator ``dv/dt = r I``, Euler ``v += dt r I = I``). Mixing is refused.
    """
    beta = np.asarray(beta, dtype=np.float64)
    if beta.ndim == 0:
        raise ValueError("beta must be a per-neuron array")
    if not np.all((beta >= 0) & (beta <= 1)):
        raise EslError(f"LI beta must lie in [0, 1], got values in [{beta.min():g}, {beta.max():g}]")
    if np.all(beta == 1.0):
        return nir.I(r=np.full_like(beta, 1.0 / dt))
    if np.any(beta == 1.0):
        raise EslError("not supported: an LI layer mixing beta == 1 (no leak) with beta < 1")
    tau = dt / (1.0 - beta)
    return nir.LI(tau=tau, r=tau / dt, v_leak=np.zeros_like(beta))


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tuple[np.ndarray, np.ndarray]:
    """Weight and bias of ``bn(conv(x))`` as one convolution, with BatchNorm's running statistics.

    With ``s = gamma / sqrt(running_var + eps)``::

        W' = W * s[:, None, None, None]
        b' = (b - running_mean) * s + beta_bn        (b = 0 when the conv has no bias)

    Computed in float64, returned as float32. Zero weights stay exactly zero. A BatchNorm in the state a
    network trained with ``--weight-bits`` keeps (:func:`train.quant.quantized_state`: ``gamma = 1``,
    ``running_mean = 0``, ``running_var = 1 - eps``, ``eps = 2^-17``) has ``s = 1`` exactly: the conv's grid
    weights and its ``beta`` are written unchanged, the values the network was trained and evaluated with.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise EslError("not supported: BatchNorm2d without running statistics (track_running_stats=False)")
    if bn.num_features != conv.out_channels:
        raise EslError(f"BatchNorm2d has {bn.num_features} features but the conv before it has "
                       f"{conv.out_channels} output channels")
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(b)
    shift = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(b)
    s = gamma / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    w_f = w * s[:, None, None, None]
    b_f = (b - bn.running_mean.detach().double()) * s + shift
    return w_f.float().cpu().numpy(), b_f.float().cpu().numpy()


def weight_density(weight: np.ndarray) -> float:
    """Fraction of non-zero entries of a weight array."""
    return float(np.count_nonzero(weight)) / max(1, weight.size)


def to_nir(model: SpikingNet, meta: Optional[dict] = None, *, dt: float = DT) -> nir.NIRGraph:
    """Convert a SpikingNet into a type-checked NIR graph (see the module docstring).

    ``meta`` defaults to ``model.meta`` when the model has one (a loaded checkpoint).
    Raises :class:`EslError` for layers NIR cannot represent.
    """
    if not (dt > 0 and math.isfinite(dt)):
        raise EslError(f"dt must be a positive number, got {dt}")
    if meta is None:
        meta = getattr(model, "meta", None) or {}
    spec = model.spec
    shape: Tuple[int, ...] = tuple(spec.input_shape)
    nodes: Dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(shape))}
    edges: List[Tuple[str, str]] = []
    prev = "input"
    layers = list(model.layers)
    i = 0
    while i < len(layers):
        layer, name = layers[i], str(i)
        if isinstance(layer, BasicBlock):
            prev, shape = _block_nodes(layer, name, shape, prev, nodes, edges, dt)
            i += 1
            continue
        folded = None
        if isinstance(layer, nn.Conv2d) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d):
            folded = layers[i + 1]
        node = _layer_node(layer, name, shape, folded, dt)
        if folded is not None:
            node.metadata["batchnorm_folded"] = f"layers.{i + 1}"
            i += 1
        nodes[name] = node
        edges.append((prev, name))
        prev = name
        shape = output_shape(name, node, shape)
        i += 1
    nodes["output"] = nir.Output(output_type=np.array(shape))
    edges.append((prev, "output"))
    metadata = graph_metadata(model, meta, dt)
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)
    except (ValueError, AssertionError) as e:
        raise EslError(f"the exported NIR graph does not type-check: {e}") from e


def write_nir(model: SpikingNet, path, meta: Optional[dict] = None, *, dt: float = DT) -> Path:
    """Write ``to_nir(model, meta)`` to ``path`` atomically with ``nir.write``; returns the path."""
    return write_graph(to_nir(model, meta, dt=dt), path)


def write_graph(graph: nir.NIRGraph, path) -> Path:
    """Write a NIR graph to ``path`` atomically with ``nir.write`` after checking the free space; returns the path."""
    check_free_space(Path(path).parent if str(Path(path).parent) else ".", 2 * graph_nbytes(graph))
    return atomic_write(path, lambda tmp: nir.write(tmp, graph))


def graph_nbytes(graph: nir.NIRGraph) -> int:
    """Bytes of the arrays in ``graph``'s nodes: about what its HDF5 file needs (h5py can crash, not
    raise, on a full disk, so writers check the free space against this first)."""
    total = 0
    for node in graph.nodes.values():
        for value in vars(node).values():
            if isinstance(value, np.ndarray):
                total += value.nbytes
            elif isinstance(value, nir.NIRGraph):
                total += graph_nbytes(value)
    return total


def graph_metadata(model: SpikingNet, meta: dict, dt: float) -> Dict[str, Any]:
    """The graph-level metadata dict, every value HDF5-storable (see :func:`storable_metadata`).

    ``density`` and ``layer_density`` default to the fraction of non-zero weights of the sparsified
    layers (:func:`esl_deploy.masks.sparsifiable`) when ``meta`` does not give them.
    """
    weights = sparsifiable(model)
    layer_density = {n: weight_density(w.detach().cpu().numpy()) for n, w in weights}
    total = sum(w.numel() for _, w in weights)
    nonzero = sum(int(torch.count_nonzero(w.detach())) for _, w in weights)
    out: Dict[str, Any] = {
        "density": nonzero / total if total else 1.0,
        "layer_density": layer_density,
    }
    out.update(meta)
    out.update({
        "producer": PRODUCER,
        "esl_deploy_version": esl_deploy.__version__,
        "dt": float(dt),
        "model_spec": model.spec.to_dict(),
    })
    return storable_metadata(out)


def storable_metadata(value: Any, key: str = "metadata") -> Any:
    """A copy of a metadata dict that ``nir.write`` can store in HDF5.

    Dicts recurse (keys become strings; ``/`` is refused, HDF5 uses it as a path separator) and drop
    ``None`` values; bools, ints, floats and strings stay; tuples/lists/tensors of numbers become
    arrays; lists of strings become byte-string arrays; paths become strings. Anything else is an
    :class:`EslError`. ``export.nir.read.metadata_from_hdf5`` is the inverse (sequences come back
    as lists).
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            k = str(k)
            if "/" in k or not k:
                raise EslError(f"{key}: metadata key {k!r} cannot be stored in NIR (empty or contains '/')")
            if v is not None:
                out[k] = storable_metadata(v, f"{key}.{k}")
        return out
    if isinstance(value, (bool, np.bool_)):
        return np.bool_(value)
    if isinstance(value, (int, float, str, np.integer, np.floating)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array([v.encode("utf8") for v in value], dtype=np.bytes_)
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.size == 0:
            return np.zeros(0)
        if arr.dtype.kind in "biuf":
            return arr
        if arr.dtype.kind == "U":
            return np.char.encode(arr, "utf8")
    raise EslError(f"{key}: cannot store a metadata value of type {type(value).__name__} in NIR")


def _layer_node(layer: nn.Module, name: str, shape: Tuple[int, ...], folded: Optional[nn.BatchNorm2d],
                dt: float) -> nir.NIRNode:
    """The NIR node of one layer whose per-sample input shape is ``shape``."""
    if isinstance(layer, nn.Linear):
        w = layer.weight.detach().cpu().numpy()
        meta = {"density": weight_density(w)}
        if layer.bias is None:
            return nir.Linear(weight=w, metadata=meta)
        return nir.Affine(weight=w, bias=layer.bias.detach().cpu().numpy(), metadata=meta)
    if isinstance(layer, nn.Conv2d):
        return _conv_node(layer, name, shape, folded)
    if isinstance(layer, nn.AvgPool2d):
        return _avgpool_node(layer, name)
    if isinstance(layer, nn.Flatten):
        return _flatten_node(layer, name, shape)
    if isinstance(layer, LIF):
        if tuple(layer.neuron_shape) != tuple(shape):
            raise EslError(f"layer {name}: LIF of shape {layer.neuron_shape} follows a layer of shape {shape}")
        beta = layer.beta.detach().cpu().double().numpy()
        thr = layer.threshold.detach().cpu().double().numpy()
        return lif_node(np.broadcast_to(beta, shape).copy(), np.broadcast_to(thr, shape).copy(), dt,
                        reset_mechanism=layer.reset_mechanism, reset_delay=layer.reset_delay,
                        fixed_point_scale=layer.fixed_scale)
    if isinstance(layer, LI):
        if tuple(layer.neuron_shape) != tuple(shape):
            raise EslError(f"layer {name}: LI of shape {layer.neuron_shape} follows a layer of shape {shape}")
        beta = layer.beta.detach().cpu().double().numpy()
        return li_node(np.broadcast_to(beta, shape).copy(), dt)
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        return _adaptive_pool_node(layer, name, shape)
    if isinstance(layer, nn.BatchNorm2d):
        raise EslError(f"layer {name}: NIR export not supported: BatchNorm2d that does not follow a Conv2d")
    raise EslError(f"layer {name}: NIR export not supported: {type(layer).__name__}")


def _block_nodes(block: BasicBlock, name: str, shape: Tuple[int, ...], prev: str, nodes: Dict[str, nir.NIRNode],
                 edges: List[Tuple[str, str]], dt: float) -> Tuple[str, Tuple[int, ...]]:
    """The nodes of a residual block ``LIF(BN(conv2(LIF(BN(conv1(x))))) + shortcut(x))``: ``<i>.conv1``,
    ``<i>.lif1``, ``<i>.conv2``, ``<i>.lif2`` and, for a projection shortcut, ``<i>.shortcut`` (1x1 conv,
    BatchNorm folded); ``lif2`` sums ``conv2`` and the shortcut, in that order (the block's ``y + shortcut(x)``),
    an identity shortcut is the edge ``prev -> <i>.lif2``. Returns ``<i>.lif2`` and its shape."""
    def add(node_name: str, node: nir.NIRNode, source: str, in_shape) -> Tuple[int, ...]:
        nodes[node_name] = node
        edges.append((source, node_name))
        return output_shape(node_name, node, in_shape)

    conv1 = _conv_node(block.conv1, f"{name}.conv1", shape, block.bn1)
    conv1.metadata["batchnorm_folded"] = f"layers.{name}.bn1"
    mid = add(f"{name}.conv1", conv1, prev, shape)
    add(f"{name}.lif1", _layer_node(block.lif1, f"{name}.lif1", mid, None, dt), f"{name}.conv1", mid)
    conv2 = _conv_node(block.conv2, f"{name}.conv2", mid, block.bn2)
    conv2.metadata["batchnorm_folded"] = f"layers.{name}.bn2"
    out = add(f"{name}.conv2", conv2, f"{name}.lif1", mid)
    add(f"{name}.lif2", _layer_node(block.lif2, f"{name}.lif2", out, None, dt), f"{name}.conv2", out)
    subs = list(block.shortcut)
    if not subs:
        if tuple(shape) != tuple(out):
            raise EslError(f"layer {name}: identity shortcut of shape {shape} into a block output of shape {out}")
        edges.append((prev, f"{name}.lif2"))
    else:
        if len(subs) != 2 or not isinstance(subs[0], nn.Conv2d) or not isinstance(subs[1], nn.BatchNorm2d):
            raise EslError(f"layer {name}: NIR export supports a shortcut of Conv2d + BatchNorm2d, got "
                           f"{[type(m).__name__ for m in subs]}")
        short = _conv_node(subs[0], f"{name}.shortcut", shape, subs[1])
        short.metadata["batchnorm_folded"] = f"layers.{name}.shortcut.1"
        nodes[f"{name}.shortcut"] = short
        edges.append((prev, f"{name}.shortcut"))
        if output_shape(f"{name}.shortcut", short, shape) != tuple(out):
            raise EslError(f"layer {name}: the shortcut's output does not match the block's")
        edges.append((f"{name}.shortcut", f"{name}.lif2"))
    return f"{name}.lif2", tuple(out)


def _adaptive_pool_node(pool: nn.AdaptiveAvgPool2d, name: str, shape: Tuple[int, ...]) -> nir.NIRNode:
    """``AdaptiveAvgPool2d(out)`` of an input whose height and width ``out`` divides: ``AvgPool2d`` with
    kernel = stride = ``(H / out_h, W / out_w)`` (``out = 1``: global average pooling)."""
    if len(shape) != 3:
        raise EslError(f"layer {name}: AdaptiveAvgPool2d of a {len(shape)}-d input")
    out = pool.output_size if isinstance(pool.output_size, (tuple, list)) else (pool.output_size, pool.output_size)
    out = tuple(shape[1 + j] if o is None else int(o) for j, o in enumerate(out))
    if shape[1] % out[0] or shape[2] % out[1]:
        raise EslError(f"layer {name}: NIR export not supported: AdaptiveAvgPool2d to {out} of a {shape[1:]} input "
                       "(not a whole window)")
    k = (shape[1] // out[0], shape[2] // out[1])
    return nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(k), padding=np.array([0, 0]))


def _conv_node(conv: nn.Conv2d, name: str, shape: Tuple[int, ...], bn: Optional[nn.BatchNorm2d]) -> nir.Conv2d:
    if len(shape) != 3 or shape[0] != conv.in_channels:
        raise EslError(f"layer {name}: Conv2d with {conv.in_channels} input channels got input of shape {shape}")
    if conv.padding_mode != "zeros":
        raise EslError(f"layer {name}: NIR export not supported: Conv2d padding_mode={conv.padding_mode!r}")
    if bn is not None:
        w, b = fold_batchnorm(conv, bn)
    else:
        w = conv.weight.detach().cpu().numpy()
        b = (conv.bias.detach().cpu().numpy() if conv.bias is not None
             else np.zeros(conv.out_channels, dtype=w.dtype))
    padding = conv.padding if isinstance(conv.padding, str) else tuple(int(p) for p in conv.padding)
    return nir.Conv2d(input_shape=(int(shape[1]), int(shape[2])), weight=w,
                      stride=tuple(int(s) for s in conv.stride), padding=padding,
                      dilation=tuple(int(d) for d in conv.dilation), groups=int(conv.groups), bias=b,
                      metadata={"density": weight_density(w)})


def _pair(v) -> np.ndarray:
    return np.array(v if isinstance(v, (tuple, list)) else (v, v), dtype=np.int64)


def _avgpool_node(pool: nn.AvgPool2d, name: str) -> nir.NIRNode:
    """``AvgPool2d``; with ``divisor_override = 1`` (a window sum, how :mod:`export.nir.read` imports one)
    ``SumPool2d``."""
    if pool.ceil_mode or pool.divisor_override not in (None, 1):
        raise EslError(f"layer {name}: NIR export not supported: AvgPool2d with ceil_mode or divisor_override > 1")
    padding = _pair(pool.padding)
    if padding.any() and not pool.count_include_pad:
        raise EslError(f"layer {name}: NIR export not supported: padded AvgPool2d with count_include_pad=False")
    stride = pool.stride if pool.stride is not None else pool.kernel_size
    kind = nir.SumPool2d if pool.divisor_override == 1 else nir.AvgPool2d
    return kind(kernel_size=_pair(pool.kernel_size), stride=_pair(stride), padding=padding)


def _flatten_node(flat: nn.Flatten, name: str, shape: Tuple[int, ...]) -> nir.Flatten:
    """torch dims count the batch, NIR's do not. We write both dims counted from the end (``-1`` is the
    last): NIR's meaning is the same (``start_dim = -3`` of a ``(C, H, W)`` input is its dim 0), and a
    reader that hands the dims to ``torch.nn.Flatten`` unchanged (snnTorch 1.0.0, Norse 1.1.0) then
    keeps a batch dimension in front instead of flattening it into the sample."""
    nd = len(shape) + 1
    start, end = flat.start_dim % nd, flat.end_dim % nd
    if start == 0 or end < start:
        raise EslError(f"layer {name}: NIR export not supported: Flatten(start_dim={flat.start_dim}, "
                       f"end_dim={flat.end_dim}) over the batch dimension")
    return nir.Flatten(input_type=np.array(shape), start_dim=start - nd, end_dim=end - nd)
