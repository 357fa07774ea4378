"""``esl simulate --reference TOOL``: the graph run by the tool that wrote it, as its users load it, beside ours;
and the warnings about layers that never or always spike.

:func:`writer_reference` loads the ``.nir`` file with ``TOOL``'s own reader (:mod:`export.nir.readers`:
``snntorch.import_nir.import_from_nir``, ``norse.torch.from_nir(graph, dt=1e-3)``, ``sinabs.from_nir``), runs
the same inputs and compares its output spikes with our reference (the graph read under ``TOOL``'s
conventions, :mod:`export.nir.conventions`, in float64) and with the backend's (Lava float, fixed point...):
percentages of equal (step, sample, neuron) entries and of equal samples, and the entries where the tool
fired more than one spike in a step (Sinabs' multi-spike neuron, which no NIR node and no Lava neuron can
express: :data:`export.nir.conventions.DIFFERENCES` names what differs, the numbers measure it).

:func:`activity_warnings` names the spiking layers that never spiked (silent: a wrong ``dt`` or writer
convention makes thresholds unreachable) or spiked at every step in every neuron (saturated).
"""
from __future__ import annotations

import os
from typing import Dict, List, Sequence, Union

import numpy as np

from esl_deploy.errors import EslError

from .nir.conventions import DIFFERENCES
from .nir.readers import RUNNERS, run_reader

TOOLS = tuple(RUNNERS)


def writer_reference(tool: str, path: Union[str, os.PathLike], x: np.ndarray, ours: np.ndarray,
                     backend: np.ndarray) -> Dict[str, object]:
    """``tool``'s output spikes on ``x`` (T, N, ...) against ours and the backend's, (T, N, ...) each."""
    if tool not in TOOLS:
        raise EslError(f"unknown reference tool {tool!r}; choose one of: {', '.join(TOOLS)}")
    if not str(path).lower().endswith(".nir"):
        raise EslError("--reference runs a .nir file in the tool that wrote it: give a .nir file")
    try:
        theirs = run_reader(tool, path, np.asarray(x, dtype=np.float32))
    except Exception as e:  # their reader: any failure is a measured result, said in one line
        raise EslError(f"{tool} cannot run {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    T, N = theirs.shape[:2]
    theirs = theirs.reshape(T, N, -1).astype(np.float64)
    out = {"tool": tool, "difference": DIFFERENCES.get(tool, ""), "extra_spikes": int((theirs > 1).sum()),
           "spikes": int(theirs.sum())}
    for key, mine in (("ours", ours), ("backend", backend)):
        mine = np.asarray(mine, dtype=np.float64).reshape(T, N, -1)
        if mine.shape != theirs.shape:
            raise EslError(f"{tool} gives outputs of shape {theirs.shape[2:]}, we give {mine.shape[2:]}")
        equal = mine == theirs
        out[f"{key}_agreement"] = 100.0 * float(equal.mean())
        out[f"{key}_samples_identical"] = 100.0 * float(equal.all(axis=(0, 2)).mean())
    return out


def activity_warnings(names: Sequence[str], spikes: Sequence[np.ndarray]) -> Dict[str, List[str]]:
    """``{"silent": [...], "saturated": [...]}``: layers with no spike at all, and with a spike everywhere."""
    silent = [n for n, s in zip(names, spikes) if not np.any(s)]
    saturated = [n for n, s in zip(names, spikes) if np.size(s) and np.all(s != 0)]
    return {"silent": silent, "saturated": saturated}


__all__ = ["TOOLS", "activity_warnings", "writer_reference"]
