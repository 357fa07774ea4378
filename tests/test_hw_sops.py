"""Synaptic operations counted from activity: hand-computed Linear and Conv cases, AC vs MAC, rates."""
import pytest
import torch
from torch import nn

from esl_deploy.models import ModelSpec, SpikingNet
from esl_deploy.neurons import LIF
from esl_deploy.hw_models.sops import (ActivityCounter, ActivityReport, NeuronActivity, SynapseActivity, conv2d_fanout, count_activity,
                            dense_ann_flops, dense_macs, is_binary, linear_fanout, synaptic_ops)
from esl_deploy.hw_models.unroll import unroll_conv2d

W23 = torch.tensor([[1.0, 0.0, 2.0],
                    [0.0, 0.0, 3.0]])  # 2 outputs x 3 inputs; fan-out per input = [1, 0, 2]


def _net(layers, input_shape, classes):
    return SpikingNet(layers, ModelSpec("mlp", input_shape, classes))


def _linear(w, bias=False):
    lin = nn.Linear(w.shape[1], w.shape[0], bias=bias)
    with torch.no_grad():
        lin.weight.copy_(w)
        if bias:
            lin.bias.zero_()
    return lin


def _conv3x3(center: bool = True):
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        if not center:
            conv.weight[0, 0, 1, 1] = 0.0
    return conv


def test_linear_fanout_and_ops_by_hand():
    assert linear_fanout(W23).tolist() == [1.0, 0.0, 2.0]
    x = torch.tensor([[[1.0, 1.0, 0.0]],   # t=0: inputs 0, 1 spike -> 1 + 0
                      [[1.0, 0.0, 1.0]]])  # t=1: inputs 0, 2 spike -> 1 + 2
    assert synaptic_ops(x, linear_fanout(W23)).tolist() == [1.0, 3.0]


def test_conv_fanout_with_padding_by_hand():
    # 3x3 kernel, padding 1, 3x3 input: a pixel feeds every output whose window holds it.
    # corner 4, edge 6, centre 9 (dense); zeroing the centre tap removes exactly one use per pixel.
    dense = conv2d_fanout(_conv3x3(), (1, 3, 3))[0]
    assert dense.tolist() == [[4, 6, 4], [6, 9, 6], [4, 6, 4]]
    holed = conv2d_fanout(_conv3x3(center=False), (1, 3, 3))[0]
    assert holed.tolist() == [[3, 5, 3], [5, 8, 5], [3, 5, 3]]
    x = torch.zeros(2, 1, 1, 3, 3)
    x[0, 0, 0, 1, 1] = 1                   # t=0: centre
    x[1, 0, 0, 1, 1] = x[1, 0, 0, 0, 0] = 1  # t=1: centre + corner
    assert synaptic_ops(x, dense.unsqueeze(0)).tolist() == [9.0, 13.0]
    assert synaptic_ops(x, holed.unsqueeze(0)).tolist() == [8.0, 11.0]


def test_conv_fanout_stride_two_by_hand():
    # 4x4 input, 3x3 kernel, stride 2, padding 1 -> 2x2 outputs reading rows/cols {-1,0,1} and {1,2,3}.
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    f = conv2d_fanout(conv, (1, 4, 4))[0]
    assert f[0, 0] == 1 and f[1, 1] == 4 and f[0, 1] == 2 and f[3, 3] == 1


@pytest.mark.parametrize("kw", [dict(stride=1, padding=1), dict(stride=2, padding=0, dilation=2),
                                dict(stride=1, padding="same", groups=2)])
def test_conv_fanout_agrees_with_unrolled_matrix(kw):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, bias=False, **kw)
    with torch.no_grad():
        conv.weight.mul_(torch.rand(conv.weight.shape) < 0.4)
    out_hw = conv(torch.zeros(1, 4, 7, 7)).shape[2:]
    m = unroll_conv2d(conv, (4, 7, 7), out_hw)
    cols = torch.tensor(m.sum(0).A1, dtype=torch.float64)
    assert torch.equal(conv2d_fanout(conv, (4, 7, 7)).reshape(-1), cols)


def test_dense_macs_by_hand():
    assert dense_macs(nn.Linear(3, 2), (3,), (2,)) == 6
    assert dense_macs(_conv3x3(), (1, 3, 3), (1, 3, 3)) == 81  # 9 positions x 9 taps (padding included)
    grouped = nn.Conv2d(2, 4, 3, groups=2)
    assert dense_macs(grouped, (2, 7, 7), (4, 5, 5)) == 4 * 25 * 1 * 9
    net = _net([nn.Flatten(), nn.Linear(9, 5), LIF((5,)), nn.Linear(5, 2), LIF((2,))], (1, 3, 3), 2)
    assert dense_ann_flops(net, (1, 3, 3)) == {"layers.1": 2 * 45, "layers.3": 2 * 10}


def test_is_binary():
    assert is_binary(torch.tensor([0.0, 1.0, -1.0]))
    assert not is_binary(torch.tensor([0.0, 0.5]))
    assert not is_binary(torch.tensor([2.0]))


def test_count_activity_linear_ac_vs_mac_per_sample():
    net = _net([_linear(W23), LIF((2,))], (3,), 2)
    x = torch.tensor([[1.0, 0.0, 1.0],    # binary: per step 1 + 2 = 3 ACs, T=2 -> 6
                      [0.5, 0.2, 0.0]])   # analog: per step 1 + 0 = 1 MAC, T=2 -> 2
    r = count_activity(net, x, T=2, encoding="direct", batch_size=1)
    layer = r.layer("layers.0")
    assert r.samples == 2
    assert layer.acs == pytest.approx(6 / 2) and layer.macs == pytest.approx(2 / 2)
    assert layer.ops_per_step == pytest.approx((2.0, 2.0))
    assert layer.op_kind == "mixed"
    assert layer.synapses == 3 and layer.weights == 6 and layer.dense_macs == 6
    assert layer.input_rate == pytest.approx(8 / 12)  # nonzero inputs: (2 + 2) per step x 2 steps / 12 elements
    # the same two samples in one batch: the batch is not binary, so everything counts as MACs
    both = count_activity(net, x, T=2, encoding="direct", batch_size=2).layer("layers.0")
    assert both.acs == 0 and both.macs == pytest.approx(8 / 2)


def test_count_activity_temporal_spikes_and_firing_rate():
    # weight 2 > threshold 1 and beta 0: the LIF neuron spikes exactly when its input spikes
    net = _net([_linear(torch.tensor([[2.0]])), LIF((1,), beta=0.0, threshold=1.0)], (1,), 2)
    frames = torch.tensor([[[1.0], [0.0], [1.0], [1.0]]])  # (B=1, T=4, 1)
    r = count_activity(net, frames, T=4, encoding="direct", temporal=True)
    assert r.layer("layers.0").ops_per_step == (1.0, 0.0, 1.0, 1.0)
    assert r.layer("layers.0").acs == 3 and r.layer("layers.0").input_rate == pytest.approx(0.75)
    (lif,) = r.neurons
    assert lif.spikes == 3 and lif.rate == pytest.approx(0.75)
    assert r.neuron_updates == 4 and r.active_updates == 3


def test_count_activity_conv_by_hand():
    net = _net([_conv3x3(center=False), LIF((1, 3, 3))], (1, 3, 3), 2)
    frames = torch.zeros(1, 2, 1, 3, 3)
    frames[0, 0, 0, 1, 1] = 1
    frames[0, 1, 0, 1, 1] = frames[0, 1, 0, 0, 0] = 1
    r = count_activity(net, frames, T=2, encoding="direct", temporal=True)
    assert r.layer("layers.0").ops_per_step == (8.0, 11.0)
    assert r.layer("layers.0").acs == 19 and r.layer("layers.0").macs == 0


def test_layer_after_average_pooling_counts_macs():
    lin = _linear(torch.ones(1, 1))
    net = _net([nn.AvgPool2d(2), nn.Flatten(), lin, LIF((1,))], (1, 2, 2), 2)
    half = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])  # binary spikes, pooled to 0.5
    r = count_activity(net, half, T=3, encoding="direct")
    assert r.layer("layers.2").macs == 3 and r.layer("layers.2").acs == 0


def test_rate_encoding_makes_the_first_layer_accumulate():
    torch.manual_seed(0)
    net = _net([nn.Flatten(), nn.Linear(4, 3), LIF((3,))], (1, 2, 2), 3)
    x = torch.rand(5, 1, 2, 2)
    direct = count_activity(net, x, T=4, encoding="direct").layers[0]
    rate = count_activity(net, x, T=4, encoding="rate", seed=1).layers[0]
    assert direct.op_kind == "MAC" and rate.op_kind == "AC"
    assert direct.ops == pytest.approx(4 * 4 * 3)  # every analog input nonzero: 4 inputs x 3 synapses x T


def test_accuracy_and_limit():
    net = _net([_linear(torch.tensor([[2.0], [0.0]])), LIF((2,), beta=0.0)], (1,), 2)
    x, y = torch.ones(6, 1), torch.tensor([0, 0, 0, 1, 1, 1])
    r = count_activity(net, (x, y), T=2, encoding="direct", limit=4)
    assert r.samples == 4 and r.accuracy == pytest.approx(3 / 4)


def test_activity_report_round_trip_and_validation():
    layer = SynapseActivity(name="l", kind="linear", in_shape=(3,), out_shape=(2,), synapses=3, weights=6,
                            acs=4.0, macs=0.0, ops_per_step=(1.0, 3.0), input_rate=0.5, dense_macs=6)
    r = ActivityReport(samples=2, T=2, encoding="rate", layers=(layer,),
                       neurons=(NeuronActivity("n", neurons=2, spikes=1.0, rate=0.25),), accuracy=0.5)
    assert ActivityReport.from_dict(r.to_dict()) == r
    assert r.ann_flops == 12 and r.sops == 4
    with pytest.raises(ValueError):
        SynapseActivity(name="l", kind="linear", in_shape=(3,), out_shape=(2,), synapses=3, weights=6,
                        acs=4.0, macs=0.0, ops_per_step=(1.0, 1.0), input_rate=0.5, dense_macs=6)
    with pytest.raises(ValueError):
        ActivityReport(samples=2, T=3, encoding="rate", layers=(layer,))
    with pytest.raises(ValueError):
        NeuronActivity("n", neurons=2, spikes=1.0, rate=1.5)


def test_counter_fed_from_trace_records_matches_the_hooked_run():
    # another runner (e.g. a Lava simulation) hands over (name, layer, input, output) records per batch
    torch.manual_seed(0)
    net = _net([nn.Flatten(), nn.Linear(9, 6), LIF((6,), threshold=0.3), nn.Linear(6, 3), LIF((3,))], (1, 3, 3), 3)
    x = torch.rand(4, 1, 3, 3)
    counter = ActivityCounter(T=3, encoding="rate")
    frames = (torch.rand(3, 4, 1, 3, 3) < x).float()
    for name, layer, inp, out in net.trace(frames):
        counter.add(f"layers.{name}", layer, inp, out)
    counter.add_samples(4)
    traced = counter.report()
    hooked = count_activity(net, frames.transpose(0, 1), T=3, encoding="rate", temporal=True)
    assert traced.layers == hooked.layers and traced.neurons == hooked.neurons
    assert traced.layers[1].acs > 0  # the hidden layer did receive spikes
    with pytest.raises(ValueError):
        counter.add("layers.1", net.layers[1], frames[:2].flatten(2), frames[:2].flatten(2))
