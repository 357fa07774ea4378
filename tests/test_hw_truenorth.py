"""TrueNorth core mapping: hand-computed cores, partial sums and splitters; sparse <= naive; core-aware."""
import numpy as np
import pytest
import torch
from torch import nn

from esl_deploy.errors import EslError
from esl_deploy.masks import LayerShape, layer_densities, random_mask, sparsifiable
from esl_deploy.models import ModelSpec, SpikingNet, build_model
from esl_deploy.neurons import LIF
from esl_deploy.hw_models.core_aware import (axon_blocks, check_within, core_allowed_mask, core_aware_allowed, core_groups,
                                  max_density, random_mask_within, relaxed_window, restrict_scores, window_of)
from esl_deploy.hw_models.truenorth import (CoreSpec, LayerMapping, NetworkMapping, adder_tree, lower_bound,
                                 map_layer, map_network, pack_into, pack_items, splitter_tree)
from esl_deploy.hw_models.unroll import pool_matrix, synaptic_layers, unroll_conv2d


def _both(mask, **kw):
    return map_layer(mask, "naive", **kw), map_layer(mask, "sparse", **kw)


def test_dense_784x800_from_off_chip_by_hand():
    # 784 axons -> ceil(784/256) = 4 axon blocks (256, 256, 256, 16); 800 neurons -> 4 neuron blocks
    # (256, 256, 256, 32): 16 tiles. Fan-in 784 > 256: 4 partial sums per neuron (3200), one adder level.
    # Adders have 4 axons. Only the tile (neuron block 3, axon block 3) has both free axons (256 - 16)
    # and free neurons (256 - 32): it takes 240 / 4 = 60 adders. The other 740 go 64 per core
    # (256 / 4 axons): ceil(740 / 64) = 12 adder cores. Total 28, latency 1 + 1 = 2 ticks.
    naive, sparse = _both(np.ones((800, 784), bool), source_on_chip=False)
    for r in (naive, sparse):
        assert (r.compute_cores, r.adder_cores, r.splitter_cores, r.cores) == (16, 12, 0, 28)
        assert (r.partial_sum_neurons, r.partial_sum_levels, r.latency_ticks) == (3200, 1, 2)
    # lower bound: S = 627200 + 3200 -> ceil(/65536) = 10; U = 800 + 3200 -> 16;
    # X = 784 * ceil(800/256) + 3200 = 6336 -> ceil(/256) = 25
    lb = lower_bound(np.ones((800, 784), bool), source_on_chip=False)
    assert (lb.synapse_cores, lb.neuron_cores, lb.axon_cores, lb.cores) == (10, 16, 25, 25)
    assert naive.lower_bound == 25


def test_dense_784x800_on_chip_needs_splitters():
    # every source reaches the 4 neuron blocks: 4 splitter neurons each (3136), one level. A splitter item
    # takes 1 axon + 4 neurons: only the last adder core has both left (36 adders: 112 axons, 220 neurons
    # free) -> 55 items; the other 729 go 64 per core: ceil(729 / 64) = 12 splitter cores.
    r = map_layer(np.ones((800, 784), bool), "naive", source_on_chip=True)
    assert (r.splitter_neurons, r.splitter_levels, r.splitter_cores) == (3136, 1, 12)
    assert (r.cores, r.latency_ticks) == (40, 3)
    # lower bound: U = 800 + 3200 + 3136 = 7136 -> 28; X = 3136 + 3200 + 784 = 7120 -> 28
    assert r.lower_bound == 28


def test_fan_in_1000_by_hand():
    # 10 neurons x 1000 axons: 4 tiles (the last with 232 axons), 4 partial sums per neuron, 10 adders of
    # 4 axons: 24 free axons in the last tile take 6, one adder core takes the other 4
    naive, sparse = _both(np.ones((10, 1000), bool), source_on_chip=False)
    assert (naive.compute_cores, naive.adder_cores, naive.cores) == (4, 1, 5)
    assert naive.partial_sum_neurons == 40 and sparse.cores == 5
    # X = 1000 + 40 = 1040 axons -> ceil(1040/256) = 5: this layer is mapped at its lower bound
    assert naive.lower_bound == 5
    # one neuron of fan-in 1000: its adder (4 axons) fits in the last tile, 4 cores = the lower bound
    single = map_layer(np.ones((1, 1000), bool), "naive", source_on_chip=False)
    assert (single.cores, single.adder_cores, single.partial_sum_neurons, single.lower_bound) == (4, 0, 4, 4)


def test_fan_in_70000_needs_two_adder_levels():
    # ceil(70000/256) = 274 partial sums; 274 > 256 -> sub-adders of 256 and 18 inputs, top adder of 2:
    # partial-sum neurons 274 + 2, levels 2. The last tile (112 axons) has 144 axons free: the 18- and
    # 2-input adders go there, the 256-input sub-adder needs a core of its own.
    r = map_layer(np.ones((1, 70000), bool), "naive", source_on_chip=False)
    assert (r.compute_cores, r.adder_cores, r.cores) == (274, 1, 275)
    assert (r.partial_sum_neurons, r.partial_sum_levels, r.latency_ticks) == (276, 2, 3)
    assert r.lower_bound == 275  # X = 70000 + 274 = 70274 axons -> 275 cores


def test_splitter_tree_for_fan_out_over_256_cores():
    # one source feeding 76800 neurons = 300 full cores: 300 splitter neurons hang off 2 axons (256 + 44),
    # which are fed by 2 more splitters: 302 splitter neurons, 2 levels; the compute cores have no neuron
    # left, so the items [256, 44, 2] need 2 cores of their own
    r = map_layer(np.ones((76800, 1), bool), "naive", source_on_chip=True)
    assert (r.compute_cores, r.splitter_cores, r.cores) == (300, 2, 302)
    assert (r.splitter_neurons, r.splitter_levels, r.latency_ticks) == (302, 2, 3)
    assert r.lower_bound == 302  # U = 76800 + 300 -> 302: splitters cannot be avoided


def test_sparse_placement_beats_tiling_on_interleaved_blocks():
    # neuron j uses all 256 axons of block j % 2: naive tiles see both blocks in both neuron blocks
    j, i = np.arange(512)[:, None], np.arange(512)[None, :]
    mask = (i // 256) == (j % 2)
    naive, sparse = _both(mask, source_on_chip=True)
    assert (naive.compute_cores, naive.splitter_neurons, naive.splitter_cores, naive.cores) == (4, 1024, 4, 8)
    assert (sparse.cores, sparse.splitter_neurons, sparse.partial_sum_neurons) == (2, 0, 0)
    assert sparse.lower_bound == 2 and sparse.placement.startswith("segments")


def test_orphan_neurons_fill_free_slots_first():
    mask = np.zeros((300, 10), bool)
    mask[:10] = True  # 10 neurons in one core; 290 orphans, 246 fit there, 44 need another core
    r = map_layer(mask, "naive", source_on_chip=False)
    assert (r.compute_cores, r.orphan_cores, r.cores, r.lower_bound) == (1, 1, 2, 2)


def test_grouped_placement_keeps_conv_neurons_whole():
    conv = nn.Conv2d(4, 32, 3, padding=1, bias=False)
    m = unroll_conv2d(conv, (4, 16, 16), (16, 16))
    assert m.shape == (32 * 256, 4 * 256)
    naive, sparse = _both(m)
    assert sparse.partial_sum_neurons == 0 and naive.partial_sum_neurons > 0
    assert sparse.cores < naive.cores / 4 and sparse.cores >= sparse.lower_bound


def test_pack_adder_and_splitter_trees_by_hand():
    assert pack_items(np.array([200, 100, 60, 56]), 256, 256) == 2  # [200, 56], [100, 60]
    assert pack_items(np.ones(300, int), 256, 256) == 2              # at most 256 items per bin
    assert pack_items(np.array([4] * 65), 256, 256) == 2
    # into partly used bins: (room, slots) = (10, 1) and (100, 5); items 60, 8, 8, 8
    room, slots = pack_into(np.array([60, 8, 8, 8]), np.array([10, 100]), np.array([1, 5]), 256, 256)
    assert room.tolist() == [2, 24] and slots.tolist() == [0, 2]  # 60 -> bin 1; 8 -> bin 0; 8, 8 -> bin 1
    items, extra, levels = adder_tree(np.array([4, 300]), 256)
    assert sorted(items.tolist()) == [2, 4, 44, 256] and extra == 2 and levels == 2
    items, levels = splitter_tree(np.array([1, 3, 600]), 256)
    assert sorted(items.tolist()) == [3, 3, 88, 256, 256] and levels == 2


@pytest.mark.parametrize("seed", range(12))
def test_sparse_never_needs_more_cores_than_naive(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 700)), int(rng.integers(1, 900))
    kind = seed % 3
    if kind == 0:    # uniform random sparsity
        mask = rng.random((n, m)) < rng.uniform(0.005, 0.6)
    elif kind == 1:  # random blocks of inputs per neuron group, in shuffled neuron order
        blocks = rng.integers(0, max(1, m // 100), size=n)
        mask = (np.arange(m)[None, :] // 100 == blocks[:, None]) & (rng.random((n, m)) < 0.5)
        mask = mask[rng.permutation(n)]
    else:            # some dead neurons and dead inputs
        mask = rng.random((n, m)) < 0.2
        mask[rng.random(n) < 0.3] = False
        mask[:, rng.random(m) < 0.3] = False
    on_chip = bool(seed % 2)
    naive, sparse = _both(mask, source_on_chip=on_chip)
    lb = lower_bound(mask, source_on_chip=on_chip).cores
    assert lb <= sparse.cores <= naive.cores
    assert sparse.naive_cores == naive.cores and sparse.lower_bound == lb


def test_lower_bound_never_exceeds_a_mapping_on_small_cores():
    core = CoreSpec(axons=8, neurons=4, cores_per_chip=16)
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 40)))) < rng.uniform(0.05, 0.9)
        naive, sparse = _both(mask, core=core)
        assert sparse.lower_bound <= sparse.cores <= naive.cores


def test_unrolled_network_layers_fold_pooling():
    net = build_model(ModelSpec("convnet", (1, 8, 8), 10))
    layers = synaptic_layers(net)
    assert [(l.name, l.mask.shape, l.source_on_chip) for l in layers] == [
        ("layers.0", (16 * 64, 64), False), ("layers.3", (32 * 16, 16 * 64), True), ("layers.7", (10, 32 * 16), True)]
    conv = net.layers[3]
    # 2x2 windows are disjoint: each pooled input becomes 4 pre-pool axons
    assert layers[1].mask.nnz == 4 * unroll_conv2d(conv, (16, 4, 4), (4, 4)).nnz
    p = pool_matrix(nn.AvgPool2d(2), (1, 4, 4), (2, 2))
    assert p.shape == (4, 16) and p.sum(1).A1.tolist() == [4, 4, 4, 4]
    assert p[0].indices.tolist() == [0, 1, 4, 5]


def test_unrolled_conv_by_hand():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    m = unroll_conv2d(conv, (1, 3, 3), (3, 3))
    assert m.nnz == 4 * 4 + 4 * 6 + 9          # corners 4, edges 6, centre 9 inputs
    assert m[4].indices.tolist() == list(range(9)) and m[0].indices.tolist() == [0, 1, 3, 4]


def test_unsupported_layer_and_chip_limit_are_user_errors():
    net = SpikingNet([nn.Conv2d(1, 2, 3, padding=1), LIF((2, 8, 8)), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(32, 10), LIF((10,))], ModelSpec("convnet", (1, 8, 8), 10))
    with pytest.raises(EslError, match="cannot cost layer layers.2"):
        map_network(net)
    mlp = build_model(ModelSpec("mlp", (1, 8, 8), 10))  # dense: 4 + 5 cores
    assert map_network(mlp, max_chips=1).chips == 1
    with pytest.raises(EslError, match="more than the 2 allowed"):
        map_network(mlp, core=CoreSpec(cores_per_chip=2), max_chips=2)


def test_mapping_round_trip_and_validation():
    r = map_layer(np.ones((10, 1000), bool), name="fc")
    net = NetworkMapping(layers=(r, r), core=CoreSpec())
    assert NetworkMapping.from_dict(net.to_dict()) == net
    assert net.cores == 10 and net.latency_ticks == 4 and net.chips == 1
    d = r.to_dict()
    with pytest.raises(ValueError):
        LayerMapping(**{**d, "cores": d["cores"] + 1})
    with pytest.raises(ValueError):
        CoreSpec(axons=0)
    with pytest.raises(ValueError):
        map_layer(np.ones((2, 2), bool), "dense")


# ----------------------------------------------------------------------------------------------
# Core-aware patterns
# ----------------------------------------------------------------------------------------------

def test_axon_blocks_are_balanced():
    assert axon_blocks(800).tolist() == [0, 200, 400, 600, 800]
    assert axon_blocks(784).tolist() == [0, 196, 392, 588, 784]
    assert axon_blocks(64).tolist() == [0, 64]


def test_core_groups_by_hand():
    # 784 inputs -> 4 blocks of 196; 800 outputs -> 4 groups of 200, one block each at 8.85 % density
    a = core_groups(800, 784, density=0.0885).numpy()
    assert (a.sum(1) == 196).all() and (a.sum(0) == 200).all()
    assert a[0, :196].all() and not a[0, 196:].any() and a[799, 588:].all()
    # 10 outputs x 800 inputs at 35.8 %: one block (25 %) is too little, two blocks per neuron (50 %)
    b = core_groups(10, 800, density=0.358).numpy()
    assert (b.sum(1) == 400).all() and b.any(0).all()
    assert b[0, :400].all() and b[9, 600:].all() and b[9, :200].all()  # group 3 wraps to block 0
    assert core_groups(800, 64).all()
    # more neurons than one core per block: whole cores of 256 are dealt round-robin. 1300 = 5 x 256 + 20:
    # block 0 gets cores 0, 2, 4 (768 neurons), block 1 cores 1, 3 and the 20 left (532): 6 cores in all
    c = core_groups(1300, 512).numpy()
    assert c[:768, :256].all() and c[768:, 256:].all() and not c[:768, 256:].any() and not c[768:, :256].any()


def test_core_aware_masks_map_at_the_lower_bound():
    g = torch.Generator().manual_seed(0)
    mask = random_mask_within(core_groups(800, 784, density=0.0885), 0.0885, g)
    naive, sparse = _both(mask.numpy(), source_on_chip=False)
    assert sparse.cores == sparse.lower_bound == 4 and naive.cores > 2 * sparse.cores
    assert sparse.partial_sum_neurons == 0


def _mlp_at_10_percent(input_shape, core_aware: bool):
    net = build_model(ModelSpec("mlp", input_shape, 10))
    params = sparsifiable(net)
    dens = layer_densities([LayerShape(n, tuple(w.shape)) for n, w in params], 0.1)
    allowed = core_aware_allowed(net, dens)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, w in params:
            w.mul_(random_mask_within(allowed[n], dens[n], g) if core_aware else random_mask(w.shape, dens[n], g))
    return map_network(net, "sparse")


def test_core_aware_mlp_maps_within_125_percent_of_lower_bound():
    digits = _mlp_at_10_percent((1, 8, 8), core_aware=True)  # 64-800-10
    assert digits.cores <= 1.25 * digits.lower_bound
    # with 784 inputs the first layer spans 4 axon blocks: free random masks need partial sums everywhere
    mnist = _mlp_at_10_percent((1, 28, 28), core_aware=True)
    free = _mlp_at_10_percent((1, 28, 28), core_aware=False)
    assert mnist.cores <= 1.25 * mnist.lower_bound
    assert free.cores > 3 * free.lower_bound and mnist.layers[0].partial_sum_neurons == 0


def test_core_aware_helpers():
    allowed = core_groups(4, 600)  # 3 blocks of 200: groups of 2, 1, 1 neurons
    assert max_density(allowed) == pytest.approx(200 / 600)
    g = torch.Generator().manual_seed(0)
    mask = random_mask_within(allowed, 0.2, g)
    assert int(mask.sum()) == 480
    check_within(mask, allowed)
    with pytest.raises(ValueError):
        check_within(torch.ones(4, 600, dtype=torch.bool), allowed)
    with pytest.raises(ValueError):
        random_mask_within(allowed, 0.5, g)
    scores = restrict_scores(torch.rand(4, 600), allowed)
    top = torch.topk(scores.reshape(-1), 300).indices
    assert allowed.reshape(-1)[top].all()
    with pytest.raises(ValueError):
        core_groups(0, 10)


def test_core_allowed_mask_for_the_trainer():
    assert torch.equal(core_allowed_mask((10, 800), 0.358, relax=False), core_groups(10, 800, density=0.358))
    # relaxed: a 10-neuron output layer's partial sums fit in the 4 cores its 800 inputs need anyway, so
    # a narrow window saves no core and the pattern is left free; an 800x800 layer keeps one block each
    assert core_allowed_mask((10, 800), 0.358).all()
    assert relaxed_window(10, 800, 0.358) == 4 and window_of(core_groups(10, 800, density=0.358)) == 2
    hidden = core_allowed_mask((800, 800), 0.1)
    assert torch.equal(hidden, core_groups(800, 800, density=0.1)) and (hidden.sum(1) == 200).all()
    assert core_groups(800, 800, density=0.1, window=3).sum(1).tolist() == [600] * 800
    assert core_allowed_mask((32, 16, 3, 3), 0.1).all()  # convolution kernels are not constrained
    small = core_allowed_mask((8, 20), 0.1, CoreSpec(axons=8, neurons=4), relax=False)
    # 20 axons in blocks of 7, 7, 6; 8 neurons in groups of 3, 3, 2; one block each
    assert small.sum(1).tolist() == [7, 7, 7, 7, 7, 7, 6, 6] and small[6, 14:].all()
