"""Run a :class:`~export.lava.convert.LavaNet` in Lava: one compiled network for a whole evaluation set.

See :mod:`export.lava.convert` for the timing (one step of latency per synapse layer, ``B*T + L``
steps) and the reset between samples (``LIFReset`` with ``reset_interval = T`` and a per-layer
offset). Layers with per-neuron beta or threshold, or another reset than snnTorch's zero-without-delay,
run as :class:`export.lava.procs.leaky_reset.LeakyReset` (same ports, same per-sample reset). Spikes are
recorded by :class:`export.lava.procs.spike_recorder.SpikeRecorder`. A membrane-readout
network (last layer a NIR ``LI``/``I`` node, ``LavaNet.readout == "membrane"``) ends in a
:class:`export.lava.procs.voltage_recorder.VoltageLIFReset` with ``vth = inf``: its voltage ``v`` is
recorded every step (floating point only) and returned as ``LavaResult.voltage``, shifted by the same
latency as the spikes.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp

import esl_deploy  # noqa: F401  (installs the lava import hook before any lava import)
from esl_deploy._lava_compat import import_lava  # noqa: F401  (re-exported)
from esl_deploy.errors import EslError

from .convert import MODES, LavaLayer, LavaNet, lava_order
from .net import INPUT, Part
from .fixed import encode_input, split_weights

INPUT_MESSAGE_BITS = 16   # num_message_bits of the first synapse (graded input)


@dataclass(kw_only=True)
class LavaResult:
    """Spikes of every spiking layer, torch order: ``spikes[l]`` has shape (T, B, *layer shape).

    A membrane-readout network's last layer emits no spikes: it is not in ``names``/``spikes``; its
    voltage (T, B, *shape), float64, is ``voltage`` and its node name ``readout_name``.
    """

    names: List[str]
    spikes: List[np.ndarray]
    steps: int
    build_s: float
    run_s: float
    readout_name: Optional[str] = None
    voltage: Optional[np.ndarray] = None

    @property
    def output(self) -> np.ndarray:
        """The network's output: the readout voltage of a membrane-readout network, else the last spikes."""
        return self.voltage if self.voltage is not None else self.spikes[-1]


def _to_columns(x: np.ndarray) -> np.ndarray:
    """(T, B, *shape) torch order -> Lava source data (*reversed shape, B*T), column b*T + t."""
    T, B = x.shape[:2]
    nd = x.ndim - 2
    flat = np.swapaxes(x, 0, 1).reshape((B * T,) + x.shape[2:])
    return flat.transpose(tuple(range(nd, 0, -1)) + (0,))


def _from_columns(data: np.ndarray, shape: Tuple[int, ...], T: int, B: int) -> np.ndarray:
    """Inverse of :func:`_to_columns` for a sink buffer (*reversed shape, B*T) -> (T, B, *shape)."""
    nd = len(shape)
    flat = data.transpose((nd,) + tuple(range(nd - 1, -1, -1)))  # (B*T, *shape)
    return np.swapaxes(flat.reshape((B, T) + tuple(shape)), 0, 1)


def _synapse_processes(net: LavaNet, index: int, mode: str, depths: List[int]) -> List[Tuple[Part, list]]:
    """The Lava synapse process(es) of layer ``index``, per :class:`~export.lava.net.Part` (the previous layer
    for a chain): one process, or in fixed point with split weights two ``Dense``/``Sparse`` groups (``hi``
    with ``weight_exp = k``, ``lo`` with 0) into the same neurons; ``DelaySparse``/``DelayDense`` where the part
    must wait (:meth:`~export.lava.net.LavaNet.delay`). Lava's ``Conv`` models have no weight exponent
    (``PyConvModelFixed`` ignores ``weight_exp``), so a split convolution is one ``Conv`` holding
    ``hi * 2^k + lo``: the same arithmetic."""
    import_lava()
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.sparse.process import DelaySparse, Sparse

    layer = net.layers[index]
    syn = layer.synapse
    fixed = mode == "fixed"
    weight = layer.fixed.weight if fixed else syn.weight
    parts = net.parts(index)
    if syn.kind == "conv":
        # torch (C_out, C_in, kH, kW) cross-correlation -> Lava (C_out, kW, kH, C_in) true convolution
        kernel = np.asarray(weight)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1).copy()
        kernel = kernel.astype(np.int32 if fixed else np.float64)
        bits = INPUT_MESSAGE_BITS if parts[0].source == INPUT else 0
        return [(parts[0], [Conv(weight=kernel, input_shape=tuple(reversed(syn.in_shape)), padding=syn.padding[::-1],
                                 stride=syn.stride[::-1], dilation=syn.dilation[::-1], groups=syn.groups,
                                 num_message_bits=bits)])]
    full = sp.csr_matrix(weight)
    out, col = [], 0
    for part in parts:
        src_shape = net.input_shape if part.source == INPUT else net.layers[part.source].neuron.shape
        if not syn.parts:
            src_shape = syn.in_shape
        m = full[:, col:col + part.size] if syn.parts else full
        col += part.size
        m = sp.csr_matrix(m[lava_order(syn.out_shape)][:, lava_order(src_shape)])
        bits = INPUT_MESSAGE_BITS if part.source == INPUT else 0
        delay = net.delay(index, part, depths)
        groups = [(m, 0)]
        if fixed and layer.fixed.split_exp > 0:
            hi, lo = split_weights(m, layer.fixed.split_exp)
            groups = [(hi, layer.fixed.split_exp), (lo, 0)]
        procs = []
        for w, exp in groups:
            w = w.astype(np.int32 if fixed else np.float64)
            kw = {"weight_exp": exp} if fixed else {}
            if syn.kind == "dense":
                if delay:
                    procs.append(DelayDense(weights=w.toarray(), delays=np.full(w.shape, delay), num_message_bits=bits,
                                            **kw))
                else:
                    procs.append(Dense(weights=w.toarray(), num_message_bits=bits, **kw))
                continue
            w = sp.csr_matrix(w)
            w.eliminate_zeros()
            if delay:
                if w.nnz == 0:  # DelaySparse needs a synapse to learn its buffer from
                    continue
                delays = w.copy()
                delays.data = np.full(delays.nnz, delay, dtype=np.int64)
                procs.append(DelaySparse(weights=w, delays=delays, num_message_bits=bits, **kw))
            else:
                procs.append(Sparse(weights=w, num_message_bits=bits, **kw))
        out.append((part, procs))
    return out


def _neuron_process(layer: LavaLayer, mode: str, T: int, index: int, voltage: Optional[Tuple[int, str]] = None,
                    gate: int = 0):
    """The neurons of one layer at pipeline depth ``index``: Lava's ``LIFReset`` where the layer is uniform
    and resets to zero without delay (:attr:`~export.lava.net.NeuronLayer.stock`), else a
    :class:`~export.lava.procs.leaky_reset.LeakyReset` (per-neuron ``dv``/``vth``, snnTorch's reset
    mechanisms, ``v_reset``, and ``gate > 0``: a second input port ``a_rec`` whose first ``gate`` steps after
    each per-sample reset are dropped); ``voltage = (steps, path)`` makes it a :class:`VoltageLIFReset`
    recording ``v``."""
    from lava.proc.lif.process import LIFReset

    n = layer.neuron
    shape = tuple(reversed(n.shape))
    reset = dict(reset_interval=T, reset_offset=(1 + index) % T)
    if gate and not n.spiking:
        raise EslError(f"layer {n.name!r}: a recurrent membrane readout is not supported in Lava")
    if not n.stock or gate:
        return _leaky_process(layer, mode, shape, reset, gate)
    if not n.spiking and mode != "float":
        raise EslError(f"layer {n.name!r}: the membrane readout ({n.node_type}) runs in Lava floating point only")
    if voltage is not None:
        if mode != "float":
            raise EslError("voltages are recorded in Lava floating point only")
        from .procs.voltage_recorder import VoltageLIFReset

        bias = n.bias.transpose(tuple(reversed(range(len(n.shape)))))
        return VoltageLIFReset(shape=shape, du=n.du, dv=1.0 - n.beta, vth=n.threshold, bias_mant=bias.copy(),
                               bias_exp=0, steps=voltage[0], path=voltage[1], **reset)
    if mode == "float":
        bias = n.bias.transpose(tuple(reversed(range(len(n.shape)))))
        return LIFReset(shape=shape, du=n.du, dv=1.0 - n.beta, vth=n.threshold, bias_mant=bias.copy(),
                        bias_exp=0, **reset)
    f = layer.fixed
    bias = f.bias_mant.transpose(tuple(reversed(range(len(n.shape)))))
    return LIFReset(shape=shape, du=f.du, dv=f.dv, vth=f.vth, bias_mant=bias.copy(), bias_exp=f.bias_exp, **reset)


def _lava_order(values, shape: Tuple[int, ...]) -> np.ndarray:
    """A scalar or torch-order array of the layer's ``shape`` as an array in Lava's (reversed) order."""
    a = np.broadcast_to(np.asarray(values), shape)
    return a.transpose(tuple(reversed(range(len(shape))))).copy()


def _leaky_process(layer: LavaLayer, mode: str, shape: Tuple[int, ...], reset: dict, gate: int = 0):
    """A :class:`~export.lava.procs.leaky_reset.LeakyReset` for one layer: float ``du``, ``dv = 1 - beta``,
    ``vth = threshold``, ``bias_mant = bias``, ``v_reset``; fixed point the
    :class:`~export.lava.net.FixedLayer`'s integers, per neuron, in Lava order."""
    from .procs.leaky_reset import LeakyReset

    n = layer.neuron
    mode_kw = dict(reset_mechanism=n.reset_mechanism, reset_delay=n.reset_delay, gate=gate, **reset)
    if mode == "float":
        cb = n.current_bias if n.current_bias is not None else 0.0
        return LeakyReset(shape=shape, du=n.du, dv=_lava_order(1.0 - n.per_neuron("beta"), n.shape),
                          vth=_lava_order(n.per_neuron("threshold"), n.shape), bias_mant=_lava_order(n.bias, n.shape),
                          bias_exp=0, v_reset=_lava_order(n.per_neuron("v_reset"), n.shape),
                          u_bias=_lava_order(cb, n.shape), **mode_kw)
    f = layer.fixed
    return LeakyReset(shape=shape, du=f.du, dv=_lava_order(f.dv, n.shape), vth=_lava_order(f.vth, n.shape),
                      bias_mant=_lava_order(f.bias_mant, n.shape), bias_exp=f.bias_exp,
                      v_reset=_lava_order(f.v_reset, n.shape),
                      u_bias=_lava_order(f.current_bias if f.current_bias is not None else 0, n.shape), **mode_kw)


def _connect(out_port, in_port):
    """Connect two ports, reshaping between (W, H, C) and flat (N,) ports when needed."""
    if tuple(out_port.shape) != tuple(in_port.shape):
        out_port = out_port.reshape(tuple(in_port.shape))
    out_port.connect(in_port)


def run_config(mode: str):
    import_lava()
    from lava.magma.core.run_configs import Loihi2SimCfg

    if mode not in MODES:
        raise EslError(f"unknown Lava mode {mode!r}; choose one of: {', '.join(MODES)}")
    return Loihi2SimCfg(select_tag="floating_pt" if mode == "float" else "fixed_pt")


def record_spikes(port, tmp: str, index: int, steps: int) -> Tuple[str, Tuple[int, ...]]:
    """Connect a :class:`~export.lava.procs.spike_recorder.SpikeRecorder` to ``port``: it writes the
    ``(steps, *Lava shape)`` uint8 spikes of layer ``index`` to a memory-mapped file in ``tmp``.
    Returns (file, Lava shape)."""
    from .procs.spike_recorder import SpikeRecorder

    shape = tuple(port.shape)
    path = os.path.join(tmp, f"layer{index}.u8")
    np.memmap(path, dtype=np.uint8, mode="w+", shape=(steps,) + shape).flush()
    port.connect(SpikeRecorder(shape=shape, steps=steps, path=path).a_in)
    return path, shape


def run_in_chunks(source, cfg, *, steps: int, T: int, B: int, L: int, chunk: int,
                  progress: Optional[Callable[[int], None]]) -> float:
    """Run the network of ``source`` for ``steps`` steps, ``chunk`` samples (``chunk * T`` steps) per
    ``run`` call, calling ``progress(n)`` with the samples finished (a sample is done ``L`` steps after
    its last column); stops the network. Returns the seconds it ran."""
    from lava.magma.core.run_conditions import RunSteps

    t0 = time.perf_counter()
    done_steps, done_samples = 0, 0
    try:
        while done_steps < steps:
            n = min(max(1, chunk) * T, steps - done_steps)
            source.run(condition=RunSteps(num_steps=n), run_cfg=cfg)
            done_steps += n
            finished = min(B, max(0, (done_steps - L) // T))
            if progress is not None and finished > done_samples:
                progress(finished - done_samples)
            done_samples = finished
    finally:
        source.stop()
    return time.perf_counter() - t0


def read_recording(path: str, dtype, lava_shape: Tuple[int, ...], index: int, T: int, B: int) -> np.ndarray:
    """The ``(T, B, *torch shape)`` recording of layer ``index`` (1-based) from its file of ``(steps,
    *lava_shape)`` values: column ``j`` of the input reaches layer ``index`` at buffer row ``j + index``."""
    buf = np.fromfile(path, dtype=dtype).reshape((-1,) + tuple(lava_shape))
    window = np.moveaxis(buf[index:index + B * T], 0, -1)  # (*lava shape, B*T)
    return np.ascontiguousarray(_from_columns(window, tuple(reversed(lava_shape)), T, B))


def run(net: LavaNet, x: np.ndarray, *, mode: str = "float", record: str = "all",
        progress: Optional[Callable[[int], None]] = None, chunk: int = 64) -> LavaResult:
    """Run all B samples of ``x`` (T, B, *input_shape) through ONE compiled Lava network.

    Samples follow each other with ``LIFReset`` zeroing each layer at its own sample boundary (module
    docstring); ``B*T + L`` steps in all. ``record``: ``all`` layers or only the ``output``.
    ``progress(n)`` is called with the number of samples finished since the last call.
    """
    import_lava()
    from lava.proc.io.source import RingBuffer as Source

    if mode == "fixed" and net.readout == "membrane":
        raise EslError("the membrane readout (LI) runs in Lava floating point only; use mode 'float'")
    if mode == "fixed" and not net.quantized:
        raise EslError("this network has no fixed-point parameters: quantize it first")
    cfg = run_config(mode)
    if record not in ("all", "output", "none"):
        raise EslError(f"record must be 'all', 'output' or 'none', got {record!r}")
    data = encode_input(net, x, mode)
    T, B = data.shape[:2]
    depths = net.depths()
    L = max(depths)
    steps = B * T + L
    cols = _to_columns(data)
    cols = np.concatenate([cols, np.zeros(cols.shape[:-1] + (L,), dtype=cols.dtype)], axis=-1)
    with tempfile.TemporaryDirectory(prefix="esl-lava-") as tmp:
        t0 = time.perf_counter()
        source = Source(data=cols)
        recorders, neurons = [], []
        readout = None
        for index, layer in enumerate(net.layers, start=1):
            d = depths[index - 1]
            gates = {p.shift for p in net.parts(index - 1) if p.shift > 0}
            if len(gates) > 1:
                raise EslError(f"layer {layer.neuron.name!r} reads sources {sorted(gates)} steps late: Lava runs one "
                               "delay of a neuron's recurrent input")
            volt = None
            if not layer.neuron.spiking:
                vpath = os.path.join(tmp, f"layer{index}.f64")
                vshape = tuple(reversed(layer.neuron.shape))
                np.memmap(vpath, dtype=np.float64, mode="w+", shape=(steps,) + vshape).flush()
                volt = (steps, vpath)
                readout = (d, layer, vpath, vshape)
            neuron = _neuron_process(layer, mode, T, d, voltage=volt, gate=max(gates, default=0))
            neurons.append(neuron)
            if volt is not None:
                continue  # no spikes to record: its voltage is written by the process itself
            if record == "all" or (record == "output" and index == len(net.layers)):
                recorders.append((d, layer) + record_spikes(neuron.s_out, tmp, index, steps))
        for index, neuron in enumerate(neurons):
            for part, procs in _synapse_processes(net, index, mode, depths):
                port = source.s_out if part.source == INPUT else neurons[part.source].s_out
                for syn in procs:
                    _connect(port, syn.s_in)
                    _connect(syn.a_out, neuron.a_rec if part.shift > 0 else neuron.a_in)
        build_s = time.perf_counter() - t0
        run_s = run_in_chunks(source, cfg, steps=steps, T=T, B=B, L=L, chunk=chunk, progress=progress)
        names = [layer.neuron.name for _, layer, _, _ in recorders]
        spikes = [read_recording(path, np.uint8, shape, d, T, B) for d, _, path, shape in recorders]
        readout_name = voltage = None
        if readout is not None:
            d, layer, vpath, vshape = readout
            readout_name = layer.neuron.name
            voltage = read_recording(vpath, np.float64, vshape, d, T, B)
    return LavaResult(names=names, spikes=spikes, steps=steps, build_s=build_s, run_s=run_s,
                      readout_name=readout_name, voltage=voltage)


def run_per_sample(net: LavaNet, x: np.ndarray, *, mode: str = "float", record: str = "output",
                   progress: Optional[Callable[[int], None]] = None) -> LavaResult:
    """Reference/benchmark path: compile and run one fresh Lava network per sample (slow)."""
    parts: List[LavaResult] = []
    for b in range(np.shape(x)[1]):
        parts.append(run(net, np.asarray(x)[:, b:b + 1], mode=mode, record=record))
        if progress is not None:
            progress(1)
    voltage = None if parts[0].voltage is None else np.concatenate([p.voltage for p in parts], axis=1)
    return LavaResult(names=parts[0].names,
                      spikes=[np.concatenate([p.spikes[i] for p in parts], axis=1) for i in range(len(parts[0].names))],
                      steps=sum(p.steps for p in parts), build_s=sum(p.build_s for p in parts),
                      run_s=sum(p.run_s for p in parts), readout_name=parts[0].readout_name, voltage=voltage)


__all__ = ["INPUT_MESSAGE_BITS", "LavaResult", "import_lava", "read_recording", "record_spikes", "run",
           "run_config", "run_in_chunks", "run_per_sample"]
