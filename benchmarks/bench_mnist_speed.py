"""Training speed on the MNIST MLP (784-800-10, T = 8, batch 100, Adam): ours vs a tutorial-style snnTorch loop.

    .venv/bin/python benchmarks/bench_mnist_speed.py [--data-dir ../shared/data/mnist] [--batches 60] [--rounds 3] [--json]

Three ways to run the same training step, interleaved in one process so that the machine's load
affects all alike (rounds x batches each; the median seconds per batch of each is reported):

- ``tutorial``: the network as the snnTorch tutorials write it, dense: one ``nn.Linear`` and one
  ``snn.Leaky`` call per layer and time step, the same input fed at each of the T steps, Adam.
- ``before``: our ``SpikingNet`` with ESL at 10 % (masks, ``MaskEngine.step`` every batch) as the
  trainer ran it before this work: input as T copies (T, B, 784), snnTorch's ``Leaky`` called step by
  step, Adam's per-tensor loop.
- ``ours``: what ``esl train`` does now: the input given once with ``T`` (``SpikingNet.forward(x, T)``:
  the first layer's projection computed once per sample and broadcast over T, forward and backward),
  the fused LIF (:class:`esl_deploy.neurons.FusedLIF`: bit-identical spikes and gradients, float ops
  only: spikes written as 0./1. by the comparison, reset as U - S U), the gradient masked by a cached
  float copy of the mask (bool x float products are the slow path of CPU kernels) and
  :class:`train.sparse_adam.MaskedAdam` (Adam's multi-tensor arithmetic on the masks' entries only:
  bit-identical updates).
- ``ours_T_copies``: ``ours`` fed T copies: what the time-constant path alone buys.
- ``ours_rate`` and ``before_rate``: rate-encoded input (Bernoulli spikes, different at every step),
  which cannot share the projection (event data takes the same (T, B, ...) path), now and before.

It prints seconds per batch and the ratios tutorial / ours, T-copies / ours and tutorial / rate, then
a profile of one ``ours`` step (forward, backward, optimizer, mask engine), and the peak RSS of one real
MNIST epoch (``esl train --config configs/mnist_esl.toml --epochs 1`` as a subprocess; its summary's
``peak_rss_mib``) beside the size of the training images and of T copies of them. Writes
``results/mnist_speed.{md,json}`` (the README's table). Speed is measured, not asserted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import snntorch as snn  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
import _common as C  # noqa: E402
import esl_deploy  # noqa: E402,F401
from esl_deploy.datasets import encode, load_dataset  # noqa: E402
from esl_deploy.env import environment  # noqa: E402
from esl_deploy.models import ModelSpec, build_model  # noqa: E402
from esl_deploy.neurons import LIF  # noqa: E402
from esl_deploy.train.losses import compute_loss  # noqa: E402
from esl_deploy.train.masking import MaskEngine, SparsityConfig  # noqa: E402
from esl_deploy.train.sparse_adam import MaskedAdam  # noqa: E402

T, BATCH = 8, 100


class TutorialNet(nn.Module):
    """784-800-10 as in the snnTorch tutorials: Linear and Leaky called once per time step."""

    def __init__(self, beta: float = 0.9):
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(784, 800), snn.Leaky(beta=beta, reset_mechanism="zero")
        self.fc2, self.lif2 = nn.Linear(800, 10), snn.Leaky(beta=beta, reset_mechanism="zero")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        out = []
        flat = x.flatten(1)
        for _ in range(T):
            spk1, mem1 = self.lif1(self.fc1(flat), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            out.append(spk2)
        return torch.stack(out)


def batches(data, n: int):
    x = torch.stack([data.train[i][0] for i in range(n * BATCH)])
    y = torch.tensor([int(data.train[i][1]) for i in range(n * BATCH)])
    return [(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]) for i in range(n)]


def make_ours(before: bool = False):
    torch.manual_seed(0)
    model = build_model(ModelSpec("mlp", (1, 28, 28), 10))
    for m in model.modules():
        if isinstance(m, LIF):
            m.fused = not before
    opt = (torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False) if before
           else MaskedAdam(model.parameters(), lr=1e-3, foreach=True))
    eng = MaskEngine(model, opt, SparsityConfig(method="esl", density=0.1), total_steps=540 * 40, seed=1)
    return model, opt, eng


def runners():
    tut = TutorialNet()
    tut_opt = torch.optim.Adam(tut.parameters(), lr=1e-3)
    ours = {k: make_ours(before=k.startswith("before")) for k in ("ours", "before", "ours_T_copies", "ours_rate",
                                                                   "before_rate")}
    gen = torch.Generator().manual_seed(0)

    def tutorial(x, y):
        tut_opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(tut(x).sum(0), y).backward()
        tut_opt.step()

    def step(key, feed):
        model, opt, eng = ours[key]

        def run(x, y):
            opt.zero_grad(set_to_none=True)
            compute_loss("ce", feed(model, x), y).backward()
            opt.step()
            eng.step()
        return run

    return {
        "tutorial": tutorial,
        "ours": step("ours", lambda m, x: m(x, T=T)),
        "before": step("before", lambda m, x: m(encode(x, T, "direct"))),
        "ours_T_copies": step("ours_T_copies", lambda m, x: m(encode(x, T, "direct"))),
        "ours_rate": step("ours_rate", lambda m, x: m(encode(x, T, "rate", gen))),
        "before_rate": step("before_rate", lambda m, x: m(encode(x, T, "rate", gen))),
    }


def profile(data_batches) -> dict:
    model, opt, eng = make_ours()
    parts = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0, "mask engine": 0.0}
    for x, y in data_batches:
        t0 = time.perf_counter()
        out = model(x, T=T)
        loss = compute_loss("ce", out, y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        eng.step()
        t4 = time.perf_counter()
        for k, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[k] += dt
    total = sum(parts.values())
    return {k: v / total for k, v in parts.items()}


def peak_rss(data_dir: str) -> dict:
    """Peak RSS of one MNIST training epoch run the way users run it, and the data sizes it compares to."""
    import tempfile

    def run(*args: str) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            return C.esl_json(["train", *args, "--epochs", "1", "--out", Path(tmp) / "run", "--no-progress"],
                              who="bench_mnist_speed")["peak_rss_mib"]

    images = 60000 * 784 * 4 / 2 ** 20
    return {"peak_rss_mib": run("--config", str(ROOT / "configs" / "mnist_esl.toml"), "--data-dir", data_dir),
            "digits_peak_rss_mib": run("--dataset", "digits"),  # the same process with a 1,797-image data set
            "train_images_mib": images, "train_images_T_copies_mib": T * images}


VARIANTS = {
    "tutorial": "tutorial-style snnTorch loop (dense, `Linear` + `Leaky` per step, Adam)",
    "before": "ours before (input as T copies, snnTorch `Leaky` step by step, per-tensor Adam)",
    "ours": "**ours now** (`esl train`)",
    "ours_T_copies": "ours now, input as T copies",
}


def table(res: dict) -> str:
    sec = res["seconds_per_batch"]
    rows = [[label, f"{1000 * sec[k]:.1f}", f"{1 / sec[k]:.1f}"] for k, label in VARIANTS.items()]
    rows.append(["rate-encoded input, before / now", f"{1000 * sec['before_rate']:.1f} / {1000 * sec['ours_rate']:.1f}",
                 f"{1 / sec['before_rate']:.1f} / {1 / sec['ours_rate']:.1f}"])
    prof = ", ".join(f"{k} {100 * v:.0f} %" for k, v in res["profile_ours"].items())
    mem = res.get("memory")
    mem_line = "" if not mem else (
        f"- Peak RSS of one MNIST training epoch (`esl train --config configs/mnist_esl.toml --epochs 1`): "
        f"**{mem['peak_rss_mib']:.0f} MiB**, against {mem['digits_peak_rss_mib']:.0f} MiB for a digits epoch (the same "
        f"libraries, 1,797 images): the MNIST data add {mem['peak_rss_mib'] - mem['digits_peak_rss_mib']:.0f} MiB; the "
        f"60,000 training images are {mem['train_images_mib']:.0f} MiB as float32, T = {T} copies of them would be "
        f"{mem['train_images_T_copies_mib']:.0f} MiB.\n")
    return (f"Real MNIST, 784-800-10, T = {T}, batch {BATCH}, ESL at 10 %; every variant interleaved in one run, "
            f"median of {res['rounds']} x {res['batches']} batches.\n\n"
            + C.md_table(["variant", "ms per batch", "batches/s"], rows) + "\n"
            + f"- tutorial / ours: **{res['ratio_tutorial_over_ours']:.2f}x** (target 2.5x); before / ours: "
              f"**{res['ratio_before_over_ours']:.2f}x** (target 3x); T copies / ours: {res['ratio_T_copies_over_ours']:.2f}x; "
              f"rate-encoded before / now: {res['ratio_rate_before_over_now']:.2f}x; tutorial / ours rate-encoded: "
              f"{res['ratio_tutorial_over_rate']:.2f}x.\n"
            + f"- Where an `ours` step spends its time: {prof}.\n" + mem_line)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS epoch")
    ap.add_argument("--results", type=Path, default=C.RESULTS)
    a = ap.parse_args(argv)
    data = load_dataset("mnist", a.data_dir)
    data_batches = batches(data, a.batches)
    run = runners()
    times = {k: [] for k in run}
    for _ in range(a.rounds):
        for key, fn in run.items():
            fn(*data_batches[0])  # warm-up
            t0 = time.perf_counter()
            for x, y in data_batches:
                fn(x, y)
            times[key].append((time.perf_counter() - t0) / len(data_batches))
    sec = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "seconds_per_batch": sec,
        "batches_per_second": {k: 1.0 / v for k, v in sec.items()},
        "ratio_tutorial_over_ours": sec["tutorial"] / sec["ours"],
        "ratio_before_over_ours": sec["before"] / sec["ours"],
        "ratio_T_copies_over_ours": sec["ours_T_copies"] / sec["ours"],
        "ratio_rate_before_over_now": sec["before_rate"] / sec["ours_rate"],
        "ratio_tutorial_over_rate": sec["tutorial"] / sec["ours_rate"],
        "profile_ours": profile(data_batches[:20]),
        "batches": a.batches, "rounds": a.rounds, "environment": environment(),
    }
    if not a.no_memory:
        res["memory"] = peak_rss(a.data_dir)
    C.write_results("mnist_speed", table(res), res, C.command(__file__, argv), a.results)
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in sec.items():
            print(f"{k:18s} {1000 * v:8.1f} ms/batch  {1 / v:6.1f} batches/s")
        print(f"tutorial snnTorch / ours: {res['ratio_tutorial_over_ours']:.2f}x   "
              f"before / ours: {res['ratio_before_over_ours']:.2f}x   "
              f"T copies / ours: {res['ratio_T_copies_over_ours']:.2f}x   "
              f"rate-encoded before / now: {res['ratio_rate_before_over_now']:.2f}x   "
              f"tutorial / ours rate-encoded: {res['ratio_tutorial_over_rate']:.2f}x")
        print("where an `ours` step spends its time: " + ", ".join(f"{k} {100 * v:.0f} %"
                                                                 for k, v in res["profile_ours"].items()))
        if "memory" in res:
            print(f"peak RSS of one MNIST epoch: {res['memory']['peak_rss_mib']:.0f} MiB")
    return res


if __name__ == "__main__":
    main()
