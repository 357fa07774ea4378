"""Fixed-point checking speed on one conv net: Lava's bit-accurate models vs the numpy emulator vs the torch
emulator, measured in one run, and their spikes compared on the samples all three ran.

- Lava: :func:`export.lava.run.run` with ``mode="fixed"`` (``Loihi2SimCfg(select_tag="fixed_pt")``), one
  compiled network for ``--lava-samples`` samples (build, compile, run and read-back counted);
- numpy: :func:`export.lava.fixed.emulate_fixed` (convolutions unrolled into sparse matrices) on
  ``--numpy-samples`` samples;
- torch: :func:`export.lava.emulate.emulate` (batched, ``conv2d``) on ``--samples`` samples, the plan
  (kernels, sparse corrections) built inside the timed call.

Every layer's spikes of the three must be equal on the first ``--lava-samples`` samples (and torch's equal
numpy's on all of numpy's); the script exits 1 otherwise. The network is untrained (``--arch``, ``--width``;
its weights scaled by ``--gain`` so that its layers spike): speed does not depend on training. Inputs are
the MNIST test images from ``--data-dir`` (``../shared/data/mnist`` when it exists), else random images.
Not part of ``make results``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_emulator.py [--arch vggsnn] [--json]
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

import esl_deploy  # noqa: E402,F401  (lava import hook)
from esl_deploy.models import ModelSpec, build_model  # noqa: E402
from esl_deploy.export.lava.convert import convert  # noqa: E402
from esl_deploy.export.lava.emulate import emulate  # noqa: E402
from esl_deploy.export.lava.fixed import emulate_fixed, exact_frac_bits, quantize  # noqa: E402
from esl_deploy.export.lava.run import import_lava, run  # noqa: E402
from esl_deploy.export.nir.write import to_nir  # noqa: E402
from esl_deploy.export.simulate import encoded_inputs  # noqa: E402

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def inputs(n: int, T: int, data_dir) -> tuple:
    """(x (T, n, 1, 28, 28), where they came from)."""
    if data_dir is not None and Path(data_dir).is_dir():
        x, _ = encoded_inputs("mnist", T, "direct", limit=n, data_dir=data_dir)
        return x, f"MNIST test ({data_dir})"
    x = np.random.default_rng(0).random((n, 1, 28, 28)).astype(np.float32)
    return np.broadcast_to(x, (T,) + x.shape).copy(), "random images"


def network(arch: str, width: float, gain: float, groups: int, x: np.ndarray):
    torch.manual_seed(0)
    model = build_model(ModelSpec(name=arch, input_shape=(1, 28, 28), num_classes=10, width=width)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.weight.mul_(gain)
    return quantize(convert(to_nir(model)), groups=groups, input_frac_bits=exact_frac_bits(x))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=("convnet", "vggsnn", "resnet19"), default="convnet")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--gain", type=float, default=2.0, help="weight scale of the untrained net (so that it spikes)")
    p.add_argument("--groups", type=int, choices=(1, 2), default=1, help="8-bit synapse groups per weight")
    p.add_argument("-T", "--steps", type=int, default=4)
    p.add_argument("--samples", type=int, default=1024, help="samples for the torch emulator")
    p.add_argument("--numpy-samples", type=int, default=64)
    p.add_argument("--lava-samples", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", type=Path, default=MNIST if MNIST.is_dir() else None)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    import_lava()
    x, origin = inputs(max(a.samples, a.numpy_samples, a.lava_samples), a.steps, a.data_dir)
    net = network(a.arch, a.width, a.gain, a.groups, x)
    k, m, n = a.lava_samples, a.numpy_samples, a.samples

    lava, t_lava = timed(lambda: run(net, x[:, :k], mode="fixed"))
    ref, t_numpy = timed(lambda: emulate_fixed(net, x[:, :m]))
    got, t_torch = timed(lambda: emulate(net, x[:, :n], batch_size=a.batch_size, device=a.device, progress=False))
    equal_lava = all(np.array_equal(s, e[:, :k]) for s, e in zip(lava.spikes, got))
    equal_numpy = all(np.array_equal(r, e[:, :m]) for r, e in zip(ref, got))
    out = {
        "arch": a.arch, "width": a.width, "T": a.steps, "inputs": origin, "device": a.device,
        "threads": torch.get_num_threads(), "layers": len(net.layers),
        "spikes_per_sample": float(sum(int(s[:, :m].sum()) for s in ref) / m),
        "lava_samples": k, "numpy_samples": m, "torch_samples": n,
        "lava_fixed_samples_per_s": k / t_lava, "numpy_samples_per_s": m / t_numpy,
        "torch_samples_per_s": n / t_torch,
        "torch_vs_lava": (n / t_torch) / (k / t_lava), "torch_vs_numpy": (n / t_torch) / (m / t_numpy),
        "numpy_vs_lava": (m / t_numpy) / (k / t_lava),
        "spikes_equal_lava": equal_lava, "spikes_equal_numpy": equal_numpy,
    }
    if a.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(f"{a.arch} width {a.width}, {len(net.layers)} layers, T={a.steps}, {origin}, {out['threads']} thread(s), "
              f"{out['spikes_per_sample']:.0f} spikes per sample")
        print(f"  Lava fixed point         {out['lava_fixed_samples_per_s']:10.2f} samples/s  ({k} samples)")
        print(f"  numpy emulate_fixed      {out['numpy_samples_per_s']:10.2f} samples/s  ({m} samples)")
        print(f"  torch emulate ({a.device:4s})     {out['torch_samples_per_s']:10.2f} samples/s  ({n} samples)")
        print(f"  torch / Lava {out['torch_vs_lava']:.0f} x, torch / numpy {out['torch_vs_numpy']:.1f} x, "
              f"numpy / Lava {out['numpy_vs_lava']:.1f} x")
        print(f"  every layer's spikes equal: Lava {equal_lava}, numpy {equal_numpy}")
    if not (equal_lava and equal_numpy):
        sys.exit(1)
    return out


if __name__ == "__main__":
    main()
