"""TrueNorth-style core model and a mapper that places sparse layers onto cores.

Core model (Merolla et al., Science 345:668, 2014, incl. SM; Akopyan et al., IEEE TCAD 34:1537, 2015):
a core has A = 256 axons (inputs), N = 256 neurons and a binary A x N crossbar; a chip has 4096 cores.
**Each neuron targets exactly one axon** on one core; an axon drives up to N neurons of its own core.

A synaptic layer is a boolean matrix ``M (neurons, axons)``: row i is a neuron of the layer, column j a
spike source (an input pixel or a neuron of the previous layer), ``M[i, j]`` a nonzero synapse. Conv
layers are unrolled by :mod:`hw_models.unroll` (one neuron per output channel x position, one axon per
input channel x pixel). Notation: ``f_i`` = fan-in of neuron i (row nnz), ``F_j`` = fan-out of source j
(column nnz).

Rules the mapper follows (and the lower bound assumes); a core holds neurons of one layer only:

1. **Items.** A placement splits each neuron's inputs into *items*; every item sits on one core whose
   axon set holds all of the item's inputs. A core holds at most N items and the union of its items'
   inputs is at most A axons.
2. **Partial sums.** A neuron split into c >= 2 items is computed as c partial-sum neurons (one per
   item) feeding an adder neuron (the layer's neuron) with c axons. An adder with c > A inputs is itself
   split: ceil(c / A) sub-adders feed a top adder, and so on. Each adder level costs one tick of latency.
   ``partial_sum_neurons`` counts the partial and sub-adder neurons (the top adder is the layer neuron).
   An adder uses c axons and 1 neuron.
   (Only the resources are modelled, not how faithfully spiking partial sums carry the sum.)
3. **Splitters.** Source j must reach every core that holds one of its synapses; say k_j cores. A
   neuron targets one axon, so when k_j >= 2 (and the source is on chip) the source targets one axon of
   a splitter core that drives k_j splitter neurons, one per destination core: k_j extra neurons and one
   tick. Since one axon drives at most N neurons, k_j > N needs a splitter tree: ceil(k_j / N) first-level
   splitters each feed an axon driving up to N neurons (levels = ceil(log_N k_j)). A splitter item uses
   1 axon and up to N neurons. Inputs from off chip (the first layer) are sent by the host to every axon
   that needs them, so they need no splitters (``source_on_chip=False``).
4. **Orphans.** Neurons with no synapse still occupy a neuron slot (their bias/leak can make them fire).
5. **Packing.** Adders, then splitters, then orphans first fill the axons and neurons the layer's compute
   cores have left, by first-fit decreasing, and only then open adder / splitter / orphan cores.

Latency of a layer = 1 tick (axon to neuron) + adder levels + splitter levels, in ticks.

Strategies (:func:`map_layer`):

- ``naive``: dense tiling. The matrix is cut into a fixed grid of N x A tiles in index order; each tile
  with at least one synapse is a core; a neuron spread over c nonempty tiles gets c partial sums.
- ``sparse``: sparsity-aware placement. Candidates, the cheapest in total cores wins (naive is one of
  them, so ``sparse`` never needs more cores than ``naive``):
  *segments*: the axons are cut into segments of <= A (fixed 256-blocks, and balanced blocks matching
  :func:`hw_models.core_aware.axon_blocks`); the (neuron, segment) items of a segment are packed N per
  core whatever neuron block they come from, and only neurons whose synapses span several segments get
  partial sums (the zeros of the mask remove items);
  *grouped*: neurons with fan-in <= A are kept whole (no partial sum), larger ones are split by segment;
  items are sorted by their first active axon (so neurons whose inputs overlap, e.g. neighbouring conv
  positions, come together) and packed next-fit while the core's union of active axons stays <= A.

Lower bound (:func:`lower_bound`), for any placement under the rules above::

    p_i = ceil(f_i / A) if f_i > A else 0                 partial-sum neurons neuron i needs at least
    a_j = ceil(F_j / N)                                     axons source j needs at least (one drives <= N)
    s_j = a_j if the source is on chip and a_j >= 2 else 0  splitter neurons source j needs at least
    S = nnz + sum p_i + sum s_j                             crossbar synapses
    U = n_neurons + sum p_i + sum s_j                       neurons
    X = sum a_j + sum p_i + #{j : s_j > 0}                  axons
    LB = max(ceil(S / (A*N)), ceil(U / N), ceil(X / A))

Every placement of the mapper respects the per-core limits and places at least these resources, so
``lower_bound <= cores`` always. A network's bound is the sum of its layers' bounds (one layer per core).
This bound holds only under the per-layer rules above; TrueNorth lets layers share cores and puts
splitters on the source's own axon cores: :mod:`hw_models.packing` packs whole networks under those
rules and gives the lower bound that holds for any such placement (it is never above this one's cores).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp
import torch

from esl_deploy.errors import EslError

from .cores import CoreSpec, axon_blocks, ceil_div

STRATEGIES = ("naive", "sparse")


# ----------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------

def as_csr(mask) -> sp.csr_matrix:
    """A (neurons, axons) mask (torch/numpy array, nonzero = synapse, or scipy sparse) as sorted bool CSR."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    if sp.issparse(mask):
        m = sp.csr_matrix(mask, dtype=bool)
    else:
        a = np.asarray(mask)
        if a.ndim != 2:
            raise ValueError(f"a layer mask is a 2-D (neurons, axons) matrix, got shape {a.shape}")
        m = sp.csr_matrix(a != 0)
    m.eliminate_zeros()
    m.sum_duplicates()
    m.sort_indices()
    if m.shape[0] == 0 or m.shape[1] == 0:
        raise ValueError(f"a layer mask needs at least one neuron and one axon, got shape {m.shape}")
    return m


# ----------------------------------------------------------------------------------------------
# Lower bound
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LowerBound:
    """Resources any placement needs (see the module docstring) and the cores they imply."""

    synapses: int
    neurons: int
    axons: int
    synapse_cores: int
    neuron_cores: int
    axon_cores: int

    def __post_init__(self):
        for k, v in asdict(self).items():
            if v < 0:
                raise ValueError(f"lower bound {k} must be non-negative, got {v}")

    @property
    def cores(self) -> int:
        return max(self.synapse_cores, self.neuron_cores, self.axon_cores)


_ceil_div = ceil_div


def lower_bound(mask, core: CoreSpec = CoreSpec(), *, source_on_chip: bool = True) -> LowerBound:
    """Lower bound on the cores of one layer from its synapse, neuron and axon counts (module docstring)."""
    m = as_csr(mask)
    A, N = core.axons, core.neurons
    f = np.diff(m.indptr).astype(np.int64)
    F = np.bincount(m.indices, minlength=m.shape[1]).astype(np.int64)
    p = np.where(f > A, _ceil_div(f, A), 0)
    a = _ceil_div(F, N)
    s = np.where(a >= 2, a, 0) if source_on_chip else np.zeros_like(a)
    S = int(m.nnz + p.sum() + s.sum())
    U = int(m.shape[0] + p.sum() + s.sum())
    X = int(a.sum() + p.sum() + (s > 0).sum())
    return LowerBound(synapses=S, neurons=U, axons=X, synapse_cores=_ceil_div(S, A * N),
                      neuron_cores=_ceil_div(U, N), axon_cores=_ceil_div(X, A))


# ----------------------------------------------------------------------------------------------
# Packing, adder trees and splitter trees
# ----------------------------------------------------------------------------------------------

def pack_into(sizes: np.ndarray, room: np.ndarray, slots: np.ndarray, capacity: int,
              max_items: int) -> Tuple[np.ndarray, np.ndarray]:
    """First-fit decreasing of items into bins that may be partly used; returns the bins' (room, slots).

    Item i uses ``sizes[i]`` units of a resource with ``capacity`` per bin and one of ``max_items`` slots.
    ``room`` and ``slots`` are what the existing bins have left; new bins are appended when needed.
    Adder neurons use c axons (capacity A) and 1 neuron (slots N); splitter items use k neurons
    (capacity N) and 1 axon (slots A). Identical sizes are placed together: first fit puts them into the
    bins in order, each taking ``min(room // size, slots)``, then opens full new bins.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    room = np.array(room, dtype=np.int64)
    slots = np.array(slots, dtype=np.int64)
    if sizes.size == 0:
        return room, slots
    if sizes.min() < 1 or sizes.max() > capacity:
        raise ValueError(f"item sizes must lie in [1, {capacity}]")
    values, counts = np.unique(sizes, return_counts=True)
    for s, q in zip(values[::-1], counts[::-1]):
        s, q = int(s), int(q)
        if room.size:
            fit = np.minimum(np.maximum(room, 0) // s, np.maximum(slots, 0))
            before = np.cumsum(fit) - fit
            take = np.clip(q - before, 0, fit)
            room -= take * s
            slots -= take
            q -= int(take.sum())
        if q > 0:
            per = min(capacity // s, max_items)
            nb = _ceil_div(q, per)
            take = np.full(nb, per, dtype=np.int64)
            take[-1] = q - (nb - 1) * per
            room = np.concatenate([room, capacity - take * s])
            slots = np.concatenate([slots, max_items - take])
    return room, slots


def pack_items(sizes: np.ndarray, capacity: int, max_items: int) -> int:
    """Bins that first-fit decreasing needs for ``sizes`` from scratch (see :func:`pack_into`)."""
    room, _ = pack_into(sizes, np.zeros(0, np.int64), np.zeros(0, np.int64), capacity, max_items)
    return int(room.size)


def adder_tree(fan_ins: np.ndarray, axons: int) -> Tuple[np.ndarray, int, int]:
    """Adder items for neurons split into ``fan_ins`` (>= 2) partial sums.

    Returns ``(item_axons, extra_neurons, levels)``: the axon count of every adder neuron to place (top
    adders and sub-adders), the sub-adder neurons beyond the layer's own (top) neurons, and the adder
    levels. c <= A inputs: one adder, one level. c > A: ceil(c/A) sub-adders of <= A inputs feed the
    next level (each level one tick). Terminates: for A >= 2 and c > A, ceil(c/A) < c, so every level
    shrinks each remaining fan-in.
    """
    if axons < 2:
        raise ValueError(f"an adder tree needs at least 2 axons per core, got {axons}")
    cur = np.asarray(fan_ins, dtype=np.int64)
    items: List[np.ndarray] = []
    extra, levels = 0, 0
    while cur.size:
        levels += 1
        small = cur <= axons
        items.append(cur[small])
        big = cur[~small]
        if big.size == 0:
            break
        full, rem = big // axons, big % axons
        items.append(np.full(int(full.sum()), axons, dtype=np.int64))
        items.append(rem[rem > 0])
        nsub = full + (rem > 0)
        extra += int(nsub.sum())
        cur = nsub
    out = np.concatenate(items) if items else np.zeros(0, dtype=np.int64)
    return out, extra, levels


def splitter_tree(copies: np.ndarray, neurons: int) -> Tuple[np.ndarray, int]:
    """Splitter items for sources that must reach ``copies`` (>= 2) cores each.

    Returns ``(item_neurons, levels)``: every splitter axon with the number of splitter neurons it drives
    (<= N), and the splitter levels. k <= N: one axon driving k neurons, one level. k > N: the k neurons
    hang off ceil(k / N) axons, whose feeds are split again (one tick per level). Terminates: for
    N >= 2 and k > N, ceil(k/N) < k.
    """
    if neurons < 2:
        raise ValueError(f"a splitter tree needs at least 2 neurons per core, got {neurons}")
    cur = np.asarray(copies, dtype=np.int64)
    cur = cur[cur >= 2]
    items: List[np.ndarray] = []
    levels = 0
    while cur.size:
        levels += 1
        full, rem = cur // neurons, cur % neurons
        items.append(np.full(int(full.sum()), neurons, dtype=np.int64))
        items.append(rem[rem > 0])
        feeds = full + (rem > 0)
        cur = feeds[feeds >= 2]
    out = np.concatenate(items) if items else np.zeros(0, dtype=np.int64)
    return out, levels


# ----------------------------------------------------------------------------------------------
# Placements
# ----------------------------------------------------------------------------------------------

@dataclass
class _Placement:
    """Where every synapse went: its item (a partial or whole neuron) and that item's core."""

    name: str
    item_neuron: np.ndarray   # (items,) neuron of each item
    item_core: np.ndarray     # (items,) core of each item, 0..cores-1
    syn_item: np.ndarray      # (nnz,) item of each synapse, CSR order
    cores: int


def _items_by_key(key: np.ndarray, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items from a key that is nondecreasing in CSR order: (syn_item, item_first_synapse, item_neuron)."""
    change = np.empty(key.size, dtype=bool)
    if key.size:
        change[0] = True
        np.not_equal(key[1:], key[:-1], out=change[1:])
    first = np.flatnonzero(change)
    syn_item = np.repeat(np.arange(first.size, dtype=np.int64), np.diff(np.append(first, key.size)))
    return syn_item, first, rows[first]


def _rows(m: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))


def _naive(m: sp.csr_matrix, rows: np.ndarray, core: CoreSpec) -> _Placement:
    """Dense tiling: item = (neuron, block of A axons); core = the (neuron block, axon block) tile."""
    A, N = core.axons, core.neurons
    nb = _ceil_div(m.shape[1], A)
    blk = m.indices.astype(np.int64) // A
    syn_item, first, item_neuron = _items_by_key(rows * nb + blk, rows)
    tile = (item_neuron // N) * nb + blk[first]
    tiles, item_core = np.unique(tile, return_inverse=True)
    return _Placement("naive", item_neuron, item_core.astype(np.int64), syn_item, int(tiles.size))


def _segments_of(n_axons: int, axons: int, balanced: bool) -> np.ndarray:
    """Segment of every axon: fixed blocks of ``axons`` or balanced blocks (:func:`axon_blocks`)."""
    if not balanced:
        return np.arange(n_axons, dtype=np.int64) // axons
    bounds = axon_blocks(n_axons, axons)
    return np.searchsorted(bounds, np.arange(n_axons), side="right").astype(np.int64) - 1


def _segments(m: sp.csr_matrix, rows: np.ndarray, core: CoreSpec, seg_of_axon: np.ndarray,
              name: str) -> _Placement:
    """Item = (neuron, segment); each segment's items fill cores N at a time, in neuron order."""
    N = core.neurons
    nseg = int(seg_of_axon.max()) + 1
    sg = seg_of_axon[m.indices]
    syn_item, first, item_neuron = _items_by_key(rows * nseg + sg, rows)
    item_seg = sg[first]
    order = np.argsort(item_seg, kind="stable")
    counts = np.bincount(item_seg, minlength=nseg)
    seg_start = np.cumsum(counts) - counts
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size) - seg_start[item_seg[order]]
    seg_cores = _ceil_div(counts, N)
    core_offset = np.cumsum(seg_cores) - seg_cores
    item_core = core_offset[item_seg] + rank // N
    return _Placement(name, item_neuron, item_core, syn_item, int(seg_cores.sum()))


def _grouped(m: sp.csr_matrix, rows: np.ndarray, core: CoreSpec, seg_of_axon: np.ndarray,
             name: str) -> _Placement:
    """Whole neurons (fan-in <= A) or (neuron, segment) items, by first axon, next-fit with axon union <= A."""
    A, N = core.axons, core.neurons
    nseg = int(seg_of_axon.max()) + 1
    f = np.diff(m.indptr)
    big = (f > A)[rows]
    sg = np.where(big, seg_of_axon[m.indices], 0)
    syn_item, first, item_neuron = _items_by_key(rows * nseg + sg, rows)
    ends = np.append(first[1:], m.nnz)
    idx = m.indices
    order = np.lexsort((item_neuron, idx[first]))
    item_core = np.empty(first.size, dtype=np.int64)
    stamp = np.full(m.shape[1], -1, dtype=np.int64)
    c, used, count = 0, 0, 0
    for it in order.tolist():
        sup = idx[first[it]:ends[it]]
        new = sup[stamp[sup] != c]
        if count == N or used + new.size > A:
            c, used, count, new = c + 1, 0, 0, sup
        stamp[new] = c
        used += new.size
        count += 1
        item_core[it] = c
    return _Placement(name, item_neuron, item_core, syn_item, c + 1 if first.size else 0)


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerMapping:
    """One layer placed on cores. Counts are cores, neurons, synapses; latency is in ticks.

    ``cores = compute_cores + adder_cores + splitter_cores + orphan_cores``.
    ``crossbar_utilisation``: crossbar bits set (layer, adder and splitter synapses) / (cores * A * N).
    ``naive_cores``: the cores of dense tiling, for comparison; ``lower_bound``: :func:`lower_bound`.
    """

    name: str
    strategy: str
    placement: str
    neurons: int
    axons: int
    synapses: int
    cores: int
    compute_cores: int
    adder_cores: int
    splitter_cores: int
    orphan_cores: int
    partial_sum_neurons: int
    partial_sum_levels: int
    splitter_neurons: int
    splitter_levels: int
    latency_ticks: int
    crossbar_utilisation: float
    naive_cores: int
    lower_bound: int
    source_on_chip: bool = True

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of: {', '.join(STRATEGIES)}")
        ints = ("neurons", "axons", "synapses", "cores", "compute_cores", "adder_cores", "splitter_cores",
                "orphan_cores", "partial_sum_neurons", "partial_sum_levels", "splitter_neurons",
                "splitter_levels", "latency_ticks", "naive_cores", "lower_bound")
        for k in ints:
            if getattr(self, k) < 0:
                raise ValueError(f"layer {self.name}: {k} must be non-negative, got {getattr(self, k)}")
        if self.cores != self.compute_cores + self.adder_cores + self.splitter_cores + self.orphan_cores:
            raise ValueError(f"layer {self.name}: cores must be the sum of compute, adder, splitter and orphan cores")
        if self.latency_ticks != 1 + self.partial_sum_levels + self.splitter_levels:
            raise ValueError(f"layer {self.name}: latency must be 1 + partial-sum levels + splitter levels")
        if not 0.0 <= self.crossbar_utilisation <= 1.0:
            raise ValueError(f"layer {self.name}: crossbar utilisation must lie in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LayerMapping":
        return cls(**d)


def _finish(m: sp.csr_matrix, pl: _Placement, core: CoreSpec, source_on_chip: bool) -> dict:
    """Partial sums, adders, splitters and orphans of a placement; the counts of a LayerMapping.

    Adders, then splitters, then orphans fill the axons and neurons the layer's cores have left (first
    fit decreasing, :func:`pack_into`) before new cores are opened for them.
    """
    A, N = core.axons, core.neurons
    n, n_axons = m.shape
    items_per_neuron = np.bincount(pl.item_neuron, minlength=n)
    split = items_per_neuron[items_per_neuron >= 2]
    adder_items, sub_adders, ps_levels = adder_tree(split, A)
    axons_used = np.zeros(pl.cores, dtype=np.int64)
    copies = np.zeros(n_axons, dtype=np.int64)  # k_j: cores that need source j
    if m.nnz:
        syn_core = pl.item_core[pl.syn_item]
        if n_axons * pl.cores <= 1 << 25:
            grid = np.zeros((n_axons, pl.cores), dtype=bool)
            grid[m.indices, syn_core] = True
            copies, axons_used = grid.sum(1), grid.sum(0)
        else:
            keys = np.unique(m.indices.astype(np.int64) * pl.cores + syn_core)
            copies = np.bincount(keys // pl.cores, minlength=n_axons)
            axons_used = np.bincount(keys % pl.cores, minlength=pl.cores)
    free_axons = A - axons_used
    free_neurons = N - np.bincount(pl.item_core, minlength=pl.cores)
    free_axons, free_neurons = pack_into(adder_items, free_axons, free_neurons, A, N)
    adder_cores = free_axons.size - pl.cores
    sp_items, sp_levels = splitter_tree(copies, N) if source_on_chip else (np.zeros(0, np.int64), 0)
    free_neurons, free_axons = pack_into(sp_items, free_neurons, free_axons, N, A)
    splitter_cores = free_neurons.size - pl.cores - adder_cores
    orphans = int((items_per_neuron == 0).sum())
    orphan_cores = _ceil_div(max(0, orphans - int(free_neurons.sum())), N)
    cores = pl.cores + adder_cores + splitter_cores + orphan_cores
    bits = m.nnz + int(adder_items.sum()) + int(sp_items.sum())
    return dict(placement=pl.name, neurons=n, axons=int(np.count_nonzero(copies)),
                synapses=int(m.nnz), cores=cores, compute_cores=pl.cores, adder_cores=adder_cores,
                splitter_cores=splitter_cores, orphan_cores=orphan_cores,
                partial_sum_neurons=int(split.sum()) + sub_adders, partial_sum_levels=ps_levels,
                splitter_neurons=int(sp_items.sum()), splitter_levels=sp_levels,
                latency_ticks=1 + ps_levels + sp_levels,
                crossbar_utilisation=bits / (cores * A * N) if cores else 0.0)


def map_layer(mask, strategy: str = "sparse", core: CoreSpec = CoreSpec(), *, name: str = "layer",
              source_on_chip: bool = True) -> LayerMapping:
    """Place one layer's (neurons, axons) mask onto cores with ``strategy`` 'naive' or 'sparse'.

    See the module docstring for the rules, the strategies and what each count means. ``sparse`` takes
    the candidate with the fewest total cores (ties: fewer ticks), naive tiling included, so its cores
    are never more than naive's. Both are at least :func:`lower_bound`.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    m = as_csr(mask)
    rows = _rows(m)
    lb = lower_bound(m, core, source_on_chip=source_on_chip).cores
    naive = _finish(m, _naive(m, rows, core), core, source_on_chip)
    best = naive
    if strategy == "sparse":
        A = core.axons
        candidates = []
        segmentations = [("segments", _segments_of(m.shape[1], A, balanced=False))]
        if m.shape[1] > A and m.shape[1] % A:
            segmentations.append(("segments-balanced", _segments_of(m.shape[1], A, balanced=True)))
        for seg_name, seg in segmentations:
            candidates.append(_segments(m, rows, core, seg, seg_name))
        for seg_name, seg in segmentations:
            candidates.append(_grouped(m, rows, core, seg, "grouped" + seg_name[len("segments"):]))
        for pl in candidates:
            r = _finish(m, pl, core, source_on_chip)
            if (r["cores"], r["latency_ticks"]) < (best["cores"], best["latency_ticks"]):
                best = r
    return LayerMapping(name=name, strategy=strategy, naive_cores=naive["cores"], lower_bound=lb,
                        source_on_chip=source_on_chip, **best)


@dataclass(frozen=True)
class NetworkMapping:
    """Every synaptic layer of a network placed on cores (one layer per core)."""

    layers: Tuple[LayerMapping, ...]
    core: CoreSpec = field(default_factory=CoreSpec)

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("a network mapping needs at least one layer")

    @property
    def cores(self) -> int:
        return sum(l.cores for l in self.layers)

    @property
    def naive_cores(self) -> int:
        return sum(l.naive_cores for l in self.layers)

    @property
    def lower_bound(self) -> int:
        return sum(l.lower_bound for l in self.layers)

    @property
    def chips(self) -> int:
        """ceil(cores / cores_per_chip)."""
        return _ceil_div(self.cores, self.core.cores_per_chip)

    @property
    def latency_ticks(self) -> int:
        """Ticks from an input spike to the output layer's spike: the sum of the layers' latencies."""
        return sum(l.latency_ticks for l in self.layers)

    def layer(self, name: str) -> LayerMapping:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"core": asdict(self.core), "layers": [l.to_dict() for l in self.layers],
                "cores": self.cores, "naive_cores": self.naive_cores, "lower_bound": self.lower_bound,
                "chips": self.chips, "latency_ticks": self.latency_ticks}

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkMapping":
        return cls(layers=tuple(LayerMapping.from_dict(l) for l in d["layers"]), core=CoreSpec(**d["core"]))


def map_network(model: torch.nn.Module, strategy: str = "sparse", core: CoreSpec = CoreSpec(), *,
                input_shape: Optional[Sequence[int]] = None, max_chips: Optional[int] = None) -> NetworkMapping:
    """Unroll every synaptic layer of ``model`` (:func:`hw_models.unroll.synaptic_layers`) and map it.

    Raises :class:`EslError` when the model uses a layer that cannot be costed or needs more than
    ``max_chips`` chips.
    """
    from .unroll import synaptic_layers

    mapping = map_layers(synaptic_layers(model, input_shape=input_shape), strategy, core)
    check_fits(mapping, max_chips)
    return mapping


def map_layers(layers, strategy: str = "sparse", core: CoreSpec = CoreSpec()) -> NetworkMapping:
    """Map already unrolled layers (:class:`hw_models.unroll.SynapticLayer`) with one strategy."""
    return NetworkMapping(layers=tuple(map_layer(l.mask, strategy, core, name=l.name,
                                                 source_on_chip=l.source_on_chip) for l in layers), core=core)


def check_fits(mapping: NetworkMapping, max_chips: Optional[int]) -> None:
    """Raise :class:`EslError` when ``mapping`` needs more than ``max_chips`` chips (None: no limit)."""
    if max_chips is None:
        return
    if max_chips < 1:
        raise EslError(f"the chip limit must be at least 1, got {max_chips}")
    if mapping.chips > max_chips:
        raise EslError(f"the model needs {mapping.cores} cores = {mapping.chips} chips of "
                       f"{mapping.core.cores_per_chip} cores, more than the {max_chips} allowed")
