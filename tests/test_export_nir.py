"""NIR export and import: round trips, hand-checked node parameters, snnTorch's own importer, bad graphs,
and the ``esl export`` command."""
from __future__ import annotations

import json
import sys
import types

import h5py
import nir
import numpy as np
import pytest
import torch

import esl_deploy
from esl_deploy.errors import EslError
from esl_deploy.masks import sparsifiable
from esl_deploy.models import ModelSpec, build_model
from esl_deploy.export.nir.write import DT, fold_batchnorm, lif_node, storable_metadata, to_nir, write_nir
from esl_deploy.export.nir.read import from_nir, lif_parameters, load_nir, metadata_from_hdf5
from helpers import half_sparse_model, spiking_input

SPECS = {
    "mlp": ModelSpec("mlp", (1, 8, 8), 10, width=0.05),  # 64-40-10
    "convnet": ModelSpec("convnet", (1, 8, 8), 10, width=0.25),  # 4C3-AP2-8C3-AP2-FC10
}
META = {"method": "esl", "dataset": "digits", "T": 6, "encoding": "direct", "density": 0.5}


def sparse_model(spec: ModelSpec, seed: int = 0, gain: float = 4.0):
    return half_sparse_model(spec, seed, gain, META)


def synapse_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


# ---------------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("name", sorted(SPECS))
def test_write_read_round_trip_gives_identical_spikes(name, tmp_path):
    spec = SPECS[name]
    model = sparse_model(spec)
    path = write_nir(model, tmp_path / "m.nir")
    graph = nir.read(path)  # type_check=True must accept what we write
    assert isinstance(graph, nir.NIRGraph)
    loaded = load_nir(path)
    x = spiking_input(spec)
    with torch.no_grad():
        ref, out = model(x), loaded(x)
    assert 0 < ref.sum() < ref.numel(), "test input must make some but not all output neurons spike"
    assert torch.equal(out, ref)
    for w0, w1 in zip(synapse_weights(model), synapse_weights(loaded), strict=True):
        assert torch.equal(w0, w1)
        assert torch.equal(w0 == 0, w1 == 0)  # masked weights stay exact zeros
    for _, w1 in sparsifiable(loaded):
        assert (w1 == 0).float().mean() > 0.3  # and the masks really are sparse
    assert not loaded.training


def test_round_trip_of_bias_free_strided_padded_layers_and_if_neurons():
    """nn.Linear(bias=False) -> nir.Linear, a strided conv without bias, a padded stride-1 pool and a
    beta == 1 layer (-> nir.IF) all come back with identical spikes."""
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False), esl_deploy.neurons.LIF((4, 3, 3), beta=0.7),
              torch.nn.AvgPool2d(3, stride=1, padding=1), torch.nn.Flatten(), torch.nn.Linear(36, 3, bias=False),
              esl_deploy.neurons.LIF((3,), beta=1.0, threshold=0.5)]
    model = esl_deploy.models.SpikingNet(layers, ModelSpec("convnet", (2, 6, 6), 3)).eval()
    with torch.no_grad():
        layers[0].weight.abs_().mul_(3)
        layers[4].weight.mul_(2)
    graph = to_nir(model)
    assert [type(graph.nodes[str(i)]).__name__ for i in range(6)] == \
        ["Conv2d", "LIF", "AvgPool2d", "Flatten", "Linear", "IF"]
    loaded = from_nir(graph)
    x = torch.rand(8, 5, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
        assert 0 < ref.sum() < ref.numel()
        assert torch.equal(loaded(x), ref)
    assert loaded.layers[4].bias is None and loaded.layers[0].stride == (2, 2)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_metadata_round_trips(name, tmp_path):
    model = sparse_model(SPECS[name])
    meta = load_nir(write_nir(model, tmp_path / "m.nir")).meta
    for key in ("method", "dataset", "T", "encoding", "density", "layer_density"):
        assert meta[key] == model.meta[key], key
    assert isinstance(meta["T"], int)
    assert meta["dt"] == DT
    assert meta["esl_deploy_version"] == esl_deploy.__version__
    assert ModelSpec.from_dict(meta["model_spec"]) == model.spec


def test_node_metadata_carries_the_actual_weight_density():
    model = sparse_model(SPECS["convnet"])
    graph = to_nir(model)
    first, second = graph.nodes["0"], graph.nodes["3"]
    assert first.metadata["density"] == 1.0  # the first conv is not sparsified
    assert second.metadata["density"] == pytest.approx(float((model.layers[3].weight != 0).float().mean()))


def test_meta_argument_overrides_model_meta_and_unset_keys_are_computed():
    model = sparse_model(SPECS["mlp"])
    del model.meta
    md = to_nir(model, {"method": "set", "T": 3}).metadata
    assert md["method"] == "set" and md["T"] == 3
    w = model.layers[3].weight
    assert md["layer_density"]["layers.3.weight"] == pytest.approx(float((w != 0).float().mean()))


def test_storable_metadata_round_trips_and_refuses_what_hdf5_cannot_hold(tmp_path):
    md = storable_metadata({"a": None, "b": ["x", "yz"], "c": (1, 2), "d": {"e": True}, "f": 2.5})
    assert "a" not in md
    graph = nir.NIRGraph.from_list(nir.Affine(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)))
    graph.metadata = md
    nir.write(tmp_path / "g.nir", graph)
    back = metadata_from_hdf5(nir.read(tmp_path / "g.nir").metadata)
    assert back == {"b": ["x", "yz"], "c": [1, 2], "d": {"e": True}, "f": 2.5}
    with pytest.raises(EslError, match="cannot store"):
        storable_metadata({"bad": object()})
    with pytest.raises(EslError, match="'/'"):
        storable_metadata({"a/b": 1})


# ---------------------------------------------------------------------------------------------------
# node parameters, hand-checked


def test_tiny_mlp_nodes_match_hand_computed_parameters():
    model = build_model(ModelSpec("mlp", (4,), 2, width=0.004)).eval()  # 4-3-2, no Flatten
    with torch.no_grad():
        model.layers[1].beta.copy_(torch.tensor([0.5, 0.75, 0.0]))
        model.layers[1].threshold.copy_(torch.tensor([1.0, 2.0, 0.5]))
    graph = to_nir(model)
    assert graph.edges == [("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "output")]
    assert [type(graph.nodes[n]).__name__ for n in ("input", "0", "1", "2", "3", "output")] == \
        ["Input", "Affine", "LIF", "Affine", "LIF", "Output"]
    lif = graph.nodes["1"]
    # tau = dt / (1 - beta), r = tau / dt = 1 / (1 - beta), dt = 1e-4
    np.testing.assert_allclose(lif.tau, [2e-4, 4e-4, 1e-4], rtol=1e-12)
    np.testing.assert_allclose(lif.r, [2.0, 4.0, 1.0], rtol=1e-12)
    np.testing.assert_array_equal(lif.v_threshold, [1.0, 2.0, 0.5])
    np.testing.assert_array_equal(lif.v_leak, [0, 0, 0])
    np.testing.assert_array_equal(lif.v_reset, [0, 0, 0])
    np.testing.assert_array_equal(graph.nodes["3"].tau, np.full(2, 1e-4 / (1 - np.float32(0.9))))
    np.testing.assert_array_equal(graph.nodes["0"].weight, model.layers[0].weight.detach().numpy())
    np.testing.assert_array_equal(graph.nodes["0"].bias, model.layers[0].bias.detach().numpy())
    assert graph.metadata["dt"] == 1e-4


def test_conv_pool_and_flatten_nodes_have_nir_conventions():
    graph = to_nir(build_model(SPECS["convnet"]))
    conv, pool, flat = graph.nodes["0"], graph.nodes["2"], graph.nodes["6"]
    assert isinstance(conv, nir.Conv2d) and conv.input_shape == (8, 8)
    np.testing.assert_array_equal(conv.output_type["output"], [4, 8, 8])
    assert isinstance(pool, nir.AvgPool2d)
    np.testing.assert_array_equal(pool.kernel_size, [2, 2])
    np.testing.assert_array_equal(pool.stride, [2, 2])
    # torch start_dim=1 counts the batch dim, NIR's does not: written from the end, -3 is NIR's dim 0 of
    # (8, 2, 2), and a reader passing it to torch.nn.Flatten keeps the batch dim
    assert (flat.start_dim, flat.end_dim) == (-3, -1)
    np.testing.assert_array_equal(flat.output_type["output"], [32])
    np.testing.assert_array_equal(flat.input_type["input"], [8, 2, 2])
    np.testing.assert_array_equal(graph.nodes["8"].v_threshold.shape, [10])


def test_beta_round_trips_bit_exactly_through_tau():
    rng = np.random.default_rng(0)
    beta32 = np.concatenate([rng.random(2000).astype(np.float32),
                             np.float32([0.0, 0.5, 0.9, 0.99, 1 - 2.0 ** -24])])
    thr32 = rng.uniform(0.1, 3, beta32.shape).astype(np.float32)
    node = lif_node(beta32.astype(np.float64), thr32.astype(np.float64))
    beta, thr = lif_parameters(node, DT)
    np.testing.assert_array_equal(beta.astype(np.float32), beta32)
    np.testing.assert_array_equal(thr.astype(np.float32), thr32)


def test_beta_one_exports_as_if_and_mixed_is_refused():
    node = lif_node(np.ones(3), np.full(3, 2.0))
    assert isinstance(node, nir.IF)
    np.testing.assert_allclose(node.r, 1 / DT)
    beta, thr = lif_parameters(node, DT)
    np.testing.assert_array_equal(beta, 1.0)
    np.testing.assert_array_equal(thr, 2.0)
    with pytest.raises(EslError, match="beta == 1"):
        lif_node(np.array([1.0, 0.5]), np.ones(2))


def test_lif_input_gain_is_moved_into_the_threshold():
    # r = 2 tau / dt: the input is doubled, the same as halving the threshold when the reset is to 0
    node = nir.LIF(tau=np.full(2, 5e-4), r=np.full(2, 10.0), v_leak=np.zeros(2), v_threshold=np.array([1.0, 3.0]))
    beta, thr = lif_parameters(node, DT)
    np.testing.assert_allclose(beta, 0.8)
    np.testing.assert_allclose(thr, [0.5, 1.5])
    leaky = nir.LIF(tau=np.full(2, 5e-4), r=np.full(2, 5.0), v_leak=np.ones(2), v_threshold=np.ones(2))
    with pytest.raises(EslError, match="v_leak"):
        lif_parameters(leaky, DT, "n")


def test_batchnorm_is_folded_exactly_into_the_conv():
    model = build_model(ModelSpec("vggsnn", (2, 16, 16), 10, width=0.05)).eval()
    conv, bn = model.layers[0], model.layers[1]
    torch.manual_seed(0)
    with torch.no_grad():
        conv.weight[0].zero_()
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    w, b = fold_batchnorm(conv, bn)
    x = torch.rand(3, 2, 16, 16)
    with torch.no_grad():
        ref = bn(conv(x))
        got = torch.nn.functional.conv2d(x, torch.from_numpy(w), torch.from_numpy(b), padding=1)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert np.all(w[0] == 0)
    graph = to_nir(model)
    assert not any(type(n).__name__ == "BatchNorm2d" for n in graph.nodes.values())
    assert graph.nodes["0"].metadata["batchnorm_folded"] == "layers.1"
    np.testing.assert_array_equal(graph.nodes["0"].weight, w)
    assert isinstance(from_nir(graph).layers[1], esl_deploy.neurons.LIF)  # conv, LIF, ...: BN is gone


def test_residual_network_exports_its_blocks_as_merges():
    model = build_model(ModelSpec("resnet19", (3, 8, 8), 10, width=0.03)).eval()
    graph = to_nir(model)  # type-checked by nir
    assert {("3.conv2", "3.lif2"), ("2", "3.lif2"), ("6.shortcut", "6.lif2")} <= set(graph.edges)
    assert graph.nodes["6.shortcut"].metadata["batchnorm_folded"] == "layers.6.shortcut.1"
    assert isinstance(graph.nodes["11"], nir.AvgPool2d)  # AdaptiveAvgPool2d(1): the whole 2x2 window
    assert tuple(graph.nodes["11"].kernel_size) == (2, 2)
    x = torch.rand(4, 2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(from_nir(graph)(x), model(x))


# ---------------------------------------------------------------------------------------------------
# an independent reader: snnTorch's own NIR importer


@pytest.mark.parametrize("name", sorted(SPECS))
def test_snntorch_import_from_nir_gives_the_same_spikes(name, tmp_path):
    """snnTorch 1.0.0's ``import_from_nir`` runs our default graphs one time step per call with state kept in
    the neurons (``init_hidden=True``), a batch of 5 samples at once: it hands NIR's ``Flatten`` dims to
    ``torch.nn.Flatten`` unchanged, which keeps the batch because we write them counted from the end. It
    also needs one threshold per layer, which holds here (uniform thresholds). More readers:
    tests/test_nir_interop.py."""
    from snntorch.import_nir import import_from_nir

    spec = SPECS[name]
    model = sparse_model(spec, seed=2)
    path = write_nir(model, tmp_path / "m.nir")
    x = spiking_input(spec, T=6, B=5)
    with torch.no_grad():
        ref = model(x)
        net = import_from_nir(nir.read(path))
        state, outs = None, []
        for t in range(x.shape[0]):
            spikes, state = net(x[t], state)
            outs.append(spikes)
    assert ref.sum() > 0
    assert torch.equal(torch.stack(outs), ref)


# ---------------------------------------------------------------------------------------------------
# graphs and files we must refuse


def _affine(n_in, n_out):
    return nir.Affine(np.ones((n_out, n_in), np.float32), np.zeros(n_out, np.float32))


def _lif(n):
    return nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.ones(n))


def test_recurrent_edge_is_read_with_its_one_step_delay(tmp_path):
    nodes = {"input": nir.Input(np.array([3])), "fc": _affine(3, 4), "lif": _lif(4), "rec": _affine(4, 4),
             "output": nir.Output(np.array([4]))}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    nir.write(tmp_path / "rnn.nir", graph)
    x = torch.zeros(3, 1, 3)
    x[0] = 1.0  # fc: each neuron gets 3 at t = 0 and fires; rec then gives every neuron 4 at t = 1: it fires again
    with pytest.warns(UserWarning, match="records no dt"):
        out = load_nir(tmp_path / "rnn.nir")(x)
    assert out[:, 0, 0].tolist() == [1.0, 1.0, 1.0]


def test_unsupported_node_type_is_refused_naming_the_node(tmp_path):
    conv1d = nir.Conv1d(input_shape=3, weight=np.ones((2, 1, 2), np.float32), stride=1, padding=0, dilation=1,
                        groups=1, bias=np.zeros(2, np.float32))
    nodes = {"input": nir.Input(np.array([1, 3])), "c": conv1d, "output": nir.Output(np.array([2, 2]))}
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "c"), ("c", "output")], type_check=False)
    with pytest.raises(EslError, match=r"node 'c' of type Conv1d: not supported"):
        from_nir(graph)


def test_branching_graph_sums_where_it_merges():
    nodes = {"input": nir.Input(np.array([3])), "a": _affine(3, 4), "b": _affine(3, 4), "lif": _lif(4),
             "output": nir.Output(np.array([4]))}
    edges = [("input", "a"), ("input", "b"), ("a", "lif"), ("b", "lif"), ("lif", "output")]
    x = torch.full((2, 1, 3), 0.2)  # each branch gives 0.6, their sum 1.2 > 1: a spike at once
    with pytest.warns(UserWarning, match="records no dt"):
        model = from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    assert model(x)[0, 0].tolist() == [1.0] * 4


def test_unknown_node_type_in_file_is_refused_naming_the_node(tmp_path):
    path = write_nir(sparse_model(SPECS["mlp"]), tmp_path / "m.nir")
    with h5py.File(path, "r+") as f:
        del f["node/nodes/2/type"]
        f["node/nodes/2"].create_dataset("type", data="Quantum", dtype=h5py.string_dtype())
    with pytest.raises(EslError, match=r"node '2' of type 'Quantum'"):
        load_nir(path)


def test_files_that_are_not_nir_are_refused(tmp_path):
    text = tmp_path / "notes.nir"
    text.write_text("not hdf5\n")
    with pytest.raises(EslError, match="not a NIR file"):
        load_nir(text)
    other = tmp_path / "other.nir"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(EslError, match="not a NIR file"):
        load_nir(other)
    with pytest.raises(EslError, match="no such NIR file"):
        load_nir(tmp_path / "missing.nir")


def test_write_is_atomic_and_needs_an_existing_folder(tmp_path):
    model = sparse_model(SPECS["mlp"])
    path = tmp_path / "m.nir"
    path.write_text("old")
    write_nir(model, path)
    assert isinstance(nir.read(path), nir.NIRGraph)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nir"]  # no temporary file left behind
    with pytest.raises(EslError, match="folder does not exist"):
        write_nir(model, tmp_path / "missing" / "m.nir")


# ---------------------------------------------------------------------------------------------------
# the command line


def test_cli_exports_nir_and_refuses_to_overwrite(esl, tmp_path):
    model = sparse_model(SPECS["convnet"])
    src = write_nir(model, tmp_path / "src.nir")
    out = tmp_path / "out.nir"
    code, stdout, _ = esl("export", src, "--to", "nir", "-o", out, "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["format"] == "nir" and summary["output"] == str(out) and summary["bytes"] > 0
    x = spiking_input(SPECS["convnet"])
    assert torch.equal(load_nir(out)(x), model(x))
    code, _, err = esl("export", src, "--to", "nir", "-o", out)
    assert code == 2
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert esl("export", src, "--to", "nir", "-o", out, "--force")[0] == 0


def test_cli_reports_missing_and_corrupt_sources_in_one_line(esl, tmp_path):
    code, _, err = esl("export", tmp_path / "missing.pt", "--to", "nir", "-o", tmp_path / "o.nir")
    assert code == 2 and err.count("\n") == 1 and "no such file" in err
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"\x00garbage")
    code, _, err = esl("export", bad, "--to", "nir", "-o", tmp_path / "o.nir")
    assert code == 2 and err.count("\n") == 1 and "not a NIR file" in err
    assert not (tmp_path / "o.nir").exists()


def test_cli_reads_checkpoints_through_esl_deploy_load(esl, tmp_path, monkeypatch):
    model = sparse_model(SPECS["mlp"])
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"checkpoint")
    monkeypatch.setattr(esl_deploy, "load", lambda p: model if str(p) == str(ckpt) else None, raising=False)
    code, _, err = esl("export", ckpt, "--to", "nir", "-o", tmp_path / "m.nir")
    assert code == 0, err
    assert load_nir(tmp_path / "m.nir").meta["method"] == META["method"]


def test_cli_hands_the_nir_graph_to_the_lava_writer(esl, tmp_path, monkeypatch):
    received = {}
    fake = types.ModuleType("esl_deploy.export.lava.file")
    fake.write_lava = lambda graph, path: received.update(graph=graph, path=path)
    monkeypatch.setitem(sys.modules, "esl_deploy.export.lava.file", fake)
    src = write_nir(sparse_model(SPECS["mlp"]), tmp_path / "src.nir")
    code, _, err = esl("export", src, "--to", "lava", "-o", tmp_path / "lava_out")
    assert code == 0, err
    assert isinstance(received["graph"], nir.NIRGraph) and str(received["path"]) == str(tmp_path / "lava_out")
    assert received["graph"].metadata["method"] == META["method"]
