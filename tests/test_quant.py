"""Quantisation-aware training (--weight-bits): the grid by hand, and bit-exact weights after export."""
import numpy as np
import pytest
import torch

from esl_deploy.models import ModelSpec, build_model, synapse_layers
from esl_deploy.export.lava.convert import convert
from esl_deploy.export.lava.fixed import quantize
from esl_deploy.export.nir.write import to_nir
from esl_deploy.export.simulate import load_network
from esl_deploy.train.config import TrainConfig
from esl_deploy.train.masking import SparsityConfig
from esl_deploy.loihi2 import A_IN_MAX, BIAS_MANT_MAX, VTH_TARGET
from esl_deploy.export.lava.fixed import emulate_fixed
from esl_deploy.export.simulate import snntorch_spikes
from esl_deploy.train.quant import (LoihiView, grid_quantize, hardware_beta, loihi_quantize, loihi_steps, loihi_views,
                         quantized_state, quantized_weights)
from esl_deploy.train.trainer import train


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
        # the trained weights, threshold and biases are the exported integers: no rounding at all
        assert e["lossless"] == 1.0 and e["weight_rel"] == 0.0 and e["threshold_rel"] == 0.0, (name, e)
        assert e["bias_abs"] == 0.0 and e["beta_abs"] == 0.0
    # ... so Loihi 2's integer arithmetic gives the trained network's spikes, every layer, every step
    x = np.random.default_rng(0).integers(0, 17, size=(2, 40, 1, 8, 8)) / 16.0
    for fixed, ref in zip(emulate_fixed(net, x), snntorch_spikes(model, x)[-3:]):
        assert np.array_equal(fixed, ref.astype(fixed.dtype))
    # without quantisation-aware training the same export rounds: errors of order 2^-8
    plain = build_model(ModelSpec("convnet", (1, 8, 8), 10, width=0.25)).eval()
    errs = quantize(convert(to_nir(plain), synapse="dense", conv="conv"), groups=1, input_frac_bits=4).quant_errors()
    assert max(e["weight_rel"] for e in errs.values()) > 1e-3
    assert all(e["lossless"] == 0.0 for e in errs.values())


def test_loihi_grid_by_hand():
    w = torch.tensor([[0.3, -0.1, 0.0], [0.05, 0.2, -0.3]])
    b = torch.tensor([0.011, -0.5])
    view = LoihiView(threshold=1.0, input_scale=1.0)
    # 2 theta 127 / max|W| = 846.7 -> v0 = 512 (a power of two), delta = 2 / 512 = 1/256
    assert loihi_steps(w, b, view, 8) == 512
    wq, bq = loihi_quantize(w, b, view, 8)
    assert torch.equal(wq, torch.round(w * 256) / 256)  # 76.8 -> 77 steps, no clipping here
    assert torch.equal(bq, torch.round(b * 512) / 512)  # biases on half steps
    assert wq[0, 2] == 0  # zeros stay zeros (masks are kept)
    assert torch.equal(loihi_quantize(wq, bq, view, 8)[0], wq)  # idempotent
    # graded input x in [0, 1] sent as 16 x: S = 2 * 16 / delta = 8192, a_in <= 2 * 16 * 77 = 2464, vth = 8192;
    # but bias_mant = 0.5 S = 4096 > 4095, so the grid is halved (v0 = 256); a bias of 0.1 fits (819)
    assert loihi_steps(w, b, LoihiView(1.0, input_scale=16.0), 8) == 256
    small = torch.tensor([0.011, -0.1])
    assert loihi_steps(w, small, LoihiView(1.0, input_scale=16.0), 8) == 512
    assert loihi_steps(w, small, LoihiView(1.0, input_scale=64.0), 8) == 256  # vth = 64 v0 <= 2^14
    # 16-bit a_in: inputs up to x_hi = 13 give 2 * (16 * 13) * 77 = 32032 <= 32767; up to 14 give 34496: halved
    assert loihi_steps(w, small, LoihiView(1.0, input_scale=16.0, x_hi=13.0), 8) == 512
    assert loihi_steps(w, small, LoihiView(1.0, input_scale=16.0, x_hi=14.0), 8) == 256
    with pytest.raises(ValueError):
        loihi_quantize(w, b, LoihiView(threshold=0.0), 8)


@pytest.mark.parametrize("seed", range(20))
def test_loihi_grid_keeps_every_width_the_exporter_keeps(seed):
    g = torch.Generator().manual_seed(seed)
    n_out, n_in = int(torch.randint(1, 60, (1,), generator=g)), int(torch.randint(1, 300, (1,), generator=g))
    w = torch.randn(n_out, n_in, generator=g) * float(torch.rand(1, generator=g) * 2)
    w[torch.rand(n_out, n_in, generator=g) < 0.5] = 0
    b = torch.randn(n_out, generator=g) * float(torch.rand(1, generator=g) * 3)
    view = LoihiView(threshold=float(2.0 ** int(torch.randint(-2, 3, (1,), generator=g))),
                     gain=[1.0, 0.25][seed % 2], input_scale=[1.0, 16.0, 256.0][seed % 3],
                     x_lo=[0.0, -1.0][seed % 2 and seed % 3 == 1], x_hi=1.0)
    v0 = loihi_steps(w, b, view, 8)
    wq, bq = loihi_quantize(w, b, view, 8)
    delta = 2 * view.threshold / v0
    n = (wq / delta).double()
    assert torch.equal(n, n.round()) and n.abs().max() <= 127
    assert torch.equal(2 * bq / delta, (2 * bq / delta).round())
    s, c = view.input_scale, view.gain
    pos, neg = n.clamp(min=0).sum(1), n.clamp(max=0).sum(1)
    xh, xl = view.x_hi * s, view.x_lo * s
    a_in = 2 / c * torch.maximum(pos * xh + neg * xl, -(pos * xl + neg * xh)).max()
    if v0 > 1:  # v0 = 1 is the coarsest grid: a layer that does not fit even there is refused by the exporter
        assert a_in <= A_IN_MAX and s * v0 / c <= VTH_TARGET
        assert (2 * bq / delta).abs().max() * s / c <= BIAS_MANT_MAX


def test_loihi_views_follow_the_exporters_layers():
    conv = build_model(ModelSpec("convnet", (1, 8, 8), 10, width=0.25))
    views = loihi_views(conv, input_frac_bits=4)
    names = [n for n, _ in synapse_layers(conv)]
    assert list(views) == names
    assert [v.gain for v in views.values()] == [1.0, 0.25, 0.25]  # 2x2 average pools fold into the next layer
    assert [v.input_scale for v in views.values()] == [16.0, 1.0, 1.0]
    assert loihi_views(conv, input_frac_bits=None)[names[0]].input_scale is None
    membrane = build_model(ModelSpec("mlp", (1, 8, 8), 10, width=0.1, readout="membrane"))
    assert list(loihi_views(membrane, input_frac_bits=4)) == ["layers.1"]  # the LI readout has no fixed point
