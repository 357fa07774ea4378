"""ResNet19 deployed: trained on an MNIST subset, written to NIR with its residual adds as the graph's merges,
run in Lava (float and Loihi 2 fixed point) against our reader, and costed with its shortcuts.
(The README's ResNet19 table.)

    .venv/bin/python benchmarks/resnet19_deploy.py [--train 3000] [--test 1000] [--epochs 3] [--T 4]
        [--limit 50] [--out runs/results] [--results results] [--retrain] [--json]

Training the seeds' ResNet19 (``--width 0.25``: 32-64-128 channels, 19 LIF layers, 8 basic blocks, 6 with an
identity shortcut) on all of MNIST takes ~100 minutes per epoch on this 2-core CPU (measured: 270 s for 2,700
images at T = 4), so it trains on the first ``--train`` training and ``--test`` test images of
``../shared/data/mnist`` (copied into ``runs/results/mnist_subset_<train>``, idx files as MNIST ships
them), ESL at 10 % density, ``--epochs`` epochs, ``--T`` steps: ``esl train --model resnet19 --width 0.25
--dataset mnist --data-dir <subset> --epochs E --T T``.

Then ``esl export --to nir``; ``esl simulate model.nir --backend lava`` and ``--backend lava-fixed --conv
matrix`` (convolutions as two 8-bit synapse groups, Lava's Conv holds one) on the first ``--limit`` test
images, per-layer spike agreement against our reader of the graph (float64); the cost on the same images
(:func:`cost`): SOPs of every layer, those of the six identity shortcuts (one synaptic event per spike,
:mod:`hw_models.sops`), the TrueNorth cores of the per-layer sparse placement with the shortcuts' relay
neurons (:mod:`hw_models.shortcuts`), and the TrueNorth and Loihi energies. Writes ``resnet19_deploy.{md,json}`` into ``--results``.
"""
from __future__ import annotations

import gzip
import json
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import numpy as np  # noqa: E402

from esl_deploy.export.cli import export_file  # noqa: E402
from esl_deploy.export.nir.read import load_nir  # noqa: E402

NAME = "resnet19_deploy"
MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def subset(dst: Path, n_train: int, n_test: int, src: Path = MNIST) -> Path:
    """The first ``n_train``/``n_test`` images and labels of MNIST as idx files in ``dst`` (their headers say so)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name, n in zip(FILES, (n_train, n_train, n_test, n_test)):
        out = dst / f"{name}.gz"
        if out.is_file():
            continue
        raw = gzip.open(src / f"{name}.gz").read()
        ndim = raw[3]
        dims = list(struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim]))
        if n > dims[0]:
            raise SystemExit(f"{name} holds {dims[0]} items, fewer than {n}")
        per = int(np.prod(dims[1:])) if ndim > 1 else 1
        dims[0] = n
        head = raw[:4] + struct.pack(">" + "I" * ndim, *dims)
        out.write_bytes(gzip.compress(head + raw[4 + 4 * ndim: 4 + 4 * ndim + n * per]))
    return dst


def main(argv=None) -> dict:
    p = C.parser(__doc__, epochs=True, seeds=False)
    p.set_defaults(epochs=3)
    p.add_argument("--train", type=int, default=3000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--limit", type=int, default=50)
    args = p.parse_args(argv)
    data = subset(Path(args.out) / f"mnist_subset_{args.train}_{args.test}", args.train, args.test)
    run = Path(args.out) / f"resnet19_mnist_{args.train}"
    cfg = ["--model", "resnet19", "--width", "0.25", "--dataset", "mnist", "--data-dir", data, "--epochs",
           args.epochs, "--T", args.T, "--seed", 0]
    if args.retrain or not (run / "summary.json").is_file():
        C.esl_json(["train", *cfg, "--out", run, "--force", "--no-progress"])
    summary = json.loads((run / "summary.json").read_text())
    nir_file = run / "model.nir"
    export_file(run / "checkpoint.pt", "nir", nir_file, force=True)
    sims = {}
    for backend, extra in (("lava", []), ("lava-fixed", ["--conv", "matrix"])):
        sims[backend] = C.esl_json(["simulate", nir_file, "--backend", backend, "--limit", args.limit,
                                    "--no-progress", "--json", *extra])
    energy = cost(nir_file, data, args.T, args.limit)
    res = {"train": {k: summary.get(k) for k in ("test_acc", "best_val_acc", "wall_time_s", "seconds_per_epoch",
                                                  "density", "epochs", "T")},
           "train_images": args.train, "test_images": args.test, "simulate": sims, "energy": energy,
           "layers": load_nir(nir_file).neuron_names()}
    return C.publish(NAME, res, table(res, args), args, "benchmarks/resnet19_deploy.py", argv)


def cost(nir_file: Path, data: Path, T: int, limit: int) -> dict:
    """SOPs (shortcuts included) on the first ``limit`` test images and the TrueNorth per-layer ``sparse``
    mapping (the relay layers of the identity shortcuts included) of the graph read from ``nir_file``, and the
    TrueNorth and Loihi energies per sample (:func:`hw_models.energy.energies`, the papers' convention).
    ``esl energy`` also packs the layers into shared cores; for a network of ~50,000 cores the packer runs for
    longer than this benchmark may take, so this uses the per-layer mapping its report also holds."""
    from esl_deploy.datasets import load_dataset
    from esl_deploy.export.nir.read import load_nir
    from esl_deploy.hw_models.energy import EnergyConstants, energies
    from esl_deploy.hw_models.graph_map import graph_synaptic_layers
    from esl_deploy.hw_models.sops import count_activity
    from esl_deploy.hw_models.truenorth import map_layers

    model = load_nir(nir_file)
    splits = load_dataset("mnist", data, T)
    activity = count_activity(model, splits.test, T=T, encoding="direct", limit=limit)
    constants = EnergyConstants()
    mapping = map_layers(graph_synaptic_layers(model), "sparse", constants.core)
    e = energies(activity, mapping, ("truenorth", "loihi"), constants)
    return {"activity": activity.to_dict(), "mapping": mapping.to_dict(),
            "energy": {hw: v.to_dict() for hw, v in e.items()}}


def table(res: dict, args) -> str:
    t, sims, e = res["train"], res["simulate"], res["energy"]
    layers = e["activity"]["layers"]
    shortcut = [l for l in layers if l["kind"] == "identity"]
    sops = sum(l["acs"] for l in layers)
    short_sops = sum(l["acs"] for l in shortcut)
    lines = [f"ResNet19, width 0.25 (19 LIF layers, 8 basic blocks, 6 identity shortcuts), ESL 10 %, trained "
             f"{t['epochs']} epochs at T = {t['T']} on the first {res['train_images']:,} MNIST training images: test "
             f"accuracy {100 * t['test_acc']:.2f} % on the first {res['test_images']:,} test images "
             f"({t['wall_time_s'] / 60:.0f} min, {t['seconds_per_epoch']:.0f} s per epoch). "
             f"Deployment on the first {sims['lava']['samples']} test images:", ""]
    head = ["layer", "Lava float spike agreement %", "Lava fixed (--conv matrix) %"]
    order = res["layers"]  # the neuron nodes in the order they run (the JSON reports sort their keys)
    rows = [[name, f"{sims['lava']['layer_agreement'][name]:.3f}", f"{sims['lava-fixed']['layer_agreement'][name]:.3f}"]
            for name in order]
    rows.append(["accuracy %", f"{100 * sims['lava']['accuracy']:.2f} (ours {100 * sims['lava']['snntorch_accuracy']:.2f})",
                 f"{100 * sims['lava-fixed']['accuracy']:.2f}"])
    lines.append(C.md_table(head, rows))
    cores = {l["name"]: l["cores"] for l in e["mapping"]["layers"]}
    tn, loihi = e["energy"]["truenorth"], e["energy"]["loihi"]
    short_j = sum(tn["per_layer_j"].get(l["name"], 0.0) for l in shortcut)
    lines += ["", f"Cost on the same images (`hw_models.sops`, `hw_models.shortcuts`): {sops:,.0f} SOPs per sample, of "
                  f"which the six identity shortcuts {short_sops:,.0f} ({100 * short_sops / sops:.2f} %: one synaptic "
                  f"event per spike of the block's input); TrueNorth, per-layer sparse placement: "
                  f"{sum(cores.values()):,} cores, the shortcuts' relay neurons "
                  f"{sum(cores.get(l['name'], 0) for l in shortcut):,} of them; energy per sample (papers' "
                  f"convention) TrueNorth {tn['dynamic_j'] + tn['static_j']:.3g} J (shortcuts {short_j:.3g} J), "
                  f"Loihi {loihi['dynamic_j'] + loihi['static_j']:.3g} J.", ""]
    head = ["shortcut", "relay neurons = axons = synapses", "SOPs per sample", "TrueNorth cores"]
    lines.append(C.md_table(head, [[l["name"], f"{l['synapses']:,}", f"{l['acs']:,.0f}", f"{cores.get(l['name'], 0):,}"]
                                   for l in shortcut]))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
