"""The torch fixed-point emulator (:mod:`export.lava.emulate`) against the numpy one and against Lava.

Spike for spike, every layer: random nets of every kind the numpy emulator runs (MLP, dense, conv with stride,
padding, dilation and groups, avg-pool folded into a conv, split weights, every reset mode, per-neuron
parameters, graded input with negative values, residual and recurrent graphs, CubaLIF, a loop through two
layers), then Lava's own fixed-point run on a small conv net and a small residual graph.
"""
from __future__ import annotations

import copy
import json
import warnings

import esl_deploy  # noqa: F401  (installs the lava import hook before any lava import)
import nir
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from esl_deploy.errors import EslError
from esl_deploy.export.lava import convert as lc
from esl_deploy.export.lava import emulate as em
from esl_deploy.export.lava import fixed as lf
from esl_deploy.export.lava import run as lr
from esl_deploy.export.lava.leaky import fixed_current, fixed_step
from esl_deploy.export.lava.net import (INPUT, ConvShape, LavaLayer, LavaNet, NeuronLayer, Part, SynapseLayer,
                                        conv_matrix)
from esl_deploy.export.nir.write import to_nir, write_nir
from esl_deploy.export.simulate import simulate

from helpers import assert_user_error, digit_like_input, run_cli
from test_lava import small_model
from test_nir_graphs import affine, cuba, graph, lif, resnet, rnn_graph, spikes_in

MODES = [("zero", False), ("zero", True), ("subtract", False), ("subtract", True), ("none", False), ("none", True)]


def same(net, x, **kw):
    """The torch emulator equals the numpy one in every layer; returns the spikes."""
    want = lf.emulate_fixed(net, x)
    got = em.emulate(net, x, progress=False, **kw)
    assert len(got) == len(want)
    for l, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b, err_msg=f"layer {l} ({net.layers[l].neuron.name})")
    return want


def neuron(name, shape, rng, *, mechanism="zero", delay=False, per_neuron=False, beta=0.85, threshold=1.0):
    n = int(np.prod(shape))
    if per_neuron:
        beta = rng.uniform(0.6, 1.0, n)
        threshold = rng.uniform(0.5, 1.5, n)
    return NeuronLayer(name=name, node_type="LIF", shape=shape, beta=beta, threshold=threshold,
                       bias=rng.normal(0, 0.05, n), reset_mechanism=mechanism, reset_delay=delay)


def sparse_weight(rng, n_out, n_in, density=0.5, gain=1.0):
    w = rng.normal(0, gain, (n_out, n_in)) * (rng.random((n_out, n_in)) < density)
    return sp.csr_matrix(w)


# ------------------------------------------------------------------------------------------------
# the neuron: golden values and the numpy functions
# ------------------------------------------------------------------------------------------------

def test_decay_truncates_towards_zero_as_lava_does():
    v = torch.tensor([-5, 5, -4096, 4097], dtype=torch.int64)
    # (x * 4095) / 4096 towards zero: -4.99.. -> -4 (floor would give -5), 4.99.. -> 4, -4095, 4095.99.. -> 4095
    np.testing.assert_array_equal(em._decay(v, 4095).numpy(), [-4, 4, -4095, 4095])


@pytest.mark.parametrize("mechanism,delay", MODES)
def test_step_and_current_equal_the_numpy_functions(mechanism, delay):
    rng = np.random.default_rng(0)
    n = 4000
    v = rng.integers(-2 ** 23 + 1, 2 ** 23, n)
    u = rng.integers(-2 ** 22, 2 ** 22, n)
    bias, dv, vth6 = rng.integers(-4096, 4096, n) << 6, rng.integers(0, 4096, n), rng.integers(0, 2 ** 17, n) << 6
    if mechanism == "zero" and not delay:  # the fast path relies on a stored v that never exceeds vth6
        v = np.minimum(v, vth6)
    t = torch.from_numpy
    want_v, _, want_s = fixed_step(v, u, bias, dv, vth6, mechanism, delay)
    got_v, got_s = em.step_t(t(v), t(u), t(bias), t(dv), t(vth6), mechanism, delay)
    np.testing.assert_array_equal(got_v.numpy(), want_v)
    np.testing.assert_array_equal(got_s.numpy(), want_s)
    a = rng.integers(-2 ** 17, 2 ** 17, n)  # large enough to wrap u at 24 bits
    for du in (4095, 2047, 0):
        np.testing.assert_array_equal(em.current_t(t(u), t(a), du).numpy(), fixed_current(u, a, du))
    v_reset6 = rng.integers(-100, 100, n) << 6
    want_v, _, want_s = fixed_step(v, u, bias, dv, vth6, "zero", False, v_reset6)
    got_v, got_s = em.step_t(t(v), t(u), t(bias), t(dv), t(vth6), "zero", False, t(v_reset6))
    np.testing.assert_array_equal(got_v.numpy(), want_v)


# ------------------------------------------------------------------------------------------------
# random chains against emulate_fixed
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism,delay", MODES)
@pytest.mark.parametrize("per_neuron", [False, True])
def test_mlp_every_reset_mode(mechanism, delay, per_neuron):
    rng = np.random.default_rng(hash((mechanism, delay, per_neuron)) % 2 ** 32)
    layers = []
    for l, (n_in, n_out) in enumerate([(20, 30), (30, 25), (25, 10)]):
        syn = SynapseLayer(kind="sparse" if l != 1 else "dense", in_shape=(n_in,), out_shape=(n_out,),
                           weight=sparse_weight(rng, n_out, n_in, gain=0.8), graded=l == 0)
        layers.append(LavaLayer(synapse=syn, neuron=neuron(f"l{l}", (n_out,), rng, mechanism=mechanism, delay=delay,
                                                           per_neuron=per_neuron)))
    net = lf.quantize(LavaNet(input_shape=(20,), layers=layers))
    x = rng.random((9, 13, 20))
    spikes = same(net, x, batch_size=4)
    assert all(s.sum() > 0 for s in spikes)


@pytest.mark.parametrize("groups", [1, 2])
def test_mlp_graded_negative_input_and_split_weights(groups):
    rng = np.random.default_rng(3)
    layers = [LavaLayer(synapse=SynapseLayer(kind="sparse", in_shape=(16,), out_shape=(24,), graded=True,
                                             weight=sparse_weight(rng, 24, 16, 0.8, 2.0)), neuron=neuron("a", (24,), rng)),
              LavaLayer(synapse=SynapseLayer(kind="sparse", in_shape=(24,), out_shape=(7,),
                                             weight=sparse_weight(rng, 7, 24, 0.7, 1.0)), neuron=neuron("b", (7,), rng))]
    net = lf.quantize(LavaNet(input_shape=(16,), layers=layers), input_min=-2.0, input_max=3.0, groups=groups)
    if groups == 2:
        assert any(l.fixed.split_exp > 0 for l in net.layers)
    x = rng.uniform(-2.0, 3.0, (8, 11, 16))
    spikes = same(net, x, batch_size=5)
    assert spikes[0].sum() > 0


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1), (2, 0, 1, 4)])
def test_conv_chain_with_stride_padding_dilation_groups(stride, padding, dilation, groups):
    rng = np.random.default_rng(stride * 7 + padding + 3 * dilation + groups)
    in_shape = (4, 9, 8)
    kernel = rng.normal(0, 0.7, (8, 4 // groups, 3, 3))
    syn = SynapseLayer(kind="conv", in_shape=in_shape, out_shape=(8,) + tuple(
        lc.conv_output_hw(in_shape[1:], (3, 3), (stride,) * 2, (padding,) * 2, (dilation,) * 2)),
        weight=kernel, graded=True, stride=(stride,) * 2, padding=(padding,) * 2, dilation=(dilation,) * 2,
        groups=groups)
    first = LavaLayer(synapse=syn, neuron=neuron("conv", syn.out_shape, rng, beta=0.9))
    n = int(np.prod(syn.out_shape))
    second = LavaLayer(synapse=SynapseLayer(kind="sparse", in_shape=syn.out_shape, out_shape=(6,),
                                            weight=sparse_weight(rng, 6, n, 0.5, 0.6)), neuron=neuron("fc", (6,), rng))
    net = lf.quantize(LavaNet(input_shape=in_shape, layers=[first, second]))
    x = rng.random((6, 10) + in_shape)
    spikes = same(net, x, batch_size=3)
    assert spikes[0].sum() > 0
    same(net, x, dtype=torch.float64)  # the float64 path gives the same integers


def _pool_conv_graph(pool_kind):
    rng = np.random.default_rng(2)
    pool = getattr(nir, pool_kind)(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    conv = nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0, 0.8, (5, 3, 3, 3)), stride=1, padding=1, dilation=1,
                      groups=1, bias=rng.normal(0, 0.1, 5))
    n = 5 * 4 * 4
    tau = 1e-4 / 0.1
    node = nir.LIF(tau=np.full((5, 4, 4), tau), r=np.full((5, 4, 4), tau / 1e-4), v_leak=np.zeros((5, 4, 4)),
                   v_threshold=np.ones((5, 4, 4)), v_reset=np.zeros((5, 4, 4)))
    fc = nir.Affine(rng.normal(0, 0.5, (4, n)), rng.normal(0, 0.1, 4))
    nodes = {"input": nir.Input(np.array([3, 8, 8])), "pool": pool, "conv": conv, "lif": node,
             "flat": nir.Flatten(input_type={"input": np.array([5, 4, 4])}, start_dim=0), "fc": fc, "lif2": lif(4),
             "output": nir.Output(np.array([4]))}
    names = list(nodes)
    return graph(nodes, list(zip(names[:-1], names[1:])))


@pytest.mark.parametrize("pool_kind", ["AvgPool2d", "SumPool2d"])
@pytest.mark.parametrize("conv", ["conv", "matrix"])
def test_pooling_folded_into_a_conv_and_the_conv_as_a_matrix(pool_kind, conv):
    net = lf.quantize(lc.convert(_pool_conv_graph(pool_kind), conv=conv))
    first = net.layers[0].synapse
    assert first.kind == ("conv" if conv == "conv" else "sparse")
    if conv == "matrix":  # the matrix remembers its convolution: the emulator runs it as one
        assert first.convs == (ConvShape(kernel=(5, 3, 6, 6), stride=(2, 2), padding=(2, 2)),)
        assert isinstance(em._plan(net, torch.device("cpu"))[0].maps[0], (em._Conv, em._Sum))
    x = np.random.default_rng(1).random((5, 9, 3, 8, 8))
    assert same(net, x, batch_size=4)[0].sum() > 0


def test_small_convnet_model_and_the_perturbed_net_disagrees():
    model = small_model("convnet", 0.25, seed=2)
    net = lf.quantize(lc.convert(to_nir(model)), groups=2, input_frac_bits=4)
    x = digit_like_input(5, 12, seed=2)
    want = same(net, x, batch_size=5)
    bad = copy.deepcopy(net)
    w = bad.layers[0].fixed.weight
    w[np.unravel_index(np.argmax(np.abs(w)), w.shape)] = 0  # drop the strongest synapse
    got = em.emulate(bad, x, progress=False)
    assert not np.array_equal(got[0], want[0])


# ------------------------------------------------------------------------------------------------
# graphs: residual, recurrent, CubaLIF, v_reset, a loop through two layers
# ------------------------------------------------------------------------------------------------

def test_resnet19_graph_with_conv_shortcuts():
    net = lf.quantize(lc.convert(to_nir(resnet())))
    plan = em._plan(net, torch.device("cpu"))
    merges = [(layer, p) for layer, p in zip(net.layers, plan) if len(layer.synapse.parts) == 2]
    assert len(merges) == 8 and all(layer.synapse.convs[0] is not None for layer, _ in merges)
    # the merged blocks' rounded matrices are convolutions up to a sparse correction at the border
    assert all(isinstance(p.maps[0], em._Sum) for _, p in merges)
    x = np.random.default_rng(0).random((4, 7, 1, 12, 12)).astype(np.float32)
    spikes = same(net, x, batch_size=4)
    assert sum(int(s.sum()) for s in spikes) > 1000


def test_block_map_is_the_matrix_even_where_rounding_broke_the_convolution():
    rng = np.random.default_rng(5)
    hint = ConvShape(kernel=(3, 2, 3, 3), padding=(1, 1))
    block = conv_matrix(rng.integers(-100, 100, (3, 2, 3, 3)), (2, 5, 6), (1, 1), (1, 1), (1, 1), 1).tolil()
    block[0, 0] += 2   # a border neuron rounded differently
    block[40, 17] = 0  # a synapse rounded to zero
    block = block.tocsr()
    fn = em._block_map(block, hint, (2, 5, 6), torch.device("cpu"), torch.float64)
    assert isinstance(fn, em._Sum)
    x = rng.integers(0, 2, (7, 60)).astype(np.float64)
    np.testing.assert_array_equal(fn(torch.from_numpy(x)).numpy(), x @ block.T.toarray())


def test_recurrent_and_cubalif_graphs():
    x = spikes_in(T=12, B=9, seed=3)
    net = lf.quantize(lc.convert(rnn_graph(nested=False)), input_frac_bits=0)
    assert net.layers[0].synapse.parts[1].shift == 1
    assert same(net, x, batch_size=4)[0].sum() > 10
    rng = np.random.default_rng(8)
    nodes = {"input": nir.Input(np.array([4])), "fc": affine(4, 6, 2.0, rng=rng), "c": cuba(6),
             "rec": affine(6, 6, 0.8, rng=rng), "out": affine(6, 3, 1.5, rng=rng), "c2": cuba(3, 0.6, 0.9),
             "output": nir.Output(np.array([3]))}
    edges = [("input", "fc"), ("fc", "c"), ("c", "rec"), ("rec", "c"), ("c", "out"), ("out", "c2"), ("c2", "output")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = lf.quantize(lc.convert(graph(nodes, edges)), input_frac_bits=0)
    assert net.layers[0].fixed.du < 4095 and net.layers[0].fixed.current_bias is not None
    assert same(net, x, batch_size=5)[0].sum() > 5


def test_v_reset_and_a_loop_through_two_layers_run_stepwise():
    """l1 reads the input and l2 one step late (a loop Lava's pipeline cannot place, but the emulators run it)."""
    rng = np.random.default_rng(9)
    n = 5
    first = SynapseLayer(kind="sparse", in_shape=(4 + n,), out_shape=(n,), graded=True,
                         weight=sparse_weight(rng, n, 4 + n, 1.0, 1.5), parts=(Part(INPUT, 4), Part(1, n, shift=1)))
    l1 = NeuronLayer(name="l1", node_type="LIF", shape=(n,), beta=0.8, threshold=1.0, bias=np.full(n, 0.1),
                     v_reset=0.3)
    second = SynapseLayer(kind="sparse", in_shape=(n,), out_shape=(n,), weight=sparse_weight(rng, n, n, 1.0, 1.5))
    net = LavaNet(input_shape=(4,), layers=[LavaLayer(synapse=first, neuron=l1),
                                            LavaLayer(synapse=second, neuron=neuron("l2", (n,), rng, beta=0.7))])
    net = lf.quantize(net, input_frac_bits=0)
    assert not em._layerwise(em._plan(net, torch.device("cpu")))
    assert np.any(np.asarray(net.layers[0].fixed.v_reset) != 0)
    spikes = same(net, spikes_in(T=10, B=7, seed=4), batch_size=3)
    assert spikes[0].sum() > 0 and spikes[1].sum() > 0


# ------------------------------------------------------------------------------------------------
# refusals
# ------------------------------------------------------------------------------------------------

def test_refusals_are_one_line():
    rng = np.random.default_rng(0)
    layer = LavaLayer(synapse=SynapseLayer(kind="sparse", in_shape=(3,), out_shape=(2,), graded=True,
                                           weight=sparse_weight(rng, 2, 3, 1.0)), neuron=neuron("n", (2,), rng))
    net = LavaNet(input_shape=(3,), layers=[layer])
    x = rng.random((2, 2, 3))
    with pytest.raises(EslError, match="quantize it first"):
        em.emulate(net, x)
    q = lf.quantize(net)
    for kw, what in (({"batch_size": 0}, "batch_size"), ({"device": "mps"}, "MPS"), ({"dtype": torch.float16}, "float")):
        with pytest.raises(EslError, match=what) as e:
            em.emulate(q, x, **kw)
        assert "\n" not in str(e.value)
    with pytest.raises(EslError, match="input"):
        em.emulate(q, x[..., :2])
    big = copy.deepcopy(q)
    big.layers[0].fixed.weight = big.layers[0].fixed.weight * 2 ** 20  # sums no float can hold exactly on the chip's grid
    with pytest.raises(EslError, match="synaptic sums can reach"):
        em._plan(big, torch.device("cpu"), torch.float32)


# ------------------------------------------------------------------------------------------------
# Lava itself, on a subset
# ------------------------------------------------------------------------------------------------

def test_lava_fixed_point_equals_the_torch_emulator_on_a_conv_net():
    model = small_model("convnet", 0.25, seed=2)
    net = lf.quantize(lc.convert(to_nir(model)), groups=1, input_frac_bits=4)
    x = digit_like_input(5, 3, seed=4)
    res = lr.run(net, x, mode="fixed")
    got = em.emulate(net, x, progress=False)
    assert len(res.spikes) == len(got)
    for name, a, b in zip(res.names, res.spikes, got):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert got[0].sum() > 0 and got[1].sum() > 0


def test_lava_fixed_point_equals_the_torch_emulator_on_a_residual_graph():
    """c1 -> l1 -> c2 -> l2 -> c3 -> l3 <- l1 (identity shortcut, one step of delay in Lava) -> fc -> l4."""
    rng = np.random.default_rng(11)
    shape = (4, 6, 6)
    k = np.full(shape, 1e-4 / 0.2)

    def lif_c():
        return nir.LIF(tau=k, r=k / 1e-4, v_leak=np.zeros(shape), v_threshold=np.ones(shape), v_reset=np.zeros(shape))

    def conv(c_in):
        return nir.Conv2d(input_shape=(6, 6), weight=rng.normal(0, 0.6, (4, c_in, 3, 3)), stride=1, padding=1,
                          dilation=1, groups=1, bias=rng.normal(0, 0.05, 4))

    nodes = {"input": nir.Input(np.array([2, 6, 6])), "c1": conv(2), "l1": lif_c(), "c2": conv(4), "l2": lif_c(),
             "c3": conv(4), "l3": lif_c(), "flat": nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0),
             "fc": affine(144, 5, 0.4, rng=rng), "l4": lif(5), "output": nir.Output(np.array([5]))}
    edges = [("input", "c1"), ("c1", "l1"), ("l1", "c2"), ("c2", "l2"), ("l2", "c3"), ("c3", "l3"), ("l1", "l3"),
             ("l3", "flat"), ("flat", "fc"), ("fc", "l4"), ("l4", "output")]
    net = lf.quantize(lc.convert(graph(nodes, edges)), input_frac_bits=0)
    merge = net.layers[2].synapse
    assert [p.source for p in merge.parts] == [1, 0] and merge.convs[0] is not None
    assert net.delay(2, merge.parts[1]) == 1
    x = spikes_in(T=6, B=3, shape=(2, 6, 6), p=0.5, seed=1)
    res = lr.run(net, x, mode="fixed")
    got = em.emulate(net, x, progress=False)
    for name, a, b in zip(res.names, res.spikes, got):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert all(g.sum() > 0 for g in got)


# ------------------------------------------------------------------------------------------------
# esl simulate --backend emulate-fixed
# ------------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:silent layers")
def test_simulate_emulate_fixed_reports_what_lava_fixed_reports(tmp_path, capsys):
    path = write_nir(small_model("convnet", 0.25, seed=2), tmp_path / "conv.nir", {"T": 4, "encoding": "direct"})
    lava = simulate(path, "lava-fixed", limit=4, progress=False)
    code, out, err = run_cli(capsys, "simulate", path, "--backend", "emulate-fixed", "--limit", 4, "--lava-subset", 2,
                             "--json", "--no-progress")
    assert code == 0, err
    d = json.loads(out)
    assert d["backend"] == "emulate-fixed" and d["samples"] == 4
    # the same fixed-point network, bit-exact: the same agreement with snnTorch in every layer
    assert d["layer_agreement"] == lava.layer_agreement and d["accuracy"] == lava.accuracy
    assert d["quant_error"] == lava.quant_error and d["details"]["weight_groups"] == 2.0
    assert d["details"]["lava_subset_samples"] == 2.0 and d["details"]["lava_subset_agreement"] == 100.0
    code, out, err = run_cli(capsys, "simulate", path, "--backend", "emulate-fixed", "--limit", 2, "--no-progress")
    assert code == 0 and "emulate-fixed" in out and "Lava fixed point" not in out
    code, out, err = run_cli(capsys, "simulate", path, "--backend", "lava", "--lava-subset", 2, "--no-progress")
    assert_user_error(code, err, "--lava-subset", "emulate-fixed")
