"""The README's hardware table: cores (naive, sparsity-aware, lower bound), SOPs and energy per model.

    .venv/bin/python benchmarks/energy_table.py [RUN ...] [--json]

Default runs are those `benchmarks/digits_results.py` writes (seed 0) plus core-aware ESL
(`esl train --method esl --density 0.1 --core-aware truenorth --seed S --out runs/results/esl_core_sS`).
Each row is `esl energy RUN/checkpoint.pt --hw all --json` on the digits test set.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["runs/results/dense_s0", "runs/results/esl_s0", "runs/results/esl_core_s0", "runs/results/pq_s0"]


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
    ap.add_argument("runs", nargs="*", default=DEFAULT)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
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
