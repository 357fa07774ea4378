"""How long the TrueNorth mapper takes on sparse layers of 10^6 and 10^7 synapses.

Each case is a random mask with an exact fan-in per neuron (the worst case for structure: every
neuron's inputs are spread over every axon block), plus a core-aware mask of the same size
(:func:`hw_models.core_aware.core_groups`), and two-layer chains (a layer of that size feeding a
10-neuron output layer) for the whole-network packing. Prints the seconds of ``lower_bound`` and of
``map_layer`` with each strategy, of the packed placement (:func:`hw_models.packing.pack_network`,
with its network lower bound) and the cores found; ``--json`` prints the same as JSON.

    .venv/bin/python benchmarks/bench_mapping.py [--json] [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esl_deploy.hw_models.core_aware import core_groups  # noqa: E402
from esl_deploy.hw_models.packing import PackLayer, pack_network  # noqa: E402
from esl_deploy.hw_models.truenorth import lower_bound, map_layer  # noqa: E402

# (name, neurons, axons, fan-in): 10^6 and 10^7 synapses
CASES = (
    ("1e6 random 2000x5000 @10%", 2000, 5000, 500),
    ("1e7 random 10000x10000 @10%", 10000, 10000, 1000),
)
CORE_AWARE = (
    ("1e6 core-aware 4000x2500 @10%", 4000, 2500, 0.1),
    ("1e7 core-aware 20000x5000 @10%", 20000, 5000, 0.1),
)
QUICK = (("1e5 random 1000x1000 @10%", 1000, 1000, 100),)


def random_fixed_fan_in(n: int, m: int, f: int, seed: int = 0) -> sp.csr_matrix:
    """A (n, m) bool mask whose every row has exactly f ones at random columns."""
    rng = np.random.default_rng(seed)
    cols = np.empty((n, f), dtype=np.int32)
    chunk = max(1, (1 << 24) // m)
    for s in range(0, n, chunk):
        keys = rng.random((min(chunk, n - s), m), dtype=np.float32)
        cols[s:s + chunk] = np.argpartition(keys, f, axis=1)[:, :f]
    cols.sort(axis=1)
    indptr = np.arange(0, n * f + 1, f, dtype=np.int64)
    return sp.csr_matrix((np.ones(n * f, dtype=bool), cols.reshape(-1), indptr), shape=(n, m))


def core_aware_mask(n: int, m: int, d: float, seed: int = 0) -> sp.csr_matrix:
    """A mask of density d drawn uniformly inside the core-aware pattern of an (n, m) layer."""
    rng = np.random.default_rng(seed)
    allowed = core_groups(n, m, density=d).numpy()
    idx = np.flatnonzero(allowed)
    pick = np.sort(rng.choice(idx.size, size=int(round(d * n * m)), replace=False))
    flat = idx[pick]
    return sp.csr_matrix((np.ones(flat.size, dtype=bool), (flat // m, flat % m)), shape=(n, m))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run(quick: bool) -> list:
    rows = []
    cases = [(name, lambda n=n, m=m, f=f: random_fixed_fan_in(n, m, f)) for name, n, m, f in
             (QUICK if quick else CASES)]
    if not quick:
        cases += [(name, lambda n=n, m=m, d=d: core_aware_mask(n, m, d)) for name, n, m, d in CORE_AWARE]
    for name, make in cases:
        mask = make()
        lb, t_lb = timed(lambda: lower_bound(mask))
        naive, t_naive = timed(lambda: map_layer(mask, "naive"))
        sparse, t_sparse = timed(lambda: map_layer(mask, "sparse"))
        # the layer reads on-chip sources and feeds a 10-neuron output layer at 10 % (a two-layer chain)
        out = random_fixed_fan_in(10, mask.shape[0], max(1, mask.shape[0] // 10), seed=1)
        chain = [PackLayer("hidden", mask, source_on_chip=True), PackLayer("out", out, True, after_previous=True)]
        packed, t_packed = timed(lambda: pack_network(chain))
        rows.append({"case": name, "synapses": int(mask.nnz), "seconds_lower_bound": round(t_lb, 3),
                     "seconds_naive": round(t_naive, 3), "seconds_sparse": round(t_sparse, 3),
                     "cores_naive": naive.cores, "cores_sparse": sparse.cores, "placement": sparse.placement,
                     "lower_bound": lb.cores, "chain_synapses": int(mask.nnz + out.nnz),
                     "seconds_packed": round(t_packed, 3), "chain_cores_per_layer": packed.per_layer_cores,
                     "chain_cores_packed": packed.cores, "chain_lower_bound": packed.lower_bound})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--quick", action="store_true", help="one small case (10^5 synapses)")
    args = ap.parse_args(argv)
    rows = run(args.quick)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'case':34s} {'synapses':>10s} {'LB s':>6s} {'naive s':>8s} {'sparse s':>9s} "
          f"{'naive':>6s} {'sparse':>7s} {'LB':>5s}  {'placement':18s} | chain: {'packed s':>8s} "
          f"{'per-layer':>9s} {'packed':>6s} {'LB':>5s}")
    for r in rows:
        print(f"{r['case']:34s} {r['synapses']:>10,d} {r['seconds_lower_bound']:>6.2f} {r['seconds_naive']:>8.2f} "
              f"{r['seconds_sparse']:>9.2f} {r['cores_naive']:>6d} {r['cores_sparse']:>7d} {r['lower_bound']:>5d}  "
              f"{r['placement']:18s} | {'':7s}{r['seconds_packed']:>8.2f} {r['chain_cores_per_layer']:>9d} "
              f"{r['chain_cores_packed']:>6d} {r['chain_lower_bound']:>5d}")


if __name__ == "__main__":
    main()
