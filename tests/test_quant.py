"""Quantisation-aware training (--weight-bits): the grid by hand, and bit-exact weights after export."""
import numpy as np
import pytest
import torch

from esl_deploy.models import ModelSpec, build_model
from export.lava.convert import convert
from export.lava.fixed import quantize
from export.nir.write import to_nir
from export.simulate import load_network
from train.config import TrainConfig
from train.masking import SparsityConfig
from train.quant import grid_quantize, hardware_beta, quantized_state, quantized_weights
from train.trainer import train


def test_grid_by_hand():
    w = torch.tensor([0.5, -1.0, 0.26, 0.0])
    # 3 bits: 3 steps per sign, delta = 1/3; 0.5/delta = 1.5 rounds to 2 (half to even), 0.26/delta = 0.78 -> 1
    assert torch.allclose(grid_quantize(w, 3), torch.tensor([2 / 3, -1.0, 1 / 3, 0.0]))
    q = grid_quantize(torch.randn(50), 8)
    steps = q / (q.abs().max() / 127)
    assert torch.allclose(steps, steps.round(), atol=1e-4) and steps.abs().max().round() == 127
    assert torch.equal(grid_quantize(q, 8), q)  # idempotent
    assert torch.equal(grid_quantize(torch.zeros(3), 8), torch.zeros(3))
    with pytest.raises(ValueError):
        grid_quantize(w, 1)
    assert hardware_beta(0.9) == 1 - 410 / 4096 and hardware_beta(0.5) == 0.5


def test_context_quantizes_synapses_only_and_restores_the_floats():
    net = build_model(ModelSpec("mlp", (1, 8, 8), 10, width=0.1))
    w0 = net.layers[1].weight.detach().clone()
    b0 = net.layers[1].bias.detach().clone()
    with torch.no_grad():
        net.layers[1].weight[:, :3] = 0  # a mask
    with quantized_weights(net, 4):
        w = net.layers[1].weight
        assert torch.equal(w, grid_quantize(w, 4)) and (w[:, :3] == 0).all()
        assert torch.equal(net.layers[1].bias, b0)
    assert torch.equal(net.layers[1].weight[:, 3:], w0[:, 3:])
    state = quantized_state(net, 4)
    assert torch.equal(state["layers.1.weight"], grid_quantize(net.layers[1].weight, 4))
    with quantized_weights(net, None):
        assert torch.equal(net.layers[1].weight[:, 3:], w0[:, 3:])
    with pytest.raises(ValueError):
        TrainConfig(weight_bits=1)


def test_8bit_training_exports_bit_exact_weights_and_decay(tmp_path):
    cfg = TrainConfig(model="convnet", width=0.25, T=2, epochs=2, weight_bits=8,
                      sparsity=SparsityConfig(method="esl", density=0.3))
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["weight_bits"] == 8
    model, graph = load_network(tmp_path / "run" / "checkpoint.pt")
    assert model.meta["weight_bits"] == 8 and model.spec.beta == hardware_beta(0.9)
    net = quantize(convert(graph, synapse="dense", conv="conv"), groups=1, input_frac_bits=4)
    for name, e in net.quant_errors().items():
        assert e["weight_rel"] < 1e-6, (name, e)  # the trained weights are the exported integers
        assert e["beta_abs"] == 0.0
    # without quantisation-aware training the same export rounds: errors of order 2^-8
    plain = build_model(ModelSpec("convnet", (1, 8, 8), 10, width=0.25)).eval()
    errs = quantize(convert(to_nir(plain), synapse="dense", conv="conv"), groups=1, input_frac_bits=4).quant_errors()
    assert max(e["weight_rel"] for e in errs.values()) > 1e-3
