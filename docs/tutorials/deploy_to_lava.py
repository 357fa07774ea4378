"""Tutorial: deploy a trained network to Lava (Loihi 2 models, floating and fixed point) and check it spike for spike.

Two networks are trained on the embedded digits data with ESL at 10 % density: one in float, one with
``--weight-bits 8`` (quantisation-aware training on the grid a Loihi 2 synapse holds). Each is exported
to NIR (``esl export --to nir``) and to a ``.lava`` file (``esl export --to lava``: the converted Lava
network with its fixed-point parameters), and run with ``esl simulate`` in Lava floating point
(``--backend lava``), in Lava's bit-accurate Loihi 2 fixed point (``--backend lava-fixed``) and, for the
8-bit network, in lava-dl netx (``--backend netx``). Each report compares the backend's spikes with
snnTorch's, layer by layer, on the same test images. Last, the ``.lava`` file is read back in Python.

Run it (about as long as ``make demo``)::

    .venv/bin/python docs/tutorials/deploy_to_lava.py

Every command it runs is printed first (``$ esl ...``); type them yourself to get the same files.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

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
    p.add_argument("--epochs", type=int, default=40, help="training epochs (make demo: 40)")
    p.add_argument("--width", type=float, default=1.0, help="hidden width multiplier (1: 800 neurons)")
    p.add_argument("--limit", type=int, default=None, help="simulate only the first N test images (all: 360)")
    p.add_argument("--out", default="runs/tutorial_lava", help="folder of the runs and exported files")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    out = Path(args.out)
    quiet = ["--no-progress"] if args.no_progress else []
    limit = ["--limit", args.limit] if args.limit else []
    train = ["--dataset", "digits", "--method", "esl", "--density", "0.1", "--epochs", args.epochs,
             "--width", args.width, "--force", "--json", *quiet]

    # 1. train: float, and 8-bit quantisation-aware (weights, biases and thresholds on Loihi 2's grid)
    runs = {"float": out / "esl", "8-bit QAT": out / "esl_8bit"}
    esl("train", *train, "--out", runs["float"])
    esl("train", *train, "--weight-bits", "8", "--out", runs["8-bit QAT"])

    # 2. export: the NIR graph, and the Lava network itself (float and fixed-point parameters, HDF5)
    files = {}
    for name, run in runs.items():
        files[name] = {"nir": run / "model.nir", "lava": run / "model.lava"}
        for fmt, path in files[name].items():
            esl("export", run / "checkpoint.pt", "--to", fmt, "-o", path, "--force")

    # 3. simulate: each backend against snnTorch (float64), spike for spike, on the digits test images
    reports = []
    for name, backends in (("float", ("lava", "lava-fixed")), ("8-bit QAT", ("lava", "lava-fixed", "netx"))):
        for backend in backends:
            r = json.loads(esl("simulate", files[name]["nir"], "--backend", backend, "--dataset", "digits",
                               "--json", *limit, *quiet))
            reports.append({"network": name, **r})

    print("\n| network | backend | samples | accuracy % | snnTorch % | output spike agreement % | lowest layer % "
          "| samples identical % |")
    print("|---|---|---|---|---|---|---|---|")
    for r in reports:
        print(f"| {r['network']} | {r['backend']} | {r['samples']} | {100 * r['accuracy']:.2f} "
              f"| {100 * r['snntorch_accuracy']:.2f} | {r['output_agreement']:.3f} "
              f"| {min(r['layer_agreement'].values()):.3f} | {r['identical_outputs']:.2f} |")

    # 4. the .lava file from Python: the layers as Lava runs them, with their Loihi 2 integers
    from esl_deploy.export.lava.file import read_lava

    net = read_lava(files["8-bit QAT"]["lava"])
    layers = []
    print(f"\n{files['8-bit QAT']['lava']}: input {net.input_shape}")
    for layer in net.layers:
        s, n, q = layer.synapse, layer.neuron, layer.fixed  # q: the Loihi 2 integers (FixedLayer)
        error = q.errors.get("weight_rel", float("nan"))
        layers.append({"kind": s.kind, "in": s.in_shape, "out": s.out_shape, "vth": q.vth, "dv": q.dv,
                       "scale": q.scale, "weight_error": error})
        print(f"  {s.kind} {s.in_shape} -> {s.out_shape}: beta {n.beta}, threshold {n.threshold}; fixed point: "
              f"vth {q.vth}, dv {q.dv} (of 4096), scale {q.scale:g}, weight error {100 * error:.3f} %")
    return {"runs": {k: str(v) for k, v in runs.items()}, "simulate": reports, "lava_layers": layers}


if __name__ == "__main__":
    main()
