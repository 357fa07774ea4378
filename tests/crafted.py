"""Crafted inputs for the reliability tests: NIR files and checkpoints edited to lie (NaN weights, huge declared
shapes and T, garbage metadata, missing keys), built from a real run so everything else about them is valid."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch


def edit_nir(src: Path, dst: Path, edit: Callable[[h5py.File], None]) -> Path:
    """A copy of NIR file ``src`` at ``dst`` with ``edit(file)`` applied in place (h5py, read-write)."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def set_dataset(f: h5py.File, name: str, value) -> None:
    if name in f:
        del f[name]
    f.create_dataset(name, data=value)


def first_affine(f: h5py.File) -> str:
    """The HDF5 path of the first Affine node of a NIR file."""
    for key, node in f["node/nodes"].items():
        kind = node["type"][()]
        if (kind.decode() if isinstance(kind, bytes) else str(kind)) == "Affine":
            return f"node/nodes/{key}"
    raise AssertionError("no Affine node")


def nan_weight(f: h5py.File) -> None:
    f[first_affine(f) + "/weight"][0, 0] = np.nan


def inf_bias(f: h5py.File) -> None:
    f[first_affine(f) + "/bias"][0] = np.inf


def huge_weight(f: h5py.File, columns: int = 2_000_000) -> None:
    """The first Affine weight declared (out, ``columns``) float32 but stored as nothing (HDF5 fill value): a
    small file whose reading would allocate out * columns * 4 bytes."""
    node = first_affine(f)
    out = f[node + "/weight"].shape[0]
    del f[node + "/weight"]
    f[node].create_dataset("weight", shape=(out, columns), dtype="f4", chunks=(1, 1 << 20), fillvalue=0.0)


def huge_input_shape(f: h5py.File) -> None:
    """The input declared (1, 8, 8 * 10^9): layers sized from it would need terabytes."""
    for name in ("node/nodes/input/shape", "node/nodes/0/input_type"):
        if name in f:
            set_dataset(f, name, np.array([1, 8, 8 * 10 ** 9]))


def metadata(key: str, value) -> Callable[[h5py.File], None]:
    return lambda f: set_dataset(f, f"node/metadata/{key}", value)


def conv_nir(path: Path) -> Path:
    """A small valid conv graph: Input (1, 8, 8) -> Conv2d 2x3x3 -> LIF -> SumPool 2 -> Flatten -> Affine -> LIF."""
    import nir

    g = np.random.default_rng(0)
    nodes = {
        "input": nir.Input(input_type=np.array([1, 8, 8])),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=g.normal(size=(2, 1, 3, 3)).astype(np.float32),
                           stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(2, np.float32)),
        "lif1": nir.LIF(tau=np.full((2, 8, 8), 1e-3), r=np.full((2, 8, 8), 10.0), v_leak=np.zeros((2, 8, 8)),
                        v_threshold=np.ones((2, 8, 8)), v_reset=np.zeros((2, 8, 8))),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=g.normal(size=(10, 32)).astype(np.float32), bias=np.zeros(10, np.float32)),
        "lif2": nir.LIF(tau=np.full(10, 1e-3), r=np.full(10, 10.0), v_leak=np.zeros(10), v_threshold=np.ones(10),
                        v_reset=np.zeros(10)),
        "output": nir.Output(output_type=np.array([10])),
    }
    names = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), metadata={"T": 4})
    nir.write(path, graph)
    return path


def stride_zero(node: str) -> Callable[[h5py.File], None]:
    return lambda f: set_dataset(f, f"node/nodes/{node}/stride", np.array([0, 0]))


def edit_checkpoint(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    """A copy of checkpoint ``src`` at ``dst`` whose state dict went through ``edit`` (CRC-valid: torch.save)."""
    state = torch.load(src, map_location="cpu", weights_only=True)
    edit(state)
    torch.save(state, dst)
    return dst


CHECKPOINT_EDITS = {
    "config_empty": lambda s: s.__setitem__("config", {}),
    "no_best_masks": lambda s: s["best"].pop("masks"),
    "empty_initial_masks": lambda s: s["engine"].__setitem__("initial_masks", {}),
    "best_none": lambda s: s.__setitem__("best", None),
    "width_15000": lambda s: s["model_spec"].__setitem__("width", 15000.0),
    "input_shape_huge": lambda s: s["model_spec"].__setitem__("input_shape", [1, 8, 8 * 10 ** 9]),
    "T_1e7": lambda s: s["config"].__setitem__("T", 10 ** 7),
    "T_text": lambda s: s["config"].__setitem__("T", "abc"),
    "nan_weight": lambda s: s["best"]["model"][next(k for k in s["best"]["model"] if k.endswith("weight"))]
    .view(-1).__setitem__(0, float("nan")),
    "rewire_log_garbage": lambda s: s["engine"].__setitem__("rewire_log", [{"step": 1}]),
}


def pickled_object_checkpoint(src: Path, dst: Path) -> Path:
    """A CRC-valid checkpoint whose pickle holds a Python object that weights-only loading refuses (a set)."""
    state = torch.load(src, map_location="cpu", weights_only=True)
    state["history"] = {1, 2, 3}
    torch.save(state, dst)
    return dst
