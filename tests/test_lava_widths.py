"""Loihi 2 bit widths in the fixed-point quantiser (export.lava.fixed) and the netx writer.

Property test over random layers (seeded numpy loops): whatever the shape, density, weight distribution
(heavy tails included), threshold, beta, bias, input kind (binary spikes or graded) and number of
synapse groups, :func:`quantize` never produces a value outside the widths Lava's bit-accurate models
declare, and no input can drive ``a_in`` (each synapse port and their sum) out of 16 bits: checked
with the adversarial input of every neuron and by running :func:`emulate_fixed` on random inputs.
Layers that cannot fit raise a one-line :class:`EslError`. Pure numpy, no Lava run.
"""
import numpy as np
import pytest
import scipy.sparse as sp

from esl_deploy.errors import EslError
from esl_deploy.export.lava import convert as lc
from esl_deploy.export.lava import fixed as lf
from esl_deploy.export.lava.netx import netx_net, write_netx_file

A_IN = (-2 ** 15, 2 ** 15 - 1)   # LIF a_in, Dense/Sparse a_out: 16-bit signed
UV = 2 ** 23 - 1                 # u, v: 24-bit signed (v clipped to +-(2^23 - 1))


def _weights(g, shape, unit=1.0):
    """Random weights of one of several distributions, some heavy-tailed, some one-signed, of size about
    ``unit`` times 10^-2.5 .. 10^0.5 (a few percent of the threshold up to a few thresholds)."""
    kind = g.integers(6)
    size = int(np.prod(shape))
    if kind == 0:
        w = g.normal(size=size)
    elif kind == 1:
        w = g.standard_t(1.5, size=size)          # heavy tails: a few huge weights
    elif kind == 2:
        w = g.lognormal(0, 2, size=size) * g.choice([-1, 1], size=size)
    elif kind == 3:
        w = np.abs(g.normal(size=size))           # excitatory only
    elif kind == 4:
        w = -np.abs(g.standard_t(2, size=size))   # inhibitory only
    else:
        w = g.uniform(-1, 1, size=size)
    return (w * unit * 10.0 ** g.uniform(-2.5, 0.5)).reshape(shape)


def _random_layer(g, graded):
    threshold = 0.0 if g.random() < 0.03 else float(10.0 ** g.uniform(-2, 2))
    beta = float(g.choice([0.0, 1.0, g.uniform(0, 1)], p=[0.1, 0.1, 0.8]))
    if g.random() < 0.35:
        c_in, c_out = int(g.integers(1, 4)), int(g.integers(1, 5))
        hw = (int(g.integers(3, 9)), int(g.integers(3, 9)))
        k = int(g.integers(1, 4))
        stride, pad = int(g.integers(1, 3)), int(g.integers(0, 2))
        out_hw = tuple(lc.conv_output_hw(hw, (k, k), (stride, stride), (pad, pad), (1, 1)))
        w = _weights(g, (c_out, c_in, k, k), threshold or 1.0)
        w[g.random(w.shape) > g.uniform(0.2, 1.0)] = 0.0
        syn = lc.SynapseLayer(kind="conv", in_shape=(c_in, *hw), out_shape=(c_out, *out_hw), weight=w,
                              graded=graded, stride=(stride, stride), padding=(pad, pad))
        shape = (c_out, *out_hw)
        bias_shape = (c_out, 1, 1)
    else:
        n_in, n_out = int(g.integers(1, 400)), int(g.integers(1, 40))
        density = float(g.uniform(0.02, 1.0))
        w = _weights(g, (n_out, n_in), threshold or 1.0)
        w[g.random(w.shape) > density] = 0.0
        syn = lc.SynapseLayer(kind=str(g.choice(["sparse", "dense"])), in_shape=(n_in,), out_shape=(n_out,),
                              weight=sp.csr_matrix(w), graded=graded)
        shape = (n_out,)
        bias_shape = shape
    bias = np.zeros(bias_shape)
    if g.random() < 0.5:
        bias = g.normal(size=bias_shape) * threshold * 10.0 ** g.uniform(-3, 1.5)
    bias = np.broadcast_to(bias, shape).copy()
    neuron = lc.NeuronLayer(name="lif", node_type="LIF", shape=shape, beta=beta, threshold=threshold, bias=bias)
    return lc.LavaLayer(synapse=syn, neuron=neuron)


def _dense_ports(layer):
    """The integer weight matrix of every Lava synapse port of a quantised layer (torch order)."""
    f, syn = layer.fixed, layer.synapse
    w = f.weight if syn.kind != "conv" else lc.conv_matrix(f.weight, syn.in_shape, syn.stride, syn.padding,
                                                          syn.dilation, syn.groups)
    w = sp.csr_matrix(w, dtype=np.int64).toarray()
    if f.split_exp:
        assert syn.kind != "conv"  # Lava's Conv has no weight exponent: conv weights stay one 8-bit group
        hi, lo = lf.split_weights(w, f.split_exp)
        np.testing.assert_array_equal(hi * 2 ** f.split_exp + lo, w)
        return w, [("hi", hi, f.split_exp), ("lo", lo, 0)]
    return w, [("w", w, 0)]


def _assert_on_8bit_grid(name, w):
    vals = w[w != 0]
    if not vals.size:
        return
    if vals.min() < 0 < vals.max():   # mixed sign: Lava clips to [-256, 255] and drops the LSB
        assert vals.min() >= -256 and vals.max() <= 254 and not np.any(vals % 2), name
    else:
        assert np.abs(vals).max() <= 255, name


def _assert_fixed_layer_fits(layer, x_lo, x_hi):
    f, n = layer.fixed, layer.neuron
    assert 0 <= f.vth <= 2 ** 17 - 1
    assert 0 <= f.du <= 4095 and 0 <= f.dv <= 4095 and f.du == 4095
    assert 0 <= f.bias_exp <= 7
    assert f.bias_mant.min(initial=0) >= -4096 and f.bias_mant.max(initial=0) <= 4095
    if layer.synapse.graded:
        xi_lo, xi_hi = int(round(x_lo * f.input_scale)), int(round(x_hi * f.input_scale))
        assert -2 ** 15 <= xi_lo and xi_hi <= 2 ** 15 - 1  # 16-bit graded input message
    else:
        xi_lo, xi_hi = 0, 1
    w, ports = _dense_ports(layer)
    for name, p, k in ports:
        _assert_on_8bit_grid(name, p)
        if name == "lo":
            assert np.abs(p).max(initial=0) <= 2 ** k if k else True
    # every neuron's adversarial input: x_hi where its weight is positive, x_lo where negative
    for name, p, k in ports + [("a_in", w, 0)]:
        m = p * 2 ** k
        top = np.where(m > 0, m * xi_hi, m * xi_lo).sum(axis=1)
        low = np.where(m > 0, m * xi_lo, m * xi_hi).sum(axis=1)
        assert A_IN[0] <= low.min(initial=0) and top.max(initial=0) <= A_IN[1], name
        assert top.max(initial=0) * 64 <= UV and low.min(initial=0) * 64 >= -UV  # u = a_in << 6, no wrap
    # the quantiser's own report agrees and stays inside
    assert f.errors["a_in_bound"] <= A_IN[1]
    lf.check_widths(n.name, lf.layer_ranges(layer, input_max=x_hi, input_min=x_lo))


def test_quantize_never_leaves_loihi_widths_on_random_layers():
    g = np.random.default_rng(20240611)
    fitted = refused = 0
    for trial in range(260):
        graded = bool(g.random() < 0.5)
        x_lo, x_hi = 0.0, 1.0
        if graded:
            x_hi = float(g.choice([1.0, 4.0, 100.0, 3000.0], p=[0.4, 0.3, 0.2, 0.1]))
            x_lo = float(g.choice([0.0, 0.0, -1.0]))
        layer = _random_layer(g, graded)
        groups = int(g.integers(1, 3))
        frac = None if g.random() < 0.7 else int(g.integers(0, 5))
        net = lc.LavaNet(input_shape=layer.synapse.in_shape, layers=[layer])
        try:
            q = lf.quantize(net, input_max=x_hi, input_min=x_lo, groups=groups, input_frac_bits=frac)
        except EslError as e:
            msg = str(e)
            assert "\n" not in msg and "'lif'" in msg, msg
            assert any(word in msg for word in ("a_in", "bias_mant", "weights", "input")), msg
            refused += 1
            continue
        fitted += 1
        qlayer = q.layers[0]
        _assert_fixed_layer_fits(qlayer, x_lo, x_hi)
        if trial % 4 == 0:  # run the emulator on random inputs and on the all-extreme input
            T, B = 6, 3
            shape = (T, B) + layer.synapse.in_shape
            if graded:
                x = g.uniform(x_lo, x_hi, size=shape)
                x[:, 0] = x_hi
            else:
                x = (g.random(shape) < g.uniform(0.05, 1.0)).astype(np.float64)
                x[:, 0] = 1.0
            peaks = {}
            lf.emulate_fixed(q, x, peaks)
            p = peaks["lif"]
            for key in [k for k in p if k.startswith("a_")]:
                assert A_IN[0] <= p[key][0] and p[key][1] <= A_IN[1], key
            assert -UV <= p["u"][0] and p["u"][1] <= UV
            assert -UV <= p["v"][0] and p["v"][1] <= UV
    assert fitted > 200 and refused > 0  # mostly layers that fit, and some that cannot


def test_emulator_peaks_on_a_two_layer_chain_with_split_weights():
    g = np.random.default_rng(7)
    w1 = sp.csr_matrix(g.normal(size=(50, 64)) * (g.random((50, 64)) < 0.3))
    w2 = sp.csr_matrix(np.abs(g.normal(size=(10, 50))) * 3.0)  # excitatory fan-in of 50: many ports near 16 bits
    l1 = lc.LavaLayer(synapse=lc.SynapseLayer(kind="sparse", in_shape=(64,), out_shape=(50,), weight=w1, graded=True),
                      neuron=lc.NeuronLayer(name="h", node_type="LIF", shape=(50,), beta=0.9, threshold=1.0,
                                            bias=np.zeros(50)))
    l2 = lc.LavaLayer(synapse=lc.SynapseLayer(kind="sparse", in_shape=(50,), out_shape=(10,), weight=w2),
                      neuron=lc.NeuronLayer(name="o", node_type="LIF", shape=(10,), beta=0.9, threshold=1.0,
                                            bias=np.zeros(10)))
    q = lf.quantize(lc.LavaNet(input_shape=(64,), layers=[l1, l2]), groups=2, input_frac_bits=4)
    assert q.layers[1].fixed.split_exp > 0
    x = np.broadcast_to(g.integers(0, 17, size=(1, 40, 64)) / 16.0, (8, 40, 64)).copy()
    peaks = {}
    spikes = lf.emulate_fixed(q, x, peaks)
    assert spikes[0].any() and spikes[1].any()
    for name in ("h", "o"):
        for key, (low, top) in peaks[name].items():
            if key.startswith("a_"):
                assert A_IN[0] <= low and top <= A_IN[1]
        assert set(peaks[name]) >= {"a_in", "u", "v"}
    assert {"a_out hi", "a_out lo"} <= set(peaks["o"])
    assert q.layers[1].fixed.errors["a_in_bound"] >= peaks["o"]["a_in"][1]  # the bound holds what happened


def _fan_in_layer(n_in, weight=1.0, threshold=1.0, bias=0.0, graded=False):
    return lc.LavaNet(input_shape=(n_in,), layers=[lc.LavaLayer(
        synapse=lc.SynapseLayer(kind="sparse", in_shape=(n_in,), out_shape=(2,),
                                weight=sp.csr_matrix(np.full((2, n_in), weight)), graded=graded),
        neuron=lc.NeuronLayer(name="big", node_type="LIF", shape=(2,), beta=0.9, threshold=threshold,
                              bias=np.full(2, bias)))])


@pytest.mark.parametrize("groups", [1, 2])
def test_layer_that_cannot_fit_16_bit_a_in_is_reported_in_one_line(groups):
    # 5000 inputs, each weight one threshold: a_in up to 5000 thresholds needs scale <= 6.5, vth 7 < 16
    with pytest.raises(EslError, match=r"^layer 'big' does not fit Loihi 2's 16-bit a_in.*vth = \d+ < 16") as e:
        lf.quantize(_fan_in_layer(5000), groups=groups)
    assert "\n" not in str(e.value)
    lf.quantize(_fan_in_layer(1000), groups=groups)  # 1000 thresholds: scale 32, fits


def test_bias_and_input_that_cannot_fit_are_reported():
    with pytest.raises(EslError, match=r"^layer 'big' does not fit Loihi 2's 13-bit bias_mant"):
        lf.quantize(_fan_in_layer(4, weight=0.1, bias=1000.0))
    with pytest.raises(EslError, match=r"^layer 'big': graded input up to 1e\+06 does not fit .*16-bit"):
        lf.quantize(_fan_in_layer(4, weight=0.1, graded=True), input_max=1e6)
    with pytest.raises(EslError, match=r"^layer 'big': input up to 4000 with 4 fractional bits does not fit"):
        lf.quantize(_fan_in_layer(4, weight=0.1, graded=True), input_max=4000.0, input_frac_bits=4)


def test_over_wide_fixed_layer_is_refused_by_emulator_lava_and_netx(tmp_path):
    # what the old quantiser allowed: |a_in| up to 2^17 - 1 (here 200 inputs x weight 254 = 50800)
    net = lf.quantize(_fan_in_layer(200, weight=0.01))
    f = net.layers[0].fixed
    f.weight = sp.csr_matrix(np.full((2, 200), 254, dtype=np.int64))
    with pytest.raises(EslError, match=r"^layer 'big': a_in can reach \[0, 50800\], outside Loihi 2's \[-32768, "
                                       r"32767\]"):
        lf.emulate_fixed(net, np.ones((2, 1, 200)))
    with pytest.raises(EslError, match="a_in can reach"):
        write_netx_file(net, tmp_path / "wide.net")
    assert not (tmp_path / "wide.net").exists()


def test_netx_net_respects_the_widths_and_refuses_unrepresentable_weights(tmp_path):
    import nir

    g = np.random.default_rng(3)
    w = g.standard_t(1.5, size=(30, 300)) * (g.random((30, 300)) < 0.5)
    tau = 1e-4 / 0.1
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([300])), "fc": nir.Linear(weight=w),
                                "lif": nir.LIF(tau=np.full(30, tau), r=np.full(30, tau / 1e-4), v_leak=np.zeros(30),
                                               v_threshold=np.ones(30), v_reset=np.zeros(30)),
                                "output": nir.Output(output_type=np.array([30]))},
                         edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], metadata={"dt": 1e-4},
                         type_check=False)
    net = netx_net(graph, input_max=1.0, input_frac_bits=4)
    layer = net.layers[0]
    _assert_fixed_layer_fits(layer, 0.0, 1.0)
    write_netx_file(net, tmp_path / "ok.net")
    layer.fixed.weight = layer.fixed.weight.copy()
    layer.fixed.weight.data[0] = 3  # an odd mixed-sign weight: Lava's Dense would drop its lowest bit
    with pytest.raises(EslError, match=r"^layer 'lif': weights in .* leave netx's 8-bit synapse"):
        write_netx_file(net, tmp_path / "odd.net")


def test_bias_limit_binding_the_scale_keeps_netx_bias_exp():
    """When the 13-bit bias limit sets the scale (scale = 4095 / max|b|), float rounding of
    max|b| * scale must not push one group's bias_exp to 7 (netx needs 6)."""
    import nir
    import numpy as np
    from esl_deploy.export.lava.convert import convert
    from esl_deploy.export.lava.fixed import BIAS_EXP, quantize
    rng = np.random.default_rng(3)
    for trial in range(200):
        bmax = float(rng.uniform(0.05, 3.0))
        w = rng.normal(0, 0.01, (7, 5)).astype(np.float32)
        b = rng.uniform(-bmax, bmax, 7).astype(np.float32)
        b[0] = bmax
        g = nir.NIRGraph.from_list(nir.Affine(weight=w, bias=b),
                                   nir.LIF(tau=np.full(7, 1e-3), r=np.full(7, 10.0), v_leak=np.zeros(7),
                                           v_threshold=np.full(7, 0.5)))
        net = quantize(convert(g), groups=1)
        assert all(layer.fixed.bias_exp == BIAS_EXP for layer in net.layers), trial
