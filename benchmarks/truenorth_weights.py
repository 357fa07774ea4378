"""TrueNorth's weight rule on trained ESL nets: accuracy with float and TrueNorth weights, weight error,
and the axons/cores that axon duplication costs (the README's TrueNorth-weights table).

    .venv/bin/python benchmarks/truenorth_weights.py [RUN ...] [--epochs 40] [--out runs/results]
        [--results results] [--retrain] [--json]

Default runs (under ``--out``, trained first when missing, as ``benchmarks/energy_table.py`` does):
the digits MLP 64-800-10 ESL at 10 % (``esl_s0``), ``mlp2`` ESL and core-aware ESL, and the MNIST MLP
784-800-10 ESL runs (free and core-aware). Each is `esl energy RUN --truenorth-weights MODE --json` for
both modes (``duplicate``: 4 levels per neuron, one axon per (source, type) a core needs, also after
``--tn-finetune 1``, one epoch of fine-tuning the levels on the training split; ``cluster``:
one type per source, no duplication) on the run's whole test set. Writes ``truenorth_weights.md`` and
``truenorth_weights.json`` into ``--results``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from energy_table import MNIST, energy_json, run_table  # noqa: E402

NAME = "truenorth_weights"
DEFAULT = ("esl_s0", "mlp2_esl_s0", "mlp2_esl_core_s0", *MNIST)
MODES = ("duplicate", "cluster")
FINETUNE = 1  # epochs of fine-tuning the shared TrueNorth weights (esl energy --tn-finetune)


def row(run: Path) -> dict:
    out = {"run": str(run)}
    for mode in MODES:
        ft = ["--tn-finetune", str(FINETUNE)] if mode == "duplicate" else []
        d = energy_json(run, "--hw", "truenorth", "--truenorth-weights", mode, *ft)
        tn = d["truenorth_weights"]
        out["dataset"], out["accuracy_float"] = d["dataset"], tn["accuracy_float"]
        out[mode] = {"accuracy": tn["accuracy_truenorth"], "extra_axons": tn["extra_axons"],
                     "accuracy_finetuned": tn.get("accuracy_truenorth_finetuned"),
                     "cores": tn["packed_cores"], "cores_duplicated": tn["packed_cores_duplicated"],
                     "rel_error": {l["name"]: l["rel_error"] for l in tn["layers"]}}
    return out


def table(rows: list) -> str:
    head = ["run", "data", "float acc", "duplicate: acc (Δ points)",
            f"duplicate, levels fine-tuned {FINETUNE} epoch: acc (Δ points)", "duplicate: weight error per layer",
            "duplicate: extra axons", "duplicate: packed cores", "cluster: acc (Δ points)",
            "cluster: weight error per layer"]
    body = []
    for r in rows:
        f = 100 * r["accuracy_float"]
        d, c = r["duplicate"], r["cluster"]
        body.append([Path(r["run"]).name, r["dataset"], f"{f:.2f}", f"{100 * d['accuracy']:.2f} ({100 * d['accuracy'] - f:+.2f})",
                     f"{100 * d['accuracy_finetuned']:.2f} ({100 * d['accuracy_finetuned'] - f:+.2f})",
                     " / ".join(f"{100 * e:.1f} %" for e in d["rel_error"].values()), f"+{d['extra_axons']:,}",
                     f"{d['cores']} -> {d['cores_duplicated']}",
                     f"{100 * c['accuracy']:.2f} ({100 * c['accuracy'] - f:+.2f})",
                     " / ".join(f"{100 * e:.1f} %" for e in c["rel_error"].values())])
    return C.md_table(head, body) + (
        "\nTrueNorth weights: 4 axon types per core, one 9-bit signed weight (|S| <= 255) per neuron and type "
        "(Merolla et al. 2014). duplicate: each neuron's weights clustered into 4 levels (optimal 1-D k-means), a "
        "source gets one axon per type its synapses on a core use; the duplicated masks are packed again. cluster: "
        "one type per source for the whole layer, least-squares weight per neuron and type. Fine-tuned: the 4 levels of "
        f"each neuron (and partial sum) trained as shared weights for {FINETUNE} epoch on the training split (Adam, "
        "lr 1e-3; types and mask fixed), then put back on the neuron's 9-bit grid (`esl energy --tn-finetune`). "
        "Weight error = "
        "||W_tn - W|| / ||W|| over the synapses, per synaptic layer. Accuracy on the whole test set, same LIF "
        "dynamics and input as the float run (TrueNorth's linear leak and binary input are not modelled).\n")


def main(argv=None):
    return run_table(NAME, __doc__, DEFAULT, row, table, __file__, argv)


if __name__ == "__main__":
    main()
