"""``esl export --to lava``: a self-contained HDF5 description of the Lava network, and its reader.

:func:`write_lava` stores what :func:`export.lava.convert.convert` and :func:`export.lava.fixed.quantize`
produce, so :func:`read_lava` rebuilds the same :class:`~export.lava.convert.LavaNet` and
:func:`export.lava.run.run` runs it in floating point or Loihi 2 fixed point without the NIR graph::

    attrs           format 'esl-lava', version, dt, input_max, input_min
    /input_shape    (C, H, W) or (N,), torch order
    /layers/<i>     attrs: name, node_type ('LIF'/'IF'), kind ('sparse'/'dense'/'conv'), graded, nodes
      synapse/      in_shape, out_shape; sparse/dense: weight/{data, indices, indptr, shape} (CSR over
                    torch-flattened indices); conv: weight (C_out, C_in/groups, kH, kW), stride,
                    padding, dilation (H, W), groups
      neuron/       shape, beta, threshold, bias (per neuron, torch order): Lava float LIF
                    du = 1, dv = 1 - beta, vth = threshold, bias_mant = bias; beta and threshold are
                    scalars or (version 2) arrays of the neuron shape; attrs (version 2, absent means
                    'zero' and False): reset_mechanism ('zero'/'subtract'/'none'), reset_delay
      fixed/        scale, input_scale, du, dv, vth, bias_exp, bias_mant, split_exp, weight (integers,
                    same layout as synapse/weight; split_exp k > 0: two 8-bit synapse groups
                    hi * 2^k + lo, see export.lava.fixed.split_weights), attrs: quantisation errors;
                    dv and vth scalars or (version 2) arrays of the neuron shape

Version 3 (a graph: :mod:`export.lava.graph_convert`) adds, where used: ``synapse/parts`` (rows ``source,
size, shift`` of :class:`~export.lava.net.Part`), neuron attrs ``du`` and datasets ``v_reset``,
``current_bias``, and ``fixed/v_reset``, ``fixed/current_bias``.

A network whose layers all reset to zero without delay with one beta and threshold each is written as
version 1, the layout earlier writers wrote; any other is version 2 (3 with the graph fields), which
older readers refuse instead of running it with the wrong neurons.

Lava itself stores images as (W, H, C): the matrices are permuted and conv kernels flipped and
transposed to (C_out, kW, kH, C_in) when the processes are built (:mod:`export.lava.run`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import h5py
import nir
import numpy as np
import scipy.sparse as sp

from esl_deploy.errors import EslError

from esl_deploy.atomic import atomic_write, check_free_space
from .convert import LavaLayer, LavaNet, NeuronLayer, SynapseLayer, convert
from .net import Part
from .fixed import FixedLayer, quantize

FORMAT = "esl-lava"
FORMAT_VERSION = 3  # 2: reset_mechanism/reset_delay, per-neuron beta/threshold/dv/vth; 3: graphs (1, 2 still read)


def _put_weight(g: h5py.Group, weight, kind: str) -> None:
    if kind == "conv":
        g.create_dataset("weight", data=np.asarray(weight))
        return
    w = sp.csr_matrix(weight)
    h = g.create_group("weight")
    h.create_dataset("data", data=w.data)
    h.create_dataset("indices", data=w.indices.astype(np.int64))
    h.create_dataset("indptr", data=w.indptr.astype(np.int64))
    h.create_dataset("shape", data=np.asarray(w.shape, dtype=np.int64))


def _get_weight(g: h5py.Group, kind: str):
    if kind == "conv":
        return g["weight"][()]
    h = g["weight"]
    return sp.csr_matrix((h["data"][()], h["indices"][()], h["indptr"][()]), shape=tuple(h["shape"][()]))


def write_lava_file(net: LavaNet, path: Union[str, os.PathLike]) -> None:
    """Write a (quantised) :class:`LavaNet` to ``path`` (not atomic; see :func:`write_lava`)."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        graph = not net.is_chain or any(l.neuron.du != 1.0 or l.neuron.current_bias is not None or np.any(
            np.asarray(l.neuron.v_reset) != 0) for l in net.layers)
        f.attrs["version"] = 3 if graph else 1 if all(layer.neuron.stock for layer in net.layers) else 2
        f.attrs["dt"] = float(net.dt)
        if net.input_max is not None:
            f.attrs["input_max"] = float(net.input_max)
        f.attrs["input_min"] = float(net.input_min)
        f.create_dataset("input_shape", data=np.asarray(net.input_shape, dtype=np.int64))
        layers = f.create_group("layers")
        for i, layer in enumerate(net.layers):
            syn, neuron = layer.synapse, layer.neuron
            g = layers.create_group(str(i))
            g.attrs.update(name=neuron.name, node_type=neuron.node_type, kind=syn.kind, graded=bool(syn.graded))
            g.create_dataset("nodes", data=np.array([n.encode() for n in syn.nodes], dtype=np.bytes_))
            s = g.create_group("synapse")
            s.create_dataset("in_shape", data=np.asarray(syn.in_shape, dtype=np.int64))
            s.create_dataset("out_shape", data=np.asarray(syn.out_shape, dtype=np.int64))
            _put_weight(s, syn.weight, syn.kind)
            if syn.kind == "conv":
                for key in ("stride", "padding", "dilation"):
                    s.create_dataset(key, data=np.asarray(getattr(syn, key), dtype=np.int64))
                s.create_dataset("groups", data=np.int64(syn.groups))
            if syn.parts:
                s.create_dataset("parts", data=np.array([[p.source, p.size, p.shift] for p in syn.parts], np.int64))
            n = g.create_group("neuron")
            n.create_dataset("shape", data=np.asarray(neuron.shape, dtype=np.int64))
            n.create_dataset("beta", data=np.asarray(neuron.beta, dtype=np.float64))
            n.create_dataset("threshold", data=np.asarray(neuron.threshold, dtype=np.float64))
            n.create_dataset("bias", data=neuron.bias)
            if not neuron.stock:
                n.attrs.update(reset_mechanism=neuron.reset_mechanism, reset_delay=bool(neuron.reset_delay))
            if graph:
                n.attrs["du"] = float(neuron.du)
                n.create_dataset("v_reset", data=np.asarray(neuron.v_reset, dtype=np.float64))
                if neuron.current_bias is not None:
                    n.create_dataset("current_bias", data=neuron.current_bias)
            if layer.fixed is not None:
                fx = layer.fixed
                q = g.create_group("fixed")
                for key in ("scale", "input_scale"):
                    q.create_dataset(key, data=np.float64(getattr(fx, key)))
                for key in ("du", "dv", "vth", "bias_exp", "split_exp"):
                    q.create_dataset(key, data=np.asarray(getattr(fx, key), dtype=np.int64))
                q.create_dataset("bias_mant", data=np.asarray(fx.bias_mant, dtype=np.int64))
                _put_weight(q, fx.weight, syn.kind)
                q.attrs.update({k: float(v) for k, v in fx.errors.items()})
                if graph:
                    q.create_dataset("v_reset", data=np.asarray(fx.v_reset, dtype=np.int64))
                    if fx.current_bias is not None:
                        q.create_dataset("current_bias", data=np.asarray(fx.current_bias, dtype=np.int64))


def lava_net(graph: nir.NIRGraph, *, synapse: str = "sparse", conv: str = "conv", input_max: float = 1.0,
             groups: Optional[int] = None, input_frac_bits: Optional[int] = None) -> LavaNet:
    """The network :func:`write_lava` writes: converted, with fixed-point parameters
    (:func:`export.lava.fixed.quantize`). A float network's weights are split over two 8-bit synapse groups by
    default; a ``--weight-bits`` network (its neurons record the scale their integer membrane trained at,
    :func:`export.lava.fixed.trained_scales`) is written as it trained: one 8-bit group, every layer at its
    trained scale, graded input at its trained input scale (:func:`export.lava.fixed.trained_input_scale`),
    as ``esl simulate --backend lava-fixed`` and the netx file run it."""
    from .fixed import trained_input_scale, trained_scales

    net = convert(graph, synapse=synapse, conv=conv)
    scales = trained_scales(graph)
    input_scale = None
    if scales and input_frac_bits is None:
        input_scale = trained_input_scale(net, scales, input_max=input_max)
    if groups is None:
        groups = 1 if scales else 2
    return quantize(net, input_max=input_max, groups=groups, input_frac_bits=input_frac_bits,
                    input_scale=input_scale, trained_scales=scales or None)


def write_lava(graph: nir.NIRGraph, path: Union[str, os.PathLike], *, synapse: str = "sparse",
               conv: str = "conv", input_max: float = 1.0, groups: Optional[int] = None,
               input_frac_bits: Optional[int] = None) -> Path:
    """``esl export --to lava``: convert ``graph``, quantise it, and write it to ``path`` atomically."""
    net = lava_net(graph, synapse=synapse, conv=conv, input_max=input_max, groups=groups,
                   input_frac_bits=input_frac_bits)
    # h5py can crash rather than raise on a full disk: refuse beforehand (the file holds float64 and int64
    # copies of the weights, and the HDF5 structure)
    from ..nir.write import graph_nbytes
    check_free_space(Path(path).parent if str(Path(path).parent) else ".", 8 * graph_nbytes(graph) + (1 << 18))
    return atomic_write(path, lambda tmp: write_lava_file(net, tmp))


def read_lava(path: Union[str, os.PathLike]) -> LavaNet:
    """Rebuild the :class:`LavaNet` written by :func:`write_lava`; :class:`EslError` if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise EslError(f"no such Lava network file: {path}")
    if not h5py.is_hdf5(path):
        raise EslError(f"{path}: not a Lava network file (not HDF5)")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise EslError(f"{path}: not a Lava network file written by esl export --to lava")
            if int(f.attrs.get("version", 0)) > FORMAT_VERSION:
                raise EslError(f"{path}: format version {f.attrs['version']} is newer than this reader")
            layers = []
            for i in range(len(f["layers"])):
                g = f["layers"][str(i)]
                kind = str(g.attrs["kind"])
                s, n = g["synapse"], g["neuron"]
                extra = {}
                if kind == "conv":
                    extra = {k: tuple(int(v) for v in s[k][()]) for k in ("stride", "padding", "dilation")}
                    extra["groups"] = int(s["groups"][()])
                if "parts" in s:
                    extra["parts"] = tuple(Part(source=int(a), size=int(b), shift=int(c)) for a, b, c in s["parts"][()])
                syn = SynapseLayer(kind=kind, in_shape=tuple(s["in_shape"][()]), out_shape=tuple(s["out_shape"][()]),
                                   weight=_get_weight(s, kind), graded=bool(g.attrs["graded"]),
                                   nodes=tuple(v.decode() for v in g["nodes"][()]), **extra)
                mechanism = n.attrs.get("reset_mechanism", "zero")  # absent in version 1
                mechanism = mechanism.decode() if isinstance(mechanism, bytes) else str(mechanism)
                neuron = NeuronLayer(name=str(g.attrs["name"]), node_type=str(g.attrs["node_type"]),
                                     shape=tuple(n["shape"][()]), beta=n["beta"][()],
                                     threshold=n["threshold"][()], bias=n["bias"][()], reset_mechanism=mechanism,
                                     reset_delay=bool(n.attrs.get("reset_delay", False)),
                                     du=float(n.attrs.get("du", 1.0)),
                                     v_reset=n["v_reset"][()] if "v_reset" in n else 0.0,
                                     current_bias=n["current_bias"][()] if "current_bias" in n else None)
                fixed = None
                if "fixed" in g:
                    q = g["fixed"]
                    fixed = FixedLayer(scale=float(q["scale"][()]), input_scale=float(q["input_scale"][()]),
                                       weight=_get_weight(q, kind), vth=q["vth"][()], dv=q["dv"][()],
                                       du=int(q["du"][()]), bias_exp=int(q["bias_exp"][()]),
                                       split_exp=int(q["split_exp"][()]),
                                       bias_mant=q["bias_mant"][()], errors={k: float(v) for k, v in q.attrs.items()},
                                       v_reset=q["v_reset"][()] if "v_reset" in q else 0,
                                       current_bias=q["current_bias"][()] if "current_bias" in q else None)
                layers.append(LavaLayer(synapse=syn, neuron=neuron, fixed=fixed))
            input_max = float(f.attrs["input_max"]) if "input_max" in f.attrs else None
            return LavaNet(input_shape=tuple(f["input_shape"][()]), layers=layers, dt=float(f.attrs["dt"]),
                           input_max=input_max, input_min=float(f.attrs.get("input_min", 0.0)))
    except EslError:
        raise
    except (KeyError, ValueError, TypeError, OSError) as e:
        raise EslError(f"{path}: corrupt Lava network file: {type(e).__name__}: {e}") from e


__all__ = ["FORMAT", "lava_net", "read_lava", "write_lava", "write_lava_file"]
