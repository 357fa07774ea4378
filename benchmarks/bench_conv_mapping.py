"""TrueNorth cores of the conv nets: conv-aware tiling against the unrolled packing, and both lower bounds.

Each network gets random masks at its ESL densities (ERK, 10 %: ``esl_deploy.masks.layer_densities`` and
``random_mask``, seed 0), so no training is needed. Per network it prints the cores of the whole-network
packing from the unrolled masks (``pack_network(..., conv_aware=False)``, what ``esl energy`` reported
before), of the conv-aware packing (:mod:`hw_models.conv_mapping`: spatial tiles x feature groups, what
``esl energy`` reports now), the packed rules' lower bound (any placement) and the local bound
(:mod:`hw_models.conv_bound`: tile placements), with the ratio of conv-aware cores to the local bound,
and writes ``results/conv_mapping.{md,json}``.

    .venv/bin/python benchmarks/bench_conv_mapping.py [--wide | --quick] [--json]

The default networks are the issue's (MNIST 28 x 28: the conv net at width 1, VGGSNN and ResNet19 at
width 0.125, whose unrolled packings the issue quotes as 192 / 3,468 / 8,980 cores) and the conv net at
width 0.25: about 4 minutes on 2 cores. ``--wide`` adds VGGSNN and ResNet19 at width 0.25 (about 16
minutes more, 13 of them the unrolled packing of ResNet19's 16 M synapses); ``--quick`` takes the conv
net at width 0.25 and VGGSNN at 0.0625 only.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._common import OneLineParser, RESULTS, command, md_table, write_results  # noqa: E402
from esl_deploy.hw_models.packing import pack_network  # noqa: E402
from esl_deploy.hw_models.unroll import synaptic_layers  # noqa: E402
from esl_deploy.masks import LayerShape, layer_densities, random_mask, sparsifiable  # noqa: E402
from esl_deploy.models import ModelSpec, build_model  # noqa: E402

DENSITY = 0.1
NETS = (("convnet", 1.0), ("vggsnn", 0.125), ("resnet19", 0.125), ("convnet", 0.25))
WIDE = (("vggsnn", 0.25), ("resnet19", 0.25))
QUICK = (("convnet", 0.25), ("vggsnn", 0.0625))


def masked_net(name: str, width: float, input_shape=(1, 28, 28), seed: int = 0):
    """The network with random masks at its ESL (ERK) densities of a 10 % budget."""
    torch.manual_seed(seed)
    model = build_model(ModelSpec(name, tuple(input_shape), 10, width=width))
    params = sparsifiable(model)
    dens = layer_densities([LayerShape(n, tuple(p.shape)) for n, p in params], DENSITY, "erk")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in params:
            p.mul_(random_mask(tuple(p.shape), dens[n], gen))
    return model


def measure(name: str, width: float) -> dict:
    layers = synaptic_layers(masked_net(name, width))
    t0 = time.perf_counter()
    unrolled = pack_network(layers, per_layer_cores=10 ** 9, conv_aware=False)
    t1 = time.perf_counter()
    tiled = pack_network(layers, per_layer_cores=10 ** 9)
    t2 = time.perf_counter()
    convs = [l.name for l in layers if l.geometry is not None]
    return {"net": name, "width": width, "input": "MNIST 1x28x28", "synapses": int(sum(l.mask.nnz for l in layers)),
            "neurons": int(sum(l.mask.shape[0] for l in layers)), "conv_layers": len(convs),
            "cores_unrolled": unrolled.cores, "cores_conv_aware": tiled.cores,
            "lower_bound_packed": tiled.lower_bound, "lower_bound_local": tiled.local_lower_bound,
            "ratio_conv_aware_local": round(tiled.cores / tiled.local_lower_bound, 2),
            "ratio_unrolled_packed_bound": round(unrolled.cores / unrolled.lower_bound, 2),
            "splitters_unrolled": unrolled.splitter_neurons, "splitters_conv_aware": tiled.splitter_neurons,
            "partial_sums_unrolled": unrolled.partial_sum_neurons, "partial_sums_conv_aware": tiled.partial_sum_neurons,
            "tilings": {l: p for l, p in zip([l.name for l in layers], tiled.layer_placements) if l in convs},
            "seconds_unrolled": round(t1 - t0, 1), "seconds_conv_aware": round(t2 - t1, 1)}


def main(argv=None) -> None:
    ap = OneLineParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two small nets only")
    ap.add_argument("--wide", action="store_true", help="also VGGSNN and ResNet19 at width 0.25 (slow)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where conv_mapping.md / .json go")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args(argv)
    if args.quick and args.wide:
        ap.error("--quick and --wide exclude each other")
    rows = [measure(n, w) for n, w in (QUICK if args.quick else NETS + (WIDE if args.wide else ()))]
    table = md_table(
        ["net", "width", "synapses", "neurons", "unrolled packed cores", "conv-aware cores",
         "packed-rules bound (any placement)", "local bound (tile placements)", "conv-aware / local bound",
         "unrolled / packed-rules bound", "splitters unrolled / conv-aware", "partial sums unrolled / conv-aware",
         "seconds unrolled / conv-aware"],
        [[r["net"], f"{r['width']:g}", f"{r['synapses']:,}", f"{r['neurons']:,}", f"{r['cores_unrolled']:,}",
          f"{r['cores_conv_aware']:,}", f"{r['lower_bound_packed']:,}", f"{r['lower_bound_local']:,}",
          f"{r['ratio_conv_aware_local']:.2f}", f"{r['ratio_unrolled_packed_bound']:.2f}",
          f"{r['splitters_unrolled']:,} / {r['splitters_conv_aware']:,}",
          f"{r['partial_sums_unrolled']:,} / {r['partial_sums_conv_aware']:,}",
          f"{r['seconds_unrolled']:.0f} / {r['seconds_conv_aware']:.0f}"] for r in rows])
    md = ("MNIST (1 x 28 x 28), random masks at the ESL densities (ERK, 10 %, seed 0); cores of 256 axons x 256 "
          "neurons under the packed rules (hw_models/packing.py). Unrolled: conv layers packed from their unrolled "
          "masks; conv-aware: tiled into spatial tiles x output-channel blocks x input-channel groups "
          "(hw_models/conv_mapping.py). Packed-rules bound: any placement; local bound: any tile placement "
          "(hw_models/conv_bound.py).\n\n" + table)
    write_results("conv_mapping", md, rows, command("benchmarks/bench_conv_mapping.py", argv), args.results)
    print(json.dumps(rows, indent=2) if args.json else md)


if __name__ == "__main__":
    main()
