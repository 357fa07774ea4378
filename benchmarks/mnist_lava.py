"""Lava at 784 inputs: the MNIST ESL model (configs/mnist_esl.toml) in Lava float and fixed point.

    .venv/bin/python benchmarks/mnist_lava.py [--mnist-epochs 10] [--data-dir ../shared/data/mnist]
        [--limit N] [--out runs/results] [--results results] [--retrain] [--json]

The run is ``mnist_esl_config_s0`` of ``benchmarks/structure_results.py`` (784-800-10, ESL 10 %, seed
0, ``--mnist-epochs`` epochs; trained if missing). Each backend is ``esl simulate RUN/checkpoint.pt
--backend B --dataset mnist --json`` on the whole 10,000-image test set (``--limit``: the first N), all
samples through one compiled Lava network: accuracy, snnTorch float64 accuracy, output and per-layer
spike agreement, identical samples and samples/s. Writes ``mnist_lava.md`` / ``mnist_lava.json``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from structure_results import DEFAULT_MNIST, mnist_config  # noqa: E402

NAME = "mnist_lava"
BACKENDS = ("lava", "lava-fixed")


def simulate(ckpt: Path, backend: str, data_dir: Path, limit) -> dict:
    args = [sys.executable, "-m", "cli", "simulate", str(ckpt.resolve()), "--backend", backend, "--dataset", "mnist",
            "--data-dir", str(data_dir.resolve()), "--json", "--no-progress"] + (["--limit", str(limit)] if limit else [])
    r = subprocess.run(args, cwd=C.ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"mnist_lava: {backend}: {r.stderr.strip()}")
    return json.loads(r.stdout)


def table(res: dict) -> str:
    head = ["backend", "samples", "accuracy %", "snnTorch float64 %", "Δ points", "output spike agreement %",
            "lowest layer agreement %", "samples identical %", "samples/s"]
    body = [[r["backend"], r["samples"], f"{100 * r['accuracy']:.2f}", f"{100 * r['snntorch_accuracy']:.2f}",
             f"{100 * (r['accuracy'] - r['snntorch_accuracy']):+.2f}", f"{r['output_agreement']:.3f}",
             f"{min(r['layer_agreement'].values()):.3f}", f"{r['identical_outputs']:.2f}", f"{r['samples_per_s']:.1f}"]
            for r in res["backends"]]
    return (f"MNIST 784-800-10, ESL 10 % ({res['epochs']} epochs of `configs/mnist_esl.toml`, seed 0, test accuracy "
            f"{100 * res['test_acc']:.2f} %), the whole test set through one compiled Lava network (Loihi 2 models).\n\n"
            + C.md_table(head, body))


def main(argv=None) -> dict:
    ap = C.parser(__doc__, seeds=False, epochs=False)
    ap.add_argument("--mnist-epochs", type=int, default=10)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_MNIST)
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args(argv)
    if not a.data_dir.is_dir():
        sys.exit(f"mnist_lava: MNIST folder not found: {a.data_dir} (give --data-dir)")
    folder = a.out / "mnist_esl_config_s0"
    summary = C.load_or_train(mnist_config(a.mnist_epochs, a.data_dir), folder, a.retrain)
    rows = [simulate(folder / "checkpoint.pt", b, a.data_dir, a.limit) for b in BACKENDS]
    res = {"epochs": a.mnist_epochs, "test_acc": summary["test_acc"], "density": summary["density"],
           "backends": rows}
    return C.publish(NAME, res, table(res), a, __file__, argv)


if __name__ == "__main__":
    main()
