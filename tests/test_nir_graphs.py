"""Graphs, not chains: recurrent, branching, nested and residual NIR graphs through write -> read -> Lava
(float exactly, fixed point exactly as its emulator), the node kinds beyond LIF (CubaLIF, Threshold, Scale,
Delay, v_leak, v_reset, outputs of any size), the writers' conventions and their warnings, and the cost of
residual shortcuts."""
from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import torch

from esl_deploy.errors import EslError
from esl_deploy.export.lava import convert as lc
from esl_deploy.export.lava import fixed as lf
from esl_deploy.export.lava import run as lr
from esl_deploy.export.lava.net import INPUT
from esl_deploy.export.nir.conventions import EslWarning
from esl_deploy.export.nir.graph import walk
from esl_deploy.export.nir.read import from_nir, load_nir
from esl_deploy.export.nir.write import to_nir, write_nir
from esl_deploy.export.simulate import snntorch_run
from esl_deploy.graphnet import GraphNet
from esl_deploy.models import ModelSpec, build_model

DT = 1e-4
RNG = np.random.default_rng(7)


def affine(n_in, n_out, scale=1.0, bias=0.1, rng=RNG):
    return nir.Affine((scale * rng.normal(size=(n_out, n_in))).astype(np.float32),
                      (bias * rng.normal(size=n_out)).astype(np.float32))


def lif(n, beta=0.9, thr=1.0, **kw):
    tau = np.full(n, DT / (1 - beta))
    return nir.LIF(tau=tau, r=tau / DT, v_leak=kw.pop("v_leak", np.zeros(n)), v_threshold=np.full(n, thr),
                   v_reset=kw.pop("v_reset", np.zeros(n)))


def cuba(n, alpha=0.5, beta=0.8, thr=1.0):
    ts, tm = np.full(n, DT / (1 - alpha)), np.full(n, DT / (1 - beta))
    return nir.CubaLIF(tau_syn=ts, tau_mem=tm, r=tm / DT, v_leak=np.zeros(n), v_threshold=np.full(n, thr),
                       v_reset=np.zeros(n), w_in=ts / DT)


def graph(nodes, edges, **meta):
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT, **meta}, type_check=False)


def spikes_in(T=12, B=5, shape=(4,), p=0.4, seed=0):
    return (np.random.default_rng(seed).random((T, B) + tuple(shape)) < p).astype(np.float32)


def lava_matches(g, x, *, fixed=True):
    """Lava float == our reader (float64) in every layer, spike for spike; Lava fixed == its emulator."""
    model = from_nir(g)
    ref, _ = snntorch_run(model, x)
    net = lc.convert(g)
    res = lr.run(net, x)
    assert len(res.spikes) == len(ref)
    for name, a, b in zip(res.names, res.spikes, ref):
        np.testing.assert_array_equal(a, b, err_msg=f"Lava float differs from the reader in layer {name}")
    if fixed:
        q = lf.quantize(net, input_max=1.0, input_frac_bits=0)
        emulated = lf.emulate_fixed(q, x)
        res_f = lr.run(q, x, mode="fixed")
        for name, a, b in zip(res_f.names, res_f.spikes, emulated):
            np.testing.assert_array_equal(a, b, err_msg=f"Lava fixed differs from its emulator in layer {name}")
    return model, ref, net


def rnn_graph(nested: bool):
    """input -> fc -> (lif <-> w_rec) -> out -> lif2, the recurrence flat (snnTorch's RLeaky export) or nested."""
    rng = np.random.default_rng(1)
    fc, rec, out = affine(4, 6, 1.2, rng=rng), affine(6, 6, 0.6, rng=rng), affine(6, 3, 1.0, rng=rng)
    if not nested:
        nodes = {"input": nir.Input(np.array([4])), "fc": fc, "1.lif": lif(6), "1.w_rec": rec, "out": out,
                 "lif2": lif(3, 0.8), "output": nir.Output(np.array([3]))}
        edges = [("input", "fc"), ("fc", "1.lif"), ("1.lif", "1.w_rec"), ("1.w_rec", "1.lif"), ("1.lif", "out"),
                 ("out", "lif2"), ("lif2", "output")]
        return graph(nodes, edges)
    sub = nir.NIRGraph(nodes={"input": nir.Input(np.array([6])), "lif": lif(6), "w_rec": rec,
                              "output": nir.Output(np.array([6]))},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
                       type_check=False)
    nodes = {"input": nir.Input(np.array([4])), "fc": fc, "1": sub, "out": out, "lif2": lif(3, 0.8),
             "output": nir.Output(np.array([3]))}
    return graph(nodes, [("input", "fc"), ("fc", "1"), ("1", "out"), ("out", "lif2"), ("lif2", "output")])


def test_recurrent_graph_reads_as_rleaky_and_runs_exactly_in_lava(tmp_path):
    g = rnn_graph(nested=False)
    walked = walk(g)
    assert [e for s in walked.steps for e in s.inputs if e.recurrent] == [walk(g).step("1.lif").inputs[1]]
    x = spikes_in()
    model, ref, net = lava_matches(g, x)
    assert isinstance(model, GraphNet) and model.stepwise
    assert net.layers[0].synapse.parts[1].shift == 1 and net.depths() == [1, 2]
    assert ref[0].sum() > 20 and ref[1].sum() > 5  # the layers do spike
    # the recurrence by hand, snnTorch RLeaky's update: mem = beta mem + W x + V spk_prev (bias included at t = 0)
    fc, rec = g.nodes["fc"], g.nodes["1.w_rec"]
    v = np.zeros((x.shape[1], 6))
    s = np.zeros_like(v)
    for t in range(x.shape[0]):
        u = 0.9 * v + (x[t] @ fc.weight.T.astype(np.float64) + fc.bias) + (s @ rec.weight.T.astype(np.float64) + rec.bias)
        s = (u > 1.0).astype(np.float64)
        v = u * (1 - s)
        np.testing.assert_array_equal(ref[0][t], s)
    # write -> read -> the same spikes
    path = tmp_path / "rnn.nir"
    nir.write(path, g)
    again, _ = snntorch_run(load_nir(path), x)
    for a, b in zip(again, ref):
        np.testing.assert_array_equal(a, b)


def test_nested_subgraph_flattens_to_the_flat_graph():
    flat, nested = rnn_graph(nested=False), rnn_graph(nested=True)
    w = walk(nested)
    assert [s.name for s in w.steps] == ["fc", "1.lif", "out", "lif2", "1.w_rec"]
    assert w.step("1.lif").inputs[1].recurrent
    x = spikes_in(seed=3)
    a, _ = snntorch_run(from_nir(flat), x)
    model, b, _ = lava_matches(nested, x, fixed=False)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)


def test_branching_and_merging_graph_sums_its_branches():
    rng = np.random.default_rng(4)
    a, b, c = affine(4, 5, 1.0, rng=rng), affine(4, 5, 1.0, rng=rng), affine(5, 5, 1.5, rng=rng)
    nodes = {"input": nir.Input(np.array([4])), "a": a, "b": b, "l1": lif(5), "c": c, "l2": lif(5, 0.7),
             "output": nir.Output(np.array([5]))}
    # input feeds a and b (a branch); l1 -> c and input -> b merge into l2 (a skip over one layer)
    edges = [("input", "a"), ("a", "l1"), ("l1", "c"), ("c", "l2"), ("input", "b"), ("b", "l2"), ("l2", "output")]
    g = graph(nodes, edges)
    x = spikes_in(seed=5)
    model, ref, net = lava_matches(g, x)
    layer = net.layers[1].synapse
    assert [p.source for p in layer.parts] == [0, INPUT]
    assert net.depths() == [1, 2] and net.delay(1, net.parts(1)[1]) == 1  # the skip waits one step in Lava
    xs = x.astype(np.float64)
    v1 = np.zeros((x.shape[1], 5))
    v2 = np.zeros_like(v1)
    for t in range(x.shape[0]):
        u1 = 0.9 * v1 + xs[t] @ a.weight.T + a.bias
        s1 = (u1 > 1).astype(float)
        v1 = u1 * (1 - s1)
        u2 = 0.7 * v2 + ((s1 @ c.weight.T + c.bias) + (xs[t] @ b.weight.T + b.bias))
        s2 = (u2 > 1).astype(float)
        v2 = u2 * (1 - s2)
        np.testing.assert_array_equal(ref[1][t], s2)
    assert ref[1].sum() > 5


def test_a_loop_through_two_layers_is_refused_by_lava_in_one_line():
    nodes = {"input": nir.Input(np.array([4])), "a": affine(4, 3), "l1": lif(3), "b": affine(3, 3), "l2": lif(3),
             "back": affine(3, 3), "output": nir.Output(np.array([3]))}
    edges = [("input", "a"), ("a", "l1"), ("l1", "b"), ("b", "l2"), ("l2", "back"), ("back", "l1"), ("l2", "output")]
    g = graph(nodes, edges)
    assert isinstance(from_nir(g), GraphNet)  # our reader runs it
    with pytest.raises(EslError, match="a loop through .* more steps in Lava's pipeline") as e:
        lr.run(lc.convert(g), spikes_in())
    assert "\n" not in str(e.value)


def test_cubalif_from_snntorch_synaptic_runs_as_snntorch_and_in_lava():
    import snntorch as snn
    from snntorch.export_nir import export_to_nir
    from snntorch.import_nir import import_from_nir

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), snn.Synaptic(alpha=torch.full((6,), 0.5), beta=torch.full((6,), 0.8),
                                                                   threshold=torch.ones(6), init_hidden=True),
                              torch.nn.Linear(6, 3), snn.Synaptic(alpha=torch.full((3,), 0.6), beta=torch.full((3,), 0.9),
                                                                  threshold=torch.ones(3), init_hidden=True, output=True))
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(3.0)
    g = export_to_nir(net, torch.zeros(1, 4), ignore_dims=[0])
    x = spikes_in(T=15, B=6, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, ref, _ = lava_matches(g, x)
    theirs = import_from_nir(g)
    state, out = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            s, state = theirs(torch.from_numpy(x[t]), state)
            out.append(s.numpy())
    assert ref[-1].sum() > 5
    np.testing.assert_array_equal(np.stack(out), ref[-1])


def test_v_leak_v_reset_threshold_scale_and_delay_impulse_response():
    """One neuron, golden values: LIF with v_leak = 2, v_reset = 0.5 (beta 0.5, k = 0.5, threshold 1.2) after a
    Scale(2) and a Delay of 2 steps; a Threshold node on the same input."""
    tau = np.array([2 * DT])
    node = nir.LIF(tau=tau, r=np.array([2.0]), v_leak=np.array([2.0]), v_threshold=np.array([1.2]),
                   v_reset=np.array([0.5]))
    nodes = {"input": nir.Input(np.array([1])), "scale": nir.Scale(np.array([2.0])),
             "delay": nir.Delay(np.array([2 * DT])), "lif": node, "output": nir.Output(np.array([1]))}
    g = graph(nodes, [("input", "scale"), ("scale", "delay"), ("delay", "lif"), ("lif", "output")])
    x = np.zeros((6, 1, 1), np.float32)
    x[0] = 0.5
    model = from_nir(g)
    out = model(torch.from_numpy(x)).numpy().ravel()
    # v[t] = 0.5 v + 0.5 * 2 * I[t-2] * 2... : I = 2 x delayed by 2; k r = 1; leak k v_leak = 1
    # t0: v = 1 (leak) -> no spike (1 <= 1.2); t1: 0.5 + 1 = 1.5 > 1.2 spike -> v = 0.5; t2: 0.25+1+1 = 2.25 spike
    # t3: 0.25 + 1 = 1.25 spike; t4: 1.25 spike; t5: 1.25 spike
    np.testing.assert_array_equal(out, [0, 1, 1, 1, 1, 1])
    thr = {"input": nir.Input(np.array([1])), "th": nir.Threshold(np.array([0.3])), "output": nir.Output(np.array([1]))}
    tg = graph(thr, [("input", "th"), ("th", "output")])
    np.testing.assert_array_equal(from_nir(tg)(torch.from_numpy(x)).numpy().ravel(), [1, 0, 0, 0, 0, 0])


def test_v_reset_and_v_leak_run_in_lava_float_and_fixed():
    rng = np.random.default_rng(9)
    n = 5
    node = lif(n, 0.8, 1.0, v_leak=np.full(n, 0.2), v_reset=np.full(n, 0.25))
    g = graph({"input": nir.Input(np.array([4])), "fc": affine(4, n, 1.0, rng=rng), "lif": node,
               "output": nir.Output(np.array([n]))}, [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    model, ref, net = lava_matches(g, spikes_in(seed=11))
    assert net.layers[0].neuron.v_reset == 0.25 and ref[0].sum() > 10


@pytest.mark.parametrize("out_shape", [(1,), (1, 1, 1)])
def test_one_output_neuron_and_an_output_of_three_dims(out_shape):
    nodes = {"input": nir.Input(np.array([4])), "fc": affine(4, 1, 2.0), "lif": lif(1),
             "output": nir.Output(np.array(out_shape))}
    g = graph(nodes, [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    model = from_nir(g)
    assert model.spec.num_classes == 1
    x = spikes_in(seed=1)
    assert model(torch.from_numpy(x)).shape == (12, 5, 1)
    lava_matches(g, x)


def sinabs_if_graph():
    rng = np.random.default_rng(3)
    nodes = {"input": nir.Input(np.array([4])), "fc": affine(4, 6, 1.0, 0.0, rng), "if": nir.IF(r=np.ones(6),
             v_threshold=np.ones(6), v_reset=np.zeros(6)), "output": nir.Output(np.array([6]))}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "if"), ("if", "output")], type_check=False)


def test_a_graph_silent_under_the_assumed_dt_is_warned_about():
    g = sinabs_if_graph()  # no dt recorded; IF r = 1: at dt = 1e-4 its input gain is 1e-4
    with pytest.warns(EslWarning) as record:
        model = from_nir(g)
    text = " ".join(str(w.message) for w in record)
    assert "records no dt" in text and "input gain 0.0001" in text and "silent" in text
    x = spikes_in(seed=4)
    assert model(torch.from_numpy(x)).sum() == 0  # what the warning said
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the writer's conventions: no warning, spikes
        fixed = from_nir(g, writer="sinabs")
    assert fixed(torch.from_numpy(x)).sum() > 0


def test_simulate_warns_of_silent_layers_and_compares_with_the_writer(tmp_path):
    from esl_deploy.export.simulate import simulate

    path = tmp_path / "if.nir"
    nir.write(path, sinabs_if_graph())
    with pytest.warns(EslWarning, match=r"silent layers \['if'\]"):
        report = simulate(path, "lava", random_spikes=0.4, samples=4, T=10, progress=False)
    assert report.silent_layers == ["if"] and report.writer == "nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = simulate(path, "lava", random_spikes=0.4, samples=4, T=10, progress=False, reference="sinabs")
    w = report.writer_reference
    assert report.writer == "sinabs" and report.silent_layers == []
    assert w["tool"] == "sinabs" and w["spikes"] > 0 and "floor(v/theta)" in w["difference"]
    assert 0 <= w["backend_agreement"] <= 100 and w["ours_agreement"] == w["backend_agreement"]


def resnet(width=0.125, seed=0):
    torch.manual_seed(seed)
    m = build_model(ModelSpec("resnet19", (1, 12, 12), 10, width=width, threshold=0.5)).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.2, 0.5)
                mod.weight.uniform_(1, 2)
                mod.bias.uniform_(0, 0.3)
    return m


def test_resnet19_writes_its_residual_adds_as_merges_and_reads_back_exactly(tmp_path):
    m = resnet()
    g = to_nir(m)
    w = walk(g)
    assert not w.is_chain
    assert [e.source for e in w.step("3.lif2").inputs] == ["3.conv2", "2"]            # identity shortcut
    assert [e.source for e in w.step("6.lif2").inputs] == ["6.conv2", "6.shortcut"]    # projection shortcut
    path = write_nir(m, tmp_path / "r.nir")
    model = load_nir(path)
    assert isinstance(model, GraphNet) and model.spec.name == "resnet19"
    x = torch.rand(4, 3, 1, 12, 12)
    with torch.no_grad():
        np.testing.assert_array_equal(model(x).numpy(), m(x).numpy())
    mine, _ = snntorch_run(m, x.numpy())
    theirs, _ = snntorch_run(model, x.numpy())
    assert len(mine) == len(theirs) == 19
    for a, b in zip(mine, theirs):
        np.testing.assert_array_equal(a, b)


def test_resnet19_in_lava_float_is_exact_in_every_layer():
    m = resnet()
    g = to_nir(m)
    x = np.random.default_rng(0).random((4, 2, 1, 12, 12)).astype(np.float32)
    ref, _ = snntorch_run(from_nir(g), x)
    net = lc.convert(g)
    merges = [l for l in net.layers if len(l.synapse.parts) == 2]
    assert len(merges) == 8  # every block's lif2
    depths = net.depths()
    assert [net.delay(i, p, depths) for i, l in enumerate(net.layers) for p in l.synapse.parts] == [0, 1] * 8
    res = lr.run(net, x)
    assert len(res.spikes) == 19
    for name, a, b in zip(res.names, res.spikes, ref):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert sum(int(b.sum()) for b in ref) > 1000


def test_resnet19_costs_its_identity_shortcuts():
    from esl_deploy.hw_models.graph_map import graph_synaptic_layers
    from esl_deploy.hw_models.sops import count_activity
    from esl_deploy.hw_models.unroll import synaptic_layers

    m = resnet()
    x = torch.rand(3, 1, 12, 12)
    act = count_activity(m, x, T=3, encoding="direct")
    ids = [l for l in act.layers if l.kind == "identity"]
    assert [l.name for l in ids] == [f"layers.{i}.shortcut" for i in (3, 4, 5, 7, 8, 10)]
    # one synaptic event per spike of the block's input: the spikes of the LIF before the block
    seen = []
    hook = m.layers[2].register_forward_hook(lambda mod, i, o: seen.append(float(o.sum())))
    with torch.no_grad():
        m(x.unsqueeze(0).expand(3, *x.shape))
    hook.remove()
    assert ids[0].acs == pytest.approx(seen[0] / 3) and ids[0].synapses == 16 * 12 * 12
    assert ids[0].dense_macs == 0
    graph_act = count_activity(from_nir(to_nir(m)), x, T=3, encoding="direct")
    assert graph_act.sops == pytest.approx(act.sops)
    assert [l.acs for l in graph_act.layers if l.kind == "identity"] == pytest.approx([l.acs for l in ids])
    tn = {l.name: l for l in synaptic_layers(m)}
    relay = tn["layers.3.shortcut"]
    assert relay.mask.shape == (16 * 12 * 12, 16 * 12 * 12) and relay.mask.nnz == 16 * 12 * 12
    graph_tn = graph_synaptic_layers(from_nir(to_nir(m)))
    assert sum(l.mask.nnz for l in graph_tn) == sum(l.mask.nnz for l in tn.values())


def test_energy_reads_a_graph_in_its_writers_conventions(tmp_path):
    from esl_deploy.hw_models.cli import load_source
    from esl_deploy.hw_models.sops import count_activity

    path = tmp_path / "if.nir"
    nir.write(path, sinabs_if_graph())
    x = torch.from_numpy(spikes_in(T=10, B=4, seed=6)).transpose(0, 1)
    with pytest.warns(EslWarning, match="silent"):
        silent = count_activity(load_source(str(path)), x, T=10, encoding="direct", temporal=True)
    counted = count_activity(load_source(str(path), writer="sinabs"), x, T=10, encoding="direct", temporal=True)
    assert silent.active_updates == 0 and counted.active_updates > 0
