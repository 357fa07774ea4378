"""Conv-aware TrueNorth mapping: the geometry is the unrolled mask, tiles hold every synapse once and fit
their cores, a hand-computed tiling, the local bound below every tile placement, and the energy report."""
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from esl_deploy.hw_models import conv_mapping
from esl_deploy.hw_models.conv_bound import local_lower_bound
from esl_deploy.hw_models.conv_geometry import ConvGeometry, sumset_sizes, window
from esl_deploy.hw_models.conv_mapping import (ConvTiling, SourceTiling, candidate_source_tilings, candidate_tilings,
                                               source_tile_placement, tile_placement, tiling_stats)
from esl_deploy.hw_models.cores import CoreSpec
from esl_deploy.hw_models.packing import PackLayer, network_lower_bound, pack_network
from esl_deploy.hw_models.unroll import _bool_product, pool_matrix, synaptic_layers, unroll_conv2d
from esl_deploy.masks import LayerShape, layer_densities, random_mask, sparsifiable
from esl_deploy.models import ModelSpec, build_model


def _conv(c_in, c_out, k=3, density=1.0, seed=0, **kw):
    torch.manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, k, bias=False, **kw)
    if density < 1.0:
        with torch.no_grad():
            conv.weight.mul_(random_mask(tuple(conv.weight.shape), density, torch.Generator().manual_seed(seed)))
    return conv


def _out_hw(conv, hw):
    with torch.no_grad():
        return tuple(conv(torch.zeros(1, conv.in_channels, *hw)).shape[2:])


def _masked_model(name, shape, width, seed=0):
    """A project net with random masks at its ESL (ERK, 10 %) densities, as the benchmark uses."""
    torch.manual_seed(seed)
    m = build_model(ModelSpec(name, shape, 10, width=width))
    ps = sparsifiable(m)
    d = layer_densities([LayerShape(n, tuple(p.shape)) for n, p in ps], 0.1, "erk")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in ps:
            p.mul_(random_mask(tuple(p.shape), d[n], g))
    return m


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=1, stride=2), dict(padding=2, dilation=2),
                                dict(padding="same"), dict(padding=0), dict(padding=1, groups=2)])
def test_geometry_unrolls_to_the_unrollers_mask(kw):
    conv = _conv(4, 6, density=0.4, seed=3, **kw)
    hw = (9, 7)
    out = _out_hw(conv, hw)
    g = ConvGeometry.from_conv(conv, (4, *hw), out)
    assert (g.unrolled() != unroll_conv2d(conv, (4, *hw), out)).nnz == 0


def test_geometry_with_pooling_folded_in_is_the_folded_mask():
    """AvgPool2d(2) on an odd 7 x 9 map (its last row and column are never read), then a 3x3 conv."""
    conv = _conv(3, 5, density=0.5, seed=1, padding=1)
    pool = nn.AvgPool2d(2)
    cells = (3, 3, 4)
    out = _out_hw(conv, cells[1:])
    folded = _bool_product(unroll_conv2d(conv, cells, out), pool_matrix(pool, (3, 7, 9), cells[1:]))
    g = ConvGeometry.from_conv(conv, cells, out, block=(2, 2), source_hw=(7, 9))
    assert g.sources == 3 * 7 * 9 and (g.unrolled() != folded).nnz == 0


@pytest.mark.parametrize("name,width", [("convnet", 0.25), ("vggsnn", 0.125), ("resnet19", 0.125)])
def test_every_conv_of_the_project_nets_has_its_geometry(name, width):
    model = _masked_model(name, (1, 28, 28), width)
    convs = [n for n, mod in model.named_modules() if isinstance(mod, nn.Conv2d)]
    layers = {l.name: l for l in synaptic_layers(model)}
    assert len(convs) >= 2
    for n in convs:
        g = layers[n].geometry
        assert g is not None and (g.unrolled() != layers[n].mask).nnz == 0, n


def test_sumset_sizes_count_the_window_and_give_esser_for_a_full_kernel():
    rng = np.random.default_rng(0)
    masks = rng.integers(1, 1 << 9, size=40)
    for h, w, s in [(1, 1, (1, 1)), (3, 4, (1, 1)), (2, 5, (2, 1)), (4, 2, (2, 2))]:
        got = sumset_sizes(h, w, masks, (3, 3), s)
        assert list(got) == [int(window(h, w, int(u), (3, 3), s).sum()) for u in masks]
        assert sumset_sizes(h, w, np.array([511]), (3, 3), s)[0] == (s[0] * (h - 1) + 3) * (s[1] * (w - 1) + 3)


# ----------------------------------------------------------------------------------------------
# Tile placements: every synapse once, every core within its axons and neurons
# ----------------------------------------------------------------------------------------------

def _check_placement(m, g, tiling, core):
    """Recount a tiling's placement synapse by synapse (no vectorised shortcut)."""
    pl = tile_placement(m, g, tiling)
    m = m.tocsr()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    assert pl.syn_item.size == m.nnz                                   # every synapse placed once
    assert np.array_equal(pl.item_neuron[pl.syn_item], rows)           # in a part of its own neuron
    H, W = g.source_hw
    Ho, Wo = g.out_hw
    h, w = tiling.tile
    nty, ntx = tiling.grid(g)
    groups = np.searchsorted(conv_mapping.balanced_bounds(g.in_channels, tiling.groups), np.arange(g.in_channels),
                             side="right") - 1
    blocks = np.searchsorted(conv_mapping.balanced_bounds(g.out_channels, tiling.blocks),
                             np.arange(g.out_channels), side="right") - 1
    axons, parts = {}, {}
    for k in range(m.nnz):
        i, j = int(rows[k]), int(m.indices[k])
        o, y, x = i // (Ho * Wo), (i // Wo) % Ho, i % Wo
        tile = (int(blocks[o]), y // h, x // w, int(groups[j // (H * W)]))
        item = int(pl.syn_item[k])
        assert tile[3] == groups[j // (H * W)]
        axons.setdefault(tile, set()).add(j)
        parts.setdefault(tile, set()).add(item)
    # one block per tile; the parts of a tile are its neurons' parts; recounted axons fit
    core_of = {}
    for tile, items in parts.items():
        cores = {int(pl.item_core[it]) for it in items}
        assert len(cores) == 1
        core_of[tile] = cores.pop()
    assert len(set(core_of.values())) == len(core_of) == pl.cores
    st = tiling_stats(m, g, tiling, core)
    assert sorted(len(a) for a in axons.values()) == sorted(st["tile_axons"].tolist())
    assert st["axon_instances"] == sum(len(a) for a in axons.values())
    return max(len(a) for a in axons.values()), max(len(p) for p in parts.values())


@pytest.mark.parametrize("seed,kw,pool", [(0, dict(padding=1), (1, 1)), (1, dict(padding=1, stride=2), (1, 1)),
                                          (2, dict(padding=1), (2, 2)), (3, dict(padding=0), (1, 1))])
def test_every_tiling_of_a_small_layer_places_each_synapse_once_and_fits(seed, kw, pool):
    """Exhaustive over the tilings (groups, blocks, tile) of a 3 -> 4 conv on an 8 x 8 map (cores of 48
    axons x 16 neurons): placements recounted synapse by synapse; every tiling the search calls feasible
    has no tile over 48 axons or 16 parts, and its packed network none over the core either."""
    core = CoreSpec(axons=48, neurons=16)
    conv = _conv(3, 4, density=0.6, seed=seed, **kw)
    cells = (3, 8 // pool[0], 8 // pool[1])
    out = _out_hw(conv, cells[1:])
    g = ConvGeometry.from_conv(conv, cells, out, block=pool, source_hw=(8, 8))
    m = g.unrolled()
    feasible = {(t.groups, t.blocks, t.tile) for t in candidate_tilings(g, core, top=10 ** 6)}
    assert feasible
    for q, r, h, w in itertools.product(range(1, 4), range(1, 5), range(1, out[0] + 1), range(1, out[1] + 1)):
        t = ConvTiling(groups=q, blocks=r, tile=(h, w))
        ax, parts = _check_placement(m, g, t, core)
        if (q, r, (h, w)) in feasible:
            assert ax <= core.axons and parts <= core.neurons
    layer = PackLayer("conv", m, source_on_chip=True, geometry=g)
    p = pack_network([layer], core, per_layer_cores=10 ** 6, tiles_only=True)
    assert p.conv_aware and max(p.core_axons) <= core.axons and max(p.core_neurons) <= core.neurons
    assert p.lower_bound <= p.local_lower_bound <= p.cores


@pytest.mark.parametrize("seed,density,pool,on_chip", [(0, 0.6, (1, 1), True), (1, 0.2, (2, 2), True),
                                                      (2, 1.0, (1, 1), False), (3, 0.3, (2, 2), False)])
def test_every_source_tiling_of_a_small_layer_places_each_synapse_once_and_fits(seed, density, pool, on_chip):
    """Exhaustive over the source tilings (groups, blocks, region) of a 3 -> 4 conv on 8 x 8 sources (cores
    of 48 axons x 16 neurons), recounted synapse by synapse: every synapse in one part of its own neuron;
    a tile's axons are the sources of its group and region that its block reads, and its parts the
    neurons of its block reading one; every tiling the search calls feasible fits (interior counts bound
    the border tiles); packed networks stay within the cores, and with one block no source is split."""
    core = CoreSpec(axons=48, neurons=16)
    conv = _conv(3, 4, density=density, seed=seed, padding=1)
    cells = (3, 8 // pool[0], 8 // pool[1])
    out = _out_hw(conv, cells[1:])
    g = ConvGeometry.from_conv(conv, cells, out, block=pool, source_hw=(8, 8))
    m = g.unrolled().tocsr()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    feasible = {(t.groups, t.blocks, t.region) for t in candidate_source_tilings(g, core, top=10 ** 6)}
    assert feasible
    Ho, Wo = g.out_hw
    for q, r, hy, wx in itertools.product(range(1, 4), range(1, 5), range(1, cells[1] + 1), range(1, cells[2] + 1)):
        t = SourceTiling(groups=q, region=(hy, wx), blocks=r)
        pl = source_tile_placement(m, g, t)
        assert pl.syn_item.size == m.nnz and np.array_equal(pl.item_neuron[pl.syn_item], rows)
        grp = np.searchsorted(conv_mapping.balanced_bounds(3, q), np.arange(3), side="right") - 1
        blk = np.searchsorted(conv_mapping.balanced_bounds(4, r), np.arange(4), side="right") - 1
        axons, parts = {}, {}
        for k in range(m.nnz):
            i, j = int(rows[k]), int(m.indices[k])
            c, Y, X = j // 64, (j // 8) % 8, j % 8
            tile = (int(blk[i // (Ho * Wo)]), int(grp[c]), Y // pool[0] // hy, X // pool[1] // wx)
            axons.setdefault(tile, set()).add(j)
            parts.setdefault(tile, set()).add(i)
            core_of = int(pl.item_core[pl.syn_item[k]])
            assert parts.setdefault(("core",) + tile, {core_of}) == {core_of}     # one block per tile
        tiles = [k for k in parts if k[0] != "core"]
        assert pl.cores == len(tiles)
        assert sorted(len(parts[k]) for k in tiles) == sorted(np.bincount(pl.item_core).tolist())
        if (q, r, (hy, wx)) in feasible:
            assert max(len(a) for a in axons.values()) <= core.axons
            assert max(len(parts[k]) for k in tiles) <= core.neurons
    layer = PackLayer("conv", m, source_on_chip=on_chip, geometry=g)
    p = pack_network([layer], core, per_layer_cores=10 ** 6, tiles_only=True)
    assert max(p.core_axons) <= core.axons and max(p.core_neurons) <= core.neurons
    assert p.lower_bound <= p.local_lower_bound <= p.cores
    one = SourceTiling(groups=1, region=(1, 1))
    if (1, 1, (1, 1)) in feasible:
        pl = source_tile_placement(m, g, one)
        keys = np.unique(pl.item_core[pl.syn_item] * np.int64(m.shape[1]) + m.indices)
        assert keys.size == np.unique(m.indices).size                        # every source on one axon


def test_source_tiles_beat_output_tiles_on_the_sparse_pooled_conv_of_the_mnist_conv_net():
    """The MNIST conv net's second conv (width 1: 16 -> 32 channels on 2 x 2 pooled 28 x 28 spikes, 1.5 %
    of its taps): each source is read by about 4 neurons scattered over channels and positions, so output
    tiles pay a splitter for most halo sources, while source tiles hold every source once; the packing
    with source tiles needs fewer cores, all within 256 x 256, and its local bound charges that layer
    the packed rules only."""
    layers = synaptic_layers(_masked_model("convnet", (1, 28, 28), 1.0))
    out = []
    with_src = pack_network(layers, per_layer_cores=10 ** 6, layers_out=out)
    without = pack_network(layers, per_layer_cores=10 ** 6, source_tiles=False)
    conv2 = next(r for r in out if r["layer"] == "layers.3")
    assert conv2["placement"].startswith("srctiles") and conv2["axon_instances"] == conv2["sources_read"]
    assert conv2["splitters"] == 0 and conv2["bound"] == conv2["bound_packed_rules"]
    assert with_src.cores < 0.8 * without.cores
    assert max(with_src.core_axons) <= 256 and max(with_src.core_neurons) <= 256
    assert with_src.lower_bound <= with_src.local_lower_bound <= with_src.cores


# ----------------------------------------------------------------------------------------------
# A tiling computed by hand
# ----------------------------------------------------------------------------------------------

def test_hand_computed_tiling_of_the_mnist_conv_nets_first_layer():
    """The MNIST conv net's first conv (width 1): 1 -> 16 channels, dense 3x3, padding 1, 28 x 28, reading
    784 off-chip pixels (no splitters): 16 x 784 = 12,544 neurons.

    By hand. A tile holds 16 channels x h x w positions <= 256 parts, so h w <= 16, and any tiling has at
    least 784 / 16 = 49 rectangles; 4 x 4 tiles reach it: 28 / 4 = 7, 7 x 7 = 49 tiles of 16 x 16 = 256
    parts, 49 cores, which is also ceil(12,544 / 256) = 49, the packed rules' bound (no placement does
    better). Other shapes need more: 2 x 8 gives 14 x 4 = 56, 1 x 16 gives 28 x 2 = 56, 3 x 5 gives 10 x 6 = 60.
    Axons: a tile reads its 6 x 6 window of pixels less the padding; along one axis the 7 windows keep
    5, 6, 6, 6, 6, 6, 5 lines (40 in all), so 25 interior tiles read 36, 20 edge tiles 5 x 6 = 30 and 4
    corner tiles 5 x 5 = 25 pixels: 25 x 36 + 20 x 30 + 4 x 25 = 900 + 600 + 100 = 1,600 = 40 x 40 axons.
    Each pixel is sent by the host to every tile that reads it: no splitters, no partial sums (fan-in 9).
    """
    conv = _conv(1, 16, padding=1)
    g = ConvGeometry.from_conv(conv, (1, 28, 28), (28, 28))
    m = g.unrolled()
    assert m.shape == (12544, 784)
    assert candidate_tilings(g, source_on_chip=False)[0].tile == (4, 4)
    st = tiling_stats(m, g, ConvTiling(1, 1, (4, 4)))
    assert (st["tiles"], st["max_parts"], st["axon_instances"]) == (49, 256, 1600)
    assert sorted(st["tile_axons"].tolist()) == [25] * 4 + [30] * 20 + [36] * 25
    layer = PackLayer("conv1", m, source_on_chip=False, geometry=g)
    out = []
    p = pack_network([layer], per_layer_cores=10 ** 6, tiles_only=True, layers_out=out)
    assert (p.cores, p.layer_placements, p.lower_bound, p.local_lower_bound) == (49, ("tiles1x1@4x4",), 49, 49)
    assert set(p.core_neurons) == {256} and sum(p.core_axons) == 1600
    assert (out[0]["parts"], out[0]["axon_instances"], out[0]["splitters"], out[0]["adders"]) == (12544, 1600, 0, 0)


def test_layer_resources_add_up_to_the_cores():
    """The per-layer breakdown of a packed conv net: splitters and partial sums add up to the mapping's, and
    the layers' shares at the bound's lambda plus the cores' unused room (fragmentation, >= 0) are the
    cores; each tiled layer's share is at least its local bound's lambda-cost."""
    layers = synaptic_layers(_masked_model("convnet", (1, 16, 16), 0.25))
    out = []
    p = pack_network(layers, per_layer_cores=10 ** 6, layers_out=out)
    assert [r["layer"] for r in out] == [l.name for l in layers]
    assert sum(r["splitters"] for r in out) == p.splitter_neurons
    assert sum(r["relays"] for r in out) == p.relay_axons
    lam = out[0]["lam"]
    room = sum(1 - lam * n / 256 - (1 - lam) * a / 256 for n, a in zip(p.core_neurons, p.core_axons))
    assert room >= -1e-9 and abs(sum(r["share"] for r in out) + room - p.cores) < 1e-6
    for r in out:
        assert r["share"] >= r["bound_packed_rules"] - 1e-9
        if r["placement"].startswith("tiles"):
            assert r["share"] >= r["bound"] - 1e-9


def test_hand_computed_tilings_of_a_dense_conv():
    """Dense 3x3 conv, 4 -> 8 channels, 8 x 8 map, padding 1, sources on chip (256 sources, 512 neurons).

    4 x 4 tiles (all channels, one group): 4 tiles of 4*4*8 = 128 parts; each tile's 6 x 6 window loses
    one row and one column to the padding, so it reads 4 channels x 5 x 5 = 100 axons: 400 axon instances
    for 256 sources, 144 splitters. 4 x 8 tiles: 2 tiles of 256 parts reading 4 x 5 x 8 = 160 axons: 320
    instances, so 64 sources (the 4 channels x 2 halo rows x 8 columns) are read by both tiles. The two
    tile cores are full (256 neurons), so each of those sources sends its spike to a relay axon on a
    third core, where two splitters feed the tiles' axons: 128 splitter neurons and 64 relay axons on a
    third core; 3 cores, and no placement of 512 neurons + any splitter fits 2 (the unrolled packing's
    grouped placement finds 3 as well).
    """
    conv = _conv(4, 8, padding=1)
    g = ConvGeometry.from_conv(conv, (4, 8, 8), (8, 8))
    m = g.unrolled()
    # per (output, input) channel pair: sum over output rows of the in-bound tap rows is 8 * 3 - 2 = 22
    assert m.shape == (512, 256) and m.nnz == 8 * 4 * 22 * 22
    s44 = tiling_stats(m, g, ConvTiling(1, 1, (4, 4)))
    assert (s44["tiles"], s44["max_parts"]) == (4, 128) and list(s44["tile_axons"]) == [100] * 4
    assert (s44["axon_instances"], s44["sources_read"]) == (400, 256)
    s48 = tiling_stats(m, g, ConvTiling(1, 1, (4, 8)))
    assert (s48["tiles"], s48["max_parts"]) == (2, 256) and list(s48["tile_axons"]) == [160, 160]
    assert s48["axon_instances"] - s48["sources_read"] == 64                   # sources read twice
    layer = PackLayer("conv", m, source_on_chip=True, geometry=g)
    tiled = pack_network([layer], per_layer_cores=10 ** 6, tiles_only=True)
    unrolled = pack_network([layer], per_layer_cores=10 ** 6, conv_aware=False)
    assert (tiled.cores, tiled.splitter_neurons, tiled.relay_axons) == (3, 128, 64)
    assert tiled.layer_placements == ("tiles1x1@4x8",) and tiled.core_neurons == (256, 256, 128)
    assert unrolled.cores == 3
    assert network_lower_bound([layer]).cores == 2 <= tiled.local_lower_bound <= 3


def test_hand_computed_feature_groups_against_the_unrolled_packing(monkeypatch):
    """A VGG-style layer: 2 x 2 average pooling of 8 x 16 x 16 spikes folded into a dense 3x3 conv to 16
    channels (8 x 8 outputs): fan-in 8 x 9 x 4 = 288 > 256, so every neuron needs feature groups.

    By hand, 4 groups of 2 input channels, all 16 output channels, 4 x 4 tiles: 4 groups x 4 rectangles =
    16 tiles of 16 x 16 = 256 parts; a tile's 6 x 6 cell window loses a row and a column to the padding:
    2 channels x 25 cells x 4 sources = 200 axons. Instances 16 x 200 = 3200 for 2048 sources: the 896
    sources of the two shared cell rows and columns (8 channels x (64 - 36) cells x 4) are read by 2 or 4
    tiles (1152 extra axons). Cores: 16 tile cores (full: 256 parts); 1024 adders of 4 inputs, which find
    no neuron slot there, 64 to a core: 16 adder cores (full: 256 axons); each shared source goes to a
    relay axon whose splitters feed its k tiles, 1152 + 896 = 2048 splitter neurons on 896 relay axons:
    8 more cores. 40 cores. The mapper's own tiling is no worse; the unrolled packing needs 96.
    """
    conv = _conv(8, 16, padding=1)
    g = ConvGeometry.from_conv(conv, (8, 8, 8), (8, 8), block=(2, 2), source_hw=(16, 16))
    m = g.unrolled()
    st = tiling_stats(m, g, ConvTiling(4, 1, (4, 4)))
    assert (st["tiles"], st["max_parts"], st["parts"], st["split_neurons"]) == (16, 256, 4096, 1024)
    assert set(st["tile_axons"].tolist()) == {200} and (st["axon_instances"], st["sources_read"]) == (3200, 2048)
    layer = PackLayer("conv", m, source_on_chip=True, geometry=g)
    unrolled = pack_network([layer], per_layer_cores=10 ** 6, conv_aware=False)
    mapped = pack_network([layer], per_layer_cores=10 ** 6)
    monkeypatch.setattr(conv_mapping, "candidate_tilings", lambda *a, **k: [ConvTiling(4, 1, (4, 4))])
    hand = pack_network([layer], per_layer_cores=10 ** 6, tiles_only=True, source_tiles=False)
    assert (hand.cores, hand.splitter_neurons, hand.relay_axons, hand.partial_sum_neurons) == (40, 2048, 896, 4096)
    assert unrolled.cores == 96
    assert mapped.lower_bound <= mapped.local_lower_bound <= mapped.cores <= hand.cores < unrolled.cores


# ----------------------------------------------------------------------------------------------
# The local bound
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,density,on_chip", [(0, 1.0, True), (1, 0.5, True), (2, 0.25, False), (3, 0.5, False)])
def test_local_bound_is_below_every_tiling_of_a_small_layer(monkeypatch, seed, density, on_chip):
    """Every regular tiling (groups, blocks, tile) of a 4 -> 6 conv on 6 x 6 (cores of 64 x 32), packed with
    its adders and splitters, needs at least the local bound's cores."""
    core = CoreSpec(axons=64, neurons=32)
    conv = _conv(4, 6, density=density, seed=seed, padding=1)
    g = ConvGeometry.from_conv(conv, (4, 6, 6), (6, 6))
    layer = PackLayer("conv", g.unrolled(), source_on_chip=on_chip, geometry=g)
    lb = local_lower_bound([layer], core, network_bound=network_lower_bound([layer], core).cores).cores
    feasible = candidate_tilings(g, core, source_on_chip=on_chip, top=10 ** 6)
    best = None
    for t in feasible:
        monkeypatch.setattr(conv_mapping, "candidate_tilings", lambda *a, t=t, **k: [t])
        c = pack_network([layer], core, per_layer_cores=10 ** 6, tiles_only=True, local_bound=False,
                         source_tiles=False).cores
        assert c >= lb, t
        best = c if best is None else min(best, c)
    assert best / lb <= 3


def test_bounds_below_the_packing_of_random_small_conv_stacks():
    """24 random two-conv stacks (channels, density, stride, pooling, cores of 32-64 axons x 16-32 neurons),
    packed with output and source tiles: the packed rules' bound <= the local bound <= the cores, every
    core within its axons and neurons, and the per-layer shares add up to the cores."""
    rng = np.random.default_rng(7)
    for case in range(24):
        core = CoreSpec(axons=int(rng.choice([32, 48, 64])), neurons=int(rng.choice([16, 24, 32])))
        c0, c1, c2 = (int(v) for v in rng.integers(1, 5, size=3))
        hw = int(rng.integers(5, 9))
        pool = int(rng.choice([1, 2]))
        conv1 = _conv(c0, c1, density=float(rng.uniform(0.2, 1.0)), seed=case, padding=1)
        conv2 = _conv(c1, c2, density=float(rng.uniform(0.1, 0.8)), seed=100 + case, padding=1,
                      stride=int(rng.choice([1, 1, 2])))
        out1 = _out_hw(conv1, (hw, hw))
        g1 = ConvGeometry.from_conv(conv1, (c0, hw, hw), out1)
        cells = (c1, out1[0] // pool, out1[1] // pool)
        out2 = _out_hw(conv2, cells[1:])
        g2 = ConvGeometry.from_conv(conv2, cells, out2, block=(pool, pool), source_hw=out1)
        layers = [PackLayer("conv1", g1.unrolled(), source_on_chip=False, geometry=g1),
                  PackLayer("conv2", g2.unrolled(), source_on_chip=True, geometry=g2)]
        out = []
        p = pack_network(layers, core, per_layer_cores=10 ** 6, layers_out=out)
        assert p.lower_bound <= p.local_lower_bound <= p.cores, case
        assert max(p.core_axons) <= core.axons and max(p.core_neurons) <= core.neurons, case
        lam = out[0]["lam"]
        room = sum(1 - lam * n / core.neurons - (1 - lam) * a / core.axons
                   for n, a in zip(p.core_neurons, p.core_axons))
        assert room >= -1e-9, case
        share = sum(lam * (r["parts"] + r["orphans"] + r["adders"] + r["splitters"]) / core.neurons +
                    (1 - lam) * (r["axon_instances"] + r["adder_axons"] + r["relays"]) / core.axons for r in out)
        assert abs(share - sum(r["share"] for r in out)) < 1e-9 and abs(share + room - p.cores) < 1e-6, case


@pytest.mark.parametrize("name,width,shape", [("convnet", 0.25, (1, 28, 28)), ("vggsnn", 0.125, (1, 16, 16))])
def test_tiled_packing_of_the_project_conv_nets_beats_the_unrolled_one(name, width, shape):
    layers = synaptic_layers(_masked_model(name, shape, width))
    tiled = pack_network(layers, per_layer_cores=10 ** 6)
    unrolled = pack_network(layers, per_layer_cores=10 ** 6, conv_aware=False)
    assert tiled.conv_aware and not unrolled.conv_aware and unrolled.local_lower_bound is None
    assert tiled.lower_bound == unrolled.lower_bound <= tiled.local_lower_bound <= tiled.cores < unrolled.cores


def test_energy_report_shows_tiled_and_unrolled_cores_and_both_bounds():
    from esl_deploy.hw_models.report import map_all

    model = _masked_model("convnet", (1, 28, 28), 0.25)
    mappings, packed = map_all(model)
    assert packed.conv_aware and packed.unrolled_cores is not None
    assert packed.lower_bound <= packed.local_lower_bound <= packed.cores
    assert packed.cores < packed.unrolled_cores <= mappings["sparse"].cores
