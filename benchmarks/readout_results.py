"""Loss and readout of the dense digits MLP: spike counts or membrane potential, cross-entropy or TET.

    .venv/bin/python benchmarks/readout_results.py [--epochs 40] [--seeds 0 1 2] [--out runs/results]
        [--results results] [--retrain] [--json] [--combos ce:spikes tet:spikes ...]

Trains the dense MLP 64-800-10 on digits for each (loss, readout) of ``COMBOS`` and each seed through
the same trainer as ``esl train`` (``TrainConfig(loss=..., readout=...)``; run folders
``readout_{loss}_{readout}_s{seed}`` under ``--out``, except (ce, spikes), which is the ``dense_s{seed}``
run of ``benchmarks/digits_results.py``). Writes ``readout.md`` and ``readout.json`` into
``--results``: mean ± sd test accuracy per combination and each one against (ce, spikes), paired by
seed (``benchmarks/_common.compare``).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from esl_deploy.train.config import TrainConfig  # noqa: E402
from esl_deploy.train.masking import SparsityConfig  # noqa: E402

NAME = "readout"
COMBOS = (("ce", "spikes"), ("tet", "spikes"), ("ce", "membrane"), ("tet", "membrane"))
REFERENCE = ("ce", "spikes")


def folder(out: Path, loss: str, readout: str, seed: int) -> Path:
    name = "dense" if (loss, readout) == REFERENCE else f"readout_{loss}_{readout}"
    return Path(out) / f"{name}_s{seed}"


def config(loss: str, readout: str, epochs: int, seed: int) -> TrainConfig:
    return TrainConfig(model="mlp", dataset="digits", epochs=epochs, seed=seed, loss=loss, readout=readout,
                       sparsity=SparsityConfig(method="dense", density=1.0))


def run_all(combos, epochs: int, seeds, out: Path, retrain: bool) -> dict:
    n = C.n_test("digits")
    rows = {}
    for loss, readout in combos:
        runs = []
        for seed in seeds:
            s = C.load_or_train(config(loss, readout, epochs, seed), folder(out, loss, readout, seed), retrain)
            runs.append({"seed": seed, "test_acc": s["test_acc"], "best_epoch": s["best_epoch"]})
            print(f"{loss}/{readout} seed {seed}: test {100 * s['test_acc']:.2f} %", file=sys.stderr, flush=True)
        m, sd = C.mean_sd([r["test_acc"] for r in runs])
        rows[f"{loss}, {readout}"] = {"loss": loss, "readout": readout, "runs": runs, "mean_test_acc": m,
                                      "std_test_acc": sd}
    ref = ", ".join(REFERENCE)
    if ref in rows:
        acc = {k: {r["seed"]: r["test_acc"] for r in v["runs"]} for k, v in rows.items()}
        for k, row in rows.items():
            if k != ref:
                row["vs_reference"] = C.compare(acc[k], acc[ref], f"{REFERENCE[0]}/{REFERENCE[1]}", n)
    return {"model": "mlp 64-800-10", "method": "dense", "dataset": "digits", "epochs": epochs, "seeds": list(seeds),
            "n_test": n, "reference": ref, "combos": rows}


def table(res: dict) -> str:
    seeds = res["seeds"]
    head = (["loss", "readout"] + [f"seed {s}" for s in seeds] + ["mean ± sd"]
            + [f"vs {res['reference']}: {h}" for h in C.COMPARISON_HEADER])
    body = []
    for row in res["combos"].values():
        vs = C.comparison_cells(row["vs_reference"]) if "vs_reference" in row else ["-"] * len(C.COMPARISON_HEADER)
        body.append([row["loss"], row["readout"], *(f"{100 * r['test_acc']:.2f}" for r in row["runs"]),
                     C.pm([r["test_acc"] for r in row["runs"]]), *vs])
    return (f"Test accuracy (%) of the dense {res['model']} on digits, {res['epochs']} epochs, seeds "
            f"{' '.join(map(str, seeds))}.\n\n" + C.md_table(head, body) + "\n" + C.verdict_note(res["n_test"]))


def main(argv=None) -> dict:
    ap = C.parser(__doc__)
    ap.add_argument("--combos", nargs="+", default=[f"{l}:{r}" for l, r in COMBOS], metavar="LOSS:READOUT",
                    help="the (loss, readout) pairs to train (default: all four)")
    a = ap.parse_args(argv)
    combos = []
    for c in a.combos:
        loss, _, readout = c.partition(":")
        config(loss, readout, 1, 0)  # a bad loss or readout fails here, before any training
        combos.append((loss, readout))
    res = run_all(combos, a.epochs, a.seeds, a.out, a.retrain)
    return C.publish(NAME, res, table(res), a, __file__, argv)


if __name__ == "__main__":
    main()
