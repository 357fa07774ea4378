"""8-bit QAT through BatchNorm (train.quant): conv+BN layers and a residual block's merged input train on the
grid Loihi 2 realises; exported (NIR -> Lava fixed point), their integers are the trained grid values and
the fixed-point spikes are the trained network's."""
import numpy as np
import pytest
import torch
from torch import nn

from esl_deploy.datasets import load_dataset
from esl_deploy.export.lava.convert import convert
from esl_deploy.export.lava.fixed import emulate_fixed, quantize, trained_scales
from esl_deploy.export.nir.write import fold_batchnorm as export_fold, to_nir
from esl_deploy.export.simulate import load_network, snntorch_spikes
from esl_deploy.models import BN_EPS, BasicBlock, ModelSpec, SpikingNet
from esl_deploy.neurons import LIF
from esl_deploy.train import quant
from esl_deploy.train.config import TrainConfig
from esl_deploy.train.masking import SparsityConfig
from esl_deploy.train.quant import (LoihiView, exporter_input_scale, fold_batchnorm, hardware_beta,
                                    loihi_quantize_group, loihi_views, quantized_state, quantized_weights)
from esl_deploy.train.trainer import train

T = 4


def _vgg(beta: float) -> SpikingNet:
    """VGG-like: conv+BN reading the graded input, conv+BN, pool, conv+BN, pool, Linear."""
    def bn(c):
        return nn.BatchNorm2d(c, eps=BN_EPS)
    layers = [nn.Conv2d(1, 6, 3, 1, 1, bias=False), bn(6), LIF((6, 8, 8), beta=beta),
              nn.Conv2d(6, 8, 3, 1, 1, bias=False), bn(8), LIF((8, 8, 8), beta=beta), nn.AvgPool2d(2),
              nn.Conv2d(8, 8, 3, 1, 1, bias=False), bn(8), LIF((8, 4, 4), beta=beta), nn.AvgPool2d(2),
              nn.Flatten(), nn.Linear(32, 10), LIF((10,), beta=beta)]
    return SpikingNet(layers, ModelSpec("convnet", (1, 8, 8), 10, beta=beta))


def _res(beta: float) -> SpikingNet:
    """ResNet-like: conv+BN, a block with an identity shortcut, one with a 1x1 conv+BN shortcut, global pool."""
    layers = [nn.Conv2d(1, 6, 3, 1, 1, bias=False), nn.BatchNorm2d(6, eps=BN_EPS), LIF((6, 8, 8), beta=beta),
              BasicBlock(6, 6, 1, (8, 8), beta, 1.0), BasicBlock(6, 8, 2, (8, 8), beta, 1.0),
              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10), LIF((10,), beta=beta)]
    return SpikingNet(layers, ModelSpec("convnet", (1, 8, 8), 10, beta=beta))


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits", None, T=T)
    xs = torch.stack([data.train[i][0] for i in range(448)])
    ys = torch.tensor([int(data.train[i][1]) for i in range(448)])
    return xs, ys


def _trained(make, beta, digits, *, fold: bool = True, steps: int = 12, frac_bits=4):
    """``make(beta)`` trained ``steps`` Adam steps with --weight-bits 8 on digits (BatchNorm statistics frozen for
    the second half); ``fold=False`` trains the old way (grid before BatchNorm). Returns (model, views, kept)."""
    torch.manual_seed(0)
    net = make(beta)
    with torch.no_grad():  # livelier than the default (gamma 1, beta 0) after so few steps: every layer spikes
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(2.0)
                m.bias.fill_(0.3)
        net.layers[0].weight[:, :, 0, 0] = 0  # a mask: zeros must stay zeros
    views = loihi_views(net, input_frac_bits=frac_bits)
    if not fold:
        views = {k: v for k, v in views.items() if v.batchnorm is None}
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    xs, ys = digits
    net.train()
    for step in range(steps):
        opt.zero_grad()
        with quantized_weights(net, 8, views, bn_frozen=step >= steps // 2):
            out = net(xs[32 * step:32 * (step + 1)], T=T)
            nn.functional.cross_entropy(out.sum(0), ys[32 * step:32 * (step + 1)]).backward()
        opt.step()
        with torch.no_grad():
            net.layers[0].weight[:, :, 0, 0] = 0
    net.eval()
    kept = make(beta)
    kept.load_state_dict(quantized_state(net, 8, views))
    return net, views, kept.eval()


def _fixed(model, frac_bits=4):
    graph = to_nir(model)
    return quantize(convert(graph, synapse="dense", conv="conv"), groups=1, input_frac_bits=frac_bits,
                    trained_scales=trained_scales(graph))


def test_fold_is_the_exporters_and_keeps_zeros():
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(3, 5, 3, bias=False), nn.BatchNorm2d(5, eps=BN_EPS)
    with torch.no_grad():
        conv.weight[0] = 0
        bn.weight.uniform_(-2, 2), bn.bias.uniform_(-1, 1), bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.1, 3)
    w, b, s = fold_batchnorm(conv.weight, bn)
    w_ref, b_ref = export_fold(conv, bn)
    assert np.allclose(w.detach().numpy(), w_ref, rtol=1e-6) and np.allclose(b.detach().numpy(), b_ref, atol=1e-6)
    assert torch.equal(w[0], torch.zeros_like(w[0]))
    assert torch.allclose(s, bn.weight / torch.sqrt(bn.running_var + BN_EPS))


def test_residual_merge_shares_one_grid():
    # lif2 = conv2 (largest weight 0.3) + identity (weight 1): one grid from the identity's 1, 2 * 127 / 1 -> v0 = 128
    w2, b = torch.tensor([[0.3, -0.1], [0.0, 0.2]]), torch.tensor([0.013, -0.3])
    (wq,), bq = loihi_quantize_group([w2], b, LoihiView(1.0, batchnorm="bn2", identity=True), 8, identity=True)
    assert torch.equal(wq, torch.round(w2 * 64) / 64) and torch.equal(bq, torch.round(b * 128) / 128)
    # without the identity the same weights alone get the finer grid 2 / 512 (2 * 127 / 0.3 = 846 -> 512)
    (alone,), _ = loihi_quantize_group([w2], b, LoihiView(1.0), 8)
    assert torch.equal(alone, torch.round(w2 * 256) / 256)
    # a projection shortcut: both weights on the grid of the larger (1.5: 2 * 127 / 1.5 = 169 -> v0 = 128)
    ws = torch.tensor([[1.5], [-0.7]])
    (q2, qs), _ = loihi_quantize_group([w2, ws], b, LoihiView(1.0), 8)
    assert torch.equal(q2, torch.round(w2 * 64) / 64) and torch.equal(qs, torch.round(ws * 64) / 64)
    with pytest.raises(ValueError):
        LoihiView(1.0, shortcut=("a", "b"))  # a shortcut belongs to a conv with its BatchNorm


def test_views_fold_batchnorm_and_merge_the_shortcut():
    views = loihi_views(_res(1.0), input_frac_bits=4)
    assert list(views) == ["layers.0", "layers.3.conv1", "layers.3.conv2", "layers.4.conv1", "layers.4.conv2",
                           "layers.7"]
    assert views["layers.0"].batchnorm == "layers.1" and views["layers.0"].input_scale == 16.0
    assert views["layers.3.conv2"].identity and views["layers.3.conv2"].shortcut is None
    assert views["layers.4.conv2"].shortcut == ("layers.4.shortcut.0", "layers.4.shortcut.1")
    assert views["layers.7"].gain == 1 / 16  # the global average pool over 4 x 4 folds into the Linear
    assert [v.gain for v in loihi_views(_vgg(1.0), input_frac_bits=4).values()] == [1.0, 1.0, 0.25, 0.25]


@pytest.mark.parametrize("make", [_vgg, _res], ids=["vgg", "resnet"])
@pytest.mark.parametrize("beta", [1.0, hardware_beta(0.9)], ids=["IF", "beta0.9"])
def test_bn_folded_training_exports_lossless_and_spike_exact(make, beta, digits):
    net, views, kept = _trained(make, beta, digits)
    x = digits[0][-64:].numpy()[None].repeat(T, 0)
    with torch.no_grad(), quantized_weights(net, 8, views):
        during = net(torch.from_numpy(x))
    assert torch.equal(during, kept(torch.from_numpy(x)))  # the kept state is the network validation ran
    for m in kept.modules():  # every BatchNorm is the exact identity plus its (folded) bias
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and not m.running_mean.any()
            assert torch.equal(m.running_var.double() + m.eps, torch.ones_like(m.running_var).double())
    graph = to_nir(kept)
    fixed = _fixed(kept)
    for layer in fixed.layers:
        e, f = layer.fixed.errors, layer.fixed
        assert e["lossless"] == 1.0 and e["weight_rel"] == 0.0 and e["bias_abs"] == 0.0, (layer.neuron.name, e)
        # the integers are the trained grid values times the scale (per unit of input), exactly
        w = layer.synapse.weight
        w = w.toarray() if hasattr(w, "toarray") else np.asarray(w)
        w_int = f.weight.toarray() if hasattr(f.weight, "toarray") else np.asarray(f.weight)
        assert np.array_equal(w_int, w * f.scale / f.input_scale), layer.neuron.name
    for name, conv in kept.named_modules():  # ... and those are the kept state's conv weights, unchanged by the fold
        if isinstance(conv, nn.Conv2d):
            node = name[len("layers."):].replace(".shortcut.0", ".shortcut")
            assert np.array_equal(graph.nodes[node].weight, conv.weight.detach().numpy()), name
    assert not kept.layers[0].weight[:, :, 0, 0].any()  # the mask is kept: gamma only scales
    spikes = emulate_fixed(fixed, x)
    ref64, ref32 = snntorch_spikes(kept, x), snntorch_spikes(kept, x, torch.float32)
    # every conv layer spikes (after 12 steps the 10 output neurons may still be silent)
    assert len(spikes) == len(ref64) and all(r.mean() > 0 for r in ref64[:-1]), [r.mean() for r in ref64]
    for fx, r64, r32 in zip(spikes, ref64, ref32):
        assert np.array_equal(r64, r32)
        # all integers, the same arithmetic: the trained LIF truncates the decayed membrane as Lava does
        # (esl_deploy.neurons.FixedPointLIF, at the scale the exporter takes from the NIR metadata)
        assert np.array_equal(fx, r64)


def test_without_folding_the_grid_is_lost_at_batchnorm(digits):
    _, _, kept = _trained(_vgg, 1.0, digits, fold=False)
    fixed = _fixed(kept)
    errors = [layer.fixed.errors for layer in fixed.layers]
    assert [e["lossless"] for e in errors] == [0.0, 0.0, 0.0, 1.0]  # only the Linear after the last BatchNorm
    assert min(e["weight_rel"] for e in errors[:3]) > 1e-4
    x = digits[0][-64:].numpy()[None].repeat(T, 0)
    assert any(not np.array_equal(fx, ref) for fx, ref in zip(emulate_fixed(fixed, x), snntorch_spikes(kept, x)))


def test_resnet19_trained_with_8_bits_exports_lossless(tmp_path):
    cfg = TrainConfig(model="resnet19", width=0.05, T=2, epochs=1, batch_size=200, weight_bits=8, beta=1.0,
                      sparsity=SparsityConfig(method="esl", density=0.5))
    train(cfg, tmp_path / "run", progress=False)
    model, graph = load_network(tmp_path / "run" / "checkpoint.pt")
    fixed = quantize(convert(graph, synapse="dense", conv="conv"), groups=1, input_frac_bits=4)
    errors = fixed.quant_errors()
    assert len(errors) == 19 and all(e["lossless"] == 1.0 for e in errors.values()), errors
    x = np.random.default_rng(0).integers(0, 17, size=(2, 32, 1, 8, 8)) / 16.0
    for fx, ref in zip(emulate_fixed(fixed, x), snntorch_spikes(model, x)):
        assert np.array_equal(fx, ref)



def _lossless_single_layer(seed: int) -> bool:
    """A random Linear layer into LIF neurons trained for graded input in [0, 1] with no exact bits: is its export
    (the exporter picking the input's bits, as for MNIST) lossless?"""
    g = torch.Generator().manual_seed(seed)

    def make():
        return SpikingNet([nn.Linear(30, 5), LIF((5,))], ModelSpec("mlp", (30,), 5))
    net = make()
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.rand(5, 30, generator=g) * 2 * float(torch.rand(1, generator=g)) - 0.3 * (seed % 2))
        net.layers[0].bias.copy_(torch.randn(5, generator=g) * 2 * float(torch.rand(1, generator=g)))
    views = loihi_views(net, input_frac_bits=None)
    kept = make()
    kept.load_state_dict(quantized_state(net, 8, views))
    fixed = _fixed(kept.eval(), frac_bits=None)
    return fixed.layers[0].fixed.errors["lossless"] == 1.0


def test_input_without_exact_bits_trains_on_the_grid_the_exporter_chooses(digits, monkeypatch):
    # MNIST's k / 255 has no exact 2^m: the exporter picks the input's m from the weights (export.lava.fixed),
    # and the first layer trains on a grid that fits at the m it will pick
    assert all(_lossless_single_layer(seed) for seed in range(16))
    _, views, kept = _trained(_vgg, 1.0, digits, frac_bits=None)
    assert views["layers.0"].input_scale is None
    fixed = _fixed(kept, frac_bits=None)
    folded = kept.layers[0].weight.detach(), kept.layers[1].bias.detach()
    assert fixed.layers[0].fixed.input_scale == exporter_input_scale(*folded, views["layers.0"])
    assert all(layer.fixed.errors["lossless"] == 1.0 for layer in fixed.layers)
    # the grid of the largest weight alone (the exporter's choice ignored) is lost for some of those layers
    monkeypatch.setattr(quant, "_steps_for_chosen_input_scale", lambda w, b, view, bits, v0: v0)
    assert not all(_lossless_single_layer(seed) for seed in range(16))
