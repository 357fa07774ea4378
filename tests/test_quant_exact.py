"""8-bit QAT that the Loihi 2 fixed point reproduces spike for spike: graded 8-bit images are sent as their
integers k (input scale 255), and the trained LIF decays its membrane as Lava's integers do."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from esl_deploy.loihi2 import exact_input_scale, join_input_scales


def test_exact_input_scale_of_8_bit_images_digits_and_spikes():
    rng = np.random.default_rng(0)
    k = rng.integers(0, 256, size=(4, 1, 8, 8))
    assert exact_input_scale((k / 255).astype(np.float32)) == 255.0   # MNIST's ToTensor: float32(k / 255)
    assert exact_input_scale(k[..., :1] * 0 + np.float32(1 / 255)) == 255.0
    assert exact_input_scale((k % 17) / 16.0) == 16.0                  # digits
    assert exact_input_scale((k > 128).astype(np.float32)) == 1.0      # spikes
    assert exact_input_scale(rng.random((3, 5))) is None
    assert join_input_scales(1.0, 255.0) == 255.0 and join_input_scales(4.0, 16.0) == 16.0
    assert join_input_scales(2.0, 255.0) is None and join_input_scales(None, 1.0) is None


def _trained(make):
    """A VGG-like or residual (identity and 1x1 conv shortcut) net trained 24 steps with 8-bit QAT on k / 255
    inputs, beta 0.9: ``(the kept net, the trained inputs xs (N, 1, 8, 8))``."""
    import torch
    from torch import nn
    from esl_deploy.train.quant import hardware_beta, loihi_views, quantized_state, quantized_weights
    from test_quant_bn import T, _res, _vgg
    build = _vgg if make == "vgg" else _res
    beta = hardware_beta(0.9)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    xs = torch.from_numpy((rng.integers(0, 256, size=(256, 1, 8, 8)) / 255).astype(np.float32))
    ys = torch.from_numpy(rng.integers(0, 10, size=256))
    net = build(beta)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(2.0), m.bias.fill_(0.3)
    views = loihi_views(net, input_scale=exact_input_scale(xs.numpy()))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    steps = 24
    net.train()
    for step in range(steps):
        opt.zero_grad()
        with quantized_weights(net, 8, views, bn_frozen=step >= steps // 2):
            out = net(xs[16 * step % 224:16 * step % 224 + 32], T=T)
            nn.functional.cross_entropy(out.sum(0), ys[16 * step % 224:16 * step % 224 + 32]).backward()
        opt.step()
    net.eval()
    kept = build(beta)
    kept.load_state_dict(quantized_state(net, 8, views))
    kept.eval()
    return kept, xs, net


@pytest.fixture(scope="module", params=["vgg", "resnet"])
def trained(request):
    return request.param, _trained(request.param)


def test_trained_integer_membrane_is_lava_fixed_point_in_every_layer(trained, tmp_path):
    """Graded k / 255 input, beta 0.9, 8-bit QAT: the kept network equals the exported fixed point (numpy and torch
    emulators, and Lava itself on a few samples) spike for spike in every layer; the float membrane does not."""
    import torch
    from esl_deploy.export.lava.convert import convert
    from esl_deploy.export.lava.emulate import emulate
    from esl_deploy.export.lava.fixed import emulate_fixed, quantize, trained_scales
    from esl_deploy.export.nir.write import to_nir
    from esl_deploy.export.simulate import snntorch_spikes
    from esl_deploy.neurons import LIF
    from test_quant_bn import T
    _, (kept, xs, net) = trained
    lifs = [m for m in kept.modules() if isinstance(m, LIF)]
    assert all(m.fixed_scale is not None for m in lifs)
    assert all(m.fixed_scale is None for m in net.modules() if isinstance(m, LIF))  # restored on exit
    x = xs[-48:].numpy()[None].repeat(T, 0)
    graph = to_nir(kept)
    fixed = quantize(convert(graph, synapse="sparse", conv="conv"), groups=1, input_scale=exact_input_scale(x),
                     trained_scales=trained_scales(graph))
    assert fixed.layers[0].fixed.input_scale == 255.0
    for layer in fixed.layers:
        assert layer.fixed.errors["lossless"] == 1.0, layer.neuron.name
        assert layer.fixed.scale == trained_scales(graph)[layer.neuron.name]
    ref = snntorch_spikes(kept, x, torch.float32)
    assert all(r.mean() > 0 for r in ref[:-1]), [float(r.mean()) for r in ref]  # every conv layer spikes
    for fx, tx, r in zip(emulate_fixed(fixed, x), emulate(fixed, x), ref):
        assert np.array_equal(fx, r) and np.array_equal(tx, r)
    # the old behaviour, a float membrane with the same weights, does not agree everywhere
    floating = copy.deepcopy(kept)
    for m in floating.modules():
        if isinstance(m, LIF):
            m.set_fixed_scale(None)
    x_all = xs.numpy()[None].repeat(T, 0)
    floats = snntorch_spikes(floating, x_all, torch.float32)
    assert any(not np.array_equal(fx, r) for fx, r in zip(emulate_fixed(fixed, x_all), floats))
    from esl_deploy.export.lava.run import run
    res = run(fixed, x[:, :3], mode="fixed")
    for got, r in zip(res.spikes, ref):
        assert np.array_equal(got, r[:, :3])


def test_nir_reader_runs_the_integer_membrane(trained, tmp_path):
    """The trained net written to NIR and read back (a GraphNet for the residual net, whose blocks merge conv2 and
    the identity or 1x1 conv shortcut into lif2) runs every LIF on Loihi 2's integer membrane at its recorded
    ``fixed_point_scale``: its spikes, in float64 as esl simulate's reference runs it, equal the trained net's and the
    fixed-point emulator's in every layer, on all 256 inputs (before, the GraphNet's neurons decayed a float
    membrane: residual layers drifted)."""
    import torch
    from esl_deploy.export.lava.convert import convert
    from esl_deploy.export.lava.fixed import emulate_fixed, quantize, trained_scales
    from esl_deploy.export.nir.read import from_nir, read_graph
    from esl_deploy.export.nir.write import write_nir
    from esl_deploy.export.simulate import snntorch_spikes
    from esl_deploy.graphnet import GraphNet, Neuron
    from test_quant_bn import T
    make, (kept, xs, _) = trained
    path = write_nir(kept, tmp_path / "m.nir")
    graph = read_graph(path)
    model = from_nir(graph)
    assert isinstance(model, GraphNet) == (make == "resnet")
    if make == "resnet":
        neurons = [model.module_of(n) for n in model.neuron_names()]
        assert all(m.fixed_point_scale == trained_scales(graph)[n] for n, m in zip(model.neuron_names(), neurons))
    x = xs.numpy()[None].repeat(T, 0)
    fixed = quantize(convert(graph, synapse="sparse", conv="conv"), groups=1, input_scale=exact_input_scale(x),
                     trained_scales=trained_scales(graph))
    read = snntorch_spikes(model, x, torch.float64)
    names = [layer.neuron.name for layer in fixed.layers]
    for name, r, k, fx in zip(names, read, snntorch_spikes(kept, x, torch.float32), emulate_fixed(fixed, x)):
        assert np.array_equal(r, k) and np.array_equal(r, fx), name
    with pytest.raises(ValueError, match="integer membrane"):
        Neuron((2,), beta=0.9, threshold=1.0, alpha=0.5, fixed_point_scale=64.0)


def test_lava_file_of_a_weight_bits_net_is_the_trained_net(trained, tmp_path):
    """``esl export --to lava`` with no data at hand: a ``--weight-bits`` network is written as it trained (one
    8-bit group, every layer at its recorded ``fixed_point_scale``, the pixels as bytes), so the file read
    back runs the trained net's spikes exactly. (Before, the file took two synapse groups and its own scales:
    the integer membrane ran in other units.)"""
    from esl_deploy.export.lava.file import read_lava, write_lava
    from esl_deploy.export.lava.fixed import emulate_fixed, trained_scales
    from esl_deploy.export.nir.write import to_nir
    import torch

    from esl_deploy.export.simulate import snntorch_spikes
    from test_quant_bn import T as TQ

    _, (kept, xs, _) = trained
    graph = to_nir(kept)
    net = read_lava(write_lava(graph, tmp_path / "q8.lava"))
    assert net.layers[0].fixed.input_scale == 255.0
    assert {layer.neuron.name: layer.fixed.scale for layer in net.layers} == trained_scales(graph)
    x = xs[-3:].numpy()[None].repeat(TQ, 0)
    ref = snntorch_spikes(kept, x, torch.float32)
    for layer, got, r in zip(net.layers, emulate_fixed(net, x), ref):
        assert np.array_equal(got, r), layer.neuron.name
