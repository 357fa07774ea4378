"""Whole-network packing onto TrueNorth cores, and a lower bound that holds for every such placement.

Rules (the *packed* rules, closer to TrueNorth than the per-layer rules of :mod:`hw_models.truenorth`;
Merolla et al. 2014 incl. SM S4, Akopyan et al. 2015). A core has A axons and N neurons:

1. **Any layers per core.** A core may hold neurons (and parts of neurons) of any layers. Each neuron
   targets exactly one axon on one core, which may be its own core. An axon carries the spikes of one
   source (merging two sources onto one axon would OR their spikes, which is not the weighted sum).
2. **Items.** A neuron of fan-in f is one item, or is split into c >= 2 *partial* neurons (items) whose
   synapses partition its inputs, each on a core holding an axon of every input of its part, plus an
   adder tree (:func:`hw_models.truenorth.adder_tree`: one adder of c axons for c <= A, sub-adders for
   c > A; the top adder is the layer's neuron). A part has at most A inputs, so f > A forces
   c >= ceil(f / A). Neurons without synapses still take a neuron slot.
3. **Splitters as TrueNorth programs do them.** An on-chip source j whose consumers (items with a
   synapse from j) lie on k_j cores has an axon on each of those k_j cores (and possibly on relay
   cores). The source neuron targets one of them (the root); every other axon of j is fed by one
   splitter neuron (one synapse, weight 1, threshold 1) sitting on a core that holds an axon of j.
   So j needs exactly |K_j| - 1 splitter neurons for its set K_j of axon cores, and no extra axon: the
   splitters share the root's axon with the compute neurons there (the direct path is delayed by the
   splitter's tick with TrueNorth's axonal delay). Off-chip inputs are sent by the host to every axon
   that needs them: no splitters.
4. Layers are costed as reading their own sources: two layers reading the same spike source (a residual
   block's conv1 and its shortcut convolution) count separate axons for it. The bound holds for
   placements that do the same; sharing those axons could save cores below it.

Lower bound (:func:`network_lower_bound`), for every placement under these rules, with f_i the fan-in
of neuron i, F_j the fan-out (synapses) of source j of a layer, ``adder_tree`` the resources of rule 2::

    c_i  = ceil(f_i / A) if f_i > A else 0           parts neuron i needs at least
    k_j  = ceil(F_j / N)                              cores holding an axon of j, at least (F_j distinct
                                                      neurons use j; a core holds <= N of them)
    U = sum n_l + sum_i (c_i + sub-adders(c_i)) + sum_{j on chip} (k_j - 1)      neurons
    X = sum_j k_j + sum_i adder-axons(c_i)                                       axons
    S = nnz + sum_i adder-axons(c_i) + sum_{j on chip} (k_j - 1)                 crossbar bits
    LB = max(ceil(U / N), ceil(X / A), ceil(S / (A N)))

Proof sketch: every term counts a resource the rules force (a part of a split neuron is a neuron, its
output needs an adder axon; j's consumers are F_j distinct neuron slots, hence on >= k_j cores, each
with its own axon of j, and a tree over |K_j| >= k_j axons has |K_j| - 1 splitter edges); the cores
together hold at most cores x N neurons, x A axons, x A N bits. Each term is monotone in c_i and k_j,
so the minimum values give the bound. ``tests/test_hw_packing.py`` checks it against exhaustive search.

Packed placement (:func:`pack_network`): every layer's compute items are placed by the per-layer
candidates of :mod:`hw_models.truenorth` (segments, grouped, naive tiling) plus *source cores*: the
inputs of a layer whose sources are the previous layer's neurons are cut by the core those neurons sit
on, so partial sums are computed next to their sources. The layers' core-sized blocks are then packed
into shared cores by first-fit decreasing over (axons, neurons) and refined by local search (empty the
emptiest core into the others). Adders, splitters (on their source's axon cores first, then relay
cores, then new splitter cores) and orphan neurons fill the room left. Each layer takes the candidate
that gives the fewest cores with the layers before it; then every conv layer's candidate is chosen
again with all the others placed (``refine`` passes). The per-layer placement is a valid placement
under these rules too (a splitter core is a relay holding the root axon), so the packed result is the
better of the two: ``lower bound <= packed <= per-layer``.

Convolutions with a geometry (``conv_aware``, the default) are tiled instead
(:mod:`hw_models.conv_mapping`: spatial tiles x output-channel blocks x feature groups, the best few
tilings by estimate, at most one tile of a layer per core; source tiles, each source on one core and
neurons split by where their inputs lie; and the unrolled mask's grouped placement), and the result
states the local bound of :mod:`hw_models.conv_bound` for such placements beside the bound above (which
holds for any placement).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp

from .conv_geometry import ConvGeometry
from .cores import CoreSpec, ceil_div
from .truenorth import (LowerBound, _grouped, _naive, _Placement, _rows, _segments, _segments_of, adder_tree,
                        as_csr, map_layer, pack_into)


@dataclass(frozen=True)
class PackLayer:
    """One synaptic layer to pack: its (neurons, sources) mask and whether its sources are on chip.

    ``after_previous``: its sources are the previous layer's neurons, in order (a plain MLP chain), so
    its inputs can be cut by the cores those neurons sit on. ``geometry``: a convolution's geometry,
    which makes it tiled by the conv-aware mapper (:mod:`hw_models.conv_mapping`) instead of placed
    from its unrolled mask.
    """

    name: str
    mask: sp.csr_matrix
    source_on_chip: bool
    after_previous: bool = False
    geometry: Optional[ConvGeometry] = None


def pack_layers_of(layers) -> List[PackLayer]:
    """:class:`PackLayer` records from :class:`hw_models.unroll.SynapticLayer` (or PackLayer) objects.

    A layer follows the previous one when its sources are on chip and their number is the previous
    layer's neuron count (the unroller's layers of a Linear / conv chain; a residual shortcut is not).
    """
    out: List[PackLayer] = []
    for l in layers:
        m = as_csr(l.mask)
        prev = out[-1].mask.shape[0] if out else None
        after = bool(l.source_on_chip) and prev == m.shape[1] and not getattr(l, "name", "").count("shortcut")
        out.append(PackLayer(getattr(l, "name", f"layer{len(out)}"), m, bool(l.source_on_chip), after,
                             getattr(l, "geometry", None)))
    return out


# ----------------------------------------------------------------------------------------------
# Lower bound
# ----------------------------------------------------------------------------------------------

# the network bound has the per-layer bound's fields (neurons, axons, crossbar bits and the cores each implies)
NetworkBound = LowerBound


def network_lower_bound(layers, core: CoreSpec = CoreSpec()) -> NetworkBound:
    """The packed rules' lower bound on the cores of a whole network (module docstring)."""
    A, N = core.axons, core.neurons
    U = X = S = 0
    for l in pack_layers_of(layers):
        m = l.mask
        f = np.diff(m.indptr).astype(np.int64)
        F = np.bincount(m.indices, minlength=m.shape[1]).astype(np.int64)
        c = ceil_div(f[f > A], A)
        adder_items, sub, _ = adder_tree(c, A)
        k = ceil_div(F[F > 0], N)
        split = int((k - 1).sum()) if l.source_on_chip else 0
        U += m.shape[0] + int(c.sum()) + sub + split
        X += int(k.sum()) + int(adder_items.sum())
        S += int(m.nnz) + int(adder_items.sum()) + split
    return NetworkBound(neurons=U, axons=X, synapses=S, neuron_cores=ceil_div(U, N), axon_cores=ceil_div(X, A),
                        synapse_cores=ceil_div(S, A * N))


# ----------------------------------------------------------------------------------------------
# Placement
# ----------------------------------------------------------------------------------------------

@dataclass
class _LayerItems:
    """A layer's compute placement: items, their block (a per-layer core) and every synapse's item.

    ``block_keys``: the distinct (block, source) pairs, as ``block * sources + source``; the adder
    items, partial-sum neurons, adder levels and orphans follow from the items alone.
    """

    layer: PackLayer
    pl: _Placement
    block_axons: np.ndarray    # (blocks,) distinct sources of each block
    block_neurons: np.ndarray  # (blocks,) items of each block
    block_keys: np.ndarray
    adder_items: np.ndarray
    partial: int
    adder_levels: int
    orphans: int


def _layer_items(layer: PackLayer, pl: _Placement, core: CoreSpec) -> _LayerItems:
    m = layer.mask
    syn_block = pl.item_core[pl.syn_item]
    keys = np.unique(syn_block * np.int64(m.shape[1]) + m.indices)
    axons = np.bincount(keys // m.shape[1], minlength=pl.cores)
    neurons = np.bincount(pl.item_core, minlength=pl.cores)
    per = np.bincount(pl.item_neuron, minlength=m.shape[0])
    a_items, sub, levels = adder_tree(per[per >= 2], core.axons)
    return _LayerItems(layer, pl, axons.astype(np.int64), neurons.astype(np.int64), keys, a_items,
                       int(per[per >= 2].sum()) + sub, levels, int((per == 0).sum()))


def _source_core_segments(m: sp.csr_matrix, prev: _LayerItems, A: int) -> np.ndarray:
    """Segment of every input: the block of the previous layer holding that neuron's first item, cut to <= A."""
    first = np.full(prev.layer.mask.shape[0], -1, dtype=np.int64)
    order = np.arange(prev.pl.item_neuron.size)[::-1]
    first[prev.pl.item_neuron[order]] = prev.pl.item_core[order]
    first[first < 0] = int(first.max()) + 1 if (first >= 0).any() else 0  # orphans: one segment of their own
    order = np.argsort(first, kind="stable")
    grp = first[order]
    start = np.searchsorted(grp, grp, side="left")
    rank = np.arange(grp.size) - start
    seg = np.empty(m.shape[1], dtype=np.int64)
    seg[order] = grp * (ceil_div(m.shape[1], A) + 1) + rank // A
    return np.unique(seg, return_inverse=True)[1].astype(np.int64)


def _spread(pl: _Placement, core: CoreSpec, extra: int) -> _Placement:
    """The same items, each block's items dealt evenly over ``ceil(items / N) + extra`` blocks per segment
    block run (room left in every core for the next layer's parts, adders and splitters)."""
    N = core.neurons
    counts = np.bincount(pl.item_core, minlength=pl.cores)
    order = np.argsort(pl.item_core, kind="stable")
    start = np.cumsum(counts) - counts
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size) - start[pl.item_core[order]]
    # blocks of one segment are consecutive in _segments; spread each block run over more, smaller blocks
    per = np.maximum(1, ceil_div(counts, 1 + extra))
    sub = rank // per[pl.item_core]
    key = pl.item_core * (extra + 1) + sub
    ids, item_core = np.unique(key, return_inverse=True)
    del N
    return _Placement(f"{pl.name}/{extra + 1}", pl.item_neuron, item_core.astype(np.int64), pl.syn_item, int(ids.size))


def _fill_segments(m: sp.csr_matrix, free_a: np.ndarray, free_n: np.ndarray, core: CoreSpec,
                   minimum: int = 8) -> List[np.ndarray]:
    """Segments sized to the axons the cores placed so far have left (for a layer of <= N neurons).

    The used inputs, in index order, first fill segments of ``free_a[b]`` inputs for every core b with
    at least ``minimum`` free axons and room for the layer's neurons; the rest is cut into q or q + 1
    balanced segments of <= A (q = ceil(rest / A); one more leaves room for adders).
    """
    A = core.axons
    rows_used = int((np.diff(m.indptr) > 0).sum())
    used = np.flatnonzero(np.bincount(m.indices, minlength=m.shape[1]) > 0)
    if rows_used == 0 or rows_used > core.neurons or used.size == 0:
        return []
    room = np.sort(free_a[(free_a >= minimum) & (free_n >= rows_used)])[::-1]
    sizes, left = [], int(used.size)
    for r in room.tolist():
        if left == 0:
            break
        sizes.append(min(int(r), left))
        left -= sizes[-1]
    out = []
    for extra in (0, 1):
        q = ceil_div(left, A) + extra if left else 0
        tail = [left // q + (1 if k < left % q else 0) for k in range(q)] if q else []
        seg_sizes = np.array(sizes + tail, dtype=np.int64)
        seg = np.zeros(m.shape[1], dtype=np.int64)
        seg[used] = np.repeat(np.arange(seg_sizes.size), seg_sizes)
        out.append(seg)
        if not left:
            break
    return out


def _tile_candidates(layer: PackLayer, core: CoreSpec, cache: Optional[dict],
                     source_tiles: bool = True) -> List[_Placement]:
    """A conv layer's tile placements (:mod:`hw_models.conv_mapping`): the best few output tilings by
    estimate, and the best source tilings (each source on one core) that fit exactly."""
    from .conv_mapping import (candidate_source_tilings, candidate_tilings, source_tile_placement,
                               tile_placement)

    key = (layer.name, id(layer.mask), source_tiles)
    if cache is not None and key in cache:
        return cache[key]
    try:
        tilings = candidate_tilings(layer.geometry, core, source_on_chip=layer.source_on_chip, top=TILINGS)
    except ValueError:  # one channel of one neuron reads more than a core's axons: placed unrolled
        tilings = []
    out = [tile_placement(layer.mask, layer.geometry, t) for t in tilings]
    for t in candidate_source_tilings(layer.geometry, core, top=SOURCE_TILINGS if source_tiles else 0):
        pl = source_tile_placement(layer.mask, layer.geometry, t)
        keys = np.unique(pl.item_core[pl.syn_item] * np.int64(layer.mask.shape[1]) + layer.mask.indices)
        if np.bincount(pl.item_core).max() <= core.neurons and \
                np.bincount(keys // layer.mask.shape[1]).max() <= core.axons:
            out.append(pl)
    if cache is not None:
        cache[key] = out
    return out


def _candidates(layer: PackLayer, prev: Optional[_LayerItems], core: CoreSpec,
                free: Optional[Tuple[np.ndarray, np.ndarray]] = None, cache: Optional[dict] = None,
                tiles_only: bool = False, source_tiles: bool = True) -> List[_Placement]:
    tiles = _tile_candidates(layer, core, cache, source_tiles) if layer.geometry is not None else []
    if tiles:  # tilings, and the unrolled mask's grouped placement (sparse convs)
        out = tiles
        if not tiles_only and layer.mask.nnz <= GROUPED_SYNAPSES:
            key = ("grouped", layer.name, id(layer.mask))
            if cache is None or key not in cache:
                m = layer.mask
                pl = _grouped(m, _rows(m), core, _segments_of(m.shape[1], core.axons, balanced=False), "grouped")
                if cache is None:
                    return out + [pl]
                cache[key] = pl
            out = out + [cache[key]]
        return out
    m = layer.mask
    rows = _rows(m)
    A = core.axons
    segs = [("segments", _segments_of(m.shape[1], A, balanced=False))]
    if m.shape[1] > A and m.shape[1] % A:
        segs.append(("segments-balanced", _segments_of(m.shape[1], A, balanced=True)))
    if layer.after_previous and prev is not None:
        segs.append(("source-cores", _source_core_segments(m, prev, A)))
    if free is not None:
        segs += [(f"fill{k}", seg) for k, seg in enumerate(_fill_segments(m, free[0], free[1], core))]
    out = [_naive(m, rows, core)]
    for name, seg in segs:
        out.append(_segments(m, rows, core, seg, name))
        if m.nnz <= GROUPED_SYNAPSES:  # grouped placement is a loop over items: small layers only
            out.append(_grouped(m, rows, core, seg, "grouped" + name[len("segments"):] if name.startswith("segments")
                                else "grouped-" + name))
    out += [_spread(pl, core, 1) for pl in out if pl.name.startswith("segments")]
    return [pl for pl in out if pl.cores > 0] or out[:1]


def _first_fit(a: np.ndarray, n: np.ndarray, core: CoreSpec, order: np.ndarray,
               excl: Optional[np.ndarray] = None) -> np.ndarray:
    """Bin of every block: first fit in ``order`` over (axons, neurons), counting sums (an upper bound).
    ``excl``: per block a group id (-1: none); a bin holds at most one block of each group (a core holds
    at most one tile of a conv layer)."""
    A, N = core.axons, core.neurons
    ra = np.zeros(a.size, dtype=np.int64)
    rn = np.zeros(a.size, dtype=np.int64)
    groups = int(excl.max()) + 1 if excl is not None and excl.size and excl.max() >= 0 else 0
    taken = np.zeros((a.size, max(groups, 1)), dtype=bool)
    nb = 0
    out = np.empty(a.size, dtype=np.int64)
    for b in order.tolist():
        fits = (ra[:nb] + a[b] <= A) & (rn[:nb] + n[b] <= N)
        g = int(excl[b]) if groups else -1
        if g >= 0:
            fits &= ~taken[:nb, g]
        ok = np.flatnonzero(fits)
        t = int(ok[0]) if ok.size else nb
        if t == nb:
            nb += 1
        ra[t] += a[b]
        rn[t] += n[b]
        if g >= 0:
            taken[t, g] = True
        out[b] = t
    return out


@dataclass(frozen=True)
class PackedMapping:
    """A whole network packed onto shared cores (module docstring). Counts are cores, neurons, axons.

    ``placement``: 'packed' (shared cores) or 'per-layer' (the per-layer placement was not beaten).
    ``core_axons`` / ``core_neurons``: what every core uses (packed placements only).
    ``conv_aware``: conv layers were tiled (:mod:`hw_models.conv_mapping`) rather than placed from their
    unrolled masks; ``local_lower_bound``: the bound of :mod:`hw_models.conv_bound` (tile placements;
    None when not computed); ``unrolled_cores``: the cores of the same network packed from its unrolled
    masks (``conv_aware=False``), when the caller measured it for comparison.
    """

    cores: int
    lower_bound: int
    per_layer_cores: int
    placement: str
    layer_placements: Tuple[str, ...]
    partial_sum_neurons: int
    splitter_neurons: int
    relay_axons: int
    latency_ticks: int
    core_axons: Tuple[int, ...] = ()
    core_neurons: Tuple[int, ...] = ()
    core: CoreSpec = field(default_factory=CoreSpec)
    conv_aware: bool = False
    local_lower_bound: Optional[int] = None
    unrolled_cores: Optional[int] = None

    def __post_init__(self):
        if self.local_lower_bound is not None and self.local_lower_bound < self.lower_bound:
            raise ValueError(f"the local bound {self.local_lower_bound} is below the packed bound {self.lower_bound}")
        if not self.lower_bound <= self.cores <= self.per_layer_cores:
            raise ValueError(f"packed cores {self.cores} must lie in [lower bound {self.lower_bound}, "
                             f"per-layer {self.per_layer_cores}]")

    @property
    def chips(self) -> int:
        """ceil(cores / cores_per_chip)."""
        return ceil_div(self.cores, self.core.cores_per_chip)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["chips"] = self.chips
        d["layer_placements"] = list(self.layer_placements)
        d["core_axons"], d["core_neurons"] = list(self.core_axons), list(self.core_neurons)
        return d


@dataclass
class _Result:
    cores: int
    axons: np.ndarray
    neurons: np.ndarray
    partial: int
    splitters: int
    relays: int
    latency: int
    layer_splitters: Tuple[Tuple[int, int], ...] = ()  # (splitter neurons, relay axons) per layer (exact only)


def _tree_depth(counts: Sequence[int]) -> int:
    """Levels of a splitter tree whose nodes host ``counts`` splitters (sum = nodes - 1), built breadth first."""
    counts = sorted((int(c) for c in counts), reverse=True)
    if not counts or counts[0] == 0:
        return 0
    frontier, rest, depth = [counts[0]], counts[1:], 0
    while rest:
        depth += 1
        take = sum(frontier)
        frontier, rest = rest[:take], rest[take:]
    return depth


def _place_splitters(keys: np.ndarray, nbins: int, free_a: np.ndarray, free_n: np.ndarray, core: CoreSpec):
    """Splitters of one layer's on-chip sources (``keys`` = sorted ``source * nbins + bin``), in place.

    Returns (splitter neurons, relay axons, tree depth). Every source with k >= 2 axon cores first tries
    to put its k - 1 splitters on the one of its cores with the most free neurons (depth 1; done for all
    such sources at once, in source order per core); the rest are spread over its cores, then relay
    cores (a free axon and >= 2 free neurons), then new splitter cores.
    """
    A, N = core.axons, core.neurons
    src, bins = keys // nbins, keys % nbins
    if src.size == 0:
        return free_a, free_n, 0, 0, 0
    starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
    counts = np.diff(np.r_[starts, src.size])
    need = counts - 1
    todo = np.flatnonzero(need > 0)
    splitters = int(need.sum())
    depth = 1 if todo.size else 0
    # vectorised first pass: the best core (most free neurons) of every source, accepted per core in order
    order = np.lexsort((-free_n[bins], src))
    best = bins[order[starts]]
    cand = todo[free_n[best[todo]] >= need[todo]]
    if cand.size:
        o = np.argsort(best[cand], kind="stable")
        c_sorted, d_sorted = best[cand][o], need[cand][o]
        first = np.r_[True, c_sorted[1:] != c_sorted[:-1]]
        csum = np.cumsum(d_sorted)
        base = np.maximum.accumulate(np.where(first, csum - d_sorted, 0))
        ok = (csum - base) <= free_n[c_sorted]
        np.subtract.at(free_n, c_sorted[ok], d_sorted[ok])
        done = np.zeros(counts.size, dtype=bool)
        done[cand[o][ok]] = True
        todo = todo[~done[todo]]
    relays = 0
    for s in todo.tolist():
        cb = bins[starts[s]:starts[s] + counts[s]]
        left = int(need[s])
        placed = []
        for c in cb[np.argsort(-free_n[cb], kind="stable")].tolist():
            t = min(left, int(free_n[c]))
            if t > 0:
                free_n[c] -= t
                left -= t
                placed.append(t)
            if left == 0:
                break
        while left > 0:  # relay: a core with a free axon and >= 2 free neurons joins K_j
            spare = np.flatnonzero((free_a >= 1) & (free_n >= 2))
            if spare.size:
                c = int(spare[np.argmax(free_n[spare])])
            else:  # a new splitter core
                free_a, free_n = np.append(free_a, A), np.append(free_n, N)
                c = free_n.size - 1
            free_a[c] -= 1
            relays += 1
            splitters += 1  # the relay's own axon is fed by one more splitter
            left += 1
            t = min(left, int(free_n[c]))
            free_n[c] -= t
            left -= t
            placed.append(t)
        depth = max(depth, _tree_depth(placed))
    return free_a, free_n, splitters, relays, depth


def _account(items: List[_LayerItems], block_bin: List[np.ndarray], core: CoreSpec, exact: bool = True) -> _Result:
    """Resources of a placement: compute items in their bins, then adders, splitters and orphans.

    ``exact=False`` (for ranking candidates) prices the splitters by count: sum (k_j - 1) neurons that
    fill the free neurons first and then new cores of N - 1.
    """
    A, N = core.axons, core.neurons
    nbins = int(max(int(b.max()) + 1 if b.size else 0 for b in block_bin))
    axons = np.zeros(nbins, dtype=np.int64)
    neurons = np.zeros(nbins, dtype=np.int64)
    sources = []
    partial = orphans = 0
    levels = 0
    for li, b in zip(items, block_bin):
        n_src = li.layer.mask.shape[1]
        neurons += np.bincount(b, weights=li.block_neurons, minlength=nbins).astype(np.int64)
        keys = np.unique((li.block_keys % n_src) * nbins + b[li.block_keys // n_src])
        axons += np.bincount(keys % nbins, minlength=nbins)
        partial += li.partial
        orphans += li.orphans
        levels += 1 + li.adder_levels
        sources.append(keys if li.layer.source_on_chip else None)
    adders = [li.adder_items for li in items]
    free_a, free_n = pack_into(np.concatenate(adders), A - axons, N - neurons, A, N)
    splitters = relays = depth_sum = 0
    per_layer = []
    if not exact:
        for keys in sources:
            if keys is not None and keys.size:
                src = keys // nbins
                splitters += int(src.size - np.unique(src).size)
        short = max(0, splitters + orphans - int(free_n.sum()))
        cores = int(free_n.size) + ceil_div(short, N - 1)
        return _Result(cores, A - free_a, N - free_n, partial, splitters, 0, levels)
    for keys in sources:
        sp_ = rl = 0
        if keys is not None:
            free_a, free_n, sp_, rl, dp = _place_splitters(keys, nbins, free_a, free_n, core)
            splitters, relays, depth_sum = splitters + sp_, relays + rl, depth_sum + dp
        per_layer.append((int(sp_), int(rl)))
    extra = max(0, orphans - int(free_n.sum()))
    used_a, used_n = A - free_a, N - free_n
    if extra:
        k = ceil_div(extra, N)
        used_a = np.append(used_a, np.zeros(k, np.int64))
        used_n = np.append(used_n, np.minimum(N, extra - N * np.arange(k)))
    else:  # orphans into free slots, first fit
        take = np.minimum(free_n, np.maximum(orphans - (np.cumsum(free_n) - free_n), 0))
        used_n = used_n + take
    if (used_a > A).any() or (used_n > N).any() or (used_a < 0).any():
        raise AssertionError("packed placement exceeds a core's axons or neurons")
    return _Result(int(used_n.size), used_a, used_n, partial, splitters, relays, levels + depth_sum,
                   tuple(per_layer))


def layer_resources(items: List[_LayerItems], result: _Result, core: CoreSpec, bound=None) -> List[dict]:
    """What every layer of a packed placement uses, and its share of the cores at the bound's lambda.

    Per layer: tiles (its per-layer blocks), parts (TrueNorth neurons holding its synapses: whole neurons
    and partial sums), adder neurons (top adders and sub-adders of its split neurons) and their input
    axons, axon instances (one per source per block) and sources read, splitter neurons and relay axons.
    Its *share* at ``lam`` (the local bound's lambda, 1 without a bound)::

        share = lam slots / N + (1 - lam) axons / A
        slots = parts + adders + splitters + orphans,  axons = axon instances + adder inputs + relays

    Each core gives at most 1 (lam n_c / N + (1 - lam) a_c / A <= 1), so cores = sum of shares +
    fragmentation, with fragmentation = sum_c (1 - lam n_c / N - (1 - lam) a_c / A) >= 0: the room the
    cores leave. The terms of the share are reported apart (``share_parts``, ``share_adders``,
    ``share_splitters``, ``share_axons``) so a gap to the bound's lambda-cost of the layer (``bound``,
    :class:`hw_models.conv_bound.LocalBound`) reads as what it is made of.
    """
    A, N = core.axons, core.neurons
    lam = float(bound.lam) if bound is not None else 1.0
    costs = {n: (loc, pk) for n, loc, pk in bound.layer_cost} if bound is not None else {}
    split = result.layer_splitters or tuple((0, 0) for _ in items)
    out = []
    for li, (spl, rel) in zip(items, split):
        m = li.layer.mask
        n_src = m.shape[1]
        parts, adders, adder_axons = int(li.pl.item_neuron.size), int(li.adder_items.size), int(li.adder_items.sum())
        inst = int(li.block_keys.size)
        rec = {"layer": li.layer.name, "placement": li.pl.name, "tiles": int(li.pl.cores),
               "neurons": int(m.shape[0]), "parts": parts, "adders": adders, "adder_axons": adder_axons,
               "orphans": int(li.orphans), "axon_instances": inst,
               "sources_read": int(np.unique(li.block_keys % n_src).size), "splitters": int(spl), "relays": int(rel),
               "lam": lam, "share_parts": lam * (parts + li.orphans) / N,
               "share_adders": lam * adders / N + (1 - lam) * adder_axons / A,
               "share_splitters": lam * spl / N + (1 - lam) * rel / A, "share_axons": (1 - lam) * inst / A}
        rec["share"] = rec["share_parts"] + rec["share_adders"] + rec["share_splitters"] + rec["share_axons"]
        if li.layer.name in costs:
            rec["bound"], rec["bound_packed_rules"] = costs[li.layer.name]
        out.append(rec)
    return out


def _splitter_reserve(li: _LayerItems, N: int) -> np.ndarray:
    """Splitter neurons every block of a tiled layer would host if each on-chip source's k - 1 splitters sat
    on the first of its k axon blocks, clipped to the room the block leaves (N - its parts); zeros for
    other layers. Used to leave that room when tiles are merged into cores."""
    out = np.zeros(li.block_neurons.size, dtype=np.int64)
    if not (li.layer.source_on_chip and li.pl.name.startswith(("tiles", "srctiles"))) or li.block_keys.size == 0:
        return out
    S = li.layer.mask.shape[1]
    src, blk = li.block_keys % S, li.block_keys // S
    order = np.lexsort((blk, src))
    src, blk = src[order], blk[order]
    first = np.r_[True, src[1:] != src[:-1]]
    k = np.diff(np.r_[np.flatnonzero(first), src.size])
    np.add.at(out, blk[first], k - 1)
    return np.minimum(out, np.maximum(N - li.block_neurons, 0))


def _merge(items: List[_LayerItems], core: CoreSpec, local_search: int,
           exact: bool = True) -> Tuple[_Result, List[np.ndarray]]:
    """First-fit decreasing of every layer's blocks into shared cores, then local search on the emptiest cores.

    Tiled layers are merged twice: by their parts, and by their parts plus the splitters of their sources
    (:func:`_splitter_reserve`), which leaves room for the splitters next to their axons instead of on
    relay cores; the placement with fewer cores is kept."""
    A, N = core.axons, core.neurons
    a = np.concatenate([li.block_axons for li in items])
    n = np.concatenate([li.block_neurons for li in items])
    reserve = np.concatenate([_splitter_reserve(li, N) for li in items])
    offsets = np.cumsum([0] + [li.block_axons.size for li in items])
    excl = np.concatenate([np.full(li.block_axons.size, i if li.pl.name.startswith("tiles") else -1, np.int64)
                           for i, li in enumerate(items)])

    def split(b):
        return [b[offsets[i]:offsets[i + 1]] for i in range(len(items))]

    def run(nf):
        size = np.maximum(a / A, nf / N)
        order = np.lexsort((-(a + nf), -size))
        bins = _first_fit(a, nf, core, order, excl)
        best = _account(items, split(bins), core, exact)
        best_bins = bins
        for _ in range(local_search if best_bins.size else 0):
            nb = int(best_bins.max()) + 1
            if nb <= 1:
                break
            load_a = np.bincount(best_bins, weights=a, minlength=nb)
            load_n = np.bincount(best_bins, weights=nf, minlength=nb)
            victim = int(np.argmin(np.maximum(load_a / A, load_n / N)))
            moved = best_bins.copy()
            ok = True
            for blk in np.flatnonzero(best_bins == victim)[np.argsort(-nf[best_bins == victim])].tolist():
                la = np.bincount(moved, weights=a, minlength=nb)
                ln = np.bincount(moved, weights=nf, minlength=nb)
                free_of = np.ones(nb, dtype=bool)
                if excl[blk] >= 0:  # one tile of a conv layer per core
                    free_of[moved[(excl == excl[blk]) & (np.arange(moved.size) != blk)]] = False
                fit = np.flatnonzero((la + a[blk] <= A) & (ln + nf[blk] <= N) & (np.arange(nb) != victim) & free_of)
                if not fit.size:
                    ok = False
                    break
                moved[blk] = int(fit[np.argmax(ln[fit] + nf[blk])])  # best fit on neurons
            if not ok:
                break
            moved = np.unique(moved, return_inverse=True)[1]
            r = _account(items, split(moved), core, exact)
            if r.cores >= best.cores:
                break
            best, best_bins = r, moved
        return best, best_bins

    best, best_bins = run(n)
    if reserve.any():
        other, other_bins = run(n + reserve)
        if other.cores < best.cores:
            best, best_bins = other, other_bins
    return best, split(best_bins)


TILINGS = 3                    # tilings of a conv layer (best by estimate) the packer tries
SOURCE_TILINGS = 2             # source tilings of a conv layer (best by estimate) the packer tries
REFINE = 2                     # passes that choose every conv layer's candidate again, the others placed
LOOKAHEAD_SYNAPSES = 2_000_000  # up to this many synapses a layer's candidate is chosen with the next layer's
GROUPED_SYNAPSES = 2_000_000   # larger layers skip the grouped candidates (the per-layer result still bounds)


def pack_network(layers, core: CoreSpec = CoreSpec(), *, per_layer_cores: Optional[int] = None,
                 local_search: int = 8, parts_out: Optional[dict] = None, conv_aware: bool = True,
                 tiles_only: bool = False, local_bound: bool = True,
                 layers_out: Optional[list] = None, source_tiles: bool = True,
                 refine: int = REFINE) -> PackedMapping:
    """Pack a whole network's layers onto shared cores (module docstring) and state its lower bound.

    ``layers``: :class:`hw_models.unroll.SynapticLayer` (or :class:`PackLayer`) records in network
    order. ``per_layer_cores``: the per-layer sparse mapping's cores, if already known. ``parts_out``:
    a dict that receives, per layer name, the part (item) of every synapse in CSR order when the packed
    placement is used (each part is one TrueNorth neuron: a whole neuron or one of its partial sums).
    ``conv_aware``: tile the convolutions that have a geometry (:mod:`hw_models.conv_mapping`, one tile
    per layer per core; the unrolled mask's grouped placement stays a candidate, for very sparse layers,
    unless ``tiles_only``) and state the local bound (:mod:`hw_models.conv_bound`) for the layers placed
    as tiles; False: place every layer from its unrolled mask, as before. ``local_bound=False`` skips
    the local bound (``local_lower_bound`` None), which costs seconds on large conv nets.
    ``source_tiles``: also try the conv layers' source tilings (:class:`hw_models.conv_mapping.SourceTiling`:
    each source on one core, neurons split by where their inputs lie); a layer placed so is charged the
    packed rules' bound only in the local bound, which does not cover such placements.
    ``refine``: passes that, once every layer has its candidate (chosen in network order, with the next
    layer's best as lookahead), choose every conv layer's candidate again with all the others placed; the
    refined choice is kept when its exact packing needs fewer cores than the first.
    ``layers_out``: a list that receives one :func:`layer_resources` dict per layer of the packed placement
    (with the local bound's lambda-cost of the layer under ``"bound"`` when the bound is computed).
    """
    pls = pack_layers_of(layers)
    if not pls:
        raise ValueError("a network needs at least one layer to pack")
    if not conv_aware:
        pls = [replace(l, geometry=None) for l in pls]
    conv_aware = conv_aware and any(l.geometry is not None for l in pls)
    lb = network_lower_bound(pls, core).cores
    cache: dict = {}
    if per_layer_cores is None:
        per_layer_cores = sum(map_layer(l.mask, "sparse", core, source_on_chip=l.source_on_chip).cores for l in pls)
    lookahead = sum(l.mask.nnz for l in pls) <= LOOKAHEAD_SYNAPSES
    chosen: List[_LayerItems] = []

    def cost(trial):
        r, _ = _merge(trial, core, local_search=0, exact=False)
        return (r.cores, r.latency, int(r.axons.sum())), (A - r.axons, N - r.neurons)

    def items(layer, pl):  # tile placements do not depend on the layers before: computed once
        if layer.geometry is None:
            return _layer_items(layer, pl, core)
        key = ("items", id(pl))
        if key not in cache:
            cache[key] = _layer_items(layer, pl, core)
        return cache[key]

    A, N = core.axons, core.neurons
    free = None
    for i, layer in enumerate(pls):
        best = None
        for pl in _candidates(layer, chosen[-1] if chosen else None, core, free, cache, tiles_only, source_tiles):
            mine = items(layer, pl)
            trial = chosen + [mine]
            c, room = cost(trial)
            if lookahead and i + 1 < len(pls):  # the next layer's best candidate decides (source cores)
                c = min(cost(trial + [items(pls[i + 1], q)])[0]
                        for q in _candidates(pls[i + 1], mine, core, room, cache, tiles_only, source_tiles))
            if best is None or c < best[0]:
                best = (c, mine)
        chosen.append(best[1])
        free = cost(chosen)[1]
    greedy = list(chosen)
    for _ in range(refine):  # choose every conv layer again, the whole network placed
        changed = False
        for i, layer in enumerate(pls):
            if layer.geometry is None:
                continue
            now = cost(chosen)[0]
            for pl in _candidates(layer, chosen[i - 1] if i else None, core, None, cache, tiles_only, source_tiles):
                if pl.name == chosen[i].pl.name:
                    continue
                trial = chosen[:i] + [items(layer, pl)] + chosen[i + 1:]
                c = cost(trial)[0]
                if c < now:
                    chosen, now, changed = trial, c, True
        if not changed:
            break
    result, _ = _merge(chosen, core, local_search=local_search)
    if any(a is not b for a, b in zip(chosen, greedy)):  # the refined choice priced exactly: keep the better
        first, _ = _merge(greedy, core, local_search=local_search)
        if first.cores < result.cores:
            result, chosen = first, greedy
    names = tuple(li.pl.name for li in chosen)
    local = None
    if conv_aware and local_bound:  # the local bound for placements that tile the layers placed as tiles here
        from .conv_bound import local_lower_bound
        tiled = set() if result.cores >= per_layer_cores else \
            {li.layer.name for li in chosen if li.pl.name.startswith("tiles")}
        local_rec = local_lower_bound(pls, core, network_bound=lb, tiled=tiled)
        local = local_rec.cores
        if layers_out is not None:
            layers_out.extend(layer_resources(chosen, result, core, local_rec))
    if parts_out is not None and result.cores < per_layer_cores:
        parts_out.update({li.layer.name: li.pl.syn_item for li in chosen})
    if result.cores >= per_layer_cores:
        from .truenorth import map_layers
        per = map_layers(pls, "sparse", core)
        return PackedMapping(cores=per_layer_cores, lower_bound=lb, per_layer_cores=per_layer_cores,
                             placement="per-layer", layer_placements=tuple(l.placement for l in per.layers),
                             partial_sum_neurons=sum(l.partial_sum_neurons for l in per.layers),
                             splitter_neurons=sum(l.splitter_neurons for l in per.layers), relay_axons=0,
                             latency_ticks=per.latency_ticks, core=core, conv_aware=False, local_lower_bound=local)
    return PackedMapping(cores=result.cores, lower_bound=lb, per_layer_cores=per_layer_cores, placement="packed",
                         layer_placements=names, partial_sum_neurons=result.partial,
                         splitter_neurons=result.splitters, relay_axons=result.relays,
                         latency_ticks=result.latency, core_axons=tuple(int(x) for x in result.axons),
                         core_neurons=tuple(int(x) for x in result.neurons), core=core, conv_aware=conv_aware,
                         local_lower_bound=local)
