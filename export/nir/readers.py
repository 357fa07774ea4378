"""Other tools' NIR readers run on a NIR file the way their users run them, for the interop tests and
``benchmarks/nir_interop.py``: snnTorch 1.0.0 (``snntorch.import_nir.import_from_nir``), Norse 1.1.0
(``norse.torch.from_nir``) and Sinabs 2.0.3 (``sinabs.from_nir``).

:func:`run_reader` loads the file with the reader (the call :func:`export.nir.flavours.reader_read_hint`
names) and feeds it a batch ``x`` of shape ``(T, B, *input_shape)``: snnTorch and Norse one time step
per call with the state carried (``(B, *input_shape)`` per step), Sinabs all steps at once as its
``*Squeeze`` layers take them, ``(B * T, *input_shape)`` batch-major. It returns the output spikes
``(T, B, n_out)`` as float32. :func:`compare` measures them against our spikes.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, Tuple, Union

import nir
import numpy as np
import torch

from .flavours import NORSE_DT, reader_read_hint


def _load_snntorch(graph: nir.NIRGraph, batch: int) -> torch.nn.Module:
    from snntorch.import_nir import import_from_nir

    return import_from_nir(graph)


def _load_norse(graph: nir.NIRGraph, batch: int) -> torch.nn.Module:
    import norse.torch as norse

    return norse.from_nir(graph, dt=NORSE_DT)


def _load_sinabs(graph: nir.NIRGraph, batch: int) -> torch.nn.Module:
    import sinabs

    return sinabs.from_nir(graph, batch_size=batch)


def _stepwise(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One call per time step with the state carried (snnTorch, Norse)."""
    state, out = None, []
    for t in range(x.shape[0]):
        spikes, state = net(x[t], state)
        out.append(spikes)
    return torch.stack(out)


def _all_steps(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """All steps in one call, batch-major ``(B * T, ...)`` (Sinabs' ``*Squeeze`` layers)."""
    T, B = x.shape[:2]
    out, _ = net(x.transpose(0, 1).reshape(B * T, *x.shape[2:]))
    return out.reshape(B, T, -1).transpose(0, 1)


# reader -> (load a graph for batches of B samples, run a batch (T, B, ...) -> output spikes (T, B, ...))
RUNNERS: Dict[str, Tuple[Callable[[nir.NIRGraph, int], torch.nn.Module],
                         Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]]] = {
    "snntorch": (_load_snntorch, _stepwise), "norse": (_load_norse, _stepwise), "sinabs": (_load_sinabs, _all_steps)}


def read_for(reader: str, path: Union[str, os.PathLike]) -> nir.NIRGraph:
    """``nir.read`` as the reader's user calls it (type check off only where the flavour needs it)."""
    graph = nir.read(path, type_check=False)
    return graph if reader_read_hint(reader, graph)[1] else nir.read(path)


@contextlib.contextmanager
def _quiet():
    """Norse logs a warning for every r != 1 it ignores, snnTorch prints while it imports."""
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(level)


def load_reader(reader: str, path: Union[str, os.PathLike], batch: int) -> torch.nn.Module:
    """``reader``'s module for the NIR file ``path``, built for batches of ``batch`` samples."""
    with _quiet():
        return RUNNERS[reader][0](read_for(reader, path), batch)


@torch.no_grad()
def run_loaded(reader: str, net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Output spikes (T, B, n_out) float32 of a loaded reader module on ``x`` (T, B, *input_shape)."""
    with _quiet():
        out = RUNNERS[reader][1](net, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return out.detach().float().reshape(x.shape[0], x.shape[1], -1).numpy()


def run_reader(reader: str, path: Union[str, os.PathLike], x: np.ndarray) -> np.ndarray:
    """Output spikes (T, B, n_out) of ``reader`` loading ``path`` and running ``x`` (T, B, *input_shape)."""
    return run_loaded(reader, load_reader(reader, path, x.shape[1]), x)


@dataclass(frozen=True)
class Agreement:
    """A reader's output spikes against ours: percentages of equal entries (``spikes``), of samples whose
    whole output is equal (``samples``) and of equal predictions (most output spikes, ``predictions``);
    ``extra_spikes``: entries where the reader fired more than one spike in a step."""

    spikes: float
    samples: float
    predictions: float
    extra_spikes: int

    def to_dict(self) -> dict:
        return {"spikes": self.spikes, "samples": self.samples, "predictions": self.predictions,
                "extra_spikes": self.extra_spikes}


def compare(theirs: np.ndarray, ours: np.ndarray) -> Agreement:
    """Agreement of two output spike arrays (T, B, n_out)."""
    theirs, ours = np.asarray(theirs, dtype=np.float64), np.asarray(ours, dtype=np.float64)
    if theirs.shape != ours.shape:
        raise ValueError(f"output shapes differ: {theirs.shape} vs {ours.shape}")
    equal = theirs == ours
    pred = lambda s: s.sum(0).argmax(-1)  # noqa: E731
    return Agreement(spikes=100.0 * float(equal.mean()), samples=100.0 * float(equal.all(axis=(0, 2)).mean()),
                     predictions=100.0 * float((pred(theirs) == pred(ours)).mean()),
                     extra_spikes=int((theirs > 1).sum()))


__all__ = ["Agreement", "RUNNERS", "compare", "load_reader", "read_for", "run_loaded", "run_reader"]
