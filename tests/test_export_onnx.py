"""ONNX export: unrolled LIF dynamics, checker, onnxruntime against torch, metadata, bad inputs, CLI."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from esl_deploy.errors import EslError
from esl_deploy.models import ModelSpec
from esl_deploy.export.nir.write import write_nir
from esl_deploy.export.onnx import UnrolledNet, lif_unrolled, run_onnx, to_onnx
from helpers import half_sparse_model

SPECS = {
    "mlp": ModelSpec("mlp", (1, 8, 8), 10, width=0.05),
    "convnet": ModelSpec("convnet", (1, 8, 8), 10, width=0.25),
    "vggsnn": ModelSpec("vggsnn", (2, 16, 16), 10, width=0.05),  # with BatchNorm
    "resnet19": ModelSpec("resnet19", (3, 8, 8), 10, width=0.03),  # residual blocks
}
META = {"method": "set", "dataset": "digits", "T": 5, "encoding": "rate", "density": 0.5}


def sparse_model(spec: ModelSpec, seed: int = 0, gain: float = 3.0):
    """Half of each sparsified weight zeroed, weights scaled so neurons spike, BatchNorm statistics
    moved away from (0, 1) so that eval-mode BatchNorm matters."""
    model = half_sparse_model(spec, seed, gain)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    model.meta = dict(META)
    return model


def spiking_input(spec: ModelSpec, T: int = 5, B: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(T, B, *spec.input_shape, generator=torch.Generator().manual_seed(seed))


def test_lif_unrolled_matches_hand_computed_trace():
    # beta 0.5, theta 1: U = 0.6, 0.9, 1.05 -> spike, reset 0; 2.0 -> spike; 0 -> 0
    current = torch.tensor([0.6, 0.6, 0.6, 2.0, 0.0]).view(5, 1, 1)
    spikes = lif_unrolled(current, torch.tensor([0.5]), torch.tensor([1.0]))
    assert spikes.flatten().tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]
    # exactly at threshold is no spike (strict >), as in snnTorch
    assert lif_unrolled(torch.ones(1, 1, 1), torch.tensor([0.9]), torch.tensor([1.0])).item() == 0.0


@pytest.mark.parametrize("name", sorted(SPECS))
def test_unrolled_wrapper_reproduces_the_model_bit_for_bit(name):
    spec = SPECS[name]
    model = sparse_model(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = spiking_input(spec)
    with torch.no_grad():
        ref = model(x)
        out = UnrolledNet(model)(x)
    assert 0 < ref.sum() < ref.numel()
    assert torch.equal(out, ref)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_onnx_passes_checker_and_onnxruntime_matches_torch(name, tmp_path):
    spec = SPECS[name]
    model = sparse_model(spec)
    path = to_onnx(model, tmp_path / "m.onnx", T=5, batch=2)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    x = spiking_input(spec, B=4)  # a batch size other than the traced one: the batch axis is dynamic
    with torch.no_grad():
        ref = model(x).numpy()
    out = run_onnx(path, x)
    assert out.shape == (5, 4, 10)
    assert 0 < ref.sum() < ref.size
    np.testing.assert_array_equal(out, ref)
    assert not model.training


def test_onnx_records_T_and_training_metadata(tmp_path):
    path = to_onnx(sparse_model(SPECS["mlp"]), tmp_path / "m.onnx", T=5)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["T"] == "5"
    assert json.loads(props["esl_meta"])["method"] == META["method"]
    graph_input = onnx.load(str(path)).graph.input[0]
    assert graph_input.type.tensor_type.shape.dim[1].dim_param == "batch"


def test_bad_arguments_and_files_are_user_errors(tmp_path):
    model = sparse_model(SPECS["mlp"])
    with pytest.raises(EslError, match="positive integer"):
        to_onnx(model, tmp_path / "m.onnx", T=0)
    path = to_onnx(model, tmp_path / "m.onnx", T=5)
    with pytest.raises(EslError, match="T is fixed at export"):
        run_onnx(path, spiking_input(SPECS["mlp"], T=3))
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    with pytest.raises(EslError, match="not a valid ONNX model"):
        run_onnx(junk, spiking_input(SPECS["mlp"]))
    with pytest.raises(EslError, match="no such ONNX file"):
        run_onnx(tmp_path / "missing.onnx", spiking_input(SPECS["mlp"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.onnx", "m.onnx"]  # no temporary files


def test_cli_exports_onnx_with_the_recorded_T(esl, tmp_path):
    spec = SPECS["convnet"]
    model = sparse_model(spec)
    src = write_nir(model, tmp_path / "m.nir")
    code, stdout, err = esl("export", src, "--to", "onnx", "-o", tmp_path / "m.onnx", "--json")
    assert code == 0, err
    assert json.loads(stdout)["T"] == META["T"]
    x = spiking_input(spec, T=META["T"])
    with torch.no_grad():
        np.testing.assert_array_equal(run_onnx(tmp_path / "m.onnx", x), model(x).numpy())


def test_cli_needs_steps_when_the_source_records_no_T(esl, tmp_path):
    model = sparse_model(SPECS["mlp"])
    del model.meta["T"]
    src = write_nir(model, tmp_path / "m.nir")
    code, _, err = esl("export", src, "--to", "onnx", "-o", tmp_path / "m.onnx")
    assert code == 2 and err.count("\n") == 1 and "--steps" in err
    assert not (tmp_path / "m.onnx").exists()
    code, _, err = esl("export", src, "--to", "onnx", "-o", tmp_path / "m.onnx", "--steps", "3")
    assert code == 0, err
    assert run_onnx(tmp_path / "m.onnx", spiking_input(SPECS["mlp"], T=3)).shape == (3, 4, 10)
