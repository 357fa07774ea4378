"""``esl simulate`` and ``esl energy`` on inputs that are not a data set (issue 22): a user's ``.npy`` array
``(T, N, *input_shape)`` or random spikes of the graph's own input shape, for graphs of shapes no data
set has."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest

from esl_deploy.inputs import load_input_array, random_spikes
from esl_deploy.errors import EslError
from helpers import assert_user_error, run_cli


@pytest.fixture
def graph20(tmp_path):
    """A hand-built NIR graph of input shape (20,), as another tool writes it: Affine + LIF, dt 1e-4."""
    g = np.random.default_rng(0)
    w1, w2 = g.normal(0, 0.6, (30, 20)), g.normal(0, 0.8, (4, 30))
    lif = lambda n: nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n),
                            v_threshold=np.ones(n), v_reset=np.zeros(n))
    graph = nir.NIRGraph(nodes={"in": nir.Input(np.array([20])), "fc1": nir.Affine(w1, np.full(30, 0.1)),
                                "lif1": lif(30), "fc2": nir.Affine(w2, np.zeros(4)), "lif2": lif(4),
                                "out": nir.Output(np.array([4]))},
                         edges=[("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "out")])
    path = tmp_path / "g.nir"
    nir.write(path, graph)
    return path


def test_random_spikes_are_reproducible_bernoulli():
    a, b = random_spikes(0.25, 50, 40, (3, 4), seed=5), random_spikes(0.25, 50, 40, (3, 4), seed=5)
    assert a.shape == (50, 40, 3, 4) and a.dtype == np.float32 and np.array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 1.0} and abs(a.mean() - 0.25) < 0.01
    assert not np.array_equal(a, random_spikes(0.25, 50, 40, (3, 4), seed=6))
    with pytest.raises(EslError, match="probability"):
        random_spikes(1.5, 2, 2, (3,))


def test_input_arrays_are_checked_before_they_are_read(tmp_path):
    good = tmp_path / "x.npy"
    np.save(good, np.ones((5, 3, 20), np.float64))
    assert load_input_array(good, (20,)).dtype == np.float32
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(EslError, match="object"):
        load_input_array(tmp_path / "obj.npy", (20,))
    bad = np.ones((5, 3, 20), np.float32)
    bad[1, 1, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(EslError, match="NaN"):
        load_input_array(tmp_path / "nan.npy", (20,))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(EslError, match="cut short"):
        load_input_array(cut, (20,))
    with pytest.raises(EslError, match=r"takes \(T, N, 21\)"):
        load_input_array(good, (21,))


@pytest.mark.parametrize("backend", ["snntorch", "lava"])
def test_simulate_random_spikes_on_a_graph_of_another_shape(capsys, graph20, backend):
    code, out, err = run_cli(capsys, "simulate", graph20, "--backend", backend, "--random-spikes", "0.4",
                             "-T", "12", "--samples", "6", "--json", "--no-progress")
    assert code == 0, err
    r = json.loads(out)
    assert r["samples"] == 6 and r["T"] == 12 and r["accuracy"] is None
    assert set(r["layer_agreement"].values()) == {100.0}


def test_simulate_and_energy_read_an_input_file(capsys, tmp_path, graph20):
    x = (np.random.default_rng(1).random((9, 4, 20)) < 0.3).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run_cli(capsys, "simulate", graph20, "--backend", "lava", "--input", tmp_path / "x.npy",
                             "--json", "--no-progress")
    assert code == 0, err
    r = json.loads(out)
    assert (r["samples"], r["T"]) == (4, 9) and set(r["layer_agreement"].values()) == {100.0}
    code, out, err = run_cli(capsys, "energy", graph20, "--hw", "truenorth", "--input", tmp_path / "x.npy", "--json")
    assert code == 0, err
    e = json.loads(out)
    assert e["samples"] == 4 and e["T"] == 9
    # the first layer's synaptic operations are the input spikes times their fan-out, counted as given
    fanout = 30  # every input feeds every neuron of the dense Affine
    assert e["layers"][0]["acs"] == pytest.approx(x.sum() / 4 * fanout)


def test_bad_inputs_are_one_line(capsys, tmp_path, graph20):
    np.save(tmp_path / "x.npy", np.ones((3, 2, 21), np.float32))
    for cmd in (["simulate", graph20], ["energy", graph20]):
        code, _, err = run_cli(capsys, *cmd, "--input", tmp_path / "x.npy")
        assert_user_error(code, err, "(T, N, 20)")
        code, _, err = run_cli(capsys, *cmd, "--input", tmp_path / "x.npy", "--random-spikes", "0.1")
        assert_user_error(code, err, "not both")
        code, _, err = run_cli(capsys, *cmd, "--random-spikes", "0.1", "--dataset", "digits")
        assert_user_error(code, err, "not both")
