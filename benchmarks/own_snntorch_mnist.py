"""Your own snnTorch network on MNIST: the tutorial ``docs/tutorials/own_snntorch_model.py``, measured.

    .venv/bin/python benchmarks/own_snntorch_mnist.py [--epochs 3] [--data-dir ../shared/data/mnist]
        [--lava-limit 2000] [--results results] [--json]

snnTorch's tutorial MLP (784-1000-10, ``snn.Leaky(beta=0.95)`` with snnTorch's defaults: subtract reset, one
step late), trained by snnTorch's own loop (T = 25, rate-coded cross entropy, Adam 5e-4, batch 128) with
two added lines of ESL Deploy (``Sparsifier``, ESL at 10 %). Reports the test accuracy (the user's own
test loop, all 10,000 images), the nonzero density of the trained weights, Lava float and fixed point
spike agreement with the snnTorch network itself (first ``--lava-limit`` test images), what netx says
and the energy report (all test images). Writes ``results/own_snntorch_mnist.{md,json}``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "tutorials"))

import _common as C  # noqa: E402
import own_snntorch_model as tutorial  # noqa: E402

NAME = "own_snntorch_mnist"


def table(r: dict) -> str:
    sims = r["simulate"]
    lines = [f"snnTorch tutorial MLP 784-1000-10 (subtract reset), {r['epochs']} epochs of the user's own loop, "
             f"T = {r['T']}, ESL at 10 %:", "",
             "| measure | value |", "|---|---|",
             f"| test accuracy (user's test loop, {r['test_images']:,} images) | {100 * r['accuracy']:.2f} % |",
             f"| nonzero density of the trained weights | {r['density']:.4f} ({r['nonzero_weights']:,} weights) |",
             f"| connections rewired (T_iter = {r['t_iter']}) | {r['rewired']:,} |"]
    for backend in ("lava", "lava-fixed", "netx"):
        s = sims[backend]
        if "refused" in s:
            lines.append(f"| {backend} | refused: netx's neuron resets to zero, it cannot run snnTorch's default "
                         "neuron |")
            continue
        layers = " / ".join(f"{v:.3f}" for v in s["layer_agreement"].values())
        lines.append(f"| {backend}: spike agreement with the snnTorch network, per layer ({s['samples']:,} "
                     f"images) | {layers} % |")
        lines.append(f"| {backend}: accuracy vs snnTorch on those images | {100 * s['accuracy']:.2f} % vs "
                     f"{100 * s['snntorch_accuracy']:.2f} % |")
    e = r["energy"]
    t = e["totals"]
    ratios = ", ".join(f"{hw} {v:,.3g}x" for hw, v in e["ratio_ann_gpu_over_snn"].items() if v)
    lines += [f"| TrueNorth cores (packed; lower bound) | {t['cores_packed']} ({t['cores_lower_bound']}) |",
              f"| synaptic operations per image | {t['ops']:,.0f} |",
              f"| energy ratio ANN on GPU / SNN ({e['convention']} convention) | {ratios} |"]
    return "\n".join(lines)


def main(argv=None):
    ap = C.parser(__doc__, epochs=True, seeds=False, out=False)
    ap.set_defaults(epochs=3)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/mnist"))
    ap.add_argument("--lava-limit", type=int, default=2000)
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--limit-test", type=int, default=None)
    args = ap.parse_args(argv)
    targs = ["--data-dir", str(args.data_dir), "--epochs", str(args.epochs), "--lava-limit", str(args.lava_limit),
             "--out", "runs/results/own_snntorch_mnist"]
    if args.limit_train:
        targs += ["--limit-train", str(args.limit_train)]
    if args.limit_test:
        targs += ["--limit-test", str(args.limit_test)]
    res = tutorial.main(targs)
    return C.publish(NAME, res, table(res), args, "benchmarks/own_snntorch_mnist.py", argv)


if __name__ == "__main__":
    main()
