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

from .checkpoint import checked_T, checkpoint_field, read_checkpoint
from .errors import EslError
from .resources import dry_shapes
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
    if state.get("best") is None:
        raise EslError(f"{path}: the run has no kept model yet: it stopped while its sparsity was still changing "
                       f"(a pruning pending); finish it with esl train --resume")
    cfg = _checked_config(state, path)
    stored = checkpoint_field(state, "best.model", "dict", path)
    masks = checkpoint_field(state, "best.masks", "dict", path)
    try:
        spec = ModelSpec.from_dict(checkpoint_field(state, "model_spec", "dict", path))
        if not is_factory(spec.name):  # its shapes first, allocating nothing: a spec may claim any size
            _check_shapes(dry_shapes(lambda: build_model(spec)), stored, path)
        model = build_model(spec)
        model.load_state_dict(stored)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise EslError(f"{path}: checkpoint does not match its model: {_first_reason(e)}") from None
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, mask in masks.items():
            if not isinstance(mask, torch.Tensor) or name not in params or params[name].shape != mask.shape:
                raise EslError(f"{path}: mask {name} does not fit the model")
            params[name].mul_(mask)
    if is_factory(spec.name):  # a user's snnTorch network: its deployable form (esl_deploy.convert)
        model.eval()
        sample = torch.zeros(1, *spec.input_shape)
        model = from_snntorch(model, sample if stepwise(model) else sample.expand(int(cfg["T"]), *sample.shape))
    model.meta = {
        "method": cfg["sparsity"]["method"], "dataset": cfg["dataset"], "data_dir": cfg.get("data_dir"),
        "T": int(cfg["T"]), "encoding": cfg["encoding"], "weight_bits": cfg.get("weight_bits"),
        "density": checkpoint_field(state, "best.density", "number", path),
        "mask_density": state["best"].get("mask_density", state["best"]["density"]),
        "layer_density": checkpoint_field(state, "best.layer_density", "dict", path),
        "model_spec": state["model_spec"],
        "best_epoch": checkpoint_field(state, "best.epoch", "int", path),
        "val_acc": checkpoint_field(state, "best.val_acc", "number", path),
    }
    if is_factory(spec.name):
        model.meta.update(source="snntorch", module=spec.name)
    return check_finite(model.eval(), path)


def _checked_config(state: dict, path: Path) -> dict:
    """The run config of a checkpoint with the fields :func:`load` reads checked (EslError naming a field
    that is missing or of the wrong type, a T that is not a positive integer, an unknown encoding)."""
    from .datasets import ENCODINGS

    cfg = checkpoint_field(state, "config", "dict", path)
    for dotted, kind in (("config.sparsity.method", "str"), ("config.dataset", "str"), ("config.encoding", "str")):
        checkpoint_field(state, dotted, kind, path)
    checkpoint_field(state, "config.data_dir", "str", path, optional=True)
    checkpoint_field(state, "config.weight_bits", "int", path, optional=True)
    checked_T(checkpoint_field(state, "config.T", "number", path), f"{path}: config")
    if cfg["encoding"] not in ENCODINGS:
        raise EslError(f"{path}: malformed checkpoint: unknown encoding {cfg['encoding']!r}")
    return cfg


def _check_shapes(built, stored: dict, path: Path) -> None:
    """Refuse a checkpoint whose tensors do not have the shapes its model_spec builds (``built``: from
    :func:`dry_shapes`, None when unknown), before the model is built: a spec claiming width 15000 in a
    1 MB file is refused without allocating gigabytes."""
    if built is None:
        return
    missing = [k for k in built if k not in stored]
    # a --weight-bits network's LIFs keep their integer-membrane scale (esl_deploy.neurons.LIF.set_fixed_scale)
    extra = [k for k in stored if k not in built and not k.endswith(".fixed_point_scale")]
    if missing or extra:
        raise EslError(f"{path}: checkpoint does not match its model: "
                       + "; ".join(([f"missing {', '.join(missing[:3])}"] if missing else []) +
                                   ([f"unexpected {', '.join(extra[:3])}"] if extra else [])))
    for name, shape in built.items():
        held = tuple(stored[name].shape) if isinstance(stored[name], torch.Tensor) else None
        if held != shape:
            raise EslError(f"{path}: checkpoint does not match its model: size mismatch for {name}: the checkpoint "
                           f"holds {held}, its model_spec builds {shape}")


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

