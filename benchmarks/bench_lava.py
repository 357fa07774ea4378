"""Lava throughput on the digits test set: one compiled network for the whole set vs one compile per
sample, and both against snnTorch, measured in one run.

- snnTorch: the network on CPU in float32, batches of 256 (:func:`export.simulate.snntorch_spikes`).
- Lava, one network: :func:`export.lava.run.run`, every sample back to back in one compiled network
  (``LIFReset`` between samples), build + compile + run + read-back all counted.
- Lava, per sample: :func:`export.lava.run.run_per_sample` on the first ``--per-sample`` samples,
  a fresh network compiled for every sample (what a naive harness does); its spikes must equal the
  one-network run's on those samples.
- Lava's floor: the same processes for the same steps in ONE ``run`` call, with no recorder and no
  read-back (``run(..., record="none", chunk=B)``): what Lava itself needs for this network; the
  runner's share of it is floor seconds / runner seconds (issue target: at least 70 %).

``--dataset mnist --data-dir DIR`` runs the MNIST test set instead of digits.

Without ``--model`` an untrained 64-800-10 MLP (or ``--arch convnet``) is used: speed does not depend
on the weights. Prints samples/s and the ratios; ``--json`` prints the same as JSON.

    .venv/bin/python benchmarks/bench_lava.py [--model run/checkpoint.pt] [--mode fixed] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import esl_deploy  # noqa: E402  (lava import hook)
from esl_deploy.models import ModelSpec, build_model  # noqa: E402
from esl_deploy.export.lava.convert import convert  # noqa: E402
from esl_deploy.export.lava.fixed import exact_frac_bits, quantize  # noqa: E402
from esl_deploy.export.lava.run import import_lava, run, run_per_sample  # noqa: E402
from esl_deploy.export.nir.write import to_nir  # noqa: E402
from esl_deploy.export.simulate import encoded_inputs, load_network, snntorch_spikes  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="checkpoint or .nir (default: an untrained network)")
    p.add_argument("--arch", choices=("mlp", "convnet"), default="mlp", help="untrained network to use")
    p.add_argument("--mode", choices=("float", "fixed"), default="float")
    p.add_argument("--conv", choices=("conv", "matrix"), default="conv")
    p.add_argument("--limit", type=int, default=None, help="test samples for the one-network run (default all)")
    p.add_argument("--per-sample", type=int, default=20, help="samples compiled one by one")
    p.add_argument("-T", "--steps", type=int, default=8)
    p.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    p.add_argument("--data-dir", type=Path, default=None, help="folder of the data set's files (mnist)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import_lava()
    if args.model is not None:
        model, graph = load_network(args.model)
        name = str(args.model)
    else:
        shape = (1, 28, 28) if args.dataset == "mnist" else (1, 8, 8)
        model = build_model(ModelSpec(name=args.arch, input_shape=shape, num_classes=10)).eval()
        graph = to_nir(model)
        name = f"untrained {args.arch}"
    x, _ = encoded_inputs(args.dataset, args.steps, "direct", limit=args.limit, data_dir=args.data_dir)
    n = x.shape[1]
    net = convert(graph, conv=args.conv)
    if args.mode == "fixed":
        net = quantize(net, groups=2, input_frac_bits=exact_frac_bits(x))

    t0 = time.perf_counter()
    snntorch_spikes(model, x, dtype=torch.float32)
    t_torch = time.perf_counter() - t0

    t0 = time.perf_counter()
    whole = run(net, x, mode=args.mode, record="output")
    t_whole = time.perf_counter() - t0

    t0 = time.perf_counter()
    run(net, x, mode=args.mode, record="none", chunk=n)
    t_floor = time.perf_counter() - t0

    k = max(1, min(args.per_sample, n))
    t0 = time.perf_counter()
    single = run_per_sample(net, x[:, :k], mode=args.mode, record="output")
    t_single = time.perf_counter() - t0
    same = bool(np.array_equal(single.output, whole.output[:, :k]))

    out = {
        "model": name, "mode": args.mode, "conv": args.conv, "T": args.steps, "samples": n,
        "per_sample_samples": k,
        "snntorch_samples_per_s": n / t_torch,
        "lava_one_network_samples_per_s": n / t_whole,
        "lava_floor_samples_per_s": n / t_floor,
        "one_network_share_of_floor": t_floor / t_whole,
        "lava_per_sample_samples_per_s": k / t_single,
        "one_network_vs_per_sample": (n / t_whole) / (k / t_single),
        "snntorch_vs_lava_one_network": (n / t_torch) / (n / t_whole),
        "per_sample_spikes_equal_one_network": same,
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(f"{name}, Lava {args.mode} ({args.conv}), {args.dataset} test, T={args.steps}")
        print(f"  snnTorch (CPU, float32)          {out['snntorch_samples_per_s']:10.1f} samples/s  "
              f"({n} samples)")
        print(f"  Lava, one compiled network       {out['lava_one_network_samples_per_s']:10.1f} samples/s  "
              f"({n} samples)")
        print(f"  Lava floor (one run call, no recording) {out['lava_floor_samples_per_s']:10.1f} samples/s: "
              f"the runner reaches {100 * out['one_network_share_of_floor']:.0f} % of it")
        print(f"  Lava, one compile per sample     {out['lava_per_sample_samples_per_s']:10.2f} samples/s  "
              f"({k} samples)")
        print(f"  one network / per sample         {out['one_network_vs_per_sample']:10.1f} x")
        print(f"  snnTorch / Lava one network      {out['snntorch_vs_lava_one_network']:10.1f} x")
        print(f"  per-sample spikes == one-network spikes: {same}")
    return out


if __name__ == "__main__":
    main()
