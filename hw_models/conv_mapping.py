"""Conv-aware TrueNorth mapping: spatial tiles x output-channel blocks x input-channel (feature) groups.

The unrolled packing (:mod:`hw_models.packing`) sees a convolution as an arbitrary sparse matrix and
never learns that its neurons read local, overlapping patches. Here a conv layer
(:class:`hw_models.conv_geometry.ConvGeometry`) is tiled as Esser et al. (PNAS 113:11441, 2016) mapped
convolutional networks onto TrueNorth: the output positions are cut into rectangles of ``h x w``, the
output channels into ``r`` blocks and the input channels into ``q`` feature groups (balanced, contiguous).
A **tile** = (block, rectangle, group) is one block of cores' work: it holds the part of every neuron
(o, y, x) of its block and rectangle that reads channels of its group (a *part*: a TrueNorth neuron
summing those synapses; a neuron read from ``q >= 2`` groups is a partial sum, added up by the existing
adder trees). The tile has one axon per source its parts read, so a source that several neurons of
the tile read (overlapping patches, several output channels) takes one axon::

    parts(tile)  = #{(o, y, x) in block x rectangle : o reads a channel of the group there}   <= N
    axons(tile)  = q_y q_x sum_{c in group} |clip(s R + U_c(block))|                          <= A

with ``U_c(block)`` the union of the block's footprints on channel c and ``clip`` the cells inside the
map (module docstring of :mod:`hw_models.conv_geometry`; for full k x k footprints and an interior
tile, ``C_in_used (s(h-1)+k)(s(w-1)+k)``). A source read by tiles on k cores needs k - 1 splitter
neurons (packed rules, :mod:`hw_models.packing`), so the halo a tile shares with its neighbours
costs splitters as well as axons, and every extra output-channel block reads all its sources again.

:func:`candidate_tilings` searches (q, r, h, w) with the interior counts above (a tiling is feasible
when its largest interior tile fits; border tiles read a subset) and ranks them by an estimate of the
cores they need::

    slots  = parts + adders + splitters       splitters = axon instances - sources read (on-chip sources)
    axons  = axon instances + adder inputs
    cores ~ max(slots / N, axons / A, tiles)          (a core holds at most one tile of a layer)

:func:`tile_placement` turns a tiling into the packer's placement of the unrolled mask (every synapse
in exactly one part, every part in one tile), so :func:`hw_models.packing.pack_network` places the
tiles of all layers into shared cores (one tile per layer per core), with adders, splitters and the
other layers, exactly as it does for its unrolled candidates, and picks the cheapest candidate (the
unrolled mask's grouped placement stays one, for layers so sparse that neurons sorted by their first
input share more than rectangles do). :mod:`hw_models.conv_bound` states the lower bound for tile
placements.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Tuple

import numpy as np
import scipy.sparse as sp

from .conv_geometry import ConvGeometry, _row_unions, sumset_sizes
from .cores import CoreSpec, ceil_div
from .truenorth import _items_by_key, _Placement, _rows


def balanced_bounds(n: int, parts: int) -> np.ndarray:
    """Boundaries (parts + 1,) of ``parts`` contiguous blocks of [0, n), sizes differing by at most 1."""
    if not 1 <= parts <= n:
        raise ValueError(f"cannot cut {n} items into {parts} blocks")
    sizes = np.full(parts, n // parts, dtype=np.int64)
    sizes[: n % parts] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


@dataclass(frozen=True)
class ConvTiling:
    """How one conv layer is tiled: ``groups`` input-channel groups, ``blocks`` output-channel blocks and
    rectangles of ``tile = (h, w)`` output positions (the last row / column of rectangles may be smaller).
    ``estimate``: the estimated cores of :func:`candidate_tilings` (0 when not estimated)."""

    groups: int
    blocks: int
    tile: Tuple[int, int]
    estimate: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "tile", (int(self.tile[0]), int(self.tile[1])))
        if self.groups < 1 or self.blocks < 1 or min(self.tile) < 1:
            raise ValueError(f"groups, blocks and tile sides must be positive, got {self}")

    def check(self, geo: ConvGeometry) -> None:
        if self.groups > geo.in_channels or self.blocks > geo.out_channels:
            raise ValueError(f"{self} has more groups or blocks than the layer's {geo.in_channels} input and "
                             f"{geo.out_channels} output channels")

    def grid(self, geo: ConvGeometry) -> Tuple[int, int]:
        """Rectangles per column and per row of the output map."""
        return ceil_div(geo.out_hw[0], self.tile[0]), ceil_div(geo.out_hw[1], self.tile[1])

    def to_dict(self) -> dict:
        return asdict(self)


def _group_of(n: int, parts: int) -> np.ndarray:
    b = balanced_bounds(n, parts)
    return np.searchsorted(b, np.arange(n), side="right").astype(np.int64) - 1


def tile_placement(mask, geo: ConvGeometry, tiling: ConvTiling, name: str = "tiles") -> _Placement:
    """The packer's placement of the unrolled ``mask`` under ``tiling``: item = (neuron, input group),
    block = (output block, rectangle, input group), numbered compactly (empty tiles dropped)."""
    tiling.check(geo)
    m = mask if sp.isspmatrix_csr(mask) else sp.csr_matrix(mask)
    if m.shape != (geo.neurons, geo.sources):
        raise ValueError(f"mask shape {m.shape} does not match the geometry ({geo.neurons}, {geo.sources})")
    Ho, Wo = geo.out_hw
    H, W = geo.source_hw
    h, w = tiling.tile
    nty, ntx = tiling.grid(geo)
    rows = _rows(m)
    grp = _group_of(geo.in_channels, tiling.groups)[m.indices.astype(np.int64) // (H * W)]
    syn_item, first, item_neuron = _items_by_key(rows * tiling.groups + grp, rows)
    o, y, x = item_neuron // (Ho * Wo), (item_neuron // Wo) % Ho, item_neuron % Wo
    blk = _group_of(geo.out_channels, tiling.blocks)[o]
    tile = ((blk * nty + y // h) * ntx + x // w) * tiling.groups + grp[first]
    ids, item_core = np.unique(tile, return_inverse=True)
    return _Placement(f"tiles{tiling.groups}x{tiling.blocks}@{h}x{w}", item_neuron, item_core.astype(np.int64),
                      syn_item, int(ids.size))


# ----------------------------------------------------------------------------------------------
# Search
# ----------------------------------------------------------------------------------------------

def _distinct_splits(n: int, limit: int) -> List[int]:
    """Split counts q in [1, n] giving distinct largest parts ceil(n / q), at most ``limit`` of them
    (the smallest counts first: fewer groups or blocks are cheaper whenever they fit)."""
    out, seen = [], set()
    for q in range(1, n + 1):
        g = ceil_div(n, q)
        if g not in seen:
            seen.add(g)
            out.append(q)
        if len(out) == limit:
            break
    return out


def _border_factor(n_out: int, n_cells: int, size: int, stride: int, pad: int, K: int) -> float:
    """Share of the kernel windows of the rectangles (side ``size``) of one axis inside the map: the
    clipping of border tiles, for the estimate."""
    starts = np.arange(0, n_out, size)
    sizes = np.minimum(size, n_out - starts)
    lo = stride * starts - pad
    L = stride * (sizes - 1) + K
    inside = np.clip(np.minimum(lo + L, n_cells) - np.maximum(lo, 0), 0, None)
    return float(inside.sum() / L.sum())


def candidate_tilings(geo: ConvGeometry, core: CoreSpec = CoreSpec(), *, source_on_chip: bool = True,
                      top: int = 3, max_splits: int = 24) -> List[ConvTiling]:
    """The ``top`` feasible tilings by estimated cores (module docstring), best first.

    Searches every tile shape with ``block x h x w <= N`` positions, up to ``max_splits`` group and block
    counts (the smallest), and always finds one: a single output channel at a single position with one
    input channel per group reads at most ``q_y q_x KY KX`` sources (an error if that exceeds A).
    """
    A, N = core.axons, core.neurons
    C_out, C_in = geo.out_channels, geo.in_channels
    Ho, Wo = geo.out_hw
    KY, KX = geo.kernel
    q2 = geo.cell_size
    if q2 * KY * KX > A:
        raise ValueError(f"one input channel of one neuron reads up to {q2 * KY * KX} sources, more than {A} axons")
    fp = geo.footprints()                              # (C_out, C_in)
    # sources read at all (for the splitter count): cells reached by some tap of some output channel
    used_c = np.flatnonzero((fp != 0).any(0))
    n_pos = Ho * Wo
    r_min = ceil_div(C_out, N)
    rs = [r for r in _distinct_splits(C_out, max_splits) if r >= r_min] or [r_min]
    qs = sorted(set(_distinct_splits(C_in, max_splits)) | {C_in})  # one channel per group always fits
    sources = used_c.size * geo.cells[0] * geo.cells[1] * q2
    per_q = []  # what depends on the groups only: bounds, parts, adders (interior counts)
    for q in qs:
        gb = balanced_bounds(C_in, q)
        per_neuron = (np.bitwise_or.reduceat(fp, gb[:-1], axis=1) != 0).sum(1)   # groups each output channel reads
        split = per_neuron >= 2
        per_q.append((q, gb, int(per_neuron.sum()) * n_pos, int(split.sum()) * n_pos,
                      int(per_neuron[split].sum()) * n_pos))
    scored = []
    for r in rs:
        bounds_o = balanced_bounds(C_out, r)
        b_max = int(np.diff(bounds_o).max())
        U = np.bitwise_or.reduceat(fp, bounds_o[:-1], axis=0)          # (r, C_in) block footprints
        uniq, u_idx = np.unique(U, return_inverse=True)
        u_idx = u_idx.reshape(U.shape)
        unions = _row_unions(uniq, KY, KX)
        shapes = [(h, w) for h in range(1, Ho + 1) for w in range(1, Wo + 1) if b_max * h * w <= N]
        for h, w in shapes:
            S = sumset_sizes(h, w, uniq, (KY, KX), geo.stride, unions) * q2  # interior axons per (block, channel)
            S = np.where(uniq == 0, 0, S)
            per_c = S[u_idx]                                             # (r, C_in)
            csum = np.concatenate([np.zeros((r, 1), np.int64), np.cumsum(per_c, axis=1)], axis=1)
            nty, ntx = ceil_div(Ho, h), ceil_div(Wo, w)
            tiles_xy = nty * ntx
            border = _border_factor(Ho, geo.cells[0], h, geo.stride[0], geo.padding[0], KY) * \
                _border_factor(Wo, geo.cells[1], w, geo.stride[1], geo.padding[1], KX)
            for q, gb, parts, adders, adder_axons in per_q:
                axons_gk = csum[:, gb[1:]] - csum[:, gb[:-1]]             # (r, q) interior axons of a tile
                if axons_gk.max() > A:
                    continue
                x_src = float(axons_gk.sum()) * tiles_xy * border
                splitters = max(0.0, x_src - sources) if source_on_chip else 0.0
                slots = parts + adders + splitters
                axons = x_src + adder_axons
                tiles = r * q * tiles_xy
                est = max(slots / N, axons / A, tiles)
                scored.append((est, q, r, h, w))
    if not scored:
        raise ValueError("no tiling fits the core")  # unreachable: one channel per group at 1 x 1 fits
    scored.sort()
    return [ConvTiling(groups=q, blocks=r, tile=(h, w), estimate=round(e, 2)) for e, q, r, h, w in scored[:top]]


def tiling_stats(mask, geo: ConvGeometry, tiling: ConvTiling, core: CoreSpec = CoreSpec()) -> dict:
    """Exact resources of a tiling on the unrolled mask: tiles, parts (items) and axons of every tile, the
    axon instances of all tiles and the sources they read (what the packer then places)."""
    m = mask if sp.isspmatrix_csr(mask) else sp.csr_matrix(mask)
    pl = tile_placement(m, geo, tiling)
    syn_tile = pl.item_core[pl.syn_item]
    keys = np.unique(syn_tile * np.int64(m.shape[1]) + m.indices)
    axons = np.bincount(keys // m.shape[1], minlength=pl.cores)
    parts = np.bincount(pl.item_core, minlength=pl.cores)
    per_neuron = np.bincount(pl.item_neuron, minlength=m.shape[0])
    return {"tiling": tiling.to_dict(), "tiles": pl.cores, "tile_axons": axons, "tile_parts": parts,
            "max_axons": int(axons.max()) if axons.size else 0, "max_parts": int(parts.max()) if parts.size else 0,
            "axon_instances": int(axons.sum()), "sources_read": int(np.unique(m.indices).size),
            "parts": int(pl.item_neuron.size), "split_neurons": int((per_neuron >= 2).sum()),
            "fits": bool((axons <= core.axons).all() and (parts <= core.neurons).all())}


# ----------------------------------------------------------------------------------------------
# Source tiles: each source on exactly one core, neurons split by where their inputs lie
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceTiling:
    """Input-stationary tiling: the *sources* are cut into ``groups`` input-channel groups (balanced,
    contiguous) x rectangles of ``region = (hy, wx)`` cells of the cell grid, and the output channels into
    ``blocks`` (balanced, contiguous); a source tile (block B, group G, region Q) holds one axon for every
    source of G x Q, and a part of every neuron of B that reads one of them (the neuron's synapses from
    those sources). With one block every source has one axon (no splitters), at the price of neurons
    split wherever their receptive field crosses a region or a group (partial sums, added by the adder
    trees); each further block reads the sources again (a splitter each). On a sparse layer whose
    sources are read by few neurons this trades the halo's splitters of output tiles for partial sums::

        axons(tile) = q_y q_x |G| hy wx                       (at most; sources never read take none)
        parts(tile) = sum_{o in B} |{p : (s p - pad + U_o(G)) meets Q}|  = sum_{o in B} |Q + U_o(G)| (stride 1)

    with ``U_o(G)`` the union of output channel o's footprints on the group's channels. Such a
    placement splits neurons by tap as well as by channel, so the local bound
    (:mod:`hw_models.conv_bound`) does not cover it: a layer placed this way is charged the packed
    rules' bound only. ``estimate``: the estimated cores of :func:`candidate_source_tilings`."""

    groups: int
    region: Tuple[int, int]
    blocks: int = 1
    estimate: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "region", (int(self.region[0]), int(self.region[1])))
        if self.groups < 1 or self.blocks < 1 or min(self.region) < 1:
            raise ValueError(f"groups, blocks and region sides must be positive, got {self}")

    def to_dict(self) -> dict:
        return asdict(self)


def source_tile_placement(mask, geo: ConvGeometry, tiling: SourceTiling) -> _Placement:
    """The packer's placement of the unrolled ``mask`` under a :class:`SourceTiling`: item = (neuron,
    source tile), block = source tile (numbered compactly, empty tiles dropped)."""
    if tiling.groups > geo.in_channels or tiling.blocks > geo.out_channels:
        raise ValueError(f"{tiling} has more groups or blocks than the layer's {geo.in_channels} input and "
                         f"{geo.out_channels} output channels")
    m = mask if sp.isspmatrix_csr(mask) else sp.csr_matrix(mask)
    if m.shape != (geo.neurons, geo.sources):
        raise ValueError(f"mask shape {m.shape} does not match the geometry ({geo.neurons}, {geo.sources})")
    H, W = geo.source_hw
    (qy, qx), (hy, wx) = geo.block, tiling.region
    nry, nrx = ceil_div(geo.cells[0], hy), ceil_div(geo.cells[1], wx)
    j = m.indices.astype(np.int64)
    c, Y, X = j // (H * W), (j // W) % H, j % W
    o = _rows(m) // (geo.out_hw[0] * geo.out_hw[1])
    grp = _group_of(geo.out_channels, tiling.blocks)[o] * tiling.groups + _group_of(geo.in_channels, tiling.groups)[c]
    tile = (grp * nry + (Y // qy) // hy) * nrx + (X // qx) // wx
    T = tiling.groups * tiling.blocks * nry * nrx
    keys, syn_item = np.unique(_rows(m) * T + tile, return_inverse=True)
    ids, item_core = np.unique(keys % T, return_inverse=True)
    return _Placement(f"srctiles{tiling.groups}x{tiling.blocks}@{hy}x{wx}", keys // T, item_core.astype(np.int64),
                      syn_item.reshape(-1).astype(np.int64), int(ids.size))


def candidate_source_tilings(geo: ConvGeometry, core: CoreSpec = CoreSpec(), *, top: int = 2,
                             max_splits: int = 24) -> List[SourceTiling]:
    """The ``top`` source tilings (:class:`SourceTiling`) by estimated cores, best first; [] for strided
    layers (the estimate counts parts for stride 1) or when none fits.

    Feasible: ``q_y q_x ceil(C_in / q) hy wx <= A`` axons and interior parts ``max_{b,g} sum_{o in b}
    |Q + U_o(g)| <= N``. Estimate, with every region scaled by its share of the cell grid (``parts``
    summed over all tiles; a neuron in more than one tile gets an adder whose inputs are its parts; a
    source read by r blocks has r axons, r - 1 of them fed by splitters)::

        adders = min(neurons, parts - neurons)          slots = parts + adders + splitters
        axons  = sources read x r + (parts if adders else 0),   splitters = sources read x (r - 1)
        cores ~ max(slots / N, axons / A)           (small source tiles of a layer may share a core)
    """
    if geo.stride != (1, 1):
        return []
    A, N = core.axons, core.neurons
    KY, KX = geo.kernel
    q2 = geo.cell_size
    Hc, Wc = geo.cells
    fp = geo.footprints()
    neurons = geo.neurons
    sources = int((fp != 0).any(0).sum()) * Hc * Wc * q2
    scored = []
    for q in sorted(set(_distinct_splits(geo.in_channels, max_splits))):
        gb = balanced_bounds(geo.in_channels, q)
        g_max = int(np.diff(gb).max())
        U = np.bitwise_or.reduceat(fp, gb[:-1], axis=1)                  # (C_out, q) footprint unions
        uniq, u_idx = np.unique(U, return_inverse=True)
        u_idx = u_idx.reshape(U.shape)
        unions = _row_unions(uniq, KY, KX)
        for hy in range(1, Hc + 1):
            for wx in range(1, Wc + 1):
                if q2 * g_max * hy * wx > A:
                    break
                S = np.where(uniq == 0, 0, sumset_sizes(hy, wx, uniq, (KY, KX), (1, 1), unions))
                per_o = S[u_idx]                                          # (C_out, q) interior parts
                parts = float(per_o.sum()) * Hc * Wc / (hy * wx)
                adders = min(float(neurons), max(0.0, parts - neurons))
                csum = np.concatenate([np.zeros((1, q), np.int64), np.cumsum(per_o, axis=0)])
                for r in _distinct_splits(geo.out_channels, max_splits):
                    ob = balanced_bounds(geo.out_channels, r)
                    if (csum[ob[1:]] - csum[ob[:-1]]).max() > N:
                        continue
                    axons = sources * r + (parts if adders else 0.0)
                    est = max((parts + adders + sources * (r - 1)) / N, axons / A)
                    scored.append((est, q, r, hy, wx))
                    break  # more blocks only add splitters once the tiles fit
    scored.sort()
    return [SourceTiling(groups=q, region=(hy, wx), blocks=r, estimate=round(e, 2)) for e, q, r, hy, wx in scored[:top]]
