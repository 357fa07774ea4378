"""Benchmark: seconds per epoch of ESL vs dense training of the same model, measured in one run.

The rewiring schedule is that of a 40-epoch run (T_iter = 26 iterations on digits), of which the
first ``--epochs`` are timed. Epochs of the two runs are interleaved (dense, ESL, dense, ESL, ...) so that machine noise hits both
alike; the time spent inside ``MaskEngine.step()`` is also measured directly. The gradient masking
runs in a tensor hook during the backward pass and is not inside ``step()``: its cost is in the
ESL / dense ratio (the dense run has no masks and no hook). Target: the mask engine costs at most 5 %
of an epoch.

    .venv/bin/python benchmarks/bench_mask_overhead.py [--epochs 6] [--model mlp] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import esl_deploy  # noqa: E402,F401
from esl_deploy.datasets import load_dataset  # noqa: E402
from esl_deploy.models import ModelSpec, build_model  # noqa: E402
from esl_deploy.train.config import TrainConfig  # noqa: E402
from esl_deploy.train.masking import MaskEngine, SparsityConfig  # noqa: E402
from esl_deploy.train.trainer import _train_epoch, make_optimizer, steps_per_epoch  # noqa: E402


class TimedEngine:
    """Wraps an engine and accumulates the seconds spent in ``step()``."""

    def __init__(self, engine):
        self.engine, self.seconds = engine, 0.0

    def step(self, epoch_start=None):
        t0 = time.perf_counter()
        r = self.engine.step(epoch_start=epoch_start)
        self.seconds += time.perf_counter() - t0
        return r


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--schedule-epochs", type=int, default=40,
                    help="Length of the run whose rewiring schedule (T_iter, t_end) is timed, as in `make demo`.")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    data = load_dataset("digits")
    runs = {}
    for method in ("dense", "esl"):
        cfg = TrainConfig(model=a.model, epochs=a.epochs, device=a.device,
                          sparsity=SparsityConfig(method=method, density=a.density))
        torch.manual_seed(0)
        model = build_model(ModelSpec(a.model, data.input_shape, data.num_classes)).to(a.device)
        opt = make_optimizer(model, cfg)
        eng = MaskEngine(model, opt, cfg.sparsity, total_steps=a.schedule_epochs * steps_per_epoch(len(data.train), 100))
        runs[method] = dict(cfg=cfg, model=model, opt=opt, eng=TimedEngine(eng), epoch_s=[])
    device = torch.device(a.device)
    for epoch in range(a.epochs):
        for method, r in runs.items():
            t0 = time.perf_counter()
            _train_epoch(r["model"], r["opt"], r["eng"], data, r["cfg"], epoch, device, progress=False)
            r["epoch_s"].append(time.perf_counter() - t0)
    # the first epoch warms up allocators and caches: report the median of the others
    dense = statistics.median(runs["dense"]["epoch_s"][1:] or runs["dense"]["epoch_s"])
    esl = statistics.median(runs["esl"]["epoch_s"][1:] or runs["esl"]["epoch_s"])
    engine_share = runs["esl"]["eng"].seconds / sum(runs["esl"]["epoch_s"])
    result = {
        "model": a.model, "epochs": a.epochs, "density": a.density, "device": a.device,
        "dense_s_per_epoch": dense, "esl_s_per_epoch": esl, "esl_over_dense": esl / dense,
        "engine_share_of_esl_epoch": engine_share, "target_max_overhead": 0.05,
    }
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{a.model} on digits, {a.epochs} interleaved epochs each ({a.device})")
        print(f"  dense: {dense:.3f} s/epoch   ESL@{a.density}: {esl:.3f} s/epoch   ratio ESL/dense {esl / dense:.3f}")
        print(f"  time inside MaskEngine.step(): {100 * engine_share:.2f} % of ESL epoch time (target <= 5 %)")
    return result


if __name__ == "__main__":
    main()
