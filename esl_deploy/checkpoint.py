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

import zipfile
from pathlib import Path
from typing import Any, Dict

import torch

from .atomic import atomic_write_bytes, atomic_write_text  # noqa: F401  (re-exported)
from .errors import EslError

FORMAT = "esl-deploy-checkpoint"
VERSION = 1
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # first bytes of every HDF5 file (NIR, Lava, netx)
ZIP_MAGIC = b"PK\x03\x04"           # first bytes of a zip file (torch.save's format)
REQUIRED = ("format", "version", "config", "model_spec", "model", "best", "epoch")


def save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    state = {"format": FORMAT, "version": VERSION, **state}
    atomic_write_bytes(Path(path), lambda f: torch.save(state, f))


def read_checkpoint(path: Path) -> Dict[str, Any]:
    """Read and check a checkpoint; a missing, truncated or foreign file raises EslError."""
    path = Path(path)
    if not path.is_file():
        raise EslError(f"checkpoint not found: {path}")
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
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise EslError(f"corrupt or truncated checkpoint {path}: {e}") from None
    if bad is not None:
        raise EslError(f"corrupt checkpoint {path}: member {bad} fails its CRC-32 check")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, a pickle that is not plain tensors and containers
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise EslError(f"corrupt or truncated checkpoint {path}: {reason[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise EslError(f"{path} is not an ESL Deploy checkpoint")
    if state.get("version") != VERSION:
        raise EslError(f"{path}: unsupported checkpoint version {state.get('version')} (expected {VERSION})")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise EslError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state
