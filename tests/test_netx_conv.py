"""netx export of convolutional networks, checked against lava-dl's own reader and Lava's fixed-point run.

A VGGSNN of width 1/32 on 28x28 input has every case the writer handles: convolutions, 2x2 average
pools folded into the next convolution, a pool that does not tile its 7x7 map (the fold is a matrix
into image-shaped neurons: netx holds it, and every layer after it, as a dense layer), a convolution
after that expanded into its matrix, and the flatten into dense layers. The file is read back by
``lava.lib.dl.netx.hdf5.Network`` (its blocks' weights, shapes and neurons) and run in Lava's
bit-accurate fixed point; every layer must equal :func:`export.lava.fixed.emulate_fixed` spike for spike.
"""
import json

import esl_deploy  # noqa: F401  (installs the lava import hook before any lava import)
import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from esl_deploy.errors import EslError
from esl_deploy.export.lava import convert as lc
from esl_deploy.export.lava import fixed as lf
from esl_deploy.export.lava.netx import (dense_tail, netx_net, read_netx_graph, run_netx, write_netx,
                                         write_netx_file)
from esl_deploy.export.lava.run import INPUT_MESSAGE_BITS
from esl_deploy.export.nir.write import to_nir, write_nir
from esl_deploy.inputs import random_spikes
from esl_deploy.models import ModelSpec, build_model

from helpers import run_cli

T, B = 4, 3
TYPES = ["input"] + ["conv"] * 6 + ["flatten"] + ["dense"] * 3


def spiking_model(name, input_shape, width, gain, seed=0):
    """A random network whose weights are scaled by ``gain`` so that every layer spikes."""
    torch.manual_seed(seed)
    model = build_model(ModelSpec(name=name, input_shape=input_shape, num_classes=10, width=width)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.weight.mul_(gain)
    return model


def image_input(shape, seed=0):
    """Images with pixel values k/16 (exact with 4 fractional input bits), (T, B, *shape)."""
    x = np.random.default_rng(seed).integers(0, 17, size=(B,) + tuple(shape)) / 16.0
    return np.broadcast_to(x, (T,) + x.shape).copy()


@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    graph = to_nir(spiking_model("vggsnn", (1, 28, 28), 1 / 32, gain=6.0))
    path = write_netx(graph, tmp_path_factory.mktemp("netx") / "vgg.h5")
    x = image_input((1, 28, 28))
    net = netx_net(graph)
    return dict(graph=graph, path=path, net=net, x=x, emulated=lf.emulate_fixed(net, x))


def netx_network(path):
    from lava.lib.dl.netx.hdf5 import Network

    return Network(net_config=str(path), input_message_bits=INPUT_MESSAGE_BITS, reset_interval=T, reset_offset=1)


def test_vgg_layout_is_conv_then_a_dense_tail_from_the_pool_that_does_not_tile(vgg):
    net = vgg["net"]
    assert dense_tail(net) == 6  # the 2x2 pool of the 7x7 map folded into the 7th conv is a matrix
    assert [l.synapse.kind for l in net.layers] == ["conv"] * 6 + ["dense"] * 3
    assert [l.neuron.shape for l in net.layers[5:]] == [(16, 7, 7), (16, 3, 3), (16, 3, 3), (10,)]
    with h5py.File(vgg["path"], "r") as f:
        assert [f[f"layer/{i}/type"][0].decode() for i in range(len(f["layer"]))] == TYPES
        assert [tuple(f[f"layer/{i}/shape"][()]) for i in (8, 9, 10)] == [(144,), (144,), (10,)]
        assert f["layer/8/weight"].shape == (144, 16 * 7 * 7)
        assert tuple(f["esl/shapes/7"][()]) == (16, 3, 3)
        assert "nir" in f["esl"]
    # the same quantised network as the conv layout (convolutions expanded from their integer kernels)
    conv = lf.quantize(lc.convert(vgg["graph"], synapse="dense"), groups=1)
    assert [l.fixed.scale for l in conv.layers] == [l.fixed.scale for l in net.layers]
    for got, want in zip(vgg["emulated"], lf.emulate_fixed(conv, vgg["x"])):
        np.testing.assert_array_equal(got, want)
    assert all(s.mean() > 0.01 for s in vgg["emulated"])  # every layer spikes: the comparisons below can fail
    assert read_netx_graph(vgg["path"]).nodes.keys() == vgg["graph"].nodes.keys()


def test_lava_dl_reads_the_weights_shapes_and_neurons_we_wrote(vgg):
    """lava-dl's own reader: conv kernels flipped to Lava's (C_out, kW, kH, C_in), dense matrices in torch
    (C, H, W) column order, the flatten as its transpose of the conv's (W, H, C) output, and each CUBA neuron
    as a LIF with du = 4095, our dv, vth and bias."""
    network = netx_network(vgg["path"])
    blocks = network.layers
    assert [type(b).__name__ for b in blocks] == ["Conv"] * 6 + ["Dense"] * 3
    for block, layer in zip(blocks, vgg["net"].layers):
        f, syn = layer.fixed, layer.synapse
        if syn.kind == "conv":
            assert tuple(block.shape) == layer.neuron.shape[::-1]
            np.testing.assert_array_equal(block.synapse.weight.get(),
                                          np.asarray(f.weight)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))
            assert tuple(block.inp.shape) == syn.in_shape[::-1]
        else:
            assert tuple(block.shape) == (int(np.prod(layer.neuron.shape)),)
            w = block.synapse.weights.get()
            w = w.toarray() if sp.issparse(w) else w
            exp = int(block.synapse.proc_params.get("weight_exp", 0))  # the model shifts the sum by it
            np.testing.assert_array_equal(w.astype(np.int64) * 2.0 ** exp, f.weight.toarray())
            assert tuple(block.inp.shape) == (int(np.prod(syn.in_shape)),)
        neuron = block.neuron
        assert (int(neuron.du.get()), int(neuron.dv.get()), int(neuron.vth.get())) == (4095, f.dv, f.vth)
        assert int(neuron.bias_exp.get()) == 6


def test_vgg_netx_in_lava_equals_the_emulator_spike_for_spike(vgg):
    res = run_netx(vgg["path"], vgg["x"])
    assert res.names == [l.neuron.name for l in vgg["net"].layers]
    for got, want in zip(res.spikes, vgg["emulated"]):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_a_flatten_in_lava_order_is_caught(vgg, tmp_path):
    """Writing the first dense matrix over Lava's (W, H, C) input order instead of torch's (C, H, W), the
    mistake netx's ``transpose([2, 1, 0]).flatten()`` is there to avoid, changes the spikes from that layer on:
    the spike-for-spike comparison above would fail."""
    wrong = tmp_path / "wrong.h5"
    wrong.write_bytes(vgg["path"].read_bytes())
    shape = vgg["net"].layers[6].synapse.in_shape  # (16, 7, 7), read through the flatten
    perm = np.arange(int(np.prod(shape))).reshape(shape).transpose(2, 1, 0).ravel()
    with h5py.File(wrong, "r+") as f:
        w = f["layer/8/weight"][()]
        del f["layer/8/weight"]
        f["layer/8/weight"] = w[:, perm]
    res = run_netx(wrong, vgg["x"])
    for got, want in zip(res.spikes[:6], vgg["emulated"][:6]):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(res.spikes[6], vgg["emulated"][6])


def test_a_convolution_after_the_dense_tail_is_refused_in_one_line(vgg, tmp_path):
    raw = lf.quantize(lc.convert(vgg["graph"], synapse="dense"), groups=1)  # not passed through netx_layers
    with pytest.raises(EslError) as e:
        write_netx_file(raw, tmp_path / "x.h5")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("layer '26' is a convolution after layer '23'")


def test_cli_exports_a_conv_net_and_simulates_the_netx_file_itself(tmp_path, capsys):
    """esl export --to netx, then esl simulate FILE --backend netx: the file runs as written (its graph gives
    the reference), with exactly the agreement of the emulated netx network."""
    model = spiking_model("convnet", (1, 7, 7), 0.25, gain=4.0, seed=1)  # the 7x7 -> 3x3 pool: a dense tail
    src = tmp_path / "conv.nir"
    write_nir(model, src, {"T": T})
    out = tmp_path / "conv.h5"
    code, _, err = run_cli(capsys, "export", src, "--to", "netx", "-o", out)
    assert code == 0, err
    code, stdout, err = run_cli(capsys, "simulate", out, "--backend", "netx", "--random-spikes", "0.3", "-T", T,
                                "--samples", B, "--json", "--no-progress")
    assert code == 0, err
    report = json.loads(stdout)
    x = random_spikes(0.3, T, B, (1, 7, 7), 0)
    from esl_deploy.export.simulate import snntorch_spikes

    graph = read_netx_graph(out)
    net = netx_net(graph)
    assert [l.synapse.kind for l in net.layers] == ["conv", "dense", "dense"]
    want = {l.neuron.name: 100.0 * float(np.mean(a == r)) for l, a, r in
            zip(net.layers, lf.emulate_fixed(net, x), snntorch_spikes(model, x.astype(np.float32)))}
    assert report["layer_agreement"] == pytest.approx(want, abs=1e-9)
    assert set(report["quant_error"]) == set(want)


def test_weight_bits_conv_net_netx_equals_the_trained_net(tmp_path):
    """A VGG-like conv+BN net trained with 8-bit QAT on k / 255 images (its integer membrane at each layer's
    ``fixed_point_scale``), exported to netx with no data at hand (``esl export --to netx``): the file sends the
    pixels as their bytes (input scale 255, read off the first layer's trained grid), every layer is mapped
    lossless at its trained scale, and lava-dl's netx run equals the trained net spike for spike in every layer.
    (Before, the writer chose the input scale 2^6 itself: the first layer was rounded and mapped at another
    scale, and the layers drifted to ~95 %.)"""
    from esl_deploy.export.lava.fixed import trained_scales
    from esl_deploy.export.simulate import snntorch_spikes
    from test_quant_bn import T as TQ
    from test_quant_exact import _trained

    kept, xs, _ = _trained("vgg")
    graph = to_nir(kept)
    path = write_netx(graph, tmp_path / "q8.h5")
    with h5py.File(path, "r") as f:
        assert float(f["esl"].attrs["input_scale"]) == 255.0
        names = [n.decode() for n in f["esl/names"][()]]
        assert all(f["esl/errors"][str(i)].attrs["lossless"] == 1.0 for i in range(1, len(names) + 1))
        scales = dict(zip(names, f["esl/scales"][()]))
    assert scales == trained_scales(graph)
    x = xs[-3:].numpy()[None].repeat(TQ, 0)
    res = run_netx(path, x)
    ref = snntorch_spikes(kept, x, torch.float32)
    assert all(r.mean() > 0 for r in ref[:-1])
    for name, got, r in zip(res.names, res.spikes, ref):
        assert np.array_equal(got, r), name
