"""The sparsity engine: masks kept beside the model and the optimizer, and one registry of methods.

Usage, once per training iteration (as in ``sparse_learning``'s ``Masking.step``)::

    loss.backward(); optimizer.step(); engine.step()

The engine masks each sparse weight's gradient as it arrives (a tensor hook: dL/dW * M goes into
``W.grad``; the dense gradient is kept for gradient/momentum regrowth), so the optimizer never moves a
masked weight: with a zero gradient, SGD momentum and Adam's moments of a masked entry stay 0 and its
update is 0 (weight decay adds wd * 0). ``engine.step()`` (1) every ``t_iter`` steps before ``t_end``
lets the method rewire the masks, (2) then zeroes every newly masked weight and its optimizer state,
so pruned weights are 0 and regrown ones start from their method's initial value (0, or SET's small
random weights) with empty optimizer state. For the unmasked entries this is the arithmetic of
masking the weights after every step, bit for bit, at a third of the cost.

When the trainer says where epochs start (``step(epoch_start=...)``), a rewiring that falls due is
carried out on the first step of the next epoch, i.e. right after the validation that ended the
previous one (as SET's reference code does: evaluate, then rewire). So the model that is validated
(and may be kept as the best) never holds connections regrown a moment ago and still at their initial
0: every regrown weight has been trained for the rest of its epoch. A run too short for that (one
epoch, or T_iter beyond its last epoch start) rewires mid-epoch instead, when due (never at or after
T_end, so the regrown weights train for the last (1 - t_end) of the run; :func:`train.schedule.rewire_timing`,
``timing``), and regrows only positions whose gradient was not 0 since the last rewiring (fewer
connections move when there are fewer such positions). T_iter is at least 2 steps, so regrowth always
sees the gradient of more than one batch. Regrowth prefers positions whose
dense gradient was not 0 since the last rewiring (a connection from a neuron that never spiked, or
an input that is 0, cannot learn). Positions that can never learn are kept out of every mask from the start
(``feasible``: e.g. the first layer's inputs that are 0 in every training sample, whose weights would
get no gradient and hold budget without doing anything).

Methods (``METHODS``, the CLI's ``--method`` choices):

- ``dense``: no masks, the reference.
- ``static``: ER/ERK random masks at the target density, never changed.
- ``set``: SET (Mocanu et al. 2018, as in its reference code ``set_mlp.py::weightsEvolution``): once
  per epoch (after the epoch's validation), in each layer prune the fraction zeta = alpha of the
  positive weights with the smallest values and the fraction zeta of the negative weights closest to
  zero (signed pruning; active weights that are exactly 0 go too), and regrow as many connections at
  uniformly random inactive positions with new weights drawn from N(0, ``regrow_std``^2) (the
  reference's ``randn() / 10``: regrow_std = 0.1); zeta constant, rewiring until the last epoch.
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
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from esl_deploy.masks import (DENSITY_MODES, LayerShape, layer_densities, nonzero_density, random_mask,
                              random_mask_within, sparsifiable)

from .pq_index import PQConfig, pq_index, prune_count
from .rewire import grow_by_score, prune_magnitude, random_scores
from .schedule import MIN_EVIDENCE_STEPS, RewireSchedule, rewire_timing

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
    regrow_std: float = 0.1               # SET: regrown weights ~ N(0, regrow_std^2)
    exclude_dead_inputs: bool = True      # keep inputs that are 0 in every training sample out of the masks

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
        if not (0 <= self.regrow_std < math.inf):
            raise ValueError(f"regrow_std must be a finite number >= 0, got {self.regrow_std}")
        if self.grow is not None and self.grow not in GROW_RULES:
            raise ValueError(f"unknown grow rule {self.grow!r}; choose one of: {', '.join(GROW_RULES)}")
        if not 0 < self.prune_at < 1:
            raise ValueError(f"prune_at must lie in (0, 1), got {self.prune_at}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.core_aware not in (None, "truenorth"):
            raise ValueError(f"unknown core-aware target {self.core_aware!r}; choose: truenorth")

    def effective_t_iter(self, total_steps: int, steps_per_epoch: Optional[int] = None) -> int:
        """T_iter: as configured; for SET one epoch (its reference code rewires once per epoch); else
        1000 (the ESL paper's value) capped at 1/20 of the run's steps so that short runs on small data
        sets still rewire about 15 times before t_end, and at least MIN_EVIDENCE_STEPS (2): a rewiring
        after a single step would regrow by the gradient of one batch (runs under 40 steps)."""
        if self.t_iter is not None:
            return self.t_iter
        if self.method == "set" and steps_per_epoch:
            return steps_per_epoch
        return max(MIN_EVIDENCE_STEPS, min(1000, total_steps // 20))

    def effective_t_end(self) -> float:
        """Fraction of training after which no rewiring happens (SET: none; it rewires to the end)."""
        return 1.0 if self.method == "set" else self.t_end

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
                 total_steps: int, seed: int = 0, steps_per_epoch: Optional[int] = None,
                 feasible: Optional[Dict[str, torch.Tensor]] = None, mask_in_hook: bool = True,
                 on_rewire: Optional[Callable[["MaskEngine"], None]] = None,
                 layers: Optional[List[Tuple[str, nn.Parameter]]] = None):
        """``mask_in_hook=False``: the gradients are not masked during the backward pass; the caller calls
        :meth:`mask_gradients` between ``backward()`` and ``optimizer.step()`` (distributed training: after
        DDP's all-reduce, so the kept dense gradient is the global one). ``on_rewire(engine)`` is called
        after every rewiring (the distributed trainer checks there that every process holds the same masks).
        ``layers``: the ``(name, weight)`` pairs to sparsify (default :func:`esl_deploy.masks.sparsifiable`, the
        project's networks' convention; the library API passes :func:`esl_deploy.masks.weights_of`)."""
        self.config = config
        self.on_rewire = on_rewire
        self.method = METHODS[config.method]
        self.optimizer = optimizer
        chosen = sparsifiable(model) if layers is None else list(layers)
        self.params: Dict[str, nn.Parameter] = dict(chosen) if self.method.sparse else {}
        shapes = [LayerShape(n, tuple(p.shape)) for n, p in self.params.items()]
        self.target_density = layer_densities(shapes, config.density, config.density_mode) if shapes else {}
        self.generator = torch.Generator().manual_seed(int(seed))
        # allowed[name]: positions that may ever hold a connection (core groups x feasible positions)
        self.allowed: Dict[str, torch.Tensor] = {}
        if config.core_aware is not None:
            from esl_deploy.hw_models.core_aware import core_allowed_mask
            self.allowed = {n: core_allowed_mask(tuple(p.shape), self.target_density[n]).to(p.device)
                            for n, p in self.params.items()}
        for name, ok in (feasible or {}).items():
            if name in self.params:
                ok = ok.to(device=self.params[name].device, dtype=torch.bool).expand(self.params[name].shape)
                self.allowed[name] = ok & self.allowed[name] if name in self.allowed else ok.clone()
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
        self.pending = 0  # step at which a deferred rewiring fell due (0: none)
        self.t_iter = config.effective_t_iter(total_steps, steps_per_epoch)
        self.t_end = max(1, int(config.effective_t_end() * total_steps))
        self.prune_step = max(1, int(config.prune_at * total_steps))
        first_due = self.prune_step if self.method.name == "magnitude" else self.t_iter
        self.timing = rewire_timing(total_steps, first_due, self.t_end, steps_per_epoch)
        self.schedule = RewireSchedule(self.method.schedule or "constant", config.alpha, self.t_end)
        self.grad_ema: Dict[str, torch.Tensor] = {}
        if config.grow_rule == "momentum" and self.method.rewire is not None:
            self.grad_ema = {n: torch.zeros_like(p) for n, p in self.params.items()}
        # grad_seen[name]: positions whose dense gradient was not 0 at some step since the last rewiring
        # (regrowth prefers them: a connection from a silent neuron or an unused input cannot learn).
        # Kept as 0./1. floats (_seen) and updated with float ops: bool ops are several times slower on CPUs.
        self._seen: Dict[str, torch.Tensor] = {}
        self._scratch: Dict[str, torch.Tensor] = {}
        if self.method.rewire is not None and self.method.name != "magnitude":
            self._seen = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self._mask_f: Dict[str, Tuple[torch.Tensor, int, torch.Tensor]] = {}  # name -> (mask, version, float copy)
        self.rewired_total = 0
        # What the structure did (for ``esl inspect``; never read by the training itself): the masks the
        # run started from, one record per rewiring (see :func:`rewire_record`), and the connections the
        # last rewiring grew (to count how many of them the next rewiring keeps).
        self.initial_masks = {n: m.cpu().clone() for n, m in self.masks.items()}
        self.rewire_log: List[dict] = []
        self.last_grown: Dict[str, torch.Tensor] = {}
        self.steps_per_epoch = steps_per_epoch
        self.dense_grad: Dict[str, torch.Tensor] = {}  # dL/dW before masking, of the last backward pass
        if mask_in_hook:
            for name, p in self.params.items():
                p.register_hook(self._grad_hook(name))
        if hasattr(optimizer, "use_masks"):  # train.sparse_adam.MaskedAdam: update the masked entries only
            names = {id(p): n for n, p in self.params.items()}
            optimizer.use_masks(lambda p: self.masks[names[id(p)]] if id(p) in names else None)
        self.apply()

    @property
    def grad_seen(self) -> Dict[str, torch.Tensor]:
        """name -> bool tensor: the positions whose dense gradient was not 0 at some step since the last
        rewiring."""
        return {n: v != 0 for n, v in self._seen.items()}

    def float_mask(self, name: str) -> torch.Tensor:
        """The mask of ``name`` as 0./1. in the weight's dtype (cached until the mask changes): ``g * M``
        with it gives the bits ``g * bool_mask`` gives (the bool is promoted to the same 0./1.), faster."""
        mask, p = self.masks[name], self.params[name]
        hit = self._mask_f.get(name)
        if hit is None or hit[0] is not mask or hit[1] != mask._version:
            hit = self._mask_f[name] = (mask, mask._version, mask.to(p.dtype))
        return hit[2]

    def _grad_hook(self, name: str):
        def hook(grad: torch.Tensor) -> torch.Tensor:
            self.dense_grad[name] = grad
            return grad * self.float_mask(name)
        return hook

    @torch.no_grad()
    def mask_gradients(self) -> None:
        """With ``mask_in_hook=False``, after the backward pass: keep W.grad as the dense gradient, and
        W.grad <- W.grad * M (the hook's arithmetic, done once the gradient is complete)."""
        for name, p in self.params.items():
            if p.grad is not None:
                self.dense_grad[name] = p.grad
                p.grad = p.grad * self.float_mask(name)

    def _initial_mask(self, name: str, shape) -> torch.Tensor:
        density = self.target_density[name]
        if name not in self.allowed:
            return random_mask(shape, density, self.generator)
        allowed = self.allowed[name].cpu()
        if self.config.core_aware is None:  # only infeasible positions removed: the budget may exceed them
            density = min(density, int(allowed.sum()) / allowed.numel())
        return random_mask_within(allowed, density, self.generator)

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
    def step(self, epoch_start: Optional[bool] = None) -> int:
        """Call right after ``optimizer.step()``. With ``epoch_start`` given (True on an epoch's first
        step), a rewiring that falls due waits for the next epoch's first step (see the module
        docstring), unless the run is too short for that (``timing == "step"``: it happens at once);
        without it, it happens at once. Returns the number of connections rewired."""
        self.t += 1
        if self.grad_ema:
            mu = self.config.momentum
            for name in self.params:
                g = self.dense_grad.get(name)
                if g is not None:
                    self.grad_ema[name].mul_(mu).add_(g, alpha=1.0 - mu)
        for name, seen in self._seen.items():
            g = self.dense_grad.get(name)
            if g is not None:  # seen <- max(seen, [g != 0])
                nz = self._scratch.get(name)
                if nz is None or nz.shape != g.shape or nz.dtype != seen.dtype:
                    nz = self._scratch[name] = torch.empty_like(seen)
                torch.maximum(seen, torch.ne(g, 0, out=nz), out=seen)
        rewired = 0
        if self.method.rewire is not None:
            if self._due(self.t):
                self.pending = self.t
            if self.pending and (epoch_start is not False or self.timing == "step"):
                before = {n: m.clone() for n, m in self.masks.items()}
                rewired = self.method.rewire(self, self.pending)
                self._record_rewiring(before)
                self.pending = 0
                for seen in self._seen.values():
                    seen.zero_()
                self.rewired_total += rewired
                self.apply()
                if self.on_rewire is not None:
                    self.on_rewire(self)
        return rewired

    def _record_rewiring(self, before: Dict[str, torch.Tensor]) -> None:
        record = {"step": self.t, "due_step": self.pending, "layers": {}}
        if self.steps_per_epoch:
            record["epoch"] = (self.t - 1) / self.steps_per_epoch
        for name, after in self.masks.items():
            layer, grown = rewire_record(before[name], after, self.last_grown.get(name))
            record["layers"][name] = layer
            self.last_grown[name] = grown.cpu()
        self.rewire_log.append(record)

    @property
    def structure_final(self) -> bool:
        """True once the method will not change the density again (always, for constant-density methods)."""
        if self.pending and self.method.name in ("magnitude", "pq"):
            return False
        if self.method.name == "magnitude":
            return self.t >= self.prune_step
        if self.method.name == "pq":
            return self.t >= self.t_end
        return True

    def learnable(self, name: str) -> Optional[torch.Tensor]:
        """(1, numel) bool view of the positions of ``name`` that had a gradient since the last rewiring."""
        seen = self._seen.get(name)
        return None if seen is None else (seen != 0).reshape(1, -1)

    def init_grown(self, name: str, grown: torch.Tensor, values: Optional[torch.Tensor] = None) -> None:
        """Start the connections ``grown`` (bool, weight-shaped) of layer ``name`` afresh: weight = ``values``
        there (0 if None) and every optimizer-state tensor shaped like the weight 0 there."""
        p = self.params[name]
        p.data[grown] = 0.0 if values is None else values.to(p.dtype)
        for value in self.optimizer.state.get(p, {}).values():
            if torch.is_tensor(value) and value.shape == p.shape:
                value[grown] = 0

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
            g = self.dense_grad.get(name)
            if g is None:
                raise RuntimeError("gradient regrowth needs the gradient of the last step: call step() after backward()")
            return g.abs()
        return self.grad_ema[name].abs()

    # -- measurements -----------------------------------------------------------------------------
    def nnz(self) -> Dict[str, int]:
        return {n: int(m.sum()) for n, m in self.masks.items()}

    def layer_density(self) -> Dict[str, float]:
        return {n: int(m.sum()) / m.numel() for n, m in self.masks.items()}

    def density(self) -> float:
        """Global mask density: mask entries / all weights, over the sparse layers (1.0 for dense)."""
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / total if total else 1.0

    def weight_density(self) -> tuple:
        """(global, per-layer) density of weights that are not 0 (<= the mask density)."""
        return nonzero_density({n: p.detach() for n, p in self.params.items()})

    # -- persistence ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "masks": {n: m.cpu().clone() for n, m in self.masks.items()},
            "t": self.t,
            "pending": self.pending,
            "generator": self.generator.get_state(),
            "grad_ema": {n: v.cpu().clone() for n, v in self.grad_ema.items()},
            "grad_seen": {n: v.cpu() for n, v in self.grad_seen.items()},
            "schedule": self.schedule.state_dict(),
            "rewired_total": self.rewired_total,
            "initial_masks": {n: m.clone() for n, m in self.initial_masks.items()},
            "rewire_log": list(self.rewire_log),
            "last_grown": {n: m.clone() for n, m in self.last_grown.items()},
            "allowed": ({n: m.cpu().clone() for n, m in self.allowed.items()}
                        if self.config.core_aware is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        if set(state["masks"]) != set(self.masks):
            raise ValueError(f"mask names differ: {sorted(state['masks'])} vs {sorted(self.masks)}")
        for name, m in state["masks"].items():
            if m.shape != self.masks[name].shape:
                raise ValueError(f"mask {name} has shape {tuple(m.shape)}, expected {tuple(self.masks[name].shape)}")
            self.masks[name] = m.to(device=self.masks[name].device, dtype=torch.bool)
        self.t = int(state["t"])
        self.pending = int(state.get("pending", 0))
        self.generator.set_state(state["generator"])
        for name, v in state["grad_ema"].items():
            self.grad_ema[name] = v.to(self.params[name].device)
        for name, v in state.get("grad_seen", {}).items():
            self._seen[name] = v.to(device=self.params[name].device, dtype=self.params[name].dtype)
        self.schedule.load_state_dict(state["schedule"])
        self.rewired_total = int(state["rewired_total"])
        if "initial_masks" in state:  # checkpoints written before structure records lack these
            self.initial_masks = {n: m.clone() for n, m in state["initial_masks"].items()}
            self.rewire_log = list(state["rewire_log"])
            self.last_grown = {n: m.clone() for n, m in state["last_grown"].items()}
        self.apply()


def rewire_record(before: torch.Tensor, after: torch.Tensor,
                  last_grown: Optional[torch.Tensor]) -> tuple:
    """One layer's part of a rewiring record, and the connections this rewiring grew.

    pruned = |before & ~after|, grown = |after & ~before|, nnz = |after|; of the connections the previous
    rewiring grew (``last_grown``), ``prev_grown_survived`` = |last_grown & after| are still there after
    this one (survival share = prev_grown_survived / prev_grown; None at the first rewiring).
    """
    grown = after & ~before
    rec = {"pruned": int((before & ~after).sum()), "grown": int(grown.sum()), "nnz": int(after.sum()),
           "prev_grown": None, "prev_grown_survived": None}
    if last_grown is not None:
        last = last_grown.to(after.device)
        rec["prev_grown"] = int(last.sum())
        rec["prev_grown_survived"] = int((last & after).sum())
    return rec, grown


# -- rewiring rules (one function per method, all pure over the engine's masks) ---------------------

def _rewire_fraction(engine: MaskEngine, t: int) -> int:
    """SET / RigL / ESL: in each layer prune k = floor(f(t) nnz) by magnitude, regrow k (nnz constant).
    Mid-epoch rewiring of a short run (``timing == "step"``) moves at most as many connections as there
    are inactive positions whose gradient was not 0 since the last rewiring, so every regrown weight
    can learn (a network still silent keeps its masks)."""
    f = engine.schedule(t)
    moved = 0
    for name, p in engine.params.items():
        mask = engine.masks[name]
        k = int(math.floor(f * int(mask.sum())))
        if k and engine.timing == "step" and name in engine._seen:
            can_learn = (engine._seen[name] != 0) & ~mask
            if name in engine.allowed:
                can_learn &= engine.allowed[name]
            k = min(k, int(can_learn.sum()))
        if k == 0:
            continue
        kk = torch.tensor([k])
        row_mask = mask.reshape(1, -1)
        pruned = prune_magnitude(p.reshape(1, -1), row_mask, kk)
        allowed = engine.allowed[name].reshape(1, -1) if name in engine.allowed else None
        grown = grow_by_score(pruned, engine.grow_scores(name).reshape(1, -1), kk,
                              just_pruned=row_mask & ~pruned, allowed=allowed, prefer=engine.learnable(name))
        engine.masks[name] = grown.reshape(mask.shape)
        engine.init_grown(name, (grown & ~pruned).reshape(mask.shape))
        moved += k
    return moved


def _rewire_set(engine: MaskEngine, t: int) -> int:
    """SET (reference ``weightsEvolution``): per layer drop the fraction zeta of the smallest positive and
    of the negative weights closest to 0 (and active zeros), regrow as many at random inactive positions
    (just-pruned ones included, as the reference draws them) with weights ~ N(0, regrow_std^2)."""
    zeta = engine.schedule(t)
    moved = 0
    for name, p in engine.params.items():
        mask = engine.masks[name]
        w = p.detach().reshape(1, -1)
        row = mask.reshape(1, -1)
        pos, neg = row & (w > 0), row & (w < 0)
        keep = row.clone()
        keep &= (w != 0)
        k_pos = torch.tensor([int(math.floor(zeta * int(pos.sum())))])
        k_neg = torch.tensor([int(math.floor(zeta * int(neg.sum())))])
        keep &= ~(pos & ~prune_magnitude(w, pos, k_pos))   # smallest positive values
        keep &= ~(neg & ~prune_magnitude(w, neg, k_neg))   # negative values closest to zero
        k = int(row.sum()) - int(keep.sum())
        if k == 0:
            continue
        allowed = engine.allowed[name].reshape(1, -1) if name in engine.allowed else None
        grown = grow_by_score(keep, random_scores(w.shape, engine.generator).to(w.device), torch.tensor([k]),
                              allowed=allowed, prefer=engine.learnable(name))
        new = (grown & ~keep).reshape(mask.shape)
        engine.masks[name] = grown.reshape(mask.shape)
        values = torch.randn(int(new.sum()), generator=engine.generator) * engine.config.regrow_std
        engine.init_grown(name, new, values)
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
        flat, fresh = new.reshape(-1), (new & ~pruned).reshape(-1)
        offset = 0
        for n in unit_names:
            numel = engine.masks[n].numel()
            engine.masks[n] = flat[offset:offset + numel].reshape(engine.masks[n].shape).clone()
            engine.init_grown(n, fresh[offset:offset + numel].reshape(engine.masks[n].shape))
            offset += numel
    return moved


def _prune_once(engine: MaskEngine, t: int) -> int:
    """One-shot magnitude pruning of the (dense-trained) weights to the per-layer target densities."""
    moved = 0
    for name, p in engine.params.items():
        mask = engine.masks[name]
        if name in engine.allowed:  # connections that could never learn go first
            moved += int((mask & ~engine.allowed[name]).sum())
            mask = engine.masks[name] = mask & engine.allowed[name]
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
    Method("set", "SET: signed magnitude prune, random regrow of N(0, 0.1^2) weights, every epoch", True, True,
           _rewire_set, "constant", "random"),
    Method("rigl", "RigL: magnitude prune, gradient regrow, cosine fraction", True, True, _rewire_fraction,
           "cosine", "gradient"),
    Method("esl", "ESL-SNNs: ER init, magnitude prune, regrow, cosine fraction", True, True, _rewire_fraction,
           "cosine", "random"),
    Method("pq", "PQ-index adaptive prune ratio, momentum regrow", True, True, _rewire_pq, None, "momentum"),
    Method("magnitude", "one-shot magnitude pruning of the dense net, then fine-tuning", True, False,
           _prune_once, None, "random"),
)}
