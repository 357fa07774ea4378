"""Lava at 784 inputs: the MNIST ESL models (configs/mnist_esl.toml) in Lava float, fixed point and netx.

    .venv/bin/python benchmarks/mnist_lava.py [--mnist-epochs 10] [--data-dir ../shared/data/mnist]
        [--limit N] [--out runs/results] [--results results] [--retrain] [--json]

The run is ``mnist_esl_config_s0`` of ``benchmarks/structure_results.py`` (784-800-10, ESL 10 %, seed
0, ``--mnist-epochs`` epochs; trained if missing). Each backend is ``esl simulate RUN/checkpoint.pt
--backend B --dataset mnist --json`` on the whole 10,000-image test set (``--limit``: the first N), all
samples through one compiled Lava network: accuracy, snnTorch float64 accuracy, output and per-layer
spike agreement, identical samples and samples/s. Writes ``mnist_lava.md`` / ``mnist_lava.json``.

Two models: the float-trained run (Lava float and fixed point: the post-training rounding), and the same
configuration trained with ``--weight-bits 8`` (``mnist_esl_qat8_s0``: weights, biases and threshold
on the integer grid of :func:`train.quant.loihi_quantize`; the first layer's k/255 input is not exact), in Lava float, fixed point and lava-dl netx. Each backend's JSON is kept
in the run folder (``simulate_BACKEND[_N].json``) and reused while it is newer than the checkpoint.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from structure_results import DEFAULT_MNIST, mnist_config  # noqa: E402

NAME = "mnist_lava"
MODELS = {  # run folder -> (label, weight bits, backends)
    "mnist_esl_config_s0": ("ESL 10 %", None, ("lava", "lava-fixed")),
    "mnist_esl_qat8_s0": ("ESL 10 %, 8-bit QAT", 8, ("lava", "lava-fixed", "netx")),
}


def simulate(ckpt: Path, backend: str, data_dir: Path, limit) -> dict:
    """``esl simulate`` of ``ckpt`` on ``backend`` (its JSON cached beside the checkpoint)."""
    return C.esl_json(["simulate", ckpt.resolve(), "--backend", backend, "--dataset", "mnist", "--data-dir",
                       data_dir.resolve(), "--no-progress"] + (["--limit", limit] if limit else []),
                      cache=ckpt.parent / f"simulate_{backend}{'_' + str(limit) if limit else ''}.json",
                      newer_than=ckpt, who=f"mnist_lava: {backend}")


def table(res: dict) -> str:
    head = ["model", "test acc % (trained)", "backend", "samples", "accuracy %", "snnTorch float64 %", "Δ points", "output spike agreement %",
            "lowest layer agreement %", "samples identical %", "samples/s"]
    body = [[r["model"], f"{100 * r['test_acc']:.2f}", r["backend"], r["samples"], f"{100 * r['accuracy']:.2f}", f"{100 * r['snntorch_accuracy']:.2f}",
             f"{100 * (r['accuracy'] - r['snntorch_accuracy']):+.2f}", f"{r['output_agreement']:.3f}",
             f"{min(r['layer_agreement'].values()):.3f}", f"{r['identical_outputs']:.2f}", f"{r['samples_per_s']:.1f}"]
            for r in res["backends"]]
    return (f"MNIST 784-800-10, ESL 10 % ({res['epochs']} epochs of `configs/mnist_esl.toml`, seed 0), float-trained "
            f"and 8-bit quantisation-aware (`--weight-bits 8`); the test set through one compiled Lava network "
            f"(Loihi 2 models) per backend; Δ points = accuracy minus the snnTorch float64 accuracy of the same model.\n\n"
            + C.md_table(head, body))


def main(argv=None) -> dict:
    ap = C.parser(__doc__, seeds=False, epochs=False)
    ap.add_argument("--mnist-epochs", type=int, default=10)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_MNIST)
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args(argv)
    if not a.data_dir.is_dir():
        sys.exit(f"mnist_lava: MNIST folder not found: {a.data_dir} (give --data-dir)")
    rows = []
    for run, (label, bits, backends) in MODELS.items():
        folder = a.out / run
        cfg = dataclasses.replace(mnist_config(a.mnist_epochs, a.data_dir), weight_bits=bits)
        summary = C.load_or_train(cfg, folder, a.retrain)
        for b in backends:
            rows.append({"model": label, "run": run, "test_acc": summary["test_acc"], "density": summary["density"],
                         **simulate(folder / "checkpoint.pt", b, a.data_dir, a.limit)})
    res = {"epochs": a.mnist_epochs, "backends": rows}
    return C.publish(NAME, res, table(res), a, __file__, argv)


if __name__ == "__main__":
    main()
