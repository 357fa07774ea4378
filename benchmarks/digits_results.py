"""The README's accuracy / density table: every method on digits (MLP 64-800-10), same epochs and seeds.

    .venv/bin/python benchmarks/digits_results.py [--epochs 40] [--seeds 0 1 2] [--out runs/results] [--json]

Trains each method (dense, static, SET, RigL, ESL at 10 % density, ESL with ``--core-aware truenorth``
(row ``esl_core``); PQ-index from dense; magnitude pruning to 10 %) for each seed through the same trainer as ``esl train``, then writes
``results.json``, ``results.md`` (the table) and ``results.png`` (accuracy against density) into
``--out``. Existing run folders are reused (delete them, or pass --retrain).
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import esl_deploy  # noqa: E402,F401
from esl_deploy.checkpoint import atomic_write_bytes, atomic_write_text  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.masking import SparsityConfig  # noqa: E402
from train.trainer import train  # noqa: E402

# (row label = run folder prefix, method, start density, core-aware target)
METHODS = [("dense", "dense", 1.0, None), ("static", "static", 0.1, None), ("set", "set", 0.1, None),
           ("rigl", "rigl", 0.1, None), ("esl", "esl", 0.1, None), ("esl_core", "esl", 0.1, "truenorth"),
           ("pq", "pq", 1.0, None), ("magnitude", "magnitude", 0.1, None)]


def run_all(epochs: int, seeds, out: Path, retrain: bool) -> dict:
    rows = {}
    for label, method, density, core_aware in METHODS:
        per_seed = []
        for seed in seeds:
            folder = out / f"{label}_s{seed}"
            summary_file = folder / "summary.json"
            if summary_file.is_file() and not retrain:
                s = json.loads(summary_file.read_text())
            else:
                cfg = TrainConfig(epochs=epochs, seed=seed, sparsity=SparsityConfig(method=method, density=density,
                                                                                  core_aware=core_aware))
                s = train(cfg, folder, force=True, progress=False)
            per_seed.append({"seed": seed, "test_acc": s["test_acc"], "density": s["density"],
                             "best_epoch": s["best_epoch"]})
            print(f"{label:9s} seed {seed}: test {100 * s['test_acc']:.2f} %  density {s['density']:.4f}", flush=True)
        accs = [r["test_acc"] for r in per_seed]
        rows[label] = {"core_aware": core_aware, "start_density": density, "runs": per_seed, "mean_test_acc": statistics.mean(accs),
                        "std_test_acc": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                        "mean_density": statistics.mean(r["density"] for r in per_seed)}
    dense = {r["seed"]: r["test_acc"] for r in rows["dense"]["runs"]}
    for method, row in rows.items():
        row["delta_vs_dense_per_seed"] = [r["test_acc"] - dense[r["seed"]] for r in row["runs"]]
        row["delta_vs_dense_mean"] = row["mean_test_acc"] - rows["dense"]["mean_test_acc"]
    return {"epochs": epochs, "seeds": list(seeds), "model": "mlp 64-800-10", "dataset": "digits", "methods": rows}


def table(res: dict) -> str:
    seeds = res["seeds"]
    head = "| method | density | " + " | ".join(f"test acc seed {s}" for s in seeds) + " | mean ± sd | Δ vs dense (mean) |"
    lines = [head, "|" + "---|" * (len(seeds) + 4)]
    for method, row in res["methods"].items():
        accs = " | ".join(f"{100 * r['test_acc']:.2f}" for r in row["runs"])
        lines.append(f"| {method} | {row['mean_density']:.3f} | {accs} | {100 * row['mean_test_acc']:.2f} ± "
                     f"{100 * row['std_test_acc']:.2f} | {100 * row['delta_vs_dense_mean']:+.2f} |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, row in res["methods"].items():
        xs = [r["density"] for r in row["runs"]]
        ys = [100 * r["test_acc"] for r in row["runs"]]
        ax.scatter(xs, ys, label=method, s=25)
    ax.set(xscale="log", xlabel="connection density (kept model)", ylabel="test accuracy (%)",
           title=f"digits, MLP 64-800-10, {res['epochs']} epochs, seeds {res['seeds']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/results"))
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run_all(a.epochs, a.seeds, a.out, a.retrain)
    atomic_write_text(a.out / "results.json", json.dumps(res, indent=2) + "\n")
    atomic_write_text(a.out / "results.md", table(res))
    plot(res, a.out / "results.png")
    print(json.dumps(res, indent=2) if a.json else table(res))
    return res


if __name__ == "__main__":
    main()
