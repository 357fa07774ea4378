"""``esl simulate``: run a trained network on a test set with snnTorch, Lava or lava-dl netx, and compare.

Every backend sees the same encoded input (``direct``: the image at every step; ``rate``: Bernoulli
spikes from a fixed generator, batch by batch as the trainer's evaluation draws them). The reference
is the snnTorch network run in float64 (each layer's input cast to float64): float32 rounding can
flip a spike whose membrane lies within ~1e-7 of the threshold, and Lava's floating-point models
compute in float64. A graph that is not a chain (a ResNet19's residual blocks, a recurrent network: a
:class:`esl_deploy.graphnet.GraphNet`) is compared layer by layer in the order its neuron nodes run; a
``.nir`` file is read under ``writer``'s conventions at ``dt`` and ``reference`` runs it in the tool that
wrote it as well (:mod:`export.simulate_reference`); layers that never spike (or always do) are warned
about. Backends:

- ``snntorch``: the network as trained, float32 (its agreement with the float64 reference shows
  what float32 rounding changes);
- ``lava``: :func:`export.lava.run.run` with ``Loihi2SimCfg(select_tag="floating_pt")``;
- ``lava-fixed``: the same after :func:`export.lava.fixed.quantize` (bit-accurate Loihi 2 models,
  ``select_tag="fixed_pt"``); the report carries the quantisation errors;
- ``emulate-fixed``: the same fixed-point network as ``lava-fixed`` run by the batched torch emulator
  (:func:`export.lava.emulate.emulate`, bit-exact to Lava's fixed-point models and thousands of times
  faster), for whole test sets; ``lava_subset = N`` also runs Lava's fixed-point models on the first ``N``
  samples and reports how many of their spikes equal the emulator's (``details["lava_subset_agreement"]``,
  100 % unless the emulator is wrong);
- ``netx``: the network written by :func:`export.lava.netx.write_netx` and loaded back by lava-dl's
  ``netx.hdf5.Network``; a netx file as the source (``esl export --to netx``) runs as it is, the NIR graph
  stored in it giving the reference.

Spike agreement of a layer is the percentage of (step, sample, neuron) entries equal to the
reference; accuracy is the argmax of the output spike count (ties to the lower class, as in training).

Membrane readout (``ModelSpec.readout == "membrane"``: the last layer is a non-spiking leaky
integrator, NIR ``LI``): ``layer_agreement`` covers the spiking (hidden) layers; the output is the
readout's voltage (T, N, C), compared per sample by the argmax of its sum over T (the prediction,
``readout_argmax_agreement`` %, also reported as ``output_agreement``) and by the largest absolute
voltage difference (``readout_max_abs_diff``); ``identical_outputs`` is the percentage of samples whose
voltages all lie within ``VOLTAGE_TOL`` times max(1, the sample's largest reference |V|) of the reference
(float64 Lava agrees to ~1e-15; the float32 ``snntorch`` backend to a few float32 ulps). Accuracy is the argmax of the summed voltage.
Only ``snntorch`` and ``lava`` (floating point) run it; ``lava-fixed``, ``emulate-fixed`` and ``netx`` refuse it.
"""
from __future__ import annotations

import copy
import os
import warnings
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import nir
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

import esl_deploy
from esl_deploy.atomic import private_temp_dir
from esl_deploy.datasets import frame_size_for, load_dataset, to_time_major
from esl_deploy.errors import EslError
from esl_deploy.models import MultiStep, SpikingNet, apply_layer
from esl_deploy.neurons import LI, LIF
from esl_deploy.resources import check_memory, simulation_bytes

from .nir.conventions import EslWarning
from .nir.graph import walk

BACKENDS = ("snntorch", "lava", "lava-fixed", "netx")  # the runners (benchmarks compare them all)
EMULATED = ("emulate-fixed",)  # a runner's arithmetic emulated in torch (lava-fixed's)
ALL_BACKENDS = BACKENDS + EMULATED
EVAL_SEED = 12345  # the trainer's evaluation stream (train/trainer.py EVAL_SEED): same rate-coded input
BATCH = 256
VOLTAGE_TOL = 1e-6  # readout voltages within this (relative to max(1, max |V_ref|) per sample) count as identical
MEMBRANE_BACKENDS = ("snntorch", "lava")  # backends that run a membrane readout (float only)


@dataclass(kw_only=True)
class SimReport:
    """What one ``simulate`` run measured; :meth:`to_dict` gives plain JSON-able values."""

    source: str
    backend: str
    dataset: str
    samples: int
    T: int
    encoding: str
    accuracy: float
    snntorch_accuracy: float
    reference: str
    layer_agreement: Dict[str, float]
    output_agreement: float
    identical_outputs: float
    wall_s: float
    samples_per_s: float
    snntorch_samples_per_s: float
    quant_error: Optional[Dict[str, Dict[str, float]]] = None
    details: Dict[str, float] = field(default_factory=dict)
    readout: str = "spikes"
    readout_argmax_agreement: Optional[float] = None  # membrane readout: % samples with the same argmax
    readout_max_abs_diff: Optional[float] = None      # membrane readout: max |V - V_ref| over all entries
    writer: Optional[str] = None  # the conventions the .nir file was read with (export.nir.conventions)
    dt: Optional[float] = None    # the time step it was read at
    silent_layers: List[str] = field(default_factory=list)     # spiking layers with no spike (reference)
    saturated_layers: List[str] = field(default_factory=list)  # spiking layers spiking everywhere (reference)
    writer_reference: Optional[Dict[str, object]] = None  # --reference TOOL: export.simulate_reference

    def __post_init__(self):
        if self.backend not in ALL_BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}")
        if self.samples < 1 or self.T < 1:
            raise ValueError("samples and T must be positive")

    def to_dict(self) -> dict:
        """Plain values; an accuracy of unlabelled inputs (NaN) is None (JSON has no NaN)."""
        d = asdict(self)
        for key in ("accuracy", "snntorch_accuracy"):
            if d[key] != d[key]:
                d[key] = None
        return d


def load_network(source: Union[str, os.PathLike], *, writer: Optional[str] = None,
                 dt: Optional[float] = None) -> Tuple[SpikingNet, nir.NIRGraph]:
    """The snnTorch network and the NIR graph of ``source``: a ``.nir`` file (the graph as written, and
    the network built from it, read under ``writer``'s conventions at ``dt``: :mod:`export.nir.conventions`),
    a netx file (the graph stored in it: :func:`export.lava.netx.read_netx_graph`) or a checkpoint (the
    network, and its graph by ``to_nir``)."""
    from .nir.write import to_nir
    from .nir.read import from_nir, read_graph

    path = Path(source)
    if not path.is_file():
        raise EslError(f"no such file: {path}")
    if path.suffix.lower() == ".nir":
        graph = read_graph(path)
        return from_nir(graph, writer=writer, dt=dt), graph
    from .lava.netx import is_netx_file, read_netx_graph

    if is_netx_file(path):  # the graph stored with it; --backend netx runs the file itself
        graph = read_netx_graph(path)
        return from_nir(graph, writer=writer, dt=dt), graph
    if writer is not None or dt is not None:
        raise EslError("--writer and --dt say how to read a .nir file; a checkpoint is read as it was trained")
    model = esl_deploy.load(path)
    return model, to_nir(model, getattr(model, "meta", None))


def foreign_inputs(input_shape: Tuple[int, ...], *, inputs=None, random_spikes: Optional[float] = None,
                   T: int = 8, samples: int = 16, seed: int = 0, limit: Optional[int] = None,
                   dataset: Optional[str] = None) -> np.ndarray:
    """``(T, N, *input_shape)`` float32 from ``inputs`` (a ``.npy`` file) or ``random_spikes`` (a probability);
    EslError when both, or a data set as well, are given."""
    from esl_deploy.inputs import load_input_array, random_spikes as draw

    if inputs is not None and random_spikes is not None:
        raise EslError("give --input or --random-spikes, not both")
    if dataset is not None:
        raise EslError("give a --dataset or inputs (--input, --random-spikes), not both")
    if inputs is not None:
        x = load_input_array(inputs, input_shape)
        return x[:, :limit] if limit is not None else x
    return draw(random_spikes, T, samples if limit is None else min(samples, limit), input_shape, seed)


def encoded_inputs(dataset: str, T: int, encoding: str, *, limit: Optional[int] = None,
                   data_dir=None, input_shape: Optional[Tuple[int, ...]] = None,
                   check: Optional[Callable[[int], None]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The test set as ``(x (T, N, ...) float32, labels (N,))``, encoded as in the trainer's evaluation.
    ``check(N)`` is called with the number of samples before they are encoded (the memory guard)."""
    splits = load_dataset(dataset, data_dir, T, frame_size=frame_size_for(dataset, input_shape))
    if input_shape is not None and tuple(splits.input_shape) != tuple(input_shape):
        raise EslError(f"dataset {dataset!r} has inputs of shape {splits.input_shape}, the network expects "
                       f"{tuple(input_shape)}")
    data = splits.test
    if limit is not None:
        if limit < 1:
            raise EslError(f"--limit must be at least 1, got {limit}")
        data = Subset(data, range(min(limit, len(data))))
    if check is not None:
        check(len(data))
    gen = torch.Generator().manual_seed(EVAL_SEED)
    xs, ys = [], []
    for x, y in DataLoader(data, batch_size=BATCH, shuffle=False):
        xs.append(to_time_major(x, T, encoding, splits.temporal, gen))
        ys.append(y)
    return torch.cat(xs, dim=1).numpy(), torch.cat(ys).numpy()


@torch.no_grad()
def snntorch_run(model: SpikingNet, x: np.ndarray,
                 dtype: torch.dtype = torch.float64) -> Tuple[List[np.ndarray], Optional[np.ndarray]]:
    """Spikes (T, N, ...) of every LIF layer of ``model`` run in ``dtype`` (each layer's input cast), and
    the membrane (T, N, ...) of its LI readout as float64 (None when the model has a spike readout)."""
    model = copy.deepcopy(model).to(dtype).eval()
    out: List[List[np.ndarray]] = []
    volts: List[np.ndarray] = []
    for start in range(0, x.shape[1], BATCH):
        h = torch.from_numpy(x[:, start:start + BATCH]).to(dtype)
        layers = []
        if not isinstance(model, SpikingNet) or any(isinstance(l, MultiStep) for l in model.layers):
            for value, spiking in _neuron_values(model, h):  # a GraphNet, or a SpikingNet with residual blocks
                (layers if spiking else volts).append(value.numpy().astype(np.uint8 if spiking else np.float64))
            out.append(layers)
            continue
        for layer in model.layers:
            h = apply_layer(layer, h.to(dtype))
            if isinstance(layer, LIF):
                layers.append(h.numpy().astype(np.uint8))
            elif isinstance(layer, LI):
                volts.append(h.numpy().astype(np.float64))
        out.append(layers)
    spikes = [np.concatenate([b[i] for b in out], axis=1) for i in range(len(out[0]))]
    return spikes, (np.concatenate(volts, axis=1) if volts else None)


@torch.no_grad()
def _neuron_values(model, h: torch.Tensor) -> List[Tuple[torch.Tensor, bool]]:
    """``(output, spiking)`` of every neuron layer of a GraphNet, or of a SpikingNet whose residual blocks hold
    LIF layers (forward hooks, in the order they run: a block's lif1, then lif2), for the batch ``h``."""
    from esl_deploy.graphnet import GraphNet, Neuron

    if isinstance(model, GraphNet):
        outs = model.neuron_outputs(h)
        return [(y, model.module_of(name).spiking) for name, y in outs.items()]
    seen: List[Tuple[torch.Tensor, bool]] = []
    handles = [m.register_forward_hook(lambda mod, i, o: seen.append((o, not isinstance(mod, LI))))
               for m in model.modules() if isinstance(m, (LIF, LI, Neuron))]
    try:
        model(h)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def snntorch_spikes(model: SpikingNet, x: np.ndarray, dtype: torch.dtype = torch.float64) -> List[np.ndarray]:
    """Spikes (T, N, ...) of every LIF layer of ``model`` run in ``dtype`` (each layer's input cast)."""
    return snntorch_run(model, x, dtype)[0]


def predictions(output_spikes: np.ndarray) -> np.ndarray:
    """Class with most output spikes (or largest summed readout voltage); ties go to the lower index."""
    return output_spikes.reshape(output_spikes.shape[0], output_spikes.shape[1], -1).sum(0).argmax(-1)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Percentage of equal entries of two spike arrays of one shape."""
    if a.shape != b.shape:
        raise ValueError(f"spike arrays of shapes {a.shape} and {b.shape} cannot be compared")
    return 100.0 * float(np.mean(a == b))


def _run_backend(backend: str, model: SpikingNet, graph: nir.NIRGraph, x: np.ndarray,
                 tick: Callable[[int], None], synapse: str, conv: str,
                 groups: int, *, writer: Optional[str] = None, dt: Optional[float] = None,
                 source: Optional[str] = None, lava_subset: int = 0,
                 device: str = "cpu") -> Tuple[List[str], List[np.ndarray], dict]:
    from .lava.convert import convert
    from .lava.fixed import exact_input_scale, quantize, trained_scales
    from .lava.run import run

    scale = exact_input_scale(x)  # the integers that hold this data exactly (digits: x 16, MNIST: x 255), else auto
    x_max = max(1.0, float(x.max(initial=0.0)))  # event frames may count several events per bin

    if backend == "snntorch":
        spikes, volt = snntorch_run(model, x, torch.float32)
        tick(x.shape[1])
        return [], spikes, {"voltage": volt}
    if backend == "netx":
        from .lava.netx import simulate_netx

        res, extra = simulate_netx(graph, x, tick, source=source, sparse=synapse == "sparse", input_max=x_max,
                                   input_scale=scale)  # a netx file runs as it is
        return res.names, res.spikes, dict(extra, build_s=res.build_s, run_s=res.run_s, steps=res.steps)
    net = convert(graph, synapse=synapse, conv=conv, writer=writer, dt=dt)
    mode = "float"
    if backend in ("lava-fixed", "emulate-fixed"):
        net = quantize(net, groups=groups, input_scale=scale, input_max=x_max, trained_scales=trained_scales(graph),
                       input_min=min(0.0, float(x.min(initial=0.0))))
        mode = "fixed"
    if backend == "emulate-fixed":
        return _emulate_backend(net, x, tick, lava_subset, device)
    res = run(net, x, mode=mode, progress=tick)
    extra = {"build_s": res.build_s, "run_s": res.run_s, "steps": res.steps, "voltage": res.voltage}
    if mode == "fixed":
        extra["quant_error"] = net.quant_errors()
    return res.names, res.spikes, extra


def _emulate_backend(net, x: np.ndarray, tick: Callable[[int], None], lava_subset: int,
                     device: str) -> Tuple[List[str], List[np.ndarray], dict]:
    """``emulate-fixed``: the quantised ``net`` run by :func:`export.lava.emulate.emulate` on all of ``x``, and by
    Lava's fixed-point models on the first ``lava_subset`` samples, compared entry by entry with the emulator."""
    from .lava.emulate import emulate
    from .lava.run import run

    spikes = emulate(net, x, progress=tick, device=device)
    extra = {"quant_error": net.quant_errors(), "voltage": None}
    k = min(int(lava_subset), x.shape[1])
    if k > 0:
        t0 = time.perf_counter()
        res = run(net, x[:, :k], mode="fixed")
        equal = sum(int(np.sum(a == b[:, :k])) for a, b in zip(res.spikes, spikes))
        extra.update(lava_subset_samples=k, lava_subset_s=time.perf_counter() - t0,
                     lava_subset_agreement=100.0 * equal / sum(a.size for a in res.spikes))
    return [layer.neuron.name for layer in net.layers], spikes, extra


def simulate(source: Union[str, os.PathLike], backend: str = "lava", dataset: Optional[str] = None,
             limit: Optional[int] = None, progress: bool = True, *, data_dir=None, T: Optional[int] = None,
             encoding: Optional[str] = None, synapse: str = "sparse", conv: str = "conv",
             weight_groups: Optional[int] = None, inputs: Optional[Union[str, os.PathLike]] = None,
             random_spikes: Optional[float] = None, samples: int = 16, seed: int = 0, writer: Optional[str] = None,
             dt: Optional[float] = None, reference: Optional[str] = None, lava_subset: int = 0,
             device: str = "cpu") -> SimReport:
    """Run ``source`` (a ``.nir`` file or a checkpoint) on the test set of ``dataset`` with ``backend``.

    A ``.nir`` file is read under ``writer``'s conventions (``snntorch``, ``norse``, ``sinabs``, ``nir``; default
    ours for our files, NIR's otherwise; ``reference`` implies it) at ``dt`` (default: the writer's, the graph's,
    else 1e-4 with a warning); ``reference`` (a tool) also runs the file in that tool, as its users load it, and
    reports its agreement with ours and with the backend (:mod:`export.simulate_reference`).

    ``dataset``, ``data_dir``, ``T`` and ``encoding`` default to those recorded with the network (else
    digits, no folder, 8 and ``direct``);
    ``limit`` keeps the first N test samples. ``synapse``/``conv`` choose the Lava processes
    (:func:`export.lava.convert.convert`). ``weight_groups``: 8-bit synapse groups per weight in fixed
    point, 2 for ``lava-fixed`` and ``emulate-fixed`` by default (about 15-bit weights), 1 for ``netx`` (the only choice) and
    for networks trained with ``--weight-bits`` <= 8 (their weights are already on the 8-bit grid).
    Fixed point sends the input with the fewest fractional bits that hold it exactly (4 for digits)
    and sizes its input range to the data's (at least [0, 1]).
    Instead of a data set: ``inputs``, a ``.npy`` file of shape ``(T, N, *input_shape)``, or
    ``random_spikes`` (a spike probability) for ``samples`` Bernoulli spike trains of ``T`` steps drawn
    with ``seed`` (:mod:`esl_deploy.inputs`); both are unlabelled (accuracies are NaN).
    Returns a :class:`SimReport` (see the module docstring).
    """
    _check_backend(backend, lava_subset, device)
    if backend == "netx" and weight_groups not in (None, 1):
        raise EslError("netx holds one 8-bit weight per synapse: --weight-groups must be 1 for netx")
    if backend != "snntorch":
        from .lava.run import import_lava

        import_lava()  # before tqdm fixes the multiprocessing start method
    if reference is not None and writer is None:
        writer = reference  # the tool that wrote the graph reads it in its own conventions
    model, graph = load_network(source, writer=writer, dt=dt)
    readout = getattr(model.spec, "readout", "spikes")
    if readout == "membrane" and backend not in MEMBRANE_BACKENDS:
        raise EslError(f"--backend {backend} does not support the membrane readout (a non-spiking LI output "
                       f"layer; fixed point and netx are not implemented for it): use --backend lava or snntorch")
    meta = dict(getattr(model, "meta", None) or {})
    if weight_groups is None:  # a network trained on the 8-bit grid is exact with one synapse group
        bits = meta.get("weight_bits")
        weight_groups = 1 if backend == "netx" or (bits is not None and int(bits) <= 8) else 2
    T = int(T if T is not None else meta.get("T", 8))
    encoding = str(encoding if encoding is not None else meta.get("encoding", "direct"))
    recorded = meta.get("dataset") if meta.get("dataset") not in (None, "unknown") else None
    if dataset is None and inputs is None and random_spikes is None:
        dataset = recorded or "digits"
        if data_dir is None and dataset == recorded:
            data_dir = meta.get("data_dir")
    if inputs is not None or random_spikes is not None:
        x = foreign_inputs(tuple(model.spec.input_shape), inputs=inputs, random_spikes=random_spikes, T=T,
                           samples=samples, seed=seed, limit=limit, dataset=dataset)
        y, dataset, encoding = None, (str(inputs) if inputs is not None else f"random spikes p={random_spikes:g}"), \
            "given"
        T = int(x.shape[0])
    else:
        x, y = encoded_inputs(dataset, T, encoding, limit=limit, data_dir=data_dir,
                              input_shape=tuple(model.spec.input_shape),
                              check=lambda n: check_simulation_memory(model, T, n))
    report = simulate_arrays(model, graph, x, y, backend, source=str(source), dataset=dataset, encoding=encoding,
                             progress=progress, synapse=synapse, conv=conv, weight_groups=weight_groups,
                             writer=writer, dt=dt, outside=reference, lava_subset=lava_subset, device=device)
    return report


def _check_backend(backend: str, lava_subset: int, device: str) -> None:
    """EslError (one line) for an unknown backend, or emulator options given to another backend."""
    if backend not in ALL_BACKENDS:
        raise EslError(f"unknown backend {backend!r}; choose one of: {', '.join(ALL_BACKENDS)}")
    if lava_subset < 0:
        raise EslError(f"--lava-subset must be at least 0, got {lava_subset}")
    if backend not in EMULATED and (lava_subset or device != "cpu"):
        raise EslError(f"--lava-subset and --device go with --backend {', '.join(EMULATED)}, not {backend}")


def check_simulation_memory(model: SpikingNet, T: int, n: int) -> None:
    """The memory guard (:func:`esl_deploy.resources.check_memory`) for simulating ``n`` samples of ``T`` steps:
    the inputs and every layer's spikes are kept for the comparison (:func:`~esl_deploy.resources.simulation_bytes`)."""
    check_memory(simulation_bytes(model, T, min(n, BATCH), kept=n), f"simulating {n} samples of T={T} steps",
                 "lower -T or --limit")


def simulate_arrays(model: SpikingNet, graph: nir.NIRGraph, x: np.ndarray, y: Optional[np.ndarray],
                    backend: str = "lava", *, source: str = "network", dataset: str = "inputs",
                    encoding: str = "direct", progress: bool = False, synapse: str = "sparse", conv: str = "conv",
                    weight_groups: int = 2,
                    reference: Optional[Tuple[str, Callable[[np.ndarray], List[np.ndarray]]]] = None,
                    writer: Optional[str] = None, dt: Optional[float] = None,
                    outside: Optional[str] = None, lava_subset: int = 0, device: str = "cpu") -> SimReport:
    """Run ``graph`` (the NIR graph of ``model``) with ``backend`` on inputs ``x`` (T, N, ...) float32 and
    compare every spiking layer with the reference: ``model`` run by snnTorch in float64, or
    ``reference = (name, run)`` where ``run(x)`` returns the spikes (T, N, ...) of every spiking layer (the
    user's own snnTorch network, :mod:`esl_deploy.library`). ``y`` (N,) labels, or None (accuracies are
    then NaN). ``lava_subset``/``device``: see :func:`simulate`'s ``emulate-fixed``. Returns a
    :class:`SimReport` (see :func:`simulate`)."""
    readout = getattr(model.spec, "readout", "spikes")
    _check_backend(backend, lava_subset, device)
    if reference is not None and readout == "membrane":
        raise EslError("an outside reference compares spikes: the membrane readout is compared with snnTorch only")
    if backend != "snntorch":
        from .lava.run import import_lava

        import_lava()  # before tqdm fixes the multiprocessing start method
    T, n = int(x.shape[0]), int(x.shape[1])
    check_simulation_memory(model, T, n)
    t0 = time.perf_counter()
    if reference is None:
        reference_name = "snntorch float64"
        reference, ref_volt = snntorch_run(model, x, torch.float64)
    else:
        reference_name, run_reference = reference
        reference, ref_volt = [np.asarray(r).astype(np.uint8) for r in run_reference(x)], None
    ref_s = time.perf_counter() - t0
    if y is None:
        y = np.full(n, -1)
    labelled = bool(np.all(y >= 0))
    ref_acc = float(np.mean(predictions(ref_volt if readout == "membrane" else reference[-1]) == y))
    with tqdm(total=n, desc=f"simulate {backend}", unit="sample", disable=not progress, leave=False) as bar:
        t0 = time.perf_counter()
        with private_temp_dir("esl-sim-"):  # the backend's scratch files; those of a killed run are swept
            names, spikes, extra = _run_backend(backend, model, graph, x, bar.update, synapse, conv, weight_groups,
                                            writer=writer, dt=dt, source=source, lava_subset=lava_subset,
                                            device=device)
        wall = time.perf_counter() - t0
    if not names:
        names = [s.name for s in walk(graph).steps if s.is_spiking]
    from .nir.conventions import time_step, writer_of
    from .simulate_reference import activity_warnings, writer_reference

    read_as = writer_of(graph, writer)
    activity = activity_warnings(names, reference)
    for kind, what in (("silent", "never spiked"), ("saturated", "spiked at every step in every neuron")):
        if activity[kind]:
            warnings.warn(f"{kind} layers {activity[kind]}: they {what} on these {n} inputs; if the graph was written "
                          "by another tool read it with --writer/--dt", EslWarning, stacklevel=2)
    outside_result = None
    if outside is not None:
        outside_result = writer_reference(outside, source, x, ref_volt if readout == "membrane" else reference[-1],
                                          extra.get("voltage") if readout == "membrane" else spikes[-1])
    if len(spikes) != len(reference):
        raise AssertionError(f"{backend} gave {len(spikes)} spiking layers, snnTorch {len(reference)}")
    layer_agreement = {name: agreement(s, r) for name, s, r in zip(names, spikes, reference)}
    voltage = extra.pop("voltage", None)
    argmax_agree = max_diff = None
    if readout == "membrane":
        if voltage is None or voltage.shape != ref_volt.shape:
            raise AssertionError(f"{backend} gave no readout voltage of shape {ref_volt.shape}")
        out, ref_out = voltage, ref_volt
        diff = np.abs(out.astype(np.float64) - ref_out).reshape(T, n, -1)
        max_diff = float(diff.max(initial=0.0))
        argmax_agree = 100.0 * float(np.mean(predictions(out) == predictions(ref_out)))
        scale = np.maximum(1.0, np.abs(ref_out).reshape(T, n, -1).max(axis=(0, 2)))
        identical = 100.0 * float(np.mean(diff.max(axis=(0, 2)) <= VOLTAGE_TOL * scale))
        output_agreement = argmax_agree
    else:
        out, ref_out = spikes[-1], reference[-1]
        identical = 100.0 * float(np.mean(np.all((out == ref_out).reshape(T, n, -1), axis=(0, 2))))
        output_agreement = agreement(out, ref_out)
    details = {k: float(v) for k, v in extra.items() if k != "quant_error"}
    if backend in ("lava-fixed", "netx", "emulate-fixed"):
        details["weight_groups"] = float(weight_groups)
    details["snntorch_float64_s"] = ref_s
    return SimReport(
        source=str(source), backend=backend, dataset=dataset, samples=n, T=T, encoding=encoding,
        accuracy=float(np.mean(predictions(out) == y)) if labelled else float("nan"),
        snntorch_accuracy=ref_acc if labelled else float("nan"),
        reference=reference_name, layer_agreement=layer_agreement, output_agreement=output_agreement,
        identical_outputs=identical, wall_s=wall, samples_per_s=n / wall if wall > 0 else float("inf"),
        snntorch_samples_per_s=n / ref_s if ref_s > 0 else float("inf"),
        quant_error=extra.get("quant_error"), details=details, readout=readout,
        readout_argmax_agreement=argmax_agree, readout_max_abs_diff=max_diff,
        writer=read_as.name, dt=time_step(graph, read_as, dt, warn=False), silent_layers=activity["silent"],
        saturated_layers=activity["saturated"], writer_reference=outside_result)


__all__ = ["ALL_BACKENDS", "BACKENDS", "EMULATED", "MEMBRANE_BACKENDS", "SimReport", "VOLTAGE_TOL", "agreement", "encoded_inputs",
           "foreign_inputs", "load_network", "predictions", "simulate", "simulate_arrays", "snntorch_run", "snntorch_spikes"]
