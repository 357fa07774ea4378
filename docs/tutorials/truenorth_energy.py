"""Tutorial: TrueNorth cores and energy of a trained network with ``esl energy``.

An ESL network is trained on the embedded digits data (or an existing run is given with ``--run``) and
costed on TrueNorth with ``esl energy --hw truenorth --json``: synaptic operations counted from its real
spikes on the test set, its placement on 256-axon x 256-neuron cores (per-layer, packed, and the lower
bound that holds for any placement) and the energy per sample in both conventions (``papers``: SOPs x
26 pJ, against the dense ANN on a GPU; ``chip``: the dynamic energy plus the static power of the
occupied chip). Last, the weights are mapped onto TrueNorth's rule (4 axon types per core, one 9-bit
weight per neuron and type: ``--truenorth-weights duplicate``) and the accuracy with them is measured.

Run it::

    .venv/bin/python docs/tutorials/truenorth_energy.py                      # trains ESL on digits first
    .venv/bin/python docs/tutorials/truenorth_energy.py --run runs/demo      # the network of make demo

Every command it runs is printed first (``$ esl ...``); type them yourself to get the same reports.
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
    p.add_argument("--run", default=None, help="an existing run folder to cost (default: train one)")
    p.add_argument("--epochs", type=int, default=40, help="training epochs when no --run is given")
    p.add_argument("--width", type=float, default=1.0, help="hidden width multiplier when training")
    p.add_argument("--limit", type=int, default=None, help="cost on the first N test images only (all: 360)")
    p.add_argument("--out", default="runs/tutorial_truenorth", help="run folder to train into")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    run = Path(args.run) if args.run else Path(args.out)
    if not args.run:
        esl("train", "--dataset", "digits", "--method", "esl", "--density", "0.1", "--epochs", args.epochs,
            "--width", args.width, "--out", run, "--force", "--json", *(["--no-progress"] if args.no_progress else []))
    ckpt = run / "checkpoint.pt"
    limit = ["--limit", args.limit] if args.limit else []

    # 1. the papers' convention: SOPs x 26 pJ per synaptic event against FLOPs x 19.1 pJ of the dense ANN
    papers = json.loads(esl("energy", ckpt, "--hw", "truenorth", "--json", *limit))
    print(f"\n{papers['samples']} test samples, T = {papers['T']}, accuracy {100 * papers['accuracy']:.2f} %\n")
    print("| layer | synapses | density | op | SOPs per sample | cores naive / sparse | TrueNorth uJ |")
    print("|---|---|---|---|---|---|---|")
    for layer in papers["layers"]:
        print(f"| {layer['layer']} | {layer['synapses']} | {layer['density']:.3f} | {layer['op']} | {layer['ops']:.0f} "
              f"| {layer['cores_naive']} / {layer['cores_sparse']} | {layer['energy_j']['truenorth'] * 1e6:.4f} |")
    t = papers["totals"]
    print(f"\ncores: naive {t['cores_naive']}, per-layer {t['cores_sparse']}, packed {t['cores_packed']}, "
          f"lower bound {t['cores_lower_bound']} (any placement); {t['chips']} chip(s), "
          f"{t['latency_ticks']} ticks of latency")

    # 2. the chip model: dynamic energy without the floor, plus 42 mW per occupied chip for T + latency ticks
    chip = json.loads(esl("energy", ckpt, "--hw", "truenorth", "--convention", "chip", "--json", *limit))
    for name, r in (("papers", papers), ("chip", chip)):
        tn, gpu = r["energy_j"]["truenorth"], r["energy_j"]["gpu"]
        print(f"{name:>6}: TrueNorth {tn['total_j'] * 1e6:9.3f} uJ per sample (dynamic {tn['dynamic_j'] * 1e6:.3f}, "
              f"static {tn['static_j'] * 1e6:.3f}); dense ANN on a GPU {gpu['total_j'] * 1e6:.3f} uJ; "
              f"GPU / TrueNorth {r['ratio_ann_gpu_over_snn']['truenorth']:.3g}x")

    # 3. TrueNorth's weight rule: 4 levels per neuron, a source duplicated onto one axon per type it uses
    tw = json.loads(esl("energy", ckpt, "--hw", "truenorth", "--truenorth-weights", "duplicate", "--json",
                        *limit))["truenorth_weights"]
    errors = ", ".join(f"{layer['name']} {100 * layer['rel_error']:.1f} %" for layer in tw["layers"])
    print(f"\nTrueNorth weights ({tw['mode']}): accuracy {100 * tw['accuracy_truenorth']:.2f} % "
          f"(float {100 * tw['accuracy_float']:.2f} %); weight error {errors}; +{tw['extra_axons']} axons, "
          f"packed cores {tw['packed_cores']} -> {tw['packed_cores_duplicated']}")
    print("\nEvery constant and its source: esl energy --list-constants; override one with --const NAME=VALUE.")
    return {"papers": papers, "chip": chip, "truenorth_weights": tw}


if __name__ == "__main__":
    main()
