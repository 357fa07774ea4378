"""Whole-network packing and its lower bound: hand cases, the demo net, and exhaustive search on tiny nets."""
import itertools
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from esl_deploy.hw_models.cores import CoreSpec
from esl_deploy.hw_models.packing import PackLayer, network_lower_bound, pack_network
from esl_deploy.hw_models.truenorth import map_layers

DATA = Path(__file__).parent / "data"


def _chain(*masks, core=None):
    """An MLP chain: the first layer reads off-chip inputs, every other one the previous layer's neurons."""
    return [PackLayer(f"l{k}", sp.csr_matrix(np.asarray(m, bool)), source_on_chip=k > 0, after_previous=k > 0)
            for k, m in enumerate(masks)]


def _demo_layers():
    d = np.load(DATA / "demo_masks.npz")
    hidden = np.unpackbits(d["hidden"], axis=1)[:, :d["hidden_shape"][1]].astype(bool)
    out = np.unpackbits(d["out"], axis=1)[:, :d["out_shape"][1]].astype(bool)
    return _chain(hidden, out)


def test_dense_64_100_10_fits_one_core():
    # 64 + 100 = 164 axons, 100 + 10 = 110 neurons: the output neurons read the hidden neurons' axons on
    # the same core (a neuron may target its own core); per-layer rules need 2 cores
    layers = _chain(np.ones((100, 64)), np.ones((10, 100)))
    p = pack_network(layers)
    assert (p.cores, p.lower_bound, p.per_layer_cores) == (1, 1, 2)
    assert p.core_axons == (164,) and p.core_neurons == (110,) and p.splitter_neurons == 0


def test_demo_net_packs_onto_at_most_5_cores():
    # the make-demo ESL net (64-800-10 at 10 %): 3055 + 2865 synapses, 7 output neurons of fan-in > 256
    layers = _demo_layers()
    assert [l.mask.nnz for l in layers] == [3055, 2865]
    p = pack_network(layers)
    lb = network_lower_bound(layers)
    # bound: neurons 810 + 16 partial sums = 826 -> 4 cores; axons 59 + 523 + 16 = 598 -> 3 cores
    assert (lb.neurons, lb.neuron_cores, lb.axons, lb.axon_cores) == (826, 4, 598, 3)
    assert p.cores <= 5 and p.lower_bound == 4 and p.per_layer_cores == map_layers(layers).cores == 8
    assert p.cores / p.lower_bound <= 1.2
    assert max(p.core_axons) <= 256 and max(p.core_neurons) <= 256


def test_splitters_need_no_axon_of_their_own():
    # one hidden neuron h feeding 6 output neurons, cores of 4 axons x 4 neurons: {h, o1, o2, o3} and
    # {o4, o5, o6, splitter}; h targets the second core's axon, whose splitter feeds the first core's axon
    # of h. 8 neurons -> 2 cores = the bound; per-layer rules need a splitter axon: 3 cores
    core = CoreSpec(axons=4, neurons=4)
    layers = _chain(np.ones((1, 1)), np.ones((6, 1)))
    lb = network_lower_bound(layers, core)
    assert (lb.neurons, lb.axons, lb.cores) == (8, 3, 2)
    p = pack_network(layers, core)
    assert (p.cores, p.splitter_neurons, p.relay_axons, p.per_layer_cores) == (2, 1, 0, 3)
    # with 2 neurons per core the splitters find no room on h's axon cores: the bound (9 neurons -> 5
    # cores) is below the optimum, which exhaustive search finds at 6 (relay cores), as the packer does
    core = CoreSpec(axons=4, neurons=2)
    lb = network_lower_bound(layers, core)
    assert (lb.neurons, lb.cores) == (9, 5)
    assert not _feasible(layers, core, 5) and _feasible(layers, core, 6)
    assert pack_network(layers, core).cores == 6


# ----------------------------------------------------------------------------------------------
# Exhaustive search over placements of tiny nets under the packed rules
# ----------------------------------------------------------------------------------------------

def _feasible(layers, core: CoreSpec, C: int) -> bool:
    """Is there a placement on C cores under the packed rules (hw_models/packing.py docstring)?

    Searched: every assignment of every synapse to a core (a neuron's parts = the cores its synapses
    use; two parts on one core are never better than one), an adder core for every split neuron, relay
    axons for every split source, splitter and orphan neurons anywhere the rules allow (feasible iff
    Hall's condition holds for the splitter/orphan demands). Cores are symmetric, so a synapse opens at
    most the next unused core. Not searched: adder trees of more than one level (the nets here have
    fan-in <= A^2, so ceil(f/A) <= A parts always suffice).
    """
    A, N = core.axons, core.neurons
    neurons, orphans = [], 0
    for li, l in enumerate(layers):
        m = l.mask.toarray()
        for i in range(m.shape[0]):
            src = [(li, int(j)) for j in np.flatnonzero(m[i])]
            if src:
                neurons.append(src)
            else:
                orphans += 1
    neurons.sort(key=len, reverse=True)
    on_chip = {li for li, l in enumerate(layers) if l.source_on_chip}
    ax = [dict() for _ in range(C)]   # source -> number of parts using it on that core
    nn = [0] * C                      # neurons (items, adders) on each core
    add = [0] * C                     # adder axons on each core

    def axons(c):
        return len(ax[c]) + add[c]

    def leaf() -> bool:
        free_n = [N - nn[c] for c in range(C)]
        free_a = [A - axons(c) for c in range(C)]
        split = []
        for s in {s for c in range(C) for s in ax[c] if s[0] in on_chip}:
            cs = frozenset(c for c in range(C) if s in ax[c])
            if len(cs) >= 2:
                split.append(cs)
        options = [[cs | frozenset(r) for k in range(C - len(cs) + 1)
                    for r in itertools.combinations(sorted(set(range(C)) - cs), k)] for cs in split]
        for choice in itertools.product(*options):
            relay = [0] * C
            for cs, ks in zip(split, choice):
                for c in ks - cs:
                    relay[c] += 1
            if any(relay[c] > free_a[c] for c in range(C)):
                continue
            demands = [(len(ks) - 1, ks) for ks in choice] + ([(orphans, frozenset(range(C)))] if orphans else [])
            if all(sum(d for d, _ in sub) <= sum(free_n[c] for c in frozenset().union(*(k for _, k in sub)))
                   for r in range(1, len(demands) + 1) for sub in itertools.combinations(demands, r)):
                return True
        return not split and orphans <= sum(free_n)

    def place(k: int, used: int) -> bool:
        if k == len(neurons):
            return leaf()
        src = neurons[k]

        def assign(t: int, cores: list, used: int) -> bool:
            if t == len(src):
                return commit(cores, used)
            for c in range(min(used + 1, C)):
                if assign(t + 1, cores + [c], max(used, c + 1)):
                    return True
            return False

        def commit(cores, used) -> bool:
            parts = sorted(set(cores))
            if len(parts) > 1 and len(parts) > A:
                return False
            for s, c in zip(src, cores):
                ax[c][s] = ax[c].get(s, 0) + 1
            for c in parts:
                nn[c] += 1
            ok = False
            if all(axons(c) <= A and nn[c] <= N for c in parts):
                if len(parts) == 1:
                    ok = place(k + 1, used)
                else:
                    for a in range(min(used + 1, C)):
                        add[a] += len(parts)
                        nn[a] += 1
                        if axons(a) <= A and nn[a] <= N and place(k + 1, max(used, a + 1)):
                            ok = True
                        add[a] -= len(parts)
                        nn[a] -= 1
                        if ok:
                            break
            for s, c in zip(src, cores):
                ax[c][s] -= 1
                if not ax[c][s]:
                    del ax[c][s]
            for c in parts:
                nn[c] -= 1
            return ok

        return assign(0, [], used)

    return place(0, 0)


def _optimum(layers, core, upper):
    for c in range(1, upper + 1):
        if _feasible(layers, core, c):
            return c
    raise AssertionError(f"no placement within {upper} cores: the packer's placement breaks the rules")


def _tiny_nets(count, seed=0):
    rng = np.random.default_rng(seed)
    while count:
        A, N = int(rng.integers(2, 4)), int(rng.integers(2, 4))
        n0 = int(rng.integers(1, A * A + 1))
        n1 = int(rng.integers(1, min(A * A, 4) + 1))
        n2 = int(rng.integers(0, 3))
        shapes = [(n1, n0)] + ([(n2, n1)] if n2 else [])
        masks = [rng.random(s) < rng.uniform(0.2, 0.9) for s in shapes]
        if sum(int(m.sum()) for m in masks) > 9:
            continue
        layers, core = _chain(*masks), CoreSpec(axons=A, neurons=N, cores_per_chip=64)
        p = pack_network(layers, core)
        if p.cores > 3:
            continue
        count -= 1
        yield layers, core, p


def test_bound_never_above_the_exhaustive_optimum_on_120_tiny_nets():
    tight = nontrivial = 0
    for layers, core, p in _tiny_nets(120):
        opt = _optimum(layers, core, p.cores)
        lb = network_lower_bound(layers, core).cores
        assert lb <= opt <= p.cores <= p.per_layer_cores, (lb, opt, p)
        tight += lb == opt
        nontrivial += lb >= 2
    # measured: 112 of 120 exact, 80 with a bound of 2 or 3 cores
    assert tight >= 100 and nontrivial >= 60


@pytest.mark.parametrize("seed", range(8))
def test_bound_packed_per_layer_order_on_random_nets(seed):
    rng = np.random.default_rng(100 + seed)
    core = CoreSpec() if seed % 2 else CoreSpec(axons=16, neurons=8)
    scale = 1 if seed % 2 else 8
    sizes = [int(rng.integers(8, 600)) // scale + 1 for _ in range(int(rng.integers(2, 5)))]
    masks = [rng.random((sizes[k + 1], sizes[k])) < rng.uniform(0.01, 0.5) for k in range(len(sizes) - 1)]
    if seed % 3 == 0:
        masks[0][rng.random(sizes[1]) < 0.3] = False  # orphan neurons
    layers = _chain(*masks)
    p = pack_network(layers, core)
    per = map_layers(layers, "sparse", core).cores
    assert network_lower_bound(layers, core).cores == p.lower_bound <= p.cores <= p.per_layer_cores == per
    if p.placement == "packed":
        assert max(p.core_axons) <= core.axons and max(p.core_neurons) <= core.neurons
        assert len(p.core_axons) == p.cores


def test_exhaustive_search_by_hand():
    # 3 inputs, one neuron of fan-in 3 on cores of 2 axons: it must be split into 2 parts, whose adder
    # needs 2 more axons: 5 axons -> 3 cores (2 + 1 inputs, the adder's 2 axons on a third core)
    core = CoreSpec(axons=2, neurons=2)
    layers = _chain(np.ones((1, 3)))
    assert not _feasible(layers, core, 2) and _feasible(layers, core, 3)
    lb = network_lower_bound(layers, core)
    assert (lb.axons, lb.neurons, lb.cores) == (5, 3, 3) and pack_network(layers, core).cores == 3
