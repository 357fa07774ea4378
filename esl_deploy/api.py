"""Public API: :func:`load` a trained network for the other commands and for users.

esl_deploy is the ground layer: it imports no package above it. Exported files (``.nir``) are read by
the package that writes them (:func:`export.nir.read.load_nir`), registered in ``pyproject.toml``
under the entry-point group :data:`READERS_GROUP` with the file suffix as its name; :func:`load`
looks the reader up there.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from .checkpoint import read_checkpoint
from .errors import EslError
from .convert import from_snntorch, stepwise
from .models import ModelSpec, SpikingNet, build_model, is_factory


def load(path: str | Path) -> SpikingNet:
    """The trained network in ``path``, in eval mode, with its masks applied (masked weights are 0).

    ``path`` is a run's ``checkpoint.pt`` (the best-on-validation model is returned) or an exported
    ``.nir`` graph. ``model.meta`` holds method, dataset, T, encoding, global and per-layer density (of
    nonzero weights) and ``mask_density`` (the connections the method held while training).
    """
    path = Path(path)
    reader = file_reader(path.suffix)
    if reader is not None:
        return check_finite(reader(path), path)
    state = read_checkpoint(path)
    try:
        spec = ModelSpec.from_dict(state["model_spec"])
        model = build_model(spec)
        model.load_state_dict(state["best"]["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise EslError(f"{path}: checkpoint does not match its model: {_first_reason(e)}") from None
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, mask in state["best"]["masks"].items():
            if name not in params or params[name].shape != mask.shape:
                raise EslError(f"{path}: mask {name} does not fit the model")
            params[name].mul_(mask)
    cfg = state["config"]
    if is_factory(spec.name):  # a user's snnTorch network: its deployable form (esl_deploy.convert)
        model.eval()
        sample = torch.zeros(1, *spec.input_shape)
        model = from_snntorch(model, sample if stepwise(model) else sample.expand(int(cfg["T"]), *sample.shape))
    model.meta = {
        "method": cfg["sparsity"]["method"], "dataset": cfg["dataset"], "data_dir": cfg.get("data_dir"),
        "T": cfg["T"], "encoding": cfg["encoding"], "weight_bits": cfg.get("weight_bits"), "density": state["best"]["density"],
        "mask_density": state["best"].get("mask_density", state["best"]["density"]),
        "layer_density": state["best"]["layer_density"], "model_spec": state["model_spec"],
        "best_epoch": state["best"]["epoch"], "val_acc": state["best"]["val_acc"],
    }
    if is_factory(spec.name):
        model.meta.update(source="snntorch", module=spec.name)
    return check_finite(model.eval(), path)


READERS_GROUP = "esl_deploy.readers"


def file_reader(suffix: str) -> Optional[Callable[[Path], SpikingNet]]:
    """The installed reader of files ending in ``suffix`` (``".nir"``), or None (a checkpoint)."""
    for ep in entry_points(group=READERS_GROUP):
        if suffix == "." + ep.name:
            return ep.load()
    return None


def check_finite(model: nn.Module, path: Path) -> nn.Module:
    """Refuse (EslError) a network with a NaN or infinite parameter or buffer: no export or simulator
    can represent it, and it comes from a diverged run."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise EslError(f"{path}: {name} holds NaN or infinite values (a diverged training run?)")
    return model


def _first_reason(e: Exception) -> str:
    """One line saying what mismatched: torch's load_state_dict puts the reasons on the lines after a
    header ("Error(s) in loading state_dict for ...:"), e.g. "size mismatch for layers.1.weight: ..."."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        reasons = "; ".join(lines[1:3])
        return reasons[:300] + (" ..." if len(lines) > 3 or len(reasons) > 300 else "")
    return lines[0][:300] if lines else type(e).__name__

