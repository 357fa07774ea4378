"""The README's hardware table: cores (naive, sparsity-aware, lower bound), SOPs and energy per model.

    .venv/bin/python benchmarks/energy_table.py [RUN ...] [--epochs 40] [--out runs/results]
        [--results results] [--retrain] [--json]

Default runs (seed 0, 40 epochs, digits, under ``--out``): MLP 64-800-10 dense, ESL at 10 %, core-aware
ESL and PQ-index from a sparse start (the folders `benchmarks/digits_results.py` writes), and MLP
64-800-800-10 (`mlp2`) dense, ESL, core-aware ESL and PQ-index from a sparse start. A default run that
is missing (or made by another config, or every one with --retrain) is trained first, through the
same trainer as `esl train` (e.g. `esl train --model mlp2 --method esl --density 0.1 --core-aware
truenorth --out runs/results/mlp2_esl_core_s0`). Two MNIST runs (MLP 784-800-10, ESL at 10 %, free and
core-aware, seed 0, ``MNIST_EPOCHS`` epochs, data from ``../shared/data/mnist``) follow. Writes
``energy.md`` and ``energy.json`` into ``--results``. Each row is `esl energy RUN/checkpoint.pt --hw all
--json` on the run's test set, once per energy convention (``--convention papers`` and ``chip``):
cores of naive tiling, of the per-layer sparsity-aware placement, of the whole-network packing, and
the lower bound on any placement (layers sharing cores); a core-aware run's own row shows what
core-aware training buys.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from digits_results import ROWS  # noqa: E402
from esl_deploy.train.config import TrainConfig  # noqa: E402
from esl_deploy.train.masking import SparsityConfig  # noqa: E402

NAME = "energy"
# default run folder (under --out) -> (model, row of benchmarks/digits_results.py whose sparsity it uses)
DEFAULT = {
    "dense_s0": ("mlp", "dense"),
    "esl_s0": ("mlp", "esl"),
    "esl_core_s0": ("mlp", "esl_core"),
    "pq_layer_s0": ("mlp", "pq_layer"),
    "mlp2_dense_s0": ("mlp2", "dense"),
    "mlp2_esl_s0": ("mlp2", "esl"),
    "mlp2_esl_core_s0": ("mlp2", "esl_core"),
    "mlp2_pq_layer_s0": ("mlp2", "pq_layer"),
}
MNIST_EPOCHS = 3
MNIST_DIR = "../shared/data/mnist"
MNIST = {"mnist_esl_s0": None, "mnist_esl_core_s0": "truenorth"}  # run folder -> --core-aware


def ensure(run: Path, epochs: int, retrain: bool) -> None:
    """Train a default run (seed 0) that is missing, made by another config, or --retrain, as
    `benchmarks/digits_results.py` does."""
    if run.name in MNIST:
        cfg = TrainConfig(model="mlp", dataset="mnist", data_dir=MNIST_DIR, epochs=MNIST_EPOCHS, seed=0,
                          sparsity=SparsityConfig(method="esl", density=0.1, core_aware=MNIST[run.name]))
        C.load_or_train(cfg, run, retrain)
        return
    if run.name not in DEFAULT:
        return
    model, label = DEFAULT[run.name]
    cfg = TrainConfig(model=model, epochs=epochs, seed=0, sparsity=SparsityConfig(**ROWS[label]))
    C.load_or_train(cfg, run, retrain)


def energy_json(run: Path, *args: str) -> dict:
    """`esl energy RUN/checkpoint.pt --json ARGS` (default --hw all), parsed."""
    return C.esl_json(["energy", run.resolve() / "checkpoint.pt", *args], who=str(run))


def row(run: Path) -> dict:
    """One run's counts, cores and energies in both conventions (``esl energy --convention papers|chip``)."""
    out = {"run": str(run)}
    for conv in ("papers", "chip"):
        d = energy_json(run, "--hw", "all", "--convention", conv)
        t, e = d["totals"], d["energy_j"]
        out.update({"dataset": d["dataset"], "accuracy": d["accuracy"], "synapses": t["synapses"], "acs": t["acs"],
                    "macs": t["macs"], "cores_naive": t["cores_naive"], "cores_sparse": t["cores_sparse"],
                    "cores_packed": t["cores_packed"], "chips": t["chips"],
                    "cores_lower_bound": t["cores_lower_bound"], "gpu_ann_uj": 1e6 * e["gpu"]["total_j"]})
        out[conv] = {"truenorth_uj": 1e6 * e["truenorth"]["total_j"], "loihi_uj": 1e6 * e["loihi"]["total_j"],
                     "e45nm_uj": 1e6 * e["45nm"]["total_j"],
                     "ratio_gpu_over_truenorth": d["ratio_ann_gpu_over_snn"]["truenorth"],
                     "ratio_gpu_over_loihi": d["ratio_ann_gpu_over_snn"]["loihi"]}
    return out


def table(rows: list) -> str:
    head = ["run", "data", "test acc", "synapses", "SOPs (AC)", "MACs",
            "cores naive / per-layer / packed / lower bound",
            "dense ANN on GPU uJ", "papers: TrueNorth uJ", "papers: Loihi 1 uJ", "papers: GPU/TrueNorth",
            "chip: TrueNorth uJ", "chip: Loihi 1 uJ", "chip: GPU/TrueNorth", "45 nm uJ"]
    return C.md_table(head, ([Path(r["run"]).name, r["dataset"], f"{100 * r['accuracy']:.2f}", f"{r['synapses']:,}",
                              f"{r['acs']:,.0f}", f"{r['macs']:,.0f}",
                              f"{r['cores_naive']} / {r['cores_sparse']} / {r['cores_packed']} / {r['cores_lower_bound']}",
                              f"{r['gpu_ann_uj']:.3f}", f"{r['papers']['truenorth_uj']:.3f}",
                              f"{r['papers']['loihi_uj']:.3f}", f"{r['papers']['ratio_gpu_over_truenorth']:.2f}x",
                              f"{r['chip']['truenorth_uj']:.1f}", f"{r['chip']['loihi_uj']:.3f}",
                              f"{r['chip']['ratio_gpu_over_truenorth']:.4f}x", f"{r['papers']['e45nm_uj']:.4f}"]
                             for r in rows)) + (
        "\nEach row is one run (seed 0) and its cost per test sample; packed: layers share cores "
        "(hw_models/packing.py), the lower bound holds for any placement under those rules; a single seed's accuracy ranks no method "
        "(the digits table compares methods over seeds). papers: SOPs x energy per op per device (TrueNorth 26 pJ, "
        "Loihi 1 23.6 pJ) against FLOPs x 19.1 pJ on the GPU, the ESL-SNNs paper's comparison. chip: TrueNorth's "
        "dynamic 11.2 pJ per event plus 42 mW per occupied chip for the T + latency ticks of 1 ms a sample takes; "
        "Loihi 1 adds its neuron updates.\n")


def run_table(name: str, doc: str, defaults, row_fn, table_fn, script: str, argv=None):
    """A per-run table: parse the options, train the default runs that are missing, one row per run, publish."""
    ap = C.parser(doc, seeds=False)
    ap.add_argument("runs", nargs="*", type=Path, help="run folders (default: the DEFAULT runs under --out)")
    a = ap.parse_args(argv)
    runs = a.runs or [Path(a.out) / n for n in defaults]
    for r in runs:
        ensure(r, a.epochs, a.retrain)
    rows = [row_fn(r) for r in runs]
    return C.publish(name, rows, table_fn(rows), a, script, argv)


def main(argv=None):
    return run_table(NAME, __doc__, (*DEFAULT, *MNIST), row, table, __file__, argv)


if __name__ == "__main__":
    main()
