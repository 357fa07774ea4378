"""What pinning the CPU kernels to AVX2 costs in training speed (esl train --cpu-kernels avx2 vs native).

Each measurement is a fresh process (kernels are chosen once per process) that times training steps
(forward over T steps, backward, Adam) of one network on random data of its data set's shape, after
warm-up steps; the two choices alternate round by round, so both see the same machine load, and the
ratio of their median step times is printed. Networks: the digits MLP 64-800-10 (T = 8, batch 100) of
``make demo`` and the MNIST conv net at width 0.25 (T = 4, batch 32). Writes results/cpu_kernels.{md,json}.

    .venv/bin/python benchmarks/bench_cpu_kernels.py [--rounds 3] [--steps 30]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import OneLineParser, RESULTS, command, md_table, write_results  # noqa: E402

NETS = {  # name: (model, input shape, width, T, batch)
    "digits MLP 64-800-10": ("mlp", (64,), 1.0, 8, 100),
    "MNIST conv net, width 0.25": ("convnet", (1, 28, 28), 0.25, 4, 32),
}
CHOICES = ("native", "avx2")


def worker(net: str, steps: int, warmup: int = 5) -> dict:
    """Median seconds per training step of ``net`` in this process's kernels."""
    import torch

    from esl_deploy.models import ModelSpec, build_model

    model_name, shape, width, T, batch = NETS[net]
    torch.manual_seed(0)
    model = build_model(ModelSpec(model_name, shape, 10, width=width))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(T, batch, *shape)
    y = torch.randint(0, 10, (batch,))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out.sum(0), y)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {"seconds_per_step": statistics.median(times),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}


def measure(net: str, choice: str, steps: int) -> dict:
    from esl_deploy.kernels import KERNELS

    env = {k: v for k, v in os.environ.items() if k not in KERNELS["avx2"].env}  # this process's own pin
    env["ESL_CPU_KERNELS"] = choice
    r = subprocess.run([sys.executable, __file__, "--worker", net, "--steps", str(steps)], env=env,
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def main(argv=None) -> int:
    ap = OneLineParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--worker", choices=list(NETS), help=argparse_hidden())
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps)))
        return 0
    data = []
    for net in NETS:
        per = {c: [] for c in CHOICES}
        caps = {}
        for _ in range(args.rounds):
            for c in CHOICES:
                m = measure(net, c, args.steps)
                per[c].append(m["seconds_per_step"])
                caps[c] = f"{m['cpu_capability']}, {m['threads']} threads"
        med = {c: statistics.median(v) for c, v in per.items()}
        data.append({"net": net, "seconds_per_step": per, "median": med, "kernels": caps,
                     "avx2_over_native": med["avx2"] / med["native"]})
    rows = [(d["net"], d["kernels"]["native"], f"{1e3 * d['median']['native']:.1f}", d["kernels"]["avx2"],
             f"{1e3 * d['median']['avx2']:.1f}", f"{d['avx2_over_native']:.2f}x") for d in data]
    md = ("Training step time with native CPU kernels and with the AVX2 pin (`esl train --cpu-kernels avx2`), "
          f"median of {args.rounds} alternating fresh processes x {args.steps} steps each (random data).\n\n"
          + md_table(("network", "native kernels", "native ms/step", "pinned kernels", "pinned ms/step",
                      "pinned / native time"), rows))
    cmd = command("benchmarks/bench_cpu_kernels.py", argv)
    write_results("cpu_kernels", md, data, cmd, args.results)
    print(json.dumps(data, indent=2) if args.json else md)
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
