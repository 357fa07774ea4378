"""The README's hardware table: cores (naive, sparsity-aware, lower bound), SOPs and energy per model.

    .venv/bin/python benchmarks/energy_table.py [RUN ...] [--json]

Default runs (seed 0, 40 epochs, digits): MLP 64-800-10 dense, ESL at 10 %, core-aware ESL and
PQ-index (the folders `benchmarks/digits_results.py` writes), and MLP 64-800-800-10 (`mlp2`) dense,
ESL, core-aware ESL and PQ-index. A missing default run is trained first, through
the same trainer as `esl train` (e.g. `esl train --model mlp2 --method esl --density 0.1 --core-aware
truenorth --out runs/results/mlp2_esl_core_s0`). Each row is `esl energy RUN/checkpoint.pt --hw all
--json` on the digits test set: cores of naive tiling, of the sparsity-aware placement, and the lower
bound; a core-aware run's own row shows what core-aware training buys.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# run folder -> (model, method, start density, core-aware)
DEFAULT = {
    "runs/results/dense_s0": ("mlp", "dense", 1.0, None),
    "runs/results/esl_s0": ("mlp", "esl", 0.1, None),
    "runs/results/esl_core_s0": ("mlp", "esl", 0.1, "truenorth"),
    "runs/results/pq_s0": ("mlp", "pq", 1.0, None),
    "runs/results/mlp2_dense_s0": ("mlp2", "dense", 1.0, None),
    "runs/results/mlp2_esl_s0": ("mlp2", "esl", 0.1, None),
    "runs/results/mlp2_esl_core_s0": ("mlp2", "esl", 0.1, "truenorth"),
    "runs/results/mlp2_pq_s0": ("mlp2", "pq", 1.0, None),
}


def ensure(run: str) -> None:
    """Train a missing default run (seed 0, 40 epochs) as `benchmarks/digits_results.py` does."""
    if (ROOT / run / "checkpoint.pt").is_file() or run not in DEFAULT:
        return
    from train.config import TrainConfig
    from train.masking import SparsityConfig
    from train.trainer import train

    model, method, density, core_aware = DEFAULT[run]
    cfg = TrainConfig(model=model, epochs=40, seed=0,
                      sparsity=SparsityConfig(method=method, density=density, core_aware=core_aware))
    print(f"training {run} ...", file=sys.stderr, flush=True)
    train(cfg, ROOT / run, force=True, progress=False)


def row(run: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "cli", "energy", f"{run}/checkpoint.pt", "--hw", "all", "--json"],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{run}: {r.stderr.strip()}")
    d = json.loads(r.stdout)
    t, e = d["totals"], d["energy_j"]
    return {"run": run, "accuracy": d["accuracy"], "synapses": t["synapses"], "acs": t["acs"], "macs": t["macs"],
            "cores_naive": t["cores_naive"], "cores_sparse": t["cores_sparse"], "cores_lower_bound": t["cores_lower_bound"],
            "truenorth_uj": 1e6 * e["truenorth"]["total_j"], "loihi_uj": 1e6 * e["loihi"]["total_j"],
            "e45nm_uj": 1e6 * e["45nm"]["total_j"],
            "gpu_ann_uj": 1e6 * e["gpu"]["total_j"], "ratio_gpu_over_truenorth": d["ratio_ann_gpu_over_snn"]["truenorth"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", default=list(DEFAULT))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    for r in a.runs:
        ensure(r)
    rows = [row(r) for r in a.runs]
    if a.json:
        print(json.dumps(rows, indent=2))
        return rows
    print("| run | test acc | synapses | SOPs (AC) | MACs | cores naive / sparse-aware / lower bound | TrueNorth uJ | "
          "Loihi uJ | 45 nm uJ | dense ANN on GPU uJ | GPU/TrueNorth |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {Path(r['run']).name} | {100 * r['accuracy']:.2f} | {r['synapses']:,} | {r['acs']:,.0f} | {r['macs']:,.0f} | "
              f"{r['cores_naive']} / {r['cores_sparse']} / {r['cores_lower_bound']} | {r['truenorth_uj']:.3f} | "
              f"{r['loihi_uj']:.3f} | {r['e45nm_uj']:.4f} | {r['gpu_ann_uj']:.3f} | {r['ratio_gpu_over_truenorth']:.2f}x |")
    return rows


if __name__ == "__main__":
    main()
