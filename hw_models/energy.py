"""Energy per inference of a spiking network on neuromorphic hardware, and of the dense ANN on a GPU.

All constants live in :data:`CONSTANTS`, one record each with its unit and source, and can be
overridden (``esl energy --const NAME=VALUE``). Every energy is per sample (one inference of T steps),
in joules. Formulas, with the per-sample counts of :class:`hw_models.sops.ActivityReport`:

Two conventions, named and never mixed (``CONVENTIONS``; ``esl energy --convention``):

- ``papers`` (default): one energy per operation per device, the way the ESL-SNNs and PQ-index papers
  compare: ``E_SNN = SOPs * e_op(hardware)``, ``E_ANN = FLOPs * e_flop(GPU)``. TrueNorth's 26 pJ per
  synaptic event is the chip's *total* power over its event rate (Merolla 2014: 72 mW at 20 Hz and 128
  active synapses per neuron), so it already holds the static floor: nothing is added to it.
- ``chip``: a chip model. Dynamic energy per event without the floor, derived from the same figures,
  plus the static power of the chips the network occupies for the run's duration, for every device that
  has a published static figure (TrueNorth: the 42 mW floor per chip; no such figure is used for Loihi
  1 or the GPU, whose rows are the same in both conventions apart from Loihi's neuron updates, which
  the chip model charges and the papers' convention does not).

- **TrueNorth** (Merolla et al. 2014; Akopyan et al. 2015)::

      papers:  E = e_sop * (ACs + MACs)
      chip:    E = e_dyn * (ACs + MACs)  +  P_floor * chips * (T + L) * t_tick
               e_dyn = (P_total - P_floor) / (N_chip * f * k) = (72 - 42) mW / (1,048,576 x 20 Hz x 128)

  e_sop = 26 pJ per synaptic event; e_dyn = 11.2 pJ; P_floor = 42 mW per chip (0.70 V, 0 Hz); chips and
  L (latency in ticks) from the chosen placement (default: the whole-network packing of
  :func:`hw_models.packing.pack_network`; ``--strategy naive|sparse``: per layer); t_tick = 1 ms. A sample occupies
  T ticks of input plus L ticks for the last input to reach the output. MACs (analog input) are charged
  as one synaptic event each: TrueNorth cannot take graded input, so this is a lower bound for directly
  encoded input. Splitter and partial-sum neuron traffic is not charged dynamically.
- **Loihi 1** (Davies et al. 2018, Table 2: pre-silicon SDF and SPICE figures for the first Loihi)::

      E = e_sop * (ACs + MACs)  +  e_active * U_active  +  e_inactive * (U - U_active)

  e_sop = 23.6 pJ per synaptic op; U = neurons (LIF, and a membrane readout's LI) * T updates;
  U_active = updates in which the neuron spiked (our reading of "active"); e_active / e_inactive =
  81 / 52 pJ. The export targets Loihi 2, for which no per-operation energy table has been published
  (Intel's 2021 brief gives cores, neurons and synapses, not pJ per op), so the hardware is called
  ``loihi`` and reported as Loihi 1: it prices the activity with the first chip's figures, not
  Loihi 2's.
- **45 nm** (Horowitz, ISSCC 2014)::

      E_SNN = e_mac * MACs + e_ac * ACs          E_ANN = e_mac * dense MACs

  e_mac = 4.6 pJ (fp32 mult 3.7 + add 0.9), e_ac = 0.9 pJ (fp32 add).
- **GPU** (ANN, dense): ``E_ANN = FLOPs * P_TDP / peak_FLOPS`` with FLOPs = 2 * dense MACs of one
  forward pass. V100 SXM2: 300 W / 15.7 TFLOPS = 19.1 pJ/FLOP. This is a **peak-spec bound**: a real
  GPU runs below peak throughput, so its real energy per FLOP is higher.

The energy ratio reported is ``E_ANN(GPU) / E_SNN(hardware)``: how many times less energy the spiking
network needs on that hardware than the dense ANN on the GPU.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

from esl_deploy.errors import EslError

from .sops import ActivityReport
from .truenorth import CoreSpec, NetworkMapping

HARDWARE = ("truenorth", "loihi", "gpu", "45nm")
CONVENTIONS = ("papers", "chip")
HW_CHOICES = HARDWARE + ("all",)


@dataclass(frozen=True)
class Constant:
    """One hardware constant: its value in ``unit`` and where the number comes from."""

    name: str
    value: float
    unit: str
    source: str
    integer: bool = False

    def __post_init__(self):
        if not self.name or not self.unit or not self.source:
            raise ValueError("a constant needs a name, a unit and a source")
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{self.name} must be a positive finite number, got {v!r}")
        if self.integer and v != int(v):
            raise ValueError(f"{self.name} must be a positive integer, got {v!r}")
        if self.integer and v > 2 ** 31 - 1:
            raise ValueError(f"{self.name} must be at most 2^31 - 1, got {v!r}")


CONSTANTS: Tuple[Constant, ...] = (
    Constant("truenorth.sop_pj", 26.0, "pJ per synaptic event",
             "Merolla et al., Science 345:668 (2014), p.7: 26 pJ per synaptic event (0.775 V, 20 Hz, 128 synapses)"),
    Constant("truenorth.tick_ms", 1.0, "ms per tick", "Merolla et al. 2014: 1 kHz global synchronisation (1 ms tick)"),
    Constant("truenorth.floor_mw", 42.0, "mW per chip",
             "Merolla et al. 2014 / Akopyan et al. 2015: 42 mW at 0.70 V, 0 Hz, 0 synapses (static + tick floor)"),
    Constant("truenorth.total_mw", 72.0, "mW per chip",
             "Merolla et al. 2014, p.7: 72 mW total at 0.775 V, 20 Hz, 128 active synapses per neuron (the 26 pJ "
             "operating point)"),
    Constant("truenorth.ref_rate_hz", 20.0, "Hz", "Merolla et al. 2014, p.7: 20 Hz mean rate of the 26 pJ figure"),
    Constant("truenorth.ref_synapses", 128.0, "synapses per neuron",
             "Merolla et al. 2014, p.7: 128 active synapses per neuron of the 26 pJ figure"),
    Constant("truenorth.axons_per_core", 256, "axons", "Merolla et al. 2014; Akopyan et al. 2015: 256 x 256 crossbar",
             integer=True),
    Constant("truenorth.neurons_per_core", 256, "neurons", "Merolla et al. 2014; Akopyan et al. 2015: 256 neurons/core",
             integer=True),
    Constant("truenorth.cores_per_chip", 4096, "cores", "Merolla et al. 2014: 4096 cores (64 x 64) per chip",
             integer=True),
    Constant("loihi.sop_pj", 23.6, "pJ per synaptic op",
             "Loihi 1: Davies et al., IEEE Micro 38(1):82 (2018), Table 2: energy per synaptic spike op (min)"),
    Constant("loihi.update_active_pj", 81.0, "pJ per neuron update",
             "Loihi 1: Davies et al. 2018, Table 2: energy per neuron update, active"),
    Constant("loihi.update_inactive_pj", 52.0, "pJ per neuron update",
             "Loihi 1: Davies et al. 2018, Table 2: energy per neuron update, inactive"),
    Constant("45nm.mac_pj", 4.6, "pJ per MAC", "Horowitz, ISSCC 2014: 45 nm fp32 mult 3.7 pJ + fp32 add 0.9 pJ"),
    Constant("45nm.ac_pj", 0.9, "pJ per AC", "Horowitz, ISSCC 2014: 45 nm fp32 add 0.9 pJ"),
    Constant("gpu.tdp_w", 300.0, "W", "NVIDIA Tesla V100 SXM2 specification: 300 W board power (TDP)"),
    Constant("gpu.peak_tflops", 15.7, "TFLOP/s (FP32)",
             "NVIDIA Tesla V100 SXM2 specification: 15.7 TFLOPS single precision (peak, boost clock)"),
)


@dataclass(frozen=True)
class EnergyConstants:
    """A full table of constants (defaults: :data:`CONSTANTS`); :meth:`with_overrides` replaces values."""

    table: Tuple[Constant, ...] = CONSTANTS

    def __post_init__(self):
        names = [c.name for c in self.table]
        if len(set(names)) != len(names):
            raise ValueError("constant names must be unique")
        missing = {c.name for c in CONSTANTS} - set(names)
        if missing:
            raise ValueError(f"missing constants: {', '.join(sorted(missing))}")

    def __getitem__(self, name: str) -> float:
        for c in self.table:
            if c.name == name:
                return c.value
        raise KeyError(name)

    def with_overrides(self, overrides: Mapping[str, float]) -> "EnergyConstants":
        """A copy with the given values replaced; ValueError for an unknown name or a bad value."""
        known = {c.name for c in self.table}
        for k in overrides:
            if k not in known:
                raise ValueError(f"unknown constant {k!r}; choose one of: {', '.join(sorted(known))}")
        return EnergyConstants(tuple(replace(c, value=overrides[c.name]) if c.name in overrides else c
                                     for c in self.table))

    @property
    def core(self) -> CoreSpec:
        """The TrueNorth core described by the table."""
        return CoreSpec(axons=int(self["truenorth.axons_per_core"]), neurons=int(self["truenorth.neurons_per_core"]),
                        cores_per_chip=int(self["truenorth.cores_per_chip"]))

    @property
    def truenorth_dynamic_j(self) -> float:
        """Energy per synaptic event without the static floor: (P_total - P_floor) / event rate of a chip."""
        neurons = self["truenorth.cores_per_chip"] * self["truenorth.neurons_per_core"]
        rate = neurons * self["truenorth.ref_rate_hz"] * self["truenorth.ref_synapses"]
        return max(self["truenorth.total_mw"] - self["truenorth.floor_mw"], 0.0) * 1e-3 / rate

    @property
    def gpu_j_per_flop(self) -> float:
        """TDP / peak FLOP/s, in J per FLOP (a peak-spec bound)."""
        return self["gpu.tdp_w"] / (self["gpu.peak_tflops"] * 1e12)

    def to_dict(self) -> dict:
        return {c.name: asdict(c) for c in self.table}


def parse_overrides(items: Iterable[str], constants: EnergyConstants = EnergyConstants()) -> EnergyConstants:
    """``["NAME=VALUE", ...]`` -> constants with those values; user mistakes raise :class:`EslError`."""
    values: Dict[str, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text:
            raise EslError(f"--const takes NAME=VALUE, got {item!r}")
        try:
            value = float(text)
        except ValueError:
            raise EslError(f"--const {name}: {text!r} is not a number") from None
        values[name] = value
    try:
        out = constants.with_overrides(values)
        out.core  # the core the table describes must be one the mapper can build trees on
    except ValueError as e:
        raise EslError(f"--const: {e}") from None
    return out


@dataclass(frozen=True)
class HardwareEnergy:
    """Energy per sample of one hardware, in J: dynamic + static, and the part of each synaptic layer."""

    hardware: str
    model: str  # "snn" or "ann"
    dynamic_j: float
    static_j: float
    per_layer_j: Dict[str, float] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self):
        if self.hardware not in HARDWARE:
            raise ValueError(f"unknown hardware {self.hardware!r}; choose one of: {', '.join(HARDWARE)}")
        if self.model not in ("snn", "ann"):
            raise ValueError(f"model must be 'snn' or 'ann', got {self.model!r}")
        if not (self.dynamic_j >= 0 and self.static_j >= 0):
            raise ValueError(f"{self.hardware}: energies must be non-negative")

    @property
    def total_j(self) -> float:
        return self.dynamic_j + self.static_j

    def to_dict(self) -> dict:
        return {**asdict(self), "total_j": self.total_j}


PJ = 1e-12


def truenorth_energy(activity: ActivityReport, mapping: NetworkMapping,
                     constants: EnergyConstants = EnergyConstants(), convention: str = "papers") -> HardwareEnergy:
    """Per sample: ``papers``: ``E = e_sop * (ACs + MACs)``; ``chip``: ``E = e_dyn * (ACs + MACs) +
    P_floor * chips * (T + L) * t_tick`` (module docstring)."""
    _check_convention(convention)
    ticks = activity.T + mapping.latency_ticks
    where = f"{mapping.cores} cores, {mapping.chips} chip(s), {ticks} ticks of {constants['truenorth.tick_ms']:g} ms"
    if convention == "papers":
        e_sop = constants["truenorth.sop_pj"] * PJ
        return HardwareEnergy("truenorth", "snn", dynamic_j=e_sop * activity.ops, static_j=0.0,
                              per_layer_j={l.name: e_sop * l.ops for l in activity.layers},
                              note=f"papers' convention: 26 pJ per event holds the static floor; {where}")
    e_dyn = constants.truenorth_dynamic_j
    seconds = ticks * constants["truenorth.tick_ms"] * 1e-3
    static = constants["truenorth.floor_mw"] * 1e-3 * mapping.chips * seconds
    return HardwareEnergy("truenorth", "snn", dynamic_j=e_dyn * activity.ops, static_j=static,
                          per_layer_j={l.name: e_dyn * l.ops for l in activity.layers},
                          note=f"chip model: {e_dyn / PJ:.2f} pJ per event without the floor + "
                               f"{constants['truenorth.floor_mw']:g} mW per occupied chip; {where}")


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown energy convention {convention!r}; choose one of: {', '.join(CONVENTIONS)}")


def loihi_energy(activity: ActivityReport, constants: EnergyConstants = EnergyConstants(),
                 convention: str = "papers") -> HardwareEnergy:
    """Per sample: ``papers``: ``E = e_sop * (ACs + MACs)``; ``chip``: that ``+ e_active * U_active +
    e_inactive * (U - U_active)`` (no static figure of Loihi is used)."""
    _check_convention(convention)
    e_sop = constants["loihi.sop_pj"] * PJ
    if convention == "papers":
        return HardwareEnergy("loihi", "snn", dynamic_j=e_sop * activity.ops, static_j=0.0,
                              per_layer_j={l.name: e_sop * l.ops for l in activity.layers},
                              note="Loihi 1 figures (Davies 2018), papers' convention: synaptic ops only")
    updates, active = activity.neuron_updates, activity.active_updates
    neurons = (constants["loihi.update_active_pj"] * active
               + constants["loihi.update_inactive_pj"] * (updates - active)) * PJ
    return HardwareEnergy("loihi", "snn", dynamic_j=e_sop * activity.ops + neurons, static_j=0.0,
                          per_layer_j={l.name: e_sop * l.ops for l in activity.layers},
                          note=f"Loihi 1 figures (Davies 2018): {updates:,} neuron updates ({active:,.0f} active) "
                               f"= {neurons:.3g} J")


def cmos45_energy(activity: ActivityReport, constants: EnergyConstants = EnergyConstants()) -> HardwareEnergy:
    """``E_SNN = e_mac * MACs + e_ac * ACs`` per sample (45 nm, Horowitz 2014)."""
    e_mac, e_ac = constants["45nm.mac_pj"] * PJ, constants["45nm.ac_pj"] * PJ
    per_layer = {l.name: e_mac * l.macs + e_ac * l.acs for l in activity.layers}
    ann = e_mac * activity.ann_macs
    return HardwareEnergy("45nm", "snn", dynamic_j=sum(per_layer.values()), static_j=0.0, per_layer_j=per_layer,
                          note=f"dense ANN at 45 nm: {ann:.3g} J (e_mac * {activity.ann_macs:,} MACs)")


def gpu_ann_energy(activity: ActivityReport, constants: EnergyConstants = EnergyConstants()) -> HardwareEnergy:
    """``E_ANN = 2 * dense MACs * P_TDP / peak_FLOPS`` per sample: the dense ANN on the GPU (peak-spec bound)."""
    e = constants.gpu_j_per_flop
    return HardwareEnergy("gpu", "ann", dynamic_j=e * activity.ann_flops, static_j=0.0,
                          per_layer_j={l.name: e * l.flops for l in activity.layers},
                          note=f"peak-spec bound: {constants['gpu.tdp_w']:g} W / {constants['gpu.peak_tflops']:g} "
                               f"TFLOPS = {e / PJ:.1f} pJ/FLOP; real utilisation is lower, real energy higher")


def hardware_list(choices: Sequence[str]) -> Tuple[str, ...]:
    """Expand 'all' and keep HARDWARE's order; ValueError for an unknown name."""
    out = set()
    for c in choices:
        if c == "all":
            out.update(HARDWARE)
        elif c in HARDWARE:
            out.add(c)
        else:
            raise ValueError(f"unknown hardware {c!r}; choose one of: {', '.join(HW_CHOICES)}")
    if not out:
        raise ValueError("choose at least one hardware")
    return tuple(h for h in HARDWARE if h in out)


def energies(activity: ActivityReport, mapping: Optional[NetworkMapping], hardware: Sequence[str],
             constants: EnergyConstants = EnergyConstants(), convention: str = "papers") -> Dict[str, HardwareEnergy]:
    """Energy of every hardware in ``hardware`` ('all' allowed) under one ``convention``; the GPU ANN is
    always included (the ratio's base). ``mapping`` is needed for TrueNorth only.
    """
    _check_convention(convention)
    out: Dict[str, HardwareEnergy] = {}
    for hw in hardware_list(hardware):
        if hw == "truenorth":
            if mapping is None:
                raise ValueError("TrueNorth energy needs a core mapping")
            out[hw] = truenorth_energy(activity, mapping, constants, convention)
        elif hw == "loihi":
            out[hw] = loihi_energy(activity, constants, convention)
        elif hw == "45nm":
            out[hw] = cmos45_energy(activity, constants)
    out["gpu"] = gpu_ann_energy(activity, constants)
    return out


def energy_ratio(ann: HardwareEnergy, snn: HardwareEnergy) -> float:
    """``E_ANN / E_SNN``: how many times less energy the SNN needs (inf if the SNN needs none)."""
    return ann.total_j / snn.total_j if snn.total_j > 0 else math.inf
