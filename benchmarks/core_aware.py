"""Core-aware ESL against unconstrained ESL: accuracy and TrueNorth cores (the README's core-aware table).

    .venv/bin/python benchmarks/core_aware.py [--epochs 40] [--seeds 0 1 2] [--out runs/results]
        [--results results] [--retrain] [--json]

For each model (``mlp`` 64-800-10 and ``mlp2`` 64-800-800-10 on digits) and seed, trains ESL at 10 %
density with and without ``--core-aware truenorth`` through the same trainer as ``esl train`` (run
folders ``{model}_esl_s{seed}`` / ``{model}_esl_core_s{seed}`` under ``--out``; the 64-800-10 runs
share the folders of ``benchmarks/digits_results.py``: ``esl_s{seed}`` / ``esl_core_s{seed}``), then
maps each kept model onto TrueNorth cores (naive tiling, per-layer sparsity-aware placement, the
whole-network packing of ``hw_models/packing.py`` and its lower bound on any placement).
A run folder made by the same config is reused (pass --retrain to train again). Writes
``core_aware.md`` and ``core_aware.json`` into ``--results``; the accuracy of core-aware ESL is
compared with unconstrained ESL paired by seed (``benchmarks/_common.compare``).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import esl_deploy  # noqa: E402
from esl_deploy.hw_models.packing import pack_network  # noqa: E402
from esl_deploy.hw_models.truenorth import map_layers  # noqa: E402
from esl_deploy.hw_models.unroll import synaptic_layers  # noqa: E402
from esl_deploy.train.config import TrainConfig  # noqa: E402
from esl_deploy.train.masking import SparsityConfig  # noqa: E402

NAME = "core_aware"
MODELS = ("mlp", "mlp2")


def folder(out: Path, model: str, core_aware: bool, seed: int) -> Path:
    prefix = "" if model == "mlp" else f"{model}_"
    return Path(out) / f"{prefix}esl{'_core' if core_aware else ''}_s{seed}"


def run_one(out: Path, model: str, core_aware: bool, seed: int, epochs: int, retrain: bool) -> dict:
    run = folder(out, model, core_aware, seed)
    cfg = TrainConfig(model=model, epochs=epochs, seed=seed,
                      sparsity=SparsityConfig(method="esl", density=0.1, core_aware="truenorth" if core_aware else None))
    s = C.load_or_train(cfg, run, retrain)
    net = esl_deploy.load(run / "checkpoint.pt")
    layers = synaptic_layers(net)
    naive, sparse = map_layers(layers, "naive"), map_layers(layers, "sparse")
    packed = pack_network(layers, per_layer_cores=sparse.cores)
    return {"run": str(run), "seed": seed, "test_acc": s["test_acc"], "density": s["density"],
            "mask_density": C.mask_density(s),
            "cores_naive": naive.cores, "cores_sparse": sparse.cores, "cores_packed": packed.cores,
            "cores_lower_bound": packed.lower_bound, "cores_lower_bound_per_layer": sparse.lower_bound,
            "partial_sum_neurons": sum(l.partial_sum_neurons for l in sparse.layers)}


def summarise(runs) -> dict:
    m, sd = C.mean_sd([r["test_acc"] for r in runs])
    return {"runs": runs, "mean_test_acc": m, "std_test_acc": sd,
            **{f"mean_{k}": statistics.mean(r[k] for r in runs)
               for k in ("cores_naive", "cores_sparse", "cores_packed", "cores_lower_bound")},
            "max_cores_over_lower_bound": max(r["cores_packed"] / r["cores_lower_bound"] for r in runs)}


def table(res: dict) -> str:
    head = ["model", "ESL", "test acc mean ± sd", *(f"vs free ESL: {h}" for h in C.COMPARISON_HEADER),
            "cores naive", "cores per-layer", "cores packed", "lower bound", "max packed / lower bound"]
    body = []
    for model, rows in res["models"].items():
        for kind in ("free", "core_aware"):
            r = rows[kind]
            vs = C.comparison_cells(r["vs_free"]) if "vs_free" in r else ["-"] * len(C.COMPARISON_HEADER)
            body.append([model, "core-aware" if kind == "core_aware" else "unconstrained",
                         C.pm([x["test_acc"] for x in r["runs"]]), *vs, f"{r['mean_cores_naive']:.3g}",
                         f"{r['mean_cores_sparse']:.3g}", f"{r['mean_cores_packed']:.3g}",
                         f"{r['mean_cores_lower_bound']:.3g}",
                         f"{r['max_cores_over_lower_bound']:.2f}"])
    return (f"ESL at 10 % density on digits, {res['epochs']} epochs, seeds {' '.join(map(str, res['seeds']))}; "
            f"cores are means over the seeds; packed: layers share cores (hw_models/packing.py), lower bound: any "
            f"placement under those rules.\n\n" + C.md_table(head, body) + "\n" + C.verdict_note(res["n_test"]))


def main(argv=None) -> dict:
    a = C.parser(__doc__).parse_args(argv)
    n = C.n_test("digits")
    res = {"dataset": "digits", "method": "esl", "density": 0.1, "epochs": a.epochs, "seeds": a.seeds, "n_test": n,
           "models": {}}
    for model in MODELS:
        rows = {("core_aware" if ca else "free"): summarise([run_one(a.out, model, ca, s, a.epochs, a.retrain)
                                                              for s in a.seeds])
                for ca in (False, True)}
        acc = {k: {r["seed"]: r["test_acc"] for r in v["runs"]} for k, v in rows.items()}
        rows["core_aware"]["vs_free"] = C.compare(acc["core_aware"], acc["free"], "free ESL", n)
        res["models"][model] = rows
        print(f"{model}: done", file=sys.stderr, flush=True)
    return C.publish(NAME, res, table(res), a, __file__, argv)


if __name__ == "__main__":
    main()
