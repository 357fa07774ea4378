"""NIR graph -> SpikingNet (chains) or GraphNet (every other graph), the inverse of :mod:`export.nir.write`.

Every graph is walked by :func:`export.nir.graph.walk` (nested graphs flattened, merges, recurrent
edges). A graph that is not a chain of the nodes below, holds other neuron kinds (``CubaLIF``, ``CubaLI``,
``Threshold``), ``Scale`` or ``Delay``, ``v_leak``/``v_reset`` other than 0, an output that is not one
vector of at least two values, or is read under another writer's conventions (``writer="norse"``,
``"sinabs"``: :mod:`export.nir.conventions`) becomes a :class:`esl_deploy.graphnet.GraphNet`
(:mod:`export.nir.graph_read`). Chains of these nodes become a SpikingNet, as before graphs:

===================  =====================================================================
NIR node             esl_deploy layer
===================  =====================================================================
``Affine``           ``nn.Linear`` (``Linear`` -> ``nn.Linear(bias=False)``)
``Conv2d``           ``nn.Conv2d``
``AvgPool2d``        ``nn.AvgPool2d``
``Flatten``          ``nn.Flatten(start_dim + 1, end_dim + 1)`` (torch counts the batch dim)
``LIF``              ``LIF`` with ``beta = 1 - dt/tau`` (see :func:`lif_parameters`)
``IF``               ``LIF`` with ``beta = 1``
``LI``               ``LI`` (non-spiking readout) with ``beta = 1 - dt/tau`` (see :func:`li_parameters`)
``I``                ``LI`` with ``beta = 1``
===================  =====================================================================

``LI``/``I`` is accepted only as the last neuron layer (the membrane readout: the network's output is its
membrane potential, ``ModelSpec.readout = "membrane"``); a non-spiking hidden layer is refused.

``dt`` is the writer's (``--writer``), else ``graph.metadata["dt"]``, else snnTorch's ``1e-4`` with a
warning (:func:`export.nir.conventions.time_step`); a layer whose input gain makes it silent or saturated
under that ``dt`` is warned about. Node types the walker does not know (``Conv1d``, ...) are refused with
an :class:`EslError` naming the node and its type.

Parameters computed by the exporter in float64 from float32 tensors come back bit-identical, so a
network written by :func:`export.nir.write.write_nir` and read by :func:`load_nir` gives
``torch.equal`` outputs (BatchNorm is the exception: it was folded into the conv on export).
"""
from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path
import warnings
from typing import Any, Dict, List, Optional, Tuple, Union

import h5py
import nir
import numpy as np
import torch
from torch import nn

from esl_deploy.atomic import file_kind
from esl_deploy.checkpoint import checked_T
from esl_deploy.errors import EslError
from esl_deploy.resources import check_memory, elements
from esl_deploy.masks import sparsifiable
from esl_deploy.models import ModelSpec, SpikingNet
from esl_deploy.neurons import LI, LIF

from .conventions import EslWarning, reset_from_metadata
from .graph import ALL_TYPES, Chain, pair, walk
from .write import DT, weight_density

SUPPORTED = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d, nir.Flatten,
             nir.LIF, nir.IF, nir.LI, nir.I)
_RTOL = 1e-9  # r * dt / tau within this of 1 counts as exactly 1 (float64 round-off of our own export)


def lif_parameters(node: nir.NIRNode, dt: float, name: str = "?") -> Tuple[np.ndarray, np.ndarray]:
    """Per-neuron ``(beta, threshold)`` (float64) of the snnTorch LIF equivalent to a NIR LIF/IF node.

    LIF: Euler at ``dt`` gives ``v[t+1] = (1 - dt/tau) v + (r dt/tau) I``, so ``beta = 1 - dt/tau`` and
    the input gain is ``k = r dt / tau``. IF: ``v[t+1] = v + (r dt) I``, so ``beta = 1``, ``k = r dt``.
    With reset to 0 a gain ``k > 0`` is the same as ``k = 1`` with threshold ``theta / k`` (divide the
    membrane by ``k``), so ``threshold = v_threshold / k``, and exactly ``v_threshold`` when ``k == 1``
    up to float64 round-off. Requires ``v_leak == 0``, ``v_reset == 0``, ``0 < dt <= tau``.
    """
    label = f"node {name!r} of type {type(node).__name__}"
    thr = np.asarray(node.v_threshold, dtype=np.float64)
    if np.any(np.asarray(node.v_reset) != 0):
        raise EslError(f"{label}: not supported: v_reset != 0 (esl_deploy neurons reset to 0)")
    if isinstance(node, nir.LIF):
        beta, gain = _leak_and_gain(node, dt, label)
    else:
        beta = np.ones_like(thr)
        gain = np.asarray(node.r, dtype=np.float64) * dt
    if not np.all(gain > 0):
        raise EslError(f"{label}: not supported: input gain r*dt/tau <= 0")
    exact = np.abs(gain - 1.0) <= _RTOL
    thr = np.where(exact, thr, thr / np.where(exact, 1.0, gain))
    if not np.all(thr > 0):
        raise EslError(f"{label}: v_threshold must be positive")
    return beta, thr


def reset_of(node: nir.NIRNode, name: str = "?") -> Tuple[str, bool]:
    """``(reset_mechanism, reset_delay)`` of a LIF/IF node: its metadata (written by
    :func:`esl_deploy.export.nir.write.lif_node`), else NIR's own meaning, reset to ``v_reset`` at once
    (``("zero", False)``): :func:`export.nir.conventions.reset_from_metadata`."""
    return reset_from_metadata(name, node, ("zero", False))


def _leak_and_gain(node: nir.NIRNode, dt: float, label: str) -> Tuple[np.ndarray, np.ndarray]:
    """``beta = 1 - dt/tau`` and input gain ``r dt / tau`` of a leaky NIR node (LIF, LI); v_leak must be 0."""
    tau = np.asarray(node.tau, dtype=np.float64)
    if np.any(np.asarray(node.v_leak) != 0):
        raise EslError(f"{label}: not supported: v_leak != 0")
    if not np.all(tau >= dt):
        raise EslError(f"{label}: tau must be at least dt = {dt:g} (beta = 1 - dt/tau in [0, 1])")
    return 1.0 - dt / tau, np.asarray(node.r, dtype=np.float64) * dt / tau


def _neuron_shaped(a: np.ndarray, b: np.ndarray, *, shape, label: str):
    """Two per-neuron parameter arrays (or scalars) as arrays of the layer's neuron ``shape``."""
    if a.ndim == 0:
        a, b = np.full(shape, float(a)), np.full(shape, float(b))
    if a.shape != shape:
        raise EslError(f"{label}: {a.shape} neurons follow a layer of shape {shape}")
    return a, b


def li_parameters(node: nir.NIRNode, dt: float, name: str = "?") -> Tuple[np.ndarray, np.ndarray]:
    """Per-neuron ``(beta, gain)`` (float64) of the leaky integrator equivalent to a NIR LI/I node.

    LI: Euler at ``dt`` gives ``v[t+1] = (1 - dt/tau) v + (r dt/tau) I``, so ``beta = 1 - dt/tau`` and
    the input gain is ``k = r dt / tau``; I: ``beta = 1``, ``k = r dt``. Without a threshold the gain
    cannot be absorbed into the neuron: it is returned (exactly 1 when within float64 round-off of 1)
    for :func:`from_nir` to fold into the preceding Linear layer. Requires ``v_leak == 0`` and
    ``0 < dt <= tau``.
    """
    label = f"node {name!r} of type {type(node).__name__}"
    if isinstance(node, nir.LI):
        beta, gain = _leak_and_gain(node, dt, label)
    else:
        gain = np.asarray(node.r, dtype=np.float64) * dt
        beta = np.ones_like(gain)
    beta, gain = np.broadcast_arrays(beta, gain)
    if not np.all(gain > 0):
        raise EslError(f"{label}: not supported: input gain r*dt/tau <= 0")
    gain = np.where(np.abs(gain - 1.0) <= _RTOL, 1.0, gain)
    return beta.copy(), gain.copy()


def read_graph(path: Union[str, os.PathLike]) -> nir.NIRGraph:
    """Read and type-check a NIR file, turning every way it can be wrong into one :class:`EslError`.

    Before the nir package parses it, the HDF5 file is checked as it stands (:func:`_check_node_values`):
    it must be a regular file (a FIFO would block), the arrays its nodes declare must fit in memory (an
    HDF5 dataset can declare gigabytes that it does not store), hold no NaN or infinity, and strides,
    kernel sizes, dilations and groups must be positive (a stride of 0 would divide by zero)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError:
        raise EslError(f"no such NIR file: {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise EslError(f"NIR file {path} is {file_kind(st)}, not a regular file")
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f or not isinstance(f["node"], h5py.Group) or "nodes" not in f["node"]:
                raise EslError(f"{path}: not a NIR file (an HDF5 file without a /node graph)")
            _check_node_types(f["node"]["nodes"], path)
            _check_node_values(f["node"]["nodes"], path)
    except OSError as e:
        raise EslError(f"{path}: not a NIR file (cannot open it as HDF5: {e})") from e
    try:
        return nir.read(path, type_check=True)
    except Exception as first:  # a corrupt file can fail anywhere inside the nir/h5py parser
        try:
            graph = nir.read(path, type_check=False)
        except Exception as e:
            raise EslError(f"{path}: corrupt NIR file: {type(e).__name__}: {e}") from e
        check_structure(graph)  # names the node when the graph is recurrent or unsupported
        raise EslError(f"{path}: NIR graph does not type-check: {first}") from first


def check_structure(graph: nir.NIRGraph) -> Chain:
    """The :class:`~export.nir.graph.Graph` of ``graph`` (:func:`export.nir.graph.walk`), or :class:`EslError`
    naming the node when the graph is not one we run."""
    return walk(graph, ALL_TYPES, "esl_deploy's NIR importer")


def from_nir(graph_or_path: Union[nir.NIRGraph, str, os.PathLike], *, writer: Optional[str] = None,
             dt: Optional[float] = None) -> nn.Module:
    """Build a SpikingNet (eval mode) from a NIR graph or file; sets ``model.meta`` (see :func:`nir_meta`).

    A graph a SpikingNet cannot hold (branches, merges, loops, other neuron kinds, another writer's
    conventions: :func:`export.nir.graph_read.needs_graph`) becomes a :class:`esl_deploy.graphnet.GraphNet`.
    ``writer`` names the conventions to read it with (:mod:`export.nir.conventions`; default: ours for
    our files, NIR's otherwise) and ``dt`` overrides the time step."""
    from .conventions import gain_warnings, neuron_params, time_step, writer_of
    from .graph_read import graph_net, needs_graph

    if isinstance(graph_or_path, (str, os.PathLike)):
        graph = read_graph(graph_or_path)
    elif isinstance(graph_or_path, nir.NIRGraph):
        graph = graph_or_path
    else:
        raise EslError(f"expected a NIR graph or a path, got {type(graph_or_path).__name__}")
    whole = check_structure(graph)
    metadata = checked_metadata(metadata_from_hdf5(graph.metadata or {}))
    convention = writer_of(graph, writer)
    neurons = sum(elements(step.in_shape) for step in whole.steps if step.is_neuron)
    check_memory(64 * neurons, f"a network of {neurons:,} neurons", "this is not a network that fits this machine")
    if needs_graph(whole, convention):
        return graph_net(graph, whole, metadata, convention, dt, layer=_layer, meta=nir_meta)
    chain = whole
    dt = time_step(graph, convention, dt)
    params = {s.name: neuron_params(s.name, s.node, elements(s.in_shape), dt, convention)
              for s in chain.steps if s.is_neuron}
    for line in gain_warnings(params, convention, dt):
        warnings.warn(line, EslWarning, stacklevel=2)
    layers: List[nn.Module] = []
    node_index: Dict[str, int] = {}
    for seg in chain.segments():
        for step in seg.ops + (seg.neuron,):
            layer = _layer(step.node, step.name, step.in_shape, dt)
            if isinstance(layer, LI):
                _fold_li_gain(layer, layers, step.name, step.node)
            node_index[step.name] = len(layers)
            layers.append(layer)
    input_shape, shape = chain.input_shape, chain.output_shape
    if len(shape) != 1:
        raise EslError("graph must end in a layer of LIF/IF (or LI/I readout) neurons of shape (num_classes,) "
                       "before its Output")
    spec = _model_spec(metadata, layers, input_shape, shape[0])
    model = SpikingNet(layers, spec).eval()
    model.meta = nir_meta(model, metadata, node_index)
    return model


def load_nir(path: Union[str, os.PathLike], *, writer: Optional[str] = None, dt: Optional[float] = None) -> nn.Module:
    """Read a ``.nir`` file into a runnable SpikingNet or GraphNet (eval mode) with ``model.meta`` from the
    graph, under ``writer``'s conventions at ``dt`` (:func:`from_nir`)."""
    return from_nir(read_graph(path), writer=writer, dt=dt)


def nir_meta(model: nn.Module, metadata: Dict[str, Any], node_index: Dict[str, int], *,
             rename: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """``model.meta``: the graph metadata with defaults for graphs written by other tools.

    ``method`` and ``dataset`` default to ``"unknown"``, ``density``/``layer_density`` to the fraction
    of non-zero weights; ``T`` and ``encoding`` are only present when the graph recorded them.
    ``layer_density`` keys ``layers.<node>.weight`` are renamed to the imported layer index (they differ
    where a BatchNorm was folded away on export).
    """
    meta = dict(metadata)
    meta.setdefault("method", "unknown")
    meta.setdefault("dataset", "unknown")
    weights = sparsifiable(model)
    if "layer_density" not in meta:
        meta["layer_density"] = {n: weight_density(w.detach().numpy()) for n, w in weights}
    else:
        renamed = {}
        for key, value in dict(meta["layer_density"]).items():
            m = re.fullmatch(r"layers\.(\w+)\.weight", key)
            if m and m.group(1) in node_index:
                key = f"layers.{node_index[m.group(1)]}.weight"
            renamed[(rename or {}).get(key, key)] = value
        meta["layer_density"] = renamed
    if "density" not in meta:
        total = sum(w.numel() for _, w in weights)
        meta["density"] = sum(int(torch.count_nonzero(w)) for _, w in weights) / total if total else 1.0
    return meta


def checked_metadata(metadata: Dict[str, Any]) -> Dict[str, Any]:
    """Graph metadata with the values the commands use checked (EslError naming the key): ``dt`` a positive
    finite number, ``T`` a positive integer, ``encoding`` a known one, ``weight_bits`` an integer,
    ``dataset``, ``method`` and ``data_dir`` strings. Other keys pass as they are."""
    from esl_deploy.datasets import ENCODINGS

    meta = dict(metadata)
    if "dt" in meta:
        dt = meta["dt"]
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or not dt > 0:
            raise EslError(f"graph metadata dt must be a positive number, got {dt!r}")
    if "T" in meta:
        meta["T"] = checked_T(meta["T"], "graph metadata")
    if "encoding" in meta and meta["encoding"] not in ENCODINGS:
        raise EslError(f"graph metadata encoding {meta['encoding']!r} is not one of {', '.join(ENCODINGS)}")
    bits = meta.get("weight_bits")
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16):
        raise EslError(f"graph metadata weight_bits must be an integer in 2..16, got {bits!r}")
    for key in ("dataset", "method", "data_dir"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise EslError(f"graph metadata {key} must be a string, got {meta[key]!r}")
    return meta


def metadata_from_hdf5(value: Any) -> Any:
    """Plain Python values from what ``nir.read`` returns: numpy scalars -> int/float/bool, numeric
    arrays -> lists, byte strings -> str; dicts recurse. Inverse of ``export.nir.write.storable_metadata``."""
    if isinstance(value, dict):
        return {str(k): metadata_from_hdf5(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


_POSITIVE_INTS = ("stride", "kernel_size", "dilation", "groups")  # node fields that divide or count
_SHAPES = ("shape", "input_type", "output_type", "input_shape")   # node fields that declare a shape


def _datasets(group: h5py.Group, prefix: str = ""):
    """``(node name, field, dataset)`` of every array under a NIR file's nodes, nested graphs included, node
    metadata left out (free-form, not parameters)."""
    for name, item in group.items():
        if isinstance(item, h5py.Dataset):
            yield prefix.rstrip("/"), name, item
        elif isinstance(item, h5py.Group) and name != "metadata":
            yield from _datasets(item, f"{prefix}{name}/")


def _check_node_values(nodes_group: h5py.Group, path: Path) -> None:
    """The checks of :func:`read_graph` on the HDF5 datasets of the nodes, in one pass: first the bytes they
    declare against the memory guard (nothing read yet), then their values."""
    arrays = list(_datasets(nodes_group))
    declared = sum(d.size * (d.dtype.itemsize if d.dtype.kind != "O" else 64) for _, _, d in arrays)
    check_memory(4 * declared, f"reading NIR file {path} (its arrays declare {declared:,} bytes)",
                 "this is not a network that fits this machine")
    for node, key, d in arrays:
        if d.dtype.kind not in "biuf":
            continue
        value = np.asarray(d[()])
        where = f"{path}: node {node.split('/')[-1]!r}: {key}"
        if d.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise EslError(f"{where} holds NaN or infinite values")
        if key in _POSITIVE_INTS and not np.all(value >= 1):
            raise EslError(f"{where} must be positive, got {value.tolist()}")
        if key in _SHAPES and not np.all(value >= 1):
            raise EslError(f"{where} is not a shape: {value.tolist()}")
        if key == "padding" and not np.all(value >= 0):
            raise EslError(f"{where} must not be negative, got {value.tolist()}")


def _check_node_types(nodes_group: h5py.Group, path: Path) -> None:
    """Refuse node types the nir package does not know, naming the node (nir.read would only assert)."""
    for name, group in nodes_group.items():
        if not isinstance(group, h5py.Group) or "type" not in group:
            raise EslError(f"{path}: node {name!r} has no type: not a NIR file")
        kind = group["type"][()]
        kind = kind.decode("utf8") if isinstance(kind, bytes) else str(kind)
        try:
            nir.str2NIRNode(kind)
        except (AssertionError, KeyError):
            raise EslError(f"{path}: node {name!r} of type {kind!r}: not a NIR node type") from None
        if kind == "NIRGraph" and "nodes" in group:
            _check_node_types(group["nodes"], path)


def _f32(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32))


def _ints(v) -> Tuple[int, ...]:
    return tuple(int(x) for x in np.atleast_1d(v))


def _layer(node: nir.NIRNode, name: str, shape: Tuple[int, ...], dt: float) -> nn.Module:
    """The torch layer of one NIR node whose per-sample input shape is ``shape``."""
    label = f"node {name!r} of type {type(node).__name__}"
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight)
        if w.ndim != 2:
            raise EslError(f"{label}: weight must be 2-d (out, in), got shape {w.shape}")
        has_bias = isinstance(node, nir.Affine)
        layer = nn.Linear(w.shape[1], w.shape[0], bias=has_bias)
        with torch.no_grad():
            layer.weight.copy_(_f32(w))
            if has_bias:
                layer.bias.copy_(_f32(np.broadcast_to(node.bias, (w.shape[0],))))
        return layer
    if isinstance(node, nir.Conv2d):
        w = np.asarray(node.weight)
        if w.ndim != 4:
            raise EslError(f"{label}: weight must be 4-d (C_out, C_in/groups, kH, kW), got shape {w.shape}")
        padding = node.padding if isinstance(node.padding, str) else _ints(node.padding)
        groups = int(np.asarray(node.groups))
        layer = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=_ints(node.stride),
                          padding=padding, dilation=_ints(node.dilation), groups=groups, bias=True)
        with torch.no_grad():
            layer.weight.copy_(_f32(w))
            layer.bias.copy_(_f32(np.broadcast_to(node.bias, (w.shape[0],))))
        return layer
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):  # a window sum is the average without its divisor
        return nn.AvgPool2d(pair(node.kernel_size), stride=pair(node.stride), padding=pair(node.padding),
                            divisor_override=1 if isinstance(node, nir.SumPool2d) else None)
    if isinstance(node, nir.Flatten):
        start, end = int(node.start_dim), int(node.end_dim)
        return nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)
    if isinstance(node, (nir.LI, nir.I)):
        beta, gain = _neuron_shaped(*li_parameters(node, dt, name), shape=shape, label=label)
        li = LI(shape, beta=float(beta.flat[0]))
        with torch.no_grad():
            li.beta.copy_(_f32(beta))
        li._nir_gain = gain  # folded into the preceding layer by from_nir, then removed
        return li
    if isinstance(node, (nir.LIF, nir.IF)):
        beta, thr = _neuron_shaped(*lif_parameters(node, dt, name), shape=shape, label=label)
        mechanism, delay = reset_of(node, name)
        lif = LIF(shape, beta=float(beta.flat[0]), threshold=float(thr.flat[0]), reset_mechanism=mechanism,
                  reset_delay=delay)
        with torch.no_grad():
            lif.beta.copy_(_f32(beta))
            lif.threshold.copy_(_f32(thr))
        scale = (node.metadata or {}).get("fixed_point_scale")
        if scale is not None:  # a --weight-bits network: Loihi 2's integer membrane (export.nir.write.lif_node)
            lif.set_fixed_scale(float(scale))
        return lif
    raise EslError(f"{label}: not supported")  # unreachable after check_structure


def _fold_li_gain(li: LI, layers: List[nn.Module], name: str, node: nir.NIRNode) -> None:
    """Fold an LI/I node's input gain ``k`` (per neuron) into the Linear layer before it: ``v = beta v + k I``
    with ``I = W x + b`` is ``v = beta v + (k W) x + k b``. A gain of exactly 1 (our own export) changes nothing."""
    gain = li.__dict__.pop("_nir_gain")
    if np.all(gain == 1.0):
        return
    prev = layers[-1] if layers else None
    if not isinstance(prev, nn.Linear) or gain.ndim != 1 or gain.shape[0] != prev.out_features:
        raise EslError(f"node {name!r} of type {type(node).__name__}: not supported: an input gain r*dt/tau != 1 "
                       "that does not follow an Affine/Linear node")
    k = _f32(gain)
    with torch.no_grad():
        prev.weight.mul_(k[:, None])
        if prev.bias is not None:
            prev.bias.mul_(k)


def _model_spec(metadata: Dict[str, Any], layers: List[nn.Module], input_shape: Tuple[int, ...],
                num_classes: int) -> ModelSpec:
    """The recorded ModelSpec, or for graphs from other tools a nominal one: ``convnet`` if it has
    convolutions else ``mlp``, with the first LIF layer's mean beta and threshold, and the readout of
    the last layer (``membrane`` for LI)."""
    readout = "membrane" if isinstance(layers[-1], LI) else "spikes"
    if isinstance(metadata.get("model_spec"), dict):
        try:
            spec = ModelSpec.from_dict(metadata["model_spec"])
        except (TypeError, ValueError, KeyError) as e:
            raise EslError(f"graph metadata model_spec is invalid: {e}") from e
        if spec.input_shape != input_shape or spec.num_classes != num_classes:
            raise EslError(f"graph metadata model_spec ({spec.input_shape} -> {spec.num_classes}) does not match "
                           f"the graph ({input_shape} -> {num_classes})")
        if spec.readout != readout:
            raise EslError(f"graph metadata model_spec has readout {spec.readout!r}, but the graph ends in "
                           f"{'an LI/I' if readout == 'membrane' else 'a LIF/IF'} layer ({readout!r})")
        return spec
    lif = next((l for l in layers if isinstance(l, LIF)), None)
    neuron = lif if lif is not None else layers[-1]
    threshold = float(lif.threshold.double().mean()) if lif is not None else 1.0
    name = "convnet" if any(isinstance(l, nn.Conv2d) for l in layers) else "mlp"
    try:
        return ModelSpec(name, input_shape, num_classes, beta=float(neuron.beta.double().mean().clamp(0, 1)),
                         threshold=threshold, readout=readout)
    except ValueError as e:
        raise EslError(f"cannot describe this graph as a model: {e}") from e
