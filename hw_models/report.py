"""The energy report: activity, core mappings and energies of one network, as a table, JSON or a plot.

:func:`energy_report` is the one public function behind ``esl energy``: it maps the network onto
TrueNorth cores (both strategies, so the table can compare them), refuses a network that does not fit
the allowed chips before running anything, counts the activity on the data and computes the energies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from torch import nn

from esl_deploy.atomic import atomic_write_bytes
from esl_deploy.errors import EslError
from esl_deploy.resources import check_memory, simulation_bytes

from .energy import HARDWARE, EnergyConstants, HardwareEnergy, energies, energy_ratio, hardware_list

CONVENTION_TEXT = {
    "papers": "one energy per operation per device, as the ESL-SNNs and PQ-index papers compare: SOPs x e_op, "
              "FLOPs x e_flop; TrueNorth's 26 pJ per event already holds its static floor",
    "chip": "chip model: dynamic energy per event without the floor, plus the static power of the occupied "
            "chips for the run's duration (TrueNorth 42 mW per chip); Loihi adds its neuron updates",
}
from .packing import PackedMapping, pack_network
from .sops import ActivityReport, count_activity
from .tn_weights import TnWeightsReport, truenorth_weights_report
from .truenorth import STRATEGIES, NetworkMapping, check_fits, map_layers
from .unroll import synaptic_layers
from .graph_map import graph_synaptic_layers
from esl_deploy.graphnet import GraphNet

# placements the TrueNorth energy can use: the per-layer strategies and the whole-network packing
ENERGY_STRATEGIES = ("packed",) + STRATEGIES


@dataclass(frozen=True)
class EnergyReport:
    """Everything ``esl energy`` shows. Energies are J per sample; ``ratios`` are E_ANN(GPU) / E_SNN(hw)."""

    source: str
    dataset: str
    strategy: str
    activity: ActivityReport
    mappings: Dict[str, NetworkMapping]
    hardware: tuple
    energies: Dict[str, HardwareEnergy]
    constants: EnergyConstants
    convention: str = "papers"
    packed: Optional[PackedMapping] = None
    tn_weights: Optional[TnWeightsReport] = None

    def __post_init__(self):
        if self.strategy not in ENERGY_STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of: {', '.join(ENERGY_STRATEGIES)}")
        if self.packed is None:
            raise ValueError("the report needs the packed mapping (cores, lower bound)")
        object.__setattr__(self, "hardware", hardware_list(self.hardware))
        if set(self.mappings) != set(STRATEGIES):
            raise ValueError(f"the report needs a mapping for each strategy: {', '.join(STRATEGIES)}")
        if "gpu" not in self.energies:
            raise ValueError("the report needs the GPU ANN energy (the ratio's base)")

    @property
    def mapping(self):
        """The mapping of the chosen strategy (the one the TrueNorth energy uses)."""
        return self.packed if self.strategy == "packed" else self.mappings[self.strategy]

    @property
    def ratios(self) -> Dict[str, float]:
        ann = self.energies["gpu"]
        return {hw: energy_ratio(ann, e) for hw, e in self.energies.items() if e.model == "snn"}

    def rows(self) -> list:
        """One dict per synaptic layer: counts, per-layer cores (naive, sparse, the per-layer rules' lower
        bound; placement details of the sparse strategy) and the energy on each chosen hardware (J per sample)."""
        out = []
        for l in self.activity.layers:
            try:
                m, n = self.mappings["sparse"].layer(l.name), self.mappings["naive"].layer(l.name)
                c = m
            except KeyError:
                m = n = c = None
            out.append({
                "layer": l.name, "kind": l.kind, "synapses": l.synapses, "weights": l.weights,
                "density": l.density, "op": l.op_kind, "input_rate": l.input_rate, "acs": l.acs, "macs": l.macs,
                "ops": l.ops, "ann_flops": l.flops,
                "cores_naive": n.cores if n else None, "cores_sparse": m.cores if m else None,
                "cores_lower_bound": m.lower_bound if m else None, "placement": c.placement if c else None,
                "partial_sum_neurons": c.partial_sum_neurons if c else None,
                "splitter_neurons": c.splitter_neurons if c else None,
                "latency_ticks": c.latency_ticks if c else None,
                "energy_j": {hw: self.energies[hw].per_layer_j.get(l.name, 0.0) for hw in self.hardware},
            })
        return out

    def to_dict(self) -> dict:
        a = self.activity
        return {
            "source": self.source, "dataset": self.dataset, "samples": a.samples, "T": a.T,
            "encoding": a.encoding, "accuracy": a.accuracy, "strategy": self.strategy,
            "hardware": list(self.hardware), "layers": self.rows(),
            "totals": {"synapses": sum(l.synapses for l in a.layers), "acs": a.acs, "macs": a.macs,
                       "ops": a.ops, "ann_flops": a.ann_flops, "neuron_updates": a.neuron_updates,
                       "active_updates": a.active_updates, "cores": self.mapping.cores,
                       "cores_naive": self.mappings["naive"].cores, "cores_sparse": self.mappings["sparse"].cores,
                       "cores_packed": self.packed.cores, "cores_lower_bound": self.packed.lower_bound,
                       "cores_packed_unrolled": (self.packed.cores if self.packed.unrolled_cores is None
                                                 else self.packed.unrolled_cores),
                       "cores_lower_bound_local": (self.packed.lower_bound if self.packed.local_lower_bound is None
                                                   else self.packed.local_lower_bound),
                       "cores_lower_bound_per_layer": self.mappings["sparse"].lower_bound,
                       "chips": self.mapping.chips, "latency_ticks": self.mapping.latency_ticks},
            "energy_j": {hw: e.to_dict() for hw, e in self.energies.items()},
            "ratio_ann_gpu_over_snn": {hw: (None if math.isinf(r) else r) for hw, r in self.ratios.items()},
            "activity": a.to_dict(), "mappings": {k: v.to_dict() for k, v in self.mappings.items()},
            "packed": self.packed.to_dict(),
            "truenorth_weights": self.tn_weights.to_dict() if self.tn_weights else None,
            "constants": self.constants.to_dict(), "convention": self.convention,
        }

    def format_table(self) -> str:
        """The human-readable report: per-layer table, totals, energies and ratios."""
        a = self.activity
        hw_cols = [hw for hw in self.hardware]
        head = (f"{'layer':16s} {'type':6s} {'synapses':>10s} {'density':>7s} {'op':>5s} {'in-rate':>7s} "
                f"{'ops/sample':>12s} {'per-layer naive/sparse/LB':>26s}"
                + "".join(f" {'E ' + hw + ' uJ':>14s}" for hw in hw_cols))
        lines = [f"{self.source} on {self.dataset}: {a.samples} samples, T={a.T}, {a.encoding} encoding"
                 + (f", accuracy {100 * a.accuracy:.2f}%" if a.accuracy is not None else ""), head,
                 "-" * len(head)]
        for r in self.rows():
            cores = "-" if r["cores_sparse"] is None else \
                f"{r['cores_naive']}/{r['cores_sparse']}/{r['cores_lower_bound']}"
            lines.append(f"{r['layer']:16s} {r['kind']:6s} {r['synapses']:>10,d} {r['density']:>7.4f} {r['op']:>5s} "
                         f"{r['input_rate']:>7.4f} {r['ops']:>12,.0f} {cores:>26s}"
                         + "".join(f" {1e6 * r['energy_j'][hw]:>14.4g}" for hw in hw_cols))
        lines.append("-" * len(head))
        m = self.mapping
        cores = f"{self.mappings['naive'].cores}/{self.mappings['sparse'].cores}/{self.mappings['sparse'].lower_bound}"
        lines.append(f"{'total':16s} {'':6s} {sum(l.synapses for l in a.layers):>10,d} {'':>7s} {'':>5s} {'':>7s} "
                     f"{a.ops:>12,.0f} {cores:>26s}"
                     + "".join(f" {1e6 * self.energies[hw].total_j:>14.4g}" for hw in hw_cols))
        lines.append(f"ACs (SOPs) {a.acs:,.0f} + MACs {a.macs:,.0f} per sample; dense ANN {a.ann_flops:,} FLOPs per "
                     f"sample; TrueNorth ({self.strategy} mapping): {m.cores} cores = {m.chips} chip(s), "
                     f"latency {m.latency_ticks} ticks")
        p = self.packed
        lines.append(f"TrueNorth cores: naive {self.mappings['naive'].cores}, per-layer {self.mappings['sparse'].cores}, "
                     f"packed {p.cores} ({p.placement}; {p.splitter_neurons} splitter, {p.partial_sum_neurons} "
                     f"partial-sum neurons), lower bound {p.lower_bound} (any placement, layers sharing cores; "
                     f"packed / bound {p.cores / max(p.lower_bound, 1):.2f})")
        if p.conv_aware:
            lines.append(f"TrueNorth conv layers tiled (spatial tiles x feature groups): packed {p.cores} against "
                         f"{p.unrolled_cores} packed from unrolled masks; local bound {p.local_lower_bound} (tile "
                         f"placements; packed / local bound {p.cores / max(p.local_lower_bound or 1, 1):.2f})")
        if self.tn_weights is not None:
            lines.append(self.tn_weights.format())
        lines.append(f"energy convention: {self.convention} ({CONVENTION_TEXT[self.convention]})")
        for hw in hw_cols:
            e = self.energies[hw]
            what = "dense ANN" if e.model == "ann" else "SNN"
            lines.append(f"  {hw:9s} {what:9s} {1e6 * e.total_j:12.4g} uJ/sample (dynamic {1e6 * e.dynamic_j:.4g}, "
                         f"static {1e6 * e.static_j:.4g}); {e.note}")
        if "gpu" not in hw_cols:
            e = self.energies["gpu"]
            lines.append(f"  {'gpu':9s} {'dense ANN':9s} {1e6 * e.total_j:12.4g} uJ/sample; {e.note}")
        ratios = self.ratios
        if ratios:
            lines.append("energy ratio ANN-on-GPU / SNN-on-hardware: "
                         + ", ".join(f"{hw} {r:,.4g}x" for hw, r in ratios.items()))
        return "\n".join(lines)


def build_report(model: nn.Module, activity: ActivityReport, *, source: str, dataset: str,
                 hardware: Sequence[str] = ("all",), constants: EnergyConstants = EnergyConstants(),
                 strategy: str = "packed", max_chips: Optional[int] = None,
                 mappings: Optional[Dict[str, NetworkMapping]] = None, convention: str = "papers",
                 packed: Optional[PackedMapping] = None) -> EnergyReport:
    """An :class:`EnergyReport` from an activity already counted (maps the model unless ``mappings`` and
    ``packed`` are given)."""
    if mappings is None or packed is None:
        mappings, packed = map_all(model, constants, strategy, max_chips)
    chosen = packed if strategy == "packed" else mappings[strategy]
    check_fits(chosen, max_chips)
    return EnergyReport(source=source, dataset=dataset, strategy=strategy, activity=activity, mappings=mappings,
                        hardware=hardware_list(hardware),
                        energies=energies(activity, chosen, hardware, constants, convention),
                        constants=constants, convention=convention, packed=packed)


def map_all(model: nn.Module, constants: EnergyConstants = EnergyConstants(), strategy: str = "packed",
            max_chips: Optional[int] = None) -> Tuple[Dict[str, NetworkMapping], PackedMapping]:
    """The naive and sparse per-layer mappings and the packed mapping of ``model`` (unrolled once);
    EslError if ``strategy``'s does not fit."""
    if strategy not in ENERGY_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of: {', '.join(ENERGY_STRATEGIES)}")
    layers = graph_synaptic_layers(model) if isinstance(model, GraphNet) else synaptic_layers(model)
    mappings = {s: map_layers(layers, s, constants.core) for s in STRATEGIES}
    if strategy != "packed":  # refuse before packing
        check_fits(mappings[strategy], max_chips)
    packed = pack_network(layers, constants.core, per_layer_cores=mappings["sparse"].cores)
    if packed.conv_aware:  # conv layers tiled: the unrolled packing beside it, for comparison
        unrolled = pack_network(layers, constants.core, per_layer_cores=mappings["sparse"].cores, conv_aware=False)
        packed = replace(packed, unrolled_cores=unrolled.cores)
    if strategy == "packed":
        check_fits(packed, max_chips)
    return mappings, packed


def energy_report(model: nn.Module, data, *, T: int, encoding: str, temporal: bool = False,
                  source: str = "model", dataset: str = "data", hardware: Sequence[str] = ("all",),
                  constants: EnergyConstants = EnergyConstants(), strategy: str = "packed",
                  max_chips: Optional[int] = None, limit: Optional[int] = None, batch_size: int = 256,
                  seed: int = 0, progress: bool = False, convention: str = "papers",
                  truenorth_weights: Optional[str] = None, tn_finetune: float = 0.0,
                  train=None) -> EnergyReport:
    """Map ``model`` onto cores (refusing it early if it needs more than ``max_chips`` chips), count its
    activity on ``data`` (:func:`hw_models.sops.count_activity`) and compute the energies.
    ``truenorth_weights`` ('duplicate' or 'cluster'): also run the fidelity check of TrueNorth's weight
    rule (:func:`hw_models.tn_weights.truenorth_weights_report`) on the same data, with ``tn_finetune``
    epochs of fine-tuning its levels on ``train`` (the training split) when > 0."""
    if isinstance(tn_finetune, bool) or not isinstance(tn_finetune, (int, float)) or not 0 <= tn_finetune < math.inf:
        raise EslError(f"--tn-finetune must be a finite number of epochs >= 0, got {tn_finetune}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
        raise EslError(f"--seed must be an integer in 0 .. 2^63 - 1, got {seed}")
    n = len(data) if limit is None else min(int(limit), len(data))
    check_memory(simulation_bytes(model, T, min(int(batch_size), max(n, 1))),
                 f"counting the activity of {n} samples at T={T}, {batch_size} at a time", "lower --T or --batch-size")
    hardware = hardware_list(hardware)
    mappings, packed = map_all(model, constants, strategy, max_chips)
    activity = count_activity(model, data, T=T, encoding=encoding, temporal=temporal, batch_size=batch_size,
                              limit=limit, seed=seed, progress=progress)
    report = build_report(model, activity, source=source, dataset=dataset, hardware=hardware, constants=constants,
                          strategy=strategy, mappings=mappings, convention=convention, packed=packed)
    if truenorth_weights is None:
        return report
    tn = truenorth_weights_report(model, synaptic_layers(model), data, mode=truenorth_weights, T=T, encoding=encoding,
                                  temporal=temporal, accuracy_float=activity.accuracy, packed_cores=packed.cores,
                                  core=constants.core, batch_size=batch_size, limit=limit, seed=seed,
                                  progress=progress, finetune_epochs=tn_finetune, train=train)
    return replace(report, tn_weights=tn)


def plot_energy(report: EnergyReport, path: str | os.PathLike) -> Path:
    """Bar chart of energy per layer and hardware (log scale), plus the totals; written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    rows = report.rows()
    hws = list(report.hardware) + (["gpu"] if "gpu" not in report.hardware else [])
    names = [r["layer"] for r in rows] + ["total"]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.6 * len(names) * len(hws) + 3.0), 4.5))
    width = 0.8 / len(hws)
    for k, hw in enumerate(hws):
        e = report.energies[hw]
        vals = [e.per_layer_j.get(n, 0.0) for n in names[:-1]] + [e.total_j]
        xs = [i + (k - (len(hws) - 1) / 2) * width for i in range(len(names))]
        label = f"{hw} ({'dense ANN' if e.model == 'ann' else 'SNN'})"
        ax.bar(xs, [max(v, 1e-18) * 1e6 for v in vals], width=width, label=label)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("energy per sample (uJ)")
    ratios = ", ".join(f"{hw} {r:,.3g}x" for hw, r in report.ratios.items())
    ax.set_title(f"{report.source} on {report.dataset}" + (f"\nANN-on-GPU / SNN: {ratios}" if ratios else ""),
                 fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    try:  # the project's one atomic writer: same folder, regular files only, renamed into place
        atomic_write_bytes(path, lambda f: fig.savefig(f, format="png", dpi=120))
    finally:
        plt.close(fig)
    return path


__all__ = ["EnergyReport", "build_report", "energy_report", "map_all", "plot_energy", "HARDWARE", "ENERGY_STRATEGIES"]
