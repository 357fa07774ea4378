"""Other tools' NIR readers on our files (snnTorch 1.0.0, Norse 1.1.0, Sinabs 2.0.3), run the way their users
run them (:mod:`export.nir.readers`), on an MLP and a conv net of the digits' shape, a batch of 5 samples;
and the reader flavours (``esl export --to nir --for READER``, :mod:`export.nir.flavours`) in our own tools.
The measured table on the trained digits networks is ``benchmarks/nir_interop.py``."""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from esl_deploy.errors import EslError
from esl_deploy.models import ModelSpec, apply_layer
from esl_deploy.neurons import LIF
from esl_deploy.export.cli import export_file
from esl_deploy.export.lava.convert import convert
from esl_deploy.export.nir.flavours import flavour, fold_pools, sinabs_tau
from esl_deploy.export.nir.graph import walk
from esl_deploy.export.nir.read import from_nir, load_nir
from esl_deploy.export.nir.readers import compare, run_reader
from esl_deploy.export.nir.write import to_nir, write_nir
from helpers import assert_user_error, digit_like_input, half_sparse_model

SPECS = {
    "mlp": ModelSpec("mlp", (1, 8, 8), 10, width=0.05),  # 64-40-10
    "convnet": ModelSpec("convnet", (1, 8, 8), 10, width=0.25),  # 4C3-AP2-8C3-AP2-FC10
}
META = {"method": "esl", "dataset": "digits", "T": 6, "encoding": "direct"}


@pytest.fixture(scope="module", params=sorted(SPECS))
def case(request, tmp_path_factory):
    """(name, model, input (T, B, ...), our output spikes, default .nir path)."""
    name = request.param
    model = half_sparse_model(SPECS[name], seed=3, gain=4.0, meta=META)
    x = digit_like_input(6, 5, seed=4).astype(np.float32)
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    path = write_nir(model, tmp_path_factory.mktemp(name) / "default.nir")
    assert ours.sum() > 0
    return name, model, x, ours, path


def _flavoured(path, reader):
    out = path.with_name(f"{reader}.nir")
    export_file(path, "nir", out, force=True, reader=reader)
    return out


def test_snntorch_runs_the_default_graph_batched_exactly(case):
    _, _, x, ours, path = case
    np.testing.assert_array_equal(run_reader("snntorch", path, x), ours)
    np.testing.assert_array_equal(run_reader("snntorch", _flavoured(path, "snntorch"), x), ours)


def test_norse_runs_its_flavour_exactly(case):
    """Norse ignores r and has no AvgPool2d: its flavour moves r into the weights and pools into sums."""
    _, _, x, ours, path = case
    np.testing.assert_array_equal(run_reader("norse", _flavoured(path, "norse"), x), ours)


def test_norse_fails_on_the_default_graph_as_measured(case):
    """Why the flavour exists: Norse 1.1.0 reads the default graph's LIF input without r (the MLP loads but
    its neurons see I dt/tau) and fails to load a conv net (no AvgPool2d: nirtorch's KeyError)."""
    name, _, x, ours, path = case
    if name == "convnet":
        with pytest.raises(KeyError):
            run_reader("norse", path, x)
    else:
        assert compare(run_reader("norse", path, x), ours).samples < 100.0


def sinabs_neuron_reference(model, graph: nir.NIRGraph, default: nir.NIRGraph, x: np.ndarray) -> np.ndarray:
    """Our network with Sinabs 2.0.3's LIF (``sinabs/layers/functional/lif.py``, ``MultiSpike``,
    ``MembraneSubtract``) in place of ours, parameters from the sinabs flavour ``graph`` of ``default``:
    ``v = exp(-1/tau) v + I``, ``s = (v > 0) trunc(v / theta)``, ``v -= s theta``."""
    lifs = iter(graph.nodes[s.name] for s in walk(default).steps if isinstance(s.node, nir.LIF))
    h = torch.from_numpy(x)
    with torch.no_grad():
        for layer in model.layers:
            if not isinstance(layer, LIF):
                h = apply_layer(layer, h)
                continue
            node = next(lifs)
            alpha = torch.exp(-1.0 / torch.as_tensor(node.tau, dtype=torch.float32))
            thr = torch.as_tensor(node.v_threshold)
            v, out = torch.zeros(h.shape[1:]), []
            for t in range(h.shape[0]):
                v = alpha * v + h[t]
                spikes = ((v > 0) * torch.div(v, thr, rounding_mode="trunc")).float()
                v = v - spikes * thr
                out.append(spikes)
            h = torch.stack(out)
    return h.numpy()


def test_sinabs_runs_its_flavour_as_our_network_with_its_own_neuron(case):
    """Sinabs' LIF fires trunc(v/theta) spikes and subtracts theta per spike, ours one spike at v > theta and
    reset to 0: ours cannot be expressed. The flavour loads, runs a batch, and is exactly our network with
    Sinabs' neuron (decay exp(-1/tau) = beta, pools as sums with 1/4 in the weights); against our own
    spikes the agreement is what the benchmark reports."""
    _, model, x, ours, path = case
    flav = _flavoured(path, "sinabs")
    theirs = run_reader("sinabs", flav, x)
    np.testing.assert_array_equal(theirs, sinabs_neuron_reference(model, nir.read(flav, type_check=False),
                                                                   nir.read(path), x))
    assert compare(theirs, ours).spikes < 100.0


def test_sinabs_tau_gives_exactly_the_decay():
    beta = np.array([0.0, 0.5, 0.9, 0.95])
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(np.exp(-1.0 / sinabs_tau(beta)), beta, rtol=1e-15, atol=0)


def test_flavours_keep_the_graph_meaning_in_our_own_tools(case):
    """The snnTorch and Norse flavours mean our network in NIR's terms: our importer and the Lava converter
    read them; pooling moved into weights is exact (k^2 = 4), r moved into weights is float round-off."""
    name, model, x, ours, path = case
    graph = nir.read(path)
    norse = flavour(graph, "norse")
    assert not any(isinstance(n, nir.AvgPool2d) for n in norse.nodes.values())
    assert all(np.all(n.r == 1) for n in norse.nodes.values() if isinstance(n, nir.LIF))
    with torch.no_grad():
        mine = from_nir(norse)(torch.from_numpy(x)).numpy()
    assert compare(mine, ours).spikes > 99.0
    assert len(convert(norse).layers) == len(convert(graph).layers)
    same = flavour(graph, "snntorch")
    with torch.no_grad():
        np.testing.assert_array_equal(from_nir(same)(torch.from_numpy(x)).numpy(), ours)


def test_pooling_folded_into_the_next_weights_is_exact():
    model = half_sparse_model(SPECS["convnet"], seed=1, meta=META)
    graph = to_nir(model)
    folded = fold_pools(walk(graph))
    for name, node in graph.nodes.items():
        if isinstance(node, nir.AvgPool2d):
            assert isinstance(folded[name], nir.SumPool2d)
    convs = [n for n in graph.nodes if isinstance(graph.nodes[n], (nir.Conv2d, nir.Affine))]
    np.testing.assert_array_equal(folded[convs[0]].weight, graph.nodes[convs[0]].weight)  # no pool before it
    for n in convs[1:]:  # each follows one 2x2 pool
        np.testing.assert_array_equal(folded[n].weight, graph.nodes[n].weight / np.float32(4))
        np.testing.assert_array_equal(folded[n].bias, graph.nodes[n].bias)


def test_sinabs_flavour_is_refused_by_our_tools(case, tmp_path):
    _, _, _, _, path = case
    out = _flavoured(path, "sinabs")
    with pytest.raises(EslError, match="written for sinabs"):
        load_nir(out)
    with pytest.raises(EslError, match="written for sinabs"):
        convert(nir.read(out, type_check=False))


def test_cli_writes_a_flavour_and_refuses_it_for_other_formats(esl, tmp_path):
    src = write_nir(half_sparse_model(SPECS["mlp"], meta=META), tmp_path / "m.nir")
    code, out, err = esl("export", src, "--to", "nir", "--for", "norse", "-o", tmp_path / "n.nir")
    assert code == 0, err
    assert "norse.torch.from_nir" in out
    g = nir.read(tmp_path / "n.nir")
    assert g.metadata["flavour"] == "norse" and float(g.metadata["dt"]) == 1e-3
    code, _, err = esl("export", src, "--to", "onnx", "--for", "norse", "-o", tmp_path / "n.onnx")
    assert_user_error(code, err, "--for norse", "--to nir")
    assert not (tmp_path / "n.onnx").exists()


def test_bias_free_linear_layers_become_affine_and_norse_runs_them(tmp_path):
    """Norse 1.1.0 builds NIR ``Linear`` with in and out swapped and Sinabs has no ``Linear``: the flavours
    write ``Affine`` with a zero bias, the same map."""
    from esl_deploy.export.nir.write import lif_node

    w = np.random.default_rng(0).uniform(0, 1, (3, 4)).astype(np.float32)
    graph = nir.NIRGraph.from_list(nir.Input(np.array([4])), nir.Linear(weight=w),
                                   lif_node(np.full(3, 0.9), np.full(3, 1.0)), nir.Output(np.array([3])))
    graph.metadata = {"dt": 1e-4}
    folded = fold_pools(walk(graph))
    (affine,) = [n for n in folded.values() if isinstance(n, nir.Affine)]
    np.testing.assert_array_equal(affine.weight, w)
    np.testing.assert_array_equal(affine.bias, np.zeros(3, np.float32))
    x = np.random.default_rng(1).uniform(0, 1, (6, 5, 4)).astype(np.float32)
    with torch.no_grad():
        ours = from_nir(graph)(torch.from_numpy(x)).numpy()
    nir.write(tmp_path / "n.nir", flavour(graph, "norse"))
    assert ours.sum() > 0
    np.testing.assert_array_equal(run_reader("norse", tmp_path / "n.nir", x), ours)
