"""NIR graph -> lava-dl netx HDF5 (``lava.lib.dl.netx.hdf5.Network``), and a runner for such files.

The network is first converted and quantised by :mod:`export.lava.convert` and
:mod:`export.lava.fixed` (so pooling is already
folded into the following convolution or dense matrix: netx 0.6.0 refuses ``pool`` layers), then
written in the layout netx reads (``lava/lib/dl/netx/hdf5.py``, ``utils.NetDict``)::

    /layer/0        type 'input', shape (C, H, W)            netx reverses shapes to (W, H, C)
    /layer/i        type 'conv':  shape (C, H, W), weight (C_out, C_in/g, kH, kW) integers,
                                  stride/padding/dilation (H, W), groups, bias, neuron
                    type 'flatten' (between a conv layer and the dense layer it feeds)
                    type 'dense': shape (N,), weight (N_out, N_in) integers over torch (C, H, W)
                                  order (int16, gzip), bias, neuron
    neuron          type 'CUBA', iDecay 4096, vDecay, vThMant, refDelay 1, gradedSpike False
    /esl            what netx does not read: format, input_scale, input_message_bits, input_max,
                    layer names, scales and torch neuron shapes (shapes/<i>), and the NIR graph the
                    file was made from (nir: the bytes of a .nir file; esl simulate FILE reads it)

Layout decisions, from lava-dl 0.6.0's ``netx/hdf5.py``:

- ``create_conv`` reads ``shape[::-1]`` and turns the torch kernel into Lava's with
  ``weight[:, :, ::-1, ::-1]`` then ``transpose((0, 3, 2, 1))``, and stride/padding/dilation with
  ``x[::-1]``: so a conv layer is written in torch order, exactly as trained.
- ``_create`` connects a dense layer after a ``flatten`` entry by
  ``layers[-2].out.transpose([2, 1, 0]).flatten()``: the (W, H, C) conv output becomes torch's
  C-order (C, H, W) flatten, so dense matrices keep torch column order (no permutation).
- ``create_dense`` builds every dense block with ``shape = (np.prod(shape),)``, and a ``conv`` reads
  ``layers[-1].shape`` as its (W, H, C) input: after a dense layer no convolution can follow.
  ``pool``/``average`` raise ``NotImplementedError``. So pooling is folded into the next synapse
  (:mod:`export.lava.convert`); where that fold is a matrix with image-shaped neurons (a pool that
  does not tile its map, e.g. VGGSNN's 2x2 pool of a 7x7 MNIST map before a padded 3x3 conv:
  the folded stride-2 conv would read the row the pool drops), that layer and every layer after
  it are written as dense layers over torch-order flat neurons (:func:`netx_layers`), the
  convolutions among them expanded from their integer kernels, so the arithmetic is unchanged.

netx builds each CUBA neuron as a Lava ``LIF`` with ``du = iDecay - 1``, ``dv = vDecay``,
``vth = vThMant``, ``bias_exp = 6`` and integer weights through ``optimize_weight_bits`` (which keeps
our 8-bit values exactly), so ``iDecay = 4096`` (no synaptic current state), ``vDecay = round((1 -
beta) 4096)``, ``vThMant = round(threshold * S)`` and bias ``round(b * S)`` give exactly the fixed-point
network of :func:`export.lava.fixed.quantize`; :func:`run_netx` and the ``lava-fixed`` backend give
identical spikes.

Widths: netx builds the same Lava ``Dense``/``Sparse``/``Conv`` and ``LIF`` fixed-point processes, so the
widths of :mod:`export.lava.fixed` hold unchanged (16-bit ``a_in`` for every input, 24-bit ``u``/``v``,
8-bit weights, 17-bit ``vThMant``, 12-bit ``vDecay``, 13-bit bias with netx's ``bias_exp = 6``, 16-bit
graded input, ``input_message_bits = 16``). ``optimize_weight_bits`` may shift the weights left by ``s``
bits and set ``weight_exp = -s``; the port's ``a_out`` is the sum after the right shift, i.e. exactly the
sum of our integers. :func:`write_netx_file` checks all of it (:func:`check_netx_widths`) and refuses a
network that does not fit with a one-line :class:`EslError` instead of writing integers netx would clip.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import h5py
import nir
import numpy as np
import scipy.sparse as sp

import esl_deploy  # noqa: F401  (installs the lava import hook before any lava import)
from esl_deploy.atomic import atomic_write, check_free_space
from esl_deploy.errors import EslError
from esl_deploy.resources import check_memory

from .convert import LavaNet, SynapseLayer, convert
from .net import conv_matrix
from .fixed import BIAS_EXP, DECAY_UNITY, WEIGHT_MIXED_MAX, WEIGHT_SIGNED_MAX, check_net_widths, quantize, \
    trained_input_scale, trained_scales
from .run import (INPUT_MESSAGE_BITS, LavaResult, _to_columns, import_lava, read_recording, record_spikes,
                  run_in_chunks)
from ..nir.write import graph_nbytes

FORMAT = "esl-netx"
FORMAT_VERSION = 1


def netx_net(graph: nir.NIRGraph, *, input_max: float = 1.0, input_frac_bits: Optional[int] = None,
             input_scale: Optional[float] = None) -> LavaNet:
    """The quantised network that :func:`write_netx` writes: convolutions kept as convolutions up to the
    first layer netx cannot hold as one (:func:`netx_layers`), and one 8-bit weight per synapse (netx has
    no split weights: ``optimize_weight_bits`` clips beyond 8 bits). It is :func:`export.lava.fixed.quantize`
    of the converted graph, integer for integer; only the layout of the dense tail differs."""
    net = convert(graph, synapse="dense", conv="conv")
    check_netx_neurons(net)
    scales = trained_scales(graph)
    if input_scale is None and input_frac_bits is None:  # a --weight-bits network: the input scale it trained at
        input_scale = trained_input_scale(net, scales, input_max=input_max)
    return netx_layers(quantize(net, input_max=input_max, groups=1, input_frac_bits=input_frac_bits,
                                input_scale=input_scale, trained_scales=scales))


def dense_tail(net: LavaNet) -> int:
    """The index of the first layer netx must write as a dense layer although its neurons are image-shaped
    (a matrix synapse into (C, H, W) neurons: a pool folded into a following conv where the fold is not a
    conv), or ``len(net.layers)`` when there is none. netx allows no conv after a dense layer, so every
    layer from there on is dense."""
    for index, layer in enumerate(net.layers):
        if layer.synapse.kind != "conv" and len(layer.neuron.shape) > 1:
            return index
    return len(net.layers)


def netx_layers(net: LavaNet) -> LavaNet:
    """``net`` with every convolution from :func:`dense_tail` on expanded into its (n_out, n_in) matrix over
    torch-order indices (:meth:`~export.lava.net.SynapseLayer.matrix`); a quantised layer's integer kernel is
    expanded the same way, so the integers each neuron sums are those of the convolution."""
    start = dense_tail(net)
    layers = list(net.layers)
    for index in range(start, len(layers)):
        layer = layers[index]
        syn = layer.synapse
        if syn.kind != "conv":
            continue
        dense = SynapseLayer(kind="dense", in_shape=syn.in_shape, out_shape=syn.out_shape, weight=syn.matrix(),
                             graded=syn.graded, nodes=syn.nodes)
        fixed = layer.fixed
        if fixed is not None:
            w = conv_matrix(fixed.weight, syn.in_shape, syn.stride, syn.padding, syn.dilation, syn.groups)
            fixed = replace(fixed, weight=sp.csr_matrix((np.rint(w.data).astype(np.int64), w.indices, w.indptr),
                                                        shape=w.shape))
        layers[index] = replace(layer, synapse=dense, fixed=fixed)
    return replace(net, layers=layers)


def check_netx_neurons(net: LavaNet) -> None:
    """Refuse (one-line :class:`EslError` naming the layer) neurons netx cannot describe.

    netx 0.6.0 builds every ``CUBA`` layer as Lava's ``LIF``/``LIFReset`` (``hdf5.py``
    ``_neuron_params``: ``vth = vThMant``, ``du = iDecay - 1``, ``dv = vDecay``, each a ``Var(shape=(1,))``),
    and its ``neuron`` group has no reset option: v is reset to zero in the step of the spike, with one
    decay and one threshold per layer. That is snnTorch's ``reset_mechanism = "zero"`` with
    ``reset_delay = False`` and a uniform beta and threshold; anything else runs as
    :class:`~export.lava.procs.leaky_reset.LeakyReset` in ``esl export --to lava`` instead."""
    if not net.is_chain:
        name = next(l.neuron.name for l in net.layers if l.synapse.parts)
        raise EslError(f"layer {name!r} reads several layers or itself (a graph: residual, recurrent or branching); "
                       "netx's layers form a sequence: export with --to lava instead")
    for layer in net.layers:
        n = layer.neuron
        what = []
        if n.du != 1.0:
            what.append("a synaptic current (CubaLIF)")
        if np.any(np.asarray(n.v_reset) != 0):
            what.append("v_reset != 0")
        if n.reset_mechanism != "zero":
            what.append(f"reset_mechanism {n.reset_mechanism!r}")
        if n.reset_delay:
            what.append("reset_delay")
        what += [f"per-neuron {k}" for k in ("beta", "threshold") if isinstance(getattr(n, k), np.ndarray)]
        if what:
            raise EslError(f"layer {n.name!r}: netx cannot express {' and '.join(what)} (lava-dl netx's CUBA neuron "
                           f"resets v to zero when it spikes, with one vDecay and vThMant per layer); "
                           f"export with --to lava instead")


def check_netx_widths(net: LavaNet) -> None:
    """Refuse (one-line :class:`EslError`) a quantised network whose integers netx would change or Loihi 2
    could not hold: the widths of :func:`export.lava.fixed.check_net_widths` (16-bit ``a_in`` for any input,
    17-bit ``vThMant``, 12-bit ``vDecay``, 13-bit bias, 16-bit graded input), plus what netx itself does to
    the file: ``optimize_weight_bits`` clips mixed-sign weights to [-256, 254] (``Dense``/``Sparse`` then drop
    the lowest bit, so they must be even) and one-signed ones to 255; convolution weights go to
    ``Conv`` unchanged, on the same grid."""
    check_net_widths(net)
    for layer in net.layers:
        w = layer.fixed.weight
        vals = w.data if sp.issparse(w) else np.asarray(w).ravel()
        if not vals.size:
            continue
        lo, hi = int(vals.min()), int(vals.max())
        mixed = lo < 0 < hi
        ok = (lo >= -256 and hi <= WEIGHT_MIXED_MAX and not np.any(vals % 2)) if mixed \
            else max(-lo, hi) <= WEIGHT_SIGNED_MAX
        if not ok:
            grid = "even values in [-256, 254]" if mixed else "|w| <= 255"
            raise EslError(f"layer {layer.neuron.name!r}: weights in [{lo}, {hi}] leave netx's 8-bit synapse "
                           f"({grid}); quantize with groups=1")


def _bytes(group: h5py.Group, key: str, value: str) -> None:
    group.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def _pair(group: h5py.Group, key: str, value) -> None:
    group.create_dataset(key, data=np.asarray(value, dtype=np.int64))


def write_netx_file(net: LavaNet, path: Union[str, os.PathLike], graph: Optional[nir.NIRGraph] = None) -> None:
    """Write a quantised :class:`LavaNet` into ``path`` (not atomic; see :func:`write_netx`); ``graph``, the
    NIR graph it was made from, is stored in ``/esl/nir`` for ``esl simulate FILE``."""
    if not net.quantized:
        raise EslError("netx needs fixed-point parameters: quantize the network first")
    if any(layer.fixed.split_exp for layer in net.layers):
        raise EslError("netx holds one 8-bit weight per synapse: quantize with groups=1")
    if any(layer.fixed.bias_exp != BIAS_EXP for layer in net.layers):
        raise EslError(f"netx builds every neuron with bias_exp = {BIAS_EXP}: quantize with groups=1")
    if net.input_min != 0.0:
        raise EslError("the netx writer supports graded input in [0, input_max] only")
    check_netx_neurons(net)
    start = dense_tail(net)
    late = next((l for l in net.layers[start:] if l.synapse.kind == "conv"), None)
    if late is not None:
        raise EslError(f"layer {late.neuron.name!r} is a convolution after layer {net.layers[start].neuron.name!r}, "
                       "which netx can only hold as a dense layer (netx builds no conv after a dense layer): "
                       "pass the network through netx_layers first")
    check_netx_widths(net)
    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        g = layers.create_group("0")
        _bytes(g, "type", "input")
        _pair(g, "shape", net.input_shape)
        index = 1
        previous = None
        for layer in net.layers:
            syn, neuron, fixed = layer.synapse, layer.neuron, layer.fixed
            if syn.kind == "conv":
                g = layers.create_group(str(index))
                _bytes(g, "type", "conv")
                _pair(g, "shape", neuron.shape)
                g.create_dataset("weight", data=np.asarray(fixed.weight, dtype=np.int64))
                _pair(g, "stride", syn.stride)
                _pair(g, "padding", syn.padding)
                _pair(g, "dilation", syn.dilation)
                g.create_dataset("groups", data=np.int64(syn.groups))
                bias = fixed.bias_mant
                per_channel = bias.reshape(bias.shape[0], -1)
                if np.all(per_channel == per_channel[:, :1]):
                    bias = per_channel[:, 0]
                else:  # netx takes a full bias in its (W, H, C) neuron order
                    bias = bias.transpose(2, 1, 0)
            else:
                if previous == "conv":  # netx: out.transpose([2, 1, 0]).flatten(), torch's (C, H, W) order
                    g = layers.create_group(str(index))
                    _bytes(g, "type", "flatten")
                    index += 1
                rows, cols = fixed.weight.shape  # netx reads the whole matrix, as int64 (NetDict astype(int))
                check_memory(rows * cols * 10, f"layer {neuron.name!r}'s dense {rows} x {cols} matrix (netx holds "
                             "dense layers as full matrices)", "export with --to lava instead")
                g = layers.create_group(str(index))
                _bytes(g, "type", "dense")
                _pair(g, "shape", (int(np.prod(neuron.shape)),))
                # 8-bit values: int16 holds them; mostly zeros after sparse training: gzip (h5py reads it back)
                g.create_dataset("weight", data=sp.csr_matrix(fixed.weight).toarray().astype(np.int16),
                                 compression="gzip", compression_opts=4, shuffle=True)
                bias = fixed.bias_mant.ravel()
            if np.any(bias != 0):
                g.create_dataset("bias", data=np.asarray(bias, dtype=np.int64))
            n = g.create_group("neuron")
            _bytes(n, "type", "CUBA")
            n.create_dataset("iDecay", data=np.int64(DECAY_UNITY))  # netx: du = iDecay - 1 = 4095
            n.create_dataset("vDecay", data=np.int64(fixed.dv))
            n.create_dataset("vThMant", data=np.int64(fixed.vth))
            n.create_dataset("refDelay", data=np.int64(1))
            n.create_dataset("gradedSpike", data=False)
            index += 1
            previous = syn.kind
        esl = f.create_group("esl")
        esl.attrs["format"] = FORMAT
        esl.attrs["version"] = FORMAT_VERSION
        esl.attrs["input_scale"] = float(net.layers[0].fixed.input_scale)
        esl.attrs["input_message_bits"] = INPUT_MESSAGE_BITS
        esl.attrs["input_max"] = float(net.input_max if net.input_max is not None else 1.0)
        esl.attrs["dt"] = float(net.dt)
        esl.create_dataset("names", data=np.array([l.neuron.name.encode() for l in net.layers], dtype=np.bytes_))
        esl.create_dataset("scales", data=np.array([l.fixed.scale for l in net.layers]))
        shapes, errors = esl.create_group("shapes"), esl.create_group("errors")
        for i, layer in enumerate(net.layers, start=1):
            _pair(shapes, str(i), layer.neuron.shape)
            errors.create_group(str(i)).attrs.update({k: float(v) for k, v in layer.fixed.errors.items()})
        if graph is not None:
            with tempfile.TemporaryDirectory(prefix="esl-netx-") as tmp:
                nir.write(os.path.join(tmp, "graph.nir"), graph)
                raw = Path(tmp, "graph.nir").read_bytes()
            esl.create_dataset("nir", data=np.frombuffer(raw, dtype=np.uint8), compression="gzip")


def write_netx(graph: nir.NIRGraph, path: Union[str, os.PathLike], *, input_max: float = 1.0,
               input_frac_bits: Optional[int] = None) -> Path:
    """``esl export --to netx``: write ``graph`` as a lava-dl netx HDF5 file, atomically; returns the path.
    The graph itself is stored beside (``/esl/nir``), so ``esl simulate FILE`` compares the file's run
    with the network it came from.

    Raises :class:`EslError` for graphs netx cannot describe (see :mod:`export.lava.convert` for the
    converter's limits, and :func:`check_netx_neurons`).
    """
    net = netx_net(graph, input_max=input_max, input_frac_bits=input_frac_bits)
    # integer weights are stored as int64 (conv) or int16 (dense), plus the graph itself: h5py may
    # crash rather than raise on a full disk, so refuse beforehand
    check_free_space(Path(path).parent if str(Path(path).parent) else ".", 4 * graph_nbytes(graph) + (1 << 16))
    return atomic_write(path, lambda tmp: write_netx_file(net, tmp, graph))


def is_netx_file(path: Union[str, os.PathLike]) -> bool:
    """True when ``path`` is an HDF5 file written by :func:`write_netx` (``/esl`` format ``esl-netx``)."""
    path = Path(path)
    try:
        if not path.is_file() or not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            return "esl" in f and f["esl"].attrs.get("format") == FORMAT
    except OSError:
        return False


def read_netx_graph(path: Union[str, os.PathLike]) -> nir.NIRGraph:
    """The NIR graph stored in a netx file by :func:`write_netx` (:class:`EslError` when it holds none)."""
    from ..nir.read import read_graph

    with h5py.File(path, "r") as f:
        if "esl/nir" not in f:
            raise EslError(f"{path}: this netx file holds no NIR graph of the trained network (written before "
                           "graphs were stored): export it again, or simulate the checkpoint with --backend netx")
        stored = f["esl/nir"]
        if not isinstance(stored, h5py.Dataset) or stored.dtype != np.uint8 or stored.ndim != 1:
            raise EslError(f"{path}: /esl/nir is not the bytes of a NIR file")
        check_memory(2 * int(stored.size), f"reading the NIR graph stored in {path}", "export the network again")
        raw = stored[()].tobytes()
    with tempfile.TemporaryDirectory(prefix="esl-netx-") as tmp:
        file = Path(tmp, "graph.nir")
        file.write_bytes(raw)
        return read_graph(file)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise EslError(f"no such netx file: {path}")
    if not h5py.is_hdf5(path):
        raise EslError(f"{path}: not a netx file (not HDF5)")
    with h5py.File(path, "r") as f:
        if "layer" not in f or not isinstance(f["layer"], h5py.Group) or "0" not in f["layer"]:
            raise EslError(f"{path}: not a netx file (an HDF5 file without /layer/0)")


def run_netx(path: Union[str, os.PathLike], x: np.ndarray, *, record: str = "all", sparse: bool = True,
             progress: Optional[Callable[[int], None]] = None, chunk: int = 64) -> LavaResult:
    """Load ``path`` with ``lava.lib.dl.netx.hdf5.Network`` and run all samples of ``x`` (T, B, ...).

    Like :func:`export.lava.run.run`: one compiled network, neurons reset by netx's own
    ``reset_interval = T`` (its per-layer offsets match the one-step synaptic delay when
    ``reset_offset = 1``), ``B*T + L`` steps, spikes of every layer (torch order). Input is sent as
    ``round(x * input_scale)`` with the scale recorded in ``/esl``; files without it get binary input.
    ``sparse`` builds dense layers as Lava ``Sparse`` (netx's ``sparse_fc_layer``). Spikes of a dense layer
    whose neurons are image-shaped come back in the shape recorded in ``/esl/shapes``.
    """
    import_lava()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        from lava.lib.dl.netx.hdf5 import Network  # lava-dl prints CUDA/Prophesee notices on import
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer as Source

    path = Path(path)
    _check_file(path)
    with h5py.File(path, "r") as f:
        attrs = dict(f["esl"].attrs) if "esl" in f else {}
        names = [n.decode() for n in f["esl/names"][()]] if "esl/names" in f else None
        input_shape = tuple(int(s) for s in f["layer/0/shape"][()]) if "shape" in f["layer/0"] else None
        shapes = {int(k): tuple(int(s) for s in v[()]) for k, v in f["esl/shapes"].items()} \
            if "esl/shapes" in f else {}
    scale = float(attrs.get("input_scale", 1.0))
    bits = int(attrs.get("input_message_bits", 0))
    limit = float(attrs.get("input_max", 1.0))
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 3 or (input_shape is not None and tuple(x.shape[2:]) != input_shape):
        raise EslError(f"input of shape {tuple(x.shape)} does not match the netx network: expected "
                       f"(T, B, {', '.join(map(str, input_shape or ('...',)))})")
    peak = float(np.abs(x).max(initial=0.0))
    if bits and peak > limit * (1 + 1e-9):
        raise EslError(f"input values up to {peak:g} exceed the netx input range |x| <= {limit:g}")
    data = np.round(x * scale).astype(np.int32) if bits else (x != 0).astype(np.int32)
    if bits and np.abs(data).max(initial=0) > 2 ** (bits - 1) - 1:
        raise EslError(f"input values up to {peak:g} times the input scale {scale:g} do not fit the "
                       f"{bits}-bit input message")
    T, B = data.shape[:2]
    try:
        net = Network(net_config=str(path), input_message_bits=bits, reset_interval=T, reset_offset=1,
                      sparse_fc_layer=sparse)
    except (KeyError, ValueError, RuntimeError, NotImplementedError) as e:
        raise EslError(f"{path}: netx cannot build this network: {type(e).__name__}: {e}") from e
    blocks = [b for b in net.layers if b.neuron is not None and type(b).__name__ != "Input"]
    L = len(blocks)
    steps = B * T + L
    in_shape = tuple(net.inp.shape)
    if len(in_shape) == 1:
        data = data.reshape(T, B, -1)
    cols = _to_columns(data)
    if cols.shape[:-1] != in_shape:
        raise EslError(f"input of shape {tuple(x.shape)} does not fit the netx input port {in_shape}")
    cols = np.concatenate([cols, np.zeros(cols.shape[:-1] + (L,), dtype=cols.dtype)], axis=-1)
    names = names if names is not None and len(names) == L else [str(i + 1) for i in range(L)]
    with tempfile.TemporaryDirectory(prefix="esl-netx-") as tmp:
        t0 = time.perf_counter()
        source = Source(data=cols)
        source.s_out.connect(net.inp)
        recorders = [(index,) + record_spikes(block.neuron.s_out, tmp, index, steps)
                     for index, block in enumerate(blocks, start=1) if record == "all" or index == L]
        build_s = time.perf_counter() - t0
        run_s = run_in_chunks(source, Loihi2SimCfg(select_tag="fixed_pt"), steps=steps, T=T, B=B, L=L, chunk=chunk,
                              progress=progress)
        out_names = [names[index - 1] for index, _, _ in recorders]
        spikes = [read_recording(file, np.uint8, shape, index, T, B) for index, file, shape in recorders]
    # dense blocks are flat: their neurons are in torch (C, H, W) order (the rows of the torch-order matrix)
    spikes = [s.reshape((T, B) + shapes[index]) if index in shapes else s
              for (index, _, _), s in zip(recorders, spikes)]
    return LavaResult(names=out_names, spikes=spikes, steps=steps, build_s=build_s, run_s=run_s)


def simulate_netx(graph: nir.NIRGraph, x: np.ndarray, progress: Optional[Callable[[int], None]] = None, *,
                  source: Optional[Union[str, os.PathLike]] = None, sparse: bool = True,
                  input_max: float = 1.0, input_frac_bits: Optional[int] = None,
                  input_scale: Optional[float] = None) -> Tuple[LavaResult, dict]:
    """``esl simulate --backend netx``: run the netx file ``source`` as it is when it is one
    (:func:`is_netx_file`), else write ``graph`` to a temporary netx file (:func:`netx_net` with the given
    input range and bits) and run that. Returns the result and the report's extra fields."""
    if source is not None and is_netx_file(source):
        res = run_netx(source, x, progress=progress, sparse=sparse)
        with h5py.File(source, "r") as f:
            found = f["esl/errors"] if "esl/errors" in f else {}
            errors = {name: {k: float(v) for k, v in found[str(i)].attrs.items()}
                      for i, name in enumerate(res.names, start=1) if str(i) in found}
        return res, {"quant_error": errors or None}
    net = netx_net(graph, input_max=input_max, input_frac_bits=input_frac_bits, input_scale=input_scale)
    with tempfile.TemporaryDirectory(prefix="esl-sim-") as tmp:
        path = Path(tmp) / "network.net"
        write_netx_file(net, path)
        res = run_netx(path, x, progress=progress, sparse=sparse)
    return res, {"quant_error": net.quant_errors()}


__all__ = ["FORMAT", "check_netx_neurons", "check_netx_widths", "dense_tail", "is_netx_file", "netx_layers",
           "netx_net", "read_netx_graph", "run_netx", "simulate_netx", "write_netx", "write_netx_file"]
