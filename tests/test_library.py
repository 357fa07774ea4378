"""The library API on stock snnTorch networks (issue 21): conversion, reset modes end to end, the one
engine behind the API and ``esl train --model module:factory``, and refusals that name the module.

The reference is always the user's snnTorch network itself (``esl_deploy.convert.run_snntorch`` in
float64), never our rebuilt copy."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

import esl_deploy as esl
from esl_deploy.convert import from_snntorch, run_snntorch
from esl_deploy.errors import EslError
from esl_deploy.export.nir.read import load_nir, read_graph
from esl_deploy.export.simulate import simulate_arrays
from esl_deploy.library import _reference_spikes

ESL = [sys.executable, "-m", "esl_deploy.cli"]


class Loop(nn.Module):
    """A plain module with init_hidden=False neurons whose forward loops over x's first dim (T, B, ...)."""

    def __init__(self, make_neuron, conv: bool):
        super().__init__()
        self.conv = conv
        if conv:
            self.c1, self.p1 = nn.Conv2d(1, 4, 3, padding=1), nn.AvgPool2d(2)
            self.fc1 = nn.Linear(4 * 4 * 4, 20)
        else:
            self.fc1 = nn.Linear(64, 20)
        self.lif1 = make_neuron(20)
        self.fc2 = nn.Linear(20, 10)
        self.lif2 = make_neuron(10)
        if conv:
            self.lif0 = make_neuron((4, 8, 8))

    def forward(self, x):
        m0 = self.lif0.reset_mem() if self.conv else None
        m1, m2 = self.lif1.reset_mem(), self.lif2.reset_mem()
        out = []
        for t in range(x.shape[0]):
            h = x[t]
            if self.conv:
                s0, m0 = self.lif0(self.c1(h), m0)
                h = self.p1(s0).flatten(1)
            else:
                h = h.view(h.shape[0], -1)
            s1, m1 = self.lif1(self.fc1(h), m1)
            s2, m2 = self.lif2(self.fc2(s1), m2)
            out.append(s2)
        return torch.stack(out)


def _neuron(reset, delay, tensor_beta, init_hidden, output=False):
    def make(n):
        shape = (n,) if isinstance(n, int) else n
        g = torch.Generator().manual_seed(sum(shape))
        beta = torch.rand(shape, generator=g) * 0.4 + 0.6 if tensor_beta else 0.9
        thr = torch.rand(shape, generator=g) * 0.5 + 0.5 if tensor_beta else 1.0
        return snn.Leaky(beta=beta, threshold=thr, reset_mechanism=reset, reset_delay=delay,
                         init_hidden=init_hidden, output=output, learn_beta=tensor_beta)
    return make


def _sequential(reset, delay, tensor_beta, conv):
    n = _neuron(reset, delay, tensor_beta, True)
    if conv:
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), n((4, 8, 8)), nn.AvgPool2d(2), nn.Flatten(),
                             nn.Linear(64, 20), n(20), nn.Linear(20, 10),
                             _neuron(reset, delay, tensor_beta, True, output=True)(10))
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 20), n(20), nn.Linear(20, 10), n(10))


def _inputs(T=14, N=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, N, 1, 8, 8, generator=g) < 0.45).float() * 1.5


def _scaled(net: nn.Module) -> nn.Module:
    """Larger weights, so that membranes run past 2 thresholds and the reset mode matters."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 1.2)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.3)
    return net


# one case per row covers every reset mode, both delays, init_hidden on and off, scalar and tensor
# beta/threshold, MLP and conv
CASES = [
    ("subtract", True, False, True, False),   # snnTorch's defaults, Sequential MLP
    ("subtract", True, True, False, True),    # defaults, plain module, per-neuron beta, conv
    ("subtract", False, True, True, True),
    ("zero", True, False, False, False),
    ("zero", False, True, True, False),
    ("none", False, False, False, True),
    ("none", True, True, True, False),
]


@pytest.mark.parametrize("reset,delay,tensor_beta,init_hidden,conv", CASES)
def test_stock_network_export_read_lava_float_is_the_snntorch_network(tmp_path, reset, delay, tensor_beta,
                                                                      init_hidden, conv):
    torch.manual_seed(0)
    net = _sequential(reset, delay, tensor_beta, conv) if init_hidden else \
        Loop(_neuron(reset, delay, tensor_beta, False), conv)
    net = _scaled(net)
    x = _inputs()
    sample = x[0] if init_hidden else x
    summary = esl.export_network(net, tmp_path / "net.nir", sample=sample)
    assert summary["format"] == "nir"
    graph = read_graph(tmp_path / "net.nir")
    lifs = [n for n in graph.nodes.values() if type(n).__name__ in ("LIF", "IF")]
    assert {str(n.metadata["reset_mechanism"]) for n in lifs} == {reset}
    model = load_nir(tmp_path / "net.nir")  # our reader, from the file
    ref = _reference_spikes(net, x.numpy())
    assert len(ref) == len(lifs)
    assert sum(int(r.sum()) for r in ref) > 0
    if reset == "subtract":  # membranes above 2 thresholds: subtract and zero would differ
        layers = [m for m in net.modules() if isinstance(m, snn.Leaky)]
        assert any(r.sum() > 0 for r in ref[1:]), "the output layer must spike for the check to mean something"
        del layers
    report = simulate_arrays(model, graph, x.numpy(), None, "lava",
                             reference=("user", lambda a: _reference_spikes(net, a)))
    assert report.layer_agreement and all(v == 100.0 for v in report.layer_agreement.values()), report.layer_agreement
    assert report.identical_outputs == 100.0


def test_the_reset_mode_changes_spikes_on_these_inputs():
    """The cases above would not tell the modes apart if the inputs never drove a membrane past threshold."""
    x = _inputs()
    outs = {}
    for reset in ("subtract", "zero", "none"):
        torch.manual_seed(0)
        net = _scaled(_sequential(reset, True, False, False))
        outs[reset] = run_snntorch(net, x)[0][0]
    assert not torch.equal(outs["subtract"], outs["zero"])
    assert not torch.equal(outs["subtract"], outs["none"])


def test_converted_network_runs_the_snntorch_network_exactly():
    torch.manual_seed(3)
    net = _scaled(_sequential("subtract", True, True, True))
    x = _inputs(T=10, N=5)
    model = from_snntorch(net, x[0])
    layers, out = run_snntorch(net, x)
    assert torch.equal(model(x), out)
    assert [l.reset_mechanism for l in model.layers if hasattr(l, "reset_mechanism")] == ["subtract"] * 3


def test_unsupported_modules_are_named_in_one_line():
    x = _inputs(T=2, N=2)[0]
    with pytest.raises(EslError, match=r"module '2' \(snntorch\.Synaptic\): not supported"):
        from_snntorch(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), snn.Synaptic(alpha=0.9, beta=0.8,
                                                                                 init_hidden=True)), x)
    with pytest.raises(EslError, match=r"module '1' \(MaxPool2d\): not supported"):
        from_snntorch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 10),
                                    snn.Leaky(beta=0.9, init_hidden=True)), x)

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif = nn.Linear(64, 64), snn.Leaky(beta=0.9, init_hidden=True)

        def forward(self, x):
            x = x.flatten(1)
            return self.lif(self.fc(x) + x)

    with pytest.raises(EslError, match=r"cannot trace module 'lif' \(snntorch\.Leaky\)") as e:
        from_snntorch(Residual(), x)
    assert "\n" not in str(e.value)


def test_sparsifier_state_dict_round_trips_and_keeps_density():
    torch.manual_seed(0)
    net = _sequential("subtract", True, False, False)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sp = esl.Sparsifier(net, opt, method="set", density=0.2, total_steps=20, steps_per_epoch=5, seed=4)
    x = _inputs(T=4, N=16)
    for i in range(12):
        snn.utils.reset(net)
        out = torch.stack([net(x[t]) for t in range(x.shape[0])])
        opt.zero_grad()
        out.sum().backward()
        opt.step()
        sp.step(epoch_start=i % 5 == 0)
    assert sp.rewired_total > 0
    assert sp.density() == pytest.approx(0.2, abs=0.01)
    state = sp.state_dict()
    other = esl.Sparsifier(net, opt, method="set", density=0.2, total_steps=20, steps_per_epoch=5, seed=4)
    other.load_state_dict(state)
    assert all(torch.equal(other.masks[n], m) for n, m in sp.masks.items())
    with pytest.raises(ValueError, match="other options"):
        esl.Sparsifier(net, opt, method="esl", density=0.2, total_steps=20).load_state_dict(state)
    with pytest.raises(ValueError, match="not Linear/Conv2d layers"):
        esl.Sparsifier(net, opt, total_steps=20, exclude=["nope"])
    only = esl.Sparsifier(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)), torch.optim.SGD(net.parameters(), lr=0.1),
                          total_steps=10, exclude=["0"])
    assert list(only.masks) == ["1.weight"]


FACTORY = textwrap.dedent("""
    import snntorch as snn
    from torch import nn

    def tutorial():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 48), snn.Leaky(beta=0.95, init_hidden=True),
                             nn.Linear(48, 10), snn.Leaky(beta=0.95, init_hidden=True, output=True))

    def synaptic():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 10), snn.Synaptic(alpha=0.9, beta=0.9, init_hidden=True))
""")


def test_one_engine_api_and_esl_train_give_the_same_masks_and_weights(tmp_path):
    """The user's loop with esl_deploy.Sparsifier and ``esl train --model mynets:tutorial`` (same data, seed
    and options) end with the same masks and weights, bit for bit."""
    (tmp_path / "mynets.py").write_text(FACTORY)
    (tmp_path / "train.py").write_text("raise SystemExit('the user\\'s train.py was imported')\n")
    epochs, T, bs, seed, lr = 2, 4, 64, 3, 0.01
    r = subprocess.run(ESL + ["train", "--model", "mynets:tutorial", "--dataset", "digits", "--epochs", str(epochs),
                              "--T", str(T), "--batch-size", str(bs), "--seed", str(seed), "--lr", str(lr),
                              "--keep-dead-inputs", "--out", "run", "--json"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["model"] == "mynets:tutorial" and summary["rewired_total"] > 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)

    # the user's loop: their network, torch's Adam and DataLoader, two lines of ESL Deploy
    sys.path.insert(0, str(tmp_path))
    try:
        import mynets
    finally:
        sys.path.remove(str(tmp_path))
    from esl_deploy.datasets import load_dataset
    from esl_deploy.train.losses import compute_loss
    from esl_deploy.train.trainer import _seeded  # the trainer's per-epoch shuffling seed

    data = load_dataset("digits", None, T=T)
    torch.manual_seed(seed)
    net = mynets.tutorial()
    opt = torch.optim.Adam(net.parameters(), lr=lr, foreach=True)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=(1e-4 / lr) ** (1 / (epochs - 1)))
    spe = -(-len(data.train) // bs)
    sparsifier = esl.Sparsifier(net, opt, method="esl", density=0.1, total_steps=epochs * spe,  # + line 1
                                steps_per_epoch=spe, seed=seed + 1)
    for epoch in range(epochs):
        net.train()
        loader = torch.utils.data.DataLoader(data.train, batch_size=bs, shuffle=True,
                                             generator=_seeded(seed, epoch, 1))
        for i, (x, y) in enumerate(loader):
            snn.utils.reset(net)
            out = torch.stack([net(x.float())[0] for _ in range(T)])
            loss = compute_loss("ce", out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sparsifier.step(epoch_start=i == 0)                                                     # + line 2
        sched.step()
    masks = state["engine"]["masks"]
    assert set(masks) == set(sparsifier.masks) == {"1.weight", "3.weight"}
    for name in masks:
        assert torch.equal(masks[name], sparsifier.masks[name].cpu()), name
    for name, value in net.state_dict().items():
        if name in state["model"]:
            assert torch.equal(state["model"][name], value), name
    assert sparsifier.density() == pytest.approx(0.1, abs=1e-3)


def test_user_model_run_exports_simulates_and_costs_from_the_command_line(tmp_path):
    (tmp_path / "mynets.py").write_text(FACTORY)
    run = lambda *a: subprocess.run(ESL + list(a), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    r = run("train", "--model", "mynets:tutorial", "--epochs", "1", "--T", "4", "--out", "run")
    assert r.returncode == 0, r.stderr
    r = run("export", "run/checkpoint.pt", "--to", "nir", "-o", "m.nir")
    assert r.returncode == 0, r.stderr
    graph = read_graph(tmp_path / "m.nir")
    assert {str(n.metadata.get("reset_mechanism")) for n in graph.nodes.values()
            if type(n).__name__ == "LIF"} == {"subtract"}
    r = run("simulate", "m.nir", "--backend", "lava", "--limit", "20", "--json")
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)["layer_agreement"].values()) == {100.0}
    r = run("energy", "run/checkpoint.pt", "--hw", "truenorth", "--limit", "20", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["totals"]["cores"] >= 1
    r = run("inspect", "run", "--json")
    assert r.returncode == 0, r.stderr
    # an unsupported neuron trains (it is the user's code) but cannot deploy: one line naming it
    r = run("train", "--model", "mynets:synaptic", "--epochs", "1", "--T", "2", "--out", "syn")
    assert r.returncode == 0, r.stderr
    r = run("export", "syn/checkpoint.pt", "--to", "nir", "-o", "s.nir")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "snntorch.Synaptic" in r.stderr
    r = run("train", "--model", "mynets:nothing", "--epochs", "1", "--out", "x")
    assert r.returncode == 2 and "has no function 'nothing'" in r.stderr and r.stderr.strip().count("\n") == 0


DDP_SCRIPT = textwrap.dedent("""
    import os, sys
    import snntorch as snn
    import torch
    import torch.distributed as dist
    from torch import nn
    import esl_deploy as esl

    class Net(nn.Module):  # a plain module whose forward loops over time (one DDP call per step)
        def __init__(self):
            super().__init__()
            self.fc1, self.lif1 = nn.Linear(20, 32), snn.Leaky(beta=0.9)
            self.fc2, self.lif2 = nn.Linear(32, 5), snn.Leaky(beta=0.9)

        def forward(self, x):
            m1, m2, out = self.lif1.reset_mem(), self.lif2.reset_mem(), []
            for t in range(x.shape[0]):
                s1, m1 = self.lif1(self.fc1(x[t]), m1)
                s2, m2 = self.lif2(self.fc2(s1), m2)
                out.append(m2)
            return torch.stack(out)

    distributed = "RANK" in os.environ
    if distributed:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    torch.manual_seed(0)
    net = Net()
    model = nn.parallel.DistributedDataParallel(net) if distributed else net
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    sparsifier = esl.Sparsifier(model, opt, method="rigl", density=0.3, total_steps=12, t_iter=2, seed=7)
    g = torch.Generator().manual_seed(1)
    for step in range(12):
        x = torch.rand(6, 8, 20, generator=g) * 2
        y = torch.randint(0, 5, (8,), generator=g)
        rows = slice(rank * 8 // world, (rank + 1) * 8 // world)
        loss = nn.functional.cross_entropy(model(x[:, rows]).sum(0), y[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sparsifier.step()
    torch.save({"masks": sparsifier.masks, "weights": net.state_dict(), "rewired": sparsifier.rewired_total,
                "distributed": sparsifier.distributed}, sys.argv[1] + f".{rank}")
""")


def test_sparsifier_under_ddp_matches_one_process(tmp_path):
    """Two gloo processes (torchrun) each train half of every batch under DDP with RigL, whose regrowth reads
    the gradient: both end with the masks of one process training the whole batches, and the same weights
    (to float rounding of the all-reduce)."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(script), str(tmp_path / "ddp")], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "one")], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    ranks = [torch.load(tmp_path / f"ddp.{i}", weights_only=True) for i in (0, 1)]
    one = torch.load(tmp_path / "one.0", weights_only=True)
    assert ranks[0]["distributed"] and ranks[1]["distributed"] and not one["distributed"]
    assert one["rewired"] > 0 and ranks[0]["rewired"] == one["rewired"]
    for name, mask in one["masks"].items():
        assert torch.equal(ranks[0]["masks"][name], mask) and torch.equal(ranks[1]["masks"][name], mask), name
    for name, w in one["weights"].items():
        assert torch.equal(ranks[0]["weights"][name], ranks[1]["weights"][name]), name
        assert torch.allclose(ranks[0]["weights"][name], w, atol=1e-5), name
        if name in one["masks"]:
            assert torch.equal(ranks[0]["weights"][name] != 0, (w != 0)), name


MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.mark.skipif(not (MNIST / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"real MNIST idx files not found in {MNIST}")
def test_tutorial_own_snntorch_model_runs(tmp_path):
    """docs/tutorials/own_snntorch_model.py end to end on a slice of MNIST: train (two added lines), export,
    Lava float equal to the snnTorch network, fixed point and netx answered, energy report."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "tutorials"))
    try:
        import own_snntorch_model as tutorial
    finally:
        sys.path.pop(0)
    text = Path(tutorial.__file__).read_text()
    assert text.count("# + ESL Deploy") == 2  # the lines the tutorial adds to snnTorch's loop
    r = tutorial.main(["--data-dir", str(MNIST), "--epochs", "1", "--limit-train", "1280", "--limit-test", "100",
                       "--lava-limit", "20", "--steps", "8", "--out", str(tmp_path)])
    assert r["rewired"] > 0 and 0.09 <= r["density"] <= 0.1
    assert set(r["simulate"]["lava"]["layer_agreement"].values()) == {100.0}
    assert r["simulate"]["lava"]["reference"].startswith("Sequential")
    assert "netx cannot express" in r["simulate"]["netx"]["refused"]
    assert r["simulate"]["lava-fixed"]["samples"] == 20
    assert r["energy"]["samples"] == 100 and r["energy"]["totals"]["cores"] >= 1
    assert (tmp_path / "net.nir").is_file()
