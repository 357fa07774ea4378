"""Benchmark: training samples/s of ``esl train`` on 1 and 2 processes (torch.distributed) on the MNIST MLP.

    .venv/bin/python benchmarks/bench_distributed.py [--data-dir ../shared/data/mnist] [--epochs 1]
        [--procs 1 2] [--device cpu] [--json]

Each configuration is a real ``esl train`` run started the way users start it, ``torchrun
--standalone --nproc-per-node P -m esl_deploy.cli train ...``: the MNIST MLP (784-800-10), ESL at 10 %, T = 8,
global batch 100, Adam, on the 54000 training images. Throughput = training samples / seconds of the
training passes (``train_seconds`` of rank 0 in ``metrics.csv``: interpreter start-up, rendezvous,
validation and checkpoint writing are not in it). The reference is 1 process on 1 thread; on a CPU
P processes get cores / P threads each (gloo); with ``--device cuda`` each process drives one GPU (NCCL). The final
weights of every P > 1 run are compared with the 1-process run's (they train the same network: the
same masks, and weights equal up to the rounding of the gradient all-reduce).
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import RUNS, md_table, parser, publish  # noqa: E402

NAME = "distributed"
TIMEOUT_S = 3600


def run_config(procs: int, threads: int, args, folder: Path, n_train: int) -> dict:
    """One ``esl train`` under torchrun with ``procs`` processes of ``threads`` threads; its throughput."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
           "-m", "esl_deploy.cli", "train", "--model", "mlp", "--dataset", "mnist", "--data-dir", str(args.data_dir),
           "--method", "esl", "--density", "0.1", "--T", "8", "--batch-size", "100", "--epochs", str(args.epochs),
           "--seed", "0", "--device", args.device, "--out", str(folder), "--force", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    print(f"{procs} process(es), {threads} thread(s) each: {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    if r.returncode != 0:
        sys.exit(f"bench_distributed: the {procs}-process run failed:\n{r.stderr[-3000:]}")
    rows = list(csv.DictReader(open(folder / "metrics.csv")))
    seconds = sum(float(row["train_seconds"]) for row in rows)
    return {"processes": procs, "threads_per_process": threads, "device": args.device, "epochs": args.epochs,
            "train_samples": n_train * args.epochs, "train_seconds": seconds,
            "samples_per_s": n_train * args.epochs / seconds, "folder": str(folder)}


def same_network(a: Path, b: Path) -> dict:
    """Largest |w_a - w_b| over the final weights, and whether the final masks are equal (with one epoch
    they are the initial masks: the first rewiring waits for the second epoch's start)."""
    import torch

    from esl_deploy.checkpoint import read_checkpoint

    sa, sb = read_checkpoint(a / "checkpoint.pt"), read_checkpoint(b / "checkpoint.pt")
    diff = max(float((sa["model"][k].float() - sb["model"][k].float()).abs().max()) for k in sa["model"])
    masks = all(torch.equal(sa["engine"]["masks"][n], sb["engine"]["masks"][n]) for n in sa["engine"]["masks"])
    return {"max_abs_weight_diff": diff, "masks_equal": masks}


def main(argv=None) -> dict:
    ap = parser(__doc__, seeds=False)
    ap.set_defaults(epochs=1)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args(argv)
    if not any(args.data_dir.glob("train-images*idx3-ubyte*")):
        print(f"bench_distributed: skipped: no MNIST training images (train-images-idx3-ubyte[.gz]) in "
              f"{args.data_dir}; pass --data-dir", file=sys.stderr)
        return {}
    from esl_deploy.datasets import load_dataset

    n_train = len(load_dataset("mnist", str(args.data_dir)).train)
    cores = os.cpu_count() or 1
    configs = [(1, 1)] + [(p, max(1, cores // p) if args.device == "cpu" else 1) for p in args.procs]
    configs = list(dict.fromkeys(configs))  # 1 process on 1 thread first: the reference of the ratios
    runs = [run_config(p, t, args, Path(args.out) / NAME / f"{args.device}_p{p}_t{t}", n_train) for p, t in configs]
    base = runs[0]
    for r in runs:
        r["speedup"] = r["samples_per_s"] / base["samples_per_s"]
        if r is not base:
            r.update(same_network(Path(base["folder"]), Path(r["folder"])))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    one = max((r for r in runs if r["processes"] == 1), key=lambda r: r["samples_per_s"])
    two = next((r for r in runs if r["processes"] == 2), None)
    res = {"runs": runs, "ratio_2_to_best_1": two["samples_per_s"] / one["samples_per_s"] if two else None,
           "load_average_1min_at_end": load}
    rows = [[r["processes"], r["threads_per_process"], r["device"], f"{r['samples_per_s']:.0f}",
             f"{r['train_seconds']:.1f}", f"{r['speedup']:.2f}x",
             "-" if r is base else f"{r['max_abs_weight_diff']:.1e}"]
            for r in runs]
    md = md_table(["processes", "threads each", "device", "samples/s", "training s", "vs 1 process, 1 thread",
                   "max abs weight diff from 1 process, 1 thread"], rows)
    if two:
        md += (f"\n2 processes / the faster 1-process run: {res['ratio_2_to_best_1']:.2f}x.\n")
    md += (f"{args.epochs} epoch(s) of MNIST ({n_train} training images), 784-800-10, ESL 10 %, T = 8, global "
           f"batch 100; training passes only."
           + (f" 1-minute load average of the machine at the end: {load:.2f}." if load is not None else "")
           + " The weights differ by the rounding of the gradient sums (other thread counts, the all-reduce),"
             " which a spike flipping at its threshold can amplify over a long run.\n")
    if args.device == "cpu":
        md += "NCCL on GPUs: not measured here (no GPU machine was lent to this task).\n"
    return publish(NAME, res, md, args, __file__, argv)


if __name__ == "__main__":
    main()
