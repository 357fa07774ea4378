"""TrueNorth's synapse rule applied to trained weights (``esl energy --truenorth-weights``).

TrueNorth (Merolla et al. 2014, Table S2 and SM; ../shared/research/interfaces.md section 5): every
axon i of a core has one of **4 types** G_i in {0, 1, 2, 3}; every neuron j has one signed integer
weight S_j^G per type, **9-bit signed** (we use [-255, 255], inside the published [-256, 255]); the
binary crossbar bit w_ij says whether the synapse exists, and the neuron integrates ``w_ij * S_j^{G_i}``.
So a neuron sees at most 4 distinct weights, and all neurons of a core share the axons' types.

Two ways of mapping a real weight matrix W (neurons x sources), both valid for any placement:

- ``duplicate`` (axon duplication by weight class): every neuron's nonzero weights are clustered into
  4 levels (1-D k-means, Lloyd's algorithm from the quartiles); level t of neuron n is its type-t
  weight ``S_n^t = round(level_t / s_n)`` with ``s_n = max_t |level_t| / 255``; each synapse uses the
  type of its nearest level. A source whose synapses on a core use several types needs one axon per
  type there (axon i of type t carries source j): the network's mask becomes one over (source, type)
  pairs, which is packed again to count the extra axons and cores.
- ``cluster`` (no duplication): the sources of each layer are clustered into 4 types once for the
  whole layer (k-means over the sources' weight columns, so the types hold on every core), and every
  neuron's weight per type is the least-squares one, the mean of its weights from that type, rounded
  as above. No extra axons; a larger weight error.

Fine-tuning under the rule (``finetune_epochs``, ``esl energy --tn-finetune E``): the 4 levels of each
(neuron, part) are shared weights (Han et al. 2016's trained quantisation): W[n, i] = L[g(n, i)] with
g the (neuron, part, type) group of the synapse, so dL/dL_g = sum of dL/dW over the group; the levels
train with Adam (lr 1e-3) on the training split under the trainer's ``ce`` loss, in eval mode (the
types, the mask and everything else stay fixed), then go back onto each neuron's 9-bit grid
(S = round(L / s_n), s_n = max |L| / 255 over the neuron's levels). The result still follows the rule
exactly (:func:`follows_rule`).

The weight error is reported as ``||W_tn - W|| / ||W||`` over the nonzero weights; the fidelity check
runs the network with the TrueNorth weights (the float equivalent ``S * s_n``: an integer threshold
``theta / s_n`` per neuron is what the chip would hold) in snnTorch, like the Lava fixed-point check.
Not modelled: TrueNorth's linear leak (our LIF decays multiplicatively) and its binary input (the first
layer takes analog pixels here); both are the same in the float and the TrueNorth-weight run.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

MODES = ("duplicate", "cluster")
TYPES = 4           # axon types per core: Merolla et al. 2014
WEIGHT_MAX = 255    # |S| <= 255: 9-bit signed weights, Merolla et al. 2014 SM (interfaces.md section 5)


def four_levels(values: np.ndarray) -> np.ndarray:
    """The (up to) 4 sorted levels minimising the squared error of ``values`` to their nearest level.

    Optimal 1-D k-means by dynamic programming over the sorted values (a cluster is a run of them):
    ``D_k[j] = min_i D_{k-1}[i] + cost(i, j)``, cost = the sum of squares of x_i..x_{j-1} about their mean.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    uniq = np.unique(x)
    if uniq.size <= TYPES:
        return uniq
    n = x.size
    s1 = np.concatenate([[0.0], np.cumsum(x)])
    s2 = np.concatenate([[0.0], np.cumsum(x * x)])
    i, j = np.arange(n + 1)[:, None], np.arange(n + 1)[None, :]
    cnt = np.where(j > i, j - i, 1)
    cost = np.where(j > i, (s2[j] - s2[i]) - (s1[j] - s1[i]) ** 2 / cnt, np.inf)
    D = cost[0].copy()
    back = []
    for _ in range(TYPES - 1):
        tot = D[:, None] + cost
        arg = np.argmin(tot, axis=0)
        D = tot[arg, np.arange(n + 1)]
        back.append(arg)
    cuts, end = [n], n
    for arg in reversed(back):
        end = int(arg[end])
        cuts.append(end)
    cuts = [0] + sorted(cuts[1:]) + [n] if cuts[-1] != 0 else sorted(cuts)
    bounds = sorted(set(cuts))
    return np.array([x[a:b].mean() for a, b in zip(bounds[:-1], bounds[1:]) if b > a])


def _integer(levels: np.ndarray) -> Tuple[np.ndarray, float]:
    """Integer weights in [-255, 255] and the scale s with levels ~ S * s."""
    top = float(np.abs(levels).max()) if levels.size else 0.0
    if top == 0.0:
        return np.zeros_like(levels), 1.0
    s = top / WEIGHT_MAX
    return np.clip(np.round(levels / s), -WEIGHT_MAX, WEIGHT_MAX), s


def duplicate_rows(w: np.ndarray, parts: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``duplicate`` mode on a (neurons, sources) matrix: (TrueNorth weights, type of every synapse; -1 = none).

    ``parts`` (optional, one entry per nonzero of ``w`` in row-major order): the TrueNorth neuron (a
    partial sum of the placement) that holds each synapse; each part gets its own 4 levels, all parts of
    a neuron share its integer scale (so its adder weights its parts alike).
    """
    out = np.zeros_like(w, dtype=np.float64)
    types = np.full(w.shape, -1, dtype=np.int64)
    start = 0
    for n in range(w.shape[0]):
        nz = np.flatnonzero(w[n])
        if nz.size == 0:
            continue
        part = parts[start:start + nz.size] if parts is not None else np.zeros(nz.size, dtype=np.int64)
        start += nz.size
        groups = [np.flatnonzero(part == p) for p in np.unique(part)]
        levels = [four_levels(w[n, nz[g]]) for g in groups]
        s = max(float(np.abs(lv).max()) for lv in levels) / WEIGHT_MAX or 1.0
        for g, lv in zip(groups, levels):
            S = np.clip(np.round(lv / s), -WEIGHT_MAX, WEIGHT_MAX)
            t = np.argmin(np.abs(w[n, nz[g]][:, None] - lv[None, :]), axis=1)
            out[n, nz[g]] = S[t] * s
            types[n, nz[g]] = t
    return out, types


def cluster_columns(w: np.ndarray, iters: int = 20, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``cluster`` mode: 4 source types for the whole layer, least-squares weight per (neuron, type)."""
    mask = w != 0
    n_src = w.shape[1]
    used = np.flatnonzero(mask.any(0))
    out = np.zeros_like(w, dtype=np.float64)
    types = np.full(w.shape, -1, dtype=np.int64)
    if used.size == 0:
        return out, types
    # start: sources ranked by their mean nonzero weight, cut into 4 quartiles
    mean = np.array([w[mask[:, j], j].mean() for j in used])
    g = np.zeros(n_src, dtype=np.int64)
    g[used] = np.minimum(TYPES - 1, (np.argsort(np.argsort(mean)) * TYPES) // used.size)
    mf = mask.astype(np.float64)
    for _ in range(iters):
        onehot = np.zeros((n_src, TYPES))
        onehot[used, g[used]] = 1.0
        cnt = mf @ onehot
        S = np.divide(w @ onehot, cnt, out=np.zeros_like(cnt), where=cnt > 0)   # (neurons, types)
        # cost of giving source j type t: sum over its synapses of (w - S[:, t])^2
        cost = np.stack([((w - S[:, [t]]) ** 2 * mf).sum(0) for t in range(TYPES)], axis=1)
        new = g.copy()
        new[used] = np.argmin(cost[used], axis=1)
        if np.array_equal(new, g):
            break
        g = new
    onehot = np.zeros((n_src, TYPES))
    onehot[used, g[used]] = 1.0
    cnt = mf @ onehot
    S = np.divide(w @ onehot, cnt, out=np.zeros_like(cnt), where=cnt > 0)
    for n in range(w.shape[0]):
        Si, s = _integer(S[n])
        out[n] = np.where(mask[n], Si[g] * s, 0.0)
    types[mask] = np.broadcast_to(g, w.shape)[mask]
    return out, types


@dataclass(frozen=True)
class TnWeightLayer:
    """One layer under TrueNorth's weight rule: its weight error and the axons duplication adds."""

    name: str
    mode: str
    weights: int
    rel_error: float
    sources: int               # sources with a synapse
    duplicated_sources: int    # (source, type) pairs with a synapse (= sources in cluster mode)

    def to_dict(self) -> dict:
        return asdict(self)


def apply_truenorth_weights(model: nn.Module, mode: str = "duplicate",
                            parts: Optional[dict] = None) -> Tuple[nn.Module, List[TnWeightLayer], dict]:
    """A copy of ``model`` whose Linear / Conv2d weights follow TrueNorth's rule, per-layer stats, and the
    type of every synapse (name -> (out, in) int array, -1 = no synapse; a conv kernel as (out, in*k*k)).
    ``parts``: name -> part of every synapse (:func:`hw_models.packing.pack_network`'s ``parts_out``) for
    the Linear layers the placement splits into partial sums (``duplicate`` mode)."""
    if mode not in MODES:
        raise ValueError(f"unknown TrueNorth weight mode {mode!r}; choose one of: {', '.join(MODES)}")
    tn = copy.deepcopy(model)
    stats, types = [], {}
    for name, mod in tn.named_modules():
        if not isinstance(mod, (nn.Linear, nn.Conv2d)):
            continue
        w = mod.weight.detach().cpu().double().numpy()
        flat = w.reshape(w.shape[0], -1)
        part = (parts or {}).get(name) if isinstance(mod, nn.Linear) else None
        if part is not None and part.size != int((flat != 0).sum()):
            part = None
        new, t = duplicate_rows(flat, part) if mode == "duplicate" else cluster_columns(flat)
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(new.reshape(w.shape)).to(mod.weight))
        nz = flat != 0
        err = float(np.linalg.norm((new - flat)[nz]) / max(np.linalg.norm(flat[nz]), 1e-30))
        srcs = int(nz.any(0).sum())
        src, row = np.nonzero(nz.T)
        dup = int(np.unique(src * TYPES + t[row, src]).size)  # (source, type) pairs with a synapse
        stats.append(TnWeightLayer(name, mode, int(nz.sum()), err, srcs, dup))
        types[name] = t
    return tn, stats, types


def _groups(weight: torch.Tensor, types: np.ndarray, part: Optional[np.ndarray]) -> Tuple[torch.Tensor, ...]:
    """(flat positions of the synapses, their group ids, each group's neuron) of one layer: a group is a
    (neuron, part, type) triple, the synapses that share one TrueNorth weight."""
    t = types.reshape(types.shape[0], -1)
    flat = t.reshape(-1)
    pos = np.flatnonzero(flat >= 0)
    rows = pos // t.shape[1]
    if part is None or part.size != pos.size:
        part = np.zeros(pos.size, dtype=np.int64)
    key = np.stack([rows, part, flat[pos]], axis=1)
    uniq, gid = np.unique(key, axis=0, return_inverse=True)
    return (torch.from_numpy(pos), torch.from_numpy(gid.reshape(-1)), torch.from_numpy(uniq[:, 0].copy()))


def _requantise(levels: torch.Tensor, neuron: torch.Tensor, n_neurons: int) -> torch.Tensor:
    """Levels back onto each neuron's integer grid: S = round(L / s_n), |S| <= 255, s_n = max |L| / 255."""
    top = torch.zeros(n_neurons, dtype=levels.dtype).index_reduce_(0, neuron, levels.abs(), "amax",
                                                                   include_self=False)
    scale = top / WEIGHT_MAX
    scale[scale == 0] = 1.0
    s = scale[neuron]
    return torch.clamp(torch.round(levels / s), -WEIGHT_MAX, WEIGHT_MAX) * s


def follows_rule(weight: torch.Tensor, types: np.ndarray, part: Optional[np.ndarray] = None,
                 rtol: float = 1e-5) -> bool:
    """Whether ``weight`` is exactly TrueNorth's rule for ``types``: zero off the synapses, one value per
    (neuron, part, type) group, and every neuron's values integers |S| <= 255 times one scale."""
    w = weight.detach().reshape(weight.shape[0], -1).double()
    pos, gid, neuron = _groups(weight, types, part)
    flat = w.reshape(-1)
    off = torch.ones(flat.numel(), dtype=torch.bool)
    off[pos] = False
    if flat[off].any():
        return False
    vals = flat[pos]
    high = torch.zeros(len(neuron), dtype=vals.dtype).index_reduce_(0, gid, vals, "amax", include_self=False)
    low = torch.zeros(len(neuron), dtype=vals.dtype).index_reduce_(0, gid, vals, "amin", include_self=False)
    if not torch.allclose(high, low, rtol=rtol, atol=0):
        return False
    top = torch.zeros(w.shape[0], dtype=vals.dtype).index_reduce_(0, neuron, high.abs(), "amax", include_self=False)
    s = (top / WEIGHT_MAX)[neuron]
    ok = s > 0
    S = high[ok] / s[ok]
    return bool(torch.allclose(S, torch.round(S), rtol=0, atol=1e-3) and (S.abs() <= WEIGHT_MAX + 1e-3).all())


def finetune_levels(tn: nn.Module, types: dict, parts: Optional[dict], train, *, T: int, encoding: str,
                    temporal: bool = False, epochs: float = 1.0, lr: float = 1e-3, batch_size: int = 100,
                    seed: int = 0, progress: bool = False) -> nn.Module:
    """Train the shared TrueNorth weights of ``tn`` (from :func:`apply_truenorth_weights`, changed in
    place and returned) for ``epochs`` passes over ``train`` (a Dataset of (x, y)); see the module doc.
    Everything but the levels (biases, beta, threshold, types, masks) stays as it is."""
    from esl_deploy.datasets import to_time_major

    spec = getattr(tn, "spec", None)
    membrane = getattr(spec, "readout", "spikes") == "membrane"
    groups = []
    for name, mod in tn.named_modules():
        if name not in types or not isinstance(mod, (nn.Linear, nn.Conv2d)):
            continue
        part = (parts or {}).get(name) if isinstance(mod, nn.Linear) else None
        pos, gid, neuron = _groups(mod.weight, types[name], part)
        if pos.numel() == 0:
            continue
        flat = mod.weight.detach().reshape(-1)
        levels = torch.zeros(len(neuron), dtype=flat.dtype).index_reduce_(0, gid, flat[pos], "mean",
                                                                         include_self=False)
        groups.append((mod, pos, gid, neuron, levels.requires_grad_()))
    if not groups:
        return tn

    def write():
        with torch.no_grad():
            for mod, pos, gid, _, levels in groups:
                w = torch.zeros(mod.weight.numel(), dtype=mod.weight.dtype)
                w[pos] = levels[gid].to(w.dtype)
                mod.weight.copy_(w.view_as(mod.weight))

    opt = torch.optim.Adam([g[4] for g in groups], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, generator=gen)
    steps = max(1, int(round(epochs * len(loader))))
    was = tn.training
    tn.eval()  # batch norm and the like keep their statistics: only the levels change
    for p in tn.parameters():
        p.requires_grad_(False)
    for mod, *_ in groups:
        mod.weight.requires_grad_(True)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, unit="batch", desc="fine-tuning TrueNorth weights", leave=False)
    done = 0
    try:
        while done < steps:
            for x, y in loader:
                write()
                for mod, *_ in groups:
                    mod.weight.grad = None
                out = tn(to_time_major(x, T, encoding, temporal, gen))
                logits = out.mean(0) if membrane else out.sum(0)  # the trainer's ``ce`` for the model's readout
                nn.functional.cross_entropy(logits, y.reshape(-1)).backward()
                for mod, pos, gid, _, levels in groups:  # dL/dL_g = sum of dL/dW over the group
                    g = mod.weight.grad.reshape(-1)[pos].to(levels.dtype)
                    levels.grad = torch.zeros_like(levels).index_add_(0, gid, g)
                opt.step()
                done += 1
                if bar is not None:
                    bar.update(1)
                if done >= steps:
                    break
    finally:
        if bar is not None:
            bar.close()
    with torch.no_grad():
        for mod, pos, gid, neuron, levels in groups:
            levels.copy_(_requantise(levels.detach(), neuron, mod.weight.shape[0]))
    write()
    for p in tn.parameters():
        p.requires_grad_(False)
    tn.train(was)
    return tn


def duplicated_mask(mask: sp.csr_matrix, types: np.ndarray) -> sp.csr_matrix:
    """The (neurons, sources * 4) mask of a layer whose source j reaches neuron n by an axon of type t:
    column ``4 j + t`` (one axon per (source, type) pair that a core needs)."""
    m = sp.csr_matrix(mask, dtype=bool)
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    t = types[rows, m.indices]
    if (t < 0).any():
        raise ValueError("every synapse needs a type")
    return sp.csr_matrix((np.ones(m.nnz, dtype=bool), (rows, m.indices * TYPES + t)),
                         shape=(m.shape[0], m.shape[1] * TYPES))


@dataclass(frozen=True)
class TnWeightsReport:
    """The fidelity check: accuracy with float and TrueNorth weights, weight errors, duplication cost."""

    mode: str
    accuracy_float: Optional[float]
    accuracy_truenorth: Optional[float]
    layers: Tuple[TnWeightLayer, ...]
    packed_cores: int
    packed_cores_duplicated: int
    extra_axons: int
    finetune_epochs: float = 0.0
    accuracy_truenorth_finetuned: Optional[float] = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [l.to_dict() for l in self.layers]
        return d

    def format(self) -> str:
        acc = ("-" if self.accuracy_float is None else
               f"float {100 * self.accuracy_float:.2f}%, TrueNorth weights {100 * self.accuracy_truenorth:.2f}% "
               f"({100 * (self.accuracy_truenorth - self.accuracy_float):+.2f} points)")
        if self.accuracy_truenorth_finetuned is not None and self.accuracy_float is not None:
            acc += (f"; after {self.finetune_epochs:g} epoch(s) of fine-tuning the levels "
                    f"{100 * self.accuracy_truenorth_finetuned:.2f}% "
                    f"({100 * (self.accuracy_truenorth_finetuned - self.accuracy_float):+.2f} points)")
        errs = ", ".join(f"{l.name} {100 * l.rel_error:.1f}%" for l in self.layers)
        return (f"TrueNorth weights ({self.mode}: 4 axon types per core, per-neuron 9-bit signed weight per type): "
                f"accuracy {acc}; weight error ||W_tn - W|| / ||W|| {errs}; axon duplication +{self.extra_axons} "
                f"(source, type) axons, packed cores {self.packed_cores} -> {self.packed_cores_duplicated}")


def truenorth_weights_report(model: nn.Module, layers, data, *, mode: str = "duplicate", T: int, encoding: str,
                             temporal: bool = False, accuracy_float: Optional[float] = None, packed_cores: int,
                             core=None, batch_size: int = 256, limit: Optional[int] = None, seed: int = 0,
                             progress: bool = False, finetune_epochs: float = 0.0, train=None) -> TnWeightsReport:
    """Apply TrueNorth's weight rule (``mode``), run the network with it on ``data`` and pack the
    duplicated masks (``layers``: the network's :class:`hw_models.unroll.SynapticLayer` records; a
    convolution keeps its mask: its kernel's types are per output channel, duplication is not counted).
    ``finetune_epochs`` > 0 (``duplicate`` mode, with ``train``: the training split): also fine-tune the
    levels (:func:`finetune_levels`) and run the network again."""
    from .cores import CoreSpec
    from .packing import PackLayer, pack_layers_of, pack_network
    from .sops import count_activity

    core = core or CoreSpec()
    parts: dict = {}
    pack_network(layers, core, parts_out=parts)
    tn, stats, types = apply_truenorth_weights(model, mode, parts)
    acc = count_activity(tn, data, T=T, encoding=encoding, temporal=temporal, batch_size=batch_size, limit=limit,
                         seed=seed, progress=progress).accuracy
    extra = sum(l.duplicated_sources - l.sources for l in stats)
    packed_dup = packed_cores
    if mode == "duplicate" and extra:
        dup = []
        for l in pack_layers_of(layers):
            t = types.get(l.name)
            if t is not None and t.shape == l.mask.shape:
                dup.append(PackLayer(l.name, duplicated_mask(l.mask, t), l.source_on_chip, after_previous=False))
            else:
                dup.append(l)
        packed_dup = pack_network(dup, core).cores
    acc_ft = None
    if finetune_epochs > 0:
        if mode != "duplicate" or train is None:
            raise ValueError("fine-tuning the TrueNorth weights needs mode 'duplicate' and the training split")
        finetune_levels(tn, types, parts, train, T=T, encoding=encoding, temporal=temporal, epochs=finetune_epochs,
                        seed=seed, progress=progress)
        acc_ft = count_activity(tn, data, T=T, encoding=encoding, temporal=temporal, batch_size=batch_size,
                                limit=limit, seed=seed, progress=progress).accuracy
    return TnWeightsReport(mode=mode, accuracy_float=accuracy_float, accuracy_truenorth=acc, layers=tuple(stats),
                           packed_cores=packed_cores, packed_cores_duplicated=packed_dup, extra_axons=int(extra),
                           finetune_epochs=float(finetune_epochs), accuracy_truenorth_finetuned=acc_ft)
