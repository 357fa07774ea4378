"""Graphs written by other tools, and of the NIR paper's kinds, in our reader, in Lava and on the cost model,
against the writer's own simulation. (The README's NIR compatibility table.)

    .venv/bin/python benchmarks/nir_compat.py [--results results] [--T 20] [--samples 16] [--json]

Each row is a small network built in a tool and written by that tool's NIR exporter (snnTorch 1.0.0
``export_to_nir``, Norse 1.1.0 ``norse.torch.to_nir``, Sinabs 2.0.3 ``sinabs.to_nir``), or built by hand with
the ``nir`` package in the form of the NIR paper's CNN (Sinabs-style strided conv, IF, SumPool) and RNN
(snnTorch-style recurrent CubaLIF, the recurrence a nested graph). Weights come from each tool's own
initialisation (seeded) times a gain that makes every layer spike. Inputs: ``--samples`` trains of ``--T``
Bernoulli spikes (p = 0.3, seed 0) of the graph's input shape.

Columns, for the in-memory graph the exporter returned:
- **nir file**: ``nir.write`` then ``nir.read`` (type checked) succeed, or the error (some exporters write
  0-d parameters or ``input_shape = None``, which the ``nir`` package cannot store);
- **writer's run**: the graph loaded as its writer's users do (:mod:`export.nir.readers`: snnTorch
  ``import_from_nir``, Norse ``from_nir(graph, dt=1e-3)``, Sinabs ``from_nir``) and run: its output spikes
  (steps with more than one spike: Sinabs' multi-spike neuron);
- **ours**: ``from_nir(graph, writer=TOOL)`` (:mod:`export.nir.conventions`; the tool's conventions), float64,
  or the one line it refuses the graph with;
- **Lava float / Lava fixed**: :func:`export.lava.convert.convert` with the same conventions, run by
  :func:`export.lava.run.run` (``floating_pt``; ``fixed_pt`` after :func:`export.lava.fixed.quantize`, two
  8-bit synapse groups, integer input); each agreement is the share of equal (step, sample, output neuron)
  entries against the writer's run;
- **energy**: :func:`hw_models.report.energy_report` on the same inputs: SOPs per sample and TrueNorth cores.

Writes ``nir_compat.{md,json}`` into ``--results``.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import nir  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from esl_deploy.export.lava.convert import convert  # noqa: E402
from esl_deploy.export.lava.fixed import quantize  # noqa: E402
from esl_deploy.export.lava.run import import_lava, run  # noqa: E402
from esl_deploy.export.nir.conventions import DIFFERENCES  # noqa: E402
from esl_deploy.export.nir.read import from_nir  # noqa: E402
from esl_deploy.export.nir.readers import RUNNERS  # noqa: E402
from esl_deploy.export.simulate import snntorch_run  # noqa: E402

NAME = "nir_compat"


@contextlib.contextmanager
def quiet():
    """The exporters and readers print and log at every call."""
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(level)


def _gain(net: torch.nn.Module, gain: float) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.weight.mul_(gain)


def _snntorch_runner(net: torch.nn.Module):
    """The exported snnTorch network itself, one step per call (its hidden state reset first)."""
    import snntorch as snn

    def run(x: np.ndarray) -> np.ndarray:
        snn.utils.reset(net)
        with torch.no_grad():
            return np.stack([net(torch.from_numpy(x[t])).numpy() for t in range(x.shape[0])])
    return run


def snntorch_graphs():
    """snnTorch networks whose neurons NIR's LIF/CubaLIF express (reset to zero at once: snnTorch's export
    writes no reset, so a subtract-reset network would not be the graph it writes)."""
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    zero = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)

    def leaky(n, beta):
        return snn.Leaky(beta=torch.full(n, beta), threshold=torch.ones(n), **zero)

    def synaptic(n, alpha, beta):
        return snn.Synaptic(alpha=torch.full(n, alpha), beta=torch.full(n, beta), threshold=torch.ones(n), **zero)

    torch.manual_seed(0)
    out = []
    net = torch.nn.Sequential(torch.nn.Linear(20, 16), leaky((16,), 0.9), torch.nn.Linear(16, 4), leaky((4,), 0.8))
    _gain(net, 3.0)
    out.append(("snnTorch Leaky MLP", export_to_nir(net, torch.zeros(1, 20), ignore_dims=[0]), (20,), net))
    net = torch.nn.Sequential(torch.nn.Linear(20, 16), synaptic((16,), 0.5, 0.9), torch.nn.Linear(16, 4),
                              synaptic((4,), 0.6, 0.8))
    _gain(net, 2.0)
    out.append(("snnTorch Synaptic MLP (CubaLIF)", export_to_nir(net, torch.zeros(1, 20), ignore_dims=[0]), (20,), net))
    net = torch.nn.Sequential(torch.nn.Linear(20, 16), snn.RLeaky(beta=torch.full((16,), 0.9), linear_features=16,
                                                                  threshold=torch.ones(16), **zero),
                              torch.nn.Linear(16, 4), leaky((4,), 0.8))
    _gain(net, 3.0)
    out.append(("snnTorch RLeaky (recurrent)", export_to_nir(net, torch.zeros(1, 20), ignore_dims=[0]), (20,), net))
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), leaky((4, 10, 10), 0.9), torch.nn.AvgPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 4), leaky((4,), 0.8))
    _gain(net, 3.0)
    out.append(("snnTorch conv (Conv2d, AvgPool2d)", export_to_nir(net, torch.zeros(1, 2, 12, 12), ignore_dims=[0]),
                (2, 12, 12), net))
    return [(name, "snntorch", g, shape, _snntorch_runner(net)) for name, g, shape, net in out]


def norse_graphs():
    import norse.torch as norse

    torch.manual_seed(0)
    out = []

    def mlp(cell, gain):
        net = norse.SequentialState(torch.nn.Linear(20, 16), cell(), torch.nn.Linear(16, 4), cell())
        _gain(net, gain)
        return norse.to_nir(net, torch.zeros(1, 20))

    out.append(("Norse LIFBox MLP, default tau_mem_inv = 100", mlp(norse.LIFBoxCell, 3.0), (20,)))
    slow = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(0.5))
    out.append(("Norse LIFBox MLP, tau_mem_inv = 0.5", mlp(lambda: norse.LIFBoxCell(slow), 8.0), (20,)))
    cuba = norse.LIFParameters(tau_syn_inv=torch.tensor(0.5), tau_mem_inv=torch.tensor(0.25))
    out.append(("Norse LIFCell MLP (CubaLIF), tau_syn_inv = 0.5", mlp(lambda: norse.LIFCell(cuba), 25.0), (20,)))
    out.append(("Norse IAF MLP", mlp(norse.IAFCell, 3.0), (20,)))
    return [(name, "norse", g, shape, None) for name, g, shape in out]


def sinabs_graphs():
    import sinabs
    import sinabs.layers as sl

    torch.manual_seed(0)
    out = []
    net = torch.nn.Sequential(torch.nn.Linear(20, 16), sl.IAFSqueeze(batch_size=1), torch.nn.Linear(16, 4),
                              sl.IAFSqueeze(batch_size=1))
    _gain(net, 2.0)
    net(torch.zeros(1, 20))
    out.append(("Sinabs IAF MLP", sinabs.to_nir(net, torch.zeros(1, 20)), (20,)))
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, stride=2, padding=1), sl.IAFSqueeze(batch_size=1),
                              sl.SumPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 4), sl.IAFSqueeze(batch_size=1))
    _gain(net, 2.0)
    net(torch.zeros(1, 2, 12, 12))
    out.append(("Sinabs conv (strided Conv2d, IAF, SumPool2d)", sinabs.to_nir(net, torch.zeros(1, 2, 12, 12)),
                (2, 12, 12)))
    net = torch.nn.Sequential(torch.nn.Linear(20, 16), sl.LIFSqueeze(tau_mem=20.0, batch_size=1),
                              torch.nn.Linear(16, 4), sl.LIFSqueeze(tau_mem=10.0, batch_size=1))
    _gain(net, 2.0)
    net(torch.zeros(1, 20))
    out.append(("Sinabs LIF MLP, tau_mem = 20, 10 steps", sinabs.to_nir(net, torch.zeros(1, 20)), (20,)))
    return [(name, "sinabs", g, shape, None) for name, g, shape in out]


def paper_graphs():
    """The NIR paper's kinds, built with the nir package: a Sinabs-style CNN and an snnTorch-style RNN."""
    rng = np.random.default_rng(0)

    def w(*shape, gain):
        return (gain * rng.normal(size=shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    def if_node(shape):
        return nir.IF(r=np.ones(shape), v_threshold=np.ones(shape), v_reset=np.zeros(shape))

    nodes = {"input": nir.Input(np.array([2, 16, 16])),
             "conv1": nir.Conv2d(input_shape=(16, 16), weight=w(8, 2, 3, 3, gain=1.5), stride=2, padding=1,
                                 dilation=1, groups=1, bias=np.zeros(8, np.float32)),
             "if1": if_node((8, 8, 8)),
             "pool1": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             "conv2": nir.Conv2d(input_shape=(4, 4), weight=w(8, 8, 3, 3, gain=1.2), stride=1, padding=1, dilation=1,
                                 groups=1, bias=np.zeros(8, np.float32)),
             "if2": if_node((8, 4, 4)),
             "pool2": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type={"input": np.array([8, 2, 2])}, start_dim=0, end_dim=-1),
             "fc": nir.Affine(weight=w(10, 32, gain=1.5), bias=np.zeros(10, np.float32)),
             "if3": if_node((10,)),
             "output": nir.Output(np.array([10]))}
    names = list(nodes)
    cnn = nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), type_check=False)
    dt = 1e-4
    n = 12

    def cuba(k):
        alpha, beta = 0.7, 0.85
        ts, tm = np.full(k, dt / (1 - alpha)), np.full(k, dt / (1 - beta))
        return nir.CubaLIF(tau_syn=ts, tau_mem=tm, r=tm / dt, v_leak=np.zeros(k), v_threshold=np.ones(k),
                           v_reset=np.zeros(k), w_in=ts / dt)

    sub = nir.NIRGraph(nodes={"input": nir.Input(np.array([n])), "lif": cuba(n),
                              "w_rec": nir.Linear(weight=w(n, n, gain=0.6)), "output": nir.Output(np.array([n]))},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
                       type_check=False)
    rnn = nir.NIRGraph(nodes={"input": nir.Input(np.array([20])), "fc_in": nir.Affine(weight=w(n, 20, gain=1.5),
                                                                                       bias=np.zeros(n, np.float32)),
                              "rnn": sub, "fc_out": nir.Affine(weight=w(4, n, gain=1.5), bias=np.zeros(4, np.float32)),
                              "out": cuba(4), "output": nir.Output(np.array([4]))},
                       edges=[("input", "fc_in"), ("fc_in", "rnn"), ("rnn", "fc_out"), ("fc_out", "out"),
                              ("out", "output")], type_check=False)
    return [("NIR paper CNN kind: strided Conv2d, IF, SumPool2d (Sinabs)", "sinabs", cnn, (2, 16, 16), None),
            ("NIR paper RNN kind: recurrent CubaLIF, nested graph (snnTorch)", "snntorch", rnn, (20,), None)]


def _err(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text if len(text) <= 150 else text[:150].rsplit(' ', 1)[0] + ' ...'}"


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return 100.0 * float(np.mean(a.reshape(b.shape) == b))


def measure(name: str, tool: str, graph: nir.NIRGraph, shape, T: int, samples: int, original=None) -> dict:
    from esl_deploy.hw_models.report import energy_report

    x = (np.random.default_rng(0).random((T, samples) + tuple(shape)) < 0.3).astype(np.float32)
    row = {"graph": name, "writer": tool, "difference": DIFFERENCES.get(tool, "")}
    with tempfile.TemporaryDirectory() as tmp, quiet():
        try:
            nir.write(Path(tmp) / "g.nir", graph)
            nir.read(Path(tmp) / "g.nir")
            row["nir_file"] = "yes"
        except Exception as e:  # the nir package's own limits are the measurement
            row["nir_file"] = f"no: {_err(e)}"
    try:
        with quiet():
            net = RUNNERS[tool][0](copy.deepcopy(graph), samples)  # snnTorch's importer rewrites the graph it reads
            theirs = RUNNERS[tool][1](net, torch.from_numpy(x)).detach().numpy()
        theirs = theirs.reshape(T, samples, -1)
        row.update(writer_runs=True, writer_spikes=int(theirs.sum()), extra_spikes=int((theirs > 1).sum()))
    except Exception as e:
        row.update(writer_runs=False, writer_error=_err(e))
        theirs = None
    network = None
    if original is not None:  # the network the writer exported, run in the writer
        with quiet():
            network = original(x).reshape(T, samples, -1)
        row["network_spikes"] = int(network.sum())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = from_nir(graph, writer=tool)
        layers, _ = snntorch_run(model, x)
        ours = layers[-1].reshape(T, samples, -1)
        row.update(ours_loads=True, ours_spikes=int(ours.sum()), silent_layers=sum(int(not l.any()) for l in layers),
                   layers=len(layers))
        if theirs is not None:
            row["ours_agreement"] = agreement(ours, theirs)
        if network is not None:
            row["ours_vs_network"] = agreement(ours, network)
    except Exception as e:
        row.update(ours_loads=False, ours_error=_err(e))
        return row
    for mode in ("float", "fixed"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lava = convert(graph, writer=tool)
                if mode == "fixed":
                    lava = quantize(lava, input_max=1.0, groups=2, input_frac_bits=0)
            res = run(lava, x, mode=mode, record="output")
            out = res.spikes[-1].reshape(T, samples, -1)
            if theirs is not None:
                row[f"lava_{mode}_agreement"] = agreement(out, theirs)
            if network is not None:
                row[f"lava_{mode}_vs_network"] = agreement(out, network)
            row[f"lava_{mode}_vs_ours"] = agreement(out, ours)
        except Exception as e:
            row[f"lava_{mode}_error"] = _err(e)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = energy_report(model, torch.from_numpy(x).transpose(0, 1), T=T, encoding="direct", temporal=True,
                                source=name, dataset="random spikes", hardware=("truenorth",))
        row.update(energy=True, sops=float(rep.activity.sops), cores=int(rep.packed.cores))
    except Exception as e:
        row.update(energy=False, energy_error=_err(e))
    return row


def _pct(row: dict, key: str, err: str, ours: str = "") -> str:
    if key in row:
        return f"{row[key]:.3f}"
    if err in row:
        return f"no: {row[err]}"
    return f"(vs ours: {row[ours]:.3f})" if ours in row else ""


def table(rows: list, T: int, samples: int) -> str:
    head = ["graph", "writer", "nir file", "writer's run: output spikes (> 1 per step)", "ours: loads",
            "ours vs writer %", "Lava float vs writer %", "Lava fixed vs writer %", "energy: SOPs/sample, TrueNorth cores"]
    body = []
    for r in rows:
        writer = f"{r['writer_spikes']} ({r['extra_spikes']})" if r.get("writer_runs") else f"no: {r.get('writer_error')}"
        loads = "yes" if r.get("ours_loads") else f"no: {r.get('ours_error')}"
        energy = f"{r['sops']:,.0f}, {r['cores']}" if r.get("energy") else (f"no: {r['energy_error']}"
                                                                             if "energy_error" in r else "")
        cells = [_pct(r, "ours_agreement", "ours_error"), _pct(r, "lava_float_agreement", "lava_float_error"),
                 _pct(r, "lava_fixed_agreement", "lava_fixed_error")]
        if "network_spikes" in r:  # against the exported network itself, run in its tool
            for i, key in enumerate(("ours_vs_network", "lava_float_vs_network", "lava_fixed_vs_network")):
                if key in r:
                    cells[i] = (cells[i] + "; " if cells[i] else "") + f"network {r[key]:.3f}"
        body.append([r["graph"], r["writer"], r["nir_file"], writer, loads, *cells, energy])
    return (f"{samples} samples of {T} steps of random input spikes (p = 0.3); agreement = equal (step, sample, "
            "output neuron) entries against the writer's run (its reader on the graph, as its users load it); "
            "\"network\": against the snnTorch network that was exported, run in snnTorch.\n\n" + C.md_table(head, body))


def main(argv=None) -> list:
    p = C.parser(__doc__, epochs=False, seeds=False, out=False)
    p.add_argument("--T", type=int, default=20)
    p.add_argument("--samples", type=int, default=16)
    args = p.parse_args(argv)
    import_lava()
    rows = []
    for group in (snntorch_graphs, norse_graphs, sinabs_graphs, paper_graphs):
        with quiet():
            graphs = group()
        for name, tool, graph, shape, original in graphs:
            rows.append(measure(name, tool, graph, shape, args.T, args.samples, original))
            print(rows[-1], file=sys.stderr)
    md = table(rows, args.T, args.samples)
    return C.publish(NAME, rows, md, args, "benchmarks/nir_compat.py", argv)


if __name__ == "__main__":
    main()
