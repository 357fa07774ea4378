"""The sparsity engine in a user's own training loop: :class:`Sparsifier`, the library API's sparsifier.

It sits next to the optimizer, as rigl-torch's ``RigLScheduler`` and ``torch.ao.pruning``'s sparsifiers
do, and adds two lines to any loop::

    sparsifier = Sparsifier(net, optimizer, method="esl", density=0.1, total_steps=epochs * len(loader))
    for x, y in loader:
        ...
        loss.backward()
        optimizer.step()
        sparsifier.step()

It is :class:`~esl_deploy.train.masking.MaskEngine`, the engine ``esl train`` runs, with the same
registry of methods (``esl``, ``pq``, ``set``, ``rigl``, ``static``, ``magnitude``, ``dense``), the same
options (:class:`~esl_deploy.train.masking.SparsityConfig`) and the same arithmetic: the same model,
data, seed and options give the same masks and weights through either (``tests/test_library.py``).
Every Linear and Conv2d weight is sparse except the layers in ``exclude`` (``esl train``'s own networks
keep their first convolution dense, :func:`esl_deploy.masks.sparsifiable`).

Distributed (DDP). Wrap the model in ``DistributedDataParallel`` as usual and hand the sparsifier either
the wrapped or the bare model. Gradient hooks would see each process's local gradient before DDP's
all-reduce, so under an initialised process group with more than one process the sparsifier masks
nothing during the backward pass: :meth:`step` reads the all-reduced gradient the optimizer just used
(``p.grad``), then zeroes the masked weights and their optimizer state again (for the entries that
stay, the same arithmetic as masking the gradient, since every optimizer here is elementwise). Every
process draws the same masks from the same ``seed`` and scores the same global gradient, so the masks
stay identical across processes without any communication.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence

import torch
from torch import nn

from esl_deploy.masks import weights_of
from esl_deploy.models import synapse_layers

from .masking import METHODS, MaskEngine, SparsityConfig
from .pq_index import PQConfig


def feasible_inputs(model: nn.Module, batches: Iterable) -> Dict[str, torch.Tensor]:
    """``{first-layer weight name: (1, in) bool}``: the inputs that are not 0 in some sample of ``batches``
    (tensors ``(B, ...)`` or ``(x, y)`` pairs of static training inputs).

    Only for a first Linear layer fed by the flattened input (``{}`` otherwise): a weight from an input
    that is 0 in every sample never receives a gradient, so a mask position there holds budget and does
    nothing (MNIST's border pixels); the engine keeps them out of every mask (``esl train`` does this by
    default, ``Sparsifier(..., inputs=loader)`` on request)."""
    layers = synapse_layers(model)
    if not layers or not isinstance(layers[0][1], nn.Linear):
        return {}
    name, first = layers[0]
    active = None
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        flat = torch.as_tensor(x).reshape(len(x), -1)
        if flat.shape[1] != first.in_features:
            return {}
        seen = (flat != 0).any(0)
        active = seen if active is None else active | seen
    return {} if active is None else {f"{name}.weight": active.reshape(1, -1)}


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


class Sparsifier:
    """Sparse training of any ``nn.Module`` with one of the registry's methods (see the module docstring).

    ``total_steps``: optimizer steps of the whole run (rewiring stops at ``t_end`` of it; T_iter defaults
    to max(2, min(1000, total_steps / 20))). ``steps_per_epoch``: lets SET rewire once per epoch as its reference
    code does, and :meth:`step`'s ``epoch_start`` defer a rewiring to the next epoch's first step as
    ``esl train`` does. The keyword options are those of ``esl train`` (``density``, ``density_mode``,
    ``t_iter``, ``alpha``, ``t_end``, ``grow``, ``prune_at``, ``momentum``, ``pq``, ``core_aware``,
    ``rescale_init``, ``regrow_std``); ``config`` gives them as one
    :class:`~esl_deploy.train.masking.SparsityConfig` instead. ``inputs``: the training inputs (a DataLoader
    or tensor), scanned once so that inputs which are 0 in every sample get no connection
    (:func:`feasible_inputs`, as ``esl train`` does); ``feasible`` gives such allowed positions directly.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, method: str = "esl",
                 density: float = 0.1, total_steps: int, steps_per_epoch: Optional[int] = None, seed: int = 0,
                 exclude: Sequence[str] = (), config: Optional[SparsityConfig] = None,
                 inputs: Optional[Iterable] = None, feasible: Optional[Dict[str, torch.Tensor]] = None,
                 **options):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")
        if not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer (optimizer steps of the run), got {total_steps!r}")
        if config is None:
            if isinstance(options.get("pq"), dict):
                options["pq"] = PQConfig(**options["pq"])
            options.setdefault("exclude_dead_inputs", False)  # no data to scan here: pass feasible= instead
            config = SparsityConfig(method=method, density=density, **options)
        elif options or method != "esl" or density != 0.1:
            raise ValueError("give the sparsity options either as keywords or as config=, not both")
        inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        if inputs is not None and feasible is None:
            feasible = feasible_inputs(inner, inputs)
        self.model = inner
        self.distributed = _distributed()
        self.engine = MaskEngine(inner, optimizer, config, total_steps=total_steps, seed=seed,
                                 steps_per_epoch=steps_per_epoch, feasible=feasible,
                                 mask_in_hook=not self.distributed, layers=weights_of(inner, exclude))

    # -- the loop ---------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, epoch_start: Optional[bool] = None) -> int:
        """Call right after ``optimizer.step()``; returns the connections rewired at this step (0 mostly).

        ``epoch_start`` (True on an epoch's first step, False on the others) defers a rewiring that falls
        due to the next epoch's first step, as ``esl train`` does; left out, a rewiring happens when due."""
        if self.distributed:
            self.engine.mask_gradients()  # the all-reduced gradient: what regrowth and momentum read
            self.engine.apply()
        return self.engine.step(epoch_start=epoch_start)

    # -- what it holds ----------------------------------------------------------------------------
    @property
    def config(self) -> SparsityConfig:
        return self.engine.config

    @property
    def masks(self) -> Dict[str, torch.Tensor]:
        """Weight name -> bool mask (True: the connection exists)."""
        return self.engine.masks

    def density(self) -> float:
        """Global mask density over the sparse layers (connections held / weights)."""
        return self.engine.density()

    def layer_density(self) -> Dict[str, float]:
        return self.engine.layer_density()

    def weight_density(self) -> tuple:
        """(global, per-layer) density of nonzero weights: what a chip stores."""
        return self.engine.weight_density()

    @property
    def rewired_total(self) -> int:
        return self.engine.rewired_total

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Masks, step, random state, schedule and regrowth state: save it beside the model's and the
        optimizer's state dicts."""
        return self.engine.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (after loading the model's and optimizer's); the masks are re-applied."""
        saved = SparsityConfig.from_dict(state["config"]) if isinstance(state.get("config"), dict) else None
        if saved is not None and saved != self.engine.config:
            raise ValueError(f"this state was saved by a sparsifier with other options: {saved} vs {self.engine.config}")
        self.engine.load_state_dict(state)

    def __repr__(self) -> str:
        c = self.engine.config
        return (f"Sparsifier(method={c.method!r}, density={c.density:g}, layers={len(self.engine.params)}, "
                f"t_iter={self.engine.t_iter}, step={self.engine.t})")


__all__ = ["METHODS", "Sparsifier", "feasible_inputs"]
