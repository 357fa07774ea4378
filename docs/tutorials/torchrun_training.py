"""Tutorial: ``esl train`` on several processes with ``torchrun`` (DistributedDataParallel), checked against one.

``torchrun`` starts one ``esl train`` per process; ``esl train`` sees torchrun's variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and trains with DistributedDataParallel:
NCCL on GPUs (``--device cuda``, one GPU per local rank), gloo on CPUs. ``--batch-size`` stays the global
batch, rank 0 writes the run folder. This script runs the same RigL training (regrowth by the dense
gradient, so the masks agree across processes only if that gradient is the all-reduced one) on
``--nproc`` processes and on one, and compares the two runs: the masks must be identical, the weights
equal up to the rounding of the all-reduced gradient sums.

On CPUs (2 gloo processes, a small net, a few seconds an epoch)::

    .venv/bin/python docs/tutorials/torchrun_training.py

On the GPUs of one machine, the same command as this script prints, with ``--device cuda``::

    .venv/bin/torchrun --standalone --nproc-per-node N --no-python .venv/bin/esl train --device cuda ...
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

from esl_deploy.checkpoint import read_checkpoint

BIN = Path(sys.executable).parent  # .venv/bin: esl and torchrun of this environment


def run(cmd: list, **env) -> None:
    """Run a command as a user would type it (each process on one thread: the cores are shared)."""
    print("$ " + " ".join(map(str, cmd)), file=sys.stderr)
    r = subprocess.run(list(map(str, cmd)), env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    if r.returncode != 0:
        raise SystemExit(f"{Path(str(cmd[0])).name} failed (exit code {r.returncode}); its message is above")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2, help="processes torchrun starts")
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per process)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--width", type=float, default=0.05, help="hidden width multiplier (0.05: 40 neurons)")
    p.add_argument("--out", default="runs/tutorial_torchrun", help="folder of the two run folders")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    out = Path(args.out)
    options = ["--dataset", "digits", "--method", "rigl", "--density", "0.2", "--width", args.width, "--T", "4",
               "--batch-size", "128", "--t-iter", "3", "--epochs", args.epochs, "--device", args.device,
               "--seed", "0", "--force", *(["--no-progress"] if args.no_progress else [])]

    # 1. N processes: torchrun starts esl train N times; --batch-size 128 is the global batch (64 each for N = 2)
    run([BIN / "torchrun", "--standalone", "--nproc-per-node", args.nproc, "--no-python",
         BIN / "esl", "train", *options, "--out", out / "distributed"])
    # 2. the same run in one process
    run([BIN / "esl", "train", *options, "--out", out / "single"])

    # 3. compare the two checkpoints
    many = read_checkpoint(out / "distributed" / "checkpoint.pt")
    one = read_checkpoint(out / "single" / "checkpoint.pt")
    masks_equal = {name: bool(torch.equal(many["engine"]["masks"][name], mask))
                   for name, mask in one["engine"]["masks"].items()}
    weight_diff = max(float((many["model"][k].double() - w.double()).abs().max()) for k, w in one["model"].items())
    print(f"\nworld size {many['summary']['world_size']} vs {one['summary']['world_size']}: masks identical per layer "
          f"{masks_equal}; largest weight difference {weight_diff:.2e}; test accuracy "
          f"{100 * many['summary']['test_acc']:.2f} % vs {100 * one['summary']['test_acc']:.2f} %")
    return {"world_size": many["summary"]["world_size"], "masks_equal": masks_equal, "max_weight_diff": weight_diff,
            "test_acc": (many["summary"]["test_acc"], one["summary"]["test_acc"])}


if __name__ == "__main__":
    main()
