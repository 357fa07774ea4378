"""The checkpoint format: one ``torch.save`` file, written atomically, checked when read.

Contents (all plain tensors, numbers, strings, lists and dicts, so ``weights_only`` loading works)::

    format: "esl-deploy-checkpoint", version: 1
    config:      TrainConfig.to_dict()
    model_spec:  ModelSpec.to_dict()
    model:       state_dict of the latest epoch      (for --resume)
    optimizer, lr_scheduler, engine (masks, step, RNG, schedule), epoch (completed epochs), history
    best:        {"epoch", "val_acc", "model", "masks"}: the kept model, best on validation
    summary:     final results once training has finished (else None)
"""
from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Union

import torch

from .atomic import atomic_write_bytes, atomic_write_text, check_regular_input  # noqa: F401  (re-exported)
from .errors import EslError
from .resources import check_memory

FORMAT = "esl-deploy-checkpoint"
VERSION = 1
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # first bytes of every HDF5 file (NIR, Lava, netx)
ZIP_MAGIC = b"PK\x03\x04"           # first bytes of a zip file (torch.save's format)
REQUIRED = ("format", "version", "config", "model_spec", "model", "best", "epoch")


def save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    state = {"format": FORMAT, "version": VERSION, **state}
    atomic_write_bytes(Path(path), lambda f: torch.save(state, f))


def read_checkpoint(path: Path) -> Dict[str, Any]:
    """Read and check a checkpoint; a missing, truncated, foreign or special (FIFO, device) file raises
    EslError, as does one whose members would not fit in memory (their sizes are read from the zip
    directory before anything is unpacked). Pickles are loaded weights-only: a file holding any other
    Python object is refused, and never loaded another way."""
    path = check_regular_input(path, "checkpoint")
    with open(path, "rb") as f:
        head = f.read(8)
    if head == HDF5_MAGIC:
        raise EslError(f"{path} is an HDF5 file (NIR, Lava or netx export), not a checkpoint; pass the run's "
                       f"checkpoint.pt, or a NIR graph named *.nir")
    if not zipfile.is_zipfile(path):
        if head[:4] == ZIP_MAGIC:  # a zip file's start without its end: cut short
            raise EslError(f"corrupt or truncated checkpoint {path}: the zip archive is incomplete")
        raise EslError(f"{path} is not a checkpoint (a PyTorch zip file) nor a NIR graph")
    try:  # CRC-32 of every member: torch's reader does not check them, so flipped bytes would load
        with zipfile.ZipFile(path) as z:
            unpacked = sum(i.file_size for i in z.infolist())  # declared sizes, before unpacking any
            check_memory(2 * unpacked, f"reading checkpoint {path} ({unpacked:,} bytes unpacked)",
                         "this file is not a checkpoint esl train wrote, or the machine is too small for it")
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise EslError(f"corrupt or truncated checkpoint {path}: {e}") from None
    if bad is not None:
        raise EslError(f"corrupt checkpoint {path}: member {bad} fails its CRC-32 check")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, a pickle that is not plain tensors and containers
        raise EslError(_load_failure(path, e)) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise EslError(f"{path} is not an ESL Deploy checkpoint")
    if state.get("version") != VERSION:
        raise EslError(f"{path}: unsupported checkpoint version {state.get('version')} (expected {VERSION})")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise EslError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state


def _load_failure(path: Path, e: Exception) -> str:
    """One line for a checkpoint torch.load refused. A pickle holding other Python objects is named as such,
    without torch's advice to load it with ``weights_only=False``: that would run code from the file."""
    text = str(e).strip()
    if "Weights only load failed" in text or "Unsupported global" in text or "weights_only" in text:
        found = re.search(r"Unsupported (?:global|operand)[^.\n]*?(GLOBAL [\w.]+|\d+)", text)
        what = f" ({found.group(0)})" if found else ""
        return (f"{path} holds Python objects other than tensors, numbers, strings and containers{what}: esl "
                f"reads checkpoints as weights only and never runs code from a file (not a checkpoint esl "
                f"train wrote, or altered since)")
    reason = text.splitlines()[-1] if text else type(e).__name__
    return f"corrupt or truncated checkpoint {path}: {reason[:200]}"


_KINDS = {"dict": (dict,), "str": (str,), "int": (int,), "number": (int, float), "list": (list, tuple)}


def checkpoint_field(state: Dict[str, Any], dotted: str, kind: str, path: Union[str, Path], *,
                     optional: bool = False) -> Any:
    """``state[a][b]...`` for ``dotted = "a.b..."``, checked to be of ``kind`` (one of dict, str, int, number,
    list; bool is never a number), else EslError naming the field: a CRC-valid file can still be one
    that another program wrote or a person edited. ``optional``: a missing or None field gives None."""
    node: Any = state
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            if optional:
                return None
            raise EslError(f"{path}: malformed checkpoint: {dotted} is missing")
        node = node[key]
    if node is None and optional:
        return None
    if isinstance(node, bool) or not isinstance(node, _KINDS[kind]):
        raise EslError(f"{path}: malformed checkpoint: {dotted} is {type(node).__name__}, expected {kind}")
    return node


def checked_T(value: Any, where: str) -> int:
    """A number of time steps read from a file: a positive integer (an integral float such as 8.0 is one),
    else EslError naming ``where``."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 1
            or int(value) != value):
        raise EslError(f"{where}: T must be a positive integer, got {value!r}")
    return int(value)
