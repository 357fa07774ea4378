"""The membrane readout (``--readout membrane``): a non-spiking leaky-integrator output layer.

LI dynamics by hand, the ce/TET losses on real-valued output by hand, a short training run, the NIR
round trip, Lava float (voltages recorded) against snnTorch, ONNX, and the SOP/energy counting.
Lava runs compile a multiprocess network each, so there are only three of them, on tiny networks.
"""
import json
import math

import esl_deploy  # noqa: F401  (installs the lava import hook before any lava import)
import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from esl_deploy.errors import EslError
from esl_deploy.models import ModelSpec, build_model
from esl_deploy.neurons import LI, LIF
from esl_deploy.export.lava import convert as lc
from esl_deploy.export.lava import run as lr
from esl_deploy.export.nir.write import to_nir, write_nir
from esl_deploy.export.nir.read import from_nir, load_nir
from esl_deploy.export.simulate import simulate, snntorch_run
from esl_deploy.train.losses import compute_loss, predict

from helpers import digit_like_input

DT = 1e-4


def membrane_mlp(width=0.05, seed=0, gain=3.0, input_shape=(1, 8, 8)):
    """A small membrane-readout MLP with weights scaled up so that its hidden neurons spike."""
    torch.manual_seed(seed)
    model = build_model(ModelSpec("mlp", input_shape, 10, width=width, readout="membrane"))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(gain)
    return model.eval()



def chain(*named, input_shape):
    nodes = {"input": nir.Input(input_type=np.array(input_shape))}
    nodes.update(named)
    names = list(nodes)
    nodes["output"] = nir.Output(output_type=np.array(named[-1][1].output_type["output"]))
    names.append("output")
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), metadata={"dt": DT},
                        type_check=False)


def li_node(n, beta, r_scale=1.0):
    tau = DT / (1.0 - beta)
    return nir.LI(tau=np.full(n, tau), r=np.full(n, r_scale * tau / DT), v_leak=np.zeros(n))


# ------------------------------------------------------------------------------------------------
# the layer and the model
# ------------------------------------------------------------------------------------------------

def test_li_dynamics_by_hand():
    li = LI((2,), beta=0.5)
    li.beta[1] = 1.0  # per-neuron beta: neuron 1 integrates without leak
    current = torch.tensor([1.0, 0.0, 2.0, -1.0])[:, None, None].repeat(1, 1, 2)  # (T=4, B=1, 2)
    out = li(current)[:, 0]
    torch.testing.assert_close(out[:, 0], torch.tensor([1.0, 0.5, 2.25, 0.125]))  # no threshold, no reset
    torch.testing.assert_close(out[:, 1], torch.tensor([1.0, 1.0, 3.0, 2.0]))
    with pytest.raises(ValueError, match="LI of shape"):
        li(torch.zeros(3, 1, 4))


def test_membrane_readout_replaces_only_the_last_layer():
    for name, shape in (("mlp", (1, 8, 8)), ("convnet", (1, 8, 8))):
        spikes = build_model(ModelSpec(name, shape, 10, width=0.25))
        membrane = build_model(ModelSpec(name, shape, 10, width=0.25, readout="membrane"))
        assert [type(l) for l in spikes.layers][:-1] == [type(l) for l in membrane.layers][:-1]
        assert isinstance(spikes.layers[-1], LIF) and isinstance(membrane.layers[-1], LI)
        last = f"layers.{len(spikes.layers) - 1}."
        hidden = {k for k in spikes.state_dict() if not k.startswith(last)}
        assert hidden == {k for k in membrane.state_dict() if not k.startswith(last)}
        assert {k for k in membrane.state_dict() if k.startswith(last)} == {last + "beta"}
        out = membrane(torch.rand(4, 3, *shape))
        assert out.shape == (4, 3, 10) and not set(out.unique().tolist()) <= {0.0, 1.0}  # real-valued


# ------------------------------------------------------------------------------------------------
# losses
# ------------------------------------------------------------------------------------------------

def _ce(logits, label):
    return -logits[label] + math.log(sum(math.exp(v) for v in logits))


def test_ce_and_tet_on_the_membrane_by_hand():
    v = torch.tensor([[[2.0, 0.0]], [[4.0, 1.0]]])  # (T=2, B=1, C=2)
    y = torch.tensor([0])
    ce = compute_loss("ce", v, y, readout="membrane")  # CE of the time mean (3, 0.5)
    assert float(ce) == pytest.approx(_ce([3.0, 0.5], 0), rel=1e-6)
    lam = 0.1
    tet = compute_loss("tet", v, y, lam, readout="membrane")
    per_step = (_ce([2.0, 0.0], 0) + _ce([4.0, 1.0], 0)) / 2
    mse = ((2 - 1) ** 2 + (0 - 1) ** 2 + (4 - 1) ** 2 + (1 - 1) ** 2) / 4
    assert float(tet) == pytest.approx((1 - lam) * per_step + lam * mse, rel=1e-6)
    # the spike readout keeps its losses: ce on the counts
    assert float(compute_loss("ce", v, y)) == pytest.approx(_ce([6.0, 1.0], 0), rel=1e-6)
    assert predict(v).tolist() == [0]
    with pytest.raises(ValueError, match="unknown readout"):
        compute_loss("ce", v, y, readout="voltage")


def test_tet_goes_below_the_binary_spike_bound_on_real_valued_output():
    """On 0/1 spikes each step's CE is at least log(1 + 9/e) = 1.461 (10 classes); on voltages it is not."""
    T, C = 4, 10
    y = torch.tensor([3])
    bound = math.log(1 + (C - 1) / math.e)
    best_spikes = torch.zeros(T, 1, C)
    best_spikes[:, 0, 3] = 1.0  # the best binary output: only the right class, every step
    assert float(compute_loss("tet", best_spikes, y, 0.0)) == pytest.approx(bound, rel=1e-6)
    assert bound == pytest.approx(1.461, abs=1e-3)
    v = torch.zeros(T, 1, C)
    v[:, 0, 3] = 8.0
    tet = float(compute_loss("tet", v, y, 1e-3, readout="membrane"))
    assert tet < 0.05 < bound


def test_short_training_run_with_tet_on_the_membrane(esl, tmp_path):
    code, out, err = esl("train", "--model", "mlp", "--dataset", "digits", "--method", "dense", "--epochs", "2",
                         "--width", "0.25", "--loss", "tet", "--readout", "membrane", "--out", tmp_path / "run",
                         "--no-progress", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["test_acc"] > 0.5  # far above chance (0.1) after two epochs
    model = esl_deploy.load(tmp_path / "run" / "checkpoint.pt")
    assert model.spec.readout == "membrane" and isinstance(model.layers[-1], LI)


# ------------------------------------------------------------------------------------------------
# NIR
# ------------------------------------------------------------------------------------------------

def test_nir_round_trip_of_an_li_model_is_exact(tmp_path):
    model = membrane_mlp(width=0.1, seed=1)
    model.layers[-1].beta[3] = 0.8  # per-neuron arrays survive
    path = write_nir(model, tmp_path / "m.nir")
    graph = nir.read(path, type_check=True)
    kinds = {k: type(v).__name__ for k, v in graph.nodes.items()}
    assert [kinds[k] for k in ("input", "0", "1", "2", "3", "4", "output")] == \
        ["Input", "Flatten", "Affine", "LIF", "Affine", "LI", "Output"]
    li = graph.nodes["4"]
    assert li.tau.shape == li.r.shape == li.v_leak.shape == (10,) and not li.v_leak.any()
    back = load_nir(path)
    assert back.spec.readout == "membrane" and isinstance(back.layers[-1], LI)
    assert torch.equal(back.layers[-1].beta, model.layers[-1].beta)
    x = torch.from_numpy(digit_like_input(6, 4)).float()
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


def test_nir_integrator_gain_and_misplaced_li():
    model = membrane_mlp(width=0.1, seed=2)
    model.layers[-1].beta.fill_(1.0)  # no leak: NIR's integrator I
    graph = to_nir(model)
    assert isinstance(graph.nodes["4"], nir.I)
    x = torch.from_numpy(digit_like_input(5, 2)).float()
    with torch.no_grad():
        assert torch.equal(from_nir(graph)(x), model(x))
    # a foreign LI with input gain r dt/tau = 2: folded into the Affine before it
    w = np.array([[1.0, -0.5], [0.25, 2.0]])
    g = chain(("fc", nir.Affine(weight=w, bias=np.array([0.5, 0.0]))), ("li", li_node(2, 0.5, r_scale=2.0)),
              input_shape=[2])
    net = from_nir(g)
    xin = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # (T=2, B=1, 2)
    i1, i2 = 2 * (w @ [1, 0] + [0.5, 0]), 2 * (w @ [0, 1] + [0.5, 0])
    with torch.no_grad():
        np.testing.assert_allclose(net(xin)[:, 0].numpy(), [i1, 0.5 * i1 + i2], rtol=1e-6)
    # LI is a readout: a layer after it is refused
    g = chain(("fc", nir.Linear(weight=np.ones((2, 2)))), ("li", li_node(2, 0.5)),
              ("fc2", nir.Linear(weight=np.ones((2, 2)))), ("lif", nir.LIF(
                  tau=np.full(2, 2e-4), r=np.full(2, 2.0), v_leak=np.zeros(2), v_threshold=np.ones(2),
                  v_reset=np.zeros(2))), input_shape=[2])
    with pytest.raises(EslError, match="only as the last"):
        from_nir(g)
    with pytest.raises(EslError, match="only as the last"):
        lc.convert(g)


def test_snntorch_import_from_nir_has_no_li():
    """snnTorch 1.0.0's ``import_from_nir`` maps no NIR ``LI`` node (its node_map lists Affine, Linear,
    Conv2d, Flatten, AvgPool2d, IF, LIF, CubaLIF): it refuses our membrane-readout graphs."""
    from snntorch.import_nir import import_from_nir

    with pytest.raises(ValueError, match="LI"):
        import_from_nir(to_nir(membrane_mlp()))


# ------------------------------------------------------------------------------------------------
# Lava float: the readout voltage is recorded
# ------------------------------------------------------------------------------------------------

def test_lava_li_impulse_response_by_hand():
    # v = 0.5 v + w x, two samples back to back, each from rest (the LIFReset reset applies to LI too)
    graph = chain(("fc", nir.Linear(weight=np.array([[0.8], [1.5]]))), ("li", li_node(2, 0.5)), input_shape=[1])
    net = lc.convert(graph)
    assert net.readout == "membrane" and net.layers[0].neuron.threshold == math.inf
    x = np.array([[1, 1, 1, 0, 0, 1], [1, 0, 0, 0, 0, 0]], dtype=np.float64).T[:, :, None]
    res = lr.run(net, x, mode="float")
    assert res.names == [] and res.readout_name == "li" and res.output is res.voltage
    np.testing.assert_allclose(res.voltage[:, 0, 0], [0.8, 1.2, 1.4, 0.7, 0.35, 0.975], atol=1e-12)
    np.testing.assert_allclose(res.voltage[:, 1, 0], [0.8, 0.4, 0.2, 0.1, 0.05, 0.025], atol=1e-12)
    np.testing.assert_allclose(res.voltage[:, 0, 1], 1.875 * res.voltage[:, 0, 0], atol=1e-12)
    with pytest.raises(EslError, match="floating point only"):
        lr.run(net, x, mode="fixed")


def test_membrane_mlp_in_lava_float_equals_snntorch():
    model = membrane_mlp(width=0.05, seed=3)
    x = digit_like_input(5, 3, seed=3)
    spikes, volt = snntorch_run(model, x)
    net = lc.convert(to_nir(model), synapse="dense")
    res = lr.run(net, x, mode="float")
    assert len(res.spikes) == len(spikes) == 1 and spikes[0].any()  # the hidden layer spikes
    np.testing.assert_array_equal(res.spikes[0], spikes[0])
    assert res.voltage.shape == volt.shape == (5, 3, 10)
    np.testing.assert_allclose(res.voltage, volt, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(res.voltage.sum(0).argmax(-1), volt.sum(0).argmax(-1))


def test_simulate_membrane_readout_in_lava(tmp_path, esl):
    model = membrane_mlp(width=0.05, seed=4)
    path = write_nir(model, tmp_path / "mem.nir", {"T": 4, "encoding": "direct"})
    report = simulate(path, "lava", limit=4, progress=False)
    assert report.readout == "membrane"
    assert list(report.layer_agreement) == ["2"] and report.layer_agreement["2"] == 100.0
    assert report.readout_argmax_agreement == 100.0 == report.output_agreement
    assert report.readout_max_abs_diff < 1e-5 and report.identical_outputs == 100.0
    assert report.accuracy == report.snntorch_accuracy
    for backend in ("lava-fixed", "netx"):
        with pytest.raises(EslError, match="membrane readout"):
            simulate(path, backend, limit=2, progress=False)
    from helpers import assert_user_error
    code, _, err = esl("export", path, "--to", "lava", "-o", tmp_path / "m.lava")
    assert_user_error(code, err, "membrane readout")


def test_simulate_snntorch_backend_reports_the_readout(tmp_path):
    path = write_nir(membrane_mlp(width=0.05, seed=5), tmp_path / "mem.nir", {"T": 4, "encoding": "direct"})
    report = simulate(path, "snntorch", limit=6, progress=False)
    assert report.readout_argmax_agreement == 100.0 and report.readout_max_abs_diff < 1e-5


# ------------------------------------------------------------------------------------------------
# ONNX and energy
# ------------------------------------------------------------------------------------------------

def test_onnx_export_of_the_membrane_readout(tmp_path):
    onnx = pytest.importorskip("onnx")
    from esl_deploy.export.onnx import UnrolledNet, run_onnx, to_onnx

    model = membrane_mlp(width=0.1, seed=6)
    x = torch.from_numpy(digit_like_input(4, 2)).float()
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(UnrolledNet(model)(x), ref)
    path = to_onnx(model, tmp_path / "m.onnx", 4)
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["membrane"]
    np.testing.assert_allclose(run_onnx(path, x), ref.numpy(), atol=1e-5)


def test_sops_and_core_mapping_of_the_membrane_readout():
    from esl_deploy.hw_models.sops import count_activity
    from esl_deploy.hw_models.unroll import synaptic_layers

    model = membrane_mlp(width=0.1, seed=7)
    x = torch.from_numpy(digit_like_input(1, 8)[0]).float()
    rep = count_activity(model, (x, torch.zeros(8, dtype=torch.long)), T=4, encoding="direct")
    names = [n.name for n in rep.neurons]
    assert names == ["layers.2", "layers.4"]
    readout = rep.neurons[1]
    assert readout.neurons == 10 and readout.spikes == 0.0 and readout.rate == 0.0
    assert rep.neurons[0].spikes > 0 and rep.layer("layers.3").acs > 0  # the readout synapses see spikes
    assert rep.neuron_updates == (80 + 10) * 4 and rep.active_updates == rep.neurons[0].spikes
    assert [l.name for l in synaptic_layers(model)] == ["layers.1", "layers.3"]
