"""snnTorch ``Leaky`` reset mechanisms and per-neuron parameters on the Lava backend, netx and ONNX.

Every (reset_mechanism, reset_delay) pair snnTorch 1.0.0 offers, on NIR graphs built by hand (LIF and IF
nodes carrying the ``reset_mechanism``/``reset_delay`` metadata, per-neuron beta and threshold in the
first layer, uniform ones in the second), is run through :func:`convert` and :func:`run` and compared
spike for spike, every layer, with ``snntorch.Leaky`` itself stepped in float64 on the same random spike
inputs. Fixed point: on a grid where every quantity is an integer (checked in the test), Lava fixed,
:func:`emulate_fixed` and the float reference agree exactly; on random weights Lava fixed and the
emulator agree exactly. Lava runs are slow, so the layers are small and T short.
"""
from __future__ import annotations

import esl_deploy  # noqa: F401  (installs the lava import hook before any lava import)
import h5py
import nir
import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

from esl_deploy.errors import EslError
from esl_deploy.models import ModelSpec, SpikingNet
from esl_deploy.neurons import LIF
from esl_deploy.export.lava import convert as lc
from esl_deploy.export.lava import fixed as lf
from esl_deploy.export.lava import run as lr
from esl_deploy.export.lava.file import read_lava, write_lava_file
from esl_deploy.export.lava.leaky import float_step
from esl_deploy.export.lava.netx import write_netx
from esl_deploy.export.onnx import UnrolledNet, run_onnx, to_onnx

DT = 1e-4
MODES = [(m, d) for m in ("zero", "subtract", "none") for d in (False, True)]
MODE_IDS = [f"{m}-{'delay' if d else 'nodelay'}" for m, d in MODES]


# ------------------------------------------------------------------------------------------------
# NIR graphs and the snnTorch reference
# ------------------------------------------------------------------------------------------------

def lif_node(beta, threshold, mechanism, delay, shape=None):
    """A NIR LIF with snnTorch's Euler step: tau = dt / (1 - beta), r = tau / dt, and the reset metadata."""
    beta = np.asarray(beta, dtype=np.float64)
    shape = beta.shape if shape is None else shape
    beta = np.broadcast_to(beta, shape)
    tau = DT / (1.0 - beta)
    return nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(shape),
                   v_threshold=np.broadcast_to(np.asarray(threshold, dtype=np.float64), shape).copy(),
                   v_reset=np.zeros(shape), metadata={"reset_mechanism": mechanism, "reset_delay": delay})


def if_node(threshold, metadata):
    threshold = np.asarray(threshold, dtype=np.float64)
    return nir.IF(r=np.full(threshold.shape, 1.0 / DT), v_threshold=threshold, v_reset=np.zeros(threshold.shape),
                  metadata=metadata)


def chain(named, input_shape, output_shape):
    nodes = {"input": nir.Input(input_type=np.array(input_shape))}
    nodes.update(named)
    nodes["output"] = nir.Output(output_type=np.array(output_shape))
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), metadata={"dt": DT}, type_check=False)


def snntorch_reference(layers, x, mechanism, delay, dtype=torch.float64):
    """Spikes (uint8) and stored membranes of every layer: ``snn.Leaky`` stepped through T steps.

    ``layers``: (synapse function on a (N, ...) tensor, beta, threshold) per layer; it is applied to all
    T steps at once (time folded into the batch, as ``SpikingNet`` does), then the neuron steps."""
    h = torch.as_tensor(x, dtype=dtype)
    spikes, mems = [], []
    for fn, beta, threshold in layers:
        leaky = snn.Leaky(beta=torch.as_tensor(beta, dtype=dtype), threshold=torch.as_tensor(threshold, dtype=dtype),
                          reset_mechanism=mechanism, reset_delay=delay)
        currents = fn(h.flatten(0, 1))
        currents = currents.reshape(h.shape[:2] + currents.shape[1:])
        mem, s_all, m_all = torch.zeros_like(currents[0]), [], []
        for current in currents:
            s, mem = leaky(current, mem)
            s_all.append(s)
            m_all.append(mem)
        h = torch.stack(s_all).to(dtype)
        spikes.append(h.numpy().astype(np.uint8))
        mems.append(torch.stack(m_all).numpy())
    return spikes, mems


def affine(w, b):
    w, b = torch.as_tensor(w), torch.as_tensor(b)
    return lambda h: h @ w.T.to(h.dtype) + b.to(h.dtype)


def spikes_in(g, T, B, shape, p):
    return (g.random((T, B) + tuple(shape)) < p).astype(np.float64)


def float32_betas(g, n):
    """Per-neuron betas in [0.5, 0.95) that are float32 numbers (NIR's tau round-trip lands on them exactly)."""
    return g.uniform(0.5, 0.95, n).astype(np.float32).astype(np.float64)


def mlp_case(mechanism, delay, seed=0, T=16, B=3):
    """Input(10) -> Affine -> LIF(8; per-neuron beta and threshold) -> Affine -> LIF(5; uniform) -> Output."""
    g = np.random.default_rng(seed)
    n0, n1, n2 = 10, 8, 5
    b1, t1 = float32_betas(g, n1), g.uniform(0.5, 1.5, n1)
    b2, t2 = 0.75, 1.0
    w1, c1 = g.normal(0.35, 0.8, (n1, n0)), g.normal(0.0, 0.1, n1)
    w2, c2 = g.normal(0.45, 0.8, (n2, n1)), g.normal(0.0, 0.1, n2)
    graph = chain([("fc1", nir.Affine(weight=w1, bias=c1)), ("lif1", lif_node(b1, t1, mechanism, delay)),
                   ("fc2", nir.Affine(weight=w2, bias=c2)), ("lif2", lif_node(b2, t2, mechanism, delay, (n2,)))],
                  [n0], [n2])
    layers = [(affine(w1, c1), b1, t1), (affine(w2, c2), np.full(n2, b2), np.full(n2, t2))]
    return graph, layers, spikes_in(g, T, B, (n0,), 0.4)


def assert_resets_matter(layers, x, mechanism, delay, spikes, mems, dtype=torch.float64):
    """The reference is a test of the reset: neurons spike (not always), subtract drives membranes past
    2 thresholds, and the spikes differ from those of snnTorch's zero reset without delay. (Zero reset
    with delay spikes exactly like it, ``M = I`` after a spike either way; only its stored membrane
    differs, checked in :func:`test_leaky_reset_membrane_equals_snntorch`.)"""
    for s in spikes:
        assert 0 < s.mean() < 1
    if mechanism == "subtract":
        assert any(np.any(m > 2 * np.asarray(th)) for m, (_, _, th) in zip(mems, layers))
    if mechanism != "zero":
        stock, _ = snntorch_reference(layers, x, "zero", False, dtype)
        assert any(np.any(a != b) for a, b in zip(stock, spikes))


def assert_same_spikes(got, want, names):
    assert len(got) == len(want)
    for name, a, b in zip(names, got, want):
        assert a.shape == b.shape, name
        agreement = float(np.mean(a == b))
        assert agreement == 1.0, f"{name}: {100 * agreement:.3f} % of spikes agree"


# ------------------------------------------------------------------------------------------------
# the step itself: hand-computed traces
# ------------------------------------------------------------------------------------------------

# One neuron, beta 0.5, threshold 1, input 2.5, 0.6, 0, 1.2 (M = stored membrane, r = M[t-1] > 1):
#   zero, no delay      P = 2.5 (S) -> 0;  .6;  .3;  1.35 (S) -> 0
#   zero, delay         2.5 (S);  r: .5*0 + .6 = .6;  .3;  1.35 (S)
#   subtract, delay     2.5 (S);  r: 1.25 + .6 - 1 = .85;  .425;  1.4125 (S)
#   subtract, no delay  P = 2.5 (S), M = 1.5;  r: P = .75 + .6 - 1 = .35, M = .35 + 1 = 1.35;
#                       r: P = .675 - 1 = -.325, M = .675;  P = 1.5375 (S), M = .5375
#   none                2.5 (S);  1.85 (S);  .925;  1.6625 (S)
GOLDEN = {
    ("zero", False): ([1, 0, 0, 1], [0.0, 0.6, 0.3, 0.0]),
    ("zero", True): ([1, 0, 0, 1], [2.5, 0.6, 0.3, 1.35]),
    ("subtract", True): ([1, 0, 0, 1], [2.5, 0.85, 0.425, 1.4125]),
    ("subtract", False): ([1, 0, 0, 1], [1.5, 1.35, 0.675, 0.5375]),
    ("none", True): ([1, 1, 0, 1], [2.5, 1.85, 0.925, 1.6625]),
    ("none", False): ([1, 1, 0, 1], [2.5, 1.85, 0.925, 1.6625]),
}


@pytest.mark.parametrize("mechanism,delay", MODES, ids=MODE_IDS)
def test_float_step_hand_computed_and_equal_to_snntorch(mechanism, delay):
    current = [2.5, 0.6, 0.0, 1.2]
    v, spikes, mems = np.zeros(1), [], []
    for i in current:
        v, s = float_step(v, np.array([i]), 0.0, 0.5, 1.0, mechanism, delay)
        spikes.append(int(s[0]))
        mems.append(float(v[0]))
    want_s, want_m = GOLDEN[(mechanism, delay)]
    assert spikes == want_s
    np.testing.assert_allclose(mems, want_m, atol=1e-12)
    ref_s, ref_m = snntorch_reference([(lambda h: h, [0.5], [1.0])], np.array(current)[:, None, None],
                                      mechanism, delay)
    assert ref_s[0].ravel().tolist() == want_s
    np.testing.assert_allclose(ref_m[0].ravel(), want_m, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Lava floating point against snnTorch
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism,delay", MODES, ids=MODE_IDS)
def test_mlp_lava_float_equals_snntorch(mechanism, delay):
    graph, layers, x = mlp_case(mechanism, delay)
    ref, mems = snntorch_reference(layers, x, mechanism, delay)
    assert_resets_matter(layers, x, mechanism, delay, ref, mems)
    net = lc.convert(graph)
    first, second = (layer.neuron for layer in net.layers)
    assert (first.reset_mechanism, first.reset_delay) == (mechanism, delay)
    assert isinstance(first.beta, np.ndarray) and isinstance(first.threshold, np.ndarray) and not first.stock
    np.testing.assert_array_equal(first.beta, layers[0][1])  # the float32 betas come back exactly
    assert second.uniform and second.stock == ((mechanism, delay) == ("zero", False))
    res = lr.run(net, x, mode="float")
    assert res.names == ["lif1", "lif2"]
    assert_same_spikes(res.spikes, ref, res.names)


@pytest.mark.parametrize("mechanism,delay", MODES, ids=MODE_IDS)
def test_if_lava_float_equals_snntorch(mechanism, delay):
    # metadata as HDF5 may hand it back: bytes and numpy bools
    g = np.random.default_rng(1)
    n0, n1, n2, T, B = 9, 6, 4, 16, 3
    t1, t2 = g.uniform(0.8, 2.0, n1), 1.5
    w1, w2 = g.normal(0.3, 0.8, (n1, n0)), g.normal(0.4, 0.8, (n2, n1))
    meta = {"reset_mechanism": np.bytes_(mechanism.encode()), "reset_delay": np.bool_(delay)}
    graph = chain([("fc1", nir.Linear(weight=w1)), ("if1", if_node(t1, meta)),
                   ("fc2", nir.Linear(weight=w2)), ("if2", if_node(np.full(n2, t2), dict(meta)))], [n0], [n2])
    layers = [(affine(w1, np.zeros(n1)), np.ones(n1), t1), (affine(w2, np.zeros(n2)), np.ones(n2), np.full(n2, t2))]
    x = spikes_in(g, T, B, (n0,), 0.4)
    ref, mems = snntorch_reference(layers, x, mechanism, delay)
    assert_resets_matter(layers, x, mechanism, delay, ref, mems)
    net = lc.convert(graph)
    assert [layer.neuron.beta for layer in net.layers] == [1.0, 1.0]
    res = lr.run(net, x, mode="float")
    assert_same_spikes(res.spikes, ref, res.names)


def leaky_membrane(mechanism, delay, mode, w, dv, vth, x):
    """Run Source -> Dense(w) -> :class:`LeakyReset` for the columns of ``x`` (T, n_in) in Lava ``mode``;
    returns ``v`` after every step (T, n), read by a Lava ``Monitor``."""
    lr.import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.monitor.process import Monitor
    from esl_deploy.export.lava.procs.leaky_reset import LeakyReset

    T = x.shape[0]
    source = RingBuffer(data=x.T.copy())
    dense = Dense(weights=w, **({"weight_exp": 0} if mode == "fixed" else {}))
    neurons = LeakyReset(shape=(w.shape[0],), du=1.0 if mode == "float" else 4095, dv=dv, vth=vth,
                         bias_exp=6 if mode == "fixed" else 0, reset_interval=10 * T, reset_offset=0,
                         reset_mechanism=mechanism, reset_delay=delay)
    source.s_out.connect(dense.s_in)
    dense.a_out.connect(neurons.a_in)
    monitor = Monitor()
    monitor.probe(neurons.v, T)
    try:
        source.run(condition=RunSteps(num_steps=T), run_cfg=lr.run_config(mode))
        return monitor.get_data()[neurons.name]["v"]
    finally:
        source.stop()


@pytest.mark.parametrize("mode", ["float", "fixed"])
@pytest.mark.parametrize("mechanism,delay", MODES, ids=MODE_IDS)
def test_leaky_reset_membrane_equals_snntorch(mechanism, delay, mode):
    """The stored ``v`` of :class:`LeakyReset`, read every step, is snnTorch's stored membrane (the spikes
    above cannot tell zero-with-delay from zero-without). Fixed point on integers where every decay is
    exact (beta 1/2, currents multiples of 2^7, T = 8): ``v`` equals the float64 membrane in units of
    ``vth << 6`` exactly, so the subtraction of ``vth << 6`` and the delayed reset are checked too."""
    g = np.random.default_rng(7)
    n_in, n, T = 5, 3, 8 if mode == "fixed" else 12
    x = spikes_in(g, T, 1, (n_in,), 0.5)[:, 0]
    if mode == "float":
        w, beta, th = g.normal(0.5, 0.7, (n, n_in)), float32_betas(g, n), g.uniform(0.6, 1.4, n)
        v = leaky_membrane(mechanism, delay, mode, w, 1.0 - beta, th, x)
    else:
        w = 2.0 * g.integers(-20, 60, (n, n_in))   # even: Lava's mixed-sign Dense drops the lowest bit
        vth, beta = np.array([100, 150, 200]), np.full(n, 0.5)
        v = leaky_membrane(mechanism, delay, mode, w.astype(np.int32), np.full(n, 2048), vth, x)
        w, th = w * 2 ** 6, vth * 2.0 ** 6   # a_in << 6 and vth << 6: the float model in v's units
    # step t (1-based) integrates input column t - 2 (source, then one step of synaptic delay)
    currents = np.concatenate([np.zeros((1, n)), x[:-1] @ w.T])[:, None, :]
    ref, mems = snntorch_reference([(lambda h: h, beta, th)], currents, mechanism, delay)
    assert 0 < ref[0].mean() < 1
    if mode == "float":
        np.testing.assert_allclose(v, mems[0][:, 0], rtol=1e-12, atol=1e-12)
    else:
        assert np.array_equal(beta * mems[0], np.round(beta * mems[0]))  # every decay exact in integers
        np.testing.assert_array_equal(v, mems[0][:, 0])


def conv_case(mechanism, delay, seed=2, T=12, B=2):
    """Input(1, 6, 6) -> Conv2d(2, 3x3, padding 1) -> LIF(2, 6, 6; per-neuron) -> Flatten -> Affine -> LIF(4)."""
    g = np.random.default_rng(seed)
    kernel, kb = g.normal(0.35, 0.6, (2, 1, 3, 3)), g.normal(0.0, 0.1, 2)
    shape1 = (2, 6, 6)
    b1, t1 = float32_betas(g, 72).reshape(shape1), g.uniform(0.6, 1.4, shape1)
    w2, c2 = g.normal(0.1, 0.3, (4, 72)), g.normal(0.0, 0.1, 4)
    graph = chain([("conv", nir.Conv2d(input_shape=(6, 6), weight=kernel, stride=1, padding=1, dilation=1, groups=1,
                                       bias=kb)),
                   ("lif1", lif_node(b1, t1, mechanism, delay)),
                   ("flat", nir.Flatten(input_type={"input": np.array(shape1)}, start_dim=0, end_dim=-1)),
                   ("fc", nir.Affine(weight=w2, bias=c2)), ("lif2", lif_node(0.8, 1.0, mechanism, delay, (4,)))],
                  [1, 6, 6], [4])
    k_t, kb_t = torch.as_tensor(kernel), torch.as_tensor(kb)
    layers = [(lambda h: F.conv2d(h, k_t, kb_t, padding=1), b1, t1),
              (lambda h: affine(w2, c2)(h.flatten(1)), np.full(4, 0.8), np.ones(4))]
    return graph, layers, spikes_in(g, T, B, (1, 6, 6), 0.5)


@pytest.mark.parametrize("mechanism,delay", MODES, ids=MODE_IDS)
def test_conv_lava_float_equals_snntorch_and_fixed_equals_emulation(mechanism, delay):
    graph, layers, x = conv_case(mechanism, delay)
    ref, mems = snntorch_reference(layers, x, mechanism, delay)
    assert_resets_matter(layers, x, mechanism, delay, ref, mems)
    net = lc.convert(graph)
    assert net.layers[0].synapse.kind == "conv" and net.layers[0].neuron.threshold.shape == (2, 6, 6)
    res = lr.run(net, x, mode="float")
    assert_same_spikes(res.spikes, ref, res.names)
    q = lf.quantize(net, input_frac_bits=0)
    assert_same_spikes(lr.run(q, x, mode="fixed").spikes, lf.emulate_fixed(q, x), res.names)


# ------------------------------------------------------------------------------------------------
# Loihi 2 fixed point
# ------------------------------------------------------------------------------------------------

def exact_case(mechanism, delay, seed=3, T=8, B=3):
    """Weights on a 1/32 grid with peak 2, thresholds per neuron in {1, 1.5, 2}: the quantiser's lossless
    scale is 64 * 2^k, so with beta 0.5 (LIF) and 1 (IF) every membrane of T = 8 steps is an integer."""
    g = np.random.default_rng(seed)
    n0, n1, n2 = 10, 8, 5
    w1 = g.integers(-16, 49, (n1, n0)) / 32.0
    w1[0, 0] = 2.0 - 1 / 32  # the largest weight, 63/32: an odd multiple of the grid
    w2 = g.integers(-16, 49, (n2, n1)) / 32.0
    w2[0, 0] = 2.0 - 1 / 32
    c1 = g.integers(-2, 3, n1) / 32.0
    t1, t2 = g.choice([1.0, 1.5, 2.0], n1), g.choice([1.0, 1.5, 2.0], n2)
    meta = {"reset_mechanism": mechanism, "reset_delay": delay}
    graph = chain([("fc1", nir.Affine(weight=w1, bias=c1)), ("lif1", lif_node(0.5, t1, mechanism, delay, (n1,))),
                   ("fc2", nir.Linear(weight=w2)), ("if2", if_node(t2, meta))], [n0], [n2])
    layers = [(affine(w1, c1), np.full(n1, 0.5), t1), (affine(w2, np.zeros(n2)), np.ones(n2), t2)]
    return graph, layers, spikes_in(g, T, B, (n0,), 0.5)


@pytest.mark.parametrize("mechanism,delay", MODES, ids=MODE_IDS)
def test_fixed_point_on_an_exact_grid_equals_the_float_reference(mechanism, delay):
    graph, layers, x = exact_case(mechanism, delay)
    ref, mems = snntorch_reference(layers, x, mechanism, delay)
    assert all(0 < s.mean() < 1 for s in ref)
    q = lf.quantize(lc.convert(graph), groups=1, input_frac_bits=0)
    for layer, m, (_, beta, th) in zip(q.layers, mems, layers):
        f = layer.fixed
        assert f.errors["lossless"] == 1.0 and f.errors["threshold_rel"] == 0.0 and f.errors["beta_abs"] == 0.0
        unit = f.scale * 2 ** 6  # one float unit of v in Lava's integer v
        # every membrane and every decayed membrane b M[t-1] is an integer: truncation never bites
        for values in (m, beta * m[:-1]):
            scaled = values * unit
            assert np.array_equal(scaled, np.round(scaled)) and np.abs(scaled).max() < 2 ** 23
        np.testing.assert_array_equal(np.asarray(f.vth) / f.scale, th)
    emulated = lf.emulate_fixed(q, x)
    lava = lr.run(q, x, mode="fixed")
    assert_same_spikes(emulated, ref, lava.names)
    assert_same_spikes(lava.spikes, ref, lava.names)


@pytest.mark.parametrize("mechanism,delay", MODES, ids=MODE_IDS)
def test_fixed_point_lava_equals_emulation_on_random_weights(mechanism, delay):
    graph, layers, x = mlp_case(mechanism, delay, seed=4)
    groups = 2 if delay else 1  # split weights (two synapse groups) on half of the cases
    q = lf.quantize(lc.convert(graph), groups=groups, input_frac_bits=0)
    assert isinstance(q.layers[0].fixed.dv, np.ndarray) and isinstance(q.layers[0].fixed.vth, np.ndarray)
    assert (q.layers[0].fixed.split_exp > 0) == (groups == 2)
    emulated = lf.emulate_fixed(q, x)
    lava = lr.run(q, x, mode="fixed")
    assert_same_spikes(lava.spikes, emulated, lava.names)
    ref, _ = snntorch_reference(layers, x, mechanism, delay)
    assert np.mean(emulated[0] == ref[0]) > 0.97  # quantised, not exact: but the same network


def test_layer_ranges_bound_the_membrane_of_subtract_and_none():
    # input 3 thresholds per step, beta 0.5: v stays below 1 + 3 = 4 thresholds with zero; with subtract
    # it climbs to (3 - 1) / 0.5 = 4 (bound: max(2 + 3, 4) = 5), with none to 3 / 0.5 = 6
    syn = lc.SynapseLayer(kind="dense", in_shape=(1,), out_shape=(1,), weight=np.array([[3.0]]))
    for mechanism, bound in (("zero", 4.0), ("subtract", 5.0), ("none", 6.0)):
        neuron = lc.NeuronLayer(name="n", node_type="LIF", shape=(1,), beta=0.5, threshold=1.0, bias=np.zeros(1),
                                reset_mechanism=mechanism, reset_delay=True)
        layer = lc.LavaLayer(synapse=syn, neuron=neuron)
        f = lf.quantize_layer(layer)
        peaks = {}
        net = lc.LavaNet(input_shape=(1,), layers=[lc.LavaLayer(synapse=syn, neuron=neuron, fixed=f)], input_max=1.0)
        lf.emulate_fixed(net, np.ones((40, 1, 1)), peaks=peaks)
        top = lf.layer_ranges(layer, f)["v"][1]
        assert peaks["n"]["v"][1] <= top <= bound * f.vth * 2 ** 6 * 1.01  # 1 %: the weight's rounding
        assert f.errors["v_saturates"] == 0.0


# ------------------------------------------------------------------------------------------------
# metadata, records, files, netx, ONNX
# ------------------------------------------------------------------------------------------------

def tiny_graph(metadata, v_reset=0.0):
    node = nir.LIF(tau=np.full(2, 5 * DT), r=np.full(2, 5.0), v_leak=np.zeros(2), v_threshold=np.ones(2),
                   v_reset=np.full(2, v_reset), metadata=metadata)
    return chain([("fc", nir.Linear(weight=np.ones((2, 1)))), ("lif", node)], [1], [2])


@pytest.mark.parametrize("metadata,want", [
    ({}, ("zero", False)),
    ({"reset_mechanism": b"subtract", "reset_delay": np.bool_(True)}, ("subtract", True)),
    ({"reset_mechanism": np.array(b"none"), "reset_delay": np.array([1])}, ("none", True)),
    ({"reset_mechanism": np.str_("zero"), "reset_delay": "False"}, ("zero", False)),
])
def test_reset_metadata_is_normalised(metadata, want):
    neuron = lc.convert(tiny_graph(metadata)).layers[0].neuron
    assert (neuron.reset_mechanism, neuron.reset_delay) == want
    assert type(neuron.reset_delay) is bool


def test_unknown_reset_metadata_and_v_reset_are_refused_naming_the_node():
    with pytest.raises(EslError, match=r"node 'lif' \(LIF\): unknown reset_mechanism 'hard'") as e:
        lc.convert(tiny_graph({"reset_mechanism": b"hard"}))
    assert "\n" not in str(e.value)
    with pytest.raises(EslError, match=r"node 'lif' \(LIF\): reset_delay 'maybe'"):
        lc.convert(tiny_graph({"reset_delay": "maybe"}))
    assert lc.convert(tiny_graph({}, v_reset=0.5)).layers[0].neuron.v_reset == 0.5  # NIR's reset value runs
    with pytest.raises(EslError, match=r"v_reset != 0 with reset_mechanism 'zero' and reset_delay"):
        lc.convert(tiny_graph({"reset_delay": True}, v_reset=0.5))
    # subtract and none do not use v_reset
    assert lc.convert(tiny_graph({"reset_mechanism": "subtract"}, v_reset=0.5)).layers[0].neuron.reset_mechanism \
        == "subtract"


def test_neuron_layer_validation():
    kw = dict(name="n", node_type="LIF", shape=(2,), bias=np.zeros(2))
    assert lc.NeuronLayer(beta=np.array([0.5, 0.5]), threshold=1.0, **kw).beta == 0.5  # equal values: one float
    with pytest.raises(ValueError, match="reset_mechanism"):
        lc.NeuronLayer(beta=0.5, threshold=1.0, reset_mechanism="hard", **kw)
    with pytest.raises(ValueError, match="reset_delay"):
        lc.NeuronLayer(beta=0.5, threshold=1.0, reset_delay="yes", **kw)
    with pytest.raises(ValueError, match="3 values"):
        lc.NeuronLayer(beta=np.array([0.5, 0.6, 0.7]), threshold=1.0, **kw)
    with pytest.raises(ValueError, match="beta must lie"):
        lc.NeuronLayer(beta=np.array([0.5, 1.5]), threshold=1.0, **kw)
    with pytest.raises(ValueError, match="readout"):
        lc.NeuronLayer(name="o", node_type="LI", shape=(2,), bias=np.zeros(2), beta=0.5, threshold=lc.READOUT_VTH,
                       reset_mechanism="subtract")


def test_lava_file_round_trip_of_reset_modes_and_per_neuron_values(tmp_path):
    graph, _, x = mlp_case("subtract", True, seed=5)
    net = lf.quantize(lc.convert(graph), groups=2, input_frac_bits=0)
    path = tmp_path / "net.lava"
    write_lava_file(net, path)
    with h5py.File(path, "r") as f:
        assert int(f.attrs["version"]) == 2
    back = read_lava(path)
    for a, b in zip(net.layers, back.layers):
        assert (a.neuron.reset_mechanism, a.neuron.reset_delay) == (b.neuron.reset_mechanism, b.neuron.reset_delay)
        for key in ("beta", "threshold"):
            np.testing.assert_array_equal(getattr(a.neuron, key), getattr(b.neuron, key))
        for key in ("vth", "dv"):
            np.testing.assert_array_equal(getattr(a.fixed, key), getattr(b.fixed, key))
    assert_same_spikes(lf.emulate_fixed(back, x), lf.emulate_fixed(net, x), ["lif1", "lif2"])
    # a network of Lava's own neurons is written as version 1, without the new attributes, and reads back
    stock = lf.quantize(lc.convert(tiny_graph({})), input_frac_bits=0)
    write_lava_file(stock, tmp_path / "stock.lava")
    with h5py.File(tmp_path / "stock.lava", "r") as f:
        assert int(f.attrs["version"]) == 1 and "reset_mechanism" not in f["layers/0/neuron"].attrs
    old = read_lava(tmp_path / "stock.lava").layers[0]
    assert (old.neuron.reset_mechanism, old.neuron.reset_delay, old.neuron.stock) == ("zero", False, True)
    assert isinstance(old.fixed.vth, int) and isinstance(old.fixed.dv, int)


@pytest.mark.parametrize("metadata,per_neuron,what", [
    ({"reset_mechanism": "subtract"}, False, "reset_mechanism 'subtract'"),
    ({"reset_mechanism": "none"}, False, "reset_mechanism 'none'"),
    ({"reset_delay": True}, False, "reset_delay"),
    ({}, True, "per-neuron threshold"),
])
def test_netx_refuses_what_its_cuba_neuron_cannot_express(tmp_path, metadata, per_neuron, what):
    graph = tiny_graph(metadata)
    if per_neuron:
        graph.nodes["lif"].v_threshold = np.array([1.0, 2.0])
    with pytest.raises(EslError) as e:
        write_netx(graph, tmp_path / "x.net")
    message = str(e.value)
    assert "\n" not in message and message.startswith("layer 'lif': netx cannot express") and what in message
    assert not (tmp_path / "x.net").exists()


@pytest.mark.parametrize("mechanism,delay", MODES, ids=MODE_IDS)
def test_onnx_unrolls_every_reset_mode_like_snntorch(tmp_path, mechanism, delay):
    g = np.random.default_rng(6)
    torch.manual_seed(6)
    n0, n1, n2, T, B = 7, 6, 4, 12, 3
    lif1, lif2 = LIF((n1,)), LIF((n2,))
    for lif in (lif1, lif2):  # the attributes esl_deploy.neurons.LIF carries; the reference below is snnTorch's
        lif.reset_mechanism, lif.reset_delay = mechanism, delay
    fc1, fc2 = nn.Linear(n0, n1), nn.Linear(n1, n2)
    with torch.no_grad():
        fc1.weight.copy_(torch.as_tensor(g.normal(0.4, 0.8, (n1, n0))))
        fc2.weight.copy_(torch.as_tensor(g.normal(0.5, 0.8, (n2, n1))))
        lif1.beta.copy_(torch.as_tensor(float32_betas(g, n1)))
        lif1.threshold.copy_(torch.as_tensor(g.uniform(0.5, 1.5, n1)))
    model = SpikingNet([fc1, lif1, fc2, lif2], ModelSpec("mlp", (n0,), n2)).eval()
    x = torch.as_tensor(spikes_in(g, T, B, (n0,), 0.4), dtype=torch.float32)
    layers = [(lambda h: fc1(h), lif1.beta.detach().clone(), lif1.threshold.detach().clone()),
              (lambda h: fc2(h), lif2.beta.detach().clone(), lif2.threshold.detach().clone())]
    with torch.no_grad():
        ref, mems = snntorch_reference(layers, x, mechanism, delay, dtype=torch.float32)
        assert_resets_matter(layers, x, mechanism, delay, ref, mems, torch.float32)
        out = UnrolledNet(model)(x).numpy()
    np.testing.assert_array_equal(out, ref[-1])  # torch: bit for bit
    to_onnx(model, tmp_path / "m.onnx", T=T, meta={})
    np.testing.assert_array_equal(run_onnx(tmp_path / "m.onnx", x), ref[-1])
