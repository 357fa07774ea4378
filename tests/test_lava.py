"""NIR -> Lava conversion, Loihi 2 fixed point, netx, the Lava export file and ``esl simulate``.

Lava runs are slow (each compiles a multiprocess network), so the graphs are tiny and the runs few:
hand-made impulse graphs with hand-computed spike trains for every backend, small snnTorch networks
for whole-graph agreement, and pure-numpy tests for the linear algebra and the quantisation.
"""
import json

import esl_deploy  # noqa: F401  (installs the lava import hook before any lava import)
import h5py
import nir
import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from esl_deploy.errors import EslError
from esl_deploy.models import ModelSpec, apply_layer, build_model
from esl_deploy.neurons import LIF
from esl_deploy.export.lava import convert as lc
from esl_deploy.export.lava import fixed as lf
from esl_deploy.export.lava import run as lr
from esl_deploy.export.lava.file import read_lava, write_lava
from esl_deploy.export.lava.netx import netx_net, run_netx, write_netx, write_netx_file
from esl_deploy.export.nir.write import to_nir, write_nir
from esl_deploy.export.simulate import simulate, snntorch_spikes
from esl_deploy.export.simulate_cli import simulate_cmd

from helpers import digit_like_input

DT = 1e-4


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------

def lif_node(n, beta, threshold=1.0):
    tau = DT / (1.0 - beta)
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, tau / DT), v_leak=np.zeros(n),
                   v_threshold=np.full(n, threshold), v_reset=np.zeros(n))


def chain(*named, input_shape):
    """A NIR chain input -> named nodes -> output."""
    nodes = {"input": nir.Input(input_type=np.array(input_shape))}
    nodes.update(named)
    names = list(nodes)
    last = named[-1][1]
    out = last.output_type["output"] if last.output_type.get("output") is not None else None
    nodes["output"] = nir.Output(output_type=np.array(out if out is not None else [1]))
    names.append("output")
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), metadata={"dt": DT},
                        type_check=False)


# Impulse response, hand-computed. Two LIF neurons (beta 0.5, threshold 1) behind one synapse
# layer with weights 0.8 and 1.5, one input channel, T = 6, two samples fed back to back:
#   sample 0 x = 1 1 1 0 0 1
#     neuron 0: v = .8, 1.2 (spike, v <- 0), .8, .4, .2, .9        -> 0 1 0 0 0 0
#     neuron 1: v = 1.5 each time x = 1                             -> 1 1 1 0 0 1
#   sample 1 x = 1 0 0 0 0 0
#     neuron 0: v = .8 from rest -> 0 0 0 0 0 0 (without the reset between samples it would start
#               at .45 and spike: .45 + .8 = 1.25)
#     neuron 1: 1 0 0 0 0 0
IMPULSE_X = np.array([[1, 1, 1, 0, 0, 1], [1, 0, 0, 0, 0, 0]], dtype=np.float64).T[:, :, None]  # (T, B, 1)
IMPULSE_SPIKES = np.zeros((6, 2, 2), dtype=np.uint8)
IMPULSE_SPIKES[:, 0, 0] = [0, 1, 0, 0, 0, 0]
IMPULSE_SPIKES[:, 0, 1] = [1, 1, 1, 0, 0, 1]
IMPULSE_SPIKES[:, 1, 1] = [1, 0, 0, 0, 0, 0]


def impulse_graph():
    return chain(("fc", nir.Linear(weight=np.array([[0.8], [1.5]]))), ("lif", lif_node(2, 0.5)), input_shape=[1])


def small_model(name, width, seed=0, gain=3.0):
    """A small SpikingNet on 1x8x8 input with weights scaled up so that its neurons spike."""
    torch.manual_seed(seed)
    model = build_model(ModelSpec(name=name, input_shape=(1, 8, 8), num_classes=10, width=width))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.weight.mul_(gain)
    return model.eval()



# ------------------------------------------------------------------------------------------------
# linear algebra: conv, pooling folded into conv, flatten order
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1), (2, 0, 1, 4)])
def test_conv_matrix_matches_torch(stride, padding, dilation, groups):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(4, 4 // groups, 3, 3, generator=g, dtype=torch.float64)
    x = torch.randn(4, 7, 9, generator=g, dtype=torch.float64)
    ref = F.conv2d(x[None], w, stride=stride, padding=padding, dilation=dilation, groups=groups)[0]
    m = lc.conv_matrix(w.numpy(), (4, 7, 9), stride, padding, dilation, groups)
    np.testing.assert_allclose(m @ x.numpy().ravel(), ref.numpy().ravel(), rtol=1e-12, atol=1e-12)


def _pool_conv_graph(hw, pool):
    g = np.random.default_rng(2)
    w = g.normal(size=(5, 3, 3, 3))
    b = g.normal(size=5)
    conv = nir.Conv2d(input_shape=(hw[0] // 2, hw[1] // 2), weight=w, stride=1, padding=1, dilation=1, groups=1,
                      bias=b)
    out_hw = (hw[0] // 2, hw[1] // 2)
    return chain(("pool", pool), ("conv", conv), ("lif", lif_node((5,) + out_hw, 0.9)), input_shape=[3, *hw]), w, b


@pytest.mark.parametrize("hw,kind", [((8, 8), "conv"), ((7, 9), "sparse")])
def test_avgpool_is_folded_exactly_into_the_next_conv(hw, kind):
    pool = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    graph, w, b = _pool_conv_graph(hw, pool)
    net = lc.convert(graph)
    syn = net.layers[0].synapse
    assert syn.kind == kind  # 7x9 is not divisible by 2: exact matrix instead of a bigger kernel
    if kind == "conv":
        assert syn.weight.shape == (5, 3, 6, 6) and syn.stride == (2, 2) and syn.padding == (2, 2)
    x = torch.from_numpy(np.random.default_rng(3).random((3, *hw)))
    ref = F.conv2d(F.avg_pool2d(x[None], 2), torch.from_numpy(w), torch.from_numpy(b), padding=1)[0]
    got = syn.matrix() @ x.numpy().ravel() + net.layers[0].neuron.bias.ravel()
    np.testing.assert_allclose(got, ref.numpy().ravel(), rtol=1e-12, atol=1e-12)


def test_sumpool_and_scale_fold_like_avgpool():
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    graph, _, _ = _pool_conv_graph((8, 8), pool)
    nodes = dict(graph.nodes)
    nodes["scale"] = nir.Scale(scale=np.full((3, 8, 8), 0.25))
    names = ["input", "scale", "pool", "conv", "lif", "output"]
    scaled = nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), metadata={"dt": DT}, type_check=False)
    avg, _, _ = _pool_conv_graph((8, 8), nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                                        padding=np.array([0, 0])))
    a, s = lc.convert(avg).layers[0].synapse, lc.convert(scaled).layers[0].synapse
    assert s.kind == a.kind == "conv"  # a uniform Scale commutes with pooling: folded into the kernel
    np.testing.assert_allclose(s.matrix().toarray(), a.matrix().toarray(), atol=1e-15)


def test_flatten_is_a_permutation_between_lava_and_torch_order():
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    np.testing.assert_array_equal(x.ravel()[lc.lava_order((2, 3, 4))], x.transpose(2, 1, 0).ravel())
    np.testing.assert_array_equal(lc.lava_order((5,)), np.arange(5))


# ------------------------------------------------------------------------------------------------
# fixed point: pure functions
# ------------------------------------------------------------------------------------------------

def test_quantize_weights_grid_and_sum_preserving_rounding():
    g = np.random.default_rng(4)
    values = g.normal(scale=60, size=300)
    rows = np.array([0, 100, 200, 300])
    q = lf.quantize_weights(values, mixed=True, rows=rows)
    assert np.all(q % 2 == 0) and q.min() >= -256 and q.max() <= 254
    assert np.all(np.abs(q - values) < 2.0)  # never more than one step (2) away
    for a, b in zip(rows[:-1], rows[1:]):
        assert abs(q[a:b].sum() - values[a:b].sum()) <= 2.0  # row sums kept within one step
    nearest = lf.quantize_weights(values, mixed=True)
    assert np.all(np.abs(nearest - values) <= 1.0)
    assert np.all(lf.quantize_weights(np.abs(values), mixed=False) <= 255)


def test_split_weights_recombine_into_two_8bit_groups():
    w = 2 * np.random.default_rng(5).integers(-16000, 16000, size=(6, 7))
    hi, lo = lf.split_weights(w, 7)
    np.testing.assert_array_equal(hi * 2 ** 7 + lo, w)
    assert np.abs(hi).max() <= 254 and np.abs(lo).max() <= 128 and np.all(hi % 2 == 0) and np.all(lo % 2 == 0)
    hs, ls = lf.split_weights(sp.csr_matrix(w), 7)
    np.testing.assert_array_equal((hs * 2 ** 7 + ls).toarray(), w)


def test_exact_frac_bits():
    assert lf.exact_frac_bits(np.arange(17) / 16.0) == 4
    assert lf.exact_frac_bits(np.array([0.0, 1.0])) == 0
    assert lf.exact_frac_bits(np.array([0.1])) is None


def test_fixed_parameters_of_a_layer():
    q = lf.quantize(lc.convert(impulse_graph()))
    f = q.layers[0].fixed
    assert (f.du, f.dv, f.bias_exp) == (4095, 2048, 6)  # beta 0.5: dv = 0.5 * 4096
    assert f.vth == round(1.0 * f.scale) and f.vth <= lf.VTH_TARGET
    w = f.weight.toarray().ravel()
    np.testing.assert_allclose(w * f.input_scale / f.scale, [0.8, 1.5], rtol=5e-3)
    assert f.errors["weight_rel"] < 5e-3 and f.errors["beta_abs"] == 0.0


def test_emulated_fixed_point_impulse_response():
    q = lf.quantize(lc.convert(impulse_graph()))
    np.testing.assert_array_equal(lf.emulate_fixed(q, IMPULSE_X)[0], IMPULSE_SPIKES)


# ------------------------------------------------------------------------------------------------
# user errors
# ------------------------------------------------------------------------------------------------

def test_unsupported_node_is_named():
    conv1d = nir.Conv1d(input_shape=3, weight=np.ones((2, 1, 2)), stride=1, padding=0, dilation=1, groups=1,
                        bias=np.zeros(2))
    nodes = {"input": nir.Input(np.array([1, 3])), "c1": conv1d, "output": nir.Output(np.array([2, 2]))}
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "c1"), ("c1", "output")], type_check=False)
    with pytest.raises(EslError, match=r"c1.*Conv1d"):
        lc.convert(graph)


def test_recurrent_edge_becomes_a_gated_recurrent_synapse():
    """A neuron's recurrent synapse onto itself (tests/test_nir_graphs.py runs such graphs against the reader)."""
    nodes = {"input": nir.Input(input_type=np.array([1])), "fc": nir.Linear(weight=np.ones((2, 1))),
             "lif": lif_node(2, 0.9), "rec": nir.Linear(weight=np.eye(2)),
             "output": nir.Output(output_type=np.array([2]))}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
    net = lc.convert(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False, metadata={"dt": DT}))
    parts = net.layers[0].synapse.parts
    assert [(p.source, p.shift) for p in parts] == [(-1, 0), (0, 1)] and net.depths() == [1]


def test_wrong_shapes_are_refused():
    graph = chain(("fc", nir.Linear(weight=np.ones((2, 5)))), ("lif", lif_node(2, 0.9)), input_shape=[4])
    with pytest.raises(EslError, match=r"'fc' of type Linear expects input of shape \(5,\)"):
        lc.convert(graph)
    net = lc.convert(impulse_graph())
    with pytest.raises(EslError, match="does not match the network"):
        lr.run(net, np.zeros((6, 2, 3)))
    with pytest.raises(EslError, match="fixed-point input range"):
        lf.emulate_fixed(lf.quantize(net), IMPULSE_X * 2)


def test_lif_parameters_lava_cannot_hold_are_refused():
    # per-neuron beta runs (LeakyReset, tests/test_lava_reset_modes.py); the LI readout keeps one beta
    tau = np.array([5 * DT, 10 * DT])
    readout = nir.LI(tau=tau, r=tau / DT, v_leak=np.zeros(2))
    with pytest.raises(EslError, match=r"'out' \(LI\): beta .* varies"):
        lc.convert(chain(("fc", nir.Linear(weight=np.ones((2, 1)))), ("lif", lif_node(2, 0.9)),
                         ("fc2", nir.Linear(weight=np.ones((2, 2)))), ("out", readout), input_shape=[1]))
    node = lif_node(2, 0.9)
    node.v_reset = np.full(2, 0.5)  # NIR's reset value runs (LeakyReset): tests/test_nir_graphs.py
    assert lc.convert(chain(("fc", nir.Linear(weight=np.ones((2, 1)))), ("lif", node),
                            input_shape=[1])).layers[0].neuron.v_reset == 0.5
    graph = chain(("fc", nir.Linear(weight=np.ones((2, 1)))), ("lif", lif_node(2, 0.9)),
                  ("fc2", nir.Linear(weight=np.ones((3, 2)))), input_shape=[1])
    with pytest.raises(EslError, match=r"'fc2' of type Linear comes after the last neuron layer"):
        lc.convert(graph)


def test_files_that_are_not_networks_are_refused(tmp_path):
    text = tmp_path / "model.net"
    text.write_text("not hdf5")
    with pytest.raises(EslError, match="not HDF5"):
        read_lava(text)
    with pytest.raises(EslError, match="not HDF5"):
        run_netx(text, IMPULSE_X)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=1)
    with pytest.raises(EslError, match="without /layer/0"):
        run_netx(other, IMPULSE_X)
    with pytest.raises(EslError, match="not a Lava network file"):
        read_lava(other)


# ------------------------------------------------------------------------------------------------
# Lava runs: impulse responses (float, fixed point, netx, IF)
# ------------------------------------------------------------------------------------------------

def test_impulse_response_lava_float():
    res = lr.run(lc.convert(impulse_graph()), IMPULSE_X, mode="float")
    assert res.names == ["lif"] and res.steps == 6 * 2 + 1
    np.testing.assert_array_equal(res.output, IMPULSE_SPIKES)


@pytest.mark.parametrize("groups,frac_bits", [(1, None), (2, 0)])
def test_impulse_response_lava_fixed(groups, frac_bits):
    net = lf.quantize(lc.convert(impulse_graph()), groups=groups, input_frac_bits=frac_bits)
    assert (net.layers[0].fixed.split_exp > 0) == (groups == 2)  # one-signed weights split into two groups
    res = lr.run(net, IMPULSE_X, mode="fixed")
    np.testing.assert_array_equal(res.output, IMPULSE_SPIKES)


def test_impulse_response_netx(tmp_path):
    path = write_netx(impulse_graph(), tmp_path / "impulse.net")
    res = run_netx(path, IMPULSE_X)
    np.testing.assert_array_equal(res.output, IMPULSE_SPIKES)


def test_bias_wider_than_13_bits_uses_bias_exp_7_with_split_weights(tmp_path):
    # v = 0.5 v + 0.6 + 0.01 x (x = 1): .61, .915, 1.0675 (spike), .61, .915, 1.0675 (spike); the other
    # neuron has a negative bias and never spikes.
    graph = chain(("fc", nir.Affine(weight=np.array([[0.01], [0.02]]), bias=np.array([0.6, -0.3]))),
                  ("lif", lif_node(2, 0.5)), input_shape=[1])
    net = lf.quantize(lc.convert(graph), groups=2, input_frac_bits=0)
    f = net.layers[0].fixed
    assert f.bias_exp == 7 and np.abs(f.bias_mant).max() <= 4095
    assert f.errors["bias_abs"] < 1e-3
    res = lr.run(net, np.ones((6, 1, 1)), mode="fixed")
    np.testing.assert_array_equal(res.output[:, 0], [[0, 0], [0, 0], [1, 0], [0, 0], [0, 0], [1, 0]])
    with pytest.raises(EslError, match="netx"):
        write_netx_file(net, tmp_path / "x.net")


def test_if_neuron_integrates_without_leak():
    node = nir.IF(r=np.full(1, 1.0 / DT), v_threshold=np.ones(1), v_reset=np.zeros(1))
    graph = chain(("fc", nir.Linear(weight=np.array([[0.4]]))), ("if", node), input_shape=[1])
    net = lc.convert(graph)
    assert net.layers[0].neuron.beta == 1.0
    res = lr.run(net, np.ones((6, 1, 1)), mode="float")
    np.testing.assert_array_equal(res.output[:, 0, 0], [0, 0, 1, 0, 0, 1])  # v = .4, .8, 1.2


# ------------------------------------------------------------------------------------------------
# Lava runs: whole networks against snnTorch
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("conv", ["conv", "matrix"])
def test_convnet_with_pooling_in_lava_float_equals_snntorch(conv):
    model = small_model("convnet", 0.25)
    x = digit_like_input(6, 3)
    ref = snntorch_spikes(model, x.astype(np.float32))
    net = lc.convert(to_nir(model), conv=conv)
    assert [l.synapse.kind for l in net.layers] == (["conv", "conv", "sparse"] if conv == "conv" else ["sparse"] * 3)
    res = lr.run(net, x, mode="float")
    assert len(res.spikes) == len(ref) == 3
    assert all(r.any() for r in ref)  # every layer spikes: the comparison means something
    for got, want in zip(res.spikes, ref):
        np.testing.assert_array_equal(got, want)


def test_mlp_in_lava_float_equals_snntorch_and_per_sample_runs():
    model = small_model("mlp", 0.05, seed=1)
    x = digit_like_input(5, 2, seed=1)
    ref = snntorch_spikes(model, x.astype(np.float32))
    net = lc.convert(to_nir(model), synapse="dense")
    whole = lr.run(net, x, mode="float")
    for got, want in zip(whole.spikes, ref):
        np.testing.assert_array_equal(got, want)
    single = lr.run_per_sample(net, x, mode="float", record="all")
    for got, want in zip(single.spikes, whole.spikes):
        np.testing.assert_array_equal(got, want)


def test_fixed_point_lava_equals_its_emulation_and_netx(tmp_path):
    model = small_model("convnet", 0.25, seed=2)
    x = digit_like_input(5, 3, seed=2)
    graph = to_nir(model)
    split = lf.quantize(lc.convert(graph), groups=2, input_frac_bits=4)
    assert any(l.fixed.split_exp > 0 for l in split.layers)  # the two-group path is exercised
    assert all(l.fixed.split_exp == 0 for l in split.layers if l.synapse.kind == "conv")  # Conv: 8-bit, no exponent
    res = lr.run(split, x, mode="fixed")
    peaks = {}
    for got, want in zip(res.spikes, lf.emulate_fixed(split, x, peaks)):
        np.testing.assert_array_equal(got, want)
    for layer in split.layers:  # every synapse port and the LIF's a_in stay inside 16 bits
        assert all(-2 ** 15 <= lo and hi < 2 ** 15 for k, (lo, hi) in peaks[layer.neuron.name].items()
                   if k.startswith("a_"))
        assert max(-peaks[layer.neuron.name]["a_in"][0], peaks[layer.neuron.name]["a_in"][1]) <= \
            layer.fixed.errors["a_in_bound"]
    ref = snntorch_spikes(model, x.astype(np.float32))
    assert all(np.mean(a == b) > 0.95 for a, b in zip(res.spikes, ref))
    write_netx(graph, tmp_path / "conv.net")
    netx = run_netx(tmp_path / "conv.net", x)
    for got, want in zip(netx.spikes, lf.emulate_fixed(netx_net(graph), x)):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------

def test_lava_export_round_trip(tmp_path):
    graph = to_nir(small_model("convnet", 0.25))
    path = write_lava(graph, tmp_path / "net.lava")
    back = read_lava(path)
    orig = lf.quantize(lc.convert(graph), groups=2)
    assert back.input_shape == orig.input_shape and back.dt == orig.dt and back.input_max == orig.input_max
    for a, b in zip(orig.layers, back.layers):
        assert (a.synapse.kind, a.synapse.in_shape, a.synapse.out_shape, a.synapse.nodes) == \
               (b.synapse.kind, b.synapse.in_shape, b.synapse.out_shape, b.synapse.nodes)
        assert (a.synapse.stride, a.synapse.padding, a.synapse.groups) == (b.synapse.stride, b.synapse.padding,
                                                                           b.synapse.groups)
        np.testing.assert_array_equal(sp.csr_matrix(a.synapse.matrix()).toarray(), b.synapse.matrix().toarray())
        assert (a.neuron.name, a.neuron.beta, a.neuron.threshold) == (b.neuron.name, b.neuron.beta, b.neuron.threshold)
        np.testing.assert_array_equal(a.neuron.bias, b.neuron.bias)
        fa, fb = a.fixed, b.fixed
        assert (fa.scale, fa.input_scale, fa.vth, fa.dv, fa.du, fa.split_exp) == \
               (fb.scale, fb.input_scale, fb.vth, fb.dv, fb.du, fb.split_exp)
        assert fa.errors == fb.errors
    x = digit_like_input(4, 2)
    for got, want in zip(lf.emulate_fixed(back, x), lf.emulate_fixed(orig, x)):
        np.testing.assert_array_equal(got, want)


def test_netx_file_layout(tmp_path):
    graph = to_nir(small_model("convnet", 0.25))
    path = write_netx(graph, tmp_path / "conv.net")
    net = netx_net(graph)
    with h5py.File(path, "r") as f:
        types = [f[f"layer/{i}/type"][0].decode() for i in range(len(f["layer"]))]
        assert types == ["input", "conv", "conv", "flatten", "dense"]
        assert tuple(f["layer/0/shape"][()]) == (1, 8, 8)
        assert tuple(f["layer/2/shape"][()]) == (8, 4, 4)
        assert f["layer/2/weight"].shape == (8, 4, 6, 6)  # 3x3 conv with the 2x2 average pool folded in
        assert tuple(f["layer/2/stride"][()]) == (2, 2) and tuple(f["layer/2/padding"][()]) == (2, 2)
        assert f["layer/4/weight"].shape == (10, 8 * 4 * 4)  # the last pool folded into the dense matrix
        for i, layer in zip((1, 2, 4), net.layers):
            n = f[f"layer/{i}/neuron"]
            assert n["type"][0] == b"CUBA" and n["iDecay"][()] == 4096
            assert n["vDecay"][()] == layer.fixed.dv == 410 and n["vThMant"][()] == layer.fixed.vth
            w = f[f"layer/{i}/weight"][()]
            assert w.dtype.kind == "i" and np.abs(w).max() <= 256
        assert f["esl"].attrs["input_scale"] == net.layers[0].fixed.input_scale


# ------------------------------------------------------------------------------------------------
# esl simulate
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nir_file(tmp_path_factory):
    model = small_model("mlp", 0.05, seed=3)
    path = tmp_path_factory.mktemp("sim") / "mlp.nir"
    write_nir(model, path, {"T": 4, "encoding": "direct"})
    return path


def test_simulate_lava_float_reproduces_snntorch(nir_file):
    report = simulate(nir_file, "lava", limit=3, progress=False)
    assert (report.samples, report.T, report.encoding) == (3, 4, "direct")
    assert report.accuracy == report.snntorch_accuracy
    assert report.output_agreement == 100.0 and report.identical_outputs == 100.0
    assert list(report.layer_agreement) == ["2", "4"] and all(v == 100.0 for v in report.layer_agreement.values())
    assert report.samples_per_s > 0 and report.quant_error is None
    d = report.to_dict()
    assert d["backend"] == "lava" and d["reference"] == "snntorch float64"


def test_simulate_cli_json_lava_fixed(nir_file):
    result = CliRunner().invoke(simulate_cmd, [str(nir_file), "--backend", "lava-fixed", "--limit", "3", "--json",
                                               "--no-progress"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    assert d["backend"] == "lava-fixed" and d["samples"] == 3
    assert set(d["quant_error"]) == {"2", "4"} and d["details"]["weight_groups"] == 2.0
    # the first layer (64 dense graded inputs, 4 fractional bits) has its scale set by the 16-bit a_in
    # worst case, which leaves it about 8 weight bits (~1 % error); the binary hidden layer keeps split weights
    assert all(e["weight_rel"] < 0.02 for e in d["quant_error"].values())
    assert all(e["a_in_bound"] <= 32767 for e in d["quant_error"].values())
    assert d["output_agreement"] > 90.0


def test_simulate_snntorch_backend_and_bad_options(nir_file):
    report = simulate(nir_file, "snntorch", limit=5, progress=False)
    assert report.output_agreement == 100.0  # float32 run against the float64 reference
    with pytest.raises(EslError, match="unknown backend"):
        simulate(nir_file, "loihi", progress=False)
    with pytest.raises(EslError, match="weight-groups must be 1"):
        simulate(nir_file, "netx", progress=False, weight_groups=2)
    with pytest.raises(EslError, match="no such file"):
        simulate(nir_file.parent / "missing.nir", "lava", progress=False)


def test_run_without_recorders_is_the_floor_and_records_nothing():
    """``record="none"`` (benchmarks/bench_lava.py's floor): the same network, no spikes kept."""
    from esl_deploy.models import ModelSpec, build_model
    from esl_deploy.export.lava.convert import convert
    from esl_deploy.export.lava.run import run
    from esl_deploy.export.nir.write import to_nir
    from helpers import digit_like_input

    model = build_model(ModelSpec(name="mlp", input_shape=(1, 8, 8), num_classes=10, width=0.05)).eval()
    x = digit_like_input(4, 3).astype(np.float32)
    res = run(convert(to_nir(model)), x, record="none", chunk=3)
    assert res.spikes == [] and res.steps == 3 * 4 + 2
