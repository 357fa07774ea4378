"""The sparsity engine: masks kept beside the model and the optimizer, and one registry of methods.

Usage, once per training iteration (as in ``sparse_learning``'s ``Masking.step``)::

    loss.backward(); optimizer.step(); engine.step()

``engine.step()`` (1) zeroes every masked weight and its optimizer state (SGD momentum, Adam moments),
(2) every ``t_iter`` steps before ``t_end`` lets the method rewire the masks, (3) zeroes again, so
pruned weights are 0 and regrown ones start from 0 with empty optimizer state.

Methods (``METHODS``, the CLI's ``--method`` choices):

- ``dense``: no masks, the reference.
- ``static``: ER/ERK random masks at the target density, never changed.
- ``set``: SET (Mocanu et al. 2018): prune the fraction f of smallest-|w| active weights per layer and
  regrow as many at random; f constant (alpha) until t_end.
- ``rigl``: RigL (Evci et al. 2020): prune by magnitude, regrow by |dense gradient|; cosine f.
- ``esl``: ESL-SNNs (Shen et al., AAAI 2023): sparse from scratch from Erdős–Rényi masks; every T_iter
  iterations prune the weakest active weights by magnitude and regrow as many (random by default, or
  ``gradient`` / ``momentum``), the fraction decaying by a cosine schedule. Each layer keeps exactly
  its nnz, so its density is constant through training.
- ``pq``: PQ-index adaptive rewiring (Shen et al., ICLR 2025): Stage I computes the PQ index of each
  scope and the prune count c (see :mod:`train.pq_index`); Stage II prunes c by magnitude and regrows
  round(rho * c) by momentum magnitude, so density falls while the weights stay compressible.
- ``magnitude``: one-shot magnitude pruning of the dense net at ``prune_at`` of training, to the same
  per-layer (ERK) densities, then fine-tuning with the mask fixed.

"Momentum" for regrowth is an exponential moving average of the dense gradient kept by the engine
(sparse momentum, Dettmers & Zettlemoyer 2019), m <- mu m + (1 - mu) dL/dw with mu = 0.9, because the
optimizer's own state of a masked weight is zero by construction.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Optional

import torch
from torch import nn

from esl_deploy.masks import DENSITY_MODES, LayerShape, layer_densities, random_mask, sparsifiable

from .pq_index import PQConfig, pq_index, prune_count
from .rewire import grow_by_score, prune_magnitude, random_scores
from .schedule import RewireSchedule

GROW_RULES = ("random", "gradient", "momentum")


@dataclass(frozen=True)
class SparsityConfig:
    """How the engine sparsifies: method, target density and rewiring hyper-parameters."""

    method: str = "esl"
    density: float = 0.1
    density_mode: str = "erk"
    t_iter: Optional[int] = None
    alpha: float = 0.3
    t_end: float = 0.75
    grow: Optional[str] = None
    prune_at: float = 0.5
    momentum: float = 0.9
    pq: PQConfig = field(default_factory=PQConfig)
    core_aware: Optional[str] = None
    rescale_init: bool = False

    def __post_init__(self):
        if isinstance(self.pq, dict):
            object.__setattr__(self, "pq", PQConfig(**self.pq))
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if not (isinstance(self.density, (int, float)) and 0.0 < self.density <= 1.0):
            raise ValueError(f"density must lie in (0, 1], got {self.density}")
        if self.density_mode not in DENSITY_MODES:
            raise ValueError(f"unknown density mode {self.density_mode!r}; choose one of: {', '.join(DENSITY_MODES)}")
        if self.t_iter is not None and self.t_iter < 1:
            raise ValueError(f"t_iter must be at least 1, got {self.t_iter}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not 0 < self.t_end <= 1:
            raise ValueError(f"t_end must lie in (0, 1] (a fraction of training), got {self.t_end}")
        if self.grow is not None and self.grow not in GROW_RULES:
            raise ValueError(f"unknown grow rule {self.grow!r}; choose one of: {', '.join(GROW_RULES)}")
        if not 0 < self.prune_at < 1:
            raise ValueError(f"prune_at must lie in (0, 1), got {self.prune_at}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.core_aware not in (None, "truenorth"):
            raise ValueError(f"unknown core-aware target {self.core_aware!r}; choose: truenorth")

    def effective_t_iter(self, total_steps: int) -> int:
        """T_iter: as configured, else 1000 (the paper's value) capped at 1/20 of the run's steps so that
        short runs on small data sets still rewire about 15 times before t_end."""
        if self.t_iter is not None:
            return self.t_iter
        return max(1, min(1000, total_steps // 20))

    @property
    def grow_rule(self) -> str:
        return self.grow or METHODS[self.method].default_grow

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SparsityConfig":
        return cls(**d)


class MaskEngine:
    """Masks (bool buffers, one per sparse weight) and the rewiring that evolves them; see module doc."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, config: SparsityConfig, *,
                 total_steps: int, seed: int = 0):
        self.config = config
        self.method = METHODS[config.method]
        self.optimizer = optimizer
        self.params: Dict[str, nn.Parameter] = dict(sparsifiable(model)) if self.method.sparse else {}
        shapes = [LayerShape(n, tuple(p.shape)) for n, p in self.params.items()]
        self.target_density = layer_densities(shapes, config.density, config.density_mode) if shapes else {}
        self.generator = torch.Generator().manual_seed(int(seed))
        self.allowed: Dict[str, torch.Tensor] = {}
        if config.core_aware is not None:
            from hw_models.truenorth import core_allowed_mask
            self.allowed = {n: core_allowed_mask(tuple(p.shape), self.target_density[n]).to(p.device)
                            for n, p in self.params.items()}
        self.masks: Dict[str, torch.Tensor] = {}
        for name, p in self.params.items():
            if self.method.sparse_init:
                self.masks[name] = self._initial_mask(name, tuple(p.shape)).to(p.device)
                if config.rescale_init and self.target_density[name] < 1.0:
                    with torch.no_grad():  # keep each neuron's input variance: W <- W / sqrt(density)
                        p.div_(self.target_density[name] ** 0.5)
            else:
                self.masks[name] = torch.ones(p.shape, dtype=torch.bool, device=p.device)
        self.t = 0
        self.t_iter = config.effective_t_iter(total_steps)
        self.t_end = max(1, int(config.t_end * total_steps))
        self.prune_step = max(1, int(config.prune_at * total_steps))
        self.schedule = RewireSchedule(self.method.schedule or "constant", config.alpha, self.t_end)
        self.grad_ema: Dict[str, torch.Tensor] = {}
        if config.grow_rule == "momentum" and self.method.rewire is not None:
            self.grad_ema = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.rewired_total = 0
        self.apply()

    def _initial_mask(self, name: str, shape) -> torch.Tensor:
        density = self.target_density[name]
        if name not in self.allowed:
            return random_mask(shape, density, self.generator)
        from hw_models.core_aware import random_mask_within
        return random_mask_within(self.allowed[name].cpu(), density, self.generator)

    # -- the per-step work ------------------------------------------------------------------------
    @torch.no_grad()
    def apply(self) -> None:
        """W <- W * M, and the same for every optimizer-state tensor shaped like W."""
        for name, p in self.params.items():
            mask = self.masks[name]
            p.mul_(mask)
            for value in self.optimizer.state.get(p, {}).values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    value.mul_(mask)

    @torch.no_grad()
    def step(self) -> int:
        """Call right after ``optimizer.step()``. Returns the number of connections rewired."""
        self.t += 1
        if self.grad_ema:
            mu = self.config.momentum
            for name, p in self.params.items():
                if p.grad is not None:
                    self.grad_ema[name].mul_(mu).add_(p.grad, alpha=1.0 - mu)
        self.apply()
        rewired = 0
        if self.method.rewire is not None and self._due(self.t):
            rewired = self.method.rewire(self, self.t)
            self.rewired_total += rewired
            self.apply()
        return rewired

    @property
    def structure_final(self) -> bool:
        """True once the method will not change the density again (always, for constant-density methods)."""
        if self.method.name == "magnitude":
            return self.t >= self.prune_step
        if self.method.name == "pq":
            return self.t >= self.t_end
        return True

    def _due(self, t: int) -> bool:
        if self.method.name == "magnitude":
            return t == self.prune_step
        return t % self.t_iter == 0 and t < self.t_end

    def grow_scores(self, name: str) -> torch.Tensor:
        """Scores for regrowth in layer ``name`` under the configured rule (same shape as the weight)."""
        rule = self.config.grow_rule
        p = self.params[name]
        if rule == "random":
            return random_scores(p.shape, self.generator).to(p.device)
        if rule == "gradient":
            if p.grad is None:
                raise RuntimeError("gradient regrowth needs the gradient of the last step: call step() before zero_grad()")
            return p.grad.abs()
        return self.grad_ema[name].abs()

    # -- measurements -----------------------------------------------------------------------------
    def nnz(self) -> Dict[str, int]:
        return {n: int(m.sum()) for n, m in self.masks.items()}

    def layer_density(self) -> Dict[str, float]:
        return {n: int(m.sum()) / m.numel() for n, m in self.masks.items()}

    def density(self) -> float:
        """Global density: active weights / all weights, over the sparse layers (1.0 for dense)."""
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / total if total else 1.0

    # -- persistence ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "masks": {n: m.cpu().clone() for n, m in self.masks.items()},
            "t": self.t,
            "generator": self.generator.get_state(),
            "grad_ema": {n: v.cpu().clone() for n, v in self.grad_ema.items()},
            "schedule": self.schedule.state_dict(),
            "rewired_total": self.rewired_total,
        }

    def load_state_dict(self, state: dict) -> None:
        if set(state["masks"]) != set(self.masks):
            raise ValueError(f"mask names differ: {sorted(state['masks'])} vs {sorted(self.masks)}")
        for name, m in state["masks"].items():
            if m.shape != self.masks[name].shape:
                raise ValueError(f"mask {name} has shape {tuple(m.shape)}, expected {tuple(self.masks[name].shape)}")
            self.masks[name] = m.to(device=self.masks[name].device, dtype=torch.bool)
        self.t = int(state["t"])
        self.generator.set_state(state["generator"])
        for name, v in state["grad_ema"].items():
            self.grad_ema[name] = v.to(self.params[name].device)
        self.schedule.load_state_dict(state["schedule"])
        self.rewired_total = int(state["rewired_total"])
        self.apply()


# -- rewiring rules (one function per method, all pure over the engine's masks) ---------------------

def _rewire_fraction(engine: MaskEngine, t: int) -> int:
    """SET / RigL / ESL: in each layer prune k = floor(f(t) nnz) by magnitude, regrow k (nnz constant)."""
    f = engine.schedule(t)
    moved = 0
    for name, p in engine.params.items():
        mask = engine.masks[name]
        k = int(math.floor(f * int(mask.sum())))
        if k == 0:
            continue
        kk = torch.tensor([k])
        row_mask = mask.reshape(1, -1)
        pruned = prune_magnitude(p.reshape(1, -1), row_mask, kk)
        allowed = engine.allowed[name].reshape(1, -1) if name in engine.allowed else None
        grown = grow_by_score(pruned, engine.grow_scores(name).reshape(1, -1), kk,
                              just_pruned=row_mask & ~pruned, allowed=allowed)
        engine.masks[name] = grown.reshape(mask.shape)
        moved += k
    return moved


def _pq_rows(t: torch.Tensor, scope: str) -> torch.Tensor:
    return t.reshape(t.shape[0], -1) if scope == "neuron" else t.reshape(1, -1)


def _rewire_pq(engine: MaskEngine, t: int) -> int:
    """PQ index: Stage I c_i per scope unit; Stage II prune c_i by magnitude, regrow round(rho c_i)."""
    cfg = engine.config.pq
    names = list(engine.params)
    if cfg.scope == "global":
        weights = [engine.params[n].reshape(1, -1) for n in names]
        units = [(names, torch.cat(weights, 1), torch.cat([engine.masks[n].reshape(1, -1) for n in names], 1),
                  torch.cat([engine.grow_scores(n).reshape(1, -1) for n in names], 1),
                  torch.cat([(engine.allowed[n] if n in engine.allowed else torch.ones_like(engine.masks[n]))
                             .reshape(1, -1) for n in names], 1))]
    else:
        units = []
        for n in names:
            allowed = engine.allowed.get(n, torch.ones_like(engine.masks[n]))
            units.append(([n], _pq_rows(engine.params[n], cfg.scope), _pq_rows(engine.masks[n], cfg.scope),
                          _pq_rows(engine.grow_scores(n), cfg.scope), _pq_rows(allowed, cfg.scope)))
    moved = 0
    for unit_names, w, mask, score, allowed in units:
        d = mask.sum(dim=1)
        index = pq_index(w, mask, cfg.p, cfg.q, dim=1)
        c = prune_count(index, d, cfg)
        pruned = prune_magnitude(w, mask, c)
        g = torch.round(cfg.rho * c.double()).long()
        new = grow_by_score(pruned, score, g, just_pruned=mask & ~pruned, allowed=allowed)
        moved += int(c.sum())
        flat = new.reshape(-1)
        offset = 0
        for n in unit_names:
            numel = engine.masks[n].numel()
            engine.masks[n] = flat[offset:offset + numel].reshape(engine.masks[n].shape).clone()
            offset += numel
    return moved


def _prune_once(engine: MaskEngine, t: int) -> int:
    """One-shot magnitude pruning of the (dense-trained) weights to the per-layer target densities."""
    moved = 0
    for name, p in engine.params.items():
        mask = engine.masks[name]
        keep = int(round(engine.target_density[name] * mask.numel()))
        k = int(mask.sum()) - keep
        if k > 0:
            engine.masks[name] = prune_magnitude(p.reshape(1, -1), mask.reshape(1, -1),
                                                 torch.tensor([k])).reshape(mask.shape)
            moved += k
    return moved


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    sparse: bool            # has masks at all
    sparse_init: bool       # starts from random ER/ERK masks
    rewire: Optional[Callable[[MaskEngine, int], int]]
    schedule: Optional[str]
    default_grow: str


METHODS: Dict[str, Method] = {m.name: m for m in (
    Method("dense", "dense reference, no masks", False, False, None, None, "random"),
    Method("static", "fixed random ER/ERK mask", True, True, None, None, "random"),
    Method("set", "SET: magnitude prune, random regrow, constant fraction", True, True, _rewire_fraction,
           "constant", "random"),
    Method("rigl", "RigL: magnitude prune, gradient regrow, cosine fraction", True, True, _rewire_fraction,
           "cosine", "gradient"),
    Method("esl", "ESL-SNNs: ER init, magnitude prune, regrow, cosine fraction", True, True, _rewire_fraction,
           "cosine", "random"),
    Method("pq", "PQ-index adaptive prune ratio, momentum regrow", True, True, _rewire_pq, None, "momentum"),
    Method("magnitude", "one-shot magnitude pruning of the dense net, then fine-tuning", True, False,
           _prune_once, None, "random"),
)}
