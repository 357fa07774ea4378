"""What ESL learned: first-layer fan-out, degrees and rewiring of the digits and the MNIST ESL runs.

    .venv/bin/python benchmarks/structure_results.py [--epochs 40] [--mnist-epochs 20]
        [--data-dir ../shared/data/mnist] [--out runs/results] [--results results] [--retrain] [--json]

Two runs through the same trainer as ``esl train``: the digits ESL MLP 64-800-10 at 10 %, seed 0 (the
``esl_s0`` run of ``benchmarks/digits_results.py``), and MNIST 784-800-10 from ``configs/mnist_esl.toml``
(the paper's settings) for ``--mnist-epochs`` epochs instead of 300, seed 0 (``mnist_esl_config_s0``). For each,
the numbers of ``esl inspect`` (:func:`train.structure.structure_report`): inputs the first layer
connects at the start and at the kept epoch, the share of kept connections present from the start, and
the survival of regrown connections (grown at one rewiring, still there after the next). Writes
``structure.md`` / ``structure.json``, and the MNIST run's fan-out (start vs kept) and rewiring plots as
``structure_mnist_fanout.png`` and ``structure_mnist_rewiring.png``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
from esl_deploy.checkpoint import read_checkpoint  # noqa: E402
from esl_deploy.train.config import TrainConfig  # noqa: E402
from esl_deploy.train.masking import SparsityConfig  # noqa: E402
from esl_deploy.train.structure import plot_fanout, plot_rewiring, structure_report  # noqa: E402

NAME = "structure"
MNIST_CONFIG = C.ROOT / "configs" / "mnist_esl.toml"
DEFAULT_MNIST = C.ROOT.parent / "shared" / "data" / "mnist"


def mnist_config(epochs: int, data_dir: Path) -> TrainConfig:
    """configs/mnist_esl.toml read the way ``esl train --config`` reads it, with fewer epochs."""
    from esl_deploy.train.cli import options_to_config, train_cmd
    ctx = train_cmd.make_context("train", ["--config", str(MNIST_CONFIG), "--epochs", str(epochs),
                                           "--data-dir", str(data_dir), "--out", "unused"])
    return options_to_config(ctx.params)


def digits_config(epochs: int) -> TrainConfig:
    return TrainConfig(model="mlp", dataset="digits", epochs=epochs, seed=0,
                       sparsity=SparsityConfig(method="esl", density=0.1))


def report(cfg: TrainConfig, folder: Path, retrain: bool) -> dict:
    C.load_or_train(cfg, folder, retrain)
    ckpt = read_checkpoint(folder / "checkpoint.pt")
    if "initial_masks" not in ckpt["engine"]:  # a run trained before the structure records existed
        print(f"{folder}: no structure records, training again", file=sys.stderr, flush=True)
        C.load_or_train(cfg, folder, True)
        ckpt = read_checkpoint(folder / "checkpoint.pt")
    return structure_report(ckpt)


def pixel_activity(cfg: TrainConfig) -> np.ndarray:
    """Per input pixel: the fraction of training samples in which it is not 0 (flattened)."""
    from torch.utils.data import DataLoader

    from esl_deploy.datasets import load_dataset
    data = load_dataset(cfg.dataset, cfg.data_dir)
    on, n = 0, 0
    for x, _ in DataLoader(data.train, batch_size=4096):
        on = on + (x.reshape(len(x), -1) != 0).sum(0).numpy()
        n += len(x)
    return on / n


def fanout_vs_activity(rep: dict, activity: np.ndarray) -> dict:
    """Does the kept first layer favour pixels that are often on? Over the pixels that are ever on:
    Spearman's rank correlation of fan-out with activity, and the mean fan-out of the rarest and the
    most often on quarter of them, at the start and at the kept epoch."""
    from scipy.stats import spearmanr
    live = activity > 0
    lo_q, hi_q = np.quantile(activity[live], [0.25, 0.75])
    rare, often = live & (activity <= lo_q), activity >= hi_q
    out = {}
    for when in ("start", "kept"):
        fan = np.asarray(rep["fanout"][when], dtype=float).ravel()
        out[when] = {"spearman": float(spearmanr(fan[live], activity[live]).correlation),
                     "rare_quarter_fanout": float(fan[rare].mean()), "often_quarter_fanout": float(fan[often].mean())}
    return out


def summary_row(rep: dict) -> dict:
    surv = [r["survival"] for r in rep["rewirings"] if r["survival"] is not None]
    kept = sum(l["kept_nnz"] for l in rep["layers"])
    fan = rep["fanout"]
    return {"dataset": rep["dataset"], "kept_epoch": rep["kept_epoch"],
            "inputs": fan["inputs"], "inputs_used_start": fan["inputs_used_start"],
            "inputs_used_kept": fan["inputs_used_kept"], "kept_connections": kept,
            "kept_from_start": sum(l["kept_from_initial"] for l in rep["layers"]) / max(kept, 1),
            "first_layer_from_start": rep["layers"][0]["kept_from_initial"] / max(rep["layers"][0]["kept_nnz"], 1),
            "rewirings": len(rep["rewirings"]), "grown": rep["total_grown"],
            "survival_first": surv[0] if surv else None, "survival_last": surv[-1] if surv else None,
            "survival_mean": sum(surv) / len(surv) if surv else None}


def table(res: dict) -> str:
    head = ["run", "kept epoch", "inputs connected: start → kept", "kept connections there from the start",
            "first layer: there from the start", "rewirings", "connections regrown",
            "regrown kept by the next rewiring: first / mean / last"]
    body = []
    for label, r in res["runs"].items():
        s = r["summary"]
        surv = " / ".join(C.fmt(100 * s[k], ".1f") if s[k] is not None else "-"
                          for k in ("survival_first", "survival_mean", "survival_last"))
        body.append([label, s["kept_epoch"], f"{s['inputs_used_start']} → {s['inputs_used_kept']} of {s['inputs']}",
                     f"{100 * s['kept_from_start']:.1f} %", f"{100 * s['first_layer_from_start']:.1f} %",
                     s["rewirings"], s["grown"], f"{surv} %"])
    head2 = ["run", "fan-out vs how often the pixel is on (Spearman): start → kept",
             "mean fan-out, rarest quarter of pixels: start → kept", "mean fan-out, most often on quarter: start → kept"]
    body2 = []
    for label, r in res["runs"].items():
        f = r["fanout_vs_activity"]
        body2.append([label, f"{f['start']['spearman']:+.3f} → {f['kept']['spearman']:+.3f}",
                      f"{f['start']['rare_quarter_fanout']:.1f} → {f['kept']['rare_quarter_fanout']:.1f}",
                      f"{f['start']['often_quarter_fanout']:.1f} → {f['kept']['often_quarter_fanout']:.1f}"])
    return ("Structure of the ESL runs at 10 % density (seed 0; `esl inspect RUN` draws the same for any run).\n\n"
            + C.md_table(head, body) + "\n"
            + "First layer against the data: pixels that are ever on in training (always-0 pixels are kept out of "
              "the masks from the start).\n\n" + C.md_table(head2, body2) + "\n"
            + "![MNIST first-layer fan-out per pixel, start vs kept](results/structure_mnist_fanout.png)\n")


def main(argv=None) -> dict:
    ap = C.parser(__doc__, seeds=False)
    ap.add_argument("--mnist-epochs", type=int, default=10, help="MNIST epochs (the config says the paper's 300)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_MNIST, help="folder of the MNIST idx files")
    a = ap.parse_args(argv)
    if not (a.data_dir / "train-images-idx3-ubyte.gz").is_file() and not (a.data_dir / "train-images-idx3-ubyte").is_file():
        sys.exit(f"structure_results: MNIST idx files not found in {a.data_dir} (give --data-dir)")
    runs = {}
    for label, cfg, folder in (
            (f"digits 64-800-10, {a.epochs} epochs", digits_config(a.epochs), a.out / "esl_s0"),
            (f"MNIST 784-800-10, {a.mnist_epochs} epochs", mnist_config(a.mnist_epochs, a.data_dir),
             a.out / "mnist_esl_config_s0")):
        rep = report(cfg, folder, a.retrain)
        runs[label] = {"folder": str(folder), "summary": summary_row(rep), "report": rep,
                       "fanout_vs_activity": fanout_vs_activity(rep, pixel_activity(cfg))}
        if cfg.dataset == "mnist":
            a.results.mkdir(parents=True, exist_ok=True)
            plot_fanout(rep, a.results / "structure_mnist_fanout.png")
            plot_rewiring(rep, a.results / "structure_mnist_rewiring.png")
    res = {"density": 0.1, "method": "esl", "seed": 0, "runs": runs}
    return C.publish(NAME, res, table(res), a, __file__, argv)


if __name__ == "__main__":
    main()
