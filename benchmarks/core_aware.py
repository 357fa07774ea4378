"""Core-aware ESL against unconstrained ESL: accuracy and TrueNorth cores (the README's core-aware table).

    .venv/bin/python benchmarks/core_aware.py [--epochs 40] [--seeds 0 1 2] [--out runs/results] [--json]

For each model (``mlp`` 64-800-10 and ``mlp2`` 64-800-800-10 on digits) and seed, trains ESL at 10 %
density with and without ``--core-aware truenorth`` through the same trainer as ``esl train`` (run
folders ``{model}_esl_s{seed}`` / ``{model}_esl_core_s{seed}`` under ``--out``; the 64-800-10 runs
share the folders of ``benchmarks/digits_results.py``: ``esl_s{seed}`` / ``esl_core_s{seed}``), then
maps each kept model onto TrueNorth cores (naive tiling, sparsity-aware placement, lower bound).
Existing runs are reused (pass --retrain to train again). Writes ``core_aware.json`` and prints a
Markdown table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import esl_deploy  # noqa: E402
from esl_deploy.checkpoint import atomic_write_text  # noqa: E402
from hw_models.truenorth import map_network  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.masking import SparsityConfig  # noqa: E402
from train.trainer import train  # noqa: E402

MODELS = ("mlp", "mlp2")


def folder(out: Path, model: str, core_aware: bool, seed: int) -> Path:
    prefix = "" if model == "mlp" else f"{model}_"
    return out / f"{prefix}esl{'_core' if core_aware else ''}_s{seed}"


def run_one(out: Path, model: str, core_aware: bool, seed: int, epochs: int, retrain: bool) -> dict:
    run = folder(out, model, core_aware, seed)
    summary = run / "summary.json"
    if summary.is_file() and not retrain:
        s = json.loads(summary.read_text())
    else:
        cfg = TrainConfig(model=model, epochs=epochs, seed=seed,
                          sparsity=SparsityConfig(method="esl", density=0.1,
                                                  core_aware="truenorth" if core_aware else None))
        s = train(cfg, run, force=True, progress=False)
    net = esl_deploy.load(run / "checkpoint.pt")
    naive, sparse = map_network(net, "naive"), map_network(net, "sparse")
    return {"run": str(run), "seed": seed, "test_acc": s["test_acc"], "density": s["density"],
            "cores_naive": naive.cores, "cores_sparse": sparse.cores, "cores_lower_bound": sparse.lower_bound,
            "partial_sum_neurons": sum(l.partial_sum_neurons for l in sparse.layers)}


def summarise(runs) -> dict:
    acc = [r["test_acc"] for r in runs]
    return {"runs": runs, "mean_test_acc": statistics.mean(acc),
            **{f"mean_{k}": statistics.mean(r[k] for r in runs)
               for k in ("cores_naive", "cores_sparse", "cores_lower_bound")},
            "max_cores_over_lower_bound": max(r["cores_sparse"] / r["cores_lower_bound"] for r in runs)}


def table(res: dict) -> str:
    lines = ["| model | ESL | test acc (mean of seeds) | Δ vs free ESL | cores naive | cores sparsity-aware | "
             "lower bound | max cores / lower bound |", "|---|---|---|---|---|---|---|---|"]
    for model, rows in res["models"].items():
        for kind in ("free", "core_aware"):
            r = rows[kind]
            delta = 100 * (r["mean_test_acc"] - rows["free"]["mean_test_acc"])
            lines.append(f"| {model} | {'core-aware' if kind == 'core_aware' else 'unconstrained'} | "
                         f"{100 * r['mean_test_acc']:.2f} | {delta:+.2f} | {r['mean_cores_naive']:g} | "
                         f"{r['mean_cores_sparse']:g} | {r['mean_cores_lower_bound']:g} | "
                         f"{r['max_cores_over_lower_bound']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/results"))
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = {"dataset": "digits", "method": "esl", "density": 0.1, "epochs": a.epochs, "seeds": a.seeds, "models": {}}
    for model in MODELS:
        res["models"][model] = {
            ("core_aware" if ca else "free"): summarise([run_one(a.out, model, ca, s, a.epochs, a.retrain)
                                                          for s in a.seeds])
            for ca in (False, True)}
        print(f"{model}: done", file=sys.stderr, flush=True)
    atomic_write_text(a.out / "core_aware.json", json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2) if a.json else table(res))
    return res


if __name__ == "__main__":
    main()
