"""A lower bound on TrueNorth cores that understands the local connectivity of convolutions.

The packed rules' bound (:func:`hw_models.packing.network_lower_bound`) counts every source once and
every neuron once, so it cannot see what makes a convolution expensive: the neurons of a core read
overlapping patches whose union (the *halo* of a tile) grows faster than the neurons it feeds, a
source read by several cores needs splitters, and a neuron whose inputs do not fit one core is split
into partial sums. This bound charges those costs, for every **tile placement**: a placement in which
each core holds, of a conv layer, at most one tile = the parts of the neurons (o, p), o in a set O of
output channels, p in a rectangle R of h x w output positions, each part holding the neuron's synapses
from a set G of input channels (Esser et al., PNAS 2016, spatial tiling with feature groups; the tiles
of a layer may differ in size, shape, channels and groups). Everything else (adders, splitters, other
layers, linear layers, merged anywhere) follows the packed rules. :mod:`hw_models.conv_mapping`
produces such placements, so its cores are never below this bound (``tests/test_hw_conv_mapping.py``).

**Resources of one input channel of a tile** (notation of :mod:`hw_models.conv_geometry`; q^2 sources
per cell). Let the tile's readers of channel c (its output channels that read c) have footprints inside
the tap set U; the channel then reads the cells ``S(U) = |clip(s R + U)|`` (exact, row by row, with the
lines of R's kernel window that fall outside the map removed: :func:`hw_models.conv_geometry.sumset_rows`)
and gives at most ``P(U)`` (neuron, channel) pairs: the sum, over the positions of R, of the readers
whose footprint meets the taps that land inside the map there (``P = h w cnt(U)`` inside the map;
``cnt(U)`` = the most readers of one input channel whose footprints fit in U, for all 2^(KY KX) tap sets
at once by a subset-sum transform). With alpha = q^2 S the axons of the channel::

    pairs_c <= pi(alpha) = max { min(P(U), N) : q^2 S(U) <= alpha }     (a part holds <= 1 pair per channel)
    axons per pair >= f(alpha) = alpha / pi(alpha)

**A part of g channels.** Its channels share the tile's A axons (sum of alpha_c <= A), so by Jensen's
inequality on the greatest convex minorant f^ of f, its g pairs take at least ``g F_g`` axons with
``F_g = min { f^(alpha) : alpha <= A / g }``: a whole neuron (g = C_i, every channel in one tile)
pays with small tiles, a neuron split into feature groups pays an adder. Taken over every shape
h x w <= N positions, every anchor of R containing the pair's position (its clipping), for layers of
at most 12 taps (else one tap: S >= the positions whose tap lands inside). A tile's channels may
choose their readers independently here (the bound does not tie them to one set O), which keeps it a
bound and is where it is loosest on sparse layers.

**Charging each (neuron, channel) pair.** A core's capacity is 1 = its N neuron slots and its A axons
in any convex combination: for every lambda in [0, 1], each core gives at most ``lambda slots / N +
(1 - lambda) axons / A <= 1``. The pair of neuron i (C_i input channels, fan-in f_i) in a part of g
channels is charged::

    lambda / (N g)                                      its share of the part's slot
  + (lambda on / N + (1 - lambda) / A) F_g              its share of the tile's axons and of the splitters
  + [g < C_i or f_i > A] ((1 - lambda) / (A g) + lambda / (N C_i))   the adder: an input per part, a slot

minimised over g and the shape. Splitters: a source on chip read by k tiles (k cores, one tile per
layer per core) needs k - 1 splitter neurons (packed rules), so the splitters are the axon instances of
the layer's tiles minus its sources read (``on`` = 1 for on-chip sources, and the layer's charge
subtracts ``lambda S_used / N``). Every term is a resource the tile or the rules force and each pair lies
in exactly one part, so the layer's lambda-cost (plus lambda / N per neuron without synapses) is at most
its share of the cores. Each layer takes the larger of this and the packed bound's own resources
(``lambda U_l / N + (1 - lambda) X_l / A``, valid for any placement), layers not placed as tiles only
the latter, and (lambda on a grid of 21 values; any one gives a bound)::

    LB_local = max( max_lambda ceil( sum_l cost_l(lambda) ),  network_lower_bound )

What it does not cover: placements that split neurons in other ways than by input channel (by tap,
say), or hold several tiles of one layer on one core; those are bounded by the packed bound only.
For a full k x k footprint and an interior h x w tile ``S = (s(h-1)+k)(s(w-1)+k)``, Esser et al.'s
tile: ``C_in_used (s(h-1)+k)(s(w-1)+k)`` axons for the tile's parts, and no tile of that shape reads
fewer, since every reader's footprint is the whole window.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import List, Optional, Set, Tuple

import numpy as np

from .conv_geometry import ConvGeometry, _row_unions, sumset_rows, window_clip
from .cores import CoreSpec, ceil_div
from .truenorth import adder_tree, as_csr

LAMBDAS = np.linspace(0.0, 1.0, 21)
EXACT_TAPS = 12  # footprints of up to this many taps get the exact minimal union


@dataclass(frozen=True)
class LocalBound:
    """The local lower bound (module docstring): its cores, the lambda that gives them, and every layer's
    lambda-cost there (in cores, local and the packed bound's own)."""

    cores: int
    network_bound: int
    lam: float
    layer_cost: Tuple[Tuple[str, float, float], ...]   # (layer, local cost, packed-rules cost) at lam

    def __post_init__(self):
        if self.cores < self.network_bound:
            raise ValueError("the local bound is never below the packed rules' bound")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layer_cost"] = [list(x) for x in self.layer_cost]
        return d


def min_union_counts(geo: ConvGeometry, inside: int = -1) -> np.ndarray:
    """cnt[U] = max over input channels c of #{o : D_oc subset of U, D_oc meets ``inside``}, for every tap
    set U (bitmask): the most readers of one channel whose footprints fit in U. ``inside``: the taps that
    land inside the map for some position of the tile (-1: all); a reader with no such tap reads
    nothing there."""
    KK = geo.kernel[0] * geo.kernel[1]
    fp = geo.footprints()
    hist = np.zeros((geo.in_channels, 1 << KK), dtype=np.int64)
    o, c = np.nonzero(fp & inside)
    np.add.at(hist, (c, fp[o, c]), 1)
    idx = np.arange(1 << KK)
    for b in range(KK):  # subset sums: hist[U] <- sum over subsets of U
        low = idx[(idx >> b) & 1 == 0]
        hist[:, low | (1 << b)] += hist[:, low]
    return hist.max(0)


@functools.lru_cache(maxsize=4096)
def _live_taps(n: int, stride: int, K: int, lost: Tuple[int, int]) -> Tuple[List[np.ndarray], List[int]]:
    """The taps of one axis that land inside the map, for the n positions of a rectangle side whose
    window loses ``lost = (before, after)`` lines to the map's edges: the distinct (K,) bool patterns
    and how many positions have each."""
    L = stride * (n - 1) + K
    line = stride * np.arange(n)[:, None] + np.arange(K)[None, :]
    v = (line >= lost[0]) & (line < L - lost[1])
    pats, counts = np.unique(v, axis=0, return_counts=True)
    return list(pats), [int(c) for c in counts]


def _reachable(clips: np.ndarray, n_out: int, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Distinct clip pairs of one axis and, per output line, which of them the anchors of a rectangle
    side ``size`` containing that line reach: (pairs (k, 2), reach (n_out, k) bool)."""
    pairs, inv = np.unique(clips, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    reach = np.zeros((n_out, pairs.shape[0]), dtype=bool)
    for y in range(n_out):
        reach[y, inv[max(0, y - size + 1):min(y, n_out - size) + 1]] = True
    return pairs, reach


def _neuron_classes(geo: ConvGeometry, A: int) -> Tuple[np.ndarray, np.ndarray]:
    """(C, big), each (C_out, Ho, Wo): the input channels every neuron reads (inside the map) and
    whether its fan-in exceeds A."""
    fp = geo.footprints()
    tv_y, tv_x = geo.tap_valid()
    KY, KX = geo.kernel
    ry, iy = np.unique(tv_y, axis=0, return_inverse=True)
    rx, ix = np.unique(tv_x, axis=0, return_inverse=True)
    bits = np.int64(1) << np.arange(KY * KX, dtype=np.int64)
    C = np.zeros((ry.shape[0], rx.shape[0], fp.shape[0]), dtype=np.int64)
    f = np.zeros_like(C)
    for a in range(ry.shape[0]):
        for b in range(rx.shape[0]):
            hit = fp & int(((ry[a][:, None] & rx[b][None, :]).reshape(-1) * bits).sum())
            C[a, b] = (hit != 0).sum(1)
            f[a, b] = sum(((hit >> t) & 1).sum(1) for t in range(KY * KX)) * geo.cell_size
    iy, ix = iy.reshape(-1), ix.reshape(-1)
    Cn = C[iy[:, None], ix[None, :]].transpose(2, 0, 1)          # (C_out, Ho, Wo)
    big = f[iy[:, None], ix[None, :]].transpose(2, 0, 1) > A
    return Cn, big


def _lower_hull(x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Vertices of the lower convex hull of points sorted by x (monotone chain)."""
    hx: List[float] = []
    hy: List[float] = []
    for xi, yi in zip(x.tolist(), y.tolist()):
        while len(hx) >= 2 and (hy[-1] - hy[-2]) * (xi - hx[-2]) >= (yi - hy[-2]) * (hx[-1] - hx[-2]):
            hx.pop()
            hy.pop()
        hx.append(xi)
        hy.append(yi)
    return np.array(hx), np.array(hy)


def _share_per_channel_count(S: np.ndarray, P: np.ndarray, A: int, N: int, G: int) -> np.ndarray:
    """F[k, g - 1] (g = 1..G) for every clip class k (rows of S and P): the fewest axons per (neuron,
    channel) pair of a part reading g channels in one tile of this shape and clip class; inf when g
    channels cannot fit (module docstring).

    ``S[k, U]``: sources one channel of the tile reads when its readers' footprints lie in U; ``P[k, U]``:
    the most pairs those readers give. With alpha the axons of one of the part's channels, its pairs are
    at most pi(alpha) = max{min(P(U), N) : S(U) <= alpha}, so it costs f(alpha) = alpha / pi(alpha) per
    pair; the part's channels share the tile's A axons, so by Jensen's inequality on the convex minorant
    f^ the part pays at least g * min{f^(alpha) : alpha <= A / g} for its g pairs. f grows linearly
    between the steps of pi, so f^ is the lower hull of the points (s, s / pi(s)) at the steps and of
    (A, A / pi(A))."""
    K = S.shape[0]
    F = np.full((K, G), np.inf)
    Sl = np.where((P > 0) & (S <= A), S, np.inf).astype(float)
    order = np.argsort(Sl, axis=1, kind="stable")
    s_sorted = np.take_along_axis(Sl, order, 1)
    run = np.maximum.accumulate(np.where(np.isfinite(s_sorted), np.minimum(np.take_along_axis(P, order, 1), N), 0.0),
                                axis=1)
    budgets = (A // np.arange(1, G + 1)).astype(float)
    for k in range(K):
        fin = np.isfinite(s_sorted[k])
        if not fin.any():
            continue
        xs_all, run_k = s_sorted[k][fin], run[k][fin]
        last = np.flatnonzero(np.append(xs_all[1:] != xs_all[:-1], True))
        xs, pis = xs_all[last], run_k[last]
        keep = np.append(True, pis[1:] > pis[:-1])              # pi jumps here
        xs, pis = xs[keep], pis[keep]
        if xs[-1] < A:
            xs, pis = np.append(xs, float(A)), np.append(pis, run_k[-1])
        hx, hy = _lower_hull(xs, xs / pis)
        b = np.minimum(budgets, hx[int(np.argmin(hy))])          # prefix min of a convex f^
        ok = b >= hx[0]
        F[k, ok] = np.interp(b[ok], hx, hy)
    return F


def conv_layer_cost(geo: ConvGeometry, sources_used: int, core: CoreSpec = CoreSpec(), *,
                    source_on_chip: bool = True, lambdas: np.ndarray = LAMBDAS, detail: bool = False):
    """The layer's lambda-cost in cores for every lambda (module docstring): a lower bound on its share
    of the cores in any tile placement. ``detail``: also return the charge of a pair (lambda, position,
    neuron class) and the pairs of each (position, class)."""
    A, N = core.axons, core.neurons
    Ho, Wo = geo.out_hw
    KY, KX = geo.kernel
    KK = KY * KX
    q2 = geo.cell_size
    sy, sx = geo.stride
    on = 1.0 if source_on_chip else 0.0
    lam = np.asarray(lambdas, dtype=float)[:, None, None, None]      # (L, 1, 1, 1)
    kappa = lam * on / N + (1.0 - lam) / A
    exact = KK <= EXACT_TAPS
    counts = {}  # inside-taps bitmask -> min_union_counts

    def cnt_for(inside: int) -> np.ndarray:
        if inside not in counts:
            counts[inside] = min_union_counts(geo, inside)
        return counts[inside]

    M = int((geo.footprints() != 0).sum(0).max())  # most readers of one input channel
    bits = (np.int64(1) << np.arange(KK, dtype=np.int64)).reshape(KY, KX)
    C, big = _neuron_classes(geo, A)
    orphans = int((C == 0).sum())
    G = max(1, int(C.max()))
    # neuron classes (C_i, fan-in > A); the charge is computed for every class at every position
    C_vals, inv = np.unique(np.stack([C, big.astype(np.int64)], -1).reshape(-1, 2), axis=0, return_inverse=True)
    inv = inv.reshape(C.shape)
    Cv, bigv = C_vals[:, 0], C_vals[:, 1].astype(bool)
    Cv_safe = np.maximum(Cv, 1)
    gs = np.arange(1, G + 1, dtype=float)
    best = np.full((lam.shape[0], Ho, Wo, Cv.size), np.inf)
    all_masks = np.arange(1 << KK, dtype=np.int64) if exact else None
    unions = _row_unions(all_masks, KY, KX) if exact else None
    for h in range(1, Ho + 1):
        py_, reach_y = _reachable(window_clip(Ho, geo.cells[0], h, sy, geo.padding[0], KY), Ho, h)
        pat_y, row_of = np.unique(reach_y, axis=0, return_inverse=True)
        for w in range(1, Wo + 1):
            if h * w > N or M == 0:
                continue
            px_, reach_x = _reachable(window_clip(Wo, geo.cells[1], w, sx, geo.padding[1], KX), Wo, w)
            pat_x, col_of = np.unique(reach_x, axis=0, return_inverse=True)
            F = np.full((py_.shape[0], px_.shape[0], G), np.inf)       # per clip class
            S_all, P_all, where = [], [], []
            for bx, (left, right) in enumerate(px_.tolist()):
                cols_v, beta = _live_taps(w, sx, KX, (int(left), int(right)))
                if exact:
                    rows = np.cumsum(np.vstack([np.zeros((1, all_masks.size), np.int64),
                                                sumset_rows(h, w, all_masks, (KY, KX), geo.stride, (left, right),
                                                            unions)]), 0)
                for by, (top, bottom) in enumerate(py_.tolist()):
                    rows_v, alpha = _live_taps(h, sy, KY, (int(top), int(bottom)))
                    if exact:
                        S = q2 * np.maximum(1, rows[rows.shape[0] - 1 - bottom] - rows[top])
                        P = np.zeros(all_masks.size)
                        for vr, a_ in zip(rows_v, alpha):
                            for vc, b_ in zip(cols_v, beta):
                                inside = int((bits * (vr[:, None] & vc[None, :])).sum())
                                if inside:
                                    P += a_ * b_ * cnt_for(inside)
                    else:  # one tap per channel: the positions whose tap lands inside the map
                        kept = max(1, max(0, h - ceil_div(top, sy) - ceil_div(bottom, sy)) *
                                   max(0, w - ceil_div(left, sx) - ceil_div(right, sx)))
                        S, P = np.array([q2 * kept]), np.array([float(h * w * M)])
                    S_all.append(S)
                    P_all.append(P)
                    where.append((by, bx))
            Fk = _share_per_channel_count(np.stack(S_all), np.stack(P_all), A, N, G)
            for (by, bx), f in zip(where, Fk):
                F[by, bx] = f
            # per pattern of reachable classes: the cheapest class (a relaxation: any anchor may be used)
            Fp = np.full((pat_y.shape[0], pat_x.shape[0], G), np.inf)
            for i in range(pat_y.shape[0]):
                Fi = F[pat_y[i]].min(0)                                    # (kx, G)
                for j in range(pat_x.shape[0]):
                    Fp[i, j] = Fi[pat_x[j]].min(0)
            # charge of a pair of a neuron of class (C_i, big) in a part of g channels, the best g
            share = np.where(np.isinf(Fp)[None], np.inf, kappa * np.where(np.isinf(Fp), 0.0, Fp)[None])
            split = lam / (N * gs) + share + (1.0 - lam) / (A * gs)                 # (L, ny, nx, G)
            split_best = np.minimum.accumulate(split, axis=-1)                    # best g' <= g
            idx = np.clip(Cv - 2, 0, G - 1)                                       # g <= C_i - 1
            cost_split = np.where(Cv[None, None, None, :] >= 2, split_best[..., idx], np.inf) \
                + lam / (N * Cv_safe)
            whole_g = np.clip(Cv - 1, 0, G - 1)
            cost_whole = lam / (N * Cv_safe) + share[..., whole_g]
            cost_whole = np.where(bigv | (Cv < 1), np.inf, cost_whole)
            cost = np.minimum(cost_split, cost_whole)                             # (L, ny, nx, classes)
            np.minimum(best, cost[:, row_of.reshape(-1)][:, :, col_of.reshape(-1)], out=best)
    pairs = np.zeros((Ho, Wo, Cv.size))
    yy, xx = np.meshgrid(np.arange(Ho), np.arange(Wo), indexing="ij")
    np.add.at(pairs, (np.broadcast_to(yy, C.shape).reshape(-1), np.broadcast_to(xx, C.shape).reshape(-1),
                      inv.reshape(-1)), C.reshape(-1).astype(float))
    per_pair = np.where(pairs[None] > 0, best, 0.0)
    total = (per_pair * pairs[None]).sum((1, 2, 3))
    cost = total + lam[:, 0, 0, 0] * (orphans - on * sources_used) / N
    if detail:
        return cost, per_pair, pairs
    return cost


def packed_layer_resources(mask, core: CoreSpec, source_on_chip: bool) -> Tuple[int, int]:
    """(U, X): the neurons and axons one layer needs at least under the packed rules (the terms of
    :func:`hw_models.packing.network_lower_bound`)."""
    A, N = core.axons, core.neurons
    f = np.diff(mask.indptr).astype(np.int64)
    F = np.bincount(mask.indices, minlength=mask.shape[1]).astype(np.int64)
    c = ceil_div(f[f > A], A)
    adder_items, sub, _ = adder_tree(c, A)
    k = ceil_div(F[F > 0], N)
    split = int((k - 1).sum()) if source_on_chip else 0
    return mask.shape[0] + int(c.sum()) + sub + split, int(k.sum()) + int(adder_items.sum())


def local_lower_bound(layers, core: CoreSpec = CoreSpec(), *, network_bound: int = 0,
                      lambdas: np.ndarray = LAMBDAS, tiled: Optional[Set[str]] = None) -> LocalBound:
    """The local lower bound on a whole network's cores under tile placements (module docstring).

    ``layers``: :class:`hw_models.packing.PackLayer` (or unroller) records; those with a geometry are
    charged as convolutions. ``tiled``: the names of the layers placed as tiles (default: every layer with
    a geometry); the others are charged the packed rules' resources only, which hold for any placement.
    ``network_bound``: the packed rules' bound, if known (the result is never below it)."""
    A, N = core.axons, core.neurons
    lam = np.asarray(lambdas, dtype=float)
    total = np.zeros(lam.size)
    parts: List[Tuple[str, np.ndarray, np.ndarray]] = []
    for l in layers:  # PackLayer or unroller records: a mask, whether its sources are on chip, a geometry
        U, X = packed_layer_resources(as_csr(l.mask), core, bool(l.source_on_chip))
        packed = lam * U / N + (1.0 - lam) * X / A
        local = packed
        if getattr(l, "geometry", None) is not None and (tiled is None or l.name in tiled):
            used = int(np.count_nonzero(np.diff(l.mask.tocsc().indptr)))
            local = np.maximum(packed, conv_layer_cost(l.geometry, used, core, source_on_chip=l.source_on_chip,
                                                       lambdas=lam))
        total += local
        parts.append((l.name, local, packed))
    j = int(np.argmax(total))
    cores = max(math.ceil(total[j] - 1e-9), int(network_bound))
    return LocalBound(cores=cores, network_bound=int(network_bound), lam=float(lam[j]),
                      layer_cost=tuple((n, round(float(a[j]), 3), round(float(b[j]), 3)) for n, a, b in parts))


__all__ = ["LocalBound", "conv_layer_cost", "local_lower_bound", "min_union_counts", "packed_layer_resources"]
