"""Tutorial: NIR graphs written by other tools, run with ``esl simulate`` and costed with ``esl energy``.

Two graphs that ESL Deploy did not write:

1. a snnTorch network exported with snnTorch's own ``export_to_nir`` (``Linear`` + ``Leaky`` layers, with
   ``Leaky(reset_mechanism="zero", reset_delay=False)``: the reset NIR's ``LIF`` node describes);
2. a graph built node by node with the ``nir`` package (``Affine`` + ``LIF``, ``dt`` in its metadata), of an
   input shape (20,) that no data set has.

Neither has a data set, so the inputs are random spikes of the graph's own input shape
(``--random-spikes RATE -T T --samples N``) or a ``.npy`` array ``(T, N, *input_shape)`` of your own
(``--input FILE``). ``esl simulate`` runs each graph in Lava and compares its spikes with our reader's
(snnTorch in float64), layer by layer; ``--reference snntorch`` also runs the file in snnTorch's own NIR
importer, as its users load it, and reports that tool's agreement with ours.

Run it::

    .venv/bin/python docs/tutorials/foreign_nir.py

Every command it runs is printed first (``$ esl ...``); type them yourself on the files it writes.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir

ESL = Path(sys.executable).with_name("esl")  # the esl command of this environment


def esl(*args) -> str:
    """Run ``esl ARGS`` as a user would type it; its output (JSON with --json) is returned."""
    print("$ esl " + " ".join(map(str, args)), file=sys.stderr)
    r = subprocess.run([str(ESL), *map(str, args)], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"esl {args[0]} failed (exit code {r.returncode}); its message is above")
    return r.stdout


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=25, help="time steps of the input spike trains")
    p.add_argument("--samples", type=int, default=16, help="spike trains per run")
    p.add_argument("--out", default="runs/tutorial_foreign_nir", help="folder for the graphs and inputs")
    return p.parse_args(argv)


def snntorch_graph(path: Path) -> Path:
    """A snnTorch network written by snnTorch's own NIR exporter."""
    torch.manual_seed(0)

    def leaky(n, **kw):  # per-neuron beta and threshold: snnTorch 1.0.0 exports those with their shapes
        return snn.Leaky(beta=torch.full((n,), 0.9), threshold=torch.ones(n), init_hidden=True,
                         reset_mechanism="zero", reset_delay=False, **kw)

    net = torch.nn.Sequential(torch.nn.Linear(20, 30), leaky(30), torch.nn.Linear(30, 4), leaky(4, output=True))
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(3.0)  # a livelier net than the default initialisation
    nir.write(path, export_to_nir(net, torch.zeros(1, 20), ignore_dims=[0]))
    return path


def nir_graph(path: Path) -> Path:
    """A graph built node by node with the nir package: 20 inputs -> 30 LIF -> 4 LIF, dt = 1e-4."""
    rng = np.random.default_rng(0)
    dt = 1e-4

    def lif(n, beta=0.9):  # NIR's LIF: tau dv/dt = (v_leak - v) + r I; tau = dt / (1 - beta), r = tau / dt
        tau = np.full(n, dt / (1 - beta))
        return nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))

    graph = nir.NIRGraph(
        nodes={"in": nir.Input(np.array([20])), "fc1": nir.Affine(rng.normal(0, 0.6, (30, 20)), np.full(30, 0.1)),
               "lif1": lif(30), "fc2": nir.Affine(rng.normal(0, 0.8, (4, 30)), np.zeros(4)), "lif2": lif(4),
               "out": nir.Output(np.array([4]))},
        edges=[("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "out")],
        metadata={"dt": dt})
    nir.write(path, graph)
    return path


def main(argv=None) -> dict:
    args = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    T, N = args.steps, args.samples
    results = {}

    # 1. snnTorch's export: random spikes, Lava against our reader, and snnTorch's own importer beside it
    g1 = snntorch_graph(out / "snntorch_mlp.nir")
    r = json.loads(esl("simulate", g1, "--backend", "lava", "--random-spikes", 0.3, "-T", T, "--samples", N,
                       "--reference", "snntorch", "--json", "--no-progress"))
    results["snntorch_export"] = r
    w = r["writer_reference"]
    agreement = ", ".join(f"{k} {v:.3f} %" for k, v in r["layer_agreement"].items())
    print(f"{g1.name} (read as written by {r['writer']}): Lava vs our reader per layer {agreement}; "
          f"snnTorch's importer vs ours {w['ours_agreement']:.3f} % of output spikes ({w['spikes']} spikes)\n")

    # 2. a hand-built graph: the inputs as a .npy file of your own, (T, N, 20); Lava float and fixed point
    g2 = nir_graph(out / "hand_built.nir")
    x = (np.random.default_rng(1).random((T, N, 20)) < 0.3).astype(np.float32)
    np.save(out / "spikes.npy", x)
    for backend in ("lava", "lava-fixed"):
        r = json.loads(esl("simulate", g2, "--backend", backend, "--input", out / "spikes.npy", "--json",
                           "--no-progress"))
        results[f"hand_built_{backend}"] = r
        agreement = ", ".join(f"{k} {v:.3f} %" for k, v in r["layer_agreement"].items())
        print(f"{g2.name}, {backend}: {r['samples']} samples of {r['T']} steps; spike agreement per layer "
              f"{agreement}; silent layers {r['silent_layers']}\n")

    # 3. its cost on TrueNorth, from the same spikes: SOPs counted as given, cores, energy per sample
    e = json.loads(esl("energy", g2, "--hw", "truenorth", "--input", out / "spikes.npy", "--json"))
    results["hand_built_energy"] = e
    t = e["totals"]
    print(f"{g2.name} on TrueNorth: {t['acs']:.1f} synaptic events per sample, {t['cores_packed']} core(s) "
          f"(lower bound {t['cores_lower_bound']}), {e['energy_j']['truenorth']['total_j'] * 1e9:.2f} nJ per sample")
    return results


if __name__ == "__main__":
    main()
