"""Tutorial: your own snnTorch network, sparse-trained with ESL in your own loop, deployed and costed.

The network is snnTorch's tutorial MLP with snnTorch's defaults (``snn.Leaky`` resets by subtraction,
one step late). The training loop is snnTorch's own (reset the hidden states, present the image for T
steps, rate-coded cross-entropy on the output spikes, Adam). ESL Deploy adds two lines to it: a
``Sparsifier`` next to the optimizer (ESL-SNNs at 10 % density: prune the weakest connections and
regrow as many every T_iter steps) and ``sparsifier.step()`` after ``optimizer.step()``. Then the
trained network itself is exported to NIR, run in Lava (Loihi 2 models, float and fixed point) and
compared with snnTorch spike for spike, and costed on TrueNorth, Loihi and 45 nm CMOS against the dense
ANN on a GPU.

Run it on MNIST (the four official idx files, gzip'd, in one folder)::

    .venv/bin/python docs/tutorials/own_snntorch_model.py --data-dir ../shared/data/mnist --epochs 3

``--json`` prints everything measured as one JSON object (``benchmarks/own_snntorch_mnist.py`` runs this
script and writes the table of the docs' MNIST results page from it).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import snntorch as snn
import torch
from snntorch import functional as SF
from snntorch import utils
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

import esl_deploy as esl
from esl_deploy.datasets import load_dataset
from esl_deploy.errors import EslError


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="folder of the MNIST idx files")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--steps", type=int, default=25, help="time steps per image (snnTorch's tutorial: 25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N images only")
    p.add_argument("--limit-test", type=int, default=None, help="test on the first N images only")
    p.add_argument("--lava-limit", type=int, default=1000, help="test images run in Lava (float and fixed)")
    p.add_argument("--out", default="runs/tutorial_own_snntorch", help="folder for the exported files")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p.parse_args(argv)


def images(split, limit=None):
    """All images of a split as one (N, 784) tensor and the labels (N,)."""
    if limit is not None:
        split = Subset(split, range(min(limit, len(split))))
    x, y = zip(*(batch for batch in DataLoader(split, batch_size=1000)))
    return torch.cat(x).flatten(1), torch.cat(y)


def main(argv=None) -> dict:
    args = parse(argv)
    torch.manual_seed(args.seed)
    T = args.steps
    data = load_dataset("mnist", args.data_dir, T=T)  # the idx files, pixels in [0, 1]
    train = data.train if args.limit_train is None else Subset(data.train, range(args.limit_train))
    loader = DataLoader(train, batch_size=128, shuffle=True, drop_last=True)

    # -- the user's network and loop (snnTorch's tutorial), plus two lines of ESL Deploy ------------
    net = nn.Sequential(nn.Linear(784, 1000), snn.Leaky(beta=0.95, init_hidden=True),
                        nn.Linear(1000, 10), snn.Leaky(beta=0.95, init_hidden=True, output=True))
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.999))
    loss_fn = SF.ce_rate_loss()
    sparsifier = esl.Sparsifier(net, optimizer, method="esl", density=0.1,          # + ESL Deploy
                                total_steps=args.epochs * len(loader), inputs=loader)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        for x, y in tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False, file=sys.stderr):
            x = x.flatten(1)
            utils.reset(net)
            spikes = torch.stack([net(x)[0] for _ in range(T)])  # (T, B, 10)
            loss = loss_fn(spikes, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sparsifier.step()                                                          # + ESL Deploy
    train_s = time.perf_counter() - t0

    # -- the user's own test loop ----------------------------------------------------------------
    test_x, test_y = images(data.test, args.limit_test)
    net.eval()
    with torch.no_grad():
        correct = 0
        for i in range(0, len(test_x), 1000):
            utils.reset(net)
            counts = sum(net(test_x[i:i + 1000])[0] for _ in range(T))
            correct += int((counts.argmax(1) == test_y[i:i + 1000]).sum())
    accuracy = correct / len(test_x)

    # -- deploy: the network itself, not a copy rebuilt by hand -----------------------------------
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    density, layer_density = sparsifier.weight_density()  # nonzero weights / weights of the sparse layers
    nonzero = sum(int(torch.count_nonzero(m.weight)) for m in net if isinstance(m, nn.Linear))
    sample = test_x[:1]
    esl.export_network(net, out / "net.nir", sample=sample, force=True)
    lava_x, lava_y = test_x[:args.lava_limit], test_y[:args.lava_limit]
    sims = {}
    for backend in ("lava", "lava-fixed"):
        sims[backend] = esl.simulate(net, lava_x, T=T, labels=lava_y, backend=backend, sample=sample).to_dict()
    try:
        esl.export_network(net, out / "net.net", to="netx", sample=sample, force=True)
        sims["netx"] = esl.simulate(net, lava_x, T=T, labels=lava_y, backend="netx", sample=sample).to_dict()
    except EslError as e:  # netx's neuron resets to zero: it cannot hold snnTorch's default neuron
        sims["netx"] = {"refused": str(e)}
    cost = esl.energy(net, test_x, T=T, labels=test_y, hw="all", sample=sample).to_dict()

    result = {
        "epochs": args.epochs, "T": T, "train_images": len(train), "test_images": len(test_x),
        "train_seconds": train_s, "accuracy": accuracy, "density": density, "layer_density": layer_density,
        "nonzero_weights": nonzero, "mask_density": sparsifier.density(), "rewired": sparsifier.rewired_total,
        "t_iter": sparsifier.engine.t_iter, "simulate": sims, "energy": cost,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"test accuracy {accuracy:.4f} after {args.epochs} epochs; nonzero density {density:.4f} "
              f"({nonzero} weights), {sparsifier.rewired_total} connections rewired")
        for backend, r in sims.items():
            if "refused" in r:
                print(f"{backend}: {r['refused']}")
            else:
                layers = ", ".join(f"{k} {v:.3f} %" for k, v in r["layer_agreement"].items())
                print(f"{backend}: spike agreement with the snnTorch network per layer: {layers}; accuracy "
                      f"{r['accuracy']:.4f} vs {r['snntorch_accuracy']:.4f} on {r['samples']} images")
        t = cost["totals"]
        print(f"TrueNorth: {t['cores']} cores; energy ratios ANN-on-GPU / SNN: "
              + ", ".join(f"{k} {v:.3g}x" for k, v in cost["ratio_ann_gpu_over_snn"].items() if v))
    return result


if __name__ == "__main__":
    try:
        main()
    except EslError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
