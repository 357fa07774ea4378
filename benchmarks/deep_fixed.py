"""The seeds' deep networks on Loihi 2 fixed point: VGGSNN and ResNet19 trained 8-bit (quantisation-aware,
BatchNorm folded, Lava's integer membrane decay) on MNIST, checked against Lava on a subset and by the
bit-exact torch emulator on the test set; netx for VGGSNN; TrueNorth cores and energy.

    .venv/bin/python benchmarks/deep_fixed.py [--nets vggsnn resnet19] [--width 0.25] [--train 2000]
        [--epochs 3] [--T 4] [--lava-limit 10] [--test 10000 [N]] [--chunk 500] [--out runs/results] [--json]

Each net: ``esl train --model NET --width W --weight-bits 8 --dataset mnist --data-dir SUBSET --epochs E
--T T --seed 0`` (ESL at 10 %) on the first ``--train`` MNIST training images (the whole set takes hours per
epoch on 2 CPU cores: ``benchmarks/resnet19_deploy.py`` measured ResNet19), ``esl export --to nir``, then

- **Lava fixed point** (``simulate_arrays(..., "lava-fixed")``, Lava's Loihi 2 bit-accurate models, one 8-bit
  synapse group) on the first ``--lava-limit`` test images: spike agreement with the trained network
  (the NIR graph read back and run in float64, :func:`export.simulate.snntorch_run`) in every layer;
- **the emulator** (``"emulate-fixed"``, :mod:`export.lava.emulate`) on the first ``--test`` test images (one
  number per net, or one for all) in
  chunks of ``--chunk`` (the trained network's spikes of a whole test set do not fit in memory at once):
  the agreement of every layer, its accuracy against the trained network's, and on the first chunk the
  share of Lava's spikes it reproduces on the Lava subset (the proof that it is Lava's arithmetic);
- VGGSNN only: ``esl export --to netx`` and ``esl simulate FILE --backend netx`` on the Lava subset;
- ``esl energy`` on the Lava subset: SOPs per sample, TrueNorth cores (packed, conv-aware) and their
  lower bound, energies in the papers' convention.

Writes ``deep_fixed.{md,json}``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import numpy as np  # noqa: E402

from resnet19_deploy import subset  # noqa: E402

NAME = "deep_fixed"
NETS = ("vggsnn", "resnet19")


def train_run(net: str, args, data: Path) -> Path:
    run = Path(args.out) / f"{net}_w{args.width}_q8_mnist{args.train}_e{args.epochs}_T{args.T}"
    if args.retrain or not (run / "summary.json").is_file():
        C.esl_json(["train", "--model", net, "--width", args.width, "--weight-bits", 8, "--dataset", "mnist",
                    "--data-dir", data, "--epochs", args.epochs, "--T", args.T, "--seed", 0, "--out", run,
                    "--force", "--no-progress"])
    return run


def cached(run: Path, name: str, key: dict, compute, retrain: bool = False):
    """``compute()``, or its result saved beside the run (``deep_fixed_{name}.json``) by an earlier call with the
    same ``key`` and the same checkpoint (its SHA-256); ``--retrain`` computes again."""
    import hashlib

    key = {"checkpoint_sha256": hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest(), **key}
    cache = run / f"deep_fixed_{name}.json"
    if not retrain and cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            print(f"{run.name}: {name} reused from {cache}", flush=True)
            return saved["result"]
    print(f"{run.name}: {name} ...", flush=True)
    result = compute()
    C.atomic_write_text(cache, json.dumps({"key": key, "result": result}, default=float))
    return result


def cached_check(run: Path, nir_file: Path, data: Path, args, n_test: int) -> dict:
    """:func:`check`, reused beside the run for the same checkpoint, test images and Lava subset."""
    return cached(run, f"check_{n_test}_{args.lava_limit}", {"test": n_test, "lava_limit": args.lava_limit},
                  lambda: check(nir_file, data, args, n_test), args.retrain)


def check(nir_file: Path, data: Path, args, n_test: int) -> dict:
    """Lava fixed point on the subset and the emulator on the test set, against the trained network."""
    from esl_deploy.export.simulate import encoded_inputs, load_network, simulate_arrays

    model, graph = load_network(nir_file)
    x, y = encoded_inputs("mnist", args.T, "direct", limit=n_test, data_dir=data)
    n = x.shape[1]
    t0 = time.perf_counter()
    lava = simulate_arrays(model, graph, x[:, :args.lava_limit], y[:args.lava_limit], "lava-fixed",
                           weight_groups=1, conv="matrix").to_dict()
    lava_s = time.perf_counter() - t0
    counts: dict = {}
    correct = ref_correct = 0
    first = None
    t0 = time.perf_counter()
    for start in range(0, n, args.chunk):
        stop = min(n, start + args.chunk)
        r = simulate_arrays(model, graph, x[:, start:stop], y[start:stop], "emulate-fixed", weight_groups=1,
                            lava_subset=args.lava_limit if start == 0 else 0).to_dict()
        first = first or r
        for name, pct in r["layer_agreement"].items():
            counts[name] = counts.get(name, 0.0) + pct * (stop - start)
        correct += r["accuracy"] * (stop - start)
        ref_correct += r["snntorch_accuracy"] * (stop - start)
        print(f"  emulator {stop}/{n}: accuracy {100 * correct / stop:.2f} % (trained {100 * ref_correct / stop:.2f} %)",
              flush=True)
    emu_s = time.perf_counter() - t0
    return {"lava": lava, "lava_s": lava_s,
            "emulator": {"samples": n, "layer_agreement": {k: v / n for k, v in counts.items()},
                         "accuracy": correct / n, "trained_accuracy": ref_correct / n,
                         "lava_subset_agreement": first["details"].get("lava_subset_agreement"),
                         "lava_subset_samples": first["details"].get("lava_subset_samples"), "seconds": emu_s},
            "layers": list(lava["layer_agreement"])}  # the spiking layers in the order they run


def main(argv=None) -> dict:
    p = C.parser(__doc__, epochs=True, seeds=False)
    p.set_defaults(epochs=3)
    p.add_argument("--nets", nargs="+", choices=NETS, default=list(NETS))
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--test", type=int, nargs="+", default=[10000],
                   help="test images the emulator checks, one number for every net or one per net of --nets")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--lava-limit", type=int, default=10)
    p.add_argument("--chunk", type=int, default=500)
    args = p.parse_args(argv)
    if len(args.test) not in (1, len(args.nets)):
        p.error(f"--test takes one number or one per net ({len(args.nets)})")
    tests = dict(zip(args.nets, args.test * len(args.nets) if len(args.test) == 1 else args.test))
    data = subset(Path(args.out) / f"mnist_subset_{args.train}_10000", args.train, 10000)
    runs = {net: train_run(net, args, data) for net in args.nets}  # train both first
    res = {"train_images": args.train, "test_images": tests, "width": args.width, "nets": {}}
    from esl_deploy.export.cli import export_file

    for net, run in runs.items():
        summary = json.loads((run / "summary.json").read_text())
        nir_file = run / "model.nir"
        export_file(run / "checkpoint.pt", "nir", nir_file, force=True)
        entry = {"train": {k: summary.get(k) for k in ("test_acc", "best_val_acc", "wall_time_s", "seconds_per_epoch",
                                                        "density", "epochs", "T", "weight_bits")}}
        entry.update(cached_check(run, nir_file, data, args, tests[net]))
        if net == "vggsnn":
            h5 = run / "model.h5"
            export_file(run / "checkpoint.pt", "netx", h5, force=True)
            entry["netx"] = cached(run, f"netx_{args.lava_limit}", {"lava_limit": args.lava_limit},
                                   lambda: C.esl_json(["simulate", h5, "--backend", "netx", "--limit", args.lava_limit,
                                                       "--no-progress"]), args.retrain)
        entry["energy"] = cached(run, f"energy_{args.lava_limit}", {"lava_limit": args.lava_limit},
                                 lambda: C.esl_json(["energy", nir_file, "--hw", "all", "--limit", args.lava_limit,
                                                     "--data-dir", data]), args.retrain)
        res["nets"][net] = entry
    return C.publish(NAME, res, table(res, args), args, "benchmarks/deep_fixed.py", argv)


def _min_layer(agree: dict) -> str:
    """The lowest layer's agreement and its name (``all`` when every layer has that value)."""
    name = min(agree, key=agree.get)
    low = agree[name]
    return f"{low:.3f} ({'all' if all(v == low for v in agree.values()) else name})"


def table(res: dict, args) -> str:
    head = ["net", "trained (8-bit QAT): test accuracy %", "density", "Lava fixed: lowest layer agreement %",
            "Lava fixed: layers at 100 %", "emulator = Lava on the subset %", "emulator: lowest layer agreement %",
            "emulator accuracy % (trained net's)", "netx: lowest layer agreement %"]
    rows = []
    for net, e in res["nets"].items():
        lava, emu = e["lava"], e["emulator"]
        full = sum(1 for v in lava["layer_agreement"].values() if v == 100.0)
        netx = _min_layer(e["netx"]["layer_agreement"]) if "netx" in e else "-"
        rows.append([net, f"{100 * e['train']['test_acc']:.2f}", f"{e['train']['density']:.4f}",
                     _min_layer(lava["layer_agreement"]), f"{full} of {len(lava['layer_agreement'])}",
                     f"{emu['lava_subset_agreement']:.3f}", _min_layer(emu["layer_agreement"]),
                     f"{100 * emu['accuracy']:.2f} ({100 * emu['trained_accuracy']:.2f})", netx])
    per = ["", "Per layer (Lava fixed on the subset / emulator on the test set, % of spike entries equal to the "
               "trained network's):", ""]
    for net, e in res["nets"].items():
        order = e["layers"]
        per.append(f"{net}: " + ", ".join(
            f"{n} {e['lava']['layer_agreement'][n]:.3f}/{e['emulator']['layer_agreement'][n]:.3f}" for n in order))
        per.append("")
    cost = [C.md_table(["net", "SOPs per sample", "TrueNorth cores (packed, conv-aware)", "lower bound (local / any placement)",
                        "GPU ANN / TrueNorth energy", "GPU ANN / Loihi energy"],
                       [[net, f"{_sops(e['energy']):,.0f}", *_cores(e["energy"]), *_ratios(e["energy"])]
                        for net, e in res["nets"].items()])]
    first = next(iter(res["nets"].values()))
    intro = (f"VGGSNN and ResNet19 at width {res['width']}, ESL 10 %, `--weight-bits 8` (BatchNorm folded into the "
             f"conv during training, Lava's integer membrane decay), {first['train']['epochs']} epochs at T = "
             f"{first['train']['T']} on the first {res['train_images']:,} MNIST training images; Lava's Loihi 2 "
             f"fixed-point models on the first {args.lava_limit} test images, the bit-exact torch emulator on the first "
             + " and ".join(f"{n:,} ({net})" for net, n in res["test_images"].items())
             + " test images (the trained net's accuracy on them in brackets).\n\n")
    return intro + C.md_table(head, rows) + "\n" + "\n".join(per) + "\nCost on the Lava subset (`esl energy`):\n\n" + \
        "\n".join(cost) + ("\n\nSOPs: synaptic events (ACs) plus the first layer's MACs; energies in the papers' "
                            "convention (`hw_models/energy.py`).")


def _sops(energy: dict) -> float:
    return float(energy["totals"]["ops"])


def _cores(energy: dict):
    t = energy["totals"]
    return [f"{t['cores_packed']:,}", f"{t['cores_lower_bound_local']:,} (local) / {t['cores_lower_bound']:,}"]


def _ratios(energy: dict):
    r = energy["ratio_ann_gpu_over_snn"]
    return [f"{r['truenorth']:.2f}x", f"{r['loihi']:.2f}x"]


if __name__ == "__main__":
    main()
