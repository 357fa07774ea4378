"""Tutorial: the papers' MNIST benchmark (784-800-10) from the config files in ``configs/``.

``configs/mnist_dense.toml``, ``configs/mnist_esl.toml`` and ``configs/mnist_pq.toml`` hold the ESL-SNNs
paper's MNIST settings (each file says which values are the paper's and which are this project's
conventions). This script trains each with ``esl train --config``, overriding only the number of
epochs (the paper: 300), costs each trained network with ``esl energy --hw truenorth`` and prints one
table: test accuracy, the density of nonzero weights, TrueNorth cores and energy per test sample.

Run it on MNIST (the four official idx files, gzip'd or not, in one folder)::

    .venv/bin/python docs/tutorials/mnist_benchmark.py --data-dir ../shared/data/mnist --epochs 10

Every command it runs is printed first (``$ esl ...``); type them yourself to get the same runs.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ESL = Path(sys.executable).with_name("esl")  # the esl command of this environment
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def esl(*args) -> str:
    """Run ``esl ARGS`` as a user would type it; its output (JSON with --json) is returned."""
    print("$ esl " + " ".join(map(str, args)), file=sys.stderr)
    r = subprocess.run([str(ESL), *map(str, args)], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"esl {args[0]} failed (exit code {r.returncode}); its message is above")
    return r.stdout


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="folder of the MNIST idx files")
    p.add_argument("--epochs", type=int, default=10, help="epochs per run (the configs, as the paper: 300)")
    p.add_argument("--configs", nargs="+", default=["mnist_dense", "mnist_esl", "mnist_pq"],
                   help="config files of configs/ to run (names without .toml)")
    p.add_argument("--energy-limit", type=int, default=None, help="cost on the first N test images only")
    p.add_argument("--out", default="runs/tutorial_mnist", help="folder of the run folders")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> list:
    args = parse(argv)
    quiet = ["--no-progress"] if args.no_progress else []
    rows = []
    for name in args.configs:
        run = Path(args.out) / name
        # 1. train: every option from the config file, the command line overrides --epochs
        summary = json.loads(esl("train", "--config", CONFIGS / f"{name}.toml", "--data-dir", args.data_dir,
                                 "--epochs", args.epochs, "--out", run, "--force", "--json", *quiet))
        # 2. cost the kept model on the test set: SOPs from its real spikes, TrueNorth cores, energy
        limit = ["--limit", args.energy_limit] if args.energy_limit else []
        cost = json.loads(esl("energy", run / "checkpoint.pt", "--hw", "truenorth", "--json", *limit))
        totals = cost["totals"]
        rows.append({
            "config": f"configs/{name}.toml", "method": summary["method"], "epochs": summary["epochs"],
            "test_acc": summary["test_acc"], "density": summary["density"], "best_epoch": summary["best_epoch"],
            "seconds_per_epoch": summary["seconds_per_epoch"], "rewired": summary["rewired_total"],
            "cores_packed": totals["cores_packed"], "cores_lower_bound": totals["cores_lower_bound"],
            "truenorth_uj": cost["energy_j"]["truenorth"]["total_j"] * 1e6,
            "gpu_ann_uj": cost["energy_j"]["gpu"]["total_j"] * 1e6, "run": str(run)})

    print(f"\nMNIST 784-800-10, {args.epochs} epoch(s) each; energy per test sample, papers' convention\n")
    print("| config | method | test acc % | density | best epoch | s/epoch | TrueNorth cores packed / bound "
          "| TrueNorth uJ | dense ANN on GPU uJ |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['config']}` | {r['method']} | {100 * r['test_acc']:.2f} | {r['density']:.4f} | {r['best_epoch']} "
              f"| {r['seconds_per_epoch']:.1f} | {r['cores_packed']} / {r['cores_lower_bound']} "
              f"| {r['truenorth_uj']:.3f} | {r['gpu_ann_uj']:.3f} |")
    print("\nEach run folder holds checkpoint.pt, metrics.csv, summary.json, config.toml and the plots; "
          "`esl train --config RUN/config.toml --out NEW` repeats a run bit for bit.")
    return rows


if __name__ == "__main__":
    main()
