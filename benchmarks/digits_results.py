"""The README's accuracy / density table: every method on digits (MLP 64-800-10), same epochs and seeds.

    .venv/bin/python benchmarks/digits_results.py [--epochs 40] [--seeds 0 1 2] [--out runs/results]
        [--results results] [--retrain] [--json]

Trains each row of ``ROWS`` for each seed through the same trainer as ``esl train`` (run folders
``{row}_s{seed}`` under ``--out`` at the default 40 epochs, the runs the other digits benchmarks and
``make demo`` share; ``{row}_e{epochs}_s{seed}`` at any other budget; an existing folder made by the
same config is reused unless --retrain), then writes ``digits.md`` (the tables), ``digits.json`` and
``digits.png`` (accuracy against density) into ``--results``; at another budget the files are
``digits_e{epochs}.*`` (``make results`` also runs ``--epochs 300``, the papers' budget: the model kept
by validation within 300 epochs). Every sparse row is compared with dense, and every other sparse
row with ESL, paired by seed (``benchmarks/_common.compare``): a difference is called 'below' or
'above' only when every seed agrees in sign and a paired t-test gives p < 0.05, else 'within noise'.
"""
from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from esl_deploy.train.config import TrainConfig  # noqa: E402
from esl_deploy.train.masking import SparsityConfig  # noqa: E402
from esl_deploy.train.pq_index import PQConfig  # noqa: E402

NAME = "digits"
EPOCHS = 40  # the default budget: its run folders and results files carry no epoch suffix
# row label (= run folder prefix) -> SparsityConfig keywords
ROWS = {
    "dense": dict(method="dense", density=1.0),
    "static": dict(method="static", density=0.1),
    "set": dict(method="set", density=0.1),
    "rigl": dict(method="rigl", density=0.1),
    "esl": dict(method="esl", density=0.1),
    "esl_core": dict(method="esl", density=0.1, core_aware="truenorth"),
    "pq_layer": dict(method="pq", density=0.2, pq=PQConfig(scope="layer")),
    "pq_neuron": dict(method="pq", density=0.2, pq=PQConfig(scope="neuron")),
    "pq_dense_start": dict(method="pq", density=1.0, pq=PQConfig(scope="layer")),
    "magnitude": dict(method="magnitude", density=0.1),
}
# one short phrase per row: what the implementation does where the papers leave a choice
CONVENTIONS = {
    "dense": "all weights trained, no mask",
    "static": "random ERK mask at 10 %, never rewired",
    "set": "random regrowth of small weights, signed pruning, rewired every epoch",
    "rigl": "magnitude prune, regrow by dense gradient, cosine fraction, every T_iter",
    "esl": "magnitude prune, random regrow at 0, cosine fraction, every T_iter",
    "esl_core": "ESL with regrowth inside TrueNorth core groups",
    "pq_layer": "PQ-index ratio per layer, sparse from a 20 % ER start, momentum regrow rho=0.25",
    "pq_neuron": "PQ-index ratio per neuron, sparse from a 20 % ER start, momentum regrow rho=0.25",
    "pq_dense_start": "gradual pruning from a dense start: PQ-index ratio per layer, momentum regrow rho=0.25",
    "magnitude": "one-shot magnitude pruning to 10 % at half of training, then fine-tuning",
}
MODEL = "mlp 64-800-10"


def folder(out: Path, label: str, epochs: int, seed: int) -> Path:
    """The run folder of row ``label`` trained ``epochs`` epochs with ``seed``."""
    return Path(out) / (f"{label}_s{seed}" if epochs == EPOCHS else f"{label}_e{epochs}_s{seed}")


def results_name(epochs: int) -> str:
    return NAME if epochs == EPOCHS else f"{NAME}_e{epochs}"


def config(label: str, epochs: int, seed: int) -> TrainConfig:
    return TrainConfig(model="mlp", dataset="digits", epochs=epochs, seed=seed, sparsity=SparsityConfig(**ROWS[label]))


def run_all(epochs: int, seeds, out: Path, retrain: bool) -> dict:
    n = C.n_test("digits")
    rows = {}
    for label in ROWS:
        runs = []
        for seed in seeds:
            s = C.load_or_train(config(label, epochs, seed), folder(out, label, epochs, seed), retrain)
            runs.append({"seed": seed, "test_acc": s["test_acc"], "density": s["density"],
                         "mask_density": C.mask_density(s), "best_epoch": s["best_epoch"]})
            print(f"{label:15s} seed {seed}: test {100 * s['test_acc']:.2f} %  density {s['density']:.4f}",
                  file=sys.stderr, flush=True)
        m, sd = C.mean_sd([r["test_acc"] for r in runs])
        rows[label] = {"conventions": CONVENTIONS[label],
                       "sparsity": asdict(SparsityConfig(**ROWS[label])),
                       "runs": runs, "mean_test_acc": m, "std_test_acc": sd,
                       "mean_density": C.mean_sd([r["density"] for r in runs])[0],
                       "mean_mask_density": C.mean_sd([r["mask_density"] for r in runs])[0]}
    acc = {label: {r["seed"]: r["test_acc"] for r in row["runs"]} for label, row in rows.items()}
    for label, row in rows.items():
        if label != "dense":
            row["vs_dense"] = C.compare(acc[label], acc["dense"], "dense", n)
        if label not in ("dense", "esl"):
            row["vs_esl"] = C.compare(acc[label], acc["esl"], "ESL", n)
    return {"epochs": epochs, "seeds": list(seeds), "model": MODEL, "dataset": "digits", "n_test": n, "methods": rows}


def table(res: dict) -> str:
    seeds, rows = res["seeds"], res["methods"]
    head = (["method", "conventions", "density (nonzero)", "mask density"] + [f"seed {s}" for s in seeds]
            + ["mean ± sd"] + [f"vs dense: {h}" for h in C.COMPARISON_HEADER])
    body = []
    for label, row in rows.items():
        vs = C.comparison_cells(row["vs_dense"]) if "vs_dense" in row else ["-"] * len(C.COMPARISON_HEADER)
        body.append([label, row["conventions"], f"{row['mean_density']:.3f}", f"{row['mean_mask_density']:.3f}",
                     *(f"{100 * r['test_acc']:.2f}" for r in row["runs"]),
                     C.pm([r["test_acc"] for r in row["runs"]]), *vs])
    esl = [[label, C.pm([r["test_acc"] for r in row["runs"]]), *C.comparison_cells(row["vs_esl"])]
           for label, row in rows.items() if "vs_esl" in row]
    return (f"Test accuracy (%) on digits, {res['model']}, {res['epochs']} epochs, seeds "
            f"{' '.join(map(str, seeds))}; density = nonzero weights / all weights of the sparse layers of "
            f"the kept model, mask density = mask entries / all.\n\n"
            + C.md_table(head, body)
            + f"\nESL vs each sparse method (ESL: {C.pm([r['test_acc'] for r in rows['esl']['runs']])}):\n\n"
            + C.md_table(["method", "mean ± sd", *C.COMPARISON_HEADER], esl)
            + "\n" + C.verdict_note(res["n_test"]))


def plot(res: dict):
    fig, ax = C.figure(figsize=(6, 4))
    for label, row in res["methods"].items():
        ax.scatter([r["density"] for r in row["runs"]], [100 * r["test_acc"] for r in row["runs"]], label=label, s=25)
    ax.set(xscale="log", xlabel="connection density (kept model)", ylabel="test accuracy (%)",
           title=f"digits, MLP 64-800-10, {res['epochs']} epochs, seeds {res['seeds']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def main(argv=None) -> dict:
    ap = C.parser(__doc__)
    a = ap.parse_args(argv)
    if a.epochs < 1:
        ap.error("--epochs must be at least 1")
    res = run_all(a.epochs, a.seeds, a.out, a.retrain)
    return C.publish(results_name(a.epochs), res, table(res), a, __file__, argv, fig=plot(res))


if __name__ == "__main__":
    main()
