"""`esl export` / `esl simulate` on bad input: one line on stderr, exit code 2, no traceback, no output left.

The cases of the export issue: graphs a format cannot hold (CubaLIF, a recurrent edge: netx and ONNX), a
wrong input shape, a file that is not NIR/HDF5, a checkpoint from a different model.
"""
import io

import nir
import numpy as np
import pytest
import torch

from esl_deploy.checkpoint import read_checkpoint
from esl_deploy.models import ModelSpec, build_model
from esl_deploy.export.nir.write import write_nir
from helpers import assert_user_error, run_cli

TARGETS = ("nir", "lava", "netx", "onnx")


def lif(n):
    return nir.LIF(tau=np.full(n, 1e-3 / 0.1), r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.ones(n),
                   v_reset=np.zeros(n))


def graph_file(path, nodes, edges):
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    return path


@pytest.fixture
def unsupported_nir(tmp_path):
    """Linear -> CubaLIF: a synaptic-current neuron our converters do not build."""
    cuba = nir.CubaLIF(tau_syn=np.full(2, 2e-3), tau_mem=np.full(2, 2e-3), r=np.full(2, 1.0),
                       v_leak=np.zeros(2), v_threshold=np.ones(2))
    nodes = {"input": nir.Input(input_type=np.array([64])), "fc": nir.Linear(weight=np.ones((2, 64))),
             "syn_lif": cuba, "output": nir.Output(output_type=np.array([2]))}
    return graph_file(tmp_path / "cuba.nir", nodes, [("input", "fc"), ("fc", "syn_lif"), ("syn_lif", "output")])


@pytest.fixture
def recurrent_nir(tmp_path):
    nodes = {"input": nir.Input(input_type=np.array([64])), "fc": nir.Linear(weight=np.ones((2, 64))),
             "lif": lif(2), "rec": nir.Linear(weight=np.eye(2)), "output": nir.Output(output_type=np.array([2]))}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
    return graph_file(tmp_path / "rec.nir", nodes, edges)


@pytest.fixture
def mnist_shaped_nir(tmp_path):
    """A valid network for 28x28 input: digits (8x8) is the wrong input shape for it."""
    model = build_model(ModelSpec("mlp", (1, 28, 28), 10, width=0.02)).eval()
    return write_nir(model, tmp_path / "mnist.nir", {"T": 2, "encoding": "direct"})


# Graphs beyond chains (issue 22): a CubaLIF neuron exports to NIR and Lava, a recurrent edge to NIR (the
# .lava file quantises, and a layer that sums the analog input with its own spikes has no fixed-point
# input format yet; esl simulate --backend lava runs it, tests/test_nir_graphs.py); netx (a chain of CUBA
# layers that reset to zero) and ONNX (an unrolled chain of LIF layers) refuse both. A refusal is one line
# and leaves nothing behind.
HOLDS_GRAPHS = {"unsupported_nir": ("nir", "lava"), "recurrent_nir": ("nir",)}


@pytest.mark.parametrize("to", TARGETS)
@pytest.mark.parametrize("fixture", ["unsupported_nir", "recurrent_nir"])
def test_graphs_export_where_the_format_holds_them_else_one_line(capsys, tmp_path, request, fixture, to):
    source = request.getfixturevalue(fixture)
    out = tmp_path / f"out.{to}"
    code, _, err = run_cli(capsys, "export", source, "--to", to, "-o", out)
    if to in HOLDS_GRAPHS[fixture]:
        assert code == 0, err
        assert out.is_file()
    else:
        assert_user_error(code, err)
        assert not out.exists() and list(tmp_path.iterdir()) == [source]


@pytest.mark.parametrize("backend", ["lava", "netx"])
def test_simulate_runs_a_cubalif_graph_in_lava_and_netx_refuses_it(capsys, unsupported_nir, backend):
    code, out, err = run_cli(capsys, "simulate", unsupported_nir, "--backend", backend, "--random-spikes", "0.3",
                             "-T", "6", "--samples", "3", "--no-progress", "--json")
    if backend == "lava":
        assert code == 0, err
    else:
        assert_user_error(code, err)


@pytest.mark.parametrize("backend", ["snntorch", "lava", "lava-fixed", "netx"])
def test_wrong_input_shape_is_refused(capsys, mnist_shaped_nir, backend):
    code, _, err = run_cli(capsys, "simulate", mnist_shaped_nir, "--backend", backend, "--dataset", "digits",
                           "--no-progress")
    assert_user_error(code, err, "(1, 8, 8)", "(1, 28, 28)")


@pytest.mark.parametrize("name,payload", [("model.nir", b"plain text, not HDF5"), ("model.pt", b"\x00\x01junk"),
                                          ("model.h5", b"neither")])
@pytest.mark.parametrize("command", ["export", "simulate"])
def test_files_that_are_not_networks_are_refused(capsys, tmp_path, name, payload, command):
    src = tmp_path / name
    src.write_bytes(payload)
    out = tmp_path / "out.nir"
    args = ("--to", "nir", "-o", out) if command == "export" else ("--backend", "lava", "--no-progress")
    code, _, err = run_cli(capsys, command, src, *args)
    assert_user_error(code, err, name)
    assert not out.exists()
    assert src.read_bytes() == payload


def test_checkpoint_from_a_different_model_is_refused(capsys, tmp_path):
    """A run's checkpoint whose weights belong to another architecture than its recorded model spec."""
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--width", "0.05", "--T", "2", "--epochs", "1", "--no-progress",
                           "--out", run)
    assert code == 0, err
    ckpt = run / "checkpoint.pt"
    state = read_checkpoint(ckpt)
    other = build_model(ModelSpec("convnet", (1, 8, 8), 10, width=0.25)).state_dict()
    state["best"]["model"] = other  # weights of a conv net under an MLP's spec
    buf = io.BytesIO()
    torch.save(state, buf)
    bad = tmp_path / "other.pt"
    bad.write_bytes(buf.getvalue())
    for args in (("export", bad, "--to", "nir", "-o", tmp_path / "o.nir"),
                 ("export", bad, "--to", "netx", "-o", tmp_path / "o.h5"),
                 ("simulate", bad, "--backend", "lava", "--no-progress")):
        code, _, err = run_cli(capsys, *args)
        assert_user_error(code, err, "other.pt")
    assert not (tmp_path / "o.nir").exists() and not (tmp_path / "o.h5").exists()
