"""The library API: a user's own snnTorch network, sparse-trained in their own loop, exported, proven equal in
Lava and costed on chips. These are the names at the top of ``esl_deploy`` (``esl_deploy.Sparsifier``,
``esl_deploy.export_network`` ...); each does what the ``esl`` command of that name does (``export_network``:
``esl export``; the name ``esl_deploy.export`` is the exporters' package) and returns the record that
command prints with ``--json``.

::

    import esl_deploy as esl

    sparsifier = esl.Sparsifier(net, optimizer, method="esl", density=0.1, total_steps=epochs * len(loader))
    ...                                   # in the loop: loss.backward(); optimizer.step(); sparsifier.step()
    esl.export_network(net, "net.nir", sample=x[0])              # also to="lava", "netx", "onnx"
    report = esl.simulate(net, test_x, backend="lava", labels=test_y)   # spike agreement with `net` itself
    cost = esl.energy(net, test_x, T=25, hw="truenorth")

``net`` is a stock snnTorch network (an ``nn.Sequential`` or a plain ``nn.Module`` of Linear / Conv2d /
pooling / Flatten / BatchNorm layers and ``snn.Leaky`` neurons, see :mod:`esl_deploy.convert`), a
:class:`~esl_deploy.models.SpikingNet` (``esl_deploy.load`` of a run or a ``.nir`` file), or a path to a
checkpoint or NIR file. A stock network needs ``sample``, one input as its forward takes it, to be
traced (the inputs given to ``simulate`` and ``energy`` serve when ``sample`` is left out).

Inputs (``inputs``) are a tensor or array ``(T, N, *input_shape)`` (already over time: spikes, event
frames, currents), a tensor ``(N, *input_shape)`` of static samples (encoded over ``T`` steps by
``encoding``: ``"direct"`` repeats each sample, ``"rate"`` draws Bernoulli spikes), or a DataLoader /
iterable of ``(x, y)`` batches of static samples (labels then come with them).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import nir
import numpy as np
import torch
from torch import nn

from .convert import copy_network, from_snntorch, run_snntorch, stepwise
from .datasets import encode
from .errors import EslError
from .export.cli import load_source, write_network
from .export.nir.write import DT
from .export.nir.write import to_nir as _spiking_to_nir
from .export.simulate import EVAL_SEED, SimReport, simulate_arrays
from .hw_models.energy import EnergyConstants
from .hw_models.report import EnergyReport, energy_report
from .models import SpikingNet
from .train.sparsifier import Sparsifier

Network = Union[nn.Module, str, os.PathLike]


def deployable(net: Network, sample: Optional[torch.Tensor] = None) -> SpikingNet:
    """``net`` as the :class:`SpikingNet` every exporter, simulator and cost model reads: a stock snnTorch
    network converted (:func:`esl_deploy.convert.from_snntorch`, traced on ``sample``), a SpikingNet as it
    is, a path loaded (checkpoint or ``.nir``)."""
    if isinstance(net, (str, os.PathLike)):
        return load_source(net)
    if isinstance(net, SpikingNet):
        return net
    if not isinstance(net, nn.Module):
        raise EslError(f"expected an nn.Module or a path, got {type(net).__name__}")
    if sample is None:
        raise EslError(f"converting {type(net).__name__} needs a sample input (one input as its forward takes it)")
    return from_snntorch(net, torch.as_tensor(sample, dtype=torch.float32))


def to_nir(net: Network, sample: Optional[torch.Tensor] = None, *, dt: float = DT) -> nir.NIRGraph:
    """The NIR graph of ``net`` (what ``esl export --to nir`` writes), subtract resets recorded in node metadata."""
    model = deployable(net, sample)
    return _spiking_to_nir(model, getattr(model, "meta", None), dt=dt)


def export_network(net: Network, path: Union[str, os.PathLike], *, to: str = "nir", sample: Optional[torch.Tensor] = None,
           T: Optional[int] = None, force: bool = False) -> Dict[str, Any]:
    """Write ``net`` to ``path`` as ``to`` (``"nir"``, ``"lava"``, ``"netx"`` or ``"onnx"``, unrolled over ``T``
    steps); refuses an existing ``path`` unless ``force``. Returns the summary ``esl export --json`` prints."""
    path = Path(path)
    if path.exists() and not force:
        raise EslError(f"{path} already exists; pass force=True to overwrite it")
    model = deployable(net, sample)
    return write_network(model, to, path, T=T, source=_name(net))


def simulate(net: Network, inputs, *, backend: str = "lava", labels=None, sample: Optional[torch.Tensor] = None,
             T: Optional[int] = None, encoding: str = "direct", weight_groups: Optional[int] = None,
             seed: int = EVAL_SEED, progress: bool = False) -> SimReport:
    """Run ``net``'s NIR graph with ``backend`` (``"lava"`` float, ``"lava-fixed"``, ``"netx"``, ``"snntorch"``) on
    ``inputs`` and report spike agreement, layer by layer, with the reference (what ``esl simulate --json``
    prints). For a stock snnTorch network the reference is that network itself, run by snnTorch in float64
    on the same inputs, not a rebuilt copy. ``weight_groups``: 8-bit synapse groups per weight in fixed
    point (default 2; netx 1)."""
    x, y = _time_major(inputs, net, sample, T, encoding, seed)
    if labels is not None:
        y = np.asarray(torch.as_tensor(labels).reshape(-1).cpu().numpy(), dtype=np.int64)
        if y.shape[0] != x.shape[1]:
            raise EslError(f"{y.shape[0]} labels for {x.shape[1]} samples")
    model = deployable(net, sample if sample is not None else _sample_of(net, x))
    graph = _spiking_to_nir(model, getattr(model, "meta", None))
    reference = None
    if isinstance(net, nn.Module) and not isinstance(net, SpikingNet):
        reference = (f"{type(net).__name__} (snnTorch, float64)", lambda a: _reference_spikes(net, a))
    if weight_groups is None:
        weight_groups = 1 if backend == "netx" else 2
    return simulate_arrays(model, graph, x, y, backend, source=_name(net), dataset="inputs", encoding=encoding,
                           progress=progress, weight_groups=weight_groups, reference=reference)


def energy(net: Network, inputs, *, T: Optional[int] = None, encoding: str = "direct", hw="all",
           labels=None, sample: Optional[torch.Tensor] = None, strategy: str = "packed", convention: str = "papers",
           constants: Optional[EnergyConstants] = None, max_chips: Optional[int] = None, seed: int = 0,
           progress: bool = False) -> EnergyReport:
    """Synaptic operations of ``net`` on ``inputs``, its TrueNorth cores (per-layer and packed, with the lower
    bound) and energies on ``hw`` (``"truenorth"``, ``"loihi"``, ``"cmos45"``, ``"all"`` or a list) against the
    dense ANN on a GPU, in ``convention`` ``"papers"`` or ``"chip"``: what ``esl energy --json`` prints
    (``report.to_dict()``)."""
    x, y = _time_major(inputs, net, sample, T, encoding, seed)
    if labels is not None:
        y = np.asarray(torch.as_tensor(labels).reshape(-1).cpu().numpy(), dtype=np.int64)
    model = deployable(net, sample if sample is not None else _sample_of(net, x))
    frames = torch.from_numpy(x).transpose(0, 1)  # (N, T, ...): counted as given, step by step
    data = (frames, torch.from_numpy(y)) if y is not None and np.all(y >= 0) else frames
    hardware = (hw,) if isinstance(hw, str) else tuple(hw)
    return energy_report(model, data, T=int(x.shape[0]), encoding=encoding, temporal=True, source=_name(net),
                         dataset="inputs", hardware=hardware, constants=constants or EnergyConstants(),
                         strategy=strategy, max_chips=max_chips, convention=convention, progress=progress)


# -- inputs -----------------------------------------------------------------------------------------

def _name(net: Network) -> str:
    return os.fspath(net) if isinstance(net, (str, os.PathLike)) else type(net).__name__


def _input_shape(net: Network, sample) -> Optional[Tuple[int, ...]]:
    if isinstance(net, SpikingNet):
        return tuple(net.spec.input_shape)
    if isinstance(net, (str, os.PathLike)):
        return tuple(load_source(net).spec.input_shape)
    if sample is not None:
        sample = torch.as_tensor(sample)
        return tuple(sample.shape[1:]) if stepwise(net) else tuple(sample.shape[2:])
    return None


def _time_major(inputs, net: Network, sample, T: Optional[int], encoding: str, seed: int
                ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``(x (T, N, ...) float32, labels (N,) or None)`` from any of the accepted kinds of input."""
    gen = torch.Generator().manual_seed(seed)
    shape = _input_shape(net, sample)
    if isinstance(inputs, (torch.Tensor, np.ndarray)):
        x = torch.as_tensor(inputs, dtype=torch.float32)
        if shape is not None and x.dim() == len(shape) + 1 or shape is None and T is not None:
            if T is None:
                raise EslError("static inputs (N, ...) need T, the number of time steps to present them")
            x = encode(x, int(T), encoding, gen)
        elif T is not None and x.shape[0] != T:
            raise EslError(f"inputs over time have {x.shape[0]} steps, T = {T}")
        return _finite(x), None
    xs, ys = [], []
    for batch in inputs:
        bx, by = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        if T is None:
            raise EslError("batches of static samples need T, the number of time steps to present them")
        xs.append(encode(torch.as_tensor(bx, dtype=torch.float32), int(T), encoding, gen))
        if by is not None:
            ys.append(torch.as_tensor(by).reshape(-1))
    if not xs:
        raise EslError("the inputs hold no batch")
    return _finite(torch.cat(xs, dim=1)), (torch.cat(ys).numpy().astype(np.int64) if ys else None)


def _finite(x: torch.Tensor) -> np.ndarray:
    if x.dim() < 3:
        raise EslError(f"inputs over time must be (T, N, ...), got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise EslError("the inputs hold NaN or infinite values")
    return x.contiguous().numpy()


def _sample_of(net: Network, x: np.ndarray) -> Optional[torch.Tensor]:
    """A tracing sample for a stock network from time-major inputs: one step, or all steps."""
    if not isinstance(net, nn.Module) or isinstance(net, SpikingNet):
        return None
    t = torch.from_numpy(x[:, :2])
    return t[0] if stepwise(net) else t


@torch.no_grad()
def _reference_spikes(net: nn.Module, x: np.ndarray, batch: int = 256) -> list:
    """Spikes (T, N, ...) of each ``snn.Leaky`` layer of the user's own network, run by snnTorch in float64."""
    model = copy_network(net).double().eval()
    out = []
    for start in range(0, x.shape[1], batch):
        layers, _ = run_snntorch(model, torch.from_numpy(x[:, start:start + batch]).double(), torch.float64)
        out.append([l.numpy() for l in layers])
    return [np.concatenate([b[i] for b in out], axis=1) for i in range(len(out[0]))]


__all__ = ["Sparsifier", "deployable", "energy", "export_network", "simulate", "to_nir"]
