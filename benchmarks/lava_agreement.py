"""Spike agreement of every simulation backend with snnTorch on the digits test set (the README's table).

    .venv/bin/python benchmarks/lava_agreement.py [--out runs/results] [--results results] [--epochs 40]
        [--limit N] [--backends ...] [--retrain] [--json]

Models (trained through the same trainer as ``esl train`` when their run folder is missing, was made by
another config, or with --retrain; 40 epochs, seed 0): the MLP 64-800-10 dense and ESL at 10 %
(``runs/results/{dense,esl}_s0``, shared with ``benchmarks/digits_results.py``) and the conv net
16C3-AP2-32C3-AP2-FC10 dense and ESL at 10 % (``runs/results/convnet_{dense,esl}_s0``), and the same
four trained with ``--weight-bits 8`` (quantisation-aware: weights, biases and threshold on the integer
grid one 8-bit Loihi 2 / netx synapse group realises exactly, :func:`train.quant.loihi_quantize`; ``*_q8_s0``). Each is run by ``esl simulate`` (:func:`export.simulate.simulate`) with every
backend: ``snntorch`` (float32), ``lava`` (Loihi 2 floating-point models), ``lava-fixed`` (bit-accurate
fixed point) and ``netx`` (the lava-dl HDF5 file, loaded by ``netx.hdf5.Network``).
The reference is snnTorch in float64. A second table does the same for the dense MLP trained with TET
on a membrane readout (``--loss tet --readout membrane``, the run ``readout_tet_membrane_s0`` of
``benchmarks/readout_results.py``) on the backends that support it (``snntorch``, ``lava``): agreement
of the hidden layer's spikes, of the readout voltages' argmax, and the largest voltage difference.
Writes ``lava_agreement.md`` and ``lava_agreement.json`` into ``--results`` and prints the tables.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from esl_deploy.export.lava.run import import_lava  # noqa: E402
from esl_deploy.export.simulate import BACKENDS, simulate  # noqa: E402
from esl_deploy.train.config import TrainConfig  # noqa: E402
from esl_deploy.train.masking import SparsityConfig  # noqa: E402

NAME = "lava_agreement"
# (label, run folder, model, method, weight bits for quantisation-aware training or None)
RUNS = [("mlp dense", "dense_s0", "mlp", "dense", None), ("mlp ESL 10%", "esl_s0", "mlp", "esl", None),
        ("convnet dense", "convnet_dense_s0", "convnet", "dense", None),
        ("convnet ESL 10%", "convnet_esl_s0", "convnet", "esl", None),
        ("mlp dense, 8-bit QAT", "mlp_dense_q8_s0", "mlp", "dense", 8),
        ("mlp ESL 10%, 8-bit QAT", "mlp_esl_q8_s0", "mlp", "esl", 8),
        ("convnet dense, 8-bit QAT", "convnet_dense_q8_s0", "convnet", "dense", 8),
        ("convnet ESL 10%, 8-bit QAT", "convnet_esl_q8_s0", "convnet", "esl", 8)]


MEMBRANE_RUN = ("mlp dense, TET, membrane readout", "readout_tet_membrane_s0")
MEMBRANE_BACKENDS = ("snntorch", "lava")


def ensure_run(folder: Path, model: str, method: str, bits, epochs: int, retrain: bool = False, **kw) -> Path:
    cfg = TrainConfig(model=model, epochs=epochs, seed=0, weight_bits=bits,
                      sparsity=SparsityConfig(method=method, density=1.0 if method == "dense" else 0.1), **kw)
    C.load_or_train(cfg, folder, retrain)
    return folder / "checkpoint.pt"


def table(rows: list) -> str:
    head = ["model", "backend", "accuracy %", "snnTorch float64 %", "Δ points", "output spike agreement %",
            "lowest layer agreement %", "samples identical %", "samples/s"]
    return C.md_table(head, ([r["model"], r["backend"], f"{100 * r['accuracy']:.2f}",
                              f"{100 * r['snntorch_accuracy']:.2f}",
                              C.fmt(100 * (r["accuracy"] - r["snntorch_accuracy"]), "+.2f"),
                              f"{r['output_agreement']:.3f}", f"{r['min_layer_agreement']:.3f}",
                              f"{r['identical_outputs']:.2f}", f"{r['samples_per_s']:.1f}"] for r in rows))


def membrane_table(rows: list) -> str:
    head = ["model", "backend", "accuracy %", "snnTorch float64 %", "hidden spike agreement %",
            "readout argmax agreement %", "max abs voltage difference", "samples/s"]
    return C.md_table(head, ([r["model"], r["backend"], f"{100 * r['accuracy']:.2f}",
                              f"{100 * r['snntorch_accuracy']:.2f}", f"{r['min_layer_agreement']:.3f}",
                              f"{r['readout_argmax_agreement']:.3f}", f"{r['readout_max_abs_diff']:.2e}",
                              f"{r['samples_per_s']:.1f}"] for r in rows))


def main(argv=None) -> list:
    ap = C.parser(__doc__, seeds=False)
    ap.add_argument("--limit", type=int, default=None, help="first N test samples (default: all 360)")
    ap.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    a = ap.parse_args(argv)
    import_lava()
    rows = []
    for label, folder, model, method, bits in RUNS:
        ckpt = ensure_run(Path(a.out) / folder, model, method, bits, a.epochs, a.retrain)
        for backend in a.backends:
            r = simulate(ckpt, backend, "digits", a.limit, progress=False)
            rows.append({"model": label, "run": str(ckpt), **r.to_dict(),
                         "min_layer_agreement": min(r.layer_agreement.values())})
            print(f"{label:16s} {backend:10s} acc {100 * r.accuracy:6.2f} (ref {100 * r.snntorch_accuracy:6.2f})  "
                  f"output agreement {r.output_agreement:8.3f} %", file=sys.stderr, flush=True)
    label, folder = MEMBRANE_RUN
    ckpt = ensure_run(Path(a.out) / folder, "mlp", "dense", None, a.epochs, a.retrain, loss="tet", readout="membrane")
    mem_rows = []
    for backend in (b for b in a.backends if b in MEMBRANE_BACKENDS):
        r = simulate(ckpt, backend, "digits", a.limit, progress=False)
        # layer_agreement holds the spiking (hidden) layers only; the readout is judged by its voltages
        mem_rows.append({"model": label, "run": str(ckpt), **r.to_dict(),
                         "min_layer_agreement": min(r.layer_agreement.values())})
    markdown = table(rows) + "\nMembrane readout (hidden layer spikes; readout voltages):\n\n" + membrane_table(mem_rows)
    return C.publish(NAME, rows + mem_rows, markdown, a, __file__, argv)


if __name__ == "__main__":
    main()
